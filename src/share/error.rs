//! What the share API answers besides success: one error enum, each variant one HTTP
//! status and one code of the contract's JSON error.

/// Everything the API can answer besides success; each maps to one status and code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShareError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("session id must be exactly 6 digits")]
    InvalidSessionId,
    #[error("{0}")]
    InvalidBody(String),
    #[error("Session not found")]
    NotFound,
    #[error("Session has ended")]
    Ended,
    #[error("no metadata available")]
    NoMetadata,
    #[error("Session ID already in use")]
    Conflict,
    #[error("the server holds its maximum of {0} active share sessions")]
    TooManySessions(usize),
    #[error("{0}")]
    TooLarge(String),
    #[error("too many failed authentications from this address; retry later")]
    Banned { retry_after_ms: u64 },
    #[error("this address already runs {0} share sessions, its maximum")]
    AddressLimit(usize),
    #[error("rate limit exceeded: at most {limit} {what} requests per {per}")]
    RateLimited {
        /// `per second per session and address`, or `per minute per address`.
        per: &'static str,
        what: &'static str,
        limit: u32,
        retry_after_ms: u64,
    },
}

impl ShareError {
    pub fn status(&self) -> u16 {
        match self {
            ShareError::Unauthorized(_) => 401,
            ShareError::InvalidSessionId | ShareError::InvalidBody(_) => 400,
            ShareError::NotFound | ShareError::Ended | ShareError::NoMetadata => 404,
            ShareError::Conflict => 409,
            ShareError::TooLarge(_) => 413,
            ShareError::RateLimited { .. }
            | ShareError::AddressLimit(_)
            | ShareError::Banned { .. } => 429,
            ShareError::TooManySessions(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ShareError::Unauthorized(_) => "UNAUTHORIZED",
            ShareError::InvalidSessionId => "INVALID_SESSION_ID",
            ShareError::InvalidBody(_) => "INVALID_REQUEST",
            ShareError::NotFound => "SESSION_NOT_FOUND",
            ShareError::Ended => "SESSION_ENDED",
            ShareError::NoMetadata => "NO_METADATA",
            ShareError::Conflict => "SESSION_CONFLICT",
            ShareError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            ShareError::RateLimited { .. } | ShareError::Banned { .. } => "RATE_LIMITED",
            ShareError::AddressLimit(_) => "ADDRESS_LIMIT",
            ShareError::TooManySessions(_) => "SESSION_LIMIT",
        }
    }
}

impl ShareError {
    /// The `share_starts_refused_total` reason when a per-address limit refused a start.
    pub fn refused_start_reason(&self) -> Option<&'static str> {
        match self {
            ShareError::AddressLimit(_) => Some("per_address"),
            ShareError::RateLimited { .. } => Some("rate"),
            _ => None,
        }
    }
}
