//! Claim checks of [`super::Verifier`]: tokens made here with `jsonwebtoken` and the test
//! keys in `tests/keys/`.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const RS_PRIVATE: &str = include_str!("../../tests/keys/rs256.key.pem");
const RS_PUBLIC: &str = include_str!("../../tests/keys/rs256.pub.pem");
const ES_PRIVATE: &str = include_str!("../../tests/keys/es256.key.pem");
const ES_PUBLIC: &str = include_str!("../../tests/keys/es256.pub.pem");

fn claims(session: &str, role: GrantedRole, exp_in: i64) -> Claims {
    Claims {
        session: session.into(),
        role,
        exp: (now_secs() as i64 + exp_in) as u64,
        sub: None,
    }
}

fn hs(claims: &Claims) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn hs_verifier() -> Verifier {
    Verifier::new(Some(SECRET), None, 0).unwrap().unwrap()
}

#[test]
fn a_valid_token_grants_its_session_and_role() {
    let grant = hs_verifier()
        .verify(&hs(&claims("band", GrantedRole::Follower, 60)))
        .unwrap();
    assert_eq!(grant.scope, Scope::One("band".into()));
    assert!(!grant.may_lead());
    assert_eq!(grant.admits("band", now_secs()), Ok(()));
    assert_eq!(
        grant.admits("other", now_secs()),
        Err(AuthError::WrongSession)
    );
}

#[test]
fn star_grants_every_session() {
    let grant = hs_verifier()
        .verify(&hs(&claims("*", GrantedRole::Leader, 60)))
        .unwrap();
    assert!(grant.may_lead());
    assert_eq!(grant.admits("any/session", now_secs()), Ok(()));
}

#[test]
fn expired_tokens_are_refused_beyond_the_leeway() {
    let token = hs(&claims("band", GrantedRole::Leader, -10));
    assert_eq!(hs_verifier().verify(&token), Err(AuthError::Expired));
    let lenient = Verifier::new(Some(SECRET), None, 30).unwrap().unwrap();
    let grant = lenient.verify(&token).unwrap();
    assert_eq!(grant.admits("band", now_secs()), Ok(()));
    // A grant kept on a socket expires there too.
    assert_eq!(grant.unexpired(now_secs() + 60), Err(AuthError::Expired));
}

#[test]
fn tampered_and_foreign_tokens_are_refused() {
    let token = hs(&claims("band", GrantedRole::Follower, 60));
    let (head_payload, _) = token.rsplit_once('.').unwrap();
    let promoted = hs(&claims("band", GrantedRole::Leader, 60));
    let (_, other_signature) = promoted.rsplit_once('.').unwrap();
    let tampered = format!("{head_payload}.{other_signature}");
    assert_eq!(
        hs_verifier().verify(&tampered),
        Err(AuthError::BadSignature)
    );
    let other = Verifier::new(Some(&SECRET.replace('0', "1")), None, 0)
        .unwrap()
        .unwrap();
    assert_eq!(other.verify(&token), Err(AuthError::BadSignature));
    assert_eq!(hs_verifier().verify("not.a.jwt"), Err(AuthError::Malformed));
    assert_eq!(hs_verifier().verify(""), Err(AuthError::Malformed));
}

#[test]
fn the_algorithm_must_be_one_the_server_has_a_key_for() {
    // An RS256 token against an HS256-only server, and an HS256 token against an
    // RS256-only server (the classic confusion: the public key used as an HMAC secret).
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims("band", GrantedRole::Leader, 60),
        &EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(hs_verifier().verify(&rs), Err(AuthError::WrongAlgorithm));
    let rs_only = Verifier::new(None, Some(RS_PUBLIC), 0).unwrap().unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("band", GrantedRole::Leader, 60),
        &EncodingKey::from_secret(RS_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(rs_only.verify(&confused), Err(AuthError::WrongAlgorithm));
    assert!(rs_only.verify(&rs).is_ok());
    // `alg: none` is never accepted.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        rs.split('.').nth(1).unwrap()
    );
    assert!(rs_only.verify(&none).is_err());
}

#[test]
fn es256_public_keys_verify_es256_tokens() {
    let es_only = Verifier::new(None, Some(ES_PUBLIC), 0).unwrap().unwrap();
    let token = encode(
        &Header::new(Algorithm::ES256),
        &claims("band", GrantedRole::Follower, 60),
        &EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(es_only.verify(&token).is_ok());
    assert_eq!(
        es_only.verify(&hs(&claims("band", GrantedRole::Leader, 60))),
        Err(AuthError::WrongAlgorithm)
    );
}

#[test]
fn claims_are_checked() {
    let v = hs_verifier();
    let bad_session = hs(&claims("no spaces", GrantedRole::Leader, 60));
    assert!(matches!(
        v.verify(&bad_session),
        Err(AuthError::BadClaims(_))
    ));
    let mut long_sub = claims("band", GrantedRole::Leader, 60);
    long_sub.sub = Some("x".repeat(MAX_SUB_BYTES + 1));
    assert!(matches!(
        v.verify(&hs(&long_sub)),
        Err(AuthError::BadClaims(_))
    ));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let header = Header::new(Algorithm::HS256);
    let no_exp = encode(
        &header,
        &serde_json::json!({"session": "band", "role": "leader"}),
        &key,
    );
    assert!(matches!(
        v.verify(&no_exp.unwrap()),
        Err(AuthError::BadClaims(_))
    ));
    let exp = now_secs() + 60;
    let bad_role = serde_json::json!({"session": "band", "role": "listener", "exp": exp});
    let bad_role = encode(&header, &bad_role, &key).unwrap();
    assert!(matches!(v.verify(&bad_role), Err(AuthError::BadClaims(_))));
}

#[test]
fn identity_is_the_subject_or_the_claims() {
    let v = hs_verifier();
    let mut with_sub = claims("band", GrantedRole::Leader, 60);
    with_sub.sub = Some("ada".into());
    let a = v.verify(&hs(&with_sub)).unwrap();
    with_sub.role = GrantedRole::Follower;
    let b = v.verify(&hs(&with_sub)).unwrap();
    assert_eq!(a.identity(), b.identity());
    let leader = v
        .verify(&hs(&claims("band", GrantedRole::Leader, 60)))
        .unwrap();
    let follower = v
        .verify(&hs(&claims("band", GrantedRole::Follower, 60)))
        .unwrap();
    assert_ne!(leader.identity(), follower.identity());
}

#[test]
fn keys_are_checked_at_startup() {
    assert!(matches!(
        Verifier::new(Some("short"), None, 0),
        Err(KeyError::ShortSecret { .. })
    ));
    assert!(matches!(
        Verifier::new(None, Some("/nonexistent/key.pem"), 0),
        Err(KeyError::Unreadable { .. })
    ));
    assert!(matches!(
        Verifier::new(
            None,
            Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            0
        ),
        Err(KeyError::NotAPublicKey)
    ));
    assert!(Verifier::new(None, None, 0).unwrap().is_none());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/es256.pub.pem");
    assert!(Verifier::new(None, Some(path), 0).unwrap().is_some());
}
