//! Many instances, one band: real `bandsync` processes on one real `redis-server` (each
//! test starts its own), talked to over real sockets.

mod cluster_support;

use bandsync_client::WsClient;
use bandsync_protocol::client::{Play, SetRole, SetTempo};
use bandsync_protocol::{ClientEvent, ErrorCode, JoinSession, Role, ServerEvent};
use cluster_support::{
    cluster, json_until, member, next_matching, state_updates, until_members, Instance,
};
use std::time::{Duration, Instant};

/// `(seq, serverTime)` of the ticks heard during `span`.
async fn ticks(client: &mut WsClient, span: Duration) -> Vec<(u64, f64)> {
    let end = Instant::now() + span;
    let mut seen = Vec::new();
    while Instant::now() < end {
        if let Ok(bandsync_client::Incoming::Frame { frame, .. }) =
            client.next_timeout(Duration::from_millis(200)).await
        {
            if let ServerEvent::ScrollTick(t) = frame.event {
                seen.push((t.seq, t.server_time));
            }
        }
    }
    seen
}

/// The median of `serverTime - seq x 16 ms`: the same for two instances exactly when they
/// number the same deadline alike.
fn tick_phase(ticks: &[(u64, f64)]) -> f64 {
    let mut phases: Vec<f64> = ticks.iter().map(|(s, t)| t - *s as f64 * 16.0).collect();
    phases.sort_by(f64::total_cmp);
    phases[phases.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_deliver_one_order_one_version_and_one_tick_timeline() {
    let Some((_redis, [a, b, c])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "band", Some(Role::Leader)).await;
    let (mut on_b, _) = member(&b, "band", None).await;
    let (mut on_c, _) = member(&c, "band", None).await;
    for client in [&mut leader, &mut on_b, &mut on_c] {
        until_members(client, 3).await;
    }
    for i in 0..40 {
        let tempo = 60.0 + f64::from(i);
        leader
            .send(ClientEvent::SetTempo(SetTempo::new(tempo)))
            .await
            .unwrap();
    }
    leader
        .send(ClientEvent::Play(Play::new(None)))
        .await
        .unwrap();
    let heard_a = state_updates(&mut leader, 41).await;
    let heard_b = state_updates(&mut on_b, 41).await;
    let heard_c = state_updates(&mut on_c, 41).await;
    assert_eq!(heard_a, heard_b, "A and B disagree");
    assert_eq!(heard_b, heard_c, "B and C disagree");
    for pair in heard_b.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "versions are consecutive");
    }
    assert_eq!(heard_b.last().unwrap().1, 99.0);
    assert!(
        heard_b.last().unwrap().2,
        "the last change started playback"
    );

    let (ticks_b, ticks_c) = tokio::join!(
        ticks(&mut on_b, Duration::from_millis(1500)),
        ticks(&mut on_c, Duration::from_millis(1500))
    );
    assert!(
        ticks_b.len() > 40 && ticks_c.len() > 40,
        "both instances tick"
    );
    let common = ticks_b
        .iter()
        .filter(|(s, _)| ticks_c.iter().any(|(t, _)| t == s))
        .count();
    assert!(common > 30, "the same seqs on both: {common}");
    let drift = (tick_phase(&ticks_b) - tick_phase(&ticks_c)).abs();
    assert!(
        drift < 8.0,
        "one seq, one deadline: phases differ by {drift} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_race_across_instances_has_exactly_one_winner() {
    let Some((_redis, [a, b])) = cluster(&[]) else {
        return;
    };
    for round in 0..100 {
        let session = format!("race-{round}");
        let (mut on_a, id_a) = member(&a, &session, None).await;
        let (mut on_b, id_b) = member(&b, &session, None).await;
        until_members(&mut on_a, 2).await;
        until_members(&mut on_b, 2).await;
        let claim = || ClientEvent::SetRole(SetRole { role: Role::Leader });
        let (ra, rb) = tokio::join!(claim_outcome(&mut on_a, claim(), &id_a), async {
            claim_outcome(&mut on_b, claim(), &id_b).await
        });
        assert!(
            ra != rb,
            "round {round}: exactly one winner (a won: {ra}, b won: {rb})"
        );
        // Both instances end up naming the same leader.
        let winner = if ra { &id_a } else { &id_b };
        for client in [&mut on_a, &mut on_b] {
            let state = client.sync(cluster_support::WAIT).await.unwrap();
            assert_eq!(state.leader_id.as_deref(), Some(winner.as_str()));
        }
    }
}

/// Sends a leader claim; true when it won (a `state_update` naming us leader), false when
/// it got `LEADER_TAKEN`.
async fn claim_outcome(client: &mut WsClient, claim: ClientEvent, me: &str) -> bool {
    let id = client.send(claim).await.unwrap();
    let deadline = Instant::now() + cluster_support::WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match client.next_timeout(left).await.unwrap() {
            bandsync_client::Incoming::Frame { frame, .. } => frame,
            other => panic!("unexpected {other:?}"),
        };
        match frame.event {
            ServerEvent::Error(e) if frame.id.as_ref() == Some(&id) => {
                assert_eq!(e.code, ErrorCode::LeaderTaken);
                return false;
            }
            ServerEvent::StateUpdate(s) if s.leader_id.as_deref() == Some(me) => return true,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_resumes_on_another_instance_with_its_identity_and_seat() {
    let env = [("RECOVERY_WINDOW_MS", "1500")];
    let Some((_redis, [a, b])) = cluster(&env) else {
        return;
    };
    let mut leader = WsClient::connect(&a.ws_url()).await.unwrap();
    let first = leader
        .join("moving", Some(Role::Leader), Some("lead"))
        .await
        .unwrap();
    assert_eq!(first.role, Role::Leader);
    let (mut listener_b, _) = member(&b, "moving", None).await;
    until_members(&mut listener_b, 2).await;
    leader
        .send(ClientEvent::SetTempo(SetTempo::new(90.0)))
        .await
        .unwrap();
    let version = state_updates(&mut listener_b, 1).await[0].0;
    drop(leader); // the socket drops without a goodbye

    let mut moved = WsClient::connect(&b.ws_url()).await.unwrap();
    let join = JoinSession {
        session_id: "moving".into(),
        resume_token: Some(first.resume_token.clone()),
        last_version: Some(version),
        ..Default::default()
    };
    let snapshot = moved.join_with(join, cluster_support::WAIT).await.unwrap();
    assert!(snapshot.resumed, "resumed on B");
    assert_eq!(snapshot.client_id, first.client_id, "same identity");
    assert_eq!(snapshot.role, Role::Leader, "seat kept");
    assert_eq!(snapshot.transport.tempo, 90.0);
    assert_ne!(snapshot.resume_token, first.resume_token, "a new token");

    // Past A's recovery window the seat is still held (A let its ghost go).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    moved
        .send(ClientEvent::SetTempo(SetTempo::new(100.0)))
        .await
        .unwrap();
    let heard = next_matching(&mut listener_b, |e| match e {
        ServerEvent::StateUpdate(s) if s.transport.tempo == 100.0 => Some(s.leader_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(heard.as_deref(), Some(first.client_id.as_str()));

    // The old token is spent everywhere.
    let mut again = WsClient::connect(&a.ws_url()).await.unwrap();
    let join = JoinSession {
        session_id: "moving".into(),
        resume_token: Some(first.resume_token),
        ..Default::default()
    };
    let fresh = again.join_with(join, cluster_support::WAIT).await.unwrap();
    assert!(!fresh.resumed);
    assert_ne!(fresh.client_id, first.client_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_cluster_wide() {
    let Some((redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut first, _) = member(&a, "counted", Some(Role::Leader)).await;
    let (_second, _) = member(&a, "counted", None).await;
    let (_third, _) = member(&b, "counted", None).await;
    let _listener = bandsync_client::SseClient::connect(&b.http_url(), "counted", None)
        .await
        .unwrap();
    let stats = next_matching(&mut first, |e| match e {
        ServerEvent::RoomStats(s) if s.members == 3 && s.listeners == 1 => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(stats.followers, 2);
    let mut late = WsClient::connect(&b.ws_url()).await.unwrap();
    let snapshot = late.join("counted", None, None).await.unwrap();
    assert_eq!(
        snapshot.members.len(),
        4,
        "members on both instances are listed"
    );
    for instance in [&a, &b] {
        json_until(&instance.addr, "/sessions/counted", |info| {
            info["memberCount"] == 4 && info["listeners"] == 1
        })
        .await;
    }
    // An instance where the session is not live still answers from the cluster.
    let c = Instance::start(&redis.url(), &[], true);
    let info = cluster_support::get_json(&c.addr, "/sessions/counted");
    assert_eq!(info["memberCount"], 4, "{info}");
    json_until(&c.addr, "/health", |health| health["activeSessions"] == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_serves_the_metrics_history_of_the_whole_cluster() {
    let env = [("METRICS_HISTORY_INTERVAL_MS", "200")];
    let Some((_redis, [a, b])) = cluster(&env) else {
        return;
    };
    let (_member, _) = member(&b, "historic", None).await;
    json_until(&a.addr, "/metrics/history", |history| {
        let Some(instances) = history["instances"].as_object() else {
            return false;
        };
        let with_b = instances
            .values()
            .filter_map(|m| m.as_array())
            .any(|m| m.last().is_some_and(|r| r["sessions"] == 1));
        instances.len() == 2 && with_b
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_an_instance_new_to_the_session_replays_what_was_missed_from_the_stream() {
    let Some((_redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "replayed", Some(Role::Leader)).await;
    let mut follower = WsClient::connect(&a.ws_url()).await.unwrap();
    let first = follower.join("replayed", None, None).await.unwrap();
    until_members(&mut leader, 2).await;
    drop(follower);
    for tempo in [101.0, 102.0, 103.0] {
        leader
            .send(ClientEvent::SetTempo(SetTempo::new(tempo)))
            .await
            .unwrap();
    }
    state_updates(&mut leader, 3).await;
    // B has never had this session live: it reads it, and its recent commits, from Redis.
    let mut back = WsClient::connect(&b.ws_url()).await.unwrap();
    let join = JoinSession {
        session_id: "replayed".into(),
        resume_token: Some(first.resume_token),
        last_version: Some(first.version),
        ..Default::default()
    };
    let id = back.send(ClientEvent::JoinSession(join)).await.unwrap();
    let mut replayed = Vec::new();
    let snapshot = loop {
        let frame = match back.next_timeout(cluster_support::WAIT).await.unwrap() {
            bandsync_client::Incoming::Frame { frame, .. } => frame,
            other => panic!("unexpected {other:?}"),
        };
        match frame.event {
            ServerEvent::StateUpdate(s) if s.replayed => replayed.push(s.transport.tempo),
            ServerEvent::Snapshot(s) if frame.id.as_ref() == Some(&id) => break s,
            _ => {}
        }
    };
    assert!(snapshot.resumed);
    assert_eq!(snapshot.client_id, first.client_id);
    assert_eq!(snapshot.replay_count, 3);
    assert_eq!(replayed, vec![101.0, 102.0, 103.0]);
}
