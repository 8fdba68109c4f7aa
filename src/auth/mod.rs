//! Access control: which pages may connect ([`origin`]), who may join which session and
//! lead it in the authenticated mode ([`jwt`]), and who may receive a share's audio.
//!
//! Two modes. Open (the default, for a band on its LAN): anyone who knows a session's name
//! may join it. Authenticated (`JWT_SECRET` and/or `JWT_PUBLIC_KEY` set, for people hosting
//! bandsync for many bands): every WebSocket join, SSE stream and session read needs a token
//! whose claims allow that session. In both modes the `Origin` rule applies, and a share's
//! metadata and audio go only to receivers that present the share's authorization.
//!
//! Every refusal goes through [`deny`], so refusals are counted in one place (and a
//! per-address failure limiter can be hooked into that one place).

pub mod bans;
pub mod credentials;
pub mod jwt;
pub mod origin;

use crate::config::Config;
use crate::metrics::Metrics;
use bandsync_protocol::{ErrorCode, ProtocolError};
use jwt::{Grant, KeyError, Verifier};
use origin::OriginPolicy;

/// Why a request or join was not authorized. The text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this server requires a token: `token` in join_session, or ?token= on the URL")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed with an algorithm this server does not accept")]
    WrongAlgorithm,
    #[error("the token has expired")]
    Expired,
    #[error("the token's claims are invalid: {0}")]
    BadClaims(String),
    #[error("the token does not grant this session")]
    WrongSession,
    #[error("the token grants the follower role only; it cannot take the leader seat")]
    FollowerOnly,
    #[error("this resumeToken belongs to another identity than the presented token")]
    ResumeIdentity,
    #[error("the share token is wrong")]
    WrongShareToken,
    #[error("reading server-wide data needs a token for every session (`\"session\": \"*\"`)")]
    NotServerWide,
}

impl AuthError {
    /// The label of `bandsync_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::Expired => "expired",
            AuthError::BadClaims(_) => "bad_claims",
            AuthError::WrongSession => "wrong_session",
            AuthError::FollowerOnly => "follower_only",
            AuthError::ResumeIdentity => "resume_identity",
            AuthError::WrongShareToken => "wrong_share_token",
            AuthError::NotServerWide => "not_server_wide",
        }
    }
}

/// Records one refusal and returns the error to send: the single failure path of every
/// transport (`transport`: `ws`, `sse`, `http`).
pub fn deny(metrics: &Metrics, transport: &'static str, error: &AuthError) -> ProtocolError {
    metrics
        .auth_failures
        .with_label_values(&[transport, error.reason()])
        .inc();
    tracing::debug!(transport, reason = error.reason(), "authorization refused");
    ProtocolError::new(ErrorCode::Unauthorized, error.to_string())
}

/// The access settings, built once at startup.
#[derive(Debug)]
pub struct Auth {
    pub origin: OriginPolicy,
    /// `Some` in the authenticated mode.
    pub jwt: Option<Verifier>,
    /// The Music Share API's `BEARER_TOKEN`: also what a push receiver presents.
    share_token: Option<String>,
}

impl Auth {
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        Ok(Auth {
            origin: OriginPolicy::from_setting(&config.cors_origin),
            jwt: Verifier::new(
                config.jwt_secret.as_deref(),
                config.jwt_public_key.as_deref(),
                config.jwt_leeway_secs,
            )?,
            share_token: config.share.bearer_token.clone(),
        })
    }

    pub fn authenticated(&self) -> bool {
        self.jwt.is_some()
    }

    /// The grant for `session_id` from `token`: `Ok(None)` in the open mode (nothing to
    /// check), an error when the authenticated mode's token is missing or does not admit.
    pub fn admit(&self, token: Option<&str>, session_id: &str) -> Result<Option<Grant>, AuthError> {
        let Some(verifier) = &self.jwt else {
            return Ok(None);
        };
        let grant = verifier.verify(token.ok_or(AuthError::Missing)?)?;
        grant.admits(session_id, jwt::now_secs())?;
        Ok(Some(grant))
    }

    /// The `Origin` rule for a `/ws` upgrade or an `/sse` request; a refusal is counted,
    /// and answered with [`origin_refusal`] before any connection slot is taken.
    pub fn origin_allowed(
        &self,
        headers: &http::HeaderMap,
        metrics: &Metrics,
        transport: &'static str,
    ) -> bool {
        let origin = headers.get(http::header::ORIGIN).map(|v| v.as_bytes());
        if self.origin.allows(origin) {
            return true;
        }
        metrics
            .origin_rejected
            .with_label_values(&[transport])
            .inc();
        tracing::debug!(transport, "refused a request from a disallowed Origin");
        false
    }

    /// Authenticated mode: verifies the `token` of a `join_session` on the connection's own
    /// task, so the engine thread only checks the claims against the session.
    pub fn verify_join(
        &self,
        event: &bandsync_protocol::ClientEvent,
    ) -> Option<Result<Grant, AuthError>> {
        let bandsync_protocol::ClientEvent::JoinSession(join) = event else {
            return None;
        };
        let verifier = self.jwt.as_ref()?;
        Some(verifier.verify(join.token.as_deref()?))
    }

    /// Checks a presented share token against `BEARER_TOKEN` (constant-time; the bare
    /// token or `Bearer <token>`, as the REST API accepts it).
    pub fn share_token_ok(&self, presented: &str) -> Result<(), AuthError> {
        crate::share::auth::check(self.share_token.as_deref(), Some(presented.as_bytes()))
            .map_err(|_| AuthError::WrongShareToken)
    }
}

/// The answer to a request from a disallowed `Origin`: 403 with the contract's JSON error.
pub fn origin_refusal() -> http::Response<crate::http::errors::Body> {
    crate::http::errors::error_response(
        http::StatusCode::FORBIDDEN,
        "ORIGIN_NOT_ALLOWED",
        "this page's origin is not in CORS_ORIGIN; open bandsync from an allowed origin",
    )
}
