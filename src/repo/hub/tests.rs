use super::*;
use crate::repo::composition::Meta;
use bandsync_protocol::repo::{MusicalParams, Trigger};
use bandsync_render::Rendered;

fn hub(retained_bytes: usize) -> Hub {
    let limits = OutboxLimits {
        max_frames: 8,
        max_bytes: 64 * 1024,
        max_audio_frames: 2,
    };
    Hub::new(limits, retained_bytes)
}

fn composition(repo: &str, seed: u32, timestamp_ms: u64) -> Arc<Composition> {
    let audio = Arc::new(Rendered {
        channels: [vec![0.5; 100], vec![-0.5; 100]],
    });
    let meta = Meta {
        repo_id: repo.into(),
        params: MusicalParams {
            seed,
            ..MusicalParams::default()
        },
        trigger: Trigger {
            kind: "test".into(),
            event: None,
            action: None,
            delivery: None,
            sender: None,
            summary: "t".into(),
        },
        timestamp_ms,
        render_ms: 0.0,
    };
    Arc::new(Composition::encode(audio, meta))
}

fn drain(listener: &Listener) -> (Vec<RepoFrame>, crate::outbox::Drained) {
    let mut out = Vec::new();
    let drained = listener.outbox.drain_into(&mut out);
    (out, drained)
}

fn seeds(frames: &[RepoFrame]) -> Vec<u32> {
    frames
        .iter()
        .filter_map(|f| match f {
            RepoFrame::Composition(c) => Some(c.meta.params.seed),
            RepoFrame::Message(_) => None,
        })
        .collect()
}

#[test]
fn a_listener_gets_connected_then_compositions_of_its_repository_only() {
    let hub = hub(1 << 30);
    let a = hub.subscribe("Octo/One", "a".into(), Encoding::Json, 1, None);
    let b = hub.subscribe("octo/two", "b".into(), Encoding::Json, 1, None);
    let (frames, _) = drain(&a);
    assert!(
        matches!(&frames[..], [RepoFrame::Message(m)] if m.starts_with(b"data: {\"data\":{\"clientId\":\"a\""))
    );
    assert_eq!(hub.broadcast(composition("octo/one", 1, 10)), 1);
    assert_eq!(seeds(&drain(&a).0), vec![1]);
    assert_eq!(seeds(&drain(&b).0), Vec::<u32>::new());
    assert_eq!((hub.active_clients(), hub.active_repos()), (2, 2));
    assert_eq!(hub.listener_count("OCTO/ONE"), 1);
    hub.unsubscribe(&a);
    assert_eq!((hub.active_clients(), hub.active_repos()), (1, 1));
}

#[test]
fn a_late_listener_starts_with_the_latest_composition() {
    let hub = hub(1 << 30);
    hub.broadcast(composition("octo/one", 1, 10));
    hub.broadcast(composition("octo/one", 2, 20));
    let late = hub.subscribe("octo/one", "late".into(), Encoding::F32, 30, None);
    assert_eq!(seeds(&drain(&late).0), vec![2]);
    assert_eq!(hub.buffers_created(), 2);
}

#[test]
fn a_slow_listener_keeps_the_newest_compositions_and_is_not_closed() {
    let hub = hub(1 << 30);
    let slow = hub.subscribe("octo/one", "slow".into(), Encoding::Json, 1, None);
    for seed in 1..=5 {
        hub.broadcast(composition("octo/one", seed, u64::from(seed)));
    }
    let (frames, drained) = drain(&slow);
    assert_eq!(seeds(&frames), vec![4, 5]);
    assert_eq!(drained.dropped_audio, 3);
    assert!(drained.closed.is_none());
}

#[test]
fn the_latest_compositions_stay_within_their_budget() {
    let one = composition("r/0", 0, 0).retained_bytes();
    let h = hub(one * 2 + one / 2);
    for n in 0..4u32 {
        h.broadcast(composition(&format!("r/{n}"), n, u64::from(n)));
    }
    let (kept, bytes) = h.retained_compositions();
    assert_eq!(kept, 2);
    assert!(bytes <= one * 2 + one / 2);
    assert!(h.latest_of("r/0").is_none() && h.latest_of("r/3").is_some());
    // The newest stays even when it alone is over the budget.
    let tiny = hub(1);
    tiny.broadcast(composition("r/9", 9, 9));
    assert!(tiny.latest_of("r/9").is_some());
}

#[test]
fn an_older_remote_composition_never_replaces_a_newer_latest() {
    let hub = hub(1 << 30);
    hub.broadcast(composition("octo/one", 2, 200));
    hub.keep_latest(composition("octo/one", 1, 100));
    assert_eq!(hub.latest_of("octo/one").unwrap().meta.params.seed, 2);
    hub.keep_latest(composition("octo/one", 3, 300));
    assert_eq!(hub.latest_of("octo/one").unwrap().meta.params.seed, 3);
}

#[test]
fn the_sweep_closes_listeners_that_took_nothing() {
    let hub = hub(1 << 30);
    let idle = hub.subscribe("octo/one", "idle".into(), Encoding::Json, 1, None);
    let busy = hub.subscribe("octo/one", "busy".into(), Encoding::Json, 1, None);
    std::thread::sleep(Duration::from_millis(30));
    busy.touch();
    assert_eq!(hub.sweep(Duration::from_millis(20)), 1);
    assert!(idle.outbox.is_closed());
    assert!(!busy.outbox.is_closed());
    // Already closed: not counted again.
    assert_eq!(hub.sweep(Duration::from_millis(20)), 0);
}

#[test]
fn heartbeats_and_errors_reach_every_listener_of_their_scope() {
    let hub = hub(1 << 30);
    let a = hub.subscribe("octo/one", "a".into(), Encoding::Json, 1, None);
    let b = hub.subscribe("octo/two", "b".into(), Encoding::Json, 1, None);
    drain(&a);
    drain(&b);
    hub.heartbeat(5);
    hub.broadcast_error("octo/one", "RENDER_ERROR", "boom", 6);
    let texts = |l: &Listener| -> Vec<String> {
        drain(l)
            .0
            .iter()
            .map(|f| match f {
                RepoFrame::Message(m) => String::from_utf8(m.to_vec()).unwrap(),
                RepoFrame::Composition(_) => String::new(),
            })
            .collect()
    };
    let a_texts = texts(&a);
    assert_eq!(a_texts.len(), 2);
    assert_eq!(
        a_texts[0],
        "data: {\"timestamp\":5,\"type\":\"heartbeat\"}\n\n"
    );
    assert!(a_texts[1].contains("\"code\":\"RENDER_ERROR\""));
    assert_eq!(texts(&b).len(), 1);
}
