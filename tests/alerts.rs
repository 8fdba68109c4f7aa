//! The monitor's alerts, black-box against the real server on an ephemeral port: each alert
//! is forced with a low threshold and a short `METRICS_INTERVAL`, then checked to be raised
//! (an `alert` event on an operator's `GET /alerts/stream`), listed in `/health`, counted in
//! `/metrics`, and cleared once its cause stops.
//!
//! The cause is kept up (a task or thread repeating it) until every check of the raised
//! alert has passed, so a busy machine cannot clear it in between. The tests run one at a
//! time (`SERIAL`): memory and CPU are this test process's own, shared by every server the
//! tests start.

mod common;
mod support;

use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::ClientEvent;
use bandsync_client::WsClient;
use common::TestServer;
use futures_util::StreamExt;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// Short, so a raise and a clear take well under a second each.
const INTERVAL_MS: u64 = 200;
/// How long a raise or a clear may take: many intervals, for a busy machine.
const ALERT_WAIT: Duration = Duration::from_secs(15);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An operator subscribed to `GET /alerts/stream`.
struct Operator {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Operator {
    async fn subscribe(server: &TestServer) -> Self {
        let response = reqwest::Client::new()
            .get(server.http_url("/alerts/stream"))
            .send()
            .await
            .expect("GET /alerts/stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an SSE stream"
        );
        let mut operator = Operator {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        };
        let first = operator.next_event().await.expect("the alerts list");
        assert_eq!(first["type"], "alerts", "{first}");
        assert!(first["data"]["alerts"].is_array(), "{first}");
        assert!(first["timestamp"].as_f64().unwrap() > 0.0);
        operator
    }

    /// The next event's envelope (keep-alive comments skipped); `None` once the stream ended.
    async fn next_event(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if data.is_empty() {
                    continue; // a comment
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("event JSON"));
            }
            let chunk = tokio::time::timeout(ALERT_WAIT, self.body.next())
                .await
                .expect("an event in time")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("stream chunk")).unwrap());
            assert!(self.buffer.len() < 1 << 20, "unbounded event");
        }
    }

    /// The next `alert` event of `kind` in `state` (other kinds are skipped: the process's
    /// CPU and memory move with whatever else runs).
    async fn expect(&mut self, kind: &str, state: &str) -> Value {
        loop {
            let event = self.next_event().await.expect("stream open");
            let data = &event["data"];
            if event["type"] == "alert" && data["type"] == kind {
                assert_eq!(data["state"], state, "{event}");
                return data.clone();
            }
        }
    }
}

/// The `alerts` of `/health`, which stays 200 while alerts are raised.
async fn health_alerts(server: &TestServer) -> Vec<Value> {
    let (status, health) = get_json(server, "/health").await;
    assert_eq!(status, 200, "{health}");
    health["alerts"].as_array().expect("alerts list").clone()
}

/// Raised: sent to the operator, listed in `/health` with its fields, counted in
/// `/metrics`. Then `stop` ends the cause, and it must clear everywhere.
async fn raised_listed_counted_cleared(
    server: &TestServer,
    operator: &mut Operator,
    kind: &str,
    stop: impl FnOnce(),
) {
    let raised = operator.expect(kind, "raised").await;
    for field in ["message", "value", "threshold", "since", "unit"] {
        assert!(!raised[field].is_null(), "{field} missing: {raised}");
    }
    assert!(raised["value"].as_f64().unwrap() > raised["threshold"].as_f64().unwrap());
    let listed = health_alerts(server).await;
    let entry = listed
        .iter()
        .find(|a| a["type"] == kind)
        .unwrap_or_else(|| panic!("{kind} not listed in /health: {listed:?}"));
    assert_eq!(entry["since"], raised["since"], "the same alert: {entry}");
    assert!(!entry["message"].as_str().unwrap().is_empty());
    let text = metrics_text(server).await;
    let counted = metric_value(
        &text,
        &format!("bandsync_alerts_raised_total{{type=\"{kind}\"}}"),
    );
    assert_eq!(counted, Some(1.0), "raised once, counted once");
    let active = metric_value(&text, &format!("bandsync_alerts_active{{type=\"{kind}\"}}"));
    assert_eq!(active, Some(1.0));

    stop();
    let cleared = operator.expect(kind, "cleared").await;
    assert_eq!(cleared["since"], raised["since"]);
    assert!(cleared["clearedAt"].as_f64().unwrap() >= raised["since"].as_f64().unwrap());
    assert!(cleared["clearedValue"].as_f64().unwrap() <= cleared["threshold"].as_f64().unwrap());
    assert!(!health_alerts(server)
        .await
        .iter()
        .any(|a| a["type"] == kind));
    let text = metrics_text(server).await;
    let active = metric_value(&text, &format!("bandsync_alerts_active{{type=\"{kind}\"}}"));
    assert_eq!(active, Some(0.0));
    let counted = metric_value(
        &text,
        &format!("bandsync_alerts_raised_total{{type=\"{kind}\"}}"),
    );
    assert_eq!(counted, Some(1.0), "clearing does not count a raise");
}

/// Runs `step` every 20 ms on the test's runtime until the flag is set.
fn repeat<F, Fut>(mut step: F) -> Arc<AtomicBool>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            step().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stop
}

#[tokio::test]
async fn latency_over_twice_the_target_is_raised_and_cleared() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(|c| {
        c.ops.metrics_interval = INTERVAL_MS;
        // Twice this is 1 µs: any command's fan-out takes longer.
        c.ops.sync_target_latency = 0.0005;
    })
    .await;
    let mut operator = Operator::subscribe(&server).await;
    let (client, _) = join(&server, "alerts-latency", None).await;
    let client = Arc::new(tokio::sync::Mutex::new(client));
    let stop = repeat(move || {
        let client = client.clone();
        async move {
            let mut client = client.lock().await;
            sync(&mut client).await;
        }
    });
    raised_listed_counted_cleared(&server, &mut operator, "latency", || {
        stop.store(true, Ordering::Relaxed)
    })
    .await;
}

#[tokio::test]
async fn connection_errors_are_raised_and_cleared() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(|c| {
        c.ops.metrics_interval = INTERVAL_MS;
        c.ops.alert_connection_errors = 0;
        // The operator's stream takes the only realtime slot: every WebSocket is refused.
        c.max_connections = 1;
    })
    .await;
    let mut operator = Operator::subscribe(&server).await;
    let url = server.ws_url();
    let stop = repeat(move || {
        let url = url.clone();
        async move {
            assert!(WsClient::connect(&url).await.is_err(), "the server is full");
        }
    });
    raised_listed_counted_cleared(&server, &mut operator, "connection_errors", || {
        stop.store(true, Ordering::Relaxed)
    })
    .await;
}

#[tokio::test]
async fn rate_limit_violations_are_raised_and_cleared() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(|c| {
        c.ops.metrics_interval = INTERVAL_MS;
        c.ops.alert_rate_limit_violations = 0;
        c.rate_limit_max_requests = 1;
        c.rate_limit_window_ms = 60_000;
        c.rate_limit_close_after = 1_000_000;
    })
    .await;
    let mut operator = Operator::subscribe(&server).await;
    let client = Arc::new(tokio::sync::Mutex::new(connect(&server).await));
    let stop = repeat(move || {
        let client = client.clone();
        async move {
            let mut client = client.lock().await;
            let beat = ClientEvent::Heartbeat(Heartbeat { t0: 1.0 });
            client.send(beat).await.expect("send");
            // Read the answer, so the socket's outbox never fills.
            next_frame(&mut client).await;
        }
    });
    raised_listed_counted_cleared(&server, &mut operator, "rate_limit_violations", || {
        stop.store(true, Ordering::Relaxed)
    })
    .await;
}

#[tokio::test]
async fn memory_over_the_threshold_is_raised_and_cleared() {
    let _serial = SERIAL.lock().await;
    let resident = bandsync::http::resident_mb();
    assert!(resident > 0.0, "/proc is readable");
    // This process's memory: the server runs in it. 128 MB above today's, then 384 MB held.
    let threshold = resident as u64 + 128;
    let server = TestServer::start_with(|c| {
        c.ops.metrics_interval = INTERVAL_MS;
        c.ops.alert_memory_mb = threshold;
    })
    .await;
    let mut operator = Operator::subscribe(&server).await;
    let mut held = vec![0u8; 384 << 20];
    // Touch every page: untouched pages of a fresh mapping are not resident.
    for page in held.chunks_mut(4096) {
        page[0] = 1;
    }
    raised_listed_counted_cleared(&server, &mut operator, "memory", || drop(held)).await;
}

#[tokio::test]
async fn cpu_over_the_threshold_is_raised_and_cleared() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(|c| {
        c.ops.metrics_interval = INTERVAL_MS;
        c.ops.alert_cpu_percent = 10.0;
    })
    .await;
    let mut operator = Operator::subscribe(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Two spinning threads: at least 10% of the available CPUs even on a shared machine.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    raised_listed_counted_cleared(&server, &mut operator, "cpu", || {
        stop.store(true, Ordering::Relaxed)
    })
    .await;
    for spinner in spinners {
        spinner.join().unwrap();
    }
}

#[tokio::test]
async fn the_operator_stream_ends_with_a_shutdown_event() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start().await;
    let mut operator = Operator::subscribe(&server).await;
    let mut server = server;
    server.begin_shutdown();
    let last = loop {
        let event = operator
            .next_event()
            .await
            .expect("a shutdown event before the end");
        if event["type"] == "shutdown" {
            break event;
        }
    };
    assert_eq!(last["data"]["reason"], "server shutting down");
    assert!(
        operator.next_event().await.is_none(),
        "the stream ends after it"
    );
    server.wait().await;
}

#[tokio::test]
async fn the_operator_stream_is_guarded_like_metrics() {
    use bandsync_client::token::{mint, SigningKey, TokenSpec};
    let _serial = SERIAL.lock().await;
    const SECRET: &str = "a test secret of at least 32 bytes!";
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let token = |session: &str| {
        let spec = TokenSpec {
            session: session.into(),
            leader: false,
            ttl: Duration::from_secs(60),
            sub: None,
        };
        mint(&SigningKey::Secret(SECRET.into()), &spec).unwrap()
    };
    let url = server.http_url("/alerts/stream");
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("request").status().as_u16()
    };
    let http = http();
    assert_eq!(status(http.get(&url)).await, 401, "no token");
    let one_session = http.get(&url).bearer_auth(token("band"));
    assert_eq!(status(one_session).await, 401, "a token for one session");
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token("*"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a server-wide token");
    assert_eq!(status(http.post(&url).bearer_auth(token("*"))).await, 405);
}
