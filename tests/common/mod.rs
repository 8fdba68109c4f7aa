//! Starts the real server in-process on 127.0.0.1:0 for black-box tests, and makes every
//! test that uses it a gate on the server's health.
//!
//! The gate: when a `TestServer` stops, whether the test called [`TestServer::shutdown`]
//! or simply let it go out of scope, two things are checked, and the test fails when
//! either does not hold:
//! - the engine contained no panic: `bandsync_engine_panics_total` is 0 (the engine
//!   catches a panic so one bad event cannot stop every session; a test must not pass
//!   over one);
//! - `bandsync::run` returned `Ok`, within `SHUTDOWN_TIMEOUT_MS` + [`STOP_SLACK`].
//!
//! Why in `Drop` and not in a `finish()` each test calls: a call can be forgotten (and
//! an early `return` skips it), a `Drop` cannot. A panic in `Drop` fails the test as
//! long as the test is not already panicking; when it is, the test fails anyway, so
//! `Drop` only stops the server and does not panic again (that would abort the process).
//!
//! Why the server runs on its own thread and runtime: `Drop` is synchronous, so it must
//! be able to block (scrape `/metrics`, wait for `run` to return) without starving the
//! server, whatever runtime flavor the test uses.

#![allow(dead_code)]

use bandsync::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What `run` may take beyond `SHUTDOWN_TIMEOUT_MS` to return: joining the engine thread
/// and the runtime's own bookkeeping, on a busy 2-core machine.
pub const STOP_SLACK: Duration = Duration::from_secs(5);

/// The engine-panic counter the gate reads.
pub const ENGINE_PANICS: &str = "bandsync_engine_panics_total";

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown_timeout: Duration,
    stop: Option<oneshot::Sender<()>>,
    /// When the stop signal was sent: the start of the shutdown deadline.
    stop_sent: Option<Instant>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// In the authenticated mode `/metrics` needs a server-wide token: the gate's own.
    metrics_token: Option<String>,
    /// The Stream Manager's directory made by [`test_config`], removed once stopped.
    scratch: Option<std::path::PathBuf>,
}

/// Defaults for tests: the contract's defaults, quiet logs, and the Stream Manager's
/// files in a directory of this server's own (removed when it stops).
pub fn test_config() -> Config {
    let mut config = Config::defaults();
    config.port = 0;
    let data = scratch_dir("bandsync-test");
    config.stream_manager.asset_storage_path = data.join("assets");
    config.stream_manager.stream_state_path = data.join("streams");
    config
}

/// A fresh directory path under the system's temporary directory (not created).
pub fn scratch_dir(prefix: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()))
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        adjust(&mut config);
        let shutdown_timeout = config.shutdown_timeout();
        let metrics_token = gate_token(&config);
        let scratch = config
            .stream_manager
            .asset_storage_path
            .parent()
            .filter(|dir| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("bandsync-test-"))
            })
            .map(std::path::Path::to_path_buf);
        // Bound here, so the address is known and connections queue in the backlog until
        // the server's runtime accepts them.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || serve(listener, config, stopped))
            .expect("spawn the server thread");
        Self {
            addr,
            shutdown_timeout,
            stop: Some(stop),
            stop_sent: None,
            thread: Some(thread),
            metrics_token,
            scratch,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Checks the gate, triggers graceful shutdown, waits for `run` to return `Ok` within
    /// its deadline, and returns how long it took (panics otherwise).
    pub async fn shutdown(mut self) -> Duration {
        self.begin_shutdown();
        self.wait().await
    }

    /// Checks that the engine has not panicked (see the module doc), then triggers
    /// graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if self.stop.is_some() && self.has_returned() {
            // `run` returned before it was asked to stop: say why.
            self.stop_sent = Some(Instant::now());
            self.joined(Instant::now());
            panic!("bandsync::run returned Ok before it was asked to stop");
        }
        if self.stop.is_some() {
            if let Err(why) = engine_panics_with(self.addr, self.metrics_token.as_deref()) {
                self.signal_stop();
                panic!("{why}");
            }
        }
        self.signal_stop();
    }

    /// Waits for `run` to return; panics unless it returned `Ok` within
    /// `SHUTDOWN_TIMEOUT_MS` + [`STOP_SLACK`] of the stop signal. Returns how long
    /// shutdown took.
    pub async fn wait(&mut self) -> Duration {
        let (started, deadline) = self.deadline();
        while !self
            .thread
            .as_ref()
            .expect("server already awaited")
            .is_finished()
        {
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.joined(started)
    }

    /// True once `run` has returned (and its result not yet checked).
    pub fn has_returned(&self) -> bool {
        self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            self.stop_sent = Some(Instant::now());
        }
    }

    fn deadline(&self) -> (Instant, Instant) {
        let started = self.stop_sent.expect("wait() without begin_shutdown()");
        (started, started + self.shutdown_timeout + STOP_SLACK)
    }

    /// Joins the server thread if `run` returned; panics if it has not (the deadline
    /// passed), returned an error, or panicked.
    fn joined(&mut self, started: Instant) -> Duration {
        let thread = self.thread.take().expect("server already awaited");
        let elapsed = started.elapsed();
        assert!(
            thread.is_finished(),
            "bandsync::run did not return within SHUTDOWN_TIMEOUT_MS ({:?}) + {STOP_SLACK:?}",
            self.shutdown_timeout
        );
        match thread.join() {
            Ok(Ok(())) => elapsed,
            Ok(Err(error)) => panic!("bandsync::run returned an error: {error:#}"),
            Err(_) => panic!("bandsync::run panicked"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_and_check();
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl TestServer {
    fn stop_and_check(&mut self) {
        if self.thread.is_none() {
            return; // already stopped and checked
        }
        if std::thread::panicking() {
            // The test fails anyway; stop the server and leave its thread to end.
            self.signal_stop();
            return;
        }
        self.begin_shutdown();
        let (started, deadline) = self.deadline();
        while !self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.joined(started);
    }
}

/// The server thread: its own runtime (two workers, like the tests' own), running
/// `bandsync::run` until the stop signal.
fn serve(
    listener: std::net::TcpListener,
    config: Config,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-server-rt")
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        bandsync::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
    });
    // Tasks still running (a connection `run` gave up on at its deadline) are dropped
    // here; `run` has already answered for the deadline.
    runtime.shutdown_background();
    result
}

/// `Err` with a description unless the server's `/metrics` reports 0 engine panics.
/// Blocking on purpose (a plain HTTP/1.1 GET over a std socket), so `Drop` can call it.
pub fn engine_panics(addr: SocketAddr) -> Result<(), String> {
    engine_panics_with(addr, None)
}

/// [`engine_panics`], presenting `token` (a `"session": "*"` JWT) for the authenticated mode.
pub fn engine_panics_with(addr: SocketAddr, token: Option<&str>) -> Result<(), String> {
    let text =
        scrape_metrics(addr, token).map_err(|e| format!("gate: GET /metrics failed: {e}"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(ENGINE_PANICS)?.strip_prefix(' '))
        .ok_or_else(|| format!("gate: no {ENGINE_PANICS} in /metrics:\n{text}"))?;
    match line.trim().parse::<u64>() {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "the engine caught {n} panic(s) during this test ({ENGINE_PANICS} = {n}); \
             its message is on stderr, from the thread `bandsync-engine`"
        )),
        Err(e) => Err(format!("gate: {ENGINE_PANICS} {line:?}: {e}")),
    }
}

/// `GET /metrics` over a plain socket; returns the whole response (head and body).
fn scrape_metrics(addr: SocketAddr, token: Option<&str>) -> std::io::Result<String> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let mut socket = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.set_write_timeout(Some(TIMEOUT))?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        socket,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    // Bounded: the metrics page is a few KiB.
    socket.take(1 << 20).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    if !response.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "unexpected response: {response}"
        )));
    }
    Ok(response)
}

/// The token the gate presents to `/metrics` in the authenticated mode: signed with
/// `JWT_SECRET`, or, for a public-key server, with the private key the tests keep beside it
/// (`tests/keys/NAME.pub.pem` pairs with `NAME.key.pem`).
fn gate_token(config: &Config) -> Option<String> {
    use bandsync_client::token::{mint, SigningKey, TokenSpec};
    let key = match (&config.jwt_secret, &config.jwt_public_key) {
        (Some(secret), _) => SigningKey::Secret(secret.clone()),
        (None, Some(public)) => {
            let private = public.strip_suffix(".pub.pem")?.to_owned() + ".key.pem";
            SigningKey::Pem(std::fs::read(private).ok()?)
        }
        (None, None) => return None,
    };
    let spec = TokenSpec {
        session: "*".into(),
        leader: false,
        ttl: Duration::from_secs(24 * 3600),
        sub: None,
    };
    mint(&key, &spec).ok()
}
