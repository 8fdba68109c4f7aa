//! The HTTP/1.1 upgrade to WebSocket (RFC 6455 section 4.2), done here rather than by
//! warp's `ws()` filter: warp cannot negotiate extensions, and permessage-deflate is
//! negotiated on this same handshake (see [`crate::deflate`]).

use super::connection;
use super::guard::{FrameGuard, GuardLimits};
use super::guarded_io::GuardedStream;
use super::messages::MessageReader;
use super::socket::{self, WsSink, WsSource};
use crate::auth::credentials::Presented;
use crate::auth::jwt::Grant;
use crate::auth::AuthError;
use crate::context::{AppContext, ConnectionPermit};
use crate::deflate;
use crate::http::errors::{error_response, full, Body};
use crate::net::io::Activity;
use crate::outbox::Outbox;
use bytes::BytesMut;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Read buffer per socket. tungstenite allocates it eagerly (128 KiB by default) and keeps
/// it, so it counts in the memory of every idle connection; it reads from the frame guard's
/// buffer, not the socket, so small reads cost only a few more copies per message.
const READ_BUFFER_BYTES: usize = 256;
/// Writes are fed, then flushed once per batch; this is the size at which tungstenite
/// writes before the flush.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Authenticated mode: the grant of `?token=` on the `/ws` URL (browsers cannot set an
/// `Authorization` header on a WebSocket). Which session it is for is checked at each join;
/// a token that does not verify at all refuses the upgrade (401) before a slot is taken.
fn url_grant<B>(req: &Request<B>, ctx: &AppContext) -> Result<Option<Grant>, AuthError> {
    let Some(verifier) = &ctx.auth.jwt else {
        return Ok(None);
    };
    let presented = Presented::of(req.uri(), req.headers())?;
    presented
        .jwt()
        .map(|token| verifier.verify(token))
        .transpose()
}

/// Whether a request asks for a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket")
}

/// Checks the handshake's method and headers; returns the `Sec-WebSocket-Accept` value,
/// or the JSON error to answer (boxed: a response is large). Shared by `/ws` and the
/// repository streams' WebSocket.
pub fn check_handshake<B>(req: &Request<B>) -> Result<String, Box<Response<Body>>> {
    if req.method() != Method::GET {
        return Err(Box::new(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET to open a WebSocket",
        )));
    }
    let headers = req.headers();
    if !wants_websocket(headers) {
        return Err(Box::new(error_response(
            StatusCode::UPGRADE_REQUIRED,
            "UPGRADE_REQUIRED",
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        )));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut response = error_response(
            StatusCode::UPGRADE_REQUIRED,
            "UNSUPPORTED_WEBSOCKET_VERSION",
            "only WebSocket version 13 is supported",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
        );
        return Err(Box::new(response));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "BAD_UPGRADE",
            "missing Sec-WebSocket-Key",
        )));
    };
    Ok(derive_accept_key(key.as_bytes()))
}

/// The socket settings of every WebSocket this server accepts, with `hard` the largest
/// frame or message.
fn config_with_cap(hard: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
}

/// An upgraded connection as a server WebSocket, every incoming frame through the
/// [`FrameGuard`] (sizes, framing rules, the partial-message budget).
pub type ServerSocket = WebSocketStream<GuardedStream<TokioIo<hyper::upgrade::Upgraded>>>;

pub async fn server_socket(
    upgraded: hyper::upgrade::Upgraded,
    ctx: &AppContext,
    limits: GuardLimits,
    config: WebSocketConfig,
) -> ServerSocket {
    let io = TokioIo::new(upgraded);
    guarded_websocket(io, BytesMut::new(), ctx, limits, config).await
}

/// `io` as a server WebSocket, every incoming frame (`early` first: bytes already read
/// from the socket) through the [`FrameGuard`].
async fn guarded_websocket<S>(
    io: S,
    early: BytesMut,
    ctx: &AppContext,
    limits: GuardLimits,
    config: WebSocketConfig,
) -> WebSocketStream<GuardedStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let guard = FrameGuard::new(limits, ctx.partial_budget.clone());
    let inflated = ctx.metrics.ws.deflate_in.clone();
    let io = GuardedStream::new(io, guard)
        .with_early(early)
        .counting(inflated);
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Who a `/ws` connection is, for its task.
struct WsPeer {
    permit: ConnectionPermit,
    deflate: bool,
    client_ip: std::net::IpAddr,
    url_grant: Option<Grant>,
}

/// Once the connection hands its socket over, serves it in a task the shutdown waits for,
/// its socket shared by that task (reading) and its outbox (writing directly: see
/// [`super::socket`]). The caller answers 101. `activity` is the connection's record,
/// through which the socket is handed over; none when the service runs outside the accept
/// loop (which cannot hand a socket over).
fn spawn_ws<B>(
    req: &mut Request<B>,
    ctx: &Arc<AppContext>,
    activity: Option<Arc<Activity>>,
    peer: WsPeer,
) {
    let ctx = ctx.clone();
    // Answered without hyper (`net::first_request`): the connection gives the socket to
    // `serve_ws` itself as it lets go of it, once the 101 is written; no task waits for it.
    if req.extensions().get::<crate::net::Direct>().is_some() {
        if let Some(activity) = activity {
            activity.hand_over_socket_to(Box::new(move |handed| match handed {
                Some(handed) => serve_ws(socket::released(handed), &ctx, peer),
                None => tracing::debug!("the connection ended before its 101 went out"),
            }));
            return;
        }
    }
    let on_upgrade = hyper::upgrade::on(req);
    if let Some(activity) = &activity {
        activity.hand_over_socket();
    }
    ctx.clone().tracker.spawn(async move {
        let taken = match on_upgrade.await {
            Ok(upgraded) => activity.and_then(|activity| socket::take(upgraded, &activity)),
            Err(error) => return tracing::debug!(%error, "websocket upgrade failed"),
        };
        let Some(taken) = taken else {
            return tracing::error!("an upgraded connection was not a socket this server accepted");
        };
        serve_ws(taken, &ctx, peer);
    });
}

/// Serves a `/ws` connection whose socket is ours, in a task of its own. A task's memory is
/// its largest state: the connection's, not the upgrade's (hyper's hand-over is larger),
/// which is why the upgrade's task, when there is one, ends here.
fn serve_ws(taken: (WsSource, WsSink), ctx: &Arc<AppContext>, peer: WsPeer) {
    let (source, sink) = taken;
    let sink = Arc::new(sink);
    let outbox = Outbox::new(ctx.outbox_limits())
        .with_deflate(peer.deflate)
        .with_sink(sink.clone());
    let outbox = Arc::new(outbox);
    let guard = FrameGuard::new(ctx.guard_limits(peer.deflate), ctx.partial_budget.clone());
    let inflated = ctx.metrics.ws.deflate_in.clone();
    let messages = MessageReader::new(source.read, source.early, guard, inflated);
    let conn = connection::Conn {
        outbox,
        sink,
        deflate: peer.deflate,
        client_ip: peer.client_ip,
        url_grant: peer.url_grant,
    };
    let serve = connection::serve(messages, conn, ctx.clone(), peer.permit);
    ctx.tracker.spawn(serve);
}

/// Once hyper hands over the upgraded connection of `req`, serves it as a server WebSocket
/// with `serve`, in a task the shutdown waits for. The caller answers 101.
pub fn spawn_upgraded<B, F, Fut>(
    req: &mut Request<B>,
    ctx: &Arc<AppContext>,
    deflate: bool,
    serve: F,
) where
    F: FnOnce(ServerSocket, Arc<AppContext>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    spawn_upgraded_with(req, ctx, ctx.guard_limits(deflate), serve);
}

/// [`spawn_upgraded`] with the frame guard's limits of a route whose messages are larger
/// than `MAX_MESSAGE_BYTES` (the stream WebSocket's previews).
pub fn spawn_upgraded_with<B, F, Fut>(
    req: &mut Request<B>,
    ctx: &Arc<AppContext>,
    limits: GuardLimits,
    serve: F,
) where
    F: FnOnce(ServerSocket, Arc<AppContext>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let on_upgrade = hyper::upgrade::on(req);
    let config = config_with_cap(limits.hard);
    let task_ctx = ctx.clone();
    ctx.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = server_socket(upgraded, &task_ctx, limits, config).await;
                serve(socket, task_ctx).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
}

/// Headers a `101` answer may end up with, its own and the layers' (`service.rs`): 11
/// today, 12 with an extension, and room for a few more.
const SWITCHING_PROTOCOLS_HEADERS: usize = 16;

/// `101 Switching Protocols` with the accept key and, if negotiated, the extension.
pub fn switching_protocols(accept: &str, extension: Option<&'static str>) -> Response<Body> {
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // Room for what the layers add on the way out (security headers, CORS, `vary`,
    // `x-request-id`: 11 headers in all today), so that no layer grows the map: growing
    // it twice was 2.5 % of a join's samples in the connect scenario.
    *response.headers_mut() = header::HeaderMap::with_capacity(SWITCHING_PROTOCOLS_HEADERS);
    let h = response.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        header::HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    if let Some(extension) = extension {
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            header::HeaderValue::from_static(extension),
        );
    }
    response
}

/// A realtime connection let in: who it is, what its URL token grants (or why it does not
/// verify: the transport decides how to refuse), its slot.
pub struct Admitted {
    pub client_ip: std::net::IpAddr,
    pub url_grant: Result<Option<Grant>, AuthError>,
    pub permit: ConnectionPermit,
}

/// The admission of every realtime connection that can send commands (`/ws`, the
/// Socket.IO sessions; `transport` labels the metrics): the `Origin` rule, the per-address
/// ban, the `?token=` read, and a `MAX_CONNECTIONS` slot. The refusal is the JSON error to
/// answer.
pub fn admit<B>(
    req: &Request<B>,
    ctx: &AppContext,
    transport: &'static str,
) -> Result<Admitted, Box<Response<Body>>> {
    if !ctx
        .auth
        .origin_allowed(req.headers(), &ctx.metrics, transport)
    {
        return Err(Box::new(crate::auth::origin_refusal()));
    }
    let client_ip = crate::limits::ClientIp::of_request(req);
    if ctx.auth.authenticated() {
        if let Some(banned) = crate::auth::bans::banned_response(ctx, client_ip) {
            return Err(Box::new(banned));
        }
    }
    let url_grant = url_grant(req, ctx);
    let Some(permit) = ctx.try_acquire_connection() else {
        return Err(Box::new(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        )));
    };
    Ok(Admitted {
        client_ip,
        url_grant,
        permit,
    })
}

/// Answers an upgrade request: 101 and a spawned connection task, or a JSON error.
pub fn handle<B: Send + 'static>(mut req: Request<B>, ctx: Arc<AppContext>) -> Response<Body> {
    let accept = match check_handshake(&req) {
        Ok(accept) => accept,
        Err(response) => return *response,
    };
    let headers = req.headers();
    let agreement = if ctx.config.ws_deflate {
        let offers = headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok()))
    } else {
        None
    };
    let deflate = agreement.is_some();
    let Admitted {
        client_ip,
        url_grant,
        permit,
    } = match admit(&req, &ctx, "ws") {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let url_grant = match url_grant {
        Ok(grant) => grant,
        Err(e) => return crate::auth::bans::refuse(&ctx, client_ip, "ws", &e),
    };
    // Every connection the accept loop serves has one (`net::accept_loop`).
    let activity = req
        .extensions()
        .get::<crate::net::io::ConnAbort>()
        .map(|abort| abort.0.clone());
    let peer = WsPeer {
        permit,
        deflate,
        client_ip,
        url_grant,
    };
    spawn_ws(&mut req, &ctx, activity, peer);
    switching_protocols(&accept, agreement.map(|a| a.header_value()))
}
