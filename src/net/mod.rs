//! The accept loop: admits or refuses each TCP connection, serves the admitted ones with
//! hyper under a header and idle watchdog (a whole WebSocket handshake in the first read is
//! answered without hyper), and backs off when `accept` fails.
//!
//! - `fds`: the connection budget derived from the open-file limit.
//! - `first_request`: the first request's head, read before hyper; the direct route.
//! - `io`: the socket wrapper that carries the connection's slot and its activity clock.
//! - `linger`: closing in stages, so an answer sent before the body was read is not lost.
//! - `listen`: the listening socket, with a backlog for a crowd arriving at once.
//! - `refuse`: the cheap answer to a connection over a cap.

pub mod fds;
pub mod first_request;
pub mod io;
pub mod linger;
mod listen;
mod refuse;

use crate::context::AppContext;
use crate::http::errors::Body;
use crate::http::share::RemoteAddr;
use crate::limits::{ClientIp, TrustedProxies};
pub use first_request::Direct;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use io::{Activity, ConnIo};
pub use listen::listen;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
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

/// The service hyper serves a connection's requests with (the router behind its layers).
pub trait HttpService:
    Service<
        http::Request<Incoming>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<
            http::Request<Incoming>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The route answered without hyper when its handshake arrives whole in a connection's
/// first read (see [`first_request`]): its path, and the service (with the same layers as
/// every other route) that answers it.
pub struct DirectRoute<D> {
    pub path: &'static str,
    pub service: D,
}

/// Accepts until `shutdown` resolves. Each connection is admitted against the TCP cap and
/// the per-address cap before hyper reads a byte; refused ones get a short HTTP answer (or
/// are just closed when too many refusals are in flight).
pub async fn accept_loop<S, D>(
    listener: &TcpListener,
    ctx: &Arc<AppContext>,
    service: S,
    direct: DirectRoute<D>,
    graceful: &GracefulShutdown,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) where
    S: HttpService,
    D: Service<
            http::Request<()>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    D::Future: Send + 'static,
{
    // Shared by every connection's task: what a task holds, it holds for the connection's
    // whole life (an SSE stream's included).
    let builder = Arc::new(builder(ctx));
    // Cloned (the whole layer stack) only for a connection that reaches hyper; a `/ws`
    // join answered before hyper takes a reference count.
    let service = Arc::new(service);
    let direct = Arc::new(direct);
    let refusals = refuse::Refusals::new(ctx.config.limits.fd_reserve);
    let lingers_cut_short = ctx.metrics.http_timeouts.with_label_values(&["linger"]);
    let header_timeout = ctx.config.limits.header_read_timeout();
    let idle_timeout = ctx.config.limits.idle_timeout();
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
        let serving = Arc::new(Serving {
            activity,
            peer,
            trusted: ctx.trusted_proxies.clone(),
        });
        let service = service.clone();
        let direct = direct.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let metrics = ctx.metrics.clone();
        tokio::spawn(async move {
            let watchdog = io::watchdog(&serving.activity, header_timeout, idle_timeout);
            tokio::pin!(watchdog);
            let mut io = io;
            let first = tokio::select! {
                first = serving.first_request(&mut io, &direct) => first,
                why = &mut watchdog => return serving.timed_out(&metrics, why),
            };
            drop(direct);
            if let First::Answered = first {
                return;
            }
            // Boxed: hyper's connection future is most of the task's size, and a `/ws`
            // join whose handshake came whole (the common case) never gets here. Inline, it
            // made every connection's task a 7.8 KB allocation, copied on each spawn.
            let hyper = HyperStage {
                serving: serving.clone(),
                service,
                builder,
                watcher,
                metrics,
            };
            Box::pin(hyper.serve(io, watchdog.as_mut())).await;
        });
    }
}

/// What a connection needs once hyper serves it.
struct HyperStage<S> {
    serving: Arc<Serving>,
    service: Arc<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    metrics: Arc<crate::metrics::Metrics>,
}

impl<S: HttpService> HyperStage<S> {
    /// Serves the connection's requests until it ends or `watchdog` fires.
    async fn serve(self, io: ConnIo, watchdog: Pin<&mut impl Future<Output = io::Timeout>>) {
        let Self {
            serving,
            service,
            builder,
            watcher,
            metrics,
        } = self;
        let annotated = serving.clone();
        let service = TowerToHyperService::new(S::clone(&service).map_request(
            move |mut req: http::Request<Incoming>| {
                let body = !hyper::body::Body::is_end_stream(req.body());
                annotated.annotate(&mut req, body);
                req
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = watcher.watch(connection);
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
            why = watchdog => serving.timed_out(&metrics, why),
        }
    }
}

/// What became of a connection's first request.
enum First {
    /// Answered without hyper, and the connection is over or its socket handed over.
    Answered,
    /// hyper serves the connection from here (its bytes so far still unread).
    Hyper,
}

/// One accepted connection's record for its requests.
struct Serving {
    activity: Arc<Activity>,
    peer: SocketAddr,
    trusted: TrustedProxies,
}

impl Serving {
    /// What every request of the connection carries: its peer, the client's address
    /// (behind a trusted proxy, the one it names) and a handle on the connection.
    fn annotate<B>(&self, req: &mut http::Request<B>, body: bool) {
        let seen = &self.activity;
        seen.saw_request();
        seen.saw_body(body);
        let client = self.trusted.client_ip(self.peer.ip(), req.headers());
        req.extensions_mut().insert(RemoteAddr(self.peer));
        req.extensions_mut().insert(ClientIp(client));
        req.extensions_mut().insert(io::ConnAbort(seen.clone()));
    }

    /// Reads the connection's first bytes and answers them here when they are the direct
    /// route's whole handshake: after a `101` whose route took the socket the connection is
    /// over for us; after a refusal hyper serves the connection's next requests.
    async fn first_request<D>(&self, io: &mut ConnIo, direct: &DirectRoute<D>) -> First
    where
        D: Service<
                http::Request<()>,
                Response = http::Response<Body>,
                Error = std::convert::Infallible,
            > + Clone,
    {
        let bytes = match io.read_first().await {
            Ok([]) | Err(_) => return First::Answered,
            Ok(bytes) => bytes,
        };
        let Some((mut req, head_len)) = first_request::parse(bytes, direct.path) else {
            return First::Hyper;
        };
        io.consume_early(head_len);
        self.annotate(&mut req, false);
        req.extensions_mut().insert(Direct);
        let response = match direct.service.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let switched = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        let Some(bytes) = first_request::encode(response).await else {
            return First::Answered;
        };
        if io.write_all(&bytes).await.is_err() || switched {
            // Dropping the socket hands it to the route that took it (or closes it).
            return First::Answered;
        }
        First::Hyper
    }

    fn timed_out(&self, metrics: &crate::metrics::Metrics, why: io::Timeout) {
        // Dropping the connection closes the socket.
        metrics
            .http_timeouts
            .with_label_values(&[why.label()])
            .inc();
        tracing::debug!(peer = %self.peer, timeout = why.label(), "http connection timed out");
    }
}
