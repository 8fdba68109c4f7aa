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

use super::payload::Payload;
use super::theory::{fnv1a32, lerp, linear, log_curve, one_line, scale, Mode};
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
        "push" => push(p),
        "pull_request" => pull_request(p),
        "issues" => issues(p),
        "issue_comment" => issue_comment(p),
        "pull_request_review" => review(p),
        "release" => release(p),
        "star" | "watch" => star(event, p),
        "fork" => fork(p),
        "workflow_run" => workflow_run(p),
        "create" | "delete" => create_or_delete(event, p),
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

fn push(p: &Payload) -> Result<Sketch, String> {
    let git_ref = p.git_ref.as_deref().unwrap_or("");
    if p.deleted == Some(true) {
        return Err(format!(
            "a push deleting {} plays nothing (the delete event plays it)",
            one_line(git_ref, MAX_NAME_CHARS)
        ));
    }
    let (target, branch) = match git_ref.strip_prefix("refs/tags/") {
        Some(tag) => (format!("tag {}", one_line(tag, MAX_NAME_CHARS)), None),
        None => {
            let b = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
            (one_line(b, MAX_NAME_CHARS), Some(b))
        }
    };
    let c = p.commits;
    let forced = p.forced == Some(true);
    let mode = if c.added >= c.removed {
        Mode::Major
    } else {
        Mode::Minor
    };
    let files = c.added.saturating_add(c.removed).saturating_add(c.modified);
    Ok(Sketch {
        instrument: if forced {
            InstrumentType::Fm
        } else {
            InstrumentType::Synth
        },
        mode,
        octave: 4,
        pattern: match (forced, mode) {
            (true, _) => Pattern::Random,
            (false, Mode::Major) => Pattern::Ascending,
            (false, _) => Pattern::Descending,
        },
        tempo: lerp(90.0, 180.0, linear(c.count, 15)),
        density: lerp(0.3, 1.0, log_curve(c.count, 20)),
        duration: lerp(3.0, 8.0, linear(files, 50)),
        transpose: branch.map_or(0, |b| branch_shift(p, b)),
        summary: format!(
            "{}{} to {target} by {} (+{} ~{} -{} files)",
            if forced { "force-push: " } else { "" },
            plural(c.count, "commit", "commits"),
            by(p),
            c.added,
            c.modified,
            c.removed
        ),
    })
}

fn pull_request(p: &Payload) -> Result<Sketch, String> {
    let pr = p.pull_request.clone().unwrap_or_default();
    let (adds, dels) = (pr.additions.unwrap_or(0), pr.deletions.unwrap_or(0));
    let merged = action(p) == "closed" && pr.merged == Some(true);
    let base = one_line(
        pr.base.and_then(|b| b.name).as_deref().unwrap_or("?"),
        MAX_NAME_CHARS,
    );
    let verb = match action(p) {
        "opened" => "opened".to_owned(),
        "reopened" => "reopened".to_owned(),
        "ready_for_review" => "ready for review".to_owned(),
        "synchronize" => "updated".to_owned(),
        "closed" if merged => format!("merged into {base}"),
        "closed" => "closed".to_owned(),
        other => return Err(ignored_action("pull_request", other)),
    };
    let closed_unmerged = action(p) == "closed" && !merged;
    let (mode, octave, pattern) = if merged {
        (Mode::MajorPentatonic, 5, Pattern::Ascending)
    } else if closed_unmerged {
        (Mode::Minor, 3, Pattern::Descending)
    } else if adds >= dels {
        (Mode::Major, 4, Pattern::Arpeggio)
    } else {
        (Mode::Minor, 4, Pattern::Arpeggio)
    };
    Ok(Sketch {
        instrument: InstrumentType::Am,
        mode,
        octave,
        pattern,
        tempo: lerp(80.0, 180.0, log_curve(adds.saturating_add(dels), 5000))
            + if merged { 20.0 } else { 0.0 },
        density: lerp(0.3, 1.0, log_curve(pr.commits.unwrap_or(0), 20)),
        duration: lerp(3.0, 8.0, linear(pr.changed_files.unwrap_or(0), 50)),
        transpose: 0,
        summary: format!(
            "PR #{} {verb} by {}: {} (+{adds} -{dels})",
            pr.number.unwrap_or(0),
            by(p),
            title(pr.title.as_deref())
        ),
    })
}

fn ignored_action(event: &str, action: &str) -> String {
    format!(
        "{event} with action {:?} plays nothing",
        one_line(action, MAX_NAME_CHARS)
    )
}

fn issues(p: &Payload) -> Result<Sketch, String> {
    let issue = p.issue.clone().unwrap_or_default();
    let not_planned = issue.state_reason.as_deref() == Some("not_planned");
    let (mode, pattern) = match action(p) {
        "opened" | "reopened" if issue.labels.bug => (Mode::Minor, Pattern::Random),
        "opened" | "reopened" => (Mode::MajorPentatonic, Pattern::Random),
        "closed" if not_planned => (Mode::Minor, Pattern::Descending),
        "closed" => (Mode::Major, Pattern::Descending),
        other => return Err(ignored_action("issues", other)),
    };
    Ok(Sketch {
        instrument: InstrumentType::Membrane,
        mode,
        octave: 2,
        pattern,
        tempo: lerp(100.0, 160.0, log_curve(issue.comments.unwrap_or(0), 50)),
        density: lerp(0.35, 1.0, log_curve(issue.labels.count, 10)),
        duration: 4.0,
        transpose: 0,
        summary: format!(
            "issue #{} {} by {}: {}",
            issue.number.unwrap_or(0),
            action(p),
            by(p),
            title(issue.title.as_deref())
        ),
    })
}

fn issue_comment(p: &Payload) -> Result<Sketch, String> {
    if action(p) != "created" {
        return Err(ignored_action("issue_comment", action(p)));
    }
    let number = p.issue.as_ref().and_then(|i| i.number).unwrap_or(0);
    let body = p
        .comment
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .unwrap_or("");
    let chars = body.chars().count() as u64;
    Ok(Sketch {
        instrument: InstrumentType::Fm,
        mode: Mode::MajorPentatonic,
        octave: 4,
        pattern: Pattern::Random,
        tempo: 110.0,
        density: lerp(0.2, 1.0, log_curve(chars, 2000)),
        duration: 3.0,
        transpose: 0,
        summary: format!("comment on #{number} by {} ({chars} characters)", by(p)),
    })
}

fn review(p: &Payload) -> Result<Sketch, String> {
    if action(p) != "submitted" {
        return Err(ignored_action("pull_request_review", action(p)));
    }
    let number = p
        .pull_request
        .as_ref()
        .and_then(|pr| pr.number)
        .unwrap_or(0);
    let state = p
        .review
        .as_ref()
        .and_then(|r| r.state.as_deref())
        .unwrap_or("");
    let (mode, pattern, what) = match state.to_ascii_lowercase().as_str() {
        "approved" => (Mode::Major, Pattern::Ascending, "approved"),
        "changes_requested" => (Mode::Minor, Pattern::Descending, "changes requested"),
        "commented" => (Mode::MajorPentatonic, Pattern::Random, "reviewed"),
        other => {
            return Err(format!(
                "a review in state {:?} plays nothing",
                one_line(other, MAX_NAME_CHARS)
            ))
        }
    };
    Ok(Sketch {
        instrument: InstrumentType::Fm,
        mode,
        octave: 4,
        pattern,
        tempo: 120.0,
        density: 0.5,
        duration: 3.0,
        transpose: 0,
        summary: format!("PR #{number} {what} by {}", by(p)),
    })
}

fn release(p: &Payload) -> Result<Sketch, String> {
    // GitHub sends created, published and released for one release: play it once.
    if action(p) != "published" {
        return Err(ignored_action("release", action(p)));
    }
    let r = p.release.clone().unwrap_or_default();
    let pre = r.prerelease == Some(true);
    Ok(Sketch {
        instrument: InstrumentType::Pad,
        mode: if pre { Mode::Minor7 } else { Mode::Major7 },
        octave: 3,
        pattern: Pattern::Chord,
        tempo: 72.0,
        density: lerp(0.5, 1.0, log_curve(r.assets.0, 10)),
        duration: 8.0,
        transpose: 0,
        summary: format!(
            "{} {} published by {}",
            if pre { "pre-release" } else { "release" },
            one_line(r.tag_name.as_deref().unwrap_or("?"), MAX_NAME_CHARS),
            by(p)
        ),
    })
}

fn star(event: &str, p: &Payload) -> Result<Sketch, String> {
    // `star` says created/deleted; the older `watch` says started (there is no unwatch).
    if !matches!(
        (event, action(p)),
        ("star", "created") | ("watch", "started")
    ) {
        return Err(ignored_action(event, action(p)));
    }
    let stars = p
        .repository
        .as_ref()
        .and_then(|r| r.stargazers_count)
        .unwrap_or(0);
    Ok(Sketch {
        instrument: InstrumentType::Pluck,
        mode: Mode::MajorPentatonic,
        octave: 5,
        pattern: Pattern::Random,
        tempo: 132.0,
        density: lerp(0.3, 1.0, log_curve(stars, 10_000)),
        duration: 3.0,
        transpose: 0,
        summary: format!("starred by {} ({})", by(p), plural(stars, "star", "stars")),
    })
}

fn fork(p: &Payload) -> Result<Sketch, String> {
    let forks = p
        .repository
        .as_ref()
        .and_then(|r| r.forks_count)
        .unwrap_or(0);
    let to = p
        .forkee
        .as_ref()
        .and_then(|f| f.full_name.as_deref())
        .unwrap_or("?");
    Ok(Sketch {
        instrument: InstrumentType::Fm,
        mode: Mode::Major,
        octave: 4,
        pattern: Pattern::Arpeggio,
        tempo: 116.0,
        density: lerp(0.3, 1.0, log_curve(forks, 1000)),
        duration: 4.0,
        transpose: 0,
        summary: format!(
            "forked to {} by {} ({})",
            one_line(to, MAX_TITLE_CHARS),
            by(p),
            plural(forks, "fork", "forks")
        ),
    })
}

fn workflow_run(p: &Payload) -> Result<Sketch, String> {
    if action(p) != "completed" {
        return Err(ignored_action("workflow_run", action(p)));
    }
    let run = p.workflow_run.clone().unwrap_or_default();
    let conclusion = run.conclusion.as_deref().unwrap_or("");
    let retries = run.run_attempt.unwrap_or(1).saturating_sub(1);
    let (instrument, mode, octave, pattern, tempo, density) = match conclusion {
        "success" => (
            InstrumentType::Metal,
            Mode::Major,
            5,
            Pattern::Ascending,
            120.0,
            0.5,
        ),
        "failure" | "timed_out" | "startup_failure" => (
            InstrumentType::Noise,
            Mode::Phrygian,
            3,
            Pattern::Descending,
            150.0 + 15.0 * retries.min(4) as f64,
            0.8,
        ),
        "cancelled" => (
            InstrumentType::Noise,
            Mode::Minor,
            3,
            Pattern::Descending,
            100.0,
            0.25,
        ),
        other => {
            return Err(format!(
                "a workflow run concluding {:?} plays nothing",
                one_line(other, MAX_NAME_CHARS)
            ))
        }
    };
    let branch = run.head_branch.as_deref().unwrap_or("");
    let name = run
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("workflow");
    Ok(Sketch {
        instrument,
        mode,
        octave,
        pattern,
        tempo,
        density,
        duration: 4.0,
        transpose: branch_shift(p, branch),
        summary: format!(
            "{} {conclusion} on {} (run #{})",
            one_line(name, MAX_NAME_CHARS),
            one_line(branch, MAX_NAME_CHARS),
            run.run_number.unwrap_or(0)
        ),
    })
}

fn create_or_delete(event: &str, p: &Payload) -> Result<Sketch, String> {
    let name = p.git_ref.as_deref().unwrap_or("");
    let kind = match p.ref_type.as_deref() {
        Some("tag") => "tag",
        _ => "branch",
    };
    let created = event == "create";
    Ok(Sketch {
        instrument: InstrumentType::Synth,
        mode: if created {
            Mode::MajorPentatonic
        } else {
            Mode::Minor
        },
        octave: match (created, kind) {
            (true, "tag") => 5,
            (true, _) => 4,
            (false, _) => 3,
        },
        pattern: if created {
            Pattern::Ascending
        } else {
            Pattern::Descending
        },
        tempo: if created { 110.0 } else { 90.0 },
        density: if created { 0.4 } else { 0.3 },
        duration: 3.0,
        transpose: if kind == "branch" {
            branch_shift(p, name)
        } else {
            0
        },
        summary: format!(
            "{kind} {} {} by {}",
            one_line(name, MAX_NAME_CHARS),
            if created { "created" } else { "deleted" },
            by(p)
        ),
    })
}
