//! The chord sheet: `set_sheet` from the leader commits a version and reaches every member
//! and SSE listener as a `sheet` event; joiners find it in their `snapshot`, the session
//! API shows it, it is bounded, setting the same text changes nothing, it survives
//! retention, an SSE listener resuming with `Last-Event-ID` gets it replayed, and a
//! WebSocket resume from before it gets the snapshot rather than a replay that would skip it.

mod common;
mod support;

use bandsync_client::protocol::client::SetSheet;
use bandsync_client::protocol::server::{ServerEvent, Sheet};
use bandsync_client::protocol::validate::MAX_SHEET_BYTES;
use bandsync_client::protocol::{ClientEvent, ErrorCode, JoinSession};
use bandsync_client::WsClient;
use common::TestServer;
use support::*;

const SONG: &str = "{title: Blue Bossa}\n{start_of_verse}\n[Cm7]Here's a [Fm7]song\n";

fn set_sheet(text: &str) -> ClientEvent {
    ClientEvent::SetSheet(SetSheet { text: text.into() })
}

/// The next `sheet` event, skipping ticks, room stats and state updates.
async fn next_sheet(client: &mut WsClient) -> Sheet {
    match next_skipping(client, &["room_stats", "scroll_tick", "state_update"])
        .await
        .event
    {
        ServerEvent::Sheet(sheet) => sheet,
        other => panic!("expected a sheet, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_sheet_reaches_members_listeners_joiners_and_the_session_api() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "songs").await;
    let (mut follower, before) = join_follower(&server, "songs").await;
    assert_eq!(before.sheet, None, "no sheet yet");
    let mut listener = sse(&server, "songs", None).await;
    assert_eq!(
        sse_next(&mut listener).await.frame.event.type_name(),
        "snapshot"
    );

    leader.send(set_sheet(SONG)).await.unwrap();
    let state = next_state_update(&mut follower).await;
    assert_eq!(state.version, before.version + 1);
    let sheet = next_sheet(&mut follower).await;
    assert_eq!(
        (
            sheet.session_id.as_str(),
            sheet.text.as_str(),
            sheet.version
        ),
        ("songs", SONG, state.version)
    );
    assert_eq!(
        next_sheet(&mut leader).await,
        sheet,
        "the leader hears it too"
    );
    let skip = ["room_stats", "scroll_tick", "state_update"];
    match sse_next_skipping(&mut listener, &skip).await.frame.event {
        ServerEvent::Sheet(heard) => assert_eq!(heard, sheet),
        other => panic!("expected the sheet over SSE, got {other:?}"),
    }

    let (_, joiner) = join_follower(&server, "songs").await;
    assert_eq!(joiner.sheet.as_deref(), Some(SONG));
    let (status, info) = get_json(&server, "/sessions/songs").await;
    assert_eq!(status, 200);
    assert_eq!(info["sheet"].as_str(), Some(SONG));

    // An empty text clears it: the event says so, and snapshots have none again.
    leader.send(set_sheet("")).await.unwrap();
    next_state_update(&mut follower).await;
    assert_eq!(next_sheet(&mut follower).await.text, "");
    let (_, later) = join_follower(&server, "songs").await;
    assert_eq!(later.sheet, None);
    assert!(get_json(&server, "/sessions/songs")
        .await
        .1
        .get("sheet")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sheet_is_a_no_op_a_large_one_is_refused_and_only_the_leader_sets_it() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "bounds").await;
    let (mut follower, _) = join_follower(&server, "bounds").await;
    leader.send(set_sheet(SONG)).await.unwrap();
    let set = next_state_update(&mut follower).await;
    next_sheet(&mut follower).await;

    let same = expect_sync_response(&mut leader, set_sheet(SONG)).await;
    assert_eq!(same.version, set.version, "no new version");
    let largest = "a".repeat(MAX_SHEET_BYTES);
    let too_large = "a".repeat(MAX_SHEET_BYTES + 1);
    assert_eq!(
        expect_error(&mut leader, set_sheet(&too_large)).await,
        ErrorCode::SheetTooLarge
    );
    assert_eq!(
        expect_error(&mut follower, set_sheet("[G]mine")).await,
        ErrorCode::NotLeader
    );
    leader.send(set_sheet(&largest)).await.unwrap();
    next_state_update(&mut follower).await;
    assert_eq!(next_sheet(&mut follower).await.text.len(), MAX_SHEET_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sheet_survives_retention() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "kept-sheet").await;
    leader.send(set_sheet(SONG)).await.unwrap();
    next_sheet(&mut leader).await;
    leader.send(ClientEvent::LeaveSession).await.unwrap();
    assert_eq!(
        expect_error(&mut leader, ClientEvent::SyncRequest).await,
        ErrorCode::NotInSession
    );
    let (_, info) = get_json(&server, "/sessions/kept-sheet").await;
    assert_eq!(info["live"], false);
    assert_eq!(info["sheet"].as_str(), Some(SONG));
    let (_, again) = join_follower(&server, "kept-sheet").await;
    assert_eq!(again.sheet.as_deref(), Some(SONG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_before_a_sheet_change_gets_the_snapshot_not_a_replay() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "resumed").await;
    let (follower, snap) = join_follower(&server, "resumed").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap(); // dropped, not left
    room_stats_counts(&mut leader, 1, 0).await;
    leader.send(set_sheet(SONG)).await.unwrap();
    let sheet = next_sheet(&mut leader).await;
    leader.send(message("after the sheet")).await.unwrap();
    let newest = next_state_update(&mut leader).await;

    let resume = |token: &str, last: u64| JoinSession {
        session_id: "resumed".into(),
        resume_token: Some(token.into()),
        last_version: Some(last),
        ..JoinSession::default()
    };
    let mut again = connect(&server).await;
    let snapshot = again
        .join_with(resume(&snap.resume_token, snap.version), WAIT)
        .await
        .expect("resume");
    assert!(snapshot.resumed);
    assert_eq!(snapshot.replay_count, 0, "no replay across a sheet change");
    assert_eq!(again.buffered_len(), 0, "nothing before the snapshot");
    assert_eq!(snapshot.sheet.as_deref(), Some(SONG));
    assert_eq!(snapshot.version, newest.version);

    // From the sheet's own version on, the later changes replay as usual.
    again.close().await.unwrap();
    room_stats_counts(&mut leader, 1, 0).await;
    let mut third = connect(&server).await;
    let resumed = third
        .join_with(resume(&snapshot.resume_token, sheet.version), WAIT)
        .await
        .expect("resume");
    assert_eq!(resumed.replay_count, 1, "{resumed:?}");
}

/// A listener that comes back with `Last-Event-ID` gets the sheet it missed from the SSE
/// resume history, like the state events around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_listener_resuming_with_last_event_id_gets_the_missed_sheet() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "heard").await;
    let mut listener = sse(&server, "heard", None).await;
    let opening = sse_next(&mut listener).await;
    assert_eq!(opening.frame.event.type_name(), "snapshot");
    let last = sse_id(&opening).to_string();
    drop(listener);
    leader.send(set_sheet(SONG)).await.unwrap();
    let sheet = next_sheet(&mut leader).await;

    let mut back = sse(&server, "heard", Some(&last)).await;
    let skip = ["room_stats", "scroll_tick", "state_update"];
    match sse_next_skipping(&mut back, &skip).await.frame.event {
        ServerEvent::Sheet(heard) => assert_eq!(heard, sheet),
        other => panic!("expected the missed sheet, got {other:?}"),
    }
}
