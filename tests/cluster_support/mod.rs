//! Real processes for the cluster tests: a `redis-server` of the test's own on a free
//! port (no persistence, stopped by its PID), and `bandsync` instances pointed at it, each
//! on an ephemeral port, stopped with SIGTERM or SIGKILL by PID.

#![allow(dead_code)]

use bandsync_client::{Incoming, WsClient};
use bandsync_protocol::client::SetTempo;
use bandsync_protocol::{ClientEvent, JoinSession, Role, ServerEvent, ServerFrame};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether `redis-server` can be run here (the test command installs it; a developer
/// machine without it skips the cluster tests loudly instead of failing them).
pub fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("BANDSYNC_REQUIRE_REDIS").is_none(),
            "redis-server is required (BANDSYNC_REQUIRE_REDIS) but not installed"
        );
        eprintln!("redis-server is not installed: skipping (scripts/test.sh installs it)");
    }
    found
}

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Runs one command and returns its reply as text (a minimal RESP client: simple,
    /// integer and bulk replies, which is all the tests ask for).
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        match line.as_bytes().first() {
            Some(b'$') => {
                let len: usize = line[1..].trim().parse().unwrap_or(0);
                let mut body = vec![0u8; len + 2];
                reader.read_exact(&mut body).unwrap();
                String::from_utf8_lossy(&body[..len]).into_owned()
            }
            _ => line.trim().to_owned(),
        }
    }

    /// The ids of the pub/sub connections open now (`CLIENT LIST TYPE pubsub`), with how
    /// many channels each listens to.
    pub fn pubsub_clients(&self) -> Vec<(String, u32)> {
        self.command(&["CLIENT", "LIST", "TYPE", "pubsub"])
            .lines()
            .filter_map(|line| {
                let field = |name: &str| {
                    line.split(' ')
                        .find_map(|kv| kv.strip_prefix(name))
                        .map(str::to_owned)
                };
                Some((field("id=")?, field("sub=")?.parse().ok()?))
            })
            .collect()
    }

    /// Kills it (SIGKILL, by PID): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `bandsync` process.
pub struct Instance {
    pub addr: String,
    child: Option<Child>,
}

impl Instance {
    /// Starts an instance on `redis_url` with `env` on top, and waits until it reports
    /// Redis `up` (unless `expect_up` is false).
    pub fn start(redis_url: &str, env: &[(&str, &str)], expect_up: bool) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bandsync"));
        command
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("LOG_LEVEL", "info")
            .env("REDIS_URL", redis_url)
            .env("REDIS_PREFIX", "test")
            // The instances of one test process share an asset directory, as instances
            // behind one Redis share a volume.
            .env(
                "ASSET_STORAGE_PATH",
                std::env::temp_dir().join(format!("bandsync-cluster-{}", std::process::id())),
            )
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn bandsync");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("CLUSTER_TEST_LOGS").is_some() {
                    eprintln!("[bandsync] {line}");
                }
                if !sent {
                    if let Some(addr) = line.split("addr=").nth(1) {
                        let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("the instance logs its address");
        let instance = Self {
            addr,
            child: Some(child),
        };
        if expect_up {
            instance.wait_for_redis("up");
        }
        instance
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn health(&self) -> serde_json::Value {
        get_json(&self.addr, "/health")
    }

    /// Waits until `/health` says `redis` is `state`.
    pub fn wait_for_redis(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.health()["redis"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never reported redis {state}: {}",
                self.addr,
                self.health()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no goodbye to anyone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `GET path` on `addr`, as JSON (a minimal HTTP/1.1 client: one request per connection).
pub fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// Polls `GET path` on `addr` until `accept` takes the JSON answer (within [`WAIT`]).
pub async fn json_until(
    addr: &str,
    path: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get_json(addr, path);
        if accept(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{addr}{path}: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next server event on `client` that `pick` accepts, within [`WAIT`].
pub async fn next_matching<T>(
    client: &mut WsClient,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_timeout(left).await {
            Ok(Incoming::Frame {
                frame: ServerFrame { event, .. },
                ..
            }) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Ok(Incoming::Closed { code, reason }) => {
                panic!("closed ({code:?} {reason}) while waiting")
            }
            Err(e) => panic!("nothing matching within {WAIT:?}: {e}"),
        }
    }
}

/// A Redis of the test's own and `N` instances on it (each with `env` on top), all
/// reporting Redis up; `None` (the test skips) where `redis-server` is not installed.
pub fn cluster<const N: usize>(env: &[(&str, &str)]) -> Option<(Redis, [Instance; N])> {
    if !redis_available() {
        return None;
    }
    let redis = Redis::start();
    let instances = std::array::from_fn(|_| Instance::start(&redis.url(), env, true));
    Some((redis, instances))
}

/// A WebSocket member of `session` on `instance`, with its `clientId`.
pub async fn member(instance: &Instance, session: &str, role: Option<Role>) -> (WsClient, String) {
    let mut client = WsClient::connect(&instance.ws_url()).await.unwrap();
    let snapshot = client.join(session, role, None).await.unwrap();
    (client, snapshot.client_id)
}

/// Joins `session` on `instance` with a resume token: the client, its role, and whether
/// it resumed.
pub async fn resume(instance: &Instance, session: &str, token: &str) -> (WsClient, Role, bool) {
    let mut client = WsClient::connect(&instance.ws_url()).await.unwrap();
    let join = JoinSession {
        session_id: session.into(),
        resume_token: Some(token.into()),
        ..Default::default()
    };
    let snapshot = client.join_with(join, WAIT).await.unwrap();
    (client, snapshot.role, snapshot.resumed)
}

/// Waits until `client` hears `room_stats` with `members` members.
pub async fn until_members(client: &mut WsClient, members: u64) {
    next_matching(client, |e| match e {
        ServerEvent::RoomStats(s) if s.members == members => Some(()),
        _ => None,
    })
    .await;
}

pub async fn set_tempo(client: &mut WsClient, tempo: f64) {
    client
        .send(ClientEvent::SetTempo(SetTempo::new(tempo)))
        .await
        .unwrap();
}

/// The next `state_update` with this tempo: its version.
pub async fn tempo_update(client: &mut WsClient, tempo: f64) -> u64 {
    next_matching(client, |e| match e {
        ServerEvent::StateUpdate(s) if s.transport.tempo == tempo => Some(s.version),
        _ => None,
    })
    .await
}

/// `(version, tempo, playing)` of the next `n` state updates.
pub async fn state_updates(client: &mut WsClient, n: usize) -> Vec<(u64, f64, bool)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let update = next_matching(client, |e| match e {
            ServerEvent::StateUpdate(s) => {
                Some((s.version, s.transport.tempo, s.transport.playing))
            }
            _ => None,
        })
        .await;
        seen.push(update);
    }
    seen
}
