use super::*;
use http::Method;

/// (method, path, template) for every route of the server, and then the paths that must
/// not get a template of their own.
const TABLE: &[(&str, &str, &str)] = &[
    ("GET", "/", "/"),
    ("HEAD", "/", "/"),
    ("GET", "/app.js", "/app.js"),
    ("GET", "/style.css", "/style.css"),
    ("GET", "/js/clock.js", "/js/{module}"),
    ("GET", "/js/timeline.js", "/js/{module}"),
    ("GET", "/health", "/health"),
    ("GET", "/metrics", "/metrics"),
    ("GET", "/metrics/history", "/metrics/history"),
    ("GET", "/sessions/my-band", "/sessions/{sessionId}"),
    ("GET", "/sessions/a/b.c_d", "/sessions/{sessionId}"),
    ("GET", "/sessions", "/sessions/{sessionId}"),
    ("GET", "/ws", "/ws"),
    ("GET", "/sse/my-band", "/sse/{sessionId}"),
    ("GET", "/sse/a/b", "/sse/{sessionId}"),
    ("POST", "/api/share/start", "/api/share/start"),
    (
        "POST",
        "/api/share/s1/metadata",
        "/api/share/{sessionId}/metadata",
    ),
    (
        "GET",
        "/api/share/s1/metadata",
        "/api/share/{sessionId}/metadata",
    ),
    (
        "POST",
        "/api/share/s1/audio",
        "/api/share/{sessionId}/audio",
    ),
    ("GET", "/api/share/s1/audio", "/api/share/{sessionId}/audio"),
    ("POST", "/api/share/s1/stop", "/api/share/{sessionId}/stop"),
    (
        "GET",
        "/api/share/s1/status",
        "/api/share/{sessionId}/status",
    ),
    ("GET", "/stream/octocat/hello-world", "/stream/{repoId}"),
    ("GET", "/stream/solo", "/stream/{repoId}"),
    // GET of `owner/test` listens to the repository `owner/test`.
    ("GET", "/stream/owner/test", "/stream/{repoId}"),
    (
        "POST",
        "/stream/octocat/hello-world/test",
        "/stream/{repoId}/test",
    ),
    ("POST", "/stream/solo/test", "/stream/{repoId}/test"),
    // A reserved word percent-encoded is a repository.
    ("GET", "/stream/%73tatus/site", "/stream/{repoId}"),
    (
        "POST",
        "/stream/status%2Fsite/test",
        "/stream/{repoId}/test",
    ),
    // Invalid repository ids are still answered (400) by the repository route.
    ("GET", "/stream/a/b/c/d", "/stream/{repoId}"),
    ("GET", "/stream/", "/stream/{repoId}"),
    (
        "GET",
        "/health/repo/octocat/hello-world",
        "/health/repo/{repoId}",
    ),
    ("POST", "/webhooks/github", "/webhooks/github"),
    (
        "GET",
        "/listen/octocat/hello-world",
        "/listen/{owner}/{name}",
    ),
    ("GET", "/listen/solo", "/listen/{owner}/{name}"),
    ("GET", "/listen.js", "/listen.js"),
    ("GET", "/listen.css", "/listen.css"),
    ("GET", "/vendor/tone.js", "/vendor/tone.js"),
    ("GET", "/openapi.json", "/openapi.json"),
    // The Stream Manager (section 17).
    ("GET", "/stream/status", "/stream/status"),
    ("POST", "/stream/start", "/stream/start"),
    ("POST", "/stream/pause", "/stream/pause"),
    ("POST", "/stream/stop", "/stream/stop"),
    ("POST", "/stream/reset", "/stream/reset"),
    ("GET", "/stream/layers", "/stream/layers"),
    ("POST", "/stream/layers", "/stream/layers"),
    (
        "PUT",
        "/stream/layers/lyr_3f9a0c1d2e4b",
        "/stream/layers/{id}",
    ),
    ("DELETE", "/stream/layers/host", "/stream/layers/{id}"),
    (
        "PATCH",
        "/stream/layers/host/visibility",
        "/stream/layers/{id}/visibility",
    ),
    ("POST", "/stream/assets/upload", "/stream/assets/upload"),
    ("GET", "/stream/assets", "/stream/assets"),
    (
        "GET",
        "/stream/assets/ast_5be1f0c2a9d84e7f9c01b2a3d4e5f607",
        "/stream/assets/{id}",
    ),
    ("DELETE", "/stream/assets/ast_x", "/stream/assets/{id}"),
    (
        "GET",
        "/stream/assets/ast_x/content",
        "/stream/assets/{id}/content",
    ),
    (
        "HEAD",
        "/stream/assets/ast_x/content",
        "/stream/assets/{id}/content",
    ),
    // `POST .../test` under a reserved word is still the Stream Manager's (a 404 there).
    ("POST", "/stream/status/test", "other"),
    ("GET", "/ws/stream", "/ws/stream"),
    ("GET", "/overlay", "/overlay"),
    ("GET", "/overlay.js", "/overlay.js"),
    ("GET", "/overlay.css", "/overlay.css"),
    ("GET", "/operator", "/operator"),
    ("GET", "/operator.js", "/operator.js"),
    ("GET", "/operator.css", "/operator.css"),
    ("GET", "/alerts/stream", "/alerts/stream"),
    ("OPTIONS", "/api/share/start", "/api/share/start"),
];

/// Paths no route serves, including what scanners and attackers send.
const UNMATCHED: &[&str] = &[
    "",
    "//",
    "/index.html",
    "/wp-login.php",
    "/.env",
    "/.git/config",
    "/../../etc/passwd",
    "/health/",
    "/healthz",
    "/metrics/",
    "/metrics/history/x",
    "/app.js/",
    "/js",
    "/js/",
    "/js/nope.js",
    "/js/clock.js/",
    "/ws/",
    "/ws/other",
    "/sse",
    "/stream",
    "/api/share",
    "/api/share/",
    "/api/share/start/x",
    "/api/share//status",
    "/api/share/s1/delete",
    "/api/share/s1/status/x",
    "/api/share/s1",
    "/stream/status/x",
    "/stream/start/",
    "/stream/layers/",
    "/stream/layers//visibility",
    "/stream/layers/a/b",
    "/stream/layers/a/visibility/x",
    "/stream/assets//content",
    "/stream/assets/a/b",
    "/stream/assets/a/content/x",
    "/webhooks/github/",
    "/webhooks",
    "/overlay/x",
    "/openapi.yaml",
    "/listenx",
    "/%00",
    "/\u{0}",
    "/é",
];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

#[test]
fn every_route_maps_to_its_template() {
    for (m, path, template) in TABLE {
        assert_eq!(route_label(&method(m), path), *template, "{m} {path}");
    }
}

#[test]
fn unmatched_paths_share_one_label() {
    for path in UNMATCHED {
        for m in ["GET", "POST", "DELETE"] {
            assert_eq!(route_label(&method(m), path), "other", "{m} {path:?}");
        }
    }
}

#[test]
fn templates_are_few_whatever_the_paths() {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut labels = std::collections::HashSet::new();
    let alphabet: Vec<char> = "abc/._-%2Fstreamlayersassets".chars().collect();
    for _ in 0..20_000 {
        let len = rng.random_range(0..40);
        let tail: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        for prefix in ["/", "/stream/", "/api/share/", "/sse/", "/stream/layers/"] {
            labels.insert(route_label(&Method::GET, &format!("{prefix}{tail}")));
            labels.insert(route_label(&Method::POST, &format!("{prefix}{tail}")));
        }
    }
    // Every label is one of the templates of the table or `other`.
    let known: std::collections::HashSet<&str> = TABLE
        .iter()
        .map(|(_, _, t)| *t)
        .chain(["other", "/sessions/{sessionId}"])
        .collect();
    for label in &labels {
        assert!(known.contains(label), "unexpected label {label}");
    }
}

#[test]
fn methods_outside_the_standard_nine_are_other() {
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ] {
        assert_eq!(method_label(&method(m)), m);
    }
    for m in ["PROPFIND", "BREW", "get", "X-ANYTHING"] {
        assert_eq!(method_label(&method(m)), "OTHER", "{m}");
    }
}

#[test]
fn metric_names_carry_the_prefix() {
    let metrics = crate::metrics::Metrics::new();
    metrics
        .http
        .requests
        .with_label_values(&["/health", "GET", "200"])
        .inc();
    metrics
        .http
        .duration
        .with_label_values(&["/health", "GET"])
        .observe(0.001);
    let text = metrics.render();
    assert!(
        text.contains(
            r#"bandsync_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("bandsync_http_request_duration_seconds_bucket"));
    assert!(text.contains("bandsync_http_requests_in_flight 0"));
    #[cfg(target_os = "linux")]
    {
        assert!(
            text.contains("bandsync_process_resident_memory_bytes"),
            "{text}"
        );
        assert!(text.contains("bandsync_process_cpu_seconds_total"));
    }
}

/// Every operation of `static/openapi.json` is counted under a template of its own, so the
/// document and the metrics name the same routes.
#[test]
fn every_documented_operation_has_a_template() {
    let doc: serde_json::Value =
        serde_json::from_str(crate::http::OPENAPI_JSON).expect("openapi.json parses");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "{} paths", paths.len());
    for (template, operations) in paths {
        let concrete = template
            .replace("{sessionId}", "123456")
            .replace("{owner}", "octocat")
            .replace("{name}", "hello-world")
            .replace("{id}", "ast_5be1f0c2a9d84e7f9c01b2a3d4e5f607");
        for method in operations.as_object().expect("operations").keys() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let label = route_label(&method, &concrete);
            assert_ne!(
                label, "other",
                "{method} {template} has no metrics template"
            );
        }
    }
}
