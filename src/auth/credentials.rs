//! What an HTTP request presents: `?token=` / `?shareToken=` on the URL (browsers cannot
//! set headers on a WebSocket or an `EventSource`), or the `Authorization` header.

use super::AuthError;
use crate::http::errors::{error_response, Body};
use crate::metrics::Metrics;
use bandsync_protocol::validate;
use http::{header, HeaderMap, Response, StatusCode, Uri};

/// The credentials of one request, each checked for size and characters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Presented {
    /// `?token=`: a JWT.
    pub token: Option<String>,
    /// `?shareToken=`: the share's bearer token.
    pub share_token: Option<String>,
    /// The `Authorization` header as sent (e.g. `Bearer eyJ...`).
    pub authorization: Option<String>,
}

impl Presented {
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Result<Self, AuthError> {
        Self::from_parts(uri.query(), headers)
    }

    /// [`Self::of`] from a request's raw query string and headers.
    pub fn from_parts(query: Option<&str>, headers: &HeaderMap) -> Result<Self, AuthError> {
        let mut presented = Presented::default();
        if let Some(query) = query {
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                let slot = match &*key {
                    "token" => &mut presented.token,
                    "shareToken" => &mut presented.share_token,
                    _ => continue,
                };
                validate::credential(&key, &value).map_err(|_| AuthError::Malformed)?;
                // The first occurrence counts; a repeated parameter cannot override it.
                slot.get_or_insert_with(|| value.into_owned());
            }
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| AuthError::Malformed)?;
            validate::credential("Authorization", value).map_err(|_| AuthError::Malformed)?;
            presented.authorization = Some(value.to_owned());
        }
        Ok(presented)
    }

    /// The JWT: `?token=`, else `Authorization: Bearer <jwt>`.
    pub fn jwt(&self) -> Option<&str> {
        self.token.as_deref().or_else(|| {
            self.authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
        })
    }

    /// The share token: `?shareToken=`, else (open mode only, where `Authorization`
    /// carries no JWT) the `Authorization` header, as the REST API takes it.
    pub fn share_token(&self, authenticated: bool) -> Option<&str> {
        self.share_token.as_deref().or(if authenticated {
            None
        } else {
            self.authorization.as_deref()
        })
    }
}

/// The HTTP answer to a refusal: 401 with the contract's JSON error, counted by
/// [`super::deny`].
pub fn deny_response(
    metrics: &Metrics,
    transport: &'static str,
    error: &AuthError,
) -> Response<Body> {
    let error = super::deny(metrics, transport, error);
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        error.code.as_str(),
        &error.message,
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented(uri: &str, authorization: Option<&str>) -> Result<Presented, AuthError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        Presented::of(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn query_parameters_are_decoded_and_the_first_wins() {
        let p = presented("/sse/1?token=a.b.c&shareToken=Bearer%20Token&token=x", None).unwrap();
        assert_eq!(p.jwt(), Some("a.b.c"));
        assert_eq!(p.share_token(true), Some("Bearer Token"));
    }

    #[test]
    fn the_authorization_header_is_a_jwt_or_a_share_token_by_mode() {
        let p = presented("/sse/1", Some("Bearer s3cret")).unwrap();
        assert_eq!(p.jwt(), Some("s3cret"));
        assert_eq!(p.share_token(false), Some("Bearer s3cret"));
        assert_eq!(p.share_token(true), None);
    }

    #[test]
    fn oversized_or_binary_credentials_are_refused() {
        let long = format!(
            "/ws?token={}",
            "a".repeat(validate::MAX_CREDENTIAL_BYTES + 1)
        );
        assert_eq!(presented(&long, None), Err(AuthError::Malformed));
        assert_eq!(presented("/ws?token=%00", None), Err(AuthError::Malformed));
        assert_eq!(presented("/ws?token=", None), Err(AuthError::Malformed));
    }
}
