//! `X-Hub-Signature-256: sha256=<64 hex digits>`: HMAC-SHA256 of the raw body under the
//! webhook's secret, as GitHub computes it. The digest is compared with
//! [`Mac::verify_slice`], in constant time, so a caller learns nothing from how long a wrong
//! guess took.

use super::WebhookError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";
/// Bytes of a SHA-256 digest.
const DIGEST_LEN: usize = 32;
/// Exact length of a well-formed header value: the prefix and 64 hex digits.
pub const HEADER_LEN: usize = PREFIX.len() + 2 * DIGEST_LEN;

/// Checks `header` (the value of `X-Hub-Signature-256`, `None` when absent) against `body`.
/// Every malformed value is refused before any HMAC is computed.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8]) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::InvalidSignature(
        "X-Hub-Signature-256 is required: this server has a webhook secret",
    ))?;
    let malformed = WebhookError::InvalidSignature(
        "X-Hub-Signature-256 must be sha256= followed by 64 hex digits",
    );
    if header.len() != HEADER_LEN {
        return Err(malformed);
    }
    let hex = header
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(malformed.clone())?;
    let expected = decode_hex(hex).ok_or(malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| {
        WebhookError::InvalidSignature("X-Hub-Signature-256 does not match the payload")
    })
}

/// The header value GitHub would send for `body` under `secret` (for tests and tools that
/// replay deliveries).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(HEADER_LEN);
    out.push_str(PREFIX);
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

/// 64 hex digits (either case) to 32 bytes; `None` for anything else.
fn decode_hex(hex: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    if hex.len() != 2 * DIGEST_LEN {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; DIGEST_LEN];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example ("Validating webhook deliveries"), checked once with
    /// Python's `hmac`: secret `It's a Secret to Everybody`, body `Hello, World!`.
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn the_documented_vector_verifies_and_signs() {
        assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIGNATURE);
        assert_eq!(
            verify(DOC_SECRET, Some(DOC_SIGNATURE.as_bytes()), DOC_BODY),
            Ok(())
        );
        let upper = DOC_SIGNATURE.replace("757107ea", "757107EA");
        assert_eq!(verify(DOC_SECRET, Some(upper.as_bytes()), DOC_BODY), Ok(()));
    }

    #[test]
    fn a_wrong_secret_body_or_digest_is_refused() {
        let sig = DOC_SIGNATURE.as_bytes();
        assert!(verify(b"another secret", Some(sig), DOC_BODY).is_err());
        assert!(verify(DOC_SECRET, Some(sig), b"Hello, World?").is_err());
        let mut flipped = DOC_SIGNATURE.to_owned();
        flipped.replace_range(HEADER_LEN - 1.., "f");
        assert!(verify(DOC_SECRET, Some(flipped.as_bytes()), DOC_BODY).is_err());
    }

    #[test]
    fn malformed_headers_are_refused_before_hashing() {
        let digest = &DOC_SIGNATURE[PREFIX.len()..];
        for bad in [
            String::new(),
            digest.to_owned(),
            format!("sha1={digest}"),
            format!("sha256={}", &digest[..63]),
            format!("sha256={digest}0"),
            format!("sha256={}g", &digest[..63]),
            format!("sha256= {}", &digest[1..]),
            format!("SHA256={digest}"),
        ] {
            let err = verify(DOC_SECRET, Some(bad.as_bytes()), DOC_BODY).unwrap_err();
            assert_eq!(err.status(), 401, "{bad:?}");
        }
        assert_eq!(
            verify(DOC_SECRET, None, DOC_BODY).unwrap_err().status(),
            401
        );
    }

    #[test]
    fn signatures_round_trip_for_any_secret_and_body() {
        for (secret, body) in [
            (&b""[..], &b""[..]),
            (b"k", b"{}"),
            (&[0xffu8; 200][..], &[0u8; 5000][..]),
        ] {
            let header = sign(secret, body);
            assert_eq!(header.len(), HEADER_LEN);
            assert_eq!(verify(secret, Some(header.as_bytes()), body), Ok(()));
        }
    }
}
