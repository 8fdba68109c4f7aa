//! Faults in a cluster: Redis lost and back, an instance killed, an instance stopped, a
//! listener moving between instances. Real processes, real sockets.

mod cluster_support;

use bandsync_client::{Incoming, SseClient, WsClient};
use bandsync_protocol::{close, ClientEvent, Role, ServerEvent};
use cluster_support::{
    cluster, member, next_matching, resume, set_tempo, state_updates, tempo_update, until_members,
    WAIT,
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_and_back_each_instance_serves_its_own_then_they_converge() {
    let Some((mut redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "outage", Some(Role::Leader)).await;
    let (mut on_a, _) = member(&a, "outage", None).await;
    let (mut on_b, _) = member(&b, "outage", None).await;
    until_members(&mut on_b, 3).await;
    set_tempo(&mut leader, 70.0).await;
    let before = tempo_update(&mut on_b, 70.0).await;
    assert_eq!(tempo_update(&mut on_a, 70.0).await, before);

    redis.kill();
    a.wait_for_redis("down");
    b.wait_for_redis("down");
    // A keeps serving its members: the change is theirs at once.
    set_tempo(&mut leader, 80.0).await;
    let during = tempo_update(&mut on_a, 80.0).await;
    assert_eq!(during, before + 1, "no state event lost on A");
    // Ticks and the leader's commands keep going on A without Redis.
    leader
        .send(ClientEvent::Play(bandsync_protocol::client::Play::new(
            None,
        )))
        .await
        .unwrap();
    next_matching(&mut on_a, |e| {
        matches!(e, ServerEvent::ScrollTick(_)).then_some(())
    })
    .await;

    redis.restart();
    a.wait_for_redis("up");
    b.wait_for_redis("up");
    // A publishes what changed meanwhile: B's member catches up, above every version seen.
    let reconciled = next_matching(&mut on_b, |e| match e {
        ServerEvent::StateUpdate(s) if s.transport.playing => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reconciled.transport.tempo, 80.0);
    assert!(reconciled.version > during);
    // And the band plays on as one.
    set_tempo(&mut leader, 90.0).await;
    let after_b = tempo_update(&mut on_b, 90.0).await;
    let after_a = tempo_update(&mut on_a, 90.0).await;
    assert_eq!(after_a, after_b);
    assert!(after_b > reconciled.version);
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("bandsync_redis_outages_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_killed_instance_resume_elsewhere_and_an_orphaned_seat_is_released() {
    let env = [("RECOVERY_WINDOW_MS", "3000")];
    let Some((_redis, [mut a, b])) = cluster(&env) else {
        return;
    };
    // "kept": its leader comes back on B. "orphaned": its leader never comes back.
    let mut kept = WsClient::connect(&a.ws_url()).await.unwrap();
    let kept_snapshot = kept.join("kept", Some(Role::Leader), None).await.unwrap();
    let (mut orphan, _) = member(&a, "orphaned", Some(Role::Leader)).await;
    let (mut watcher_kept, _) = member(&b, "kept", None).await;
    let (mut watcher_orphaned, _) = member(&b, "orphaned", None).await;
    until_members(&mut watcher_kept, 2).await;
    until_members(&mut watcher_orphaned, 2).await;
    set_tempo(&mut orphan, 75.0).await;
    tempo_update(&mut watcher_orphaned, 75.0).await;

    a.kill9();
    let (mut back, role, resumed) = resume(&b, "kept", &kept_snapshot.resume_token).await;
    assert!(resumed, "the killed instance's member resumes on B");
    assert_eq!(role, Role::Leader, "with its seat");
    set_tempo(&mut back, 110.0).await;
    tempo_update(&mut watcher_kept, 110.0).await;

    // No one resumes the other leader: once its lease lapses, B releases the seat.
    let started = Instant::now();
    let released = next_matching(&mut watcher_orphaned, |e| match e {
        ServerEvent::StateUpdate(s) if s.leader_id.is_none() => Some(s.transport.tempo),
        _ => None,
    })
    .await;
    assert_eq!(released, 75.0, "the state survives its leader's instance");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the window"
    );
    // The dead instance's members drop out of the counts.
    until_members(&mut watcher_kept, 2).await;
    drop(orphan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_clients_a_1001_they_resume_elsewhere_with() {
    let Some((_redis, [mut a, b])) = cluster(&[]) else {
        return;
    };
    let mut leader = WsClient::connect(&a.ws_url()).await.unwrap();
    let snapshot = leader
        .join("moving-on", Some(Role::Leader), None)
        .await
        .unwrap();
    let (mut watcher, _) = member(&b, "moving-on", None).await;
    until_members(&mut watcher, 2).await;

    let status = a.terminate();
    assert!(status.success(), "a clean exit: {status}");
    let code = loop {
        match leader.next_timeout(WAIT).await.unwrap() {
            Incoming::Closed { code, .. } => break code,
            Incoming::Frame { .. } => {}
        }
    };
    assert_eq!(code, Some(close::GOING_AWAY));
    let (mut back, role, resumed) = resume(&b, "moving-on", &snapshot.resume_token).await;
    assert!(resumed);
    assert_eq!(role, Role::Leader);
    set_tempo(&mut back, 130.0).await;
    tempo_update(&mut watcher, 130.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_listener_moving_to_another_instance_gets_a_snapshot_not_a_wrong_replay() {
    let Some((_redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "listened", Some(Role::Leader)).await;
    let (_on_b, _) = member(&b, "listened", None).await;
    let mut listener = SseClient::connect(&a.http_url(), "listened", None)
        .await
        .unwrap();
    set_tempo(&mut leader, 95.0).await;
    let last_id = loop {
        let event = listener.next_event(WAIT).await.unwrap().expect("open");
        if let ServerEvent::StateUpdate(s) = &event.frame.event {
            if s.transport.tempo == 95.0 {
                break event.id.expect("ids on SSE events");
            }
        }
    };
    // Same instance: the replay resumes after the id (nothing missed, no snapshot).
    set_tempo(&mut leader, 96.0).await;
    let mut again = SseClient::connect(&a.http_url(), "listened", Some(&last_id))
        .await
        .unwrap();
    let first = again.next_event(WAIT).await.unwrap().expect("an event");
    assert!(
        !matches!(first.frame.event, ServerEvent::Snapshot(_)),
        "A replays its own ids"
    );
    // Another instance: A's id means nothing there, so a fresh snapshot comes first.
    let mut moved = SseClient::connect(&b.http_url(), "listened", Some(&last_id))
        .await
        .unwrap();
    let first = moved.next_event(WAIT).await.unwrap().expect("an event");
    match first.frame.event {
        ServerEvent::Snapshot(s) => assert_eq!(s.transport.tempo, 96.0, "current"),
        other => panic!("a snapshot first, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_one_instance_s_pub_sub_is_filled_from_the_stream_in_order() {
    let Some((redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "gapped", Some(Role::Leader)).await;
    // A connection is listed as pub/sub once it listens to a channel: B's session link
    // appears when B loads the session (it subscribes before it answers the join).
    let before: Vec<String> = redis
        .pubsub_clients()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (mut on_b, _) = member(&b, "gapped", None).await;
    let b_link = redis
        .pubsub_clients()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| !before.contains(id))
        .expect("B's pub/sub connection for sessions");
    until_members(&mut on_b, 2).await;

    // B stops hearing the channel while the leader goes on changing the session.
    assert_eq!(redis.command(&["CLIENT", "KILL", "ID", &b_link]), ":1");
    for i in 0..20 {
        set_tempo(&mut leader, 100.0 + f64::from(i)).await;
    }
    let heard_a = state_updates(&mut leader, 20).await;
    let heard_b = state_updates(&mut on_b, 20).await;
    assert_eq!(
        heard_a, heard_b,
        "B got every version, in order, from the stream"
    );
    for pair in heard_b.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1);
    }
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("bandsync_redis_outages_total 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("bandsync_cluster_gaps_recovered_total 0"),
        "the missed versions came from the stream: {metrics}"
    );
}
