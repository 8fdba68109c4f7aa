//! The Music Share REST API (`/api/share/...`): the HTTP edge of the `share` domain,
//! exactly as the seed specifies it (paths, bodies, status codes), plus the JSON error
//! format `{"success": false, "error", "code", "timestamp"}`.
//!
//! Every handler checks the bearer token first, then parses the body itself, so a bad body
//! gets the seed's 400 with our error format rather than a framework rejection.
//!
//! Every number the seed shows as an integer is one here, errors' `timestamp` included
//! (`timestamp`, `startTime`, counts, sequence numbers): its client reads them as `long`.

use super::share_body::read_body;
use crate::engine::ShareNotice;
use crate::http::errors::{now_ms, now_whole_ms, whole_ms};
use crate::limits::{AuthFailures, ClientIp};
use crate::metrics::Metrics;
use crate::share::audio::ChunkBody;
use crate::share::replica::ShareChange;
use crate::share::{auth, ShareError, ShareRegistry, MAX_CHUNK_BYTES, MAX_METADATA_BYTES};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

/// The peer address of the HTTP connection, put in the request's extensions by the server,
/// so that pollers can be counted as listeners.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Hands a change to the engine so push receivers (WebSocket, SSE) get it too.
pub type Notify = Arc<dyn Fn(ShareNotice) + Send + Sync>;

/// The per-address guards of the API: failed-token bans, and where refusals are counted.
#[derive(Clone)]
pub struct Guards {
    pub auth_failures: Arc<AuthFailures>,
    pub metrics: Arc<Metrics>,
    /// With `REDIS_URL`: starts are claimed cluster-wide first.
    pub cluster: Option<Arc<crate::cluster::redis::share::ShareCluster>>,
}

fn error_reply(error: &ShareError) -> Response {
    let mut body = json!({
        "success": false,
        "error": error.to_string(),
        "code": error.code(),
        "timestamp": now_whole_ms(),
    });
    if error.status() == 404 {
        body["isActive"] = json!(false);
    }
    let status = StatusCode::from_u16(error.status()).expect("valid status");
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if let ShareError::RateLimited { retry_after_ms, .. } | ShareError::Banned { retry_after_ms } =
        error
    {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        response.headers_mut().insert(
            "retry-after",
            secs.to_string().parse().expect("digits are a valid header"),
        );
    }
    response
}

fn json_reply(value: &serde_json::Value) -> Response {
    warp::reply::json(value).into_response()
}

fn raw_json(body: Bytes) -> Response {
    warp::reply::with_header(body.to_vec(), "content-type", "application/json").into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    limit: usize,
    what: &str,
) -> Result<T, ShareError> {
    if body.len() > limit {
        return Err(ShareError::TooLarge(format!(
            "{what} bodies are at most {limit} bytes"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ShareError::InvalidBody(format!("invalid {what} body: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    session_id: String,
}

/// `since` from the query of `GET .../audio`, read by the handler rather than by
/// `warp::query`: a query warp cannot deserialize (`since` twice) would be a rejection, and
/// warp ranks the other routes' 405 above it. `Err` when `since` appears more than once.
fn since_of(query: &str) -> Result<Option<String>, ()> {
    let mut values = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "since")
        .map(|(_, value)| value.into_owned());
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// One request, after routing and reading its body: what to do and with what.
enum Call {
    Start(Bytes),
    PostMetadata(String, Bytes),
    PostAudio(String, Bytes),
    Stop(String),
    Status(String),
    GetMetadata(String, Option<SocketAddr>),
    GetAudio(String, Result<Option<String>, ()>, Option<SocketAddr>),
}

/// A matched route, before its body is read (that waits for the token check).
enum Route {
    Start,
    PostMetadata(String),
    PostAudio(String),
    Stop(String),
    Status(String),
    GetMetadata(String),
    GetAudio(String, Result<Option<String>, ()>),
}

impl Route {
    /// Largest body this route reads.
    fn body_limit(&self) -> usize {
        match self {
            Route::Start => 4096,
            Route::PostMetadata(_) => MAX_METADATA_BYTES,
            Route::PostAudio(_) => AUDIO_BODY_LIMIT,
            _ => 0,
        }
    }

    fn into_call(self, body: Bytes, poller: Option<SocketAddr>) -> Call {
        match self {
            Route::Start => Call::Start(body),
            Route::PostMetadata(id) => Call::PostMetadata(id, body),
            Route::PostAudio(id) => Call::PostAudio(id, body),
            Route::Stop(id) => Call::Stop(id),
            Route::Status(id) => Call::Status(id),
            Route::GetMetadata(id) => Call::GetMetadata(id, poller),
            Route::GetAudio(id, since) => Call::GetAudio(id, since, poller),
        }
    }
}

/// Claims a start's session id across the cluster; the id when claimed (to release if
/// the local start is refused), `None` when the body is bad (the local start says why).
async fn claim(
    cluster: &crate::cluster::redis::share::ShareCluster,
    body: &Bytes,
    metrics: &Metrics,
) -> Result<Option<String>, ShareError> {
    let Ok(start) = parse::<StartBody>(body, 4096, "start") else {
        return Ok(None);
    };
    if !crate::share::valid_id(&start.session_id) {
        return Ok(None);
    }
    match cluster.claim(&start.session_id, now_ms()).await {
        Ok(()) => Ok(Some(start.session_id)),
        Err(e) => {
            metrics.count_refused_share_start(&e);
            Err(e)
        }
    }
}

/// A 1 MiB chunk in base64 is 4/3 larger, plus its JSON fields.
const AUDIO_BODY_LIMIT: usize = MAX_CHUNK_BYTES / 3 * 4 + 4096;

/// Runs one authorized call for `client`.
fn handle(
    registry: &ShareRegistry,
    notify: &Notify,
    call: Call,
    client: IpAddr,
    metrics: &Metrics,
    remote_listeners: usize,
) -> Result<Response, ShareError> {
    let check_id = |id: &str| {
        crate::share::valid_id(id)
            .then_some(())
            .ok_or(ShareError::InvalidSessionId)
    };
    match call {
        Call::Start(body) => {
            let start: StartBody = parse(&body, 4096, "start")?;
            let now = now_ms();
            if let Err(e) = registry.start(&start.session_id, now, client) {
                metrics.count_refused_share_start(&e);
                return Err(e);
            }
            Ok(json_reply(
                &json!({"success": true, "sessionId": start.session_id, "timestamp": whole_ms(now)}),
            ))
        }
        Call::PostMetadata(id, body) => {
            check_id(&id)?;
            let value: serde_json::Value = parse(&body, MAX_METADATA_BYTES, "metadata")?;
            let (reached, json) = registry.post_metadata(&id, value, client)?;
            let listeners = reached + remote_listeners;
            notify(ShareNotice::Change(ShareChange::Metadata { id, json }));
            Ok(json_reply(
                &json!({"success": true, "listenersNotified": listeners}),
            ))
        }
        Call::PostAudio(id, body) => {
            check_id(&id)?;
            let chunk: ChunkBody = parse(&body, AUDIO_BODY_LIMIT, "audio")?;
            let chunk = registry.post_audio(&id, chunk, client)?;
            notify(ShareNotice::Change(ShareChange::Audio { id, chunk }));
            Ok(json_reply(&json!({"success": true, "buffered": true})))
        }
        Call::Stop(id) => {
            check_id(&id)?;
            let (duration, bytes) = registry.stop(&id)?;
            notify(ShareNotice::Change(ShareChange::Ended {
                id,
                reason: "stopped",
            }));
            Ok(json_reply(
                &json!({"success": true, "sessionDuration": duration, "bytesTransferred": bytes}),
            ))
        }
        Call::Status(id) => {
            check_id(&id)?;
            let status = registry.status(&id)?;
            let metadata = status
                .metadata
                .map(|m| json!({"title": m.title, "artist": m.artist}));
            Ok(json_reply(&json!({
                "isActive": status.active,
                "status": if status.active { "active" } else { "ended" },
                "startTime": whole_ms(status.start_time_ms),
                "listenerCount": if status.active {
                    status.listener_count + remote_listeners
                } else {
                    0
                },
                "currentMetadata": metadata,
            })))
        }
        Call::GetMetadata(id, poller) => {
            check_id(&id)?;
            Ok(raw_json(registry.metadata(&id, poller)?))
        }
        Call::GetAudio(id, since, poller) => {
            check_id(&id)?;
            let since = since
                .map_err(|()| ShareError::InvalidBody("since must appear at most once".into()))?;
            let since = match since.as_deref() {
                None => -1,
                Some(s) => s.trim().parse::<i64>().map_err(|_| {
                    ShareError::InvalidBody(
                        "since must be an integer sequence number (-1 for the start)".into(),
                    )
                })?,
            };
            let chunks = registry.audio_since(&id, since, poller)?;
            if chunks.is_empty() {
                return Ok(
                    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response(),
                );
            }
            let mut body = BytesMut::with_capacity(
                chunks.iter().map(|c| c.json().len() + 1).sum::<usize>() + 2,
            );
            body.put_u8(b'[');
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 {
                    body.put_u8(b',');
                }
                body.put_slice(chunk.json());
            }
            body.put_u8(b']');
            Ok(raw_json(body.freeze()))
        }
    }
}

/// The `/api/share/...` routes. Each matches its path before its method, so a wrong path
/// is 404 and only a wrong method on a real path is 405. The bearer token is checked before
/// the body is read.
pub fn routes(
    registry: Arc<ShareRegistry>,
    notify: Notify,
    guards: Guards,
) -> warp::filters::BoxedFilter<(Response,)> {
    let base = warp::path("api").and(warp::path("share"));
    let start = base
        .and(warp::path!("start"))
        .and(warp::post())
        .map(|| Route::Start);
    let post_metadata = base
        .and(warp::path!(String / "metadata"))
        .and(warp::post())
        .map(Route::PostMetadata);
    let post_audio = base
        .and(warp::path!(String / "audio"))
        .and(warp::post())
        .map(Route::PostAudio);
    let stop = base
        .and(warp::path!(String / "stop"))
        .and(warp::post())
        .map(Route::Stop);
    let status = base
        .and(warp::path!(String / "status"))
        .and(warp::get())
        .map(Route::Status);
    let get_metadata = base
        .and(warp::path!(String / "metadata"))
        .and(warp::get())
        .map(Route::GetMetadata);
    let get_audio = base
        .and(warp::path!(String / "audio"))
        .and(warp::get())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(|id, query: String| Route::GetAudio(id, since_of(&query)));
    let routes = start
        .or(post_metadata)
        .unify()
        .or(post_audio)
        .unify()
        .or(stop)
        .unify()
        .or(status)
        .unify()
        .or(get_metadata)
        .unify()
        .or(get_audio)
        .unify();
    let remote = warp::ext::optional::<RemoteAddr>().map(|r: Option<RemoteAddr>| r.map(|r| r.0));
    // Requests that did not come through the accept loop (none in production) share one
    // unspecified address.
    let client = warp::ext::optional::<ClientIp>()
        .map(|c: Option<ClientIp>| c.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0));
    routes
        .and(warp::header::headers_cloned())
        .and(remote)
        .and(client)
        .and(warp::body::stream())
        .then(move |route: Route, headers: HeaderMap, poller, client: IpAddr, body| {
            let registry = registry.clone();
            let notify = notify.clone();
            let guards = guards.clone();
            async move {
                // A banned address is refused before its token is even compared.
                if let Err(retry) = guards.auth_failures.check(client) {
                    let retry_after_ms = retry.millis();
                    return error_reply(&ShareError::Banned { retry_after_ms });
                }
                let token = registry.settings().bearer_token.as_deref();
                let header = headers.get("authorization").map(|v| v.as_bytes());
                if let Err(denied) = auth::check(token, header) {
                    tracing::info!(reason = denied.message(), %client, "share API request refused");
                    if denied == auth::Denied::Wrong {
                        guards.auth_failures.record_failure(client, "http");
                    }
                    return error_reply(&ShareError::Unauthorized(denied.message()));
                }
                let body = match route.body_limit() {
                    0 => Bytes::new(),
                    limit => match read_body(&headers, body, limit).await {
                        Ok(body) => body,
                        Err(e) => return error_reply(&e),
                    },
                };
                let call = route.into_call(body, poller);
                let claimed = match (&call, &guards.cluster) {
                    (Call::Start(body), Some(cluster)) => {
                        match claim(cluster, body, &guards.metrics).await {
                            Ok(claimed) => claimed,
                            Err(e) => return error_reply(&e),
                        }
                    }
                    _ => None,
                };
                // listenerCount counts the other instances' receivers too.
                let remote_listeners = match (&call, &guards.cluster) {
                    (Call::Status(id) | Call::PostMetadata(id, _), Some(cluster))
                        if crate::share::valid_id(id) =>
                    {
                        cluster.remote_listeners(id).await
                    }
                    _ => 0,
                };
                let reply = handle(
                    &registry,
                    &notify,
                    call,
                    client,
                    &guards.metrics,
                    remote_listeners,
                );
                if let (Err(_), Some(id), Some(cluster)) = (&reply, claimed, &guards.cluster) {
                    cluster.release(&id).await;
                }
                reply.unwrap_or_else(|e| error_reply(&e))
            }
        })
        .boxed()
}
