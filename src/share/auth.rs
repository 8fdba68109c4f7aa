//! The Music Share API's bearer token check.
//!
//! The seed's desktop client sends its whole configured value as the header, e.g.
//! `Authorization: Bearer Token` where the configured `BearerToken` is `Bearer Token`. So the
//! header is accepted when it equals `BEARER_TOKEN` exactly, or equals `Bearer <BEARER_TOKEN>`.
//! Comparisons are constant-time, so response timing does not leak how much of a guess was
//! right.

use subtle::ConstantTimeEq;

/// Why a request was not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `BEARER_TOKEN` is configured: the share API is closed.
    NotConfigured,
    Missing,
    Wrong,
}

impl Denied {
    pub fn message(self) -> &'static str {
        match self {
            Denied::NotConfigured => {
                "the share API is disabled: the server has no BEARER_TOKEN configured"
            }
            Denied::Missing => "missing Authorization header",
            Denied::Wrong => "invalid bearer token",
        }
    }
}

pub fn check(configured: Option<&str>, header: Option<&[u8]>) -> Result<(), Denied> {
    let Some(token) = configured.filter(|t| !t.is_empty()) else {
        return Err(Denied::NotConfigured);
    };
    let Some(header) = header else {
        return Err(Denied::Missing);
    };
    let exact = header.ct_eq(token.as_bytes());
    let prefixed = header.len() == token.len() + 7
        && bool::from(header[..7].ct_eq(b"Bearer "))
        && bool::from(header[7..].ct_eq(token.as_bytes()));
    if bool::from(exact) || prefixed {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_configured_value_is_accepted() {
        assert_eq!(check(Some("Bearer Token"), Some(b"Bearer Token")), Ok(()));
    }

    #[test]
    fn a_bare_token_is_accepted_with_the_bearer_scheme() {
        assert_eq!(check(Some("s3cret"), Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(check(Some("s3cret"), Some(b"s3cret")), Ok(()));
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(check(Some("s3cret"), None), Err(Denied::Missing));
        assert_eq!(
            check(Some("s3cret"), Some(b"Bearer s3cre")),
            Err(Denied::Wrong)
        );
        assert_eq!(
            check(Some("s3cret"), Some(b"Bearer s3cret ")),
            Err(Denied::Wrong)
        );
        assert_eq!(
            check(Some("s3cret"), Some(b"bearer s3cret")),
            Err(Denied::Wrong)
        );
        assert_eq!(check(None, Some(b"Bearer x")), Err(Denied::NotConfigured));
        assert_eq!(check(Some(""), Some(b"")), Err(Denied::NotConfigured));
    }
}
