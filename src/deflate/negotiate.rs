//! Negotiating permessage-deflate from `Sec-WebSocket-Extensions` (RFC 7692 section 7.1,
//! header grammar from RFC 6455 section 9.1).
//!
//! The client lists offers in order of preference, possibly across several headers; we
//! take the first permessage-deflate offer we can honour and answer with
//! `server_no_context_takeover; client_no_context_takeover`:
//!
//! - `server_no_context_takeover` because each broadcast is compressed once, as its own
//!   DEFLATE stream, and the same bytes go to every receiver. A server may always
//!   declare it, offered or not (7.1.1.1).
//! - `client_no_context_takeover` so inflating needs no 32 KiB window kept per
//!   connection between messages. A server may request it even when the client did not
//!   offer it, and the client must then comply (7.1.1.2).
//!
//! Offers we decline:
//!
//! - `server_max_window_bits` below 15. flate2's default backend (miniz_oxide, pure Rust)
//!   always compresses with a 32 KiB window. A zlib backend could honour smaller
//!   windows, but then the compressed bytes would depend on the window and could no
//!   longer be shared by every receiver: each distinct window would cost one more
//!   compression per broadcast. Browsers never ask for a smaller server window; a client
//!   that must have one usually lists a fallback offer, and otherwise gets plain frames.
//! - Offers with unknown, repeated or malformed parameters (RFC 7692 7.1).
//!
//! `client_max_window_bits` (with or without a value) is accepted and not echoed: our
//! inflater handles any window up to 15 bits, so we need not limit the client's. The
//! RFC forbids echoing it unless offered, and allows leaving it out when offered.

/// The `Sec-WebSocket-Extensions` value answering an accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The client asked for `server_max_window_bits=15`, which must then be echoed.
    echo_server_window: bool,
}

impl Agreement {
    pub fn header_value(&self) -> &'static str {
        if self.echo_server_window {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// The first permessage-deflate offer among `headers` that we can honour, if any.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    headers
        .into_iter()
        .flat_map(|value| split_outside_quotes(value, ','))
        .filter_map(parse_element)
        .filter(|(name, _)| name.eq_ignore_ascii_case("permessage-deflate"))
        .find_map(|(_, params)| accept(&params))
}

/// One extension parameter: a name and an optional value (quotes removed).
type Param<'a> = (&'a str, Option<String>);

/// Decides one permessage-deflate offer.
fn accept(params: &[Param<'_>]) -> Option<Agreement> {
    let mut seen: Vec<String> = Vec::with_capacity(params.len());
    let mut echo_server_window = false;
    for (name, value) in params {
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            ("server_max_window_bits", Some(bits)) => {
                if window_bits(bits)? != 15 {
                    return None;
                }
                echo_server_window = true;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(Agreement { echo_server_window })
}

/// A window-bits value: a decimal 8 to 15 without leading zeros (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// `extension-token *( ";" extension-param )`, or `None` when malformed.
fn parse_element(element: &str) -> Option<(&str, Vec<Param<'_>>)> {
    let mut parts = split_outside_quotes(element, ';');
    let name = parts.next()?.trim();
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for part in parts {
        let part = part.trim();
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key.trim(), Some(param_value(value.trim())?)),
            None => (part, None),
        };
        if !is_token(key) {
            return None;
        }
        params.push((key, value));
    }
    Some((name, params))
}

/// A parameter value: a token, or a quoted string whose content must itself be a token
/// (RFC 6455 9.1).
fn param_value(raw: &str) -> Option<String> {
    let value = match raw.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    '"' => return None,
                    c => out.push(c),
                }
            }
            out
        }
        None => raw.to_owned(),
    };
    is_token(&value).then_some(value)
}

/// RFC 7230 `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits on `sep` outside double-quoted strings (which may contain escaped quotes).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut cuts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                cuts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&s[start..]);
    cuts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(headers: &[&str]) -> Option<&'static str> {
        negotiate(headers.iter().copied()).map(|a| a.header_value())
    }

    #[test]
    fn browsers_offer_is_accepted() {
        // What Chromium and Firefox send.
        let offer = "permessage-deflate; client_max_window_bits";
        assert_eq!(answer(&[offer]), Some(PLAIN));
    }

    #[test]
    fn a_bare_offer_and_odd_spacing_and_case_are_accepted() {
        assert_eq!(answer(&["permessage-deflate"]), Some(PLAIN));
        assert_eq!(
            answer(&[
                "  Permessage-Deflate ;Client_No_Context_Takeover ;  server_no_context_takeover"
            ]),
            Some(PLAIN)
        );
    }

    #[test]
    fn no_offer_or_other_extensions_only_negotiate_nothing() {
        assert_eq!(answer(&[]), None);
        assert_eq!(answer(&[""]), None);
        assert_eq!(answer(&["x-webkit-deflate-frame", "foo; bar=1"]), None);
    }

    #[test]
    fn the_first_acceptable_offer_wins_across_elements_and_headers() {
        let first = "permessage-deflate; server_max_window_bits=10, permessage-deflate";
        assert_eq!(answer(&[first]), Some(PLAIN));
        let headers = [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=15, permessage-deflate",
        ];
        assert_eq!(
            answer(&headers),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=15"
            )
        );
    }

    #[test]
    fn smaller_server_windows_are_declined() {
        for bits in 8..15 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(answer(&[&offer]), None, "{bits} bits");
        }
    }

    #[test]
    fn client_window_values_are_checked_but_not_echoed() {
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=10"]),
            Some(PLAIN)
        );
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=\"12\""]),
            Some(PLAIN)
        );
        for bad in ["7", "16", "08", "", "x", "1 5", "\"\""] {
            let offer = format!("permessage-deflate; client_max_window_bits={bad}");
            assert_eq!(answer(&[&offer]), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_or_unknown_parameters_decline_that_offer_only() {
        let declined = [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; mystery",
            "permessage-deflate; client_max_window_bits=\"1,5\"",
            "permessage-deflate; client_max_window_bits=\"15",
            "permessage-deflate;; client_no_context_takeover",
            "permessage-deflate extra",
        ];
        for offer in declined {
            assert_eq!(answer(&[offer]), None, "{offer}");
            let fallback = "permessage-deflate";
            assert_eq!(
                answer(&[offer, fallback]),
                Some(PLAIN),
                "{offer} + fallback"
            );
        }
    }

    #[test]
    fn quoted_commas_do_not_split_offers() {
        let offer = "foo; bar=\"a,b\", permessage-deflate";
        assert_eq!(answer(&[offer]), Some(PLAIN));
        let escaped = "foo; bar=\"a\\\",b\", permessage-deflate";
        assert_eq!(
            split_outside_quotes(escaped, ',').count(),
            2,
            "an escaped quote stays inside the string"
        );
    }
}
