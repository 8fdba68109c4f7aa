//! Socket.IO clients against bandsync's `/socket.io/` endpoint and against the seed's own
//! stack (Node + Socket.IO 4, `benches/socketio/server.mjs`), side by side in one run:
//! fan-out of a leader's `set_tempo` to 1,000 followers, and 1,000 followers of a playing
//! session's 16 ms ticks. `cargo bench --bench socketio`
//!
//! Both servers are started here as child processes on ephemeral loopback ports, one after
//! the other, and stopped by their pid. With two cores or more each server is pinned to
//! CPU 1 and this load driver (one thread) to CPU 0, so each server gets the same one core.
//! The driver speaks Engine.IO v4 over a WebSocket itself (`benches/socketio/eio.rs`) so
//! that the client side costs the same against both.
//!
//! Knobs (environment): `SIOBENCH_CLIENTS` (followers, default 1000), `SIOBENCH_EVENTS`
//! (fan-out `set_tempo`s, default 200), `SIOBENCH_SPACING_MS` (between them, default 20),
//! `SIOBENCH_TICK_SECS` (tick window, default 10), `SIOBENCH_ONLY` (`node` or `bandsync`),
//! `SIOBENCH_PIN=0` (no CPU pinning). Without `node` on PATH the Node half is skipped
//! with a message; its packages are installed with `npm ci` when `node_modules` is missing.

// A bench target's root is its own crate root, so its modules live beside the Node side
// under `benches/socketio/` and are named by path.
#[path = "socketio/eio.rs"]
mod eio;
#[path = "socketio/fleet.rs"]
mod fleet;
#[path = "socketio/report.rs"]
mod report;
#[path = "socketio/scenarios.rs"]
mod scenarios;
#[path = "socketio/servers.rs"]
mod servers;

use report::{Column, Measured};
use servers::Server;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most a whole join of the fleet may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
struct Settings {
    followers: usize,
    events: u32,
    spacing: Duration,
    tick_window: Duration,
    only: Option<String>,
    pin: bool,
}

/// A knob from the environment, bounded; a bad value is an error, not a silent default.
fn knob(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "{name}={text}: expected a whole number in {range:?}"
        )),
    }
}

fn settings() -> Result<Settings, String> {
    let only = std::env::var("SIOBENCH_ONLY").ok();
    if let Some(only) = &only {
        if only != "node" && only != "bandsync" {
            return Err(format!("SIOBENCH_ONLY={only}: expected node or bandsync"));
        }
    }
    Ok(Settings {
        followers: knob("SIOBENCH_CLIENTS", 1000, 1..=5000)? as usize,
        events: knob("SIOBENCH_EVENTS", 200, 1..=u64::from(fleet::MAX_EVENTS))? as u32,
        spacing: Duration::from_millis(knob("SIOBENCH_SPACING_MS", 20, 1..=1000)?),
        tick_window: Duration::from_secs(knob("SIOBENCH_TICK_SECS", 10, 1..=60)?),
        only,
        pin: knob("SIOBENCH_PIN", 1, 0..=1)? == 1,
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Pins this process (and the threads it starts from now on) to CPU 0, when the machine
/// has two cores or more and taskset is installed. Returns the CPU for the servers.
fn pin_driver(pin: bool) -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !pin || cores < 2 || on_path("taskset").is_none() {
        eprintln!("not pinned: the servers and the load driver share {cores} core(s)");
        return None;
    }
    let pid = std::process::id().to_string();
    let pinned = Command::new("taskset")
        .args(["-p", "-c", "0", &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !pinned {
        eprintln!("taskset could not pin the driver; running unpinned");
        return None;
    }
    Some(1)
}

/// `node`, with the Node side's packages installed (`npm ci` from the lockfile when
/// `node_modules` is missing); `Ok(None)` when node is not installed.
fn prepare_node(dir: &Path) -> Result<Option<(PathBuf, String)>, String> {
    let Some(node) = on_path("node") else {
        return Ok(None);
    };
    let manifest = dir.join("node_modules/socket.io/package.json");
    if !manifest.is_file() {
        let npm = on_path("npm").ok_or("node_modules is missing and npm is not installed")?;
        eprintln!(
            "installing the Node side's packages: npm ci in {}",
            dir.display()
        );
        let status = Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("running npm ci: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed ({status})"));
        }
    }
    let manifest = std::fs::read_to_string(&manifest).map_err(|e| format!("{e}"))?;
    let version = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    Ok(Some((node, version)))
}

/// Joins the fleet to `server`, runs both scenarios and reads its memory at the end.
async fn measure(server: &mut Server, s: &Settings) -> Result<Measured, String> {
    // The first connection tells a server that does not speak Engine.IO from a slow one.
    let (probe, open) = eio::connect(&server.addr).await.map_err(|e| {
        format!(
            "{} did not answer the Engine.IO handshake: {e}",
            server.name
        )
    })?;
    eprintln!(
        "   {}: Engine.IO open: sid {}, pingInterval {} ms, pingTimeout {} ms",
        server.name, open.sid, open.ping_interval, open.ping_timeout
    );
    drop(probe);
    let shared = Arc::new(fleet::Shared::default());
    let started = Instant::now();
    let leader = fleet::join(&server.addr, "leader", "leader", &shared)
        .await
        .map_err(|e| format!("the leader could not join: {e}"))?;
    let followers = tokio::time::timeout(
        SETUP_TIMEOUT,
        fleet::join_followers(&server.addr, s.followers, &shared),
    )
    .await
    .map_err(|_| {
        format!(
            "{} followers did not all join within {SETUP_TIMEOUT:?}",
            s.followers
        )
    })??;
    let setup_s = started.elapsed().as_secs_f64();
    if !fleet::settle(&shared, Duration::from_millis(500), Duration::from_secs(30)).await {
        eprintln!(
            "   {}: events still arriving 30 s after the joins; measuring anyway",
            server.name
        );
    }
    eprintln!(
        "   {}: {} followers joined in {setup_s:.1} s; fan-out",
        server.name, s.followers
    );
    let fanout =
        scenarios::fanout(server, &leader, &followers, &shared, s.events, s.spacing).await?;
    eprintln!("   {}: ticks for {:?}", server.name, s.tick_window);
    let ticks = scenarios::ticks(server, &leader, &followers, &shared, s.tick_window).await?;
    let rss_mib = server.rss_mib()?;
    if !server.alive() {
        return Err(format!("{} exited during the run", server.name));
    }
    let mut measured = Measured {
        setup_s,
        fanout,
        ticks,
        rss_mib,
        lost: 0,
        first_loss: None,
        error_events: 0,
        first_error: None,
    };
    for client in std::iter::once(&leader).chain(&followers) {
        let log = client.log.lock().unwrap();
        if let Some(why) = &log.ended {
            measured.lost += 1;
            measured.first_loss.get_or_insert_with(|| why.clone());
        }
        measured.error_events += log.error_count;
        if let Some(first) = log.errors.first() {
            measured.first_error.get_or_insert_with(|| first.clone());
        }
    }
    Ok(measured)
}

/// Starts one server, measures it and stops it (by its pid, when `server` drops).
async fn run_one(
    start: impl FnOnce() -> Result<Server, String>,
    s: &Settings,
) -> Result<Measured, String> {
    let mut server = start()?;
    eprintln!("{} pid {} on {}", server.name, server.pid(), server.addr);
    let measured = measure(&mut server, s).await;
    drop(server);
    // Let the clients' tasks see their sockets end before the next server starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    measured
}

fn main() -> ExitCode {
    let s = match settings() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("socketio bench: {why}");
            return ExitCode::FAILURE;
        }
    };
    // 1,000 clients need 1,000 descriptors here (the servers raise their own).
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open-file limit: {e}");
    }
    let server_cpu = pin_driver(s.pin);
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/socketio");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut columns = Vec::new();
    let mut failed = false;
    if s.only.as_deref() != Some("bandsync") {
        match prepare_node(&node_dir) {
            Ok(Some((node, version))) => {
                eprintln!("Node + Socket.IO {version}");
                let result = runtime.block_on(run_one(
                    || servers::spawn_node(&node, &node_dir, server_cpu),
                    &s,
                ));
                failed |= result.is_err();
                columns.push(Column {
                    title: format!("Node + Socket.IO {version}"),
                    result,
                });
            }
            Ok(None) => eprintln!(
                "SKIPPED the Node side: `node` is not on PATH (install Node.js 18+ to compare)"
            ),
            Err(why) => {
                failed = true;
                columns.push(Column {
                    title: "Node + Socket.IO".into(),
                    result: Err(why),
                });
            }
        }
    }
    if s.only.as_deref() != Some("node") {
        eprintln!("bandsync");
        let result = runtime.block_on(run_one(|| servers::spawn_bandsync(server_cpu), &s));
        failed |= result.is_err();
        columns.push(Column {
            title: "bandsync".into(),
            result,
        });
    }
    println!(
        "\n{} followers + 1 leader in one session; fan-out: {} set_tempo {} ms apart; ticks: {} s window{}\n",
        s.followers,
        s.events,
        s.spacing.as_millis(),
        s.tick_window.as_secs(),
        if server_cpu.is_some() { "; server on CPU 1, load driver on CPU 0" } else { "; unpinned" },
    );
    report::print(&columns);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
