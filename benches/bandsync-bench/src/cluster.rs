//! A cluster the bench starts for itself (the `cluster-*` scenarios, with `--spawn`): one
//! `redis-server` on a free loopback port that keeps nothing on disk, then K bandsync
//! instances with `REDIS_URL` pointing at it, each on its own free port, as `--spawn`
//! starts one. A run is ready only when every instance's `/health` says `"redis":"up"`
//! and counts all K instances: before that, sessions would not be shared yet.
//!
//! Everything started here is killed by its own pid when its guard drops, also when a
//! later step fails or the run is cut short: the instances first, then Redis.

use crate::spread::label;
use crate::target::{self, Endpoints, ServerExtras, SpawnOptions, Spawned};
use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// How long Redis may take to answer `PING`, and the instances to see each other.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A redis-server the bench started; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl RedisServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Redis logs its start-up notices even at `warning`: the log is worth keeping only
        // when it had ended by itself before the bench was done with it.
        let ended = matches!(self.child.try_wait(), Ok(Some(_)));
        let _ = self.child.kill();
        let _ = self.child.wait();
        if ended {
            eprintln!("   redis-server had exited; log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Starts `redis-server` (path or name on PATH) on a free loopback port, without RDB
/// snapshots or an append-only file, pinned like the instances, and waits for `PONG`.
pub async fn spawn_redis(opts: &SpawnOptions, tag: &str) -> anyhow::Result<RedisServer> {
    let port = target::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir();
    let log = dir.join(format!(
        "bandsync-bench-{}-{tag}-redis.log",
        std::process::id()
    ));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = target::pinned(&opts.redis_bin, opts.cpus.as_deref());
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--loglevel", "warning", "--logfile", ""])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // Its own process group, as the instances: Ctrl-C reaches the bench alone.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().with_context(|| {
        format!(
            "starting {} (install redis-server or pass --redis-server)",
            opts.redis_bin.display()
        )
    })?;
    let mut redis = RedisServer { child, addr, log };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = redis.child.try_wait()? {
            bail!(
                "redis-server exited at startup ({status}):\n{}",
                target::log_tail(&redis.log)
            );
        }
        if let Ok(crate::resp::Reply::Simple(pong)) = crate::resp::command(addr, &["PING"]).await {
            if pong == "PONG" {
                return Ok(redis);
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING on {addr} within {STARTUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis as the probes see it.
#[derive(Debug, Clone, Copy)]
pub struct RedisTarget {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
}

/// The processes of a spawned cluster. Fields drop in order: instances, then Redis.
/// Held only to be dropped (which kills them), never read.
#[allow(dead_code)]
pub struct Cluster {
    pub instances: Vec<Spawned>,
    pub redis: RedisServer,
}

/// What a spawned server is, to keep it alive until the report is out.
#[allow(dead_code)]
pub enum ServerGuard {
    One(Spawned),
    Cluster(Cluster),
}

/// Starts Redis and `k` instances sharing it under the key prefix `prefix` (unique per
/// run, so nothing of an earlier run is found). `extras` apply to every instance.
pub async fn spawn(
    opts: &SpawnOptions,
    tag: &str,
    extras: &ServerExtras,
    k: usize,
    prefix: &str,
) -> anyhow::Result<(Vec<Endpoints>, RedisTarget, Cluster)> {
    let redis = spawn_redis(opts, tag).await?;
    let mut extras = extras.clone();
    extras
        .env
        .push(("REDIS_URL".into(), format!("redis://{}", redis.addr)));
    extras.env.push(("REDIS_PREFIX".into(), prefix.to_owned()));
    let mut instances = Vec::with_capacity(k);
    let mut endpoints = Vec::with_capacity(k);
    for i in 0..k {
        let (ep, guard) = target::spawn(opts, &format!("{tag}-{}", label(i)), &extras).await?;
        endpoints.push(ep);
        instances.push(guard);
    }
    for ep in &endpoints {
        wait_joined(&ep.http_base, k).await?;
    }
    let redis_target = RedisTarget {
        addr: redis.addr,
        pid: Some(redis.pid()),
    };
    Ok((endpoints, redis_target, Cluster { instances, redis }))
}

/// Waits until `/health` says Redis is up and `k` instances are alive.
async fn wait_joined(http_base: &str, k: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{http_base}/health");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last = String::new();
    loop {
        if let Ok(response) = http.get(&url).send().await {
            let text = response.text().await.unwrap_or_default();
            if let Ok(health) = serde_json::from_str::<serde_json::Value>(&text) {
                let up = health["redis"] == "up";
                let alive = health["instances"].as_u64().unwrap_or(0);
                if up && alive >= k as u64 {
                    return Ok(());
                }
                last = format!("redis {}, {alive} instances", health["redis"]);
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not report Redis up with {k} instances within {STARTUP_TIMEOUT:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
