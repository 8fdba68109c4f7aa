//! Reference servers the bench can spawn instead of bandsync (`--spawn-server`), serving the
//! same `/ws` protocol so a scenario measures both the same way: uWebSockets.js
//! (`benches/reference/uws/server.mjs`, installed by `benches/reference/install.sh`), and
//! the floor (`benches/reference/floor`: one bare `send` per recipient and nothing else).
//!
//! A reference server is pinned like bandsync (`--server-cpus`) and read through the same
//! `/proc/PID` (taskset execs the server, so the child's pid is the server's). Before a
//! scenario uses it, [`check_protocol`] makes it prove it speaks the protocol: a server
//! that answers a join with anything but its snapshot fails the run loudly instead of
//! producing figures for a broken server.

use crate::cli::Scenario;
use crate::target::{
    beside_this_executable, pinned, wait_healthy, Endpoints, SpawnOptions, Spawned,
};
use anyhow::{bail, ensure, Context as _};
use bandsync_client::protocol::{JoinSession, Role};
use bandsync_client::WsClient;
use clap::ValueEnum;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a reference server may take to print its port.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long each request of the protocol check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The first stdout line is short JSON; anything longer is not the server's.
const MAX_PORT_LINE: usize = 4096;

/// Which server `--spawn` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ServerKind {
    /// target/release/bandsync (or --server-bin).
    #[default]
    Bandsync,
    /// uWebSockets.js v20.30 on Node (benches/reference/uws/server.mjs).
    Uws,
    /// The floor: a broadcast framed once and written with one bare send(2) per member
    /// (benches/reference/floor).
    Floor,
    /// The floor with its broadcasts' sends submitted through io_uring, as bandsync's
    /// engine submits them (the floor binary with --io-uring).
    FloorUring,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Bandsync => "bandsync",
            ServerKind::Uws => "uws",
            ServerKind::Floor => "floor",
            ServerKind::FloorUring => "floor-uring",
        }
    }

    /// Whether this server serves what `scenario` uses (the references serve only the
    /// sync protocol's join, tempo, play, heartbeat and ticks).
    pub fn serves(self, scenario: Scenario) -> bool {
        match self {
            ServerKind::Bandsync => true,
            ServerKind::Uws | ServerKind::Floor | ServerKind::FloorUring => matches!(
                scenario,
                Scenario::Fanout | Scenario::Ticks | Scenario::Connect
            ),
        }
    }
}

/// The uWS server script: `--uws-script`, else the one in this source tree.
pub fn uws_script(opts: &SpawnOptions) -> PathBuf {
    opts.uws_script.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../reference/uws/server.mjs")
    })
}

/// The floor's binary: `--floor-bin`, else `floor` next to this executable (both are
/// workspace members, built to the same directory).
pub fn floor_bin(opts: &SpawnOptions) -> anyhow::Result<PathBuf> {
    match &opts.floor_bin {
        Some(path) => Ok(path.clone()),
        None => beside_this_executable("floor"),
    }
}

/// The command that starts `opts.server` (a reference server) on a free port of its
/// choosing, pinned like bandsync.
fn reference_command(opts: &SpawnOptions) -> anyhow::Result<std::process::Command> {
    let command = match opts.server {
        ServerKind::Uws => {
            let script = uws_script(opts);
            if !script.is_file() {
                bail!("no uWS reference server at {}", script.display());
            }
            let addon = script
                .with_file_name("node_modules")
                .join("@trufflesuite/uws-js-unofficial");
            if !addon.is_dir() {
                bail!(
                    "uWebSockets.js is not installed next to {} (run benches/reference/install.sh)",
                    script.display()
                );
            }
            let mut command = pinned(&opts.node, opts.cpus.as_deref());
            command
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", "0"]);
            command
        }
        ServerKind::Floor | ServerKind::FloorUring => {
            let binary = floor_bin(opts)?;
            if !binary.is_file() {
                bail!(
                    "no floor server at {} (cargo build --release -p floor, or pass --floor-bin)",
                    binary.display()
                );
            }
            let mut command = pinned(&binary, opts.cpus.as_deref());
            command.args(["--port", "0"]);
            if opts.server == ServerKind::FloorUring {
                command.arg("--io-uring");
            }
            command
        }
        ServerKind::Bandsync => bail!("bandsync is not a reference server"),
    };
    Ok(command)
}

/// Starts the reference server `opts.server` on a free port (it picks one and prints it),
/// waits for `/health`, then checks that it speaks the protocol.
pub async fn spawn_reference(
    opts: &SpawnOptions,
    tag: &str,
) -> anyhow::Result<(Endpoints, Spawned)> {
    let name = opts.server.name();
    let mut command = reference_command(opts)?;
    let log = std::env::temp_dir().join(format!(
        "bandsync-bench-{}-{tag}-{name}.log",
        std::process::id()
    ));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting the {name} reference server"))?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let mut spawned = Spawned::new(child, log);
    // A blocking read on its own thread: it ends with the line, or at EOF once the child
    // is gone (killed below on timeout).
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(std::io::Read::take(stdout, MAX_PORT_LINE as u64));
        reader.read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(STARTUP_TIMEOUT, line).await {
        Ok(joined) => joined.context("reading the server's stdout")??,
        Err(_) => bail!(
            "the {name} server printed no port within {STARTUP_TIMEOUT:?}; log {}",
            spawned.log.display()
        ),
    };
    let port = parse_port_line(&line).with_context(|| {
        format!(
            "the {name} server did not start; log {}:\n{}",
            spawned.log.display(),
            crate::target::log_tail(&spawned.log)
        )
    })?;
    let http_base = format!("http://127.0.0.1:{port}");
    wait_healthy(&mut spawned, &http_base).await?;
    let endpoints = Endpoints {
        ws_url: format!("ws://127.0.0.1:{port}/ws"),
        http_base,
        pid: Some(spawned.pid()),
    };
    check_protocol(&endpoints.ws_url, tag)
        .await
        .with_context(|| {
            format!("the {name} reference server does not answer bandsync's protocol")
        })?;
    Ok((endpoints, spawned))
}

/// `{"port":N,...}` -> N (not 0).
fn parse_port_line(line: &str) -> anyhow::Result<u16> {
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("expected {{\"port\":N}} on stdout, got {:?}", line.trim()))?;
    let port = value
        .get("port")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0);
    port.with_context(|| format!("no valid port in {:?}", line.trim()))
}

/// One join (must come back as a `snapshot` with its id echoed, for the session asked,
/// as its leader: the session is new), one heartbeat (`t0` echoed) and one `sync_request`
/// (the state the snapshot described). What the scenarios rely on, checked once.
pub async fn check_protocol(ws_url: &str, tag: &str) -> anyhow::Result<()> {
    let mut ws = tokio::time::timeout(CHECK_TIMEOUT, WsClient::connect(ws_url))
        .await
        .context("connect timed out")??;
    let session = format!("bench-check-{}-{tag}", std::process::id());
    let join = JoinSession {
        session_id: session.clone(),
        name: Some("bench-check".into()),
        role: Some(Role::Leader),
        ..Default::default()
    };
    let snapshot = ws
        .join_with(join, CHECK_TIMEOUT)
        .await
        .context("join_session got no snapshot carrying its id")?;
    ensure!(
        snapshot.session_id == session && snapshot.role == Role::Leader,
        "the snapshot is for {:?} as {:?}, not {session:?} as leader",
        snapshot.session_id,
        snapshot.role
    );
    ensure!(
        snapshot.leader_id.as_deref() == Some(snapshot.client_id.as_str()),
        "the snapshot's leaderId is not the joiner's clientId"
    );
    let sample = ws
        .heartbeat(CHECK_TIMEOUT)
        .await
        .context("heartbeat got no heartbeat_response")?;
    // Same host, and server time starts at its wall clock: t1 and t2 that are server time
    // put the offset within a minute (a bad echo of t0 or a clock in seconds does not).
    ensure!(
        sample.offset.abs() < 60_000.0 && sample.round_trip.is_finite(),
        "heartbeat_response's t0/t1/t2 are not server time (offset {} ms)",
        sample.offset
    );
    let state = ws
        .sync(CHECK_TIMEOUT)
        .await
        .context("sync_request got no sync_response")?;
    ensure!(
        state.version == snapshot.version && state.transport.tempo == snapshot.transport.tempo,
        "sync_response disagrees with the snapshot"
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_line_is_checked() {
        assert_eq!(
            parse_port_line("{\"port\":4242,\"native\":\"/x.node\"}\n").unwrap(),
            4242
        );
        assert!(parse_port_line("{\"port\":0}").is_err());
        assert!(parse_port_line("{\"port\":70000}").is_err());
        assert!(parse_port_line("listening").is_err());
        assert!(parse_port_line("").is_err());
    }

    fn plan(args: &[&str]) -> Result<crate::plan::Plan, String> {
        use clap::Parser as _;
        let argv = std::iter::once("bandsync-bench").chain(args.iter().copied());
        crate::cli::Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate("bench-test".into())
    }

    #[test]
    fn spawn_server_is_checked_against_the_scenarios() {
        let p = plan(&["--spawn", "--spawn-server", "uws", "fanout,ticks,connect"]).unwrap();
        let opts = p.spawn.unwrap();
        assert_eq!(opts.server, ServerKind::Uws);
        assert!(uws_script(&opts).ends_with("reference/uws/server.mjs"));
        let floor = plan(&[
            "--spawn",
            "--spawn-server",
            "floor",
            "--floor-bin",
            "/x/floor",
            "ticks",
        ])
        .unwrap()
        .spawn
        .unwrap();
        assert_eq!(floor.server, ServerKind::Floor);
        assert_eq!(floor_bin(&floor).unwrap(), Path::new("/x/floor"));
        assert!(plan(&["--spawn", "--spawn-server", "floor", "audio"])
            .unwrap_err()
            .contains("fanout, ticks and connect only"));
        let bandsync = plan(&["--spawn", "fanout"]).unwrap().spawn.unwrap();
        assert_eq!(bandsync.server, ServerKind::Bandsync);
        assert!(plan(&["--spawn-server", "uws", "fanout"])
            .unwrap_err()
            .contains("needs --spawn"));
        assert!(plan(&["--spawn", "--spawn-server", "uws", "sse"])
            .unwrap_err()
            .contains("fanout, ticks and connect only"));
        assert!(plan(&[
            "--spawn",
            "--spawn-server",
            "uws",
            "--server-arg=--x",
            "ticks"
        ])
        .unwrap_err()
        .contains("for bandsync"));
    }

    #[test]
    fn the_reference_serves_only_the_sync_scenarios() {
        assert!(ServerKind::Floor.serves(Scenario::Ticks));
        assert!(!ServerKind::Floor.serves(Scenario::Sse));
        assert!(ServerKind::Uws.serves(Scenario::Fanout));
        assert!(ServerKind::Uws.serves(Scenario::Connect));
        assert!(!ServerKind::Uws.serves(Scenario::Sse));
        assert!(!ServerKind::Uws.serves(Scenario::Audio));
        assert!(ServerKind::Bandsync.serves(Scenario::Audio));
    }
}
