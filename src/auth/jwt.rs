//! The authenticated mode's tokens: JWTs signed with `JWT_SECRET` (HS256) or the private
//! half of `JWT_PUBLIC_KEY` (RS256 or ES256), verified with `jsonwebtoken`.
//!
//! Claims: `session` (one session id, or `"*"` for all), `role` (`leader` or `follower`:
//! whether the holder may take the leader seat), `exp` (required, seconds since the epoch)
//! and an optional `sub` (who the holder is; resume tokens are bound to it).

use super::AuthError;
use bandsync_protocol::validate;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest `sub` accepted, in bytes: it names a person or a device, and is kept per member.
pub const MAX_SUB_BYTES: usize = 128;

/// What a token may carry. Unknown claims (`iat`, `iss`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub session: String,
    pub role: GrantedRole,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// The most a token lets its holder be. A leader token may also follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantedRole {
    Leader,
    Follower,
}

/// Which sessions a token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Any,
    One(Arc<str>),
}

/// A verified token: what its holder may do, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub role: GrantedRole,
    pub sub: Option<Arc<str>>,
    /// Seconds since the epoch, leeway not included.
    pub exp: u64,
    leeway: u64,
}

impl Grant {
    pub fn may_lead(&self) -> bool {
        self.role == GrantedRole::Leader
    }

    /// Whether the grant opens `session_id` at `now` (seconds since the epoch). A grant
    /// taken from a `/ws` URL is checked again at every join, so it expires on the socket.
    pub fn admits(&self, session_id: &str, now: u64) -> Result<(), AuthError> {
        self.unexpired(now)?;
        match &self.scope {
            Scope::Any => Ok(()),
            Scope::One(id) if &**id == session_id => Ok(()),
            Scope::One(_) => Err(AuthError::WrongSession),
        }
    }

    /// Whether `exp` (plus the leeway) is still ahead of `now`.
    pub fn unexpired(&self, now: u64) -> Result<(), AuthError> {
        if self.exp.saturating_add(self.leeway) < now {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// Who holds the grant, for binding resume tokens: `sub`, or, for tokens without one,
    /// the claims themselves (so a follower token never resumes a leader identity).
    pub fn identity(&self) -> String {
        match &self.sub {
            Some(sub) => format!("sub:{sub}"),
            None => {
                let scope = match &self.scope {
                    Scope::Any => "*",
                    Scope::One(id) => id,
                };
                format!("claims:{scope}|{:?}", self.role)
            }
        }
    }
}

/// The keys tokens are checked against; one per accepted algorithm.
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<_> = self.keys.iter().map(|(a, _)| a).collect();
        f.debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// A key that cannot be used, said at startup rather than at the first token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_SECRET must be at least {min} bytes (it is {len}); e.g. `openssl rand -hex 32`")]
    ShortSecret { len: usize, min: usize },
    #[error("JWT_PUBLIC_KEY: cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT_PUBLIC_KEY is neither an RSA nor a P-256 EC public key in PEM")]
    NotAPublicKey,
}

/// HS256 secrets shorter than the hash output are guessable offline from one token.
pub const MIN_SECRET_BYTES: usize = 32;

impl Verifier {
    /// `public_key`: inline PEM (starts with `-----BEGIN`) or the path of a PEM file.
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&str>,
        leeway: u64,
    ) -> Result<Option<Self>, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeyError::ShortSecret {
                    len: secret.len(),
                    min: MIN_SECRET_BYTES,
                });
            }
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ));
        }
        if let Some(key) = public_key.filter(|k| !k.trim().is_empty()) {
            keys.push(public_key_of(key)?);
        }
        Ok((!keys.is_empty()).then_some(Verifier { keys, leeway }))
    }

    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Checks the signature, the algorithm and the claims, and returns the grant. Does not
    /// check which session it is used for: see [`Grant::admits`].
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        validate::credential("token", token).map_err(|_| AuthError::Malformed)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let Some((alg, key)) = self.keys.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(AuthError::WrongAlgorithm);
        };
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
                ErrorKind::ImmatureSignature => AuthError::BadClaims("not valid yet (nbf)".into()),
                ErrorKind::MissingRequiredClaim(c) => AuthError::BadClaims(format!("no `{c}`")),
                ErrorKind::Json(_) => AuthError::BadClaims(
                    "`session` (an id or \"*\"), `role` (leader|follower) and `exp` are required"
                        .into(),
                ),
                _ => AuthError::Malformed,
            })?
            .claims;
        let scope = if claims.session == "*" {
            Scope::Any
        } else {
            validate::session_id(&claims.session)
                .map_err(|e| AuthError::BadClaims(format!("`session`: {}", e.message)))?;
            Scope::One(claims.session.into())
        };
        if claims
            .sub
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > MAX_SUB_BYTES)
        {
            return Err(AuthError::BadClaims(format!(
                "`sub` must be 1-{MAX_SUB_BYTES} bytes"
            )));
        }
        Ok(Grant {
            scope,
            role: claims.role,
            sub: claims.sub.map(Into::into),
            exp: claims.exp,
            leeway: self.leeway,
        })
    }
}

fn public_key_of(setting: &str) -> Result<(Algorithm, DecodingKey), KeyError> {
    let pem = if setting.trim_start().starts_with("-----BEGIN") {
        setting.as_bytes().to_vec()
    } else {
        std::fs::read(setting.trim()).map_err(|source| KeyError::Unreadable {
            path: setting.trim().to_owned(),
            source,
        })?
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(KeyError::NotAPublicKey)
}

/// Seconds since the epoch, as `exp` counts them.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
