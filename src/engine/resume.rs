//! Resume tokens: how a dropped client gets its identity and role back.
//!
//! Every `snapshot` carries a fresh 128-bit random token (the previous one is revoked). When
//! a connection drops without `leave_session`, its entry stays valid for the recovery
//! window; a `join_session` with the token to the same session within it restores the
//! `clientId` and, if the seat was held, leadership.

use super::inbound::ConnKey;
use bandsync_protocol::Role;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ResumeEntry {
    pub client_id: Arc<str>,
    pub session_id: Arc<str>,
    pub name: Option<String>,
    pub role: Role,
    /// The connection currently holding the identity, or `None` while dropped.
    pub live: Option<ConnKey>,
    /// When a dropped identity lapses.
    pub expires: Option<Instant>,
    /// Authenticated mode: who the identity was issued to ([`crate::auth::jwt::Grant::identity`]);
    /// only a token of the same identity may resume it.
    pub identity: Option<String>,
}

#[derive(Default)]
pub struct ResumeRegistry {
    entries: HashMap<String, ResumeEntry>,
}

/// A new unguessable token: 128 random bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl ResumeRegistry {
    pub fn issue(&mut self, entry: ResumeEntry) -> String {
        let token = new_token();
        self.entries.insert(token.clone(), entry);
        token
    }

    /// The entry for `token` if it may still be used to join `session_id` now.
    pub fn claimable(&self, token: &str, session_id: &str, now: Instant) -> Option<&ResumeEntry> {
        self.entries.get(token).filter(|e| {
            &*e.session_id == session_id && (e.live.is_some() || e.expires.is_some_and(|t| t > now))
        })
    }

    pub fn contains(&self, token: &str) -> bool {
        self.entries.contains_key(token)
    }

    pub fn get(&self, token: &str) -> Option<&ResumeEntry> {
        self.entries.get(token)
    }

    /// Takes the entry of `client_id` in `session_id` (resumed on another instance).
    pub fn take_client(&mut self, session_id: &str, client_id: &str) -> Option<ResumeEntry> {
        let token = self
            .entries
            .iter()
            .find(|(_, e)| &*e.session_id == session_id && &*e.client_id == client_id)
            .map(|(t, _)| t.clone())?;
        self.entries.remove(&token)
    }

    /// Tokens of connected members (refreshed in the cluster while they stay).
    pub fn live_tokens(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.live.is_some())
            .map(|(t, _)| t.as_str())
    }

    pub fn revoke(&mut self, token: &str) -> Option<ResumeEntry> {
        self.entries.remove(token)
    }

    /// Marks the identity behind `token` as dropped, claimable until `expires`.
    pub fn mark_dropped(&mut self, token: &str, expires: Instant) {
        if let Some(e) = self.entries.get_mut(token) {
            e.live = None;
            e.expires = Some(expires);
        }
    }

    /// Records a role change, so a resume restores the role held at the drop.
    pub fn set_role(&mut self, token: &str, role: Role) {
        if let Some(e) = self.entries.get_mut(token) {
            e.role = role;
        }
    }

    /// Removes and returns every dropped entry whose window has closed.
    pub fn take_expired(&mut self, now: Instant) -> Vec<ResumeEntry> {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.live.is_none() && e.expires.is_some_and(|t| t <= now))
            .map(|(token, _)| token.clone())
            .collect();
        expired
            .iter()
            .filter_map(|t| self.entries.remove(t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(live: Option<ConnKey>) -> ResumeEntry {
        ResumeEntry {
            client_id: "c1".into(),
            session_id: "band".into(),
            name: None,
            role: Role::Leader,
            live,
            expires: None,
            identity: None,
        }
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn a_dropped_identity_is_claimable_only_within_its_window_and_session() {
        let mut reg = ResumeRegistry::default();
        let token = reg.issue(entry(Some(1)));
        let now = Instant::now();
        assert!(
            reg.claimable(&token, "band", now).is_some(),
            "live identities can be taken over"
        );
        assert!(reg.claimable(&token, "other", now).is_none());
        reg.mark_dropped(&token, now + Duration::from_secs(30));
        assert!(reg.claimable(&token, "band", now).is_some());
        assert!(reg
            .claimable(&token, "band", now + Duration::from_secs(31))
            .is_none());
        assert!(reg.claimable("guess", "band", now).is_none());
    }

    #[test]
    fn expired_entries_are_taken_once() {
        let mut reg = ResumeRegistry::default();
        let token = reg.issue(entry(Some(1)));
        let keep = reg.issue(entry(Some(2)));
        let now = Instant::now();
        reg.mark_dropped(&token, now);
        assert_eq!(reg.take_expired(now).len(), 1);
        assert!(reg.take_expired(now).is_empty());
        assert!(reg.claimable(&keep, "band", now).is_some());
    }
}
