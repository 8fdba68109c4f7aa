//! The WebSocket protocol at `GET /ws`: every client event, the leader rules, versions,
//! validation codes, request ids, and what a refused or no-op command leaves untouched.

mod common;
mod support;

use bandsync_client::protocol::server::{Member, ServerEvent};
use bandsync_client::protocol::{ClientEvent, ErrorCode, JoinSession, RequestId, Role};
use common::TestServer;
use support::*;

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_replies_with_a_full_snapshot_of_a_new_session() {
    let server = TestServer::start().await;
    let mut a = connect(&server).await;
    let join = ClientEvent::JoinSession(JoinSession {
        session_id: "my-band".into(),
        name: Some("ada".into()),
        role: None,
        resume_token: None,
        ..Default::default()
    });
    let frame = request(&mut a, join).await;
    assert!(frame.timestamp > 1.6e12, "timestamp is epoch ms: {frame:?}");
    let ServerEvent::Snapshot(snap) = frame.event else {
        panic!("expected snapshot, got {frame:?}")
    };
    assert_eq!(snap.session_id, "my-band");
    assert!(
        snap.client_id.len() == 17
            && snap.client_id.starts_with('c')
            && is_hex(&snap.client_id[1..]),
        "clientId is c + 16 hex: {}",
        snap.client_id
    );
    assert_eq!(snap.role, Role::Follower, "no role asked: follower");
    assert!(
        snap.resume_token.len() == 32 && is_hex(&snap.resume_token),
        "{}",
        snap.resume_token
    );
    assert_eq!(snap.leader_id, None);
    assert_eq!(
        snap.members,
        vec![Member {
            client_id: snap.client_id.clone(),
            name: Some("ada".into()),
            role: Role::Follower,
        }]
    );
    assert!(!snap.transport.playing);
    assert_eq!(snap.transport.tempo, 120.0);
    assert_eq!(snap.transport.beat, 0.0);
    // (+ TIME_SLACK: times microseconds apart may parse one ulp off; see support.)
    assert!(snap.transport.anchor_time <= snap.server_time + TIME_SLACK);
    assert!(snap.server_time <= frame.timestamp + TIME_SLACK);
    assert_eq!(snap.message, "");
    assert_eq!(snap.version, 0);
    assert!(!snap.resumed);
    assert!(!snap.members_truncated);

    let stats = room_stats_counts(&mut a, 1, 0).await;
    assert_eq!((stats.session_id.as_str(), stats.followers), ("my-band", 1));
    assert_eq!(stats.leader_id, None);

    // A second member sees both in its snapshot; the first learns of it via room_stats.
    let mut b = connect(&server).await;
    let snap_b = b.join("my-band", None, Some("bob")).await.unwrap();
    assert_ne!(snap_b.client_id, snap.client_id);
    assert_ne!(snap_b.resume_token, snap.resume_token);
    let mut names: Vec<_> = snap_b.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec![Some("ada".to_owned()), Some("bob".to_owned())]);
    let stats = room_stats_counts(&mut a, 2, 0).await;
    assert_eq!(stats.followers, 2);
    // Membership is not state: no version change.
    assert_eq!(sync(&mut a).await.version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_seat_is_granted_only_when_vacant() {
    let server = TestServer::start().await;
    let (mut a, snap_a) = join_leader(&server, "band").await;
    assert_eq!(snap_a.leader_id.as_deref(), Some(snap_a.client_id.as_str()));
    assert_eq!(snap_a.version, 1, "a new leader is a change of state");

    let (mut b, snap_b) = join(&server, "band", Some(Role::Leader)).await;
    assert_eq!(snap_b.role, Role::Follower, "the seat was taken");
    assert_eq!(snap_b.leader_id, snap_a.leader_id);
    assert_eq!(snap_b.version, 1, "a follower joining changes nothing");
    let leader_entry = snap_b
        .members
        .iter()
        .find(|m| m.client_id == snap_a.client_id)
        .expect("leader listed");
    assert_eq!(leader_entry.role, Role::Leader);

    let stats = room_stats_where(&mut a, |s| s.members == 2).await;
    assert_eq!(stats.followers, 1);
    assert_eq!(stats.leader_id, snap_a.leader_id);

    // B's join broadcast no state_update: the next one either sees is A's tempo change.
    a.send(tempo(100.0)).await.unwrap();
    for client in [&mut a, &mut b] {
        let state = next_state_update(client).await;
        assert_eq!((state.version, state.transport.tempo), (2, 100.0));
        assert_eq!(state.leader_id, snap_a.leader_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_follow_the_contract_alphabet() {
    let server = TestServer::start().await;
    let mut c = connect(&server).await;
    let longest = "x".repeat(128);
    for id in [
        "my-band",
        "123456",
        "owner/repo",
        "a.b_c-D/E.f",
        longest.as_str(),
    ] {
        let snap = c
            .join(id, None, None)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(snap.session_id, id);
    }
    let too_long = "x".repeat(129);
    for id in [
        "",
        too_long.as_str(),
        "bad id",
        "ünï",
        "a?b",
        "a#b",
        "a\\b",
        "a:b",
    ] {
        let code = expect_error(&mut c, join_event(id, None, None)).await;
        assert_eq!(code, ErrorCode::InvalidSessionId, "session id {id:?}");
    }
    // The refused joins did not take the client out of its session.
    assert_eq!(sync(&mut c).await.session_id, longest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_commands_are_broadcast_to_everyone_including_the_sender() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let mut version = snap.version;

    let steps: Vec<(ClientEvent, bool)> = vec![
        (tempo(90.0), true),
        (play(None), true),
        (seek(8.0), true),
        (ClientEvent::Pause(Default::default()), true),
        (message("verse 2"), false),
        (play(Some(4.0)), true),
        (tempo(200.0), true),
    ];
    let mut previous = snap.transport;
    for (event, by_leader) in steps {
        let what = format!("{event:?}");
        let sender = if by_leader { &mut l } else { &mut f };
        sender.send(event.clone()).await.unwrap();
        let seen_by_leader = next_state_update(&mut l).await;
        let seen_by_follower = next_state_update(&mut f).await;
        assert_eq!(
            seen_by_leader, seen_by_follower,
            "one broadcast for all ({what})"
        );
        let state = seen_by_leader;
        version += 1;
        assert_eq!(state.version, version, "version +1 per change ({what})");
        assert_eq!(state.session_id, "band");
        assert_eq!(state.leader_id.as_deref(), Some(snap.client_id.as_str()));
        let t = state.transport;
        assert!(t.anchor_time >= previous.anchor_time);
        assert!(t.anchor_time <= state.server_time + TIME_SLACK);
        match event {
            ClientEvent::SetTempo(s) => {
                assert_eq!(t.tempo, s.tempo);
                assert_eq!(t.playing, previous.playing);
            }
            ClientEvent::Play(p) => {
                assert!(t.playing);
                let from = p
                    .beat
                    .unwrap_or_else(|| previous.position_at(t.anchor_time));
                assert!(
                    (t.beat - from).abs() < 1e-4,
                    "{what}: beat {} != {from}",
                    t.beat
                );
            }
            ClientEvent::Seek(s) => {
                assert_eq!(t.beat, s.beat);
                assert_eq!(t.playing, previous.playing, "seek keeps playing");
            }
            ClientEvent::Pause(_) => {
                assert!(!t.playing);
                let reached = previous.position_at(t.anchor_time);
                assert!((t.beat - reached).abs() < 1e-4 && t.beat >= 8.0);
            }
            ClientEvent::UpdateMessage(m) => {
                assert_eq!(state.message, m.text);
                assert_eq!(t, previous, "a message leaves the transport alone");
            }
            _ => unreachable!(),
        }
        previous = t;
    }
    let state = sync(&mut f).await;
    assert_eq!(
        (state.version, state.message.as_str()),
        (version, "verse 2")
    );
    assert_eq!(state.transport, previous);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_transport_commands_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let (mut l, _) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    l.send(play(None)).await.unwrap();
    next_state_update(&mut l).await;
    next_state_update(&mut f).await;

    let before = sync(&mut f).await;
    for event in [
        tempo(100.0),
        play(None),
        play(Some(2.0)),
        ClientEvent::Pause(Default::default()),
        seek(3.0),
    ] {
        let what = format!("{event:?}");
        assert_eq!(
            expect_error(&mut f, event).await,
            ErrorCode::NotLeader,
            "{what}"
        );
    }
    let after = sync(&mut f).await;
    assert_eq!(after.version, before.version);
    assert_eq!(after.transport, before.transport, "still playing as before");
    assert_eq!(after.leader_id, before.leader_id);

    // No broadcast came of the refusals: the next state_update anyone sees is this one.
    l.send(tempo(130.0)).await.unwrap();
    for client in [&mut l, &mut f] {
        let state = next_state_update(client).await;
        assert_eq!(
            (state.version, state.transport.tempo),
            (before.version + 1, 130.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_commands_answer_with_sync_response_and_bump_nothing() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let v = snap.version;

    let noops = [
        ClientEvent::Pause(Default::default()), // already paused
        tempo(120.0),                           // the current tempo
        set_role(Role::Leader),                 // already leader
    ];
    for event in noops {
        let what = format!("{event:?}");
        let state = expect_sync_response(&mut l, event).await;
        assert_eq!(state.version, v, "{what}");
        assert!(!state.transport.playing);
    }
    assert_eq!(
        expect_sync_response(&mut f, set_role(Role::Follower))
            .await
            .version,
        v
    );
    assert_eq!(expect_sync_response(&mut f, message("")).await.version, v);

    l.send(play(None)).await.unwrap();
    assert_eq!(next_state_update(&mut l).await.version, v + 1);
    let state = expect_sync_response(&mut l, play(None)).await;
    assert_eq!(
        state.version,
        v + 1,
        "play while playing without beat is a no-op"
    );
    assert!(state.transport.playing);

    l.send(message("x")).await.unwrap();
    assert_eq!(next_state_update(&mut l).await.version, v + 2);
    assert_eq!(
        expect_sync_response(&mut f, message("x")).await.version,
        v + 2
    );

    // The follower saw exactly the two real changes, then the next one.
    l.send(seek(1.0)).await.unwrap();
    assert_eq!(next_state_update(&mut l).await.version, v + 3);
    for expected in [v + 1, v + 2, v + 3] {
        assert_eq!(next_state_update(&mut f).await.version, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_moves_the_leader_seat() {
    let server = TestServer::start().await;
    let (mut l, snap_l) = join_leader(&server, "band").await;
    let (mut f, snap_f) = join_follower(&server, "band").await;
    let v = snap_l.version;

    assert_eq!(
        expect_error(&mut f, set_role(Role::Leader)).await,
        ErrorCode::LeaderTaken
    );

    // Stepping down: everyone, the sender included, gets the new state.
    l.send(set_role(Role::Follower)).await.unwrap();
    for client in [&mut l, &mut f] {
        let state = next_state_update(client).await;
        assert_eq!((state.version, state.leader_id.clone()), (v + 1, None));
    }
    let stats = room_stats_where(&mut f, |s| s.leader_id.is_none()).await;
    assert_eq!((stats.members, stats.followers), (2, 2));
    assert_eq!(expect_error(&mut l, play(None)).await, ErrorCode::NotLeader);

    // The vacant seat goes to whoever asks first.
    f.send(set_role(Role::Leader)).await.unwrap();
    for client in [&mut l, &mut f] {
        let state = next_state_update(client).await;
        assert_eq!(state.version, v + 2);
        assert_eq!(state.leader_id.as_deref(), Some(snap_f.client_id.as_str()));
    }
    let stats = room_stats_where(&mut l, |s| s.leader_id.is_some()).await;
    assert_eq!((stats.members, stats.followers), (2, 1));
    assert_eq!(
        expect_error(&mut l, set_role(Role::Leader)).await,
        ErrorCode::LeaderTaken
    );
    f.send(play(None)).await.unwrap();
    assert!(next_state_update(&mut l).await.transport.playing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_releases_the_seat_and_membership() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let (mut g, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut f, 3, 0).await;

    // A follower leaving is not a state change.
    g.send(ClientEvent::LeaveSession).await.unwrap();
    let stats = room_stats_counts(&mut f, 2, 0).await;
    assert_eq!(stats.leader_id.as_deref(), Some(snap.client_id.as_str()));
    assert_eq!(
        expect_error(&mut g, ClientEvent::SyncRequest).await,
        ErrorCode::NotInSession
    );

    // The leader leaving vacates the seat: version +1, state_update to the rest.
    l.send(ClientEvent::LeaveSession).await.unwrap();
    let state = next_state_update(&mut f).await;
    assert_eq!((state.version, state.leader_id), (snap.version + 1, None));
    let stats = room_stats_counts(&mut f, 1, 0).await;
    assert_eq!((stats.followers, stats.leader_id), (1, None));

    assert_eq!(
        expect_error(&mut l, ClientEvent::SyncRequest).await,
        ErrorCode::NotInSession
    );
    assert_eq!(
        expect_error(&mut l, ClientEvent::LeaveSession).await,
        ErrorCode::NotInSession
    );
    // Still connected and usable.
    l.heartbeat(WAIT).await.expect("heartbeat after leaving");

    f.send(set_role(Role::Leader)).await.unwrap();
    assert!(next_state_update(&mut f).await.leader_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_outside_a_session_get_not_in_session() {
    let server = TestServer::start().await;
    let mut c = connect(&server).await;
    let events = [
        ClientEvent::SyncRequest,
        ClientEvent::LeaveSession,
        set_role(Role::Leader),
        tempo(100.0),
        play(None),
        ClientEvent::Pause(Default::default()),
        seek(1.0),
        message("hello"),
    ];
    for event in events {
        let what = format!("{event:?}");
        assert_eq!(
            expect_error(&mut c, event).await,
            ErrorCode::NotInSession,
            "{what}"
        );
    }
    c.heartbeat(WAIT).await.expect("heartbeat needs no session");
    // Nothing was created by the refused commands.
    let (status, _) = get_json(&server, "/sessions/hello").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_checks_reply_with_their_codes_and_change_nothing() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;

    let long_name = "n".repeat(65);
    let refused: Vec<(ClientEvent, ErrorCode)> = vec![
        (tempo(19.99), ErrorCode::InvalidTempo),
        (tempo(400.01), ErrorCode::InvalidTempo),
        (tempo(0.0), ErrorCode::InvalidTempo),
        (tempo(-120.0), ErrorCode::InvalidTempo),
        (seek(-1.0), ErrorCode::InvalidBeat),
        (play(Some(-0.001)), ErrorCode::InvalidBeat),
        (message(&"m".repeat(1001)), ErrorCode::MessageTooLong),
        (message(&"é".repeat(1001)), ErrorCode::MessageTooLong),
        (
            ClientEvent::JoinSession(JoinSession {
                session_id: "band".into(),
                name: Some(long_name),
                role: None,
                resume_token: None,
                ..Default::default()
            }),
            ErrorCode::InvalidName,
        ),
        (
            join_event("band", Some(Role::Listener), None),
            ErrorCode::InvalidMessage,
        ),
        (set_role(Role::Listener), ErrorCode::InvalidMessage),
    ];
    for (event, code) in refused {
        let what = format!("{:?}", event.type_name());
        assert_eq!(expect_error(&mut l, event).await, code, "{what}");
    }
    let state = sync(&mut l).await;
    assert_eq!(state.version, snap.version, "refusals change nothing");
    assert_eq!(state.transport, snap.transport);
    assert_eq!(
        state.leader_id.as_deref(),
        Some(snap.client_id.as_str()),
        "still leader"
    );

    // The bounds themselves are fine; length counts characters, not bytes.
    let accepted = [
        tempo(20.0),
        tempo(400.0),
        seek(0.0),
        message(&"é".repeat(1000)),
    ];
    for (n, event) in accepted.into_iter().enumerate() {
        l.send(event).await.unwrap();
        assert_eq!(
            next_state_update(&mut l).await.version,
            snap.version + 1 + n as u64
        );
    }
    assert_eq!(sync(&mut l).await.message.chars().count(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_exactly() {
    let server = TestServer::start().await;
    let mut c = connect(&server).await;

    let cases: Vec<(&str, RequestId, &str)> = vec![
        (
            r#"{"type":"heartbeat","id":"r42","data":{"t0":1}}"#,
            RequestId::from("r42"),
            "heartbeat_response",
        ),
        (
            r#"{"type":"heartbeat","id":7,"data":{"t0":1}}"#,
            RequestId::from(7),
            "heartbeat_response",
        ),
        (
            r#"{"type":"heartbeat","id":1.5,"data":{"t0":1}}"#,
            RequestId::Number(serde_json::Number::from_f64(1.5).unwrap()),
            "heartbeat_response",
        ),
        (
            r#"{"type":"sync_request","id":"s1"}"#,
            RequestId::from("s1"),
            "error",
        ),
        (
            r#"{"type":"no_such_event","id":"u1"}"#,
            RequestId::from("u1"),
            "error",
        ),
        (
            r#"{"type":"seek","id":"bad","data":{"beat":"x"}}"#,
            RequestId::from("bad"),
            "error",
        ),
        (
            r#"{"type":"join_session","id":"j1","data":{"sessionId":"band"}}"#,
            RequestId::from("j1"),
            "snapshot",
        ),
        (
            r#"{"type":"sync_request","id":"s2"}"#,
            RequestId::from("s2"),
            "sync_response",
        ),
        (
            r#"{"id":"", "type":"sync_request"}"#,
            RequestId::from(""),
            "sync_response",
        ),
    ];
    for (text, id, expected) in cases {
        let frame = raw_request(&mut c, text, &id).await;
        assert_eq!(frame.event.type_name(), expected, "{text}");
        assert!(frame.timestamp > 1.6e12);
    }

    // `id: null` means no id; an id of another type is refused without an id.
    c.send_raw_text(r#"{"type":"sync_request","id":null}"#.into())
        .await
        .unwrap();
    let frame = next_skipping(&mut c, &["room_stats"]).await;
    assert_eq!((frame.event.type_name(), frame.id), ("sync_response", None));
    for text in [
        r#"{"type":"sync_request","id":{"x":1}}"#,
        r#"{"type":"sync_request","id":true}"#,
    ] {
        c.send_raw_text(text.into()).await.unwrap();
        let frame = next_skipping(&mut c, &["room_stats"]).await;
        assert_eq!(frame.id, None, "{text}");
        match frame.event {
            ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::InvalidMessage, "{text}"),
            other => panic!("{text}: expected error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_another_session_leaves_the_first() {
    let server = TestServer::start().await;
    let (mut a, snap_a) = join_leader(&server, "first").await;
    let (mut b, _) = join_follower(&server, "first").await;
    room_stats_counts(&mut b, 2, 0).await;

    let snap = a.join("second", None, None).await.unwrap();
    assert_eq!(snap.session_id, "second");
    assert_eq!(
        snap.role,
        Role::Follower,
        "roles do not travel between sessions"
    );
    assert_eq!(snap.members.len(), 1);

    let state = next_state_update(&mut b).await;
    assert_eq!((state.version, state.leader_id), (snap_a.version + 1, None));
    room_stats_counts(&mut b, 1, 0).await;
    // A's commands now go to the second session only.
    a.send(set_role(Role::Leader)).await.unwrap();
    let state = next_state_update(&mut a).await;
    assert_eq!(state.session_id, "second");
    assert_eq!(sync(&mut b).await.leader_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_stats_carry_exact_counts() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(join_follower(&server, "band").await.0);
    }
    let stats = room_stats_counts(&mut l, 4, 0).await;
    assert_eq!(stats.followers, 3);
    assert_eq!(stats.leader_id.as_deref(), Some(snap.client_id.as_str()));

    // One leaves, one drops its connection: both stop counting.
    let mut gone = followers.pop().unwrap();
    gone.send(ClientEvent::LeaveSession).await.unwrap();
    followers.pop().unwrap().close().await.unwrap();
    let stats = room_stats_counts(&mut l, 2, 0).await;
    assert_eq!(stats.followers, 1);
    // The survivor got the same counts.
    room_stats_counts(&mut followers[0], 2, 0).await;
}
