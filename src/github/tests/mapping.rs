//! The mapper on each event's real-shaped payload.

use super::*;

#[test]
fn a_push_plays_a_synth_in_the_repository_key_with_commit_driven_density() {
    let (repo, p, t) = play("push", fixture("push").as_bytes());
    assert_eq!(repo, "Codertocat/Hello-World");
    assert_eq!(p.instrument_type, InstrumentType::Synth);
    // Key B (FNV-1a of the name % 12 = 11), major: one file added, none removed.
    assert_eq!(
        p.scale,
        notes(&["B4", "C#5", "D#5", "E5", "F#5", "G#5", "A#5", "B5"])
    );
    assert_eq!(p.pattern, Pattern::Ascending);
    assert_eq!(p.tempo, 96.0);
    assert_close(p.density, 0.459_369_174_087_867);
    assert_close(p.duration, 3.1);
    assert_eq!(p.seed, DELIVERY_SEED);
    assert_eq!(t.kind, "webhook");
    assert_eq!(t.event.as_deref(), Some("push"));
    assert_eq!(t.action, None);
    assert_eq!(t.delivery.as_deref(), Some(DELIVERY));
    assert_eq!(t.sender.as_deref(), Some("Codertocat"));
    assert_eq!(
        t.summary,
        "1 commit to master by Codertocat (+1 ~0 -0 files)"
    );
}

#[test]
fn a_push_removing_more_than_it_adds_is_minor_and_descending() {
    let body = edited(
        "push",
        &[(
            "/commits",
            serde_json::json!([
                {"added": [], "removed": ["a.rs", "b.rs"], "modified": ["c.rs"]},
                {"added": ["d.rs"], "removed": [], "modified": []}
            ]),
        )],
    );
    let (_, p, t) = play("push", &body);
    assert_eq!(p.scale[..3], notes(&["B4", "C#5", "D5"]));
    assert_eq!(p.pattern, Pattern::Descending);
    assert_eq!(p.tempo, 102.0);
    assert_eq!(
        t.summary,
        "2 commits to master by Codertocat (+1 ~1 -2 files)"
    );
}

#[test]
fn a_force_push_to_another_branch_is_fm_random_and_in_that_branch_key() {
    let body = edited(
        "push",
        &[
            ("/forced", true.into()),
            ("/ref", "refs/heads/feature".into()),
        ],
    );
    let (_, p, t) = play("push", &body);
    assert_eq!(p.instrument_type, InstrumentType::Fm);
    assert_eq!(p.pattern, Pattern::Random);
    // B shifted by fnv1a32("feature") % 12 = 5 semitones: E.
    assert_eq!(p.scale[0], "E4");
    assert!(t.summary.starts_with("force-push: 1 commit to feature by"));
}

#[test]
fn a_push_deleting_a_ref_is_ignored_for_the_delete_event() {
    let reason = ignored("push", fixture("push_deleted").as_bytes());
    assert!(reason.contains("refs/tags/simple-tag"), "{reason}");
}

#[test]
fn a_closed_pull_request_is_minor_and_a_merged_one_brighter() {
    let (_, closed, t) = play("pull_request", fixture("pull_request").as_bytes());
    assert_eq!(closed.instrument_type, InstrumentType::Am);
    assert_eq!(
        closed.scale,
        notes(&["B3", "C#4", "D4", "E4", "F#4", "G4", "A4", "B4"])
    );
    assert_eq!(closed.pattern, Pattern::Descending);
    assert_eq!(closed.tempo, 93.0, "80 + 100 * ln(1+2)/ln(5001), rounded");
    assert_close(closed.density, 0.459_369_174_087_867);
    assert_close(closed.duration, 3.1);
    assert_eq!(t.action.as_deref(), Some("closed"));
    assert_eq!(
        t.summary,
        "PR #2 closed by Codertocat: Update the README with new information. (+1 -1)"
    );

    let body = edited("pull_request", &[("/pull_request/merged", true.into())]);
    let (_, merged, t) = play("pull_request", &body);
    assert_eq!(merged.scale[..3], notes(&["B5", "C#6", "D#6"]));
    assert_eq!(merged.pattern, Pattern::Ascending);
    assert_eq!(merged.tempo, 113.0);
    assert!(t
        .summary
        .starts_with("PR #2 merged into master by Codertocat"));
}

#[test]
fn pull_request_size_drives_tempo_and_direction_drives_mode() {
    let body = edited(
        "pull_request",
        &[
            ("/action", "opened".into()),
            ("/pull_request/additions", 40.into()),
            ("/pull_request/deletions", 4960.into()),
            ("/pull_request/changed_files", 500.into()),
        ],
    );
    let (_, p, _) = play("pull_request", &body);
    assert_eq!(p.tempo, 180.0);
    assert_eq!(p.duration, 8.0);
    assert_eq!(p.pattern, Pattern::Arpeggio);
    assert_eq!(
        p.scale[2], "D5",
        "more deletions than additions: minor third"
    );
    let body = edited("pull_request", &[("/action", "labeled".into())]);
    assert!(ignored("pull_request", &body).contains("labeled"));
}

#[test]
fn an_issue_opened_with_a_bug_label_is_a_low_minor_membrane() {
    let (_, p, t) = play("issues", fixture("issues").as_bytes());
    assert_eq!(p.instrument_type, InstrumentType::Membrane);
    assert_eq!(
        p.scale,
        notes(&["B2", "C#3", "D3", "E3", "F#3", "G3", "A3", "B3"])
    );
    assert_eq!(p.tempo, 100.0);
    assert_close(p.density, 0.537_892_137_106_627);
    assert_eq!(
        t.summary,
        "issue #1 opened by Codertocat: Spelling error in the README file"
    );
    let body = edited(
        "issues",
        &[
            ("/action", "closed".into()),
            ("/issue/labels", serde_json::json!([])),
        ],
    );
    let (_, closed, _) = play("issues", &body);
    assert_eq!(closed.scale[2], "D#3", "a resolved issue is major");
    assert_eq!(closed.pattern, Pattern::Descending);
}

#[test]
fn a_comment_is_fm_with_density_from_its_length() {
    let (_, p, t) = play("issue_comment", fixture("issue_comment").as_bytes());
    assert_eq!(p.instrument_type, InstrumentType::Fm);
    assert_close(p.density, 0.621_746_726_074_529);
    assert_eq!(t.summary, "comment on #1 by Codertocat (54 characters)");
}

#[test]
fn reviews_are_major_when_approved_and_minor_when_changes_are_requested() {
    let (_, commented, t) = play("pull_request_review", fixture("review").as_bytes());
    assert_eq!(commented.pattern, Pattern::Random);
    assert_eq!(t.summary, "PR #2 reviewed by Codertocat");
    let approved = edited("review", &[("/review/state", "approved".into())]);
    let (_, p, _) = play("pull_request_review", &approved);
    assert_eq!(
        (p.pattern, p.scale[2].as_str()),
        (Pattern::Ascending, "D#5")
    );
    let changes = edited("review", &[("/review/state", "changes_requested".into())]);
    let (_, p, _) = play("pull_request_review", &changes);
    assert_eq!(
        (p.pattern, p.scale[2].as_str()),
        (Pattern::Descending, "D5")
    );
    let dismissed = edited("review", &[("/action", "dismissed".into())]);
    ignored("pull_request_review", &dismissed);
}

#[test]
fn a_published_release_is_a_slow_pad_chord_and_its_other_actions_are_silent() {
    let (_, p, t) = play("release", fixture("release").as_bytes());
    assert_eq!(p.instrument_type, InstrumentType::Pad);
    assert_eq!(p.pattern, Pattern::Chord);
    assert_eq!(p.scale, notes(&["B3", "D#4", "F#4", "A#4"]));
    assert_eq!((p.tempo, p.duration, p.density), (72.0, 8.0, 0.5));
    assert_eq!(t.summary, "release 0.0.1 published by Codertocat");
    let pre = edited("release", &[("/release/prerelease", true.into())]);
    assert_eq!(
        play("release", &pre).1.scale,
        notes(&["B3", "D4", "F#4", "A4"])
    );
    for action in ["created", "released", "edited"] {
        ignored("release", &edited("release", &[("/action", action.into())]));
    }
}

#[test]
fn a_star_is_a_high_pluck_sparkle_and_watch_started_too() {
    let (_, p, t) = play("star", fixture("star").as_bytes());
    assert_eq!(p.instrument_type, InstrumentType::Pluck);
    assert_eq!(p.scale[..3], notes(&["B5", "C#6", "D#6"]));
    assert_close(p.density, 0.352_679_677_307_463);
    assert_eq!(t.summary, "starred by Codertocat (1 star)");
    let watch = edited("star", &[("/action", "started".into())]);
    assert_eq!(
        play("watch", &watch).1.instrument_type,
        InstrumentType::Pluck
    );
    ignored("star", &edited("star", &[("/action", "deleted".into())]));
}

#[test]
fn a_fork_names_the_new_repository() {
    let (repo, p, t) = play("fork", fixture("fork").as_bytes());
    assert_eq!(repo, "Codertocat/Hello-World");
    assert_eq!(p.pattern, Pattern::Arpeggio);
    assert_close(p.density, 0.370_230_170_543_128);
    assert_eq!(
        t.summary,
        "forked to Octocoders/Hello-World by Octocoders (1 fork)"
    );
}

#[test]
fn workflow_success_chimes_major_and_failure_is_minor_noise() {
    let (repo, ok, t) = play("workflow_run", fixture("workflow_run").as_bytes());
    assert_eq!(repo, "octo-org/octo-repo");
    assert_eq!(ok.instrument_type, InstrumentType::Metal);
    // Key G# (octo-org/octo-repo), default branch master: no shift.
    assert_eq!(
        ok.scale,
        notes(&["G#5", "A#5", "C6", "C#6", "D#6", "F6", "G6", "G#6"])
    );
    assert_eq!(t.summary, "workflow success on master (run #163)");
    let failed = edited(
        "workflow_run",
        &[
            ("/workflow_run/conclusion", "failure".into()),
            ("/workflow_run/name", "CI".into()),
        ],
    );
    let (_, p, t) = play("workflow_run", &failed);
    assert_eq!(p.instrument_type, InstrumentType::Noise);
    assert_eq!(
        p.scale[..2],
        notes(&["G#3", "A3"]),
        "phrygian: a flat second"
    );
    assert_eq!(p.tempo, 150.0);
    assert_eq!(t.summary, "CI failure on master (run #163)");
    let retried = edited(
        "workflow_run",
        &[
            ("/workflow_run/conclusion", "timed_out".into()),
            ("/workflow_run/run_attempt", 3.into()),
        ],
    );
    assert_eq!(play("workflow_run", &retried).1.tempo, 180.0);
    for (pointer, value) in [
        ("/action", "requested"),
        ("/workflow_run/conclusion", "skipped"),
    ] {
        ignored(
            "workflow_run",
            &edited("workflow_run", &[(pointer, value.into())]),
        );
    }
}

#[test]
fn creating_and_deleting_refs_go_up_and_down() {
    let (_, created, t) = play("create", fixture("create").as_bytes());
    assert_eq!(
        (created.pattern, created.scale[0].as_str()),
        (Pattern::Ascending, "B5")
    );
    assert_eq!(t.summary, "tag simple-tag created by Codertocat");
    let (_, deleted, t) = play("delete", fixture("delete").as_bytes());
    assert_eq!(
        (deleted.pattern, deleted.scale[0].as_str()),
        (Pattern::Descending, "B3")
    );
    assert_eq!(t.summary, "tag simple-tag deleted by Codertocat");
}
