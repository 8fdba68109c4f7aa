//! An asset's type, from its first bytes (magic numbers) alone.
//!
//! Five fixed signatures, written out rather than taken from the `infer` crate: `infer`
//! knows some two hundred types, so using it would still mean keeping an allow-list of the
//! five accepted here, and its glTF check does not look at the container version. The
//! client's file name, extension and part `Content-Type` never take part: a PNG named
//! `x.jpg` is `image/png`, and an HTML page named `evil.png` is refused.

/// How many bytes the decision needs: the longest signature (WebP's `RIFF....WEBP`, and the
/// binary glTF header's magic and version) is 12 bytes. A file shorter than this is none of
/// the accepted types.
pub const PREFIX_LEN: usize = 12;

/// The MIME type of a file whose first bytes are `head`, or `None` when it is not one of the
/// accepted types. `head` should hold at least [`PREFIX_LEN`] bytes; fewer never match.
pub fn detect(head: &[u8]) -> Option<&'static str> {
    if head.len() < PREFIX_LEN {
        return None;
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"glTF") && head[4..8] == 2u32.to_le_bytes() {
        // The binary glTF header: magic, then the container version (2, little-endian).
        Some("model/gltf-binary")
    } else {
        None
    }
}

/// Whether `mime` is one of the image types (what an image layer may show).
pub fn is_image(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(start: &[u8]) -> Vec<u8> {
        let mut bytes = start.to_vec();
        bytes.resize(PREFIX_LEN.max(start.len()), 0);
        bytes
    }

    #[test]
    fn each_accepted_signature_is_recognised() {
        assert_eq!(detect(&padded(b"\x89PNG\r\n\x1a\n")), Some("image/png"));
        assert_eq!(
            detect(&padded(&[0xFF, 0xD8, 0xFF, 0xE0])),
            Some("image/jpeg")
        );
        assert_eq!(detect(&padded(b"GIF87a")), Some("image/gif"));
        assert_eq!(detect(&padded(b"GIF89a")), Some("image/gif"));
        assert_eq!(detect(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            detect(b"glTF\x02\0\0\0\x40\0\0\0"),
            Some("model/gltf-binary")
        );
    }

    #[test]
    fn near_misses_are_refused() {
        assert_eq!(detect(b"glTF\x01\0\0\0\x40\0\0\0"), None, "glTF version 1");
        assert_eq!(detect(b"RIFF\x10\0\0\0WAVEfmt "), None, "a WAV file");
        assert_eq!(detect(&padded(b"GIF88a")), None);
        assert_eq!(detect(&padded(b"<!DOCTYPE html>")), None);
        assert_eq!(
            detect(&padded(b"\x89PNG\r\n")),
            None,
            "a truncated PNG signature"
        );
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n"), None, "fewer than 12 bytes");
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn only_the_image_types_are_images() {
        assert!(is_image("image/webp"));
        assert!(!is_image("model/gltf-binary"));
    }
}
