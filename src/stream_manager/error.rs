//! Why a Stream Manager request failed, as the HTTP status, the contract's error code and
//! (for a bad field) the field's dotted path.

use bandsync_protocol::stream_manager::{Control, FieldError, StreamState};
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot {} a stream that is {}", control.as_str(), from.as_str())]
    InvalidTransition { control: Control, from: StreamState },
    #[error("{message}")]
    InvalidField { field: String, message: String },
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("no layer with this id in this stream")]
    LayerNotFound,
    #[error("no asset with this id in this stream")]
    AssetNotFound,
    #[error("the asset is used by a layer; delete or change the layer first")]
    AssetInUse(Vec<String>),
    #[error("a stream holds at most {0} layers")]
    LayerLimit(usize),
    #[error("a stream holds at most {0} assets")]
    AssetLimit(usize),
    #[error("the server holds at most {0} streams")]
    StreamLimit(usize),
    #[error("the stream store is unavailable; retry shortly")]
    StoreUnavailable,
    #[error("the stream changed on another instance too often; retry")]
    Contended,
    #[error("request bodies on this route are at most {0} bytes")]
    TooLarge(usize),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// An upload the asset store refused (its status and code).
    #[error("{message}")]
    Upload {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ManagerError {
    pub fn field(field: &str, message: &str) -> Self {
        ManagerError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ManagerError::InvalidTransition { .. }
            | ManagerError::AssetInUse(_)
            | ManagerError::LayerLimit(_)
            | ManagerError::AssetLimit(_)
            | ManagerError::Contended => StatusCode::CONFLICT,
            ManagerError::InvalidField { .. } | ManagerError::InvalidBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ManagerError::LayerNotFound | ManagerError::AssetNotFound => StatusCode::NOT_FOUND,
            ManagerError::StreamLimit(_) | ManagerError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ManagerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ManagerError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ManagerError::Upload { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ManagerError::InvalidTransition { .. } => "INVALID_TRANSITION",
            ManagerError::InvalidField { .. } | ManagerError::InvalidBody(_) => "INVALID_PARAMS",
            ManagerError::LayerNotFound => "LAYER_NOT_FOUND",
            ManagerError::AssetNotFound => "ASSET_NOT_FOUND",
            ManagerError::AssetInUse(_) => "ASSET_IN_USE",
            ManagerError::LayerLimit(_) => "LAYER_LIMIT",
            ManagerError::AssetLimit(_) => "ASSET_LIMIT",
            ManagerError::StreamLimit(_) => "STREAM_LIMIT",
            ManagerError::StoreUnavailable => "STORE_UNAVAILABLE",
            ManagerError::Contended => "CONFLICT",
            ManagerError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            ManagerError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ManagerError::Upload { code, .. } => code,
        }
    }

    /// The JSON body: the contract's error plus `field` or `layers` where they apply.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "success": false,
            "error": self.to_string(),
            "code": self.code(),
            "timestamp": crate::http::errors::now_whole_ms(),
        });
        match self {
            ManagerError::InvalidField { field, message } => {
                body["field"] = field.clone().into();
                body["error"] = format!("{field}: {message}").into();
            }
            ManagerError::AssetInUse(layers) => body["layers"] = layers.clone().into(),
            _ => {}
        }
        body
    }
}

impl From<FieldError> for ManagerError {
    fn from(e: FieldError) -> Self {
        ManagerError::InvalidField {
            field: e.field,
            message: e.message,
        }
    }
}
