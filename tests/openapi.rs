//! `static/openapi.json` against the real server: every documented path is routed, and
//! schemathesis finds no 5xx and no answer (status, content type, headers, body) that the
//! document does not describe.
//!
//! schemathesis is a Python tool: `scripts/install-test-deps.sh` installs it in a virtual
//! environment under `~/.cache/bandsync/schemathesis` (or `$BANDSYNC_SCHEMATHESIS` names the
//! executable). Without it the run is skipped with the reason printed, unless
//! `BANDSYNC_REQUIRE_SCHEMATHESIS` is set (as `scripts/test.sh`, and so CI, sets it): then
//! its absence fails the test.

mod common;
mod support;

use common::TestServer;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "openapi-test-token";

/// Operations that never end (SSE streams) or need a WebSocket handshake, which
/// schemathesis neither sends nor reads: described in the document, not fuzzed.
const NOT_FUZZED: &str =
    "^(openWebSocket|listenSse|listenRepo|openStreamWebSocket|socketIoPoll|socketIoSend|subscribeAlerts)$";

/// Test cases per operation: enough to cross every documented status of most routes, small
/// enough for the whole run to stay well under two minutes on two cores.
const MAX_EXAMPLES: &str = "25";

fn document() -> Value {
    serde_json::from_str(bandsync::http::OPENAPI_JSON).expect("static/openapi.json parses")
}

/// A concrete path for a documented template, from the parameters' examples.
fn concrete(template: &str) -> String {
    template
        .replace("{sessionId}", "123456")
        .replace("{owner}", "octocat")
        .replace("{name}", "hello-world")
        .replace("{module}", "clock.js")
        .replace("{id}", "ast_5be1f0c2a9d84e7f9c01b2a3d4e5f607")
}

fn is_no_such_route(status: u16, body: &str) -> bool {
    status == 404 && body.contains("no such route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_and_every_path_in_it_is_routed() {
    let server = TestServer::start_with(|c| c.share.bearer_token = Some(TOKEN.into())).await;
    let client = support::http();
    let served = client
        .get(server.http_url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"],
        "application/json",
        "content type"
    );
    let served: Value = served.json().await.expect("the served document is JSON");
    let doc = document();
    assert_eq!(served, doc, "the served document is static/openapi.json");

    let mut checked = 0;
    for (template, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .expect("method");
            let url = server.http_url(&concrete(template));
            // Only the head is read: SSE streams answer 200 and are dropped.
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                client.request(method.clone(), &url).send(),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {template}: no response head"))
            .unwrap_or_else(|e| panic!("{method} {template}: {e}"));
            let status = response.status().as_u16();
            let streaming = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = if streaming {
                String::new()
            } else {
                response.text().await.unwrap_or_default()
            };
            assert!(
                !is_no_such_route(status, &body),
                "{method} {template} ({url}) is documented but not routed"
            );
            let documented = operation["responses"]
                .as_object()
                .expect("responses")
                .contains_key(&status.to_string());
            assert!(
                documented,
                "{method} {template}: {status} is not documented: {body}"
            );
            checked += 1;
        }
    }
    // The sync server, the share API, repository streams, the Stream Manager and the pages.
    assert!(checked >= 40, "only {checked} operations checked");
    server.shutdown().await;
}

/// The schemathesis executable: `$BANDSYNC_SCHEMATHESIS`, the one
/// `scripts/install-test-deps.sh` installs, or one on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BANDSYNC_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let installed = cache.map(|c| c.join("bandsync/schemathesis/bin/schemathesis"));
    let candidates = installed
        .into_iter()
        .chain(std::iter::once(PathBuf::from("schemathesis")));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_true_to_its_document() {
    let Some(schemathesis) = schemathesis() else {
        if std::env::var_os("BANDSYNC_REQUIRE_SCHEMATHESIS").is_some() {
            panic!("schemathesis is not installed (run scripts/install-test-deps.sh)");
        }
        println!(
            "SKIPPED: schemathesis is not installed (scripts/install-test-deps.sh installs it; \
             BANDSYNC_REQUIRE_SCHEMATHESIS=1 makes its absence a failure)"
        );
        return;
    };
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        // The run starts many share sessions from one address; the per-address limits stay
        // on (their 429 is documented) but must not make every later start a 429.
        c.limits.share_starts_per_minute = 10_000;
    })
    .await;
    let report = std::env::temp_dir().join(format!("bandsync-schemathesis-{}", std::process::id()));
    let args = [
        "run".to_string(),
        server.http_url("/openapi.json"),
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_headers_conformance,response_schema_conformance"
            .into(),
        "--exclude-operation-id-regex".into(),
        NOT_FUZZED.into(),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--request-timeout".into(),
        "10".into(),
        // One worker: Python 3.11's `ast.parse` is not safe across threads (hypothesis
        // calls it while generating), and one worker finishes in seconds anyway.
        "--workers".into(),
        "1".into(),
        "--seed".into(),
        "17".into(),
        "--header".into(),
        format!("Authorization: Bearer {TOKEN}"),
        "--report-dir".into(),
        report.display().to_string(),
    ];
    let args = args.to_vec();
    println!("schemathesis {}", args.join(" "));
    let started = Instant::now();
    let workdir = report.clone();
    let output = tokio::task::spawn_blocking(move || {
        // Its working directory gets a `.schemathesis` cache: the report directory, not
        // the repository.
        std::fs::create_dir_all(&workdir).expect("report directory");
        Command::new(&schemathesis)
            .args(&args)
            .current_dir(&workdir)
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("schemathesis task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("schemathesis ran {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "schemathesis failed ({}; its reports are in {}):\n{stdout}\n{stderr}",
        output.status,
        report.display()
    );
    let _ = std::fs::remove_dir_all(&report);
    server.shutdown().await;
}
