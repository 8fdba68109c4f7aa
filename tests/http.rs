//! Plain HTTP: `/health`, `/metrics`, `/sessions/{id}`, JSON errors, CORS and security
//! headers, the static pages (sync and listening) and the vendored Tone.js.

mod common;
mod support;

use bandsync_client::protocol::{ClientEvent, Role};
use common::TestServer;
use support::*;

const METRIC_NAMES: &[&str] = &[
    "bandsync_connections",
    "bandsync_connections_total",
    "bandsync_connections_rejected_total",
    "bandsync_sessions",
    "bandsync_messages_in_total",
    "bandsync_messages_out_total",
    "bandsync_bytes_in_total",
    "bandsync_bytes_out_total",
    "bandsync_errors_sent_total",
    "bandsync_rate_limit_violations_total",
    "bandsync_rate_limit_disconnects_total",
    "bandsync_slow_client_disconnects_total",
    "bandsync_ticks_dropped_total",
    "bandsync_ticks_total",
    "bandsync_tick_lag_seconds",
    "bandsync_event_processing_seconds",
    "bandsync_fanout_latency_seconds",
    "bandsync_batch_size",
    "bandsync_engine_queue_full_total",
];

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        let got = response.headers().get(*name).map(|v| v.to_str().unwrap());
        assert_eq!(got, Some(*value), "{what}: header {name}");
    }
    assert!(
        response.headers().contains_key("content-security-policy"),
        "{what}: content-security-policy"
    );
}

/// Checks the contract's HTTP error body and returns its code.
fn error_code(body: &serde_json::Value) -> &str {
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        body["timestamp"].as_f64().is_some_and(|t| t > 1.6e12),
        "{body}"
    );
    body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_status_uptime_sessions_connections_and_memory() {
    let server = TestServer::start().await;
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert!(
        health["uptime"].as_f64().is_some_and(|u| u >= 0.0),
        "{health}"
    );
    assert_eq!(health["activeSessions"], 0);
    assert_eq!(health["connections"], 0);
    let used = health["memoryUsage"]["used"]
        .as_f64()
        .expect("memoryUsage.used");
    let total = health["memoryUsage"]["total"]
        .as_f64()
        .expect("memoryUsage.total");
    assert!(used > 0.0 && total > used, "{health}");
    assert!(health["timestamp"].as_f64().is_some_and(|t| t > 1.6e12));
    assert!(health["version"].is_string());

    let (_a, _) = join_leader(&server, "one").await;
    let (_b, _) = join_follower(&server, "two").await;
    let mut listener = sse(&server, "two", None).await;
    sse_next(&mut listener).await;
    let (_, health) = get_json(&server, "/health").await;
    assert_eq!(health["activeSessions"], 2, "{health}");
    assert_eq!(
        health["connections"], 3,
        "two WebSockets and one SSE stream: {health}"
    );
    let (_, later) = get_json(&server, "/health").await;
    assert!(later["uptime"].as_f64() >= health["uptime"].as_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_documented_metric_and_move_with_traffic() {
    let server = TestServer::start().await;
    let response = get(&server, "/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let before = response.text().await.unwrap();

    // Traffic of every kind the counters watch.
    let (mut l, _) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let mut listener = sse(&server, "band", None).await;
    sse_next(&mut listener).await;
    request(&mut f, play(None)).await; // NOT_LEADER
    l.send(play(None)).await.unwrap();
    next_state_update(&mut l).await;
    next_state_update(&mut f).await;
    for _ in 0..3 {
        next_tick(&mut f).await;
    }
    sse_next_skipping(&mut listener, &["room_stats", "state_update"]).await;

    let after = metrics_text(&server).await;
    for name in METRIC_NAMES {
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "missing {name} in:\n{after}"
        );
    }
    for histogram in [
        "tick_lag_seconds",
        "event_processing_seconds",
        "fanout_latency_seconds",
    ] {
        assert!(after.contains(&format!("bandsync_{histogram}_bucket{{le=\"0.016\"}}")));
        assert!(after.contains(&format!("bandsync_{histogram}_count")));
    }
    let value = |text: &str, sample: &str| metric_value(text, sample).unwrap_or(0.0);
    let moved = [
        "bandsync_messages_in_total",
        "bandsync_bytes_in_total",
        "bandsync_ticks_total",
        "bandsync_tick_lag_seconds_count",
        "bandsync_event_processing_seconds_count",
        "bandsync_batch_size_count",
        "bandsync_connections_total{transport=\"ws\"}",
        "bandsync_connections_total{transport=\"sse\"}",
        "bandsync_messages_out_total{transport=\"ws\"}",
        "bandsync_messages_out_total{transport=\"sse\"}",
        "bandsync_bytes_out_total{transport=\"ws\"}",
        "bandsync_bytes_out_total{transport=\"sse\"}",
    ];
    for sample in moved {
        assert!(
            value(&after, sample) > value(&before, sample),
            "{sample} did not move:\n{after}"
        );
    }
    assert_eq!(
        value(&after, "bandsync_errors_sent_total{code=\"NOT_LEADER\"}"),
        1.0
    );
    assert_eq!(value(&after, "bandsync_connections{transport=\"ws\"}"), 2.0);
    assert_eq!(
        value(&after, "bandsync_connections{transport=\"sse\"}"),
        1.0
    );
    assert_eq!(value(&after, "bandsync_sessions"), 1.0);
    assert_eq!(
        value(&after, "bandsync_messages_in_total"),
        4.0,
        "two joins and two plays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_info_answers_for_live_retained_and_unknown_sessions() {
    let server = TestServer::start().await;
    let mut l = connect(&server).await;
    let snap = l
        .join("owner/repo", Some(Role::Leader), Some("ada"))
        .await
        .unwrap();
    let (mut f, _) = join_follower(&server, "owner/repo").await;
    l.send(tempo(128.0)).await.unwrap();
    l.send(message("chorus")).await.unwrap();
    next_state_update(&mut l).await;
    let state = next_state_update(&mut l).await;

    let (status, info) = get_json(&server, "/sessions/owner/repo").await;
    assert_eq!(status, 200);
    assert_eq!(info["sessionId"], "owner/repo");
    assert_eq!(info["transport"]["tempo"], 128.0);
    assert_eq!(info["transport"]["playing"], false);
    assert_eq!(info["transport"]["beat"], 0.0);
    assert!(info["transport"]["anchorTime"].is_number());
    assert_eq!(info["message"], "chorus");
    assert_eq!(info["leaderId"].as_str(), Some(snap.client_id.as_str()));
    assert_eq!(info["version"].as_u64(), Some(state.version));
    assert!(info["serverTime"].as_f64() >= Some(state.server_time));
    assert_eq!(
        (info["memberCount"].as_u64(), info["followers"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(info["listeners"], 0);
    assert_eq!(info["live"], true);
    let members = info["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    let leader = members
        .iter()
        .find(|m| m["clientId"] == snap.client_id.as_str())
        .expect("leader listed");
    assert_eq!(
        (leader["name"].as_str(), leader["role"].as_str()),
        (Some("ada"), Some("leader"))
    );

    // Everyone leaves (a dropped member would keep it live for its recovery window): the
    // state is retained, nobody is live.
    for client in [&mut l, &mut f] {
        client.send(ClientEvent::LeaveSession).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let retained = loop {
        let (status, info) = get_json(&server, "/sessions/owner/repo").await;
        assert_eq!(status, 200, "{info}");
        if info["live"] == false {
            break info;
        }
        assert!(tokio::time::Instant::now() < deadline, "still live: {info}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(retained["message"], "chorus");
    assert_eq!(retained["transport"]["tempo"], 128.0);
    assert_eq!(
        (
            retained["memberCount"].as_u64(),
            retained["members"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    let (status, body) = get_json(&server, "/sessions/never-seen").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "SESSION_NOT_FOUND");
    assert_eq!(body["error"], "session not found");
    let (status, body) = get_json(&server, "/sessions/bad%20id").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_SESSION_ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let server = TestServer::start().await;
    for path in ["/nope", "/health/extra", "/metricsx", "/sse"] {
        let (status, body) = get_json(&server, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "NOT_FOUND", "{path}");
    }
    let response = http()
        .post(server.http_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");

    // /ws without an upgrade is a JSON error too.
    let (status, body) = get_json(&server, "/ws").await;
    assert_eq!(status, 426, "{body}");
    assert_eq!(error_code(&body), "UPGRADE_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_security_headers_and_cors() {
    let server = TestServer::start().await;
    for path in [
        "/",
        "/health",
        "/metrics",
        "/sessions/none",
        "/nope",
        "/sse/bad%20id",
        "/ws",
    ] {
        let response = http()
            .get(server.http_url(path))
            .header("origin", "http://example.test")
            .send()
            .await
            .unwrap();
        assert_security_headers(&response, path);
        let origin = response.headers().get("access-control-allow-origin");
        assert_eq!(origin.map(|v| v.to_str().unwrap()), Some("*"), "{path}");
        assert_eq!(vary(&response), CORS_VARY, "{path}");
    }

    // A preflight for the SSE endpoint, which sends Last-Event-ID.
    let response = http()
        .request(reqwest::Method::OPTIONS, server.http_url("/sse/band"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert!(header("access-control-allow-methods").is_some_and(|m| m.contains("get")));
    assert!(header("access-control-allow-headers").is_some_and(|h| h.contains("last-event-id")));
    assert_eq!(vary(&response), CORS_VARY);
}

/// What a response to a cross-origin request varies with: caches must key on these.
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

fn vary(response: &reqwest::Response) -> String {
    let values: Vec<&str> = response
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    values.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origin_restricts_the_allowed_origins() {
    let server =
        TestServer::start_with(|c| c.cors_origin = "http://band.test, http://other.test".into())
            .await;
    for (origin, allowed) in [
        ("http://band.test", true),
        ("http://other.test", true),
        ("http://evil.test", false),
    ] {
        let response = http()
            .get(server.http_url("/health"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        let got = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        if allowed {
            assert_eq!(got.as_deref(), Some(origin));
        } else {
            assert_eq!(got, None, "{origin} must not be allowed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served() {
    let server = TestServer::start().await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/js/clock.js", "text/javascript"),
        ("/js/click.js", "text/javascript"),
        ("/js/chordpro.js", "text/javascript"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let got = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
        assert!(!response.text().await.unwrap().is_empty(), "{path}");
    }
    // Only the page's own modules: no directory walk, no path out of `static/js/`.
    for path in ["/js/nope.js", "/js/..%2Fapp.js", "/js/"] {
        let response = get(&server, path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
    }
}

/// `/listen/{name}` and `/listen/{owner}/{name}` serve the listening page under the strict
/// policy, an invalid repository id gets the contract's JSON 400, and `/vendor/tone.js` is the
/// vendored file byte for byte, cacheable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listening_page_its_assets_and_tone_are_served() {
    let server = TestServer::start().await;
    for (path, content_type) in [
        ("/listen/solo", "text/html"),
        ("/listen/octocat/hello-world", "text/html"),
        ("/listen.js", "text/javascript"),
        ("/listen.css", "text/css"),
        ("/vendor/tone.js", "text/javascript"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_security_headers(&response, path);
        let got = response.headers()["content-type"].to_str().unwrap();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
    let page = get(&server, "/listen/octocat/hello-world").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/vendor/tone.js"));

    let tone = get(&server, "/vendor/tone.js").await;
    let cache = tone.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("max-age="), "{cache}");
    let served = tone.bytes().await.unwrap();
    assert!(served[..] == include_bytes!("../static/vendor/tone.js")[..]);

    for path in [
        "/listen/",
        "/listen/a/b/c",
        "/listen/a/",
        "/listen/a%20b",
        "/listen/x/%2e%2e",
    ] {
        let (status, body) = get_json(&server, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(error_code(&body), "INVALID_REPO_ID", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_history_rolls_up_each_interval_and_is_bounded_in_memory() {
    let server = TestServer::start_with(|c| c.metrics_history_interval_ms = 200).await;
    let (_leader, _) = join_leader(&server, "history").await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (status, history) = get_json(&server, "/metrics/history").await;
    assert_eq!(status, 200);
    assert_eq!(history["intervalMs"], 200);
    let minutes = history["minutes"].as_array().expect("minutes");
    assert!(minutes.len() >= 2, "{history}");
    let last = minutes.last().unwrap();
    assert_eq!(last["sessions"], 1, "{history}");
    assert_eq!(last["connections"], 1, "{history}");
    assert!(
        last["memoryMb"].as_f64().is_some_and(|m| m > 0.0),
        "{history}"
    );
    let joins: u64 = minutes
        .iter()
        .map(|m| m["messagesIn"].as_u64().unwrap())
        .sum();
    assert!(joins >= 1, "the join is counted in its minute: {history}");
}
