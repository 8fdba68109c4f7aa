//! Scheduled transport changes over `/ws` and SSE: a command with `at` or `quantum` is
//! announced at once (`scheduled` on the `state_update`) and applied by the server at its
//! instant; ticks and `sync_response` show the old transport before and the new after; a
//! newer command replaces or cancels the pending one; bad instants are `INVALID_SCHEDULE`.
//!
//! Assertions are on values the server states (`at`, `anchorTime`, versions, `serverTime`
//! stamps), never on when the test happened to receive a frame.

mod common;
mod support;

use bandsync_client::protocol::client::{Pause, Play, Schedule, Seek, SetTempo};
use bandsync_client::protocol::server::{
    ScheduledAction, ScheduledChange, ServerEvent, SessionState,
};
use bandsync_client::protocol::{ClientEvent, ErrorCode, RequestId, Transport};
use bandsync_client::WsClient;
use common::TestServer;
use std::time::Duration;
use support::*;

/// Beats computed by the server and by the test from the same transport agree this well
/// (serde_json may read an epoch-ms time one ulp off).
const EPS: f64 = 1e-4;

fn at(at: f64) -> Schedule {
    Schedule {
        at: Some(at),
        quantum: None,
    }
}

fn quantum(quantum: f64) -> Schedule {
    Schedule {
        at: None,
        quantum: Some(quantum),
    }
}

fn tempo_at(tempo: f64, schedule: Schedule) -> ClientEvent {
    ClientEvent::SetTempo(SetTempo { tempo, schedule })
}

fn play_at(beat: Option<f64>, schedule: Schedule) -> ClientEvent {
    ClientEvent::Play(Play { beat, schedule })
}

fn seek_at(beat: f64, schedule: Schedule) -> ClientEvent {
    ClientEvent::Seek(Seek { beat, schedule })
}

fn pause_at(schedule: Schedule) -> ClientEvent {
    ClientEvent::Pause(Pause { schedule })
}

/// A leader and a follower in `session`, playing when `playing`; returns the follower's
/// view of the state after that.
async fn band(server: &TestServer, session: &str, playing: bool) -> (WsClient, WsClient) {
    let (mut leader, _) = join_leader(server, session).await;
    let (mut follower, _) = join_follower(server, session).await;
    if playing {
        leader.send(play(None)).await.unwrap();
        assert!(next_state_update(&mut follower).await.transport.playing);
    }
    (leader, follower)
}

/// The announcement of a scheduled change: the next `state_update`, which must carry one.
async fn announcement(client: &mut WsClient) -> (SessionState, ScheduledChange) {
    let state = next_state_update(client).await;
    let change = state
        .scheduled
        .unwrap_or_else(|| panic!("expected an announcement, got {state:?}"));
    (state, change)
}

/// What a follower hears until the next `state_update`: the ticks before it, and it.
async fn ticks_until_state_update(client: &mut WsClient) -> (Vec<(f64, f64, f64)>, SessionState) {
    let mut ticks = Vec::new();
    loop {
        match next_skipping(client, &["room_stats"]).await.event {
            ServerEvent::ScrollTick(t) => ticks.push((t.server_time, t.beat, t.tempo)),
            ServerEvent::StateUpdate(state) => return (ticks, state),
            other => panic!("expected ticks or a state_update, got {other:?}"),
        }
    }
}

fn assert_on(transport: &Transport, (time, beat, tempo): (f64, f64, f64), what: &str) {
    let expected = transport.position_at(time);
    assert!(
        (beat - expected).abs() < EPS,
        "{what}: tick beat {beat} at {time} off the model {expected} ({transport:?})"
    );
    assert_eq!(tempo, transport.tempo, "{what}: tick tempo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_tempo_change_is_announced_at_once_and_applied_at_its_instant() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-tempo", true).await;
    let before = sync(&mut follower).await;
    let when = before.server_time + 400.0;
    leader.send(tempo_at(90.0, at(when))).await.expect("send");

    let (announced, change) = announcement(&mut follower).await;
    assert_eq!(announced.version, before.version + 1);
    assert_eq!(
        announced.transport, before.transport,
        "the old transport holds"
    );
    assert_eq!(change.action, ScheduledAction::SetTempo);
    assert_eq!(change.at, when);
    assert_eq!(
        change.transport.anchor_time, when,
        "anchored at its instant"
    );
    assert_eq!(change.transport.tempo, 90.0);
    assert!(change.transport.playing);
    let old_position = before.transport.position_at(when);
    assert!(
        (change.transport.beat - old_position).abs() < EPS,
        "no jump in position: {} then {old_position}",
        change.transport.beat
    );
    assert!(change.id < 1 << 53, "ids stay exact in JavaScript");

    // Before the instant, `sync_response` shows the old transport and the pending change.
    let early = sync(&mut follower).await;
    if early.server_time < when {
        assert_eq!(early.transport, before.transport);
        assert_eq!(early.scheduled, Some(change));
    }

    let (ticks, applied) = ticks_until_state_update(&mut follower).await;
    for tick in ticks.iter().filter(|t| t.0 < when) {
        assert_on(&before.transport, *tick, "before the change");
    }
    assert_eq!(
        applied.version,
        announced.version + 1,
        "one activation commit"
    );
    assert_eq!(applied.transport, change.transport);
    assert_eq!(applied.scheduled, None);
    assert!(
        applied.server_time >= when,
        "applied at its instant, not before"
    );

    let after: Vec<_> = ticks_until_n(&mut follower, 10).await;
    for tick in after {
        assert!(tick.0 >= when);
        assert_on(&change.transport, tick, "after the change");
    }
    let late = sync(&mut follower).await;
    assert_eq!((late.transport, late.scheduled), (change.transport, None));
}

/// The next `n` ticks as `(serverTime, beat, tempo)`; fails on a state_update.
async fn ticks_until_n(client: &mut WsClient, n: usize) -> Vec<(f64, f64, f64)> {
    let mut ticks = Vec::with_capacity(n);
    while ticks.len() < n {
        let t = next_tick(client).await;
        ticks.push((t.server_time, t.beat, t.tempo));
    }
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantized_start_from_pause_lands_on_a_bar_of_the_paused_timeline() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-q-paused", false).await;
    let before = sync(&mut follower).await;
    leader
        .send(play_at(None, quantum(4.0)))
        .await
        .expect("send");
    let (announced, change) = announcement(&mut follower).await;
    assert_eq!(change.action, ScheduledAction::Play);
    assert!(!announced.transport.playing);
    // Bars of 4 beats at 120 bpm (2000 ms) run on from the pause's anchor.
    let bars = (change.at - before.transport.anchor_time) / 2000.0;
    assert!(
        (bars - bars.round()).abs() < 1e-6,
        "{bars} bars after the pause"
    );
    assert!(
        change.at >= announced.server_time + 100.0 - 1.0,
        "at least the lead ahead"
    );
    assert_eq!(change.transport.beat, before.transport.beat);
    assert!(change.transport.playing);

    // Nothing ticks before the instant; the first tick after it starts the count.
    let (ticks, applied) = ticks_until_state_update(&mut follower).await;
    assert!(
        ticks.is_empty(),
        "ticks before a scheduled start: {ticks:?}"
    );
    assert_eq!(applied.transport, change.transport);
    let first = next_tick(&mut follower).await;
    assert!(first.server_time >= change.at);
    assert_eq!(first.seq, 1, "the tick count starts at the scheduled start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantized_changes_while_playing_land_on_a_bar_boundary() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-q-playing", true).await;
    let playing = sync(&mut follower).await.transport;
    leader
        .send(tempo_at(150.0, quantum(4.0)))
        .await
        .expect("send");
    let (announced, change) = announcement(&mut follower).await;
    let bar = playing.position_at(change.at) / 4.0;
    assert!((bar - bar.round()).abs() < 1e-6, "position {bar} bars");
    assert!(change.at >= announced.server_time + 99.0);
    assert!((change.transport.beat - bar * 4.0).abs() < EPS);

    let applied = next_state_update(&mut follower).await;
    assert_eq!(applied.transport, change.transport);
    // A quantized pause stops exactly on a bar of the new tempo.
    leader.send(pause_at(quantum(2.0))).await.expect("send");
    let (_, stop) = announcement(&mut follower).await;
    assert!(!stop.transport.playing);
    let beat = stop.transport.beat / 2.0;
    assert!((beat - beat.round()).abs() < 1e-6, "stopped at {beat} bars");
    let stopped = next_state_update(&mut follower).await;
    assert_eq!(stopped.transport, stop.transport);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_command_replaces_the_pending_change_and_an_immediate_one_cancels_it() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-supersede", true).await;
    let now = sync(&mut follower).await.server_time;
    leader.send(tempo_at(90.0, at(now + 800.0))).await.unwrap();
    let (_, first) = announcement(&mut follower).await;
    leader.send(seek_at(32.0, at(now + 1200.0))).await.unwrap();
    let (_, second) = announcement(&mut follower).await;
    assert_ne!(second.id, first.id);
    assert_eq!(second.action, ScheduledAction::Seek);
    assert_eq!(
        second.transport.tempo, 120.0,
        "the first change never applied"
    );

    // A message change leaves it pending (and says so).
    leader.send(message("chorus")).await.unwrap();
    let note = next_state_update(&mut follower).await;
    assert_eq!(note.scheduled, Some(second));

    // `set_tempo` to the current tempo changes nothing now, but cancels.
    let cancel = next_after(&mut leader, &mut follower, tempo(120.0)).await;
    assert_eq!(cancel.scheduled, None);
    assert_eq!(cancel.version, note.version + 1);
    assert_eq!(cancel.transport, note.transport);
    let quiet = (now + 1400.0 - sync(&mut follower).await.server_time).max(0.0);
    assert_no_frame_of(
        &mut follower,
        &["state_update"],
        Duration::from_millis(quiet as u64),
    )
    .await;
    let after = sync(&mut follower).await;
    assert_eq!(after.transport, note.transport, "nothing was applied");

    // `pause` while paused cancels a pending start the same way.
    leader
        .send(ClientEvent::Pause(Pause::default()))
        .await
        .unwrap();
    let paused = next_state_update(&mut follower).await;
    let now = paused.server_time;
    leader.send(play_at(None, at(now + 600.0))).await.unwrap();
    announcement(&mut follower).await;
    let cancelled = next_after(&mut leader, &mut follower, pause_at(Schedule::default())).await;
    assert_eq!(
        (cancelled.scheduled, cancelled.transport),
        (None, paused.transport)
    );
}

/// Sends `event` from the leader; the follower's next `state_update`.
async fn next_after(
    leader: &mut WsClient,
    follower: &mut WsClient,
    event: ClientEvent,
) -> SessionState {
    leader.send(event).await.expect("send");
    next_state_update(follower).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instants_outside_the_bounds_are_refused_and_late_ones_within_apply_at_once() {
    // A wide tolerance, so that "within" holds however slow the machine is.
    let server = TestServer::start_with(|c| c.schedule_past_tolerance_ms = 2000).await;
    let (mut leader, mut follower) = band(&server, "sched-bounds", false).await;
    let now = sync(&mut leader).await.server_time;
    let refused = [
        tempo_at(90.0, at(now - 5000.0)),
        tempo_at(90.0, at(now + 120_000.0)),
        seek_at(4.0, at(now + 61_000.0)),
    ];
    for event in refused {
        assert_eq!(
            expect_error(&mut leader, event).await,
            ErrorCode::InvalidSchedule
        );
    }
    // 64 beats at 20 bpm from a pause: the next bar is 192 s away.
    let slow = next_after(&mut leader, &mut follower, tempo(20.0)).await;
    assert_eq!(
        expect_error(&mut leader, play_at(None, quantum(64.0))).await,
        ErrorCode::InvalidSchedule
    );
    let id = RequestId::from("both");
    let both = r#"{"type":"play","id":"both","data":{"at":1,"quantum":4}}"#;
    match raw_request(&mut leader, both, &id).await.event {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::InvalidSchedule),
        other => panic!("expected an error, got {other:?}"),
    }
    let late = format!(
        r#"{{"type":"seek","id":"late","data":{{"beat":8,"at":{}}}}}"#,
        now - 1000.0
    );
    leader.send_raw_text(late).await.unwrap();
    let applied = next_state_update(&mut follower).await;
    assert_eq!(applied.scheduled, None, "a late instant applies at once");
    assert_eq!(applied.transport.beat, 8.0);
    assert_eq!(applied.version, slow.version + 1);
    assert!(
        applied.transport.anchor_time > now,
        "applied now, not in the past"
    );

    // A follower may not schedule.
    let now = sync(&mut follower).await.server_time;
    assert_eq!(
        expect_error(&mut follower, tempo_at(100.0, at(now + 500.0))).await,
        ErrorCode::NotLeader
    );
}

/// A client that knows nothing of `scheduled` keeps the plain `transport` of each
/// `state_update`, and is right at every tick: the change reaches it when it takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ignoring_schedules_is_right_at_every_sampled_instant() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-oblivious", true).await;
    let mut transport = sync(&mut follower).await.transport;
    let now = sync(&mut leader).await.server_time;
    leader.send(seek_at(64.0, at(now + 300.0))).await.unwrap();
    leader.send(message("jump")).await.unwrap();
    let mut checked = (0, 0);
    let end = now + 700.0;
    loop {
        let frame = next_skipping(&mut follower, &["room_stats"]).await;
        match frame.event {
            ServerEvent::StateUpdate(state) => transport = state.transport,
            ServerEvent::ScrollTick(t) => {
                assert_on(
                    &transport,
                    (t.server_time, t.beat, t.tempo),
                    "oblivious client",
                );
                if t.server_time < now + 300.0 {
                    checked.0 += 1;
                } else {
                    checked.1 += 1;
                    assert!(t.beat >= 64.0, "the jump applied at its instant");
                }
                if t.server_time > end {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        checked.0 > 3 && checked.1 > 3,
        "ticks on both sides: {checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_listeners_get_the_announcement_and_the_activation() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "sched-sse").await;
    let mut listener = sse(&server, "sched-sse", None).await;
    let opening = sse_next_skipping(&mut listener, &["room_stats"]).await;
    assert_eq!(opening.frame.event.type_name(), "snapshot");
    let now = sync(&mut leader).await.server_time;
    leader
        .send(play_at(Some(4.0), at(now + 250.0)))
        .await
        .unwrap();
    let skip = ["room_stats", "scroll_tick"];
    let ServerEvent::StateUpdate(announced) =
        sse_next_skipping(&mut listener, &skip).await.frame.event
    else {
        panic!("expected the announcement")
    };
    let change = announced.scheduled.expect("scheduled");
    assert_eq!(change.transport.beat, 4.0);
    let ServerEvent::StateUpdate(applied) =
        sse_next_skipping(&mut listener, &skip).await.frame.event
    else {
        panic!("expected the activation")
    };
    assert_eq!(
        (applied.transport, applied.scheduled),
        (change.transport, None)
    );
    assert_eq!(applied.version, announced.version + 1);
    assert!(applied.server_time >= change.at);
}

/// `/sessions/{id}` shows the pending change, then the transport it brought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_api_shows_the_pending_change_then_its_transport() {
    let server = TestServer::start().await;
    let (mut leader, mut follower) = band(&server, "sched-api", false).await;
    let now = sync(&mut leader).await.server_time;
    leader.send(tempo_at(100.0, at(now + 300.0))).await.unwrap();
    let (_, change) = announcement(&mut follower).await;
    let (status, info) = get_json(&server, "/sessions/sched-api").await;
    assert_eq!(status, 200);
    if info["serverTime"].as_f64().unwrap() < change.at {
        assert_eq!(info["scheduled"]["id"].as_u64(), Some(change.id));
        assert_eq!(info["transport"]["tempo"].as_f64(), Some(120.0));
    }
    next_state_update(&mut follower).await;
    let (_, info) = get_json(&server, "/sessions/sched-api").await;
    assert!(info.get("scheduled").is_none(), "{info}");
    assert_eq!(info["transport"]["tempo"].as_f64(), Some(100.0));
    assert_eq!(info["transport"]["anchorTime"].as_f64(), Some(change.at));
}
