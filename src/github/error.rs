//! What a webhook delivery can be refused for: one enum, each variant one HTTP status and one
//! `code` of the contract's JSON error (`{"success":false,"error","code","timestamp"}`), which
//! the route builds from [`WebhookError::status`], [`WebhookError::code`] and `Display`.

/// Why a delivery was refused. Deliveries that are well-formed but not played (an event
/// without a mapping, an action that makes no sound) are not errors: they are
/// [`super::ParsedAction::Ignored`] and answered 200, so GitHub does not retry them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A secret is configured and the signature is missing, malformed or wrong.
    #[error("{0}")]
    InvalidSignature(&'static str),
    /// `X-GitHub-Event` missing, repeated or not an event name.
    #[error("{0}")]
    MissingEvent(&'static str),
    /// `X-GitHub-Delivery` missing, repeated or not 1-100 characters of `A-Z a-z 0-9 -`.
    #[error("{0}")]
    MissingDelivery(&'static str),
    /// A `Content-Type` other than JSON or GitHub's form encoding.
    #[error("Content-Type must be application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// The body is not the JSON object of a GitHub event (or the form has no `payload`).
    #[error("{0}")]
    InvalidPayload(String),
    /// `repository.full_name` is not a repository id the streams accept.
    #[error("repository.full_name is not owner/name: {0}")]
    InvalidRepoId(String),
    /// The body is larger than [`super::MAX_PAYLOAD_BYTES`].
    #[error("payload larger than {0} bytes")]
    TooLarge(usize),
    /// The mapper produced parameters that do not validate: a bug (the property test says
    /// it cannot happen), refused rather than handed to the renderer.
    #[error("the event could not be mapped: {0}")]
    Internal(String),
}

impl WebhookError {
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::InvalidSignature(_) => 401,
            WebhookError::MissingEvent(_)
            | WebhookError::MissingDelivery(_)
            | WebhookError::InvalidPayload(_)
            | WebhookError::InvalidRepoId(_) => 400,
            WebhookError::TooLarge(_) => 413,
            WebhookError::UnsupportedMediaType => 415,
            WebhookError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::InvalidSignature(_) => "INVALID_SIGNATURE",
            WebhookError::MissingEvent(_) => "MISSING_EVENT",
            WebhookError::MissingDelivery(_) => "MISSING_DELIVERY",
            WebhookError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            WebhookError::InvalidPayload(_) => "INVALID_PAYLOAD",
            WebhookError::InvalidRepoId(_) => "INVALID_REPO_ID",
            WebhookError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            WebhookError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}
