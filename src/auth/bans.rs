//! Wrong credentials count toward the per-address ban of [`crate::limits::AuthFailures`] on
//! every transport, not only the share API's bearer token: a JWT that does not verify on
//! the `/ws` URL, on `/sse`, or in `join_session` is a guess like a wrong share token, and
//! `AUTH_FAILURE_LIMIT` guesses from one address ban it for `AUTH_BAN_MS`. A missing token,
//! or a valid one that lacks the rights asked for (another session, the leader seat), is
//! not a guess and is not counted.

use super::credentials::deny_response;
use super::AuthError;
use crate::context::AppContext;
use crate::http::errors::{error_response, Body};
use http::{header, HeaderValue, Response, StatusCode};
use std::net::IpAddr;

/// Whether `error` is a wrong credential, as opposed to a missing one or a lack of rights.
pub fn is_guess(error: &AuthError) -> bool {
    matches!(
        error,
        AuthError::Malformed
            | AuthError::BadSignature
            | AuthError::WrongAlgorithm
            | AuthError::Expired
            | AuthError::BadClaims(_)
            | AuthError::WrongShareToken
    )
}

/// HTTP 429 `RATE_LIMITED` with `Retry-After` while `ip` is banned; `None` otherwise.
pub fn banned_response(ctx: &AppContext, ip: IpAddr) -> Option<Response<Body>> {
    let retry = ctx.auth_failures.check(ip).err()?;
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many failed authentications from this address; retry later",
    );
    if let Ok(value) = HeaderValue::from_str(&retry.secs().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// The 401 for `error`, after counting a guess toward `ip`'s ban.
pub fn refuse(
    ctx: &AppContext,
    ip: IpAddr,
    transport: &'static str,
    error: &AuthError,
) -> Response<Body> {
    if is_guess(error) {
        ctx.auth_failures.record_failure(ip, transport);
    }
    deny_response(&ctx.metrics, transport, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wrong_credentials_are_guesses() {
        assert!(is_guess(&AuthError::BadSignature));
        assert!(is_guess(&AuthError::Expired));
        assert!(is_guess(&AuthError::WrongShareToken));
        assert!(!is_guess(&AuthError::Missing));
        assert!(!is_guess(&AuthError::WrongSession));
        assert!(!is_guess(&AuthError::FollowerOnly));
    }
}
