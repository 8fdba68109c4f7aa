//! From a GitHub event to the musical parameters of one composition: a pure, deterministic
//! function of the event name, the delivery id, the repository and the payload. The table in
//! `protocol/PROTOCOL.md` (*From GitHub events to music*) documents every rule here; keep
//! the two in step.
//!
//! Shared by every event: the key is the repository's (`fnv1a32(full_name) % 12` as pitch
//! class, so one repository always sounds in one key), shifted for branches other than the
//! default one; the seed is `fnv1a32(delivery id)`; each event family has its own
//! instrument. Whatever the payload holds, the result passes `MusicalParams::validate`
//! (property-tested): counts go through bounded curves and the result is clamped again to
//! the protocol's bounds.
//!
//! This file holds what every event shares; the rules per event are in `code` (push, pull
//! requests, reviews, refs) and `project` (issues, comments, releases, stars, forks, CI).

mod code;
mod project;

use super::payload::Payload;
use super::theory::{fnv1a32, one_line, scale, Mode};
use bandsync_protocol::repo::{
    InstrumentType, MusicalParams, Pattern, Trigger, MAX_DURATION, MAX_TEMPO, MIN_DURATION,
    MIN_TEMPO,
};

/// Longest summary, in characters; titles and names inside it are cut shorter.
pub const MAX_SUMMARY_CHARS: usize = 200;
const MAX_TITLE_CHARS: usize = 80;
const MAX_NAME_CHARS: usize = 60;

/// What one event plays, or why it plays nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    Play {
        params: MusicalParams,
        trigger: Trigger,
    },
    /// A well-formed event that makes no sound (an unmapped event, or an action such as
    /// `labeled` that would only add noise); the reason is for the response and the logs.
    Ignore(String),
}

/// The parts of a composition an event decides; [`finish`] turns them into parameters.
struct Sketch {
    instrument: InstrumentType,
    mode: Mode,
    octave: u8,
    pattern: Pattern,
    tempo: f64,
    density: f64,
    duration: f64,
    /// Semitones above the repository's key (a branch's own shift).
    transpose: u8,
    summary: String,
}

/// Maps one delivery. `repo` is the validated `repository.full_name`.
pub fn map(event: &str, delivery: &str, repo: &str, p: &Payload) -> Mapping {
    let sketch = match event {
        "push" => code::push(p),
        "pull_request" => code::pull_request(p),
        "issues" => project::issues(p),
        "issue_comment" => project::issue_comment(p),
        "pull_request_review" => code::review(p),
        "release" => project::release(p),
        "star" | "watch" => project::star(event, p),
        "fork" => project::fork(p),
        "workflow_run" => project::workflow_run(p),
        "create" | "delete" => code::create_or_delete(event, p),
        _ => Err(format!("the {event} event is not mapped to music")),
    };
    match sketch {
        Ok(sketch) => finish(event, delivery, repo, p, sketch),
        Err(reason) => Mapping::Ignore(reason),
    }
}

fn finish(event: &str, delivery: &str, repo: &str, p: &Payload, s: Sketch) -> Mapping {
    let root = ((fnv1a32(repo.as_bytes()) % 12) as u8 + s.transpose) % 12;
    let finite_or = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
    let params = MusicalParams {
        tempo: finite_or(s.tempo, 120.0)
            .clamp(MIN_TEMPO, MAX_TEMPO)
            .round(),
        scale: scale(root, s.octave, s.mode),
        instrument_type: s.instrument,
        duration: finite_or(s.duration, 4.0).clamp(MIN_DURATION, MAX_DURATION),
        density: finite_or(s.density, 0.5).clamp(0.0, 1.0),
        pattern: s.pattern,
        seed: fnv1a32(delivery.as_bytes()),
    };
    let trigger = Trigger {
        kind: "webhook".into(),
        event: Some(event.to_owned()),
        action: p.action.as_deref().map(|a| one_line(a, MAX_NAME_CHARS)),
        delivery: Some(delivery.to_owned()),
        sender: p
            .sender
            .as_ref()
            .and_then(|s| s.login.as_deref())
            .map(|l| one_line(l, MAX_NAME_CHARS)),
        summary: one_line(&s.summary, MAX_SUMMARY_CHARS),
    };
    Mapping::Play { params, trigger }
}

/// The sender's login for a summary, bounded.
fn by(p: &Payload) -> String {
    let login = p.sender.as_ref().and_then(|s| s.login.as_deref());
    one_line(login.unwrap_or("someone"), MAX_NAME_CHARS)
}

fn title(t: Option<&str>) -> String {
    one_line(t.unwrap_or(""), MAX_TITLE_CHARS)
}

fn action(p: &Payload) -> &str {
    p.action.as_deref().unwrap_or("")
}

/// 0 for the repository's default branch (`main`/`master` when the payload does not say),
/// otherwise a shift of the key by the branch name's hash, so a feature branch has its own.
fn branch_shift(p: &Payload, branch: &str) -> u8 {
    let default = p
        .repository
        .as_ref()
        .and_then(|r| r.default_branch.as_deref());
    let is_default = match default {
        Some(d) => d == branch,
        None => branch == "main" || branch == "master",
    };
    if is_default {
        0
    } else {
        (fnv1a32(branch.as_bytes()) % 12) as u8
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ignored_action(event: &str, action: &str) -> String {
    format!(
        "{event} with action {:?} plays nothing",
        one_line(action, MAX_NAME_CHARS)
    )
}
