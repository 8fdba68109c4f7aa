//! Scheduled changes and the chord sheet across instances: real `bandsync` processes on a
//! `redis-server` of the test's own. A change scheduled through one instance is announced
//! to the members of every instance, and every instance applies it at its instant with one
//! and the same activation commit (each proposes it; Redis lets exactly one through).
//! Without Redis, each instance applies it locally at the same instant.

mod cluster_support;

use bandsync_client::WsClient;
use bandsync_protocol::client::{Play, Schedule, SetSheet, SetTempo};
use bandsync_protocol::server::{ScheduledChange, SessionState};
use bandsync_protocol::{ClientEvent, Role, ServerEvent};
use cluster_support::{cluster, json_until, member, next_matching, until_members, Instance};
use std::time::{Duration, Instant};

/// Ticks as `(serverTime, beat, tempo)` and state updates, heard until `until` (server ms,
/// read from the ticks' own stamps) or [`cluster_support::WAIT`].
async fn heard_until(
    client: &mut WsClient,
    until: f64,
) -> (Vec<(f64, f64, f64)>, Vec<SessionState>) {
    let deadline = Instant::now() + cluster_support::WAIT;
    let (mut ticks, mut states) = (Vec::new(), Vec::new());
    loop {
        let event = next_matching(client, |e| match e {
            ServerEvent::ScrollTick(_) | ServerEvent::StateUpdate(_) => Some(e.clone()),
            _ => None,
        })
        .await;
        match event {
            ServerEvent::ScrollTick(t) => {
                ticks.push((t.server_time, t.beat, t.tempo));
                if t.server_time > until {
                    return (ticks, states);
                }
            }
            ServerEvent::StateUpdate(s) => states.push(s),
            _ => unreachable!(),
        }
        assert!(Instant::now() < deadline, "no tick after {until}");
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Activations proposed and refused over every instance, once exactly one has committed
/// and every refusal has come back (polled: the refusals arrive after the commit).
async fn activations(instances: &[&Instance]) -> (f64, f64) {
    let deadline = Instant::now() + cluster_support::WAIT;
    loop {
        let (mut proposed, mut lost) = (0.0, 0.0);
        for instance in instances {
            let text = instance.metrics().await;
            proposed += metric(&text, "bandsync_scheduled_activations_total");
            lost += metric(&text, "bandsync_cluster_activations_lost_total");
        }
        if proposed - lost == 1.0 || Instant::now() > deadline {
            return (proposed, lost);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_scheduled_on_one_instance_applies_once_at_its_instant_on_every_instance() {
    let Some((_redis, [a, b, c])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "sched", Some(Role::Leader)).await;
    let (mut on_a, _) = member(&a, "sched", None).await;
    let (mut on_b, _) = member(&b, "sched", None).await;
    let (mut on_c, _) = member(&c, "sched", None).await;
    for client in [&mut leader, &mut on_a, &mut on_b, &mut on_c] {
        until_members(client, 4).await;
    }
    leader
        .send(ClientEvent::Play(Play::new(None)))
        .await
        .unwrap();
    let playing = next_matching(&mut on_c, |e| match e {
        ServerEvent::StateUpdate(s) if s.transport.playing => Some(s.clone()),
        _ => None,
    })
    .await;

    // The leader's clock is the server's here (one machine): schedule 800 ms ahead.
    let now = leader
        .request(ClientEvent::SyncRequest, cluster_support::WAIT)
        .await
        .unwrap()
        .timestamp;
    let at = now + 800.0;
    let schedule = Schedule {
        at: Some(at),
        quantum: None,
    };
    leader
        .send(ClientEvent::SetTempo(SetTempo {
            tempo: 90.0,
            schedule,
        }))
        .await
        .unwrap();

    let mut announced: Vec<(u64, ScheduledChange)> = Vec::new();
    let mut applied: Vec<SessionState> = Vec::new();
    for (name, client) in [("A", &mut on_a), ("B", &mut on_b), ("C", &mut on_c)] {
        let (ticks, states) = heard_until(client, at + 300.0).await;
        let announcements: Vec<_> = states.iter().filter(|s| s.scheduled.is_some()).collect();
        assert_eq!(
            announcements.len(),
            1,
            "{name}: one announcement: {states:?}"
        );
        let announcement = announcements[0];
        assert_eq!(announcement.transport, playing.transport, "{name}");
        let change = announcement.scheduled.unwrap();
        let activations: Vec<_> = states
            .iter()
            .filter(|s| s.version > announcement.version)
            .collect();
        assert_eq!(activations.len(), 1, "{name}: one activation: {states:?}");
        let activation = activations[0].clone();
        assert_eq!(activation.transport, change.transport, "{name}");
        assert_eq!(activation.scheduled, None);
        assert_eq!(activation.version, announcement.version + 1);
        let late = activation.server_time - at;
        eprintln!("{name}: activation state_update {late:.3} ms after `at`");
        assert!(
            (0.0..100.0).contains(&late),
            "{name}: applied {late} ms after its instant"
        );
        for &(time, beat, tempo) in &ticks {
            let model = if time < at {
                &playing.transport
            } else {
                &change.transport
            };
            assert_eq!(tempo, model.tempo, "{name}: tick at {time} (at {at})");
            assert!(
                (beat - model.position_at(time)).abs() < 1e-4,
                "{name}: tick beat"
            );
        }
        assert!(
            ticks.iter().any(|t| t.0 < at) && ticks.iter().any(|t| t.0 >= at),
            "{name}: ticks on both sides"
        );
        announced.push((announcement.version, change));
        applied.push(activation);
    }
    assert!(
        announced.windows(2).all(|w| w[0] == w[1]),
        "one announcement everywhere"
    );
    assert!(
        applied.windows(2).all(|w| w[0].version == w[1].version),
        "one activation version everywhere"
    );
    let (proposed, lost) = activations(&[&a, &b, &c]).await;
    eprintln!("activations proposed {proposed}, refused {lost}");
    assert_eq!(proposed - lost, 1.0, "exactly one activation committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sheet_crosses_instances_and_survives_in_the_cluster() {
    let Some((redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "sheet", Some(Role::Leader)).await;
    let (mut on_b, _) = member(&b, "sheet", None).await;
    until_members(&mut leader, 2).await;
    let text = "{title: Autumn}\n[Am7]Leaves [D7]falling";
    leader
        .send(ClientEvent::SetSheet(SetSheet { text: text.into() }))
        .await
        .unwrap();
    let sheet = next_matching(&mut on_b, |e| match e {
        ServerEvent::Sheet(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(sheet.text, text);
    // An instance where the session is not live reads it from Redis.
    let c = Instance::start(&redis.url(), &[], true);
    json_until(&c.addr, "/sessions/sheet", |info| info["sheet"] == text).await;
    let mut joiner = WsClient::connect(&c.ws_url()).await.unwrap();
    let snapshot = joiner.join("sheet", None, None).await.unwrap();
    assert_eq!(snapshot.sheet.as_deref(), Some(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_lost_every_instance_still_applies_the_pending_change_at_its_instant() {
    let Some((mut redis, [a, b])) = cluster(&[]) else {
        return;
    };
    let (mut leader, _) = member(&a, "outage", Some(Role::Leader)).await;
    let (mut on_b, _) = member(&b, "outage", None).await;
    until_members(&mut on_b, 2).await;
    let now = leader
        .request(ClientEvent::SyncRequest, cluster_support::WAIT)
        .await
        .unwrap()
        .timestamp;
    let schedule = Schedule {
        at: Some(now + 1500.0),
        quantum: None,
    };
    leader
        .send(ClientEvent::SetTempo(SetTempo {
            tempo: 75.0,
            schedule,
        }))
        .await
        .unwrap();
    let change = next_matching(&mut on_b, |e| match e {
        ServerEvent::StateUpdate(s) => s.scheduled,
        _ => None,
    })
    .await;
    redis.kill();
    let started = Instant::now();
    a.wait_for_redis("down");
    b.wait_for_redis("down");
    eprintln!(
        "both instances saw Redis down after {:?}",
        started.elapsed()
    );
    for (name, client) in [("A", &mut leader), ("B", &mut on_b)] {
        let applied = next_matching(client, |e| match e {
            ServerEvent::StateUpdate(s) if s.scheduled.is_none() => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(applied.transport, change.transport, "{name}");
        assert!(
            applied.server_time >= change.at,
            "{name}: not before its instant"
        );
    }
    for instance in [&a, &b] {
        let text = instance.metrics().await;
        assert!(
            metric(&text, "bandsync_cluster_local_commits_total") >= 1.0,
            "committed locally"
        );
    }
}
