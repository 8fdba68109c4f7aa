//! The Socket.IO endpoint at `/socket.io/` (Engine.IO v4, Socket.IO v5): the apps of the
//! Socket.IO server bandsync replaces connect with `socket.io-client`, unchanged but for the
//! URL, and share sessions with `/ws` and SSE (`protocol/PROTOCOL.md` section 18).
//!
//! Written here rather than with `socketioxide`: that crate cannot recover a connection
//! (its `CONNECT` answer has no `pid` and its socket ids are its own, so clients never send
//! what recovery needs), it pulls a second tungstenite (0.30, beside warp's 0.29) and needs
//! Rust 1.94, and its emit encodes per socket where the engine converts a broadcast once.
//! Engine.IO's long-polling and upgrade are small; the sockets reuse this server's own
//! WebSocket upgrade, frame guard, rate limit and outboxes.
//!
//! - `packets`: the Engine.IO and Socket.IO packets (pure).
//! - `session`: one task per Engine.IO session (polling, WebSocket, the upgrade, pings).
//! - `socket`: the Socket.IO socket (connect, events, acknowledgements, conversion).
//! - `acks`, `recovery`: acknowledgement ids; connection state recovery records.

mod acks;
pub mod packets;
pub mod recovery;
mod session;
mod socket;

use crate::context::AppContext;
use crate::http::errors::{error_response, full, Body};
use crate::limits::ConnLimits;
use crate::ws::upgrade;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use packets::{EngineError, EngineQuery, TransportKind, SEPARATOR};
use recovery::RecoveryStore;
use session::{PollAnswer, Start, ToSession};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Requests a session's task may have waiting: a poll, a POST or two, an upgrade.
const SESSION_QUEUE: usize = 4;
/// How long a probing WebSocket may take to send `2probe`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session's task, and the transport it is on (only polling ones take requests).
struct Entry {
    requests: mpsc::Sender<ToSession>,
    transport: TransportKind,
}

/// The Engine.IO sessions of this instance and the recovery records.
pub struct SocketIo {
    sessions: Mutex<HashMap<Arc<str>, Entry>>,
    pub recovery: RecoveryStore,
    /// Long-polling sessions per client address, at most `MAX_CONNECTIONS_PER_IP`: one
    /// keep-alive TCP connection can open any number of them, so the per-address cap on
    /// TCP connections does not bound them (WebSocket sessions are each a connection).
    polling_per_address: ConnLimits,
}

impl SocketIo {
    /// In memory, or with `REDIS_URL` in Redis (a socket then recovers on any instance).
    pub fn new(
        config: &crate::config::Config,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> redis::RedisResult<Self> {
        let recovery = match config.redis_url.as_deref() {
            Some(url) => RecoveryStore::Redis(crate::cluster::redis::sockets::SocketRecords::open(
                url,
                &config.redis_prefix,
                metrics,
            )?),
            None => RecoveryStore::memory(config.max_connections),
        };
        Ok(Self {
            sessions: Mutex::default(),
            recovery,
            polling_per_address: ConnLimits::new(usize::MAX, config.limits.max_connections_per_ip),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn polling_session(&self, sid: &str) -> Result<mpsc::Sender<ToSession>, EngineError> {
        match self.sessions().get(sid) {
            Some(entry) if entry.transport == TransportKind::Polling => Ok(entry.requests.clone()),
            Some(_) => Err(EngineError::BadRequest),
            None => Err(EngineError::UnknownSid),
        }
    }

    /// Session `sid` now runs on its WebSocket: polls and POSTs are refused from here on.
    fn upgraded(&self, sid: &str) {
        if let Some(entry) = self.sessions().get_mut(sid) {
            entry.transport = TransportKind::Websocket;
        }
    }

    fn forget(&self, sid: &str) {
        self.sessions().remove(sid);
    }
}

/// A random id (128 bits, base64url): Engine.IO session ids, socket ids, private ids.
fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The largest long-polling body a client may POST (`maxPayload` of the handshake).
fn max_payload(ctx: &AppContext) -> usize {
    ctx.config.max_frame_bytes
}

/// The `open` packet of session `sid`.
fn open_packet(ctx: &AppContext, sid: &str, transport: TransportKind) -> String {
    let params = packets::OpenParams {
        ping_interval_ms: ctx.config.socket_ping_interval,
        ping_timeout_ms: ctx.config.socket_ping_timeout,
        max_payload: max_payload(ctx),
    };
    packets::open_packet(sid, transport, params)
}

/// Serves one request under `/socket.io/`.
pub async fn handle(req: Request<Incoming>, ctx: Arc<AppContext>) -> Response<Body> {
    let query = match EngineQuery::parse(req.uri().query()) {
        Ok(query) => query,
        Err(error) => return engine_error(error),
    };
    let method = req.method().clone();
    match (query.transport, query.sid, method) {
        (transport, None, Method::GET) => handshake(req, ctx, transport),
        (_, None, _) => engine_error(EngineError::BadHandshakeMethod),
        (TransportKind::Polling, Some(sid), Method::GET) => poll(&ctx, &sid).await,
        (TransportKind::Polling, Some(sid), Method::POST) => post(req, &ctx, &sid).await,
        (TransportKind::Websocket, Some(sid), Method::GET) => upgrade(req, &ctx, &sid),
        _ => engine_error(EngineError::BadRequest),
    }
}

fn engine_error(error: EngineError) -> Response<Body> {
    let status = match error {
        EngineError::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(full(Bytes::from(error.body())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A new Engine.IO session: the same admission as `/ws` (the `Origin` rule, the
/// per-address ban, a `?token=` that must verify, a `MAX_CONNECTIONS` slot), then the
/// `open` packet (polling) or the WebSocket (which carries it).
fn handshake(
    mut req: Request<Incoming>,
    ctx: Arc<AppContext>,
    transport: TransportKind,
) -> Response<Body> {
    let accept = match transport {
        TransportKind::Websocket => match upgrade::check_handshake(&req) {
            Ok(accept) => Some(accept),
            Err(response) => return *response,
        },
        TransportKind::Polling => None,
    };
    let upgrade::Admitted {
        client_ip,
        url_grant,
        permit,
    } = match upgrade::admit(&req, &ctx, "socketio") {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let address_slot = match transport {
        TransportKind::Polling => match ctx
            .socket_io
            .polling_per_address
            .try_admit(client_ip, false)
        {
            Ok(slot) => Some(slot),
            Err(_) => {
                return error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_CONNECTIONS",
                    "too many long-polling sessions from this address (MAX_CONNECTIONS_PER_IP)",
                );
            }
        },
        TransportKind::Websocket => None,
    };
    let slots = session::Slots {
        _permit: permit,
        _address: address_slot,
    };
    let sid: Arc<str> = Arc::from(random_id());
    let (sender, requests) = mpsc::channel(SESSION_QUEUE);
    let entry = Entry {
        requests: sender,
        transport,
    };
    ctx.socket_io.sessions().insert(sid.clone(), entry);
    let socket = socket::Socket::new(ctx.clone(), client_ip, url_grant);
    match accept {
        Some(accept) => {
            upgrade::spawn_upgraded(&mut req, &ctx, false, move |ws, ctx| {
                session::run(
                    ctx,
                    sid,
                    requests,
                    Start::Websocket(Box::new(ws)),
                    socket,
                    slots,
                )
            });
            upgrade::switching_protocols(&accept, None)
        }
        None => {
            let open = open_packet(&ctx, &sid, TransportKind::Polling);
            let task = session::run(ctx.clone(), sid, requests, Start::Polling, socket, slots);
            ctx.tracker.spawn(task);
            text(open, "text/plain; charset=UTF-8")
        }
    }
}

/// A long-polling `GET`: the packets waiting, as soon as there are some.
async fn poll(ctx: &AppContext, sid: &str) -> Response<Body> {
    let session = match ctx.socket_io.polling_session(sid) {
        Ok(session) => session,
        Err(error) => return engine_error(error),
    };
    let (answer, answered) = oneshot::channel();
    if session.send(ToSession::Poll(answer)).await.is_err() {
        return engine_error(EngineError::UnknownSid);
    }
    match answered.await {
        Ok(PollAnswer::Payload(body)) => text(body, "text/plain; charset=UTF-8"),
        Ok(PollAnswer::Refused(error)) => engine_error(error),
        // The session ended without a word: as if it never existed.
        Err(_) => engine_error(EngineError::UnknownSid),
    }
}

/// A long-polling `POST`: packets from the client, `\x1e`-separated, at most `maxPayload`
/// bytes.
async fn post(req: Request<Incoming>, ctx: &AppContext, sid: &str) -> Response<Body> {
    let session = match ctx.socket_io.polling_session(sid) {
        Ok(session) => session,
        Err(error) => return engine_error(error),
    };
    let limit = max_payload(ctx);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("a long-polling body may carry at most {limit} bytes (maxPayload)"),
            );
        }
        Err(_) => return engine_error(EngineError::BadRequest),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return engine_error(EngineError::BadRequest);
    };
    let packets = body.split(SEPARATOR).map(str::to_owned).collect();
    if session.send(ToSession::Packets(packets)).await.is_err() {
        return engine_error(EngineError::UnknownSid);
    }
    text("ok", "text/html")
}

/// The WebSocket of a polling session's upgrade: probed here (`2probe` → `3probe`), then
/// handed to the session, which switches once the client sends `5`.
fn upgrade(mut req: Request<Incoming>, ctx: &Arc<AppContext>, sid: &str) -> Response<Body> {
    let accept = match upgrade::check_handshake(&req) {
        Ok(accept) => accept,
        Err(response) => return *response,
    };
    let session = match ctx.socket_io.polling_session(sid) {
        Ok(session) => session,
        Err(error) => return engine_error(error),
    };
    upgrade::spawn_upgraded(&mut req, ctx, false, move |mut ws, _ctx| async move {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let first = tokio::time::timeout(PROBE_TIMEOUT, ws.next()).await;
        let Ok(Some(Ok(Message::Text(probe)))) = first else {
            return;
        };
        if probe.as_str() != "2probe" || ws.send(Message::text("3probe")).await.is_err() {
            return;
        }
        let _ = session.send(ToSession::Upgrade(Box::new(ws))).await;
    });
    upgrade::switching_protocols(&accept, None)
}
