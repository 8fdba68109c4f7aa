//! The events about code: pushes, pull requests and their reviews, refs created and
//! deleted. Synth, AM and FM voices; the size of a change drives tempo, density and length.

use super::MAX_NAME_CHARS;
use super::{action, branch_shift, by, ignored_action, plural, title, Sketch};
use crate::github::payload::Payload;
use crate::github::theory::{lerp, linear, log_curve, one_line, Mode};
use bandsync_protocol::repo::{InstrumentType, Pattern};

pub(super) fn push(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn pull_request(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn review(p: &Payload) -> Result<Sketch, String> {
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

pub(super) fn create_or_delete(event: &str, p: &Payload) -> Result<Sketch, String> {
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
