//! What a client presents to a server that checks access: a session token (the
//! authenticated mode's JWT) and the share token (to receive a share's audio and metadata).
//!
//! A WebSocket client puts both in `join_session` (or the JWT on the `/ws` URL, which is
//! what a browser does); an SSE client puts them on the stream's URL (`?token=`,
//! `?shareToken=`), since `EventSource` cannot set headers.

use bandsync_protocol::{JoinSession, Role};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A JWT for the session (`JWT_SECRET` / `JWT_PUBLIC_KEY` servers).
    pub token: Option<String>,
    /// The Music Share API's bearer token, as for `Authorization` (e.g. `Bearer Token`).
    pub share_token: Option<String>,
}

impl Credentials {
    pub fn token(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            share_token: None,
        }
    }

    pub fn share_token(share_token: impl Into<String>) -> Self {
        Self {
            token: None,
            share_token: Some(share_token.into()),
        }
    }

    /// The query string (`?token=...&shareToken=...`, escaped), or `""` when empty.
    pub fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(token) = &self.token {
            query.append_pair("token", token);
        }
        if let Some(share_token) = &self.share_token {
            query.append_pair("shareToken", share_token);
        }
        let query = query.finish();
        if query.is_empty() {
            query
        } else {
            format!("?{query}")
        }
    }

    /// A `join_session` carrying these credentials.
    pub fn join(&self, session_id: &str, role: Option<Role>, name: Option<&str>) -> JoinSession {
        JoinSession {
            session_id: session_id.to_owned(),
            name: name.map(str::to_owned),
            role,
            resume_token: None,
            token: self.token.clone(),
            share_token: self.share_token.clone(),
            last_version: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_escapes_and_skips_what_is_absent() {
        assert_eq!(Credentials::default().query(), "");
        assert_eq!(Credentials::token("a.b.c").query(), "?token=a.b.c");
        let both = Credentials {
            token: Some("t".into()),
            share_token: Some("Bearer Token".into()),
        };
        assert_eq!(both.query(), "?token=t&shareToken=Bearer+Token");
    }

    #[test]
    fn a_join_carries_both_tokens() {
        let join = Credentials::token("t").join("band", Some(Role::Leader), Some("ada"));
        assert_eq!(join.token.as_deref(), Some("t"));
        assert_eq!(join.share_token, None);
        assert_eq!(join.role, Some(Role::Leader));
    }
}
