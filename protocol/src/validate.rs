//! Validation of the values clients send. Each check returns the contract's error code.

use crate::error::{ErrorCode, ProtocolError};

/// Longest session id, in characters.
pub const MAX_SESSION_ID_CHARS: usize = 128;
/// Slowest and fastest tempo a session accepts, in beats per minute.
pub const MIN_TEMPO: f64 = 20.0;
pub const MAX_TEMPO: f64 = 400.0;
/// Tempo of a new session.
pub const DEFAULT_TEMPO: f64 = 120.0;
/// Longest `update_message` text, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest member name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest credential (`token`, `shareToken`), in bytes: a signed JWT with a few claims is
/// well under 1 KiB, an RS256 one with a 4096-bit key under 1.5 KiB.
pub const MAX_CREDENTIAL_BYTES: usize = 4096;

/// A session id: 1 to 128 characters of `A-Z a-z 0-9 . _ - /`.
pub fn session_id(id: &str) -> Result<(), ProtocolError> {
    let valid_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/');
    if id.is_empty() || id.len() > MAX_SESSION_ID_CHARS || !id.bytes().all(valid_char) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidSessionId,
            "sessionId must be 1-128 characters of A-Z a-z 0-9 . _ - /",
        ));
    }
    Ok(())
}

/// A tempo: finite, 20 to 400 beats per minute inclusive.
pub fn tempo(tempo: f64) -> Result<(), ProtocolError> {
    if !(MIN_TEMPO..=MAX_TEMPO).contains(&tempo) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidTempo,
            format!("tempo must be between {MIN_TEMPO} and {MAX_TEMPO} beats per minute"),
        ));
    }
    Ok(())
}

/// A position: finite and not negative.
pub fn beat(beat: f64) -> Result<(), ProtocolError> {
    if !beat.is_finite() || beat < 0.0 {
        return Err(ProtocolError::new(
            ErrorCode::InvalidBeat,
            "beat must be a finite number >= 0",
        ));
    }
    Ok(())
}

/// A session message: at most 1000 characters.
pub fn message_text(text: &str) -> Result<(), ProtocolError> {
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ProtocolError::new(
            ErrorCode::MessageTooLong,
            format!("text must be at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A display name: at most 64 characters, no control characters.
pub fn name(name: &str) -> Result<(), ProtocolError> {
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidName,
            format!("name must be at most {MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

/// A credential (`token`, `shareToken`): 1 to 4096 bytes, printable ASCII (JWTs, bearer
/// tokens). Checked at the edge so the server never hashes or parses megabytes of "token".
pub fn credential(field: &str, value: &str) -> Result<(), ProtocolError> {
    let printable = |b: u8| (0x20..0x7f).contains(&b);
    if value.is_empty() || value.len() > MAX_CREDENTIAL_BYTES || !value.bytes().all(printable) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("{field} must be 1-{MAX_CREDENTIAL_BYTES} bytes of printable ASCII"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_bounded_and_printable() {
        assert!(credential("token", "eyJhbGciOi.x.y").is_ok());
        assert!(credential("token", "Bearer Token").is_ok());
        assert!(credential("token", "").is_err());
        assert!(credential("token", "a\nb").is_err());
        assert!(credential("token", &"a".repeat(MAX_CREDENTIAL_BYTES)).is_ok());
        let long = credential("shareToken", &"a".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert!(long.unwrap_err().message.contains("shareToken"));
    }

    #[test]
    fn session_ids_follow_the_contract() {
        for ok in [
            "my-band",
            "123456",
            "owner/repo",
            "a",
            "A.b_c-d/e",
            &"x".repeat(128),
        ] {
            assert!(session_id(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "has space",
            "ünï",
            "semi;colon",
            &"x".repeat(129),
            "a\n",
        ] {
            assert_eq!(
                session_id(bad).unwrap_err().code,
                ErrorCode::InvalidSessionId,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tempo_range_is_inclusive_and_rejects_nan() {
        assert!(tempo(20.0).is_ok());
        assert!(tempo(400.0).is_ok());
        for bad in [19.999, 400.001, f64::NAN, f64::INFINITY, -120.0] {
            assert_eq!(tempo(bad).unwrap_err().code, ErrorCode::InvalidTempo);
        }
    }

    #[test]
    fn beat_must_be_finite_and_not_negative() {
        assert!(beat(0.0).is_ok());
        assert!(beat(1e9).is_ok());
        for bad in [-0.001, f64::NAN, f64::INFINITY] {
            assert_eq!(beat(bad).unwrap_err().code, ErrorCode::InvalidBeat);
        }
    }

    #[test]
    fn message_length_counts_characters_not_bytes() {
        assert!(message_text(&"é".repeat(1000)).is_ok());
        assert_eq!(
            message_text(&"a".repeat(1001)).unwrap_err().code,
            ErrorCode::MessageTooLong
        );
    }

    #[test]
    fn names_are_short_and_printable() {
        assert!(name("Ada (keys)").is_ok());
        assert_eq!(
            name(&"n".repeat(65)).unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert_eq!(name("bell\u{7}").unwrap_err().code, ErrorCode::InvalidName);
    }
}
