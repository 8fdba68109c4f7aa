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

/// Largest `quantum` of a scheduled command, in beats (16 bars of 4/4).
pub const MAX_QUANTUM: f64 = 64.0;
/// Longest chord sheet (`set_sheet` text), in bytes of UTF-8: several times a long song in
/// ChordPro, and small enough to fit the default 16 KiB frame limit once JSON-escaped.
pub const MAX_SHEET_BYTES: usize = 12 * 1024;

/// The shape of a schedule: `at` finite and positive, `quantum` finite in
/// `0 < quantum <= 64`, not both. Whether `at` is near enough is the server's check: it
/// needs the server clock.
pub fn schedule(at: Option<f64>, quantum: Option<f64>) -> Result<(), ProtocolError> {
    let invalid = |message: &str| Err(ProtocolError::new(ErrorCode::InvalidSchedule, message));
    match (at, quantum) {
        (Some(_), Some(_)) => invalid("give `at` or `quantum`, not both"),
        (Some(at), None) if !at.is_finite() || at <= 0.0 => {
            invalid("at must be a finite server time in ms since the Unix epoch")
        }
        (None, Some(q)) if !q.is_finite() || q <= 0.0 || q > MAX_QUANTUM => {
            invalid("quantum must be a number of beats above 0 and at most 64")
        }
        _ => Ok(()),
    }
}

/// A chord sheet: at most [`MAX_SHEET_BYTES`] bytes, no control characters other than
/// line breaks and tabs (ChordPro is text).
pub fn sheet_text(text: &str) -> Result<(), ProtocolError> {
    if text.len() > MAX_SHEET_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::SheetTooLarge,
            format!("a sheet must be at most {MAX_SHEET_BYTES} bytes"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "a sheet must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(())
}

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
    fn schedules_take_one_finite_instant_or_quantum() {
        assert!(schedule(None, None).is_ok());
        assert!(schedule(Some(1.7e12), None).is_ok());
        assert!(schedule(None, Some(4.0)).is_ok());
        assert!(schedule(None, Some(MAX_QUANTUM)).is_ok());
        for (at, quantum) in [
            (Some(1.7e12), Some(4.0)),
            (Some(f64::NAN), None),
            (Some(f64::INFINITY), None),
            (Some(-5.0), None),
            (None, Some(0.0)),
            (None, Some(-4.0)),
            (None, Some(64.5)),
            (None, Some(f64::NAN)),
        ] {
            let code = schedule(at, quantum).unwrap_err().code;
            assert_eq!(code, ErrorCode::InvalidSchedule, "{at:?} {quantum:?}");
        }
    }

    #[test]
    fn sheets_are_bounded_text() {
        assert!(sheet_text("{title: Blue}\n[G]Hello\t[C]world\r\n").is_ok());
        assert!(sheet_text(&"a".repeat(MAX_SHEET_BYTES)).is_ok());
        let long = sheet_text(&"a".repeat(MAX_SHEET_BYTES + 1));
        assert_eq!(long.unwrap_err().code, ErrorCode::SheetTooLarge);
        assert_eq!(
            sheet_text("a\u{0}b").unwrap_err().code,
            ErrorCode::InvalidMessage
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
