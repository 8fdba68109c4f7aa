//! The accept loop: admits or refuses each TCP connection, serves the admitted ones with
//! hyper under a header and idle watchdog, and backs off when `accept` fails.
//!
//! - `fds`: the connection budget derived from the open-file limit.
//! - `io`: the socket wrapper that carries the connection's slot and its activity clock.
//! - `linger`: closing in stages, so an answer sent before the body was read is not lost.
//! - `refuse`: the cheap answer to a connection over a cap.

pub mod fds;
pub mod io;
pub mod linger;
mod refuse;

use crate::context::AppContext;
use crate::http::share::RemoteAddr;
use crate::limits::ClientIp;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use io::{Activity, ConnIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// First wait after a failed `accept`; it doubles on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between `accept` attempts while they keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Concurrent HTTP/2 streams per connection: a band's page needs a handful.
const H2_MAX_CONCURRENT_STREAMS: u32 = 32;
/// Largest HTTP/2 header list, bytes (HTTP/1.1 heads are capped by hyper's buffer).
const H2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The hyper builder with the timeouts and HTTP/2 limits.
pub fn builder(ctx: &AppContext) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.config.limits.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES);
    builder
}

/// Accepts until `shutdown` resolves. Each connection is admitted against the TCP cap and
/// the per-address cap before hyper reads a byte; refused ones get a short HTTP answer (or
/// are just closed when too many refusals are in flight).
pub async fn accept_loop<S>(
    listener: &TcpListener,
    ctx: &Arc<AppContext>,
    service: S,
    graceful: &GracefulShutdown,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) where
    S: Service<
            http::Request<Incoming>,
            Response = http::Response<crate::http::errors::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = builder(ctx);
    let refusals = refuse::Refusals::new(ctx.config.limits.fd_reserve);
    let lingers_cut_short = ctx.metrics.http_timeouts.with_label_values(&["linger"]);
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) => {
                // Typically EMFILE or ENFILE: wait, doubling, instead of spinning on it.
                ctx.metrics.accept_errors.inc();
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                tracing::warn!(%error, ?backoff, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => return,
                }
            }
        };
        let proxy = ctx.trusted_proxies.contains(peer.ip());
        let permit = match ctx.conn_limits.try_admit(peer.ip(), proxy) {
            Ok(permit) => permit,
            Err(refused) => {
                ctx.metrics
                    .connections_refused
                    .with_label_values(&[refused.label()])
                    .inc();
                tracing::debug!(%peer, %refused, "connection refused");
                refusals.answer(stream, refused);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = ConnIo::new(
            stream,
            activity.clone(),
            permit,
            ctx.metrics.tcp_connections.clone(),
            lingers_cut_short.clone(),
        );
        let seen = activity.clone();
        let trusted = ctx.trusted_proxies.clone();
        let service = TowerToHyperService::new(service.clone().map_request(
            move |mut req: http::Request<Incoming>| {
                seen.saw_request();
                seen.saw_body(!hyper::body::Body::is_end_stream(req.body()));
                let client = trusted.client_ip(peer.ip(), req.headers());
                req.extensions_mut().insert(RemoteAddr(peer));
                req.extensions_mut().insert(ClientIp(client));
                req.extensions_mut().insert(io::ConnAbort(seen.clone()));
                req
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let limits = ctx.config.limits.clone();
        let metrics = ctx.metrics.clone();
        tokio::spawn(async move {
            let watchdog = io::watchdog(
                &activity,
                limits.header_read_timeout(),
                limits.idle_timeout(),
            );
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        let timed_out = error
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(hyper::Error::is_timeout);
                        if timed_out {
                            metrics.http_timeouts.with_label_values(&["header"]).inc();
                        }
                        tracing::debug!(%error, "http connection ended with an error");
                    }
                }
                why = watchdog => {
                    // Dropping the connection closes the socket.
                    metrics.http_timeouts.with_label_values(&[why.label()]).inc();
                    tracing::debug!(%peer, timeout = why.label(), "http connection timed out");
                }
            }
        });
    }
}
