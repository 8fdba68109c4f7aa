//! The fuzz targets, on stable, in the normal suite: every file of the checked-in corpora
//! (`fuzz/corpus/<target>/`) replayed through its target, then property tests feeding each
//! target mutations of those files and generated inputs.
//!
//! The targets' logic is compiled from `fuzz/src/` itself, so this suite and
//! `cargo fuzz run` check exactly the same invariants on exactly the same functions; only
//! the input generator differs (libFuzzer's coverage-guided one there, proptest here).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use proptest::prelude::*;
use std::path::PathBuf;

/// Every checked-in input of `target`, with its file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fuzz", "corpus", target]
        .iter()
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{target}: the corpus has {} files",
        files.len()
    );
    files
}

/// Runs `check` on every corpus file of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "fuzz/corpus/{target}/{name} failed");
    }
}

#[test]
fn the_frame_decoder_corpus_replays_clean() {
    replay("frame_decoder", targets::frame_decoder::check);
}

#[test]
fn the_deflate_reader_corpus_replays_clean() {
    replay("deflate_reader", targets::deflate_reader::check);
}

#[test]
fn the_inflater_corpus_replays_clean() {
    replay("inflater", targets::inflater::check);
}

#[test]
fn the_share_bodies_corpus_replays_clean() {
    replay("share_bodies", targets::share_bodies::check);
}

#[test]
fn the_socketio_packets_corpus_replays_clean() {
    replay("socketio_packets", targets::socketio_packets::check);
}

#[test]
fn the_last_event_id_corpus_replays_clean() {
    replay("last_event_id", targets::last_event_id::check);
}

#[test]
fn the_http_routing_corpus_replays_clean() {
    replay("http_routing", targets::http_routing::check);
}

/// One byte-level edit, as libFuzzer's simplest mutators make them.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    /// Copies a slice of the input over another place (duplicates fields, headers, frames).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), any::<usize>(), 1usize..32).prop_map(|(f, t, n)| Edit::Splice(f, t, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = data.len().max(1);
        match *edit {
            Edit::Replace(at, b) if !data.is_empty() => data[at % len] = b,
            Edit::Insert(at, b) => data.insert(at % (data.len() + 1), b),
            Edit::Remove(at) if !data.is_empty() => {
                data.remove(at % len);
            }
            Edit::Splice(from, to, n) if !data.is_empty() => {
                let from = from % len;
                let piece = data[from..(from + n).min(data.len())].to_vec();
                let to = to % (data.len() + 1);
                data.splice(to..to, piece);
            }
            _ => {}
        }
    }
    data
}

/// A corpus file of `target` with up to eight random edits.
fn mutated(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let files: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, d)| d).collect();
    (
        prop::sample::select(files),
        prop::collection::vec(edit(), 0..8),
    )
        .prop_map(|(data, edits)| apply(data, &edits))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_frames_keep_the_decoder_invariants(data in mutated("frame_decoder")) {
        targets::frame_decoder::check(&data);
    }

    #[test]
    fn generated_envelopes_keep_the_decoder_invariants(
        kind in prop::sample::select(vec![
            "join_session", "leave_session", "set_role", "set_tempo", "play", "pause",
            "seek", "sync_request", "update_message", "heartbeat", "share_start",
            "share_stop", "unknown",
        ]),
        id in prop_oneof![
            Just(String::new()),
            Just(r#","id":null"#.to_owned()),
            any::<i64>().prop_map(|n| format!(r#","id":{n}"#)),
            "[a-z0-9-]{0,12}".prop_map(|s| format!(r#","id":"{s}""#)),
            Just(r#","id":{"nested":1}"#.to_owned()),
        ],
        fields in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "sessionId", "name", "role", "resumeToken", "tempo", "beat", "text",
                    "t0", "token",
                ]),
                prop_oneof![
                    any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite())
                        .prop_map(|f| serde_json::json!(f)),
                    (0i64..500).prop_map(|n| serde_json::json!(n)),
                    "[ -~]{0,40}".prop_map(|s| serde_json::json!(s)),
                    prop::sample::select(vec!["leader", "follower", "my-band"])
                        .prop_map(|s| serde_json::json!(s)),
                    Just(serde_json::Value::Null),
                    Just(serde_json::json!([1, 2])),
                ],
            ),
            0..5,
        ),
    ) {
        let data: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let frame = format!(
            r#"{{"type":"{kind}"{id},"data":{}}}"#,
            serde_json::Value::Object(data)
        );
        targets::frame_decoder::check(frame.as_bytes());
    }

    #[test]
    fn mutated_client_streams_rewrite_the_same_however_split(
        data in mutated("deflate_reader")
    ) {
        targets::deflate_reader::check(&data);
    }

    #[test]
    fn arbitrary_client_streams_rewrite_the_same_however_split(
        data in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        targets::deflate_reader::check(&data);
    }

    #[test]
    fn mutated_payloads_inflate_within_the_cap(data in mutated("inflater")) {
        targets::inflater::check(&data);
    }

    #[test]
    fn arbitrary_payloads_inflate_within_the_cap(
        data in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        targets::inflater::check(&data);
    }

    #[test]
    fn socketio_bodies_keep_the_packet_invariants(
        data in prop_oneof![
            mutated("socketio_packets"),
            "4[0-6][0-9]{0,17}\\[\"(join_session|set_tempo|seek|nope)\",\\{\"(tempo|beat|sessionId|id)\":[0-9a-z\"]{0,6}\\}\\]"
                .prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..64),
        ]
    ) {
        targets::socketio_packets::check(&data);
    }

    #[test]
    fn last_event_ids_parse_exactly_as_decimal_u64s(
        data in prop_oneof![
            mutated("last_event_id"),
            "[ \t]{0,2}\\+?[0-9]{0,22}[ \t]{0,2}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..24),
        ]
    ) {
        targets::last_event_id::check(&data);
    }
}

proptest! {
    // Each case starts a whole server (an engine thread): fewer cases, same checks.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_share_scripts_keep_the_share_api_invariants(data in mutated("share_bodies")) {
        targets::share_bodies::check(&data);
    }

    #[test]
    fn mutated_requests_keep_the_routing_invariants(data in mutated("http_routing")) {
        targets::http_routing::check(&data);
    }
}
