//! Helpers shared by the black-box tests: joining, waiting for one kind of event while
//! failing loudly on anything unexpected, reading close codes, and scraping `/metrics`.
//!
//! Every wait is bounded by [`WAIT`] (generous: the machine may be busy); tests assert
//! order and values, never latency.

#![allow(dead_code)]

use crate::common::TestServer;
use bandsync_client::protocol::client::{Play, Seek, SetRole, SetTempo, UpdateMessage};
use bandsync_client::protocol::server::{
    ErrorEvent, RoomStats, ScrollTick, ServerEvent, SessionState, Snapshot,
};
use bandsync_client::protocol::{
    ClientEvent, ErrorCode, JoinSession, RequestId, Role, ServerFrame,
};
use bandsync_client::{ClientError, Incoming, SseClient, SseEvent, WsClient};
use std::time::Duration;
use tokio::time::Instant;

/// How long any single expected event may take to arrive.
pub const WAIT: Duration = Duration::from_secs(5);

/// Slack for ordering server times taken microseconds apart: the client decodes numbers
/// with serde_json's default float parser, which may be one ulp (about 0.25 µs at today's
/// epoch-ms values) off.
pub const TIME_SLACK: f64 = 1e-3;

// ---------------------------------------------------------------------------------------
// Connecting and joining
// ---------------------------------------------------------------------------------------

pub async fn connect(server: &TestServer) -> WsClient {
    WsClient::connect(&server.ws_url())
        .await
        .expect("websocket connect")
}

/// Connects and joins `session`, asking for `role`; returns the client and its snapshot.
pub async fn join(server: &TestServer, session: &str, role: Option<Role>) -> (WsClient, Snapshot) {
    let mut client = connect(server).await;
    let snapshot = client
        .join(session, role, None)
        .await
        .unwrap_or_else(|e| panic!("join {session}: {e}"));
    (client, snapshot)
}

/// Joins as leader and checks the seat was granted.
pub async fn join_leader(server: &TestServer, session: &str) -> (WsClient, Snapshot) {
    let (client, snapshot) = join(server, session, Some(Role::Leader)).await;
    assert_eq!(
        snapshot.role,
        Role::Leader,
        "leader seat not granted: {snapshot:?}"
    );
    (client, snapshot)
}

/// Joins as follower.
pub async fn join_follower(server: &TestServer, session: &str) -> (WsClient, Snapshot) {
    let (client, snapshot) = join(server, session, Some(Role::Follower)).await;
    assert_eq!(snapshot.role, Role::Follower);
    (client, snapshot)
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// Sends `event` with a fresh id and returns the frame carrying that id back.
pub async fn request(client: &mut WsClient, event: ClientEvent) -> ServerFrame {
    let what = event.type_name();
    client
        .request(event, WAIT)
        .await
        .unwrap_or_else(|e| panic!("request `{what}`: {e}"))
}

/// Sends `event` and expects an `error` reply (with the id echoed); returns its code.
pub async fn expect_error(client: &mut WsClient, event: ClientEvent) -> ErrorCode {
    let what = event.type_name();
    let frame = request(client, event).await;
    match frame.event {
        ServerEvent::Error(ErrorEvent { code, message }) => {
            assert!(!message.is_empty(), "error without a message for `{what}`");
            code
        }
        other => panic!("expected an error for `{what}`, got {other:?}"),
    }
}

/// Sends `event` and expects a `sync_response` (the answer to no-op commands).
pub async fn expect_sync_response(client: &mut WsClient, event: ClientEvent) -> SessionState {
    let what = event.type_name();
    match request(client, event).await.event {
        ServerEvent::SyncResponse(state) => state,
        other => panic!("expected sync_response for `{what}`, got {other:?}"),
    }
}

/// `sync_request` → the session state.
pub async fn sync(client: &mut WsClient) -> SessionState {
    expect_sync_response(client, ClientEvent::SyncRequest).await
}

/// Sends a raw text frame carrying `"id": id` and returns the reply with that id.
pub async fn raw_request(client: &mut WsClient, text: &str, id: &RequestId) -> ServerFrame {
    client.send_raw_text(text.to_owned()).await.expect("send");
    let id = id.clone();
    client
        .wait_for(|f| f.id.as_ref() == Some(&id), WAIT)
        .await
        .unwrap_or_else(|e| panic!("no reply with id {id:?} to {text}: {e}"))
}

pub fn tempo(tempo: f64) -> ClientEvent {
    ClientEvent::SetTempo(SetTempo::new(tempo))
}

pub fn play(beat: Option<f64>) -> ClientEvent {
    ClientEvent::Play(Play::new(beat))
}

pub fn seek(beat: f64) -> ClientEvent {
    ClientEvent::Seek(Seek::new(beat))
}

pub fn message(text: &str) -> ClientEvent {
    ClientEvent::UpdateMessage(UpdateMessage {
        text: text.to_owned(),
    })
}

pub fn set_role(role: Role) -> ClientEvent {
    ClientEvent::SetRole(SetRole { role })
}

pub fn join_event(session: &str, role: Option<Role>, token: Option<&str>) -> ClientEvent {
    ClientEvent::JoinSession(JoinSession {
        session_id: session.to_owned(),
        name: None,
        role,
        last_version: None,
        resume_token: token.map(str::to_owned),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------
// Waiting for events
// ---------------------------------------------------------------------------------------

/// The next frame, within [`WAIT`]; panics on a close, a decode error or a timeout.
pub async fn next_frame(client: &mut WsClient) -> ServerFrame {
    match client.next_timeout(WAIT).await {
        Ok(Incoming::Frame { frame, .. }) => frame,
        Ok(Incoming::Closed { code, reason }) => {
            panic!("connection closed (code {code:?}, {reason}) while waiting for a frame")
        }
        Err(e) => panic!("waiting for a frame: {e}"),
    }
}

/// The next frame whose type is not in `skip`, within [`WAIT`] overall.
pub async fn next_skipping(client: &mut WsClient, skip: &[&str]) -> ServerFrame {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match client.next_timeout(left).await {
            Ok(Incoming::Frame { frame, .. }) => frame,
            Ok(Incoming::Closed { code, reason }) => {
                panic!("connection closed (code {code:?}, {reason}) while waiting")
            }
            Err(e) => panic!("waiting for a frame other than {skip:?}: {e}"),
        };
        if !skip.contains(&frame.event.type_name()) {
            return frame;
        }
    }
}

/// The next `state_update`, skipping only `room_stats` and `scroll_tick`; anything else
/// (an error, a stray reply) fails the test. A broadcast never carries a request id.
pub async fn next_state_update(client: &mut WsClient) -> SessionState {
    let frame = next_skipping(client, &["room_stats", "scroll_tick"]).await;
    assert_eq!(frame.id, None, "broadcasts carry no id: {frame:?}");
    assert!(frame.timestamp > 0.0, "server frames carry a timestamp");
    match frame.event {
        ServerEvent::StateUpdate(state) => state,
        other => panic!("expected state_update, got {other:?}"),
    }
}

/// The next `scroll_tick`, skipping only `room_stats`.
pub async fn next_tick(client: &mut WsClient) -> ScrollTick {
    match next_skipping(client, &["room_stats"]).await.event {
        ServerEvent::ScrollTick(tick) => tick,
        other => panic!("expected scroll_tick, got {other:?}"),
    }
}

/// Skips frames until a `room_stats` satisfying `pred` arrives (room_stats is
/// latest-value-wins, so intermediate counts may or may not be seen).
pub async fn room_stats_where<F>(client: &mut WsClient, mut pred: F) -> RoomStats
where
    F: FnMut(&RoomStats) -> bool,
{
    let frame = client
        .wait_for(
            |f| matches!(&f.event, ServerEvent::RoomStats(s) if pred(s)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("no matching room_stats: {e}"));
    match frame.event {
        ServerEvent::RoomStats(stats) => stats,
        _ => unreachable!(),
    }
}

/// `room_stats` with exactly these member and listener counts.
pub async fn room_stats_counts(client: &mut WsClient, members: u64, listeners: u64) -> RoomStats {
    room_stats_where(client, |s| s.members == members && s.listeners == listeners).await
}

/// Reads until the connection closes (skipping any frames) and returns the close code
/// and reason; panics if it stays open or ends without a close frame.
pub async fn expect_closed(client: &mut WsClient) -> (Option<u16>, String) {
    closing(client).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`expect_closed`], but an end without a close frame is an `Err` describing it, so
/// a test can check other things before asserting on the code.
pub async fn closing(client: &mut WsClient) -> Result<(Option<u16>, String), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_timeout(left).await {
            Ok(Incoming::Closed { code, reason }) => return Ok((code, reason)),
            Ok(Incoming::Frame { .. }) | Err(ClientError::Decode { .. }) => {}
            Err(ClientError::Timeout(_)) => panic!("connection still open after {WAIT:?}"),
            Err(e) => return Err(format!("connection ended without a close frame: {e}")),
        }
    }
}

/// Asserts that no frame of the given types arrives within `window` (other frames are
/// skipped). Used only for "nothing more happens" checks, so the window is a lower bound
/// on how hard we looked, not a latency claim.
pub async fn assert_no_frame_of(client: &mut WsClient, kinds: &[&str], window: Duration) {
    let deadline = Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match client.next_timeout(left).await {
            Ok(Incoming::Frame { frame, .. }) => assert!(
                !kinds.contains(&frame.event.type_name()),
                "unexpected {}: {frame:?}",
                frame.event.type_name()
            ),
            Ok(Incoming::Closed { code, reason }) => {
                panic!("connection closed (code {code:?}, {reason})")
            }
            Err(ClientError::Timeout(_)) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------------------

pub async fn sse(server: &TestServer, session: &str, last_event_id: Option<&str>) -> SseClient {
    SseClient::connect(&server.base_url(), session, last_event_id)
        .await
        .unwrap_or_else(|e| panic!("sse connect {session}: {e}"))
}

/// The next SSE event, within [`WAIT`]; panics if the stream ended.
pub async fn sse_next(stream: &mut SseClient) -> SseEvent {
    match stream.next_event(WAIT).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("sse stream ended"),
        Err(e) => panic!("sse: {e}"),
    }
}

/// The next SSE event whose type is not in `skip`.
pub async fn sse_next_skipping(stream: &mut SseClient, skip: &[&str]) -> SseEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match stream.next_event(left).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("sse stream ended while waiting"),
            Err(e) => panic!("sse, waiting for an event other than {skip:?}: {e}"),
        };
        if !skip.contains(&event.frame.event.type_name()) {
            return event;
        }
    }
}

/// The numeric SSE event id.
pub fn sse_id(event: &SseEvent) -> u64 {
    event
        .id
        .as_deref()
        .unwrap_or_else(|| panic!("sse event without id: {event:?}"))
        .parse()
        .expect("numeric sse id")
}

// ---------------------------------------------------------------------------------------
// HTTP and metrics
// ---------------------------------------------------------------------------------------

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("http client")
}

pub async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    http()
        .get(server.http_url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub async fn get_json(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let response = get(server, path).await;
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, json)
}

pub async fn metrics_text(server: &TestServer) -> String {
    get(server, "/metrics")
        .await
        .text()
        .await
        .expect("metrics body")
}

/// The value of one sample line in Prometheus text, e.g. `bandsync_ticks_total` or
/// `bandsync_connections_total{transport="ws"}`; `None` when absent.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().expect("numeric sample"))
    })
}

/// One metric sample from the server, 0 when absent (a labelled counter that never moved
/// is not rendered).
pub async fn metric(server: &TestServer, sample: &str) -> f64 {
    metric_value(&metrics_text(server).await, sample).unwrap_or(0.0)
}

/// Polls `/metrics` until `sample` reaches at least `at_least` (bounded by [`WAIT`]).
pub async fn wait_metric_at_least(server: &TestServer, sample: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = metric(server, sample).await;
        if value >= at_least {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} stayed at {value}, expected >= {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Raw WebSocket (for frames the client library refuses to build)
// ---------------------------------------------------------------------------------------

pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn raw_connect(server: &TestServer) -> RawSocket {
    let (socket, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("raw websocket connect");
    socket
}

/// What a raw socket delivered next.
#[derive(Debug)]
pub enum RawNext {
    /// A text frame, parsed as JSON.
    Json(serde_json::Value),
    /// A close frame with this code (`None`: no code).
    Closed(Option<u16>),
    /// The connection ended without a close frame, or failed.
    Failed(String),
}

/// The next data frame, close or failure on a raw socket, within [`WAIT`] (pings and
/// pongs are skipped; tungstenite answers pings as we read).
pub async fn raw_next(socket: &mut RawSocket) -> RawNext {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let next = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("raw socket: nothing within {WAIT:?}"));
        return match next {
            None => RawNext::Failed("stream ended".into()),
            Some(Err(e)) => RawNext::Failed(e.to_string()),
            Some(Ok(Message::Text(text))) => RawNext::Json(
                serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}")),
            ),
            Some(Ok(Message::Close(frame))) => RawNext::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(b))) => {
                panic!("server sent a binary frame ({} bytes)", b.len())
            }
        };
    }
}

/// The next JSON frame on a raw socket whose `type` is not in `skip`; panics otherwise.
pub async fn raw_next_json(socket: &mut RawSocket, skip: &[&str]) -> serde_json::Value {
    loop {
        match raw_next(socket).await {
            RawNext::Json(v) if skip.contains(&v["type"].as_str().unwrap_or("")) => continue,
            RawNext::Json(v) => return v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

pub async fn raw_send_text(socket: &mut RawSocket, text: &str) {
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            text.to_owned(),
        ))
        .await
        .expect("raw send");
}
