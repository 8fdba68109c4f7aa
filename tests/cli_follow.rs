//! `bandsync-cli follow --bars` (and `--click`) against the real server: the real CLI binary
//! as a child process, a leader driving the session over a real WebSocket.
//!
//! The bar lines carry the server time of each boundary as the CLI computed it from the
//! transport, so the checks are on values (every bar `60000 × beatsPerBar / tempo` ms after
//! the one before, on the beat grid), not on when the lines arrived; the printed error (how
//! late the CLI's wake-up was on its own estimate of server time) is only checked to be
//! there and sane, since this machine is shared and noisy.

mod cli_support;
mod common;

use bandsync_client::protocol::client::{Play, Schedule, SetTempo};
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role};
use bandsync_client::{Credentials, WsClient};
use cli_support::{args, run_cli, text};
use common::TestServer;
use serde_json::Value;
use std::process::Output;

async fn run(list: &[&str]) -> Output {
    run_cli(args(list)).await
}

async fn leader(server: &TestServer, session: &str) -> WsClient {
    let mut leader = WsClient::connect(&server.ws_url()).await.unwrap();
    leader
        .join_as(session, Some(Role::Leader), None, &Credentials::default())
        .await
        .unwrap();
    leader
}

/// A leader of `session` playing from beat 0 at 240 bpm.
async fn playing_at_240(server: &TestServer, session: &str) -> WsClient {
    let mut lead = leader(server, session).await;
    lead.send(ClientEvent::SetTempo(SetTempo::new(240.0)))
        .await
        .unwrap();
    lead.send(ClientEvent::Play(Play::new(Some(0.0))))
        .await
        .unwrap();
    lead
}

/// The `bar` lines of a `--json` run.
fn bars(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["type"] == "bar")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_each_bar_on_the_shared_timeline() {
    let server = TestServer::start().await;
    let _lead = playing_at_240(&server, "bars").await;
    let out = run(&[
        "follow",
        "--url",
        &server.ws_url(),
        "--session",
        "bars",
        "--bars",
        "--json",
        "--no-ticks",
        "--beats-per-bar",
        "3",
        "--duration",
        "3.5",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let bars = bars(&out);
    assert!(
        bars.len() >= 3,
        "a bar of 3 at 240 bpm is 750 ms: {}",
        text(&out)
    );
    for pair in bars.windows(2) {
        let gap = pair[1]["serverTime"].as_f64().unwrap() - pair[0]["serverTime"].as_f64().unwrap();
        assert!((gap - 750.0).abs() < 1e-3, "{pair:?}");
        assert_eq!(
            pair[1]["bar"].as_i64(),
            pair[0]["bar"].as_i64().map(|b| b + 1)
        );
    }
    for bar in &bars {
        let beat = bar["beat"].as_f64().unwrap();
        assert_eq!(beat % 3.0, 0.0, "{bar}");
        assert_eq!(bar["tempo"].as_f64(), Some(240.0));
        let error = bar["errorMs"].as_f64().unwrap();
        assert!(
            (0.0..250.0).contains(&error),
            "printed at or after its boundary, by a wake-up's lateness: {bar}"
        );
    }
    // A bar can come due in the moment between the join and the first heartbeat's reply;
    // the CLI then prints it without a clock estimate (as it says in text mode). From the
    // first estimate on, every bar has one.
    let estimated = |bar: &serde_json::Value| bar["clockErrorMs"].as_f64().is_some();
    let first = bars
        .iter()
        .position(estimated)
        .unwrap_or_else(|| panic!("no bar with a clock estimate: {}", text(&out)));
    assert!(
        first <= 1,
        "still no estimate at bar {first}: {}",
        text(&out)
    );
    assert!(bars[first..].iter().all(estimated), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_click_without_the_playback_feature_says_how_to_get_it() {
    let server = TestServer::start().await;
    let out = run(&[
        "follow",
        "--url",
        &server.ws_url(),
        "--session",
        "click",
        "--click",
        "--duration",
        "1",
    ])
    .await;
    // `cli()` builds the CLI with its default features, so without sound output.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--features playback"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_refuses_a_bar_of_no_beats() {
    let out = run(&[
        "follow",
        "--url",
        "ws://127.0.0.1:9/ws",
        "--session",
        "x",
        "--beats-per-bar",
        "0",
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("beats-per-bar"));
}

/// A tempo change the leader schedules at the next bar: the CLI, told ahead, switches its
/// bars exactly at that bar, where the server applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_switches_bars_at_a_scheduled_tempo_change() {
    let server = TestServer::start().await;
    let mut lead = playing_at_240(&server, "sched").await;
    let url = server.ws_url();
    let follow = tokio::spawn(async move {
        run(&[
            "follow",
            "--url",
            &url,
            "--session",
            "sched",
            "--bars",
            "--json",
            "--no-ticks",
            "--duration",
            "5",
        ])
        .await
    });
    // Let the follower join and settle its clock, then schedule 120 bpm at the next bar.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let change = SetTempo {
        tempo: 120.0,
        schedule: Schedule {
            at: None,
            quantum: Some(4.0),
        },
    };
    lead.send(ClientEvent::SetTempo(change)).await.unwrap();
    let announced = lead
        .wait_for(
            |frame| matches!(&frame.event, ServerEvent::StateUpdate(s) if s.scheduled.is_some()),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    let ServerEvent::StateUpdate(state) = announced.event else {
        unreachable!()
    };
    let at = state.scheduled.unwrap().at;
    let out = follow.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bars = bars(&out);
    assert!(
        bars.iter()
            .any(|b| (b["serverTime"].as_f64().unwrap() - at).abs() < 1e-3),
        "a bar falls on the change's instant {at}: {}",
        text(&out)
    );
    let mut before = 0;
    let mut after = 0;
    for pair in bars.windows(2) {
        let start = pair[0]["serverTime"].as_f64().unwrap();
        let gap = pair[1]["serverTime"].as_f64().unwrap() - start;
        if start < at - 1e-3 {
            assert!((gap - 1_000.0).abs() < 1e-3, "{pair:?}");
            before += 1;
        } else {
            assert!((gap - 2_000.0).abs() < 1e-3, "{pair:?}");
            after += 1;
        }
    }
    assert!(before >= 1 && after >= 1, "{}", text(&out));
}
