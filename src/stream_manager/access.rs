//! Who may do what on the Stream Manager's routes: the stream a request addresses
//! (`?session=`), the per-address rate limit, the bearer token for writes and the read
//! rule (open, or a token admitting the session in the authenticated mode).

use super::StreamKey;
use crate::auth::credentials::Presented;
use crate::auth::AuthError;
use crate::context::AppContext;
use crate::http::errors::{error_response, Body};
use crate::limits::AddrKey;
use crate::share::auth::{self as bearer, Denied};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::net::IpAddr;

/// The stream named by `?session=` (none: the default stream).
fn stream_of(query: Option<&str>) -> Result<StreamKey, Box<Response<Body>>> {
    let session = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "session")
            .map(|(_, v)| v.into_owned())
    });
    match session {
        None => Ok(StreamKey(None)),
        Some(id) => match bandsync_protocol::validate::session_id(&id) {
            Ok(()) => Ok(StreamKey(Some(id))),
            Err(e) => Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_SESSION_ID",
                &format!("session: {}", e.message),
            ))),
        },
    }
}

/// The client's address and the stream a request addresses, once the request has been
/// counted against the address's rate limit.
pub fn admit<B>(
    ctx: &AppContext,
    req: &http::Request<B>,
) -> Result<(IpAddr, StreamKey), Box<Response<Body>>> {
    let client = crate::limits::ClientIp::of_request(req);
    rate_limit(ctx, client)?;
    Ok((client, stream_of(req.uri().query())?))
}

/// Counts one request against the address's budget; `429` with `Retry-After` past it.
fn rate_limit(ctx: &AppContext, client: IpAddr) -> Result<(), Box<Response<Body>>> {
    let Err(wait) = ctx.stream_manager.rate.check(AddrKey::of(client)) else {
        return Ok(());
    };
    ctx.metrics.rate_limit_violations.inc();
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many Stream Manager requests from this address; retry later",
    );
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Err(Box::new(response))
}

/// Whether `authorization` is the configured bearer token (as the Music Share API takes it).
pub fn bearer_ok(ctx: &AppContext, authorization: Option<&[u8]>) -> Result<(), Denied> {
    bearer::check(ctx.share.settings().bearer_token.as_deref(), authorization)
}

/// Writes need the bearer token; a wrong one counts toward the address's ban.
pub fn authorize_write(
    ctx: &AppContext,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<(), Box<Response<Body>>> {
    if let Some(banned) = crate::auth::bans::banned_response(ctx, client) {
        return Err(Box::new(banned));
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match bearer_ok(ctx, authorization) {
        Ok(()) => Ok(()),
        Err(denied) => {
            if denied == Denied::Wrong {
                ctx.auth_failures.record_failure(client, "http");
            }
            ctx.metrics
                .auth_failures
                .with_label_values(&["http", "stream_write"])
                .inc();
            let message = match denied {
                Denied::NotConfigured => {
                    "Stream Manager writes are disabled: the server has no BEARER_TOKEN configured"
                }
                other => other.message(),
            };
            let mut response = error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(response))
        }
    }
}

/// The read rule: open in the open mode; in the authenticated mode the bearer token, or a
/// token admitting the session (server-wide for the default stream).
pub fn authorize_read(
    ctx: &AppContext,
    query: Option<&str>,
    headers: &HeaderMap,
    stream: &StreamKey,
    client: IpAddr,
) -> Result<(), Box<Response<Body>>> {
    if ctx.auth.jwt.is_none() {
        return Ok(());
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if bearer_ok(ctx, authorization).is_ok() {
        return Ok(());
    }
    if let Some(banned) = crate::auth::bans::banned_response(ctx, client) {
        return Err(Box::new(banned));
    }
    let presented = Presented::from_parts(query, headers);
    crate::http::authorize(ctx, presented, stream.session())
        .map_err(|e: AuthError| Box::new(crate::auth::bans::refuse(ctx, client, "http", &e)))
}
