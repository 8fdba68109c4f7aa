//! The authenticated mode (`JWT_SECRET` / `JWT_PUBLIC_KEY`): every WebSocket join, SSE
//! stream and session read needs a token whose claims allow that session; a follower
//! token never takes the leader seat; resume tokens stay with the identity they were
//! issued to. Tokens are minted the way `bandsync-cli mint-token` does.

mod common;
mod support;

use bandsync_client::protocol::{ErrorCode, JoinSession, Role};
use bandsync_client::token::{mint, SigningKey, TokenSpec};
use bandsync_client::{ClientError, Credentials, WsClient, DEFAULT_REQUEST_TIMEOUT};
use common::TestServer;
use serde_json::Value;
use std::time::Duration;
use support::*;

const SECRET: &str = "a test secret of at least 32 bytes!";

async fn jwt_server() -> TestServer {
    TestServer::start_with(|c| c.jwt_secret = Some(SECRET.into())).await
}

fn token(session: &str, leader: bool, sub: Option<&str>) -> String {
    let spec = TokenSpec {
        session: session.into(),
        leader,
        ttl: Duration::from_secs(300),
        sub: sub.map(Into::into),
    };
    mint(&SigningKey::Secret(SECRET.into()), &spec).unwrap()
}

/// A join that must be refused: the error's code and message.
async fn refused(client: &mut WsClient, join: JoinSession) -> (ErrorCode, String) {
    match client.join_with(join, DEFAULT_REQUEST_TIMEOUT).await {
        Err(ClientError::Server { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn join(session: &str, role: Option<Role>, token: Option<&str>) -> JoinSession {
    JoinSession {
        session_id: session.into(),
        role,
        token: token.map(Into::into),
        ..Default::default()
    }
}

#[tokio::test]
async fn joining_needs_a_valid_token_for_the_session() {
    let server = jwt_server().await;
    let mut client = connect(&server).await;
    let (code, message) = refused(&mut client, join("band", None, None)).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("requires a token"), "{message}");

    let other_secret = mint(
        &SigningKey::Secret("another secret, also 32 bytes long".into()),
        &TokenSpec {
            session: "band".into(),
            leader: true,
            ttl: Duration::from_secs(60),
            sub: None,
        },
    )
    .unwrap();
    let (code, message) = refused(&mut client, join("band", None, Some(&other_secret))).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("signature"), "{message}");

    let elsewhere = token("other-band", true, None);
    let (code, message) = refused(&mut client, join("band", None, Some(&elsewhere))).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("does not grant this session"), "{message}");

    // The socket stayed open through the refusals.
    let snapshot = client
        .join_with(
            join("band", Some(Role::Leader), Some(&token("band", true, None))),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(snapshot.role, Role::Leader);
    let any = token("*", false, None);
    let mut other = connect(&server).await;
    let snapshot = other
        .join_with(join("any/session", None, Some(&any)), WAIT)
        .await
        .unwrap();
    assert_eq!(snapshot.session_id, "any/session");
    // /metrics itself needs a server-wide token in this mode.
    let text = http()
        .get(server.http_url("/metrics"))
        .bearer_auth(token("*", false, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = "bandsync_auth_failures_total{reason=\"missing\",transport=\"ws\"}";
    assert_eq!(metric_value(&text, sample), Some(1.0), "{text}");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    // Leeway 0, and a token that expired two seconds ago.
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.jwt_leeway_secs = 0;
    })
    .await;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let exp = jsonwebtoken::get_current_timestamp() - 2;
    let claims = serde_json::json!({"session": "band", "role": "leader", "exp": exp});
    let expired = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let mut client = connect(&server).await;
    let (code, message) = refused(&mut client, join("band", None, Some(&expired))).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("expired"), "{message}");
    let response = http()
        .get(server.http_url(&format!("/sse/band?token={expired}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_follower_token_never_takes_the_leader_seat() {
    let server = jwt_server().await;
    let follower = token("band", false, None);
    let mut client = connect(&server).await;
    let (code, message) = refused(
        &mut client,
        join("band", Some(Role::Leader), Some(&follower)),
    )
    .await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("follower role only"), "{message}");
    // As a follower it may join, and the seat is vacant, yet set_role leader is refused.
    let snapshot = client
        .join_with(join("band", None, Some(&follower)), WAIT)
        .await
        .unwrap();
    assert_eq!((snapshot.role, snapshot.leader_id), (Role::Follower, None));
    assert_eq!(
        expect_error(&mut client, set_role(Role::Leader)).await,
        ErrorCode::Unauthorized
    );
    assert_eq!(
        expect_error(&mut client, tempo(130.0)).await,
        ErrorCode::NotLeader
    );
    assert_eq!(sync(&mut client).await.leader_id, None);
}

#[tokio::test]
async fn a_token_on_the_websocket_url_serves_every_join_on_that_socket() {
    let server = jwt_server().await;
    let url = format!(
        "{}{}",
        server.ws_url(),
        Credentials::token(token("band", true, None)).query()
    );
    let mut client = WsClient::connect(&url).await.unwrap();
    let snapshot = client.join("band", Some(Role::Leader), None).await.unwrap();
    assert_eq!(snapshot.role, Role::Leader);
    // It does not open other sessions; a join's own token overrides it.
    match client.join("other", None, None).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("expected UNAUTHORIZED, got {other:?}"),
    }
    let snapshot = client
        .join_as(
            "other",
            None,
            None,
            &Credentials::token(token("other", false, None)),
        )
        .await
        .unwrap();
    assert_eq!(snapshot.session_id, "other");

    // A URL token that does not verify refuses the upgrade itself.
    let bad = format!("{}?token=not.a.jwt", server.ws_url());
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
        }
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn sse_needs_a_token_in_the_url_or_the_authorization_header() {
    let server = jwt_server().await;
    let response = http()
        .get(server.http_url("/sse/band"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    assert_eq!(body["success"], false, "{body}");

    let follower = token("band", false, None);
    let wrong = token("elsewhere", true, None);
    let url = server.http_url(&format!("/sse/band?token={wrong}"));
    assert_eq!(http().get(url).send().await.unwrap().status(), 401);
    let url = server.http_url(&format!("/sse/band?token={follower}"));
    assert_eq!(http().get(url).send().await.unwrap().status(), 200);
    let response = http()
        .get(server.http_url("/sse/band"))
        .bearer_auth(&follower)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The library client presents it the same way.
    let mut sse = bandsync_client::SseClient::connect_with(
        &server.base_url(),
        "band",
        None,
        &Credentials::token(follower),
    )
    .await
    .unwrap();
    assert_eq!(sse_next(&mut sse).await.frame.event.type_name(), "snapshot");
}

#[tokio::test]
async fn session_reads_need_a_token_and_metrics_a_server_wide_one() {
    let server = jwt_server().await;
    let (_leader, _) = {
        let mut client = connect(&server).await;
        let snapshot = client
            .join_with(
                join("band", Some(Role::Leader), Some(&token("band", true, None))),
                WAIT,
            )
            .await
            .unwrap();
        (client, snapshot)
    };
    let get = |path: &str, token: Option<String>| {
        let mut request = http().get(server.http_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/sessions/band", None).await, 401);
    assert_eq!(
        get("/sessions/band", Some(token("other", true, None))).await,
        401
    );
    assert_eq!(
        get("/sessions/band", Some(token("band", false, None))).await,
        200
    );
    let by_query = format!("/sessions/band?token={}", token("*", false, None));
    assert_eq!(get(&by_query, None).await, 200);
    assert_eq!(get("/metrics", None).await, 401);
    assert_eq!(get("/metrics", Some(token("band", true, None))).await, 401);
    assert_eq!(get("/metrics", Some(token("*", false, None))).await, 200);
    assert_eq!(get("/health", None).await, 200);
}

#[tokio::test]
async fn resume_tokens_stay_with_their_identity() {
    let server = jwt_server().await;
    let ada_leads = token("band", true, Some("ada"));
    let mut ada = connect(&server).await;
    let first = ada
        .join_with(join("band", Some(Role::Leader), Some(&ada_leads)), WAIT)
        .await
        .unwrap();
    assert_eq!(first.role, Role::Leader);
    drop(ada); // dropped, not left: the identity and the seat are held for recovery

    let resume = |token: &str| JoinSession {
        session_id: "band".into(),
        resume_token: Some(first.resume_token.clone()),
        token: Some(token.into()),
        ..Default::default()
    };
    // Someone else's token (another sub) cannot take Ada's identity and seat.
    let mut bob = connect(&server).await;
    let (code, message) = refused(&mut bob, resume(&token("band", true, Some("bob")))).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("another identity"), "{message}");
    // Ada with a follower token gets her identity back, but not more than it allows.
    let mut ada = connect(&server).await;
    let again = ada
        .join_with(resume(&token("band", false, Some("ada"))), WAIT)
        .await
        .unwrap();
    assert!(again.resumed);
    assert_eq!(again.client_id, first.client_id);
    assert_eq!((again.role, again.leader_id), (Role::Follower, None));
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_their_tokens() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    for (public, private) in [
        ("rs256.pub.pem", "rs256.key.pem"),
        ("es256.pub.pem", "es256.key.pem"),
    ] {
        let public_path = format!("{keys}/{public}");
        let server = TestServer::start_with(|c| c.jwt_public_key = Some(public_path)).await;
        let spec = TokenSpec {
            session: "band".into(),
            leader: true,
            ttl: Duration::from_secs(60),
            sub: None,
        };
        let pem = std::fs::read(format!("{keys}/{private}")).unwrap();
        let signed = mint(&SigningKey::Pem(pem), &spec).unwrap();
        let mut client = connect(&server).await;
        let snapshot = client
            .join_with(join("band", Some(Role::Leader), Some(&signed)), WAIT)
            .await
            .unwrap();
        assert_eq!(snapshot.role, Role::Leader, "{public}");
        // An HS256 token means nothing to a server that holds only a public key.
        let (code, _) = refused(
            &mut connect(&server).await,
            join("band", None, Some(&token("band", true, None))),
        )
        .await;
        assert_eq!(code, ErrorCode::Unauthorized, "{public}");
    }
}

#[tokio::test]
async fn the_open_mode_ignores_tokens() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let snapshot = client
        .join_with(
            join("band", Some(Role::Leader), Some("not.even.a.jwt")),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(snapshot.role, Role::Leader);
}

/// Wrong tokens are guesses, like wrong share tokens: after AUTH_FAILURE_LIMIT of them from
/// one address (over `join_session`, `/sse` and the `/ws` URL alike), that address is
/// refused without its token being checked, even with a valid one, for AUTH_BAN_MS; a
/// missing token or one for another session does not count.
#[tokio::test]
async fn bad_tokens_from_one_address_get_it_banned_on_every_transport() {
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.limits.auth_failure_limit = 3;
        c.limits.auth_ban_ms = 60_000;
    })
    .await;
    let forged = format!("{}x", token("band", false, None));
    let mut client = connect(&server).await;
    // Not guesses: nothing counted.
    for _ in 0..4 {
        refused(&mut client, join("band", None, None)).await;
        let other = token("other", false, None);
        refused(&mut client, join("band", None, Some(&other))).await;
    }
    assert_eq!(
        client
            .join_with(
                join("band", None, Some(&token("band", false, None))),
                DEFAULT_REQUEST_TIMEOUT
            )
            .await
            .map(|s| s.session_id)
            .ok()
            .as_deref(),
        Some("band")
    );
    // Three guesses: a forged join, a forged SSE token, a forged /ws URL token.
    let mut guesser = connect(&server).await;
    let (_, message) = refused(&mut guesser, join("band", None, Some(&forged))).await;
    assert!(message.contains("signature"), "{message}");
    let sse = reqwest::get(server.http_url(&format!("/sse/band?token={forged}")))
        .await
        .unwrap();
    assert_eq!(sse.status(), 401);
    let ws_url = format!("{}?token={forged}", server.ws_url());
    assert!(
        WsClient::connect(&ws_url).await.is_err(),
        "refused with 401"
    );
    // Banned now, even with a valid token.
    let valid = token("band", false, None);
    let (code, message) = refused(&mut guesser, join("band", None, Some(&valid))).await;
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(
        message.contains("too many failed authentications"),
        "{message}"
    );
    let sse = reqwest::get(server.http_url(&format!("/sse/band?token={valid}")))
        .await
        .unwrap();
    assert_eq!(sse.status(), 429);
    assert!(sse.headers().contains_key("retry-after"));
    let metrics = reqwest::Client::new()
        .get(server.http_url("/metrics"))
        .bearer_auth(token("*", false, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bandsync_auth_bans_total 1"), "{metrics}");
    assert!(
        metrics
            .contains("bandsync_auth_failures_total{reason=\"bad_signature\",transport=\"sse\"} 1"),
        "{metrics}"
    );
}
