//! Finding 5 of issue 7 ("Safe to expose"): one address started every share session, a
//! stranger used up a session's metadata budget, and wrong tokens were answered as fast as
//! they came. Each test reproduces one of those against the real server and fails without
//! the per-address limits.

mod common;
mod share_support;
mod support;

use bandsync_client::protocol::client::ShareStart;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, ErrorCode};
use common::TestServer;
use serde_json::json;
use share_support::*;
use std::net::IpAddr;
use std::time::Duration;
use support::{join_follower, metric, request};

const ID: &str = "123456";

fn from(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A server with the share token set and a small failed-authentication budget.
async fn guarded(adjust: impl FnOnce(&mut bandsync::Config)) -> TestServer {
    share_server(|c| {
        c.limits.auth_failure_limit = 3;
        c.limits.auth_ban_ms = 1_500;
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_over_rest_ban_the_address_and_are_counted() {
    let server = guarded(|_| {}).await;
    let guesser = Api::from_source(&server, from(1));
    for n in 0..3 {
        let reply = guesser
            .auth(Some(&format!("Bearer guess-{n}")))
            .start(ID)
            .await;
        reply.error(401, "UNAUTHORIZED");
    }
    // Banned: even the right token is refused, with the wait, without being checked.
    let banned = guesser.start(ID).await;
    banned.error(429, "RATE_LIMITED");
    let wait: u64 = banned.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another address is not affected.
    Api::from_source(&server, from(2)).start_ok("654321").await;

    assert_eq!(
        metric(
            &server,
            r#"bandsync_auth_failures_total{reason="wrong_token",transport="http"}"#
        )
        .await,
        3.0
    );
    assert_eq!(metric(&server, "bandsync_auth_bans_total").await, 1.0);
    assert_eq!(metric(&server, "bandsync_auth_refused_total").await, 1.0);

    // The ban ends.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    guesser.start_ok(ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_over_websocket_ban_the_address_for_rest_too() {
    let server = guarded(|_| {}).await;
    let (mut ws, _) = join_follower(&server, ID).await;
    let start = |token: &str| {
        ClientEvent::ShareStart(ShareStart {
            token: token.into(),
        })
    };
    for n in 0..3 {
        let reply = request(&mut ws, start(&format!("wrong-{n}"))).await;
        match reply.event {
            ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized),
            other => panic!("expected UNAUTHORIZED, got {other:?}"),
        }
    }
    // Banned: the right token gets the wait instead of a token check.
    let reply = request(&mut ws, start(TOKEN)).await;
    match reply.event {
        ServerEvent::RateLimitExceeded(r) => assert!(r.retry_after_ms >= 1_000, "{r:?}"),
        other => panic!("expected rate_limit_exceeded, got {other:?}"),
    }
    // One budget per address, whichever way it guessed.
    Api::from_source(&server, from(1))
        .start(ID)
        .await
        .error(429, "RATE_LIMITED");
    assert_eq!(
        metric(
            &server,
            r#"bandsync_auth_failures_total{reason="wrong_token",transport="ws"}"#
        )
        .await,
        3.0
    );
    assert_eq!(metric(&server, "bandsync_auth_bans_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_start_every_share_session() {
    let server = share_server(|c| {
        c.share.max_share_sessions = 4;
        c.limits.share_sessions_per_ip = 2;
    })
    .await;
    let greedy = Api::from_source(&server, from(1));
    greedy.start_ok("100001").await;
    greedy.start_ok("100002").await;
    greedy.start("100003").await.error(429, "ADDRESS_LIMIT");
    // Everyone else still gets sessions.
    let band = Api::from_source(&server, from(2));
    band.start_ok("100003").await;
    // Stopping one of its own frees the greedy address's slot.
    greedy.stop("100001").await.ok();
    greedy.start_ok("100004").await;
    assert_eq!(
        metric(
            &server,
            r#"bandsync_share_starts_refused_total{reason="per_address"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_starts_are_rate_limited_per_address() {
    let server = share_server(|c| c.limits.share_starts_per_minute = 3).await;
    let churner = Api::from_source(&server, from(1));
    for n in 0..3 {
        let id = format!("20000{n}");
        churner.start_ok(&id).await;
        churner.stop(&id).await.ok();
    }
    let refused = churner.start("200009").await;
    refused.error(429, "RATE_LIMITED");
    assert!(refused.retry_after.is_some());
    Api::from_source(&server, from(2)).start_ok("200009").await;
    assert_eq!(
        metric(
            &server,
            r#"bandsync_share_starts_refused_total{reason="rate"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_use_up_the_sharers_metadata_budget() {
    let server = share_server(|c| c.share.share_metadata_rate = 2).await;
    let sharer = Api::from_source(&server, from(1));
    sharer.start_ok(ID).await;
    let stranger = Api::from_source(&server, from(2));
    let mut refused = 0;
    for n in 0..5 {
        let reply = stranger
            .post_metadata(ID, &seed_metadata("spam", f64::from(n)))
            .await;
        if reply.status == 429 {
            refused += 1;
        }
    }
    assert!(
        refused >= 2,
        "the stranger has its own budget and went over it"
    );
    // The sharer's budget is untouched.
    for n in 0..2 {
        sharer
            .post_metadata(ID, &seed_metadata("Song", f64::from(n)))
            .await
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let server = guarded(|c| c.limits.trusted_proxies = "127.0.0.1".into()).await;
    let url = server.http_url("/api/share/start");
    let start = |source: IpAddr, forwarded: &'static str, token: &'static str| {
        let client = reqwest::Client::builder()
            .local_address(source)
            .build()
            .unwrap();
        let url = url.clone();
        async move {
            client
                .post(url)
                .header("authorization", token)
                .header("x-forwarded-for", forwarded)
                .json(&json!({ "sessionId": ID }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Through the proxy, 203.0.113.7 guesses three times and is banned...
    for _ in 0..3 {
        assert_eq!(start(from(1), "203.0.113.7", "wrong").await, 401);
    }
    assert_eq!(start(from(1), "203.0.113.7", TOKEN).await, 429);
    // ...but not the proxy itself, nor another client behind it.
    assert_eq!(
        start(from(1), "198.51.100.1, 203.0.113.8", TOKEN).await,
        200
    );
    // From an untrusted peer the header is ignored: 127.0.0.2 is judged as itself.
    assert_eq!(start(from(2), "203.0.113.7", TOKEN).await, 409);
}
