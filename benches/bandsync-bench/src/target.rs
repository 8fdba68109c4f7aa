//! The server under test: a running one (`--url`) or one the bench spawns (`--spawn`).

use crate::cli::Scenario;
use crate::plan::Plan;
use crate::reference::ServerKind;
use crate::Settings;
use anyhow::{bail, Context as _};
use reqwest::Url;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a spawned server may take to answer `/health`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to connect, and which process to read `/proc` of.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `ws://host:port/ws`.
    pub ws_url: String,
    /// `http://host:port`, for `/sse/..` and `/health`.
    pub http_base: String,
    pub pid: Option<u32>,
}

/// `ws://127.0.0.1:3001` -> (`ws://127.0.0.1:3001/ws`, `http://127.0.0.1:3001`). The path
/// defaults to `/ws`; `http(s)` is accepted for `ws(s)`. Only loopback hosts are allowed
/// unless `allow_remote`: a load tool should not hit another machine by a typo.
pub fn derive_urls(url: &str, allow_remote: bool) -> Result<(String, String), String> {
    let mut parsed = Url::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
    let (ws, http) = match parsed.scheme() {
        "ws" | "http" => ("ws", "http"),
        "wss" | "https" => ("wss", "https"),
        other => {
            return Err(format!(
                "--url {url}: scheme must be ws or wss, not {other}"
            ))
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("--url {url}: no host"))?
        .to_owned();
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(format!(
            "--url {url}: host {host} is not loopback (pass --allow-remote to load it)"
        ));
    }
    if parsed.path().is_empty() || parsed.path() == "/" {
        parsed.set_path("/ws");
    }
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let http_base = format!("{http}://{host}{port}");
    parsed
        .set_scheme(ws)
        .map_err(|()| format!("--url {url}: cannot use scheme {ws}"))?;
    Ok((parsed.to_string(), http_base))
}

/// What `--spawn` needs.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// bandsync, or a reference server serving its protocol.
    pub server: ServerKind,
    pub binary: Option<PathBuf>,
    pub args: Vec<String>,
    pub cpus: Option<String>,
    /// `redis-server` for the cluster scenarios (a path, or a name looked up on PATH).
    pub redis_bin: PathBuf,
    /// `node` for the uWS reference server (a path, or a name looked up on PATH).
    pub node: PathBuf,
    /// The uWS reference server's script (`None`: the one in this source tree).
    pub uws_script: Option<PathBuf>,
    /// The floor server's binary (`None`: `floor` next to this executable).
    pub floor_bin: Option<PathBuf>,
}

/// A server process the bench started; killed when dropped.
pub struct Spawned {
    child: Child,
    pub log: PathBuf,
}

impl Spawned {
    pub fn new(child: Child, log: PathBuf) -> Self {
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log only when the server had something to say (warnings and up).
        match std::fs::metadata(&self.log) {
            Ok(meta) if meta.len() == 0 => {
                let _ = std::fs::remove_file(&self.log);
            }
            Ok(_) => eprintln!("   server log: {}", self.log.display()),
            Err(_) => {}
        }
    }
}

fn find_binary(opts: &SpawnOptions) -> anyhow::Result<PathBuf> {
    let path = match &opts.binary {
        Some(path) => path.clone(),
        None => beside_this_executable("bandsync")?,
    };
    if !path.is_file() {
        bail!(
            "no server binary at {} (build it with `cargo build --release --bin bandsync`, or pass --server-bin)",
            path.display()
        );
    }
    Ok(path)
}

/// The binary `name` in this executable's directory, where cargo builds every binary of
/// the workspace.
pub fn beside_this_executable(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()
        .context("locating my own executable")?
        .with_file_name(name))
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn free_port() -> anyhow::Result<u16> {
    // Bind-and-release: another process could take it in between, which the health
    // check then reports.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `program`, under `taskset -c cpus` when pinned (and taskset is installed). taskset
/// execs the program, so the child's pid is the program's, for `/proc`.
pub fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) if on_path("taskset") => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        Some(_) => {
            tracing::warn!("taskset not found; --server-cpus ignored");
            Command::new(program)
        }
        None => Command::new(program),
    }
}

/// What one scenario adds to the spawned server's command line and environment.
#[derive(Debug, Clone, Default)]
pub struct ServerExtras {
    /// Flags put before the user's `--server-arg`s.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Inherited variables the server must not see (a baseline without `REDIS_URL`).
    pub unset: Vec<String>,
}

impl ServerExtras {
    /// Adds `--flag value` unless the user already sets it, by `--server-arg` or by the
    /// environment variable `env` (a flag given twice is a clap error in the server).
    pub fn default_flag(&mut self, opts: &SpawnOptions, flag: &str, env: &str, value: String) {
        let user_flag = opts
            .args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if !user_flag && std::env::var_os(env).is_none() {
            self.args.push(flag.to_owned());
            self.args.push(value);
        }
    }
}

/// What a spawned server needs for `scenario`: the share token (every scenario, harmless
/// where unused), per-address limits lifted, and, for audio, share limits with headroom.
pub fn server_extras(plan: &Plan, scenario: Scenario, s: &Settings) -> ServerExtras {
    let mut extras = ServerExtras::default();
    let Some(opts) = &plan.spawn else {
        return extras;
    };
    extras
        .env
        .push(("BEARER_TOKEN".into(), s.audio.token.clone()));
    // The whole load comes from one address (127.0.0.1), which the server's per-address
    // limits exist to refuse: lift them for the server spawned to be measured.
    let lifted = [
        (
            "--max-connections-per-ip",
            "MAX_CONNECTIONS_PER_IP",
            1_000_000,
        ),
        (
            "--share-sessions-per-ip",
            "SHARE_SESSIONS_PER_IP",
            1_000_000,
        ),
        (
            "--share-starts-per-minute",
            "SHARE_STARTS_PER_MINUTE",
            1_000_000,
        ),
    ];
    for (flag, env, value) in lifted {
        extras.default_flag(opts, flag, env, value.to_string());
    }
    if scenario == Scenario::Audio {
        extras.default_flag(
            opts,
            "--share-audio-rate",
            "SHARE_AUDIO_RATE",
            s.audio.spawn_audio_rate().to_string(),
        );
        if s.sessions >= 50 {
            // One more than the sharers: one address may hold all but one of MAX_SESSIONS.
            extras.default_flag(
                opts,
                "--max-share-sessions",
                "MAX_SESSIONS",
                (s.sessions + 1).to_string(),
            );
        }
    }
    extras
}

/// Starts the server on a free loopback port and waits until `/health` answers. The
/// child inherits the environment (BATCH_INTERVAL_MS=.. and the like pass through) plus
/// `extras.env`, and the raised RLIMIT_NOFILE. Logs go to a file, at `warn` unless
/// LOG_LEVEL or `--log-level` says otherwise (per-connection info logs would skew the
/// numbers). `--spawn-server uws|floor` starts a reference server instead
/// ([`crate::reference::spawn_reference`]).
pub async fn spawn(
    opts: &SpawnOptions,
    tag: &str,
    extras: &ServerExtras,
) -> anyhow::Result<(Endpoints, Spawned)> {
    if opts.server != ServerKind::Bandsync {
        return crate::reference::spawn_reference(opts, tag).await;
    }
    let binary = find_binary(opts)?;
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("bandsync-bench-{}-{tag}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = pinned(&binary, opts.cpus.as_deref());
    command.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    let sets_level = std::env::var_os("LOG_LEVEL").is_some()
        || opts.args.iter().any(|a| a.starts_with("--log-level"));
    if !sets_level {
        command.args(["--log-level", "warn"]);
    }
    // Its own process group: a terminal's Ctrl-C reaches the bench, which then reports and
    // kills the server, instead of the server shutting down under a running measurement.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .args(&extras.args)
        .args(&opts.args)
        .envs(extras.env.iter().map(|(k, v)| (k, v)));
    for name in &extras.unset {
        command.env_remove(name);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut spawned = Spawned { child, log };
    let http_base = format!("http://127.0.0.1:{port}");
    wait_healthy(&mut spawned, &http_base).await?;
    let endpoints = Endpoints {
        ws_url: format!("ws://127.0.0.1:{port}/ws"),
        http_base,
        pid: Some(spawned.child.id()),
    };
    Ok((endpoints, spawned))
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

pub async fn wait_healthy(spawned: &mut Spawned, http_base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{http_base}/health");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = spawned.child.try_wait()? {
            bail!(
                "server exited at startup ({status}); log {}:\n{}",
                spawned.log.display(),
                log_tail(&spawned.log)
            );
        }
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "server did not answer {url} within {STARTUP_TIMEOUT:?}; log {}",
                spawned.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_flags_yield_to_the_users() {
        let opts = SpawnOptions {
            server: ServerKind::Bandsync,
            node: "node".into(),
            uws_script: None,
            floor_bin: None,
            binary: None,
            args: vec!["--share-audio-rate=50".into(), "--log-level".into()],
            cpus: None,
            redis_bin: "redis-server".into(),
        };
        let mut extras = ServerExtras::default();
        extras.default_flag(
            &opts,
            "--share-audio-rate",
            "BANDSYNC_BENCH_TEST_UNSET",
            "20".into(),
        );
        extras.default_flag(
            &opts,
            "--max-share-sessions",
            "BANDSYNC_BENCH_TEST_UNSET",
            "60".into(),
        );
        extras.default_flag(&opts, "--max-share-sessions", "PATH", "70".into());
        assert_eq!(extras.args, ["--max-share-sessions", "60"]);
    }

    #[test]
    fn urls_derive_from_one_another() {
        let ok = |u: &str| derive_urls(u, false).unwrap();
        assert_eq!(
            ok("ws://127.0.0.1:3001"),
            (
                "ws://127.0.0.1:3001/ws".into(),
                "http://127.0.0.1:3001".into()
            )
        );
        assert_eq!(
            ok("ws://localhost:9/ws"),
            ("ws://localhost:9/ws".into(), "http://localhost:9".into())
        );
        assert_eq!(
            ok("http://127.0.0.2:80/x"),
            ("ws://127.0.0.2/x".into(), "http://127.0.0.2".into())
        );
        assert_eq!(ok("ws://[::1]:5/").1, "http://[::1]:5");
        assert!(derive_urls("ws://10.0.0.1:3001", false)
            .unwrap_err()
            .contains("not loopback"));
        assert!(derive_urls("ws://10.0.0.1:3001", true).is_ok());
        assert!(derive_urls("ftp://127.0.0.1", false).is_err());
        assert!(derive_urls("not a url", false).is_err());
    }
}
