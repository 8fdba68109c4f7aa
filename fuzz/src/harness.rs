//! A real bandsync server without sockets, for the HTTP-level targets: the engine thread,
//! the share registry and the whole HTTP service (`bandsync::service::service`: router,
//! warp routes, share API, CORS and security headers), served by hyper over an in-memory
//! pipe exactly as the accept loop serves a TCP connection.
//!
//! Each [`Server`] is fresh (its own engine, sessions and share registry) and lives on its
//! own current-thread tokio runtime, so one fuzz input cannot leave state behind for the
//! next: libFuzzer needs an input to behave the same every time it runs.

use bandsync::context::AppContext;
use bandsync::engine::Inbound;
use bandsync::metrics::Metrics;
use bandsync::Config;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token share requests must carry (the whole `Authorization` value).
pub const TOKEN: &str = "Bearer fuzz";

/// How long a request may take to be answered. Generous: nothing the server does for one
/// request waits on time, so hitting it means a request was left hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked; empty for responses without one and for event streams (which
    /// never end, so only their head is read).
    pub body: Vec<u8>,
    /// The answer to a HEAD request: headers only, by definition.
    pub head: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether our service produced it (its security headers are on every response it
    /// makes); hyper's own answers to unparseable requests lack them.
    pub fn made_by_service(&self) -> bool {
        self.header("x-content-type-options").is_some()
    }

    /// Panics unless the body is the contract's JSON error:
    /// `{"success": false, "error": "..", "code": "UPPER_SNAKE", "timestamp": <number>}`.
    pub fn assert_json_error(&self, context: &str) {
        if self.head {
            // HTTP sends no body with an answer to HEAD; the headers still say JSON.
            let json = self
                .header("content-type")
                .is_some_and(|t| t.starts_with(b"application/json"));
            assert!(json, "{context}: error {} to HEAD is not JSON", self.status);
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{context}: error {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        });
        let ok = body["success"] == false
            && body["error"].as_str().is_some_and(|s| !s.is_empty())
            && body["timestamp"].is_number()
            && body["code"].as_str().is_some_and(|c| {
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            });
        assert!(ok, "{context}: error {} body {body}", self.status);
    }
}

/// Why no response came back.
#[derive(Debug, PartialEq, Eq)]
pub enum NoReply {
    /// The server closed the connection without a (complete) response.
    Closed,
    /// Nothing within [`ANSWER_TIMEOUT`].
    Timeout,
    /// The bytes that came back are not an HTTP/1.1 response.
    Garbled,
}

pub struct Server {
    ctx: Arc<AppContext>,
    engine_thread: Option<JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
}

/// The configuration the targets run with: the defaults, a share token, and share rate
/// limits high enough that a scripted sharer is not throttled (the limiter is still called).
pub fn config() -> Config {
    // Parsed once: clap's parse is a good part of a server's start-up cost.
    static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    let mut config = DEFAULTS.get_or_init(Config::defaults).clone();
    config.port = 0;
    config.share.bearer_token = Some(TOKEN.to_owned());
    config.share.share_audio_rate = 1_000_000;
    config.share.share_metadata_rate = 1_000_000;
    // No batching window: it only delays the engine's answers (an SSE open, the shutdown
    // at the end of each input) by up to 5 ms, which would dominate each input's run time.
    config.batch_interval_ms = 0;
    // The queue is allocated whole up front (16,384 slots by default); one input sends a
    // few dozen messages at most, and a full queue only makes a sender wait.
    config.engine_queue_capacity = 256;
    // The Stream Manager's files: one directory for the process, never the working one.
    let data = std::env::temp_dir().join(format!("bandsync-fuzz-{}", std::process::id()));
    config.stream_manager.asset_storage_path = data.join("assets");
    config.stream_manager.stream_state_path = data.join("streams");
    config
}

/// One set of collectors for every server of the process: building the Prometheus
/// registry is a good part of a server's start-up cost, and counters never steer routing.
fn metrics() -> Arc<Metrics> {
    static METRICS: std::sync::OnceLock<Arc<Metrics>> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| Arc::new(Metrics::new())).clone()
}

impl Server {
    pub fn start() -> Self {
        reap_finished();
        let config = config();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        // Called off any runtime, so the engine gets a thread of its own.
        let (ctx, engine_run) =
            bandsync::server::assemble(config, metrics()).expect("the engine thread starts");
        let bandsync::engine::EngineRun::Thread(engine_thread) = engine_run else {
            unreachable!("assemble off a runtime starts the engine on a thread")
        };
        Self {
            ctx,
            engine_thread: Some(engine_thread),
            rt,
        }
    }

    /// Sends `request` (raw bytes, as a client would write them) on a fresh connection and
    /// reads the first response.
    pub fn exchange(&self, request: &[u8]) -> Result<Reply, NoReply> {
        let service = bandsync::service::service(self.ctx.clone());
        let head_request = request.starts_with(b"HEAD ");
        let request = request.to_vec();
        self.rt.block_on(async move {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // The one difference from the accept loop: the client half-closes after its
            // request (below), and hyper must still answer it rather than drop it.
            builder.http1().half_close(true);
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(server),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let served = tokio::spawn(connection);
            let (mut reader, mut writer) = tokio::io::split(client);
            // Written from its own task: the server may answer (413, 401) without reading
            // a large body, and the read must not wait for the write to finish.
            let writing = tokio::spawn(async move {
                let _ = writer.write_all(&request).await;
                // Half-close: a request whose body is shorter than declared ends here
                // instead of waiting for bytes that will never come.
                let _ = writer.shutdown().await;
            });
            let reply = tokio::time::timeout(ANSWER_TIMEOUT, read_reply(&mut reader, head_request))
                .await
                .map_err(|_| NoReply::Timeout)
                .and_then(|reply| reply);
            writing.abort();
            // A panic in the service unwinds the connection task, which tokio catches:
            // hand it on, or it would pass for a closed connection.
            tokio::task::yield_now().await;
            if served.is_finished() {
                if let Err(e) = served.await {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            } else {
                served.abort();
            }
            reply
        })
    }
}

impl Drop for Server {
    /// Stops the engine without waiting for its thread to exit: the next input need not
    /// wait for a thread that shares nothing with it. A panic on that thread (the engine
    /// contains panics per message, so one would be a bug) still fails the process: it is
    /// checked on the next start, see [`Server::start`].
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
        let engine = self.ctx.engine.clone();
        let _ = self.rt.block_on(engine.send(Inbound::Shutdown));
        if let Some(thread) = self.engine_thread.take() {
            FINISHING.with(|f| f.borrow_mut().push(thread));
        }
    }
}

thread_local! {
    /// Engine threads told to stop, not yet joined.
    static FINISHING: std::cell::RefCell<Vec<JoinHandle<()>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Joins the engine threads that have exited, panicking if one of them panicked.
fn reap_finished() {
    FINISHING.with(|f| {
        let mut threads = f.borrow_mut();
        let (done, running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(JoinHandle::is_finished);
        *threads = running;
        for thread in done {
            assert!(thread.join().is_ok(), "an engine thread panicked");
        }
    });
}

/// Reads one response: its head, then its body by Content-Length, chunked coding, or to
/// the end of the stream. Event streams and upgrades stop after the head.
async fn read_reply(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    head_request: bool,
) -> Result<Reply, NoReply> {
    let mut buf = Vec::with_capacity(4096);
    let (status, headers, head_len) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = response.code.ok_or(NoReply::Garbled)?;
                let headers = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect::<Vec<_>>();
                break (status, headers, n);
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(NoReply::Garbled),
        }
        if reader
            .read_buf(&mut buf)
            .await
            .map_err(|_| NoReply::Closed)?
            == 0
        {
            return Err(NoReply::Closed);
        }
    };
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        head: head_request,
    };
    let mut rest = buf.split_off(head_len);
    let streaming = reply
        .header("content-type")
        .is_some_and(|t| t.starts_with(b"text/event-stream"));
    if head_request || streaming || status < 200 || status == 204 || status == 304 {
        return Ok(reply);
    }
    if let Some(len) = reply.header("content-length") {
        let len: usize = std::str::from_utf8(len)
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or(NoReply::Garbled)?;
        while rest.len() < len {
            if reader
                .read_buf(&mut rest)
                .await
                .map_err(|_| NoReply::Closed)?
                == 0
            {
                return Err(NoReply::Closed);
            }
        }
        rest.truncate(len);
        reply.body = rest;
        return Ok(reply);
    }
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
    if chunked {
        reply.body = dechunk(reader, rest).await?;
        return Ok(reply);
    }
    let _ = reader.read_to_end(&mut rest).await;
    reply.body = rest;
    Ok(reply)
}

/// Decodes a chunked body, `rest` being what was already read past the head.
async fn dechunk(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    mut rest: Vec<u8>,
) -> Result<Vec<u8>, NoReply> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        // Need a whole size line, then the chunk and its CRLF.
        let parsed = httparse::parse_chunk_size(&rest[at..]).map_err(|_| NoReply::Garbled)?;
        if let httparse::Status::Complete((used, size)) = parsed {
            let size = usize::try_from(size).map_err(|_| NoReply::Garbled)?;
            let end = at + used + size + 2;
            if rest.len() >= end {
                if size == 0 {
                    return Ok(body);
                }
                body.extend_from_slice(&rest[at + used..at + used + size]);
                at = end;
                continue;
            }
        }
        if reader
            .read_buf(&mut rest)
            .await
            .map_err(|_| NoReply::Closed)?
            == 0
        {
            return Err(NoReply::Closed);
        }
    }
}
