//! Plain HTTP routes, served by warp: the sync page, the listening page (`listen`), health,
//! metrics, session info.

pub mod errors;
mod health;
pub use health::resident_mb;
mod listen;
pub mod metrics;
pub mod observe;
mod overlay;
mod page_assets;
pub mod share;
mod share_body;

use crate::auth::credentials::Presented;
use crate::auth::jwt::Scope;
use crate::auth::AuthError;
use crate::context::AppContext;
use crate::engine::Inbound;
use bandsync_protocol::validate;
use errors::error_json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const STYLE_CSS: &str = include_str!("../../static/style.css");
/// The OpenAPI 3.1 description of every HTTP route, served at `/openapi.json`
/// (`tests/openapi.rs` checks the server against it with schemathesis).
pub const OPENAPI_JSON: &str = include_str!("../../static/openapi.json");

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    warp::reply::with_header(body, "content-type", content_type).into_response()
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let reply = warp::reply::with_header(
        error_json(code, message),
        "content-type",
        "application/json",
    );
    warp::reply::with_status(reply, status).into_response()
}

/// Every warp route, with rejections turned into the contract's JSON errors.
pub fn routes(ctx: Arc<AppContext>) -> warp::filters::BoxedFilter<(Response,)> {
    let share_registry = ctx.share.clone();
    let share_guards = share::Guards {
        auth_failures: ctx.auth_failures.clone(),
        metrics: ctx.metrics.clone(),
        cluster: ctx.share_cluster.clone(),
    };
    let engine = ctx.engine.clone();
    let notify: share::Notify = Arc::new(move |notice| {
        // The HTTP handler must not wait on the engine: a full queue only delays push
        // receivers, and pollers still have the chunk in the buffer.
        if engine.try_send(Inbound::Share(notice)).is_err() {
            tracing::debug!("engine queue full; a share notice for push receivers was skipped");
        }
    });
    let with_ctx = warp::any().map(move || ctx.clone());
    let index = warp::path::end().map(|| with_type(INDEX_HTML, "text/html; charset=utf-8"));
    let app_js = warp::path!("app.js").map(|| with_type(APP_JS, "text/javascript; charset=utf-8"));
    let style = warp::path!("style.css").map(|| with_type(STYLE_CSS, "text/css; charset=utf-8"));
    let openapi = warp::path!("openapi.json").map(|| with_type(OPENAPI_JSON, "application/json"));
    let health = warp::path!("health")
        .and(with_ctx.clone())
        .map(|ctx: Arc<AppContext>| {
            let report = health::report(&ctx);
            let status = if report.is_healthy() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&report), status).into_response()
        });
    let metrics = warp::path!("metrics")
        .and(with_ctx.clone())
        .and(presented())
        .map(|ctx: Arc<AppContext>, presented| {
            if let Err(e) = authorize(&ctx, presented, None) {
                return unauthorized(&ctx, &e);
            }
            warp::reply::with_header(
                ctx.metrics.render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response()
        });
    let history = warp::path!("metrics" / "history")
        .and(with_ctx.clone())
        .and(presented())
        .then(metrics_history);
    let sessions = warp::path("sessions")
        .and(warp::path::tail())
        .and(with_ctx)
        .and(presented())
        .and_then(session_info);
    let share = share::routes(share_registry, notify, share_guards);
    let plain = warp::get().or(warp::head()).unify().and(
        index
            .or(app_js)
            .unify()
            .or(style)
            .unify()
            .or(openapi)
            .unify()
            .or(health)
            .unify()
            .or(history)
            .unify()
            .or(metrics)
            .unify()
            .or(sessions)
            .unify()
            .or(listen::routes())
            .unify()
            .or(overlay::routes())
            .unify()
            .or(page_assets::routes())
            .unify(),
    );
    share
        .or(plain)
        .unify()
        .recover(rejection_to_json)
        .unify()
        .boxed()
}

/// `GET /metrics/history`: this instance's per-minute rollups, or with `REDIS_URL` every
/// instance's (by instance id). Guarded like `/metrics`.
async fn metrics_history(
    ctx: Arc<AppContext>,
    presented: Result<Presented, AuthError>,
) -> Response {
    if let Err(e) = authorize(&ctx, presented, None) {
        return unauthorized(&ctx, &e);
    }
    let local = ctx.history.minutes();
    let body = match &ctx.share_cluster {
        Some(cluster) => match cluster.cluster_history().await {
            Some(instances) => {
                serde_json::json!({"intervalMs": ctx.config.metrics_history_interval_ms, "instances": instances})
            }
            None => {
                serde_json::json!({"intervalMs": ctx.config.metrics_history_interval_ms, "minutes": local, "redis": "down"})
            }
        },
        None => {
            serde_json::json!({"intervalMs": ctx.config.metrics_history_interval_ms, "minutes": local})
        }
    };
    warp::reply::json(&body).into_response()
}

/// The credentials of a request (`?token=`, `Authorization`), for the reads the
/// authenticated mode guards.
fn presented() -> impl Filter<Extract = (Result<Presented, AuthError>,), Error = Infallible> + Clone
{
    let query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    query
        .and(warp::header::headers_cloned())
        .map(|query: Option<String>, headers| Presented::from_parts(query.as_deref(), &headers))
}

/// Authenticated mode: a read of one session's data needs a token for that session; a
/// server-wide read (`session: None`, i.e. `/metrics`) a token for every session (`"*"`).
/// The open mode lets every read through.
pub(crate) fn authorize(
    ctx: &AppContext,
    presented: Result<Presented, AuthError>,
    session: Option<&str>,
) -> Result<(), AuthError> {
    let Some(verifier) = &ctx.auth.jwt else {
        return Ok(());
    };
    let grant = verifier.verify(presented?.jwt().ok_or(AuthError::Missing)?)?;
    let now = crate::auth::jwt::now_secs();
    match session {
        Some(id) => grant.admits(id, now),
        None if grant.scope == Scope::Any => grant.unexpired(now),
        None => Err(AuthError::NotServerWide),
    }
}

/// 401 with the contract's JSON error, counted by [`crate::auth::deny`].
fn unauthorized(ctx: &AppContext, error: &AuthError) -> Response {
    let error = crate::auth::deny(&ctx.metrics, "http", error);
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        error.code.as_str(),
        &error.message,
    );
    response.headers_mut().insert(
        warp::http::header::WWW_AUTHENTICATE,
        warp::http::HeaderValue::from_static("Bearer"),
    );
    response
}

async fn session_info(
    tail: warp::path::Tail,
    ctx: Arc<AppContext>,
    presented: Result<Presented, AuthError>,
) -> Result<Response, Rejection> {
    let session_id = tail.as_str();
    if let Err(e) = validate::session_id(session_id) {
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            e.code.as_str(),
            &e.message,
        ));
    }
    if let Err(e) = authorize(&ctx, presented, Some(session_id)) {
        return Ok(unauthorized(&ctx, &e));
    }
    let (reply, answer) = oneshot::channel();
    let query = Inbound::Query {
        session_id: session_id.to_owned(),
        reply,
    };
    if ctx.engine.send(query).await.is_err() {
        return Ok(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down",
        ));
    }
    Ok(match answer.await {
        Ok(Some(info)) => warp::reply::json(&info).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            "session not found",
        ),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down",
        ),
    })
}

async fn rejection_to_json(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(if rejection.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this route",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        json_error(
            StatusCode::LENGTH_REQUIRED,
            "LENGTH_REQUIRED",
            "send a Content-Length with the body",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body too large",
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        json_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request could not be handled",
        )
    })
}
