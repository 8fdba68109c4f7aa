//! What verifying a session token costs: a `join_session` carrying `token` is verified on
//! the engine thread, so this is time the engine spends per authenticated join.
//! `cargo bench --bench jwt`

use bandsync::auth::jwt::Verifier;
use bandsync_client::token::{mint, SigningKey, TokenSpec};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

const SECRET: &str = "a benchmark secret of 32+ bytes!";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn verify(c: &mut Criterion) {
    let spec = TokenSpec {
        session: "band".into(),
        leader: true,
        ttl: Duration::from_secs(3600),
        sub: Some("ada".into()),
    };
    let pem = |name: &str| std::fs::read(format!("{KEYS}/{name}")).unwrap();
    let cases = [
        (
            "hs256",
            Verifier::new(Some(SECRET), None, 30),
            SigningKey::Secret(SECRET.into()),
        ),
        (
            "rs256",
            Verifier::new(None, Some(&format!("{KEYS}/rs256.pub.pem")), 30),
            SigningKey::Pem(pem("rs256.key.pem")),
        ),
        (
            "es256",
            Verifier::new(None, Some(&format!("{KEYS}/es256.pub.pem")), 30),
            SigningKey::Pem(pem("es256.key.pem")),
        ),
    ];
    for (name, verifier, key) in cases {
        let verifier = verifier.unwrap().unwrap();
        let token = mint(&key, &spec).unwrap();
        assert!(verifier.verify(&token).is_ok());
        c.bench_function(&format!("jwt/verify/{name}"), |b| {
            b.iter(|| verifier.verify(black_box(&token)))
        });
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
