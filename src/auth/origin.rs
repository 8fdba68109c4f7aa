//! Which web pages may open a WebSocket or an SSE stream: the `Origin` rule.
//!
//! Browsers attach `Origin` to every WebSocket upgrade and to cross-origin `EventSource`
//! requests, and neither is covered by CORS: without this check, any page a band member
//! visits could drive their local server (take a vacant leader seat, listen in). Clients
//! that are not browsers (the CLI, native apps) send no `Origin` and are not affected.

/// The allowed origins, derived from `CORS_ORIGIN` so one setting governs both CORS and
/// this check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// `CORS_ORIGIN=*`: every origin (the open default for a band on a LAN).
    Any,
    /// A comma-separated list, compared case-insensitively without a trailing `/`.
    List(Vec<String>),
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl OriginPolicy {
    pub fn from_setting(setting: &str) -> Self {
        if setting.trim() == "*" {
            return OriginPolicy::Any;
        }
        let list = setting
            .split(',')
            .map(normalize)
            .filter(|o| !o.is_empty())
            .collect();
        OriginPolicy::List(list)
    }

    /// Whether a request with this `Origin` header (raw bytes, `None` when absent) may
    /// proceed. An absent header is a non-browser client and is allowed; a header that is
    /// not text, or `null` (sandboxed frames, `file:` pages), is allowed only under `*`.
    pub fn allows(&self, origin: Option<&[u8]>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => std::str::from_utf8(origin)
                .ok()
                .map(normalize)
                .is_some_and(|o| o != "null" && list.contains(&o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_allows_everything() {
        let p = OriginPolicy::from_setting(" * ");
        assert!(p.allows(Some(b"http://evil.example")));
        assert!(p.allows(Some(b"null")));
        assert!(p.allows(None));
    }

    #[test]
    fn a_list_allows_its_members_and_clients_without_origin() {
        let p = OriginPolicy::from_setting("http://good.example, https://band.example/");
        assert!(p.allows(Some(b"http://good.example")));
        assert!(p.allows(Some(b"HTTPS://Band.Example")));
        assert!(p.allows(None));
        assert!(!p.allows(Some(b"http://evil.example")));
        assert!(!p.allows(Some(b"http://good.example.evil.example")));
        assert!(!p.allows(Some(b"null")));
        assert!(!p.allows(Some(b"\xff")));
    }

    #[test]
    fn an_empty_list_allows_only_clients_without_origin() {
        let p = OriginPolicy::from_setting(" , ");
        assert!(!p.allows(Some(b"http://good.example")));
        assert!(p.allows(None));
    }
}
