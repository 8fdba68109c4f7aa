//! `POST /webhooks/github` over real sockets: signatures (HMAC-SHA256 with
//! `GITHUB_WEBHOOK_SECRET`), ping, de-duplication by `X-GitHub-Delivery`, the body cap, and
//! the flow event -> mapper -> render -> broadcast to the repository's listeners.

mod common;
mod repo_support;

use common::TestServer;
use hmac::{Hmac, Mac};
use repo_support::{channels, RepoListener};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;

const SECRET: &str = "It's a Secret to Everybody";
const PUSH: &str = include_str!("fixtures/github/push.json");
const PING: &str = include_str!("fixtures/github/ping.json");

/// `sha256=<hex>` of `body` under `secret`, computed here independently of the server.
fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

async fn deliver(
    server: &TestServer,
    event: &str,
    delivery: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(server.http_url("/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn full_name(payload: &str) -> String {
    let v: Value = serde_json::from_str(payload).unwrap();
    v["repository"]["full_name"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn signed_deliveries_play_once_and_bad_ones_are_refused() {
    let server = TestServer::start_with(|c| {
        c.repo.github_webhook_secret = Some(SECRET.into());
    })
    .await;
    let repo = full_name(PUSH);
    let mut listener = RepoListener::open(&server.base_url(), &repo.to_lowercase()).await;
    listener.next_of("connected").await;

    let (status, answer) = deliver(&server, "push", "d-1", PUSH, None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("INVALID_SIGNATURE"))
    );
    let wrong = signature("not the secret", PUSH);
    let (status, answer) = deliver(&server, "push", "d-1", PUSH, Some(wrong)).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("INVALID_SIGNATURE"))
    );
    assert_eq!(answer["success"], false);
    let tampered = signature(SECRET, &PUSH.replace("\"", "'"));
    let (status, _) = deliver(&server, "push", "d-1", PUSH, Some(tampered)).await;
    assert_eq!(status, 401);

    let (status, pong) = deliver(&server, "ping", "d-0", PING, Some(signature(SECRET, PING))).await;
    assert_eq!(status, 200, "{pong}");
    assert_eq!(pong["outcome"], "pong");

    let signed = Some(signature(SECRET, PUSH));
    let (status, played) = deliver(&server, "push", "d-1", PUSH, signed.clone()).await;
    assert_eq!(status, 200, "{played}");
    assert_eq!(played["outcome"], "played");
    assert_eq!(played["delivery"], "d-1");
    assert_eq!(played["listenersNotified"], 1);
    let message = listener.next_of("audio_buffer").await;
    let data = &message["data"];
    assert_eq!(data["repoId"], repo);
    assert_eq!(data["trigger"]["kind"], "webhook");
    assert_eq!(data["trigger"]["event"], "push");
    assert_eq!(data["trigger"]["delivery"], "d-1");
    assert_eq!(data["compositionId"], played["compositionId"]);
    assert_eq!(data["params"], played["params"]);
    assert_eq!(data["trigger"], played["trigger"]);
    let samples = channels(&message);
    let frames = data["buffer"]["length"].as_u64().unwrap() as usize;
    assert_eq!(samples[0].len(), frames);
    assert!(samples[0].iter().any(|s| s.abs() > 0.01));

    // GitHub's retry of the same delivery plays nothing.
    let (status, again) = deliver(&server, "push", "d-1", PUSH, signed).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    assert!(
        listener
            .try_next(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing more is played"
    );
    let (status, answer) = deliver(&server, "", "d-2", PUSH, Some(signature(SECRET, PUSH))).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("MISSING_EVENT"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_secret_unsigned_deliveries_play_and_bodies_are_capped() {
    let server = TestServer::start_with(|c| {
        c.repo.max_webhook_body_bytes = 64 * 1024;
    })
    .await;
    let (status, played) = deliver(&server, "push", "u-1", PUSH, None).await;
    assert_eq!(status, 200, "{played}");
    assert_eq!(played["outcome"], "played");
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let (status, answer) = deliver(&server, "push", "u-2", &huge, None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
    let (status, answer) = deliver(&server, "push", "u-3", "[1, 2]", None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("INVALID_PAYLOAD"))
    );
    let (status, ignored) = deliver(&server, "gollum", "u-4", PUSH, None).await;
    assert_eq!(
        (status, ignored["outcome"].as_str()),
        (200, Some("ignored"))
    );
    let get = reqwest::get(server.http_url("/webhooks/github"))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    server.shutdown().await;
}
