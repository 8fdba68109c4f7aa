//! The engine's access decisions: whether a `join_session` may proceed (token, leader seat,
//! resume identity, share token), and whether a member may take the leader seat later.
//!
//! Every check runs before the join changes anything, so a refused join leaves the
//! connection where it was. Refusals go through [`auth::deny`] (counted, one place).

use super::inbound::Verified;
use super::resume::ResumeEntry;
use super::{ConnKey, Engine};
use crate::auth::jwt::{now_secs, Grant};
use crate::auth::{self, AuthError};
use bandsync_protocol::{JoinSession, ProtocolError, Role};
use std::time::Instant;

/// What a membership or SSE stream was admitted with.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Authenticated mode: the verified token (`None` in the open mode). Boxed: it is
    /// 56 bytes, in every connection's record, and most servers run in the open mode.
    pub grant: Option<Box<Grant>>,
    /// Whether this receiver gets the session's share data (metadata, audio, share end):
    /// it presented the share token, or, in the authenticated mode, a token for the session.
    pub share_ok: bool,
}

impl Access {
    /// The identity a resume must present again (the token's subject), if any.
    pub fn identity(&self) -> Option<String> {
        self.grant.as_deref().map(Grant::identity)
    }

    /// Whether the grant (if any) lets its holder lead now.
    pub fn may_lead(&self) -> Result<(), AuthError> {
        match &self.grant {
            None => Ok(()),
            Some(grant) if !grant.may_lead() => Err(AuthError::FollowerOnly),
            Some(grant) => grant.unexpired(now_secs()),
        }
    }
}

/// Whether a resume entry may be claimed by a connection holding `grant`.
pub(super) fn resumable_by(entry: &ResumeEntry, grant: Option<&Grant>) -> bool {
    entry.identity.as_deref() == grant.map(Grant::identity).as_deref()
}

impl Engine {
    /// Decides a join before it happens. `verified`: the join's own token as the connection
    /// task verified it (verified here only when that did not happen).
    pub(super) fn admit_join(
        &self,
        key: ConnKey,
        join: &JoinSession,
        verified: Option<Verified>,
    ) -> Result<Access, ProtocolError> {
        let client_ip = self.conns.get(&key).map(|c| c.client_ip);
        let deny = |e: AuthError| {
            // A wrong credential counts toward the address's ban, as on every transport.
            if let (true, Some(ip)) = (auth::bans::is_guess(&e), client_ip) {
                self.auth_failures.record_failure(ip, "ws");
            }
            auth::deny(&self.metrics, "ws", &e)
        };
        let presents_credentials = join.token.is_some() || join.share_token.is_some();
        if let (true, Some(ip)) = (presents_credentials, client_ip) {
            if let Err(retry) = self.auth_failures.check(ip) {
                return Err(ProtocolError::new(
                    bandsync_protocol::ErrorCode::Unauthorized,
                    format!(
                        "too many failed authentications from this address; retry in {} s",
                        retry.secs()
                    ),
                ));
            }
        }
        let grant = if self.auth.authenticated() {
            let url_grant = self.conns.get(&key).and_then(|c| c.url_grant.as_ref());
            let admits = |grant: Grant| {
                grant
                    .admits(&join.session_id, now_secs())
                    .map(|()| Some(grant))
            };
            let grant = match (join.token.as_deref(), url_grant, verified) {
                (Some(_), _, Some(verified)) => verified.and_then(admits),
                (Some(token), _, None) => self.auth.admit(Some(token), &join.session_id),
                (None, Some(grant), _) => admits(Grant::clone(grant)),
                (None, None, _) => Err(AuthError::Missing),
            };
            grant.map_err(deny)?
        } else {
            None
        };
        if join.role == Some(Role::Leader) && grant.as_ref().is_some_and(|g| !g.may_lead()) {
            return Err(deny(AuthError::FollowerOnly));
        }
        if let Some(token) = join.resume_token.as_deref() {
            let claimable = self
                .resume
                .claimable(token, &join.session_id, Instant::now());
            if claimable.is_some_and(|entry| !resumable_by(entry, grant.as_ref())) {
                return Err(deny(AuthError::ResumeIdentity));
            }
        }
        let share_ok = match join.share_token.as_deref() {
            Some(token) => {
                self.auth.share_token_ok(token).map_err(deny)?;
                true
            }
            None => grant.is_some(),
        };
        let grant = grant.map(Box::new);
        Ok(Access { grant, share_ok })
    }

    /// `set_role leader`: refused for a follower token (or one that has expired since).
    pub(super) fn check_may_lead(&self, key: ConnKey) -> Result<(), ProtocolError> {
        match self.conns.get(&key) {
            Some(conn) => conn
                .access
                .may_lead()
                .map_err(|e| auth::deny(&self.metrics, "ws", &e)),
            None => Ok(()),
        }
    }

    /// Whether connection `key` receives share data.
    pub(super) fn share_receiver(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_some_and(|c| c.access.share_ok)
    }
}
