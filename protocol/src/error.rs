//! Error codes sent in `error` events, and the decode error that carries one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Machine-readable reason in an `error` event's `code` field.
///
/// The first ten are fixed by the wire contract; the rest are bandsync extensions
/// documented in `protocol/PROTOCOL.md`. Clients must treat an unknown code as a generic
/// error (hence `#[serde(other)]` on [`ErrorCode::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Not JSON, not an object, missing `type`, a mistyped field, or too large.
    InvalidMessage,
    /// `type` names no client event.
    UnknownType,
    /// The event needs a session and the connection has not joined one.
    NotInSession,
    /// Only the session's leader may send this event.
    NotLeader,
    /// `set_role leader` while another member leads.
    LeaderTaken,
    /// `sessionId` is not 1-128 characters of `A-Z a-z 0-9 . _ - /`.
    InvalidSessionId,
    /// `tempo` outside 20..=400 beats per minute (or not finite).
    InvalidTempo,
    /// `beat` negative or not finite.
    InvalidBeat,
    /// `update_message` text longer than 1000 characters.
    MessageTooLong,
    /// The request lacks valid credentials.
    Unauthorized,
    /// `name` longer than [`crate::validate::MAX_NAME_CHARS`] characters, or with control
    /// characters.
    InvalidName,
    /// The server holds its configured maximum of sessions and cannot open another.
    SessionLimit,
    /// The session holds its configured maximum of members.
    SessionFull,
    /// Something failed inside the server; the request had no effect.
    InternalError,
    /// A transport command's `at` or `quantum` is unusable: not finite, both given, `at`
    /// in the past beyond the tolerance or further ahead than the server schedules, or
    /// `quantum` outside `0 < quantum <= 64`.
    InvalidSchedule,
    /// `set_sheet` text longer than [`crate::validate::MAX_SHEET_BYTES`] bytes.
    SheetTooLarge,
    /// Any code this version of the crate does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire spelling, e.g. `"NOT_LEADER"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::NotInSession => "NOT_IN_SESSION",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::LeaderTaken => "LEADER_TAKEN",
            ErrorCode::InvalidSessionId => "INVALID_SESSION_ID",
            ErrorCode::InvalidTempo => "INVALID_TEMPO",
            ErrorCode::InvalidBeat => "INVALID_BEAT",
            ErrorCode::MessageTooLong => "MESSAGE_TOO_LONG",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::InvalidName => "INVALID_NAME",
            ErrorCode::SessionLimit => "SESSION_LIMIT",
            ErrorCode::SessionFull => "SESSION_FULL",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::InvalidSchedule => "INVALID_SCHEDULE",
            ErrorCode::SheetTooLarge => "SHEET_TOO_LARGE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the server refuses: the code and a human-readable message for the `error`
/// event. Returned by decoding and validation; never panics, never closes the socket.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
