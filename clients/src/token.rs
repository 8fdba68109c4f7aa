//! Minting session tokens for the authenticated mode (`bandsync-cli mint-token`, tests):
//! the claims the server checks, signed with HS256 (a shared secret) or with an RS256 /
//! ES256 private key whose public half the server holds.

use crate::error::{ClientError, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which sessions, which seat, until when, for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// One session id, or `*` for every session.
    pub session: String,
    /// May the holder take the leader seat?
    pub leader: bool,
    /// From now until `exp`.
    pub ttl: Duration,
    /// Who holds it; resume tokens are bound to it.
    pub sub: Option<String>,
}

/// How to sign.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// `JWT_SECRET`.
    Secret(String),
    /// A PEM private key: RSA (RS256) or P-256 EC in PKCS#8 (ES256).
    Pem(Vec<u8>),
}

#[derive(Serialize)]
struct Claims<'a> {
    session: &'a str,
    role: &'static str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

/// Signs a token for `spec`.
pub fn mint(key: &SigningKey, spec: &TokenSpec) -> Result<String> {
    let (algorithm, key) = match key {
        SigningKey::Secret(secret) => (
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
        ),
        SigningKey::Pem(pem) => {
            if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
                (Algorithm::RS256, key)
            } else if let Ok(key) = EncodingKey::from_ec_pem(pem) {
                (Algorithm::ES256, key)
            } else {
                return Err(ClientError::Token(
                    "the key is neither an RSA nor a PKCS#8 P-256 EC private key in PEM".into(),
                ));
            }
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        session: &spec.session,
        role: if spec.leader { "leader" } else { "follower" },
        exp: now.saturating_add(spec.ttl.as_secs()),
        iat: now,
        sub: spec.sub.as_deref(),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)
        .map_err(|e| ClientError::Token(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn claims_of(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn minted_claims_say_session_role_expiry_and_subject() {
        let spec = TokenSpec {
            session: "*".into(),
            leader: false,
            ttl: Duration::from_secs(60),
            sub: Some("ada".into()),
        };
        let token = mint(&SigningKey::Secret("s".repeat(32)), &spec).unwrap();
        let claims = claims_of(&token);
        assert_eq!(claims["session"], "*");
        assert_eq!(claims["role"], "follower");
        assert_eq!(claims["sub"], "ada");
        let exp = claims["exp"].as_u64().unwrap();
        assert_eq!(exp - claims["iat"].as_u64().unwrap(), 60);
    }

    #[test]
    fn pem_keys_pick_their_algorithm() {
        let spec = TokenSpec {
            session: "band".into(),
            leader: true,
            ttl: Duration::from_secs(60),
            sub: None,
        };
        let header_alg = |pem: &str| {
            let token = mint(&SigningKey::Pem(pem.as_bytes().to_vec()), &spec).unwrap();
            jsonwebtoken::decode_header(&token).unwrap().alg
        };
        let rs = include_str!("../../tests/keys/rs256.key.pem");
        let es = include_str!("../../tests/keys/es256.key.pem");
        assert_eq!(header_alg(rs), Algorithm::RS256);
        assert_eq!(header_alg(es), Algorithm::ES256);
        let err = mint(&SigningKey::Pem(b"not a key".to_vec()), &spec).unwrap_err();
        assert!(matches!(err, ClientError::Token(_)));
    }
}
