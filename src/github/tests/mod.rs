//! `parse_delivery` end to end on trimmed copies of GitHub's documented example payloads
//! (`tests/fixtures/github/`), and on everything a hostile sender could put in their place.
//! Expected keys, tempos and densities were computed independently (Python: FNV-1a of the
//! repository name; the documented formulas), not by calling the code under test.

use super::mapper::MAX_SUMMARY_CHARS;
use super::payload::{CommitStats, Labels, Payload, PullRequest, Repository, WorkflowRun};
use super::*;
use bandsync_protocol::repo::{InstrumentType, Pattern};
use http::HeaderValue;
use proptest::prelude::*;

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
/// `fnv1a32(DELIVERY)`, computed with Python.
const DELIVERY_SEED: u32 = 3_790_884_587;

fn fixture(name: &str) -> &'static str {
    match name {
        "push" => include_str!("../../../tests/fixtures/github/push.json"),
        "push_deleted" => include_str!("../../../tests/fixtures/github/push_deleted.json"),
        "pull_request" => include_str!("../../../tests/fixtures/github/pull_request_closed.json"),
        "review" => include_str!("../../../tests/fixtures/github/pull_request_review.json"),
        "issues" => include_str!("../../../tests/fixtures/github/issues_opened.json"),
        "issue_comment" => include_str!("../../../tests/fixtures/github/issue_comment.json"),
        "release" => include_str!("../../../tests/fixtures/github/release_published.json"),
        "star" => include_str!("../../../tests/fixtures/github/star_created.json"),
        "fork" => include_str!("../../../tests/fixtures/github/fork.json"),
        "workflow_run" => {
            include_str!("../../../tests/fixtures/github/workflow_run_completed.json")
        }
        "create" => include_str!("../../../tests/fixtures/github/create_tag.json"),
        "delete" => include_str!("../../../tests/fixtures/github/delete_tag.json"),
        "ping" => include_str!("../../../tests/fixtures/github/ping.json"),
        other => panic!("no fixture {other}"),
    }
}

/// A fixture with some fields replaced or added (`pointer` as in RFC 6901).
fn edited(name: &str, edits: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_str(fixture(name)).unwrap();
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let object = v.pointer_mut(parent).and_then(|p| p.as_object_mut());
        object
            .unwrap_or_else(|| panic!("{pointer}"))
            .insert(key.to_owned(), value.clone());
    }
    serde_json::to_vec(&v).unwrap()
}

fn headers(event: &str, delivery: &str, content_type: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(EVENT_HEADER, HeaderValue::from_str(event).unwrap());
    h.insert(DELIVERY_HEADER, HeaderValue::from_str(delivery).unwrap());
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    }
    h
}

fn deliver(event: &str, body: &[u8]) -> Result<Delivery, WebhookError> {
    parse_delivery(
        &headers(event, DELIVERY, Some("application/json")),
        body,
        None,
    )
}

fn play(event: &str, body: &[u8]) -> (String, MusicalParams, Trigger) {
    match deliver(event, body).unwrap().action {
        ParsedAction::Play {
            repo,
            params,
            trigger,
        } => (repo, params, trigger),
        other => panic!("{event} should play, got {other:?}"),
    }
}

fn ignored(event: &str, body: &[u8]) -> String {
    match deliver(event, body).unwrap().action {
        ParsedAction::Ignored { reason, .. } => reason,
        other => panic!("{event} should be ignored, got {other:?}"),
    }
}

fn notes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

mod mapping;

#[test]
fn ping_answers_with_zen_and_repository() {
    let d = deliver("ping", fixture("ping").as_bytes()).unwrap();
    assert_eq!((d.id.as_str(), d.event.as_str()), (DELIVERY, "ping"));
    assert_eq!(
        d.action,
        ParsedAction::Ping {
            zen: Some("Anything added dilutes everything else.".into()),
            repo: Some("Octocoders/Hello-World".into()),
        }
    );
    let org_hook = deliver(
        "ping",
        br#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
    );
    assert!(matches!(
        org_hook.unwrap().action,
        ParsedAction::Ping { repo: None, .. }
    ));
}

#[test]
fn unmapped_events_and_payloads_without_a_repository_are_ignored_not_refused() {
    let reason = ignored("gollum", fixture("push").as_bytes());
    assert!(reason.contains("gollum"), "{reason}");
    let d = deliver("push", br#"{"ref":"refs/heads/main","commits":[]}"#).unwrap();
    assert!(matches!(d.action, ParsedAction::Ignored { repo: None, .. }));
}

#[test]
fn the_same_delivery_maps_identically_and_another_changes_only_the_seed() {
    let body = fixture("push").as_bytes();
    assert_eq!(
        deliver("push", body).unwrap(),
        deliver("push", body).unwrap()
    );
    let h = headers("push", "0a1b2c3d-aaaa-bbbb-cccc-000000000001", None);
    let other = parse_delivery(&h, body, None).unwrap();
    let (ParsedAction::Play { params: a, .. }, ParsedAction::Play { params: b, .. }) =
        (deliver("push", body).unwrap().action, other.action)
    else {
        panic!("both play");
    };
    assert_ne!(a.seed, b.seed);
    assert_eq!(
        MusicalParams { seed: 0, ..a },
        MusicalParams { seed: 0, ..b }
    );
}

#[test]
fn with_a_secret_only_correctly_signed_deliveries_pass() {
    let secret = b"It's a Secret to Everybody";
    let body = fixture("push").as_bytes();
    let mut h = headers("push", DELIVERY, Some("application/json"));
    let check = |h: &HeaderMap| parse_delivery(h, body, Some(secret));
    assert_eq!(check(&h).unwrap_err().code(), "INVALID_SIGNATURE");
    let good = signature::sign(secret, body);
    h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&good).unwrap());
    assert!(matches!(
        check(&h).unwrap().action,
        ParsedAction::Play { .. }
    ));
    let wrong = signature::sign(b"not the secret", body);
    h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&wrong).unwrap());
    assert_eq!(check(&h).unwrap_err().status(), 401);
    // Two signature headers, one right: refused, never "first one wins".
    h.append(SIGNATURE_HEADER, HeaderValue::from_str(&good).unwrap());
    assert_eq!(check(&h).unwrap_err().status(), 401);
    // The signature is checked before anything else: no event header, still 401.
    let mut bare = HeaderMap::new();
    bare.insert(SIGNATURE_HEADER, HeaderValue::from_str(&wrong).unwrap());
    assert_eq!(
        parse_delivery(&bare, body, Some(secret))
            .unwrap_err()
            .status(),
        401
    );
    // Without a secret, signatures are not looked at.
    assert!(parse_delivery(&h, body, None).is_ok());
}

#[test]
fn event_and_delivery_headers_are_required_and_bounded() {
    let body = fixture("push").as_bytes();
    let code = |h: &HeaderMap| {
        parse_delivery(h, body, None)
            .map(|_| "ok")
            .unwrap_or_else(|e| e.code())
    };
    let mut h = headers("push", DELIVERY, None);
    h.remove(EVENT_HEADER);
    assert_eq!(code(&h), "MISSING_EVENT");
    for bad_event in ["", "Push", "push event", &"a".repeat(65)] {
        let mut h = headers("push", DELIVERY, None);
        h.insert(EVENT_HEADER, HeaderValue::from_str(bad_event).unwrap());
        assert_eq!(code(&h), "MISSING_EVENT", "{bad_event:?}");
    }
    let mut twice = headers("push", DELIVERY, None);
    twice.append(EVENT_HEADER, HeaderValue::from_static("star"));
    assert_eq!(code(&twice), "MISSING_EVENT");
    let mut h = headers("push", DELIVERY, None);
    h.remove(DELIVERY_HEADER);
    assert_eq!(code(&h), "MISSING_DELIVERY");
    for bad_id in ["", "abc def", "../x", "é", &"a".repeat(101)] {
        let mut h = headers("push", DELIVERY, None);
        h.insert(
            DELIVERY_HEADER,
            HeaderValue::from_bytes(bad_id.as_bytes()).unwrap(),
        );
        assert_eq!(code(&h), "MISSING_DELIVERY", "{bad_id:?}");
    }
    assert_eq!(code(&headers("push", &"a".repeat(100), None)), "ok");
}

#[test]
fn form_encoded_deliveries_carry_the_json_in_payload() {
    let json = fixture("star");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish();
    let secret = b"s3cret";
    let mut h = headers("star", DELIVERY, Some("application/x-www-form-urlencoded"));
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&signature::sign(secret, form.as_bytes())).unwrap(),
    );
    let from_form = parse_delivery(&h, form.as_bytes(), Some(secret)).unwrap();
    assert_eq!(from_form, deliver("star", json.as_bytes()).unwrap());
    let empty = parse_delivery(&h, b"other=1", None).unwrap_err();
    assert_eq!(empty.code(), "INVALID_PAYLOAD");
}

#[test]
fn content_types_other_than_json_and_form_are_refused() {
    let body = fixture("push").as_bytes();
    let ok = |ct: &str| parse_delivery(&headers("push", DELIVERY, Some(ct)), body, None);
    assert!(ok("application/json; charset=utf-8").is_ok());
    assert!(ok("Application/JSON").is_ok());
    for ct in ["text/plain", "application/xml", "multipart/form-data"] {
        assert_eq!(ok(ct).unwrap_err().status(), 415, "{ct}");
    }
}

#[test]
fn malformed_payloads_are_400_with_a_bounded_message() {
    let long = format!(r#"{{"commits": "{}"}}"#, "x".repeat(10_000));
    let negative = edited("pull_request", &[("/pull_request/additions", (-5).into())]);
    let bodies: [&[u8]; 7] = [
        b"",
        b"[]",
        b"null",
        b"not json",
        br#"{"repository": {"full_name": 7}}"#,
        long.as_bytes(),
        &negative,
    ];
    for body in bodies {
        let err = deliver("pull_request", body).unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "INVALID_PAYLOAD"));
        assert!(err.to_string().chars().count() < 250, "{err}");
    }
}

#[test]
fn a_repository_name_the_streams_cannot_serve_is_refused() {
    for name in ["a/b/c", "../etc", "owner/", "has space/x", &"a".repeat(150)] {
        let body = edited("star", &[("/repository/full_name", name.into())]);
        assert_eq!(
            deliver("star", &body).unwrap_err().code(),
            "INVALID_REPO_ID"
        );
    }
}

#[test]
fn bodies_over_the_cap_are_413_before_any_work() {
    let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    let err = parse_delivery(&HeaderMap::new(), &huge, Some(b"k")).unwrap_err();
    assert_eq!((err.status(), err.code()), (413, "PAYLOAD_TOO_LARGE"));
}

#[test]
fn hostile_text_becomes_one_bounded_line() {
    let title = format!("line one\nline two\r\n\u{202e}{}", "x".repeat(5000));
    let body = edited(
        "pull_request",
        &[
            ("/pull_request/title", title.into()),
            ("/sender/login", "a\nb".into()),
        ],
    );
    let (_, _, t) = play("pull_request", &body);
    assert!(t.summary.chars().count() <= MAX_SUMMARY_CHARS);
    assert!(!t.summary.chars().any(char::is_control), "{:?}", t.summary);
    assert!(t.summary.contains("line one line two"));
    assert_eq!(t.sender.as_deref(), Some("a b"));
}

const EVENTS: [&str; 13] = [
    "push",
    "pull_request",
    "issues",
    "issue_comment",
    "pull_request_review",
    "release",
    "star",
    "watch",
    "fork",
    "workflow_run",
    "create",
    "delete",
    "gollum",
];
const ACTIONS: [&str; 12] = [
    "opened",
    "closed",
    "reopened",
    "synchronize",
    "ready_for_review",
    "created",
    "submitted",
    "published",
    "started",
    "completed",
    "deleted",
    "labeled",
];
const WORDS: [&str; 8] = [
    "success",
    "failure",
    "cancelled",
    "timed_out",
    "approved",
    "changes_requested",
    "commented",
    "tag",
];

fn arbitrary_payload() -> impl Strategy<Value = Payload> {
    let counts = proptest::array::uniform16(any::<u64>());
    let flags = proptest::array::uniform4(any::<bool>());
    let word = proptest::sample::select(&WORDS[..]);
    (
        counts,
        flags,
        proptest::sample::select(&ACTIONS[..]),
        word,
        ".{0,40}",
    )
        .prop_map(|(n, f, action, word, text)| Payload {
            action: Some(action.to_owned()),
            repository: Some(Repository {
                full_name: Some("octo/repo".into()),
                default_branch: f[3].then(|| text.clone()),
                stargazers_count: Some(n[0]),
                forks_count: Some(n[1]),
            }),
            git_ref: Some(format!("refs/heads/{text}")),
            ref_type: Some(word.to_owned()),
            deleted: Some(f[0] && f[1]),
            forced: Some(f[1]),
            commits: CommitStats {
                count: n[2],
                added: n[3],
                removed: n[4],
                modified: n[5],
            },
            pull_request: Some(PullRequest {
                number: Some(n[6]),
                title: Some(text.clone()),
                merged: Some(f[2]),
                commits: Some(n[7]),
                additions: Some(n[8]),
                deletions: Some(n[9]),
                changed_files: Some(n[10]),
                base: None,
            }),
            issue: Some(super::payload::Issue {
                number: Some(n[11]),
                title: Some(text.clone()),
                comments: Some(n[12]),
                state_reason: f[0].then(|| "not_planned".into()),
                labels: Labels {
                    count: n[13],
                    bug: f[2],
                },
            }),
            review: Some(super::payload::Review {
                state: Some(word.to_owned()),
            }),
            workflow_run: Some(WorkflowRun {
                name: Some(text),
                conclusion: Some(word.to_owned()),
                head_branch: None,
                run_number: Some(n[14]),
                run_attempt: Some(n[15]),
            }),
            ..Payload::default()
        })
}

proptest! {
    /// Whatever numbers, actions and names a payload carries, what is played validates,
    /// stays 3-8 seconds long, has a bounded one-line summary, and is the same every time.
    #[test]
    fn every_mapping_validates(
        event in proptest::sample::select(&EVENTS[..]),
        payload in arbitrary_payload(),
        delivery in "[A-Za-z0-9-]{1,100}",
    ) {
        let first = mapper::map(event, &delivery, "octo/repo", &payload);
        prop_assert_eq!(&first, &mapper::map(event, &delivery, "octo/repo", &payload));
        if let mapper::Mapping::Play { params, trigger } = first {
            prop_assert_eq!(params.validate(), Ok(()));
            prop_assert!((3.0..=8.0).contains(&params.duration));
            prop_assert!(trigger.summary.chars().count() <= MAX_SUMMARY_CHARS);
            prop_assert!(!trigger.summary.chars().any(char::is_control));
        }
    }

    /// Arbitrary bytes as a body never panic the parser: they map or are refused.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = deliver("push", &body);
        let h = headers("push", DELIVERY, Some("application/x-www-form-urlencoded"));
        let _ = parse_delivery(&h, &body, Some(b"k"));
        let _ = parse_delivery(&h, &body, None);
    }
}
