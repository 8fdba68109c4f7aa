//! WebSocket close codes the server uses, and whether a client should reconnect.

/// Normal closure: the client or server ended the connection on purpose.
pub const NORMAL: u16 = 1000;
/// The server is shutting down. Reconnect (with backoff) and resume.
pub const GOING_AWAY: u16 = 1001;
/// Invalid payload: a text frame that is not UTF-8 (tungstenite cannot read on after one),
/// or a compressed message that is not valid DEFLATE data.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Protocol error: the client broke the framing rules (for example RSV1 on a control or
/// continuation frame under permessage-deflate). Do not reconnect with the same client.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Policy violation: the socket kept sending past its rate limit. Reconnect only after
/// slowing down.
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame exceeded the hard frame-size cap (`MAX_FRAME_BYTES`), or a compressed message
/// inflated beyond it. Do not resend it.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// No pong (or any frame) within `SOCKET_PING_TIMEOUT`. Reconnect and resume.
pub const PING_TIMEOUT: u16 = 4000;
/// The client could not keep up with state events (its outbound queue overflowed).
/// Reconnect and resume: the `snapshot` brings it back in step.
pub const SLOW_CONSUMER: u16 = 4001;
/// Another connection resumed this client's identity with its resume token.
pub const REPLACED: u16 = 4002;
/// A message was begun and not finished within `MESSAGE_TIMEOUT_MS` (its last fragment, or
/// the rest of its only frame, never came). Reconnect; send whole messages.
pub const MESSAGE_TIMEOUT: u16 = 4003;
/// Try again later: the server's budget for partially received messages
/// (`PARTIAL_MESSAGE_BUDGET_BYTES`) is exhausted. Reconnect with backoff.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Whether a client seeing `code` should reconnect automatically.
pub fn should_reconnect(code: u16) -> bool {
    matches!(
        code,
        GOING_AWAY
            | PING_TIMEOUT
            | SLOW_CONSUMER
            | MESSAGE_TIMEOUT
            | 1006
            | 1011
            | 1012
            | TRY_AGAIN_LATER
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_advice_matches_the_documented_codes() {
        assert!(should_reconnect(GOING_AWAY));
        assert!(should_reconnect(SLOW_CONSUMER));
        assert!(should_reconnect(PING_TIMEOUT));
        assert!(should_reconnect(TRY_AGAIN_LATER));
        assert!(should_reconnect(MESSAGE_TIMEOUT));
        assert!(!should_reconnect(NORMAL));
        assert!(!should_reconnect(POLICY_VIOLATION));
        assert!(!should_reconnect(REPLACED));
    }
}
