//! The HTTP side of repository streams besides listening: `POST /stream/{repoId}/test`,
//! `GET /health/repo/{repoId}` and `POST /webhooks/github`.

use super::{Played, RepoStreams};
use crate::context::AppContext;
use crate::github::{parse_delivery, ParsedAction};
use crate::http::errors::{error_response, full, Body};
use crate::limits::AddrKey;
use bandsync_protocol::repo::{TestRequest, Trigger};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// Largest `POST /stream/{repoId}/test` body: a handful of parameters.
const MAX_TEST_BODY_BYTES: usize = 16 * 1024;
/// Listeners listed in a health report at most (the counts stay exact).
const MAX_LISTED_CLIENTS: usize = 100;

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("responses always serialize");
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a body of at most `limit` bytes (declared or chunked).
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Box<Response<Body>>>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            &format!("request bodies on this route are at most {limit} bytes"),
        ))),
        Err(e) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            &format!("reading the body failed: {e}"),
        ))),
    }
}

/// Whether a request's body is JSON (`application/json`, or no `Content-Type` at all).
pub fn is_json(req_headers: &http::HeaderMap) -> bool {
    req_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    success: bool,
    #[serde(flatten)]
    body: &'a T,
}

/// Waits for a play and answers with what was played (or why not).
async fn answer_play(
    queued: Result<tokio::sync::oneshot::Receiver<Result<Played, String>>, super::pool::Busy>,
    extra: serde_json::Value,
) -> Response<Body> {
    let Ok(answer) = queued else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "RENDER_BUSY",
            "every render thread is busy and the render queue is full; retry shortly",
        );
    };
    match answer.await {
        Ok(Ok(played)) => {
            let mut body = serde_json::to_value(Success {
                success: true,
                body: &played,
            })
            .expect("a play always serializes");
            if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                body.extend(extra.clone());
            }
            json_response(StatusCode::OK, &body)
        }
        Ok(Err(message)) => {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "RENDER_ERROR", &message)
        }
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down",
        ),
    }
}

/// `POST /stream/{repoId}/test`: renders the given parameters (over the defaults) and
/// broadcasts them to the repository's listeners.
pub async fn test<B>(req: Request<B>, ctx: Arc<AppContext>, repo: String) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let client_ip = crate::limits::ClientIp::of_request(&req);
    if let Err(wait) = ctx.repo.test_rate.check(AddrKey::of(client_ip)) {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many test renders from this address; retry later",
        );
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = http::HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if !is_json(req.headers()) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the parameters as application/json",
        );
    }
    let body = match read_body(req.into_body(), MAX_TEST_BODY_BYTES).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let request: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMS",
                    &format!("invalid parameters: {e}"),
                )
            }
        }
    };
    let params = request.params();
    if let Err(e) = params.validate() {
        return error_response(StatusCode::BAD_REQUEST, "INVALID_PARAMS", &e.message);
    }
    let trigger = Trigger::test(format!(
        "test composition: {} at {} BPM for {} s",
        params.instrument_type, params.tempo, params.duration
    ));
    let now_ms = ctx.clock.now_ms() as u64;
    let queued = ctx.repo.play(&repo, params, trigger, now_ms);
    answer_play(queued, json!({})).await
}

/// `GET /health/repo/{repoId}`: the repository's listeners and how long each has been connected.
pub fn repo_health(ctx: &AppContext, repo: &str) -> Response<Body> {
    let now_ms = ctx.clock.now_ms() as u64;
    let hub = &ctx.repo.hub;
    let clients = hub.details(Some(repo), now_ms, MAX_LISTED_CLIENTS);
    let latest = hub.latest_of(repo).map(|c| {
        json!({
            "compositionId": c.id,
            "timestamp": c.meta.timestamp_ms,
            "params": c.meta.params,
            "trigger": c.meta.trigger,
        })
    });
    json_response(
        StatusCode::OK,
        &json!({
            "repoId": repo,
            "activeClients": hub.listener_count(repo),
            "clients": clients,
            "latestComposition": latest,
            "timestamp": now_ms,
        }),
    )
}

/// `POST /webhooks/github`: verify, map, de-duplicate, play.
pub async fn webhook<B>(req: Request<B>, ctx: Arc<AppContext>) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if req.method() != Method::POST {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use POST",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, ctx.config.repo.max_webhook_body_bytes).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let secret = ctx
        .config
        .repo
        .github_webhook_secret
        .as_deref()
        .map(str::as_bytes);
    let delivery = match parse_delivery(&parts.headers, &body, secret) {
        Ok(delivery) => delivery,
        Err(e) => {
            ctx.metrics
                .repo
                .webhooks
                .with_label_values(&["refused"])
                .inc();
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error_response(status, e.code(), &e.to_string());
        }
    };
    let base = json!({ "delivery": delivery.id, "event": delivery.event });
    let outcome = |outcome: &str, extra: serde_json::Value| {
        ctx.metrics
            .repo
            .webhooks
            .with_label_values(&[outcome])
            .inc();
        let mut body = base.clone();
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.insert("success".into(), true.into());
            body.insert("outcome".into(), outcome.into());
            body.extend(extra.clone());
        }
        json_response(StatusCode::OK, &body)
    };
    let (repo, params, trigger) = match delivery.action {
        ParsedAction::Ping { zen, repo } => {
            return outcome("pong", json!({ "zen": zen, "repoId": repo }))
        }
        ParsedAction::Ignored { repo, reason } => {
            return outcome("ignored", json!({ "repoId": repo, "reason": reason }))
        }
        ParsedAction::Play {
            repo,
            params,
            trigger,
        } => (repo, params, trigger),
    };
    let now_ms = ctx.clock.now_ms() as u64;
    if !first_delivery(&ctx.repo, &delivery.id, now_ms).await {
        return outcome("duplicate", json!({ "repoId": repo }));
    }
    let extra = json!({
        "outcome": "played",
        "delivery": delivery.id,
        "event": delivery.event,
        "trigger": trigger,
    });
    let queued = ctx.repo.play(&repo, params, trigger, now_ms);
    if queued.is_err() {
        // Busy: GitHub may redeliver it, and that redelivery should play.
        forget_delivery(&ctx.repo, &delivery.id).await;
        ctx.metrics.repo.webhooks.with_label_values(&["busy"]).inc();
    } else {
        ctx.metrics
            .repo
            .webhooks
            .with_label_values(&["played"])
            .inc();
    }
    answer_play(queued, extra).await
}

/// Whether this delivery id is new here and (with Redis) in the whole cluster.
async fn first_delivery(streams: &RepoStreams, id: &str, now_ms: u64) -> bool {
    if !streams.deliveries.first_time(id, now_ms as f64) {
        return false;
    }
    match streams.cluster() {
        Some(cluster) => cluster.claim_delivery(id).await,
        None => true,
    }
}

async fn forget_delivery(streams: &RepoStreams, id: &str) {
    streams.deliveries.forget(id);
    if let Some(cluster) = streams.cluster() {
        cluster.release_delivery(id).await;
    }
}

/// The repository-stream routes, which the router serves itself (streams and bodies of
/// their own limits) rather than through warp.
pub enum RepoRoute {
    Listen(String),
    Test(String),
    Health(String),
    Webhook,
    Invalid(String),
}

impl RepoRoute {
    /// Which repository route `path` is, if any (`/stream/status` and the other Stream Manager
    /// paths are not: they go on to warp).
    pub fn of(post: bool, path: &str) -> Option<RepoRoute> {
        use super::path::{classify, decode_repo_id, StreamPath};
        if path == "/webhooks/github" {
            return Some(RepoRoute::Webhook);
        }
        if let Some(raw) = path.strip_prefix("/health/repo/") {
            return Some(match decode_repo_id(raw) {
                Ok(repo) => RepoRoute::Health(repo),
                Err(message) => RepoRoute::Invalid(message),
            });
        }
        let rest = path.strip_prefix("/stream/")?;
        match classify(rest, post) {
            StreamPath::StreamManager => None,
            StreamPath::Repo { repo, test: false } => Some(RepoRoute::Listen(repo)),
            StreamPath::Repo { repo, test: true } => Some(RepoRoute::Test(repo)),
            StreamPath::Invalid(message) => Some(RepoRoute::Invalid(message)),
        }
    }

    pub async fn serve<B>(self, req: Request<B>, ctx: Arc<AppContext>) -> Response<Body>
    where
        B: hyper::body::Body + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match self {
            RepoRoute::Listen(repo) => super::listen::handle(req, ctx, repo).await,
            RepoRoute::Test(repo) => test(req, ctx, repo).await,
            RepoRoute::Health(repo) => repo_health(&ctx, &repo),
            RepoRoute::Webhook => webhook(req, ctx).await,
            RepoRoute::Invalid(message) => {
                error_response(StatusCode::BAD_REQUEST, "INVALID_REPO_ID", &message)
            }
        }
    }
}
