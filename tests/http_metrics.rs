//! `bandsync_http_*` over real HTTP, black-box: requests to a few routes move the counters
//! under the right route template, method and status (200, 401, 404, 405, and a CORS
//! preflight answered before the router), the duration histogram counts them, and a
//! thousand distinct unrouted paths add one `other` series, not a thousand.

mod common;
mod support;

use common::TestServer;
use support::{http, metric, metrics_text};

const TOKEN: &str = "metrics-test-token";

fn requests(route: &str, method: &str, status: &str) -> String {
    format!(
        r#"bandsync_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
    )
}

fn timed(route: &str, method: &str) -> String {
    format!(r#"bandsync_http_request_duration_seconds_count{{method="{method}",route="{route}"}}"#)
}

async fn send(server: &TestServer, method: reqwest::Method, path: &str) -> u16 {
    http()
        .request(method, server.http_url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_template_method_and_status() {
    let server = TestServer::start_with(|c| c.share.bearer_token = Some(TOKEN.into())).await;
    use reqwest::Method as M;

    assert_eq!(send(&server, M::GET, "/health").await, 200);
    assert_eq!(send(&server, M::GET, "/health").await, 200);
    assert_eq!(send(&server, M::HEAD, "/app.js").await, 200);
    assert_eq!(send(&server, M::GET, "/sessions/nobody-here").await, 404);
    assert_eq!(send(&server, M::GET, "/no/such/route").await, 404);
    assert_eq!(send(&server, M::POST, "/health").await, 405);
    // No token: the share API's 401.
    assert_eq!(send(&server, M::POST, "/api/share/start").await, 401);
    assert_eq!(send(&server, M::GET, "/api/share/s-1/status").await, 401);
    // A CORS preflight is answered by the CORS layer; it is counted all the same.
    let preflight = http()
        .request(M::OPTIONS, server.http_url("/api/share/start"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let preflight_status = preflight.status().as_u16().to_string();

    let text = metrics_text(&server).await;
    let value = |sample: &str| support::metric_value(&text, sample).unwrap_or(0.0);
    assert_eq!(value(&requests("/health", "GET", "200")), 2.0, "{text}");
    assert_eq!(value(&requests("/app.js", "HEAD", "200")), 1.0);
    assert_eq!(value(&requests("/sessions/{sessionId}", "GET", "404")), 1.0);
    assert_eq!(value(&requests("other", "GET", "404")), 1.0);
    assert_eq!(value(&requests("/health", "POST", "405")), 1.0);
    assert_eq!(value(&requests("/api/share/start", "POST", "401")), 1.0);
    assert_eq!(
        value(&requests("/api/share/{sessionId}/status", "GET", "401")),
        1.0
    );
    assert_eq!(
        value(&requests("/api/share/start", "OPTIONS", &preflight_status)),
        1.0
    );
    assert_eq!(value(&timed("/health", "GET")), 2.0);
    assert_eq!(value(&timed("other", "GET")), 1.0);
    // Only the scrape itself is in flight while it renders.
    assert_eq!(value("bandsync_http_requests_in_flight"), 1.0);
    // The scrape is counted once its head is out.
    let scraped = metric(&server, &requests("/metrics", "GET", "200")).await;
    assert!(
        scraped >= 1.0,
        "the first scrape was not counted: {scraped}"
    );
    // Resource metrics from /proc.
    assert!(
        value("bandsync_process_resident_memory_bytes") > 0.0,
        "{text}"
    );
    assert!(value("bandsync_process_open_fds") > 0.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_paths_make_one_other_series() {
    use rand::Rng;
    let server = TestServer::start().await;
    let client = http();
    let mut rng = rand::rng();
    let mut paths = std::collections::HashSet::new();
    while paths.len() < 1000 {
        let depth = rng.random_range(1..5);
        let path: String = (0..depth)
            .map(|_| format!("/{:x}.{}", rng.random::<u64>(), rng.random_range(0..1000)))
            .collect();
        paths.insert(path);
    }
    for path in &paths {
        let status = client
            .get(server.http_url(path))
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, 404, "{path}");
    }
    let text = metrics_text(&server).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bandsync_http_requests_total{"))
        .collect();
    let other: Vec<&&str> = series
        .iter()
        .filter(|l| l.contains(r#"route="other""#))
        .collect();
    assert_eq!(other.len(), 1, "{other:#?}");
    assert!(other[0].ends_with(" 1000"), "{}", other[0]);
    // Nothing else was requested, so nothing else has a series.
    assert_eq!(series.len(), 1, "{series:#?}");
    server.shutdown().await;
}
