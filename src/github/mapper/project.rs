//! The events about the project around the code: issues and comments, releases, stars and
//! forks, CI runs. Percussive, plucked, pad, metal and noise voices.

use super::{action, branch_shift, by, ignored_action, plural, title, Sketch};
use super::{MAX_NAME_CHARS, MAX_TITLE_CHARS};
use crate::github::payload::Payload;
use crate::github::theory::{lerp, log_curve, one_line, Mode};
use bandsync_protocol::repo::{InstrumentType, Pattern};

pub(super) fn issues(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn issue_comment(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn release(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn star(event: &str, p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn fork(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn workflow_run(p: &Payload) -> Result<Sketch, String> {
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
