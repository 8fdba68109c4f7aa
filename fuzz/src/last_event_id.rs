//! Target: `Last-Event-ID` parsing (`bandsync::sse::last_event_id`), the one header an SSE
//! listener controls that reaches the engine's history lookup.
//!
//! Beyond "no panic": an id is found exactly when the header value, stripped of the
//! spaces and tabs HTTP allows around it, is a decimal number that fits in a `u64`, and
//! then it is that number.

use http::{HeaderMap, HeaderValue};

/// Puts `data` in a `Last-Event-ID` header (when it is a legal header value) and checks
/// what the SSE route would make of it.
pub fn check(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("last-event-id", value);
    let parsed = bandsync::sse::last_event_id(&headers);
    let digits = match std::str::from_utf8(data) {
        Ok(text) => text.trim_matches([' ', '\t']),
        Err(_) => "",
    };
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    let expected = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.trim_start_matches('0'))
        .and_then(|d| {
            // u64::MAX has 20 digits; compare as decimal strings to avoid reusing `parse`.
            let max = u64::MAX.to_string();
            let fits = d.len() < max.len() || (d.len() == max.len() && d <= max.as_str());
            fits.then(|| d.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
        });
    assert_eq!(
        parsed,
        expected,
        "Last-Event-ID {:?}",
        String::from_utf8_lossy(data)
    );
}
