//! What a host gets in `deploy/` and the `Dockerfile`, checked: the Prometheus rules with
//! `promtool` (syntax and unit tests), the systemd unit with `systemd-analyze verify`, that
//! every metric the dashboard and the rules query exists in a live server's `/metrics`, the
//! container recipe's shape, and `LOG_FORMAT=json` from the real binary.
//!
//! `promtool` comes with Debian's `prometheus` package (scripts/install-test-deps.sh installs
//! it); without it the rules tests say so and skip, unless `BANDSYNC_REQUIRE_PROMTOOL=1`
//! (scripts/test.sh), where they fail. `systemd-analyze` is used where systemd is installed.

mod common;
mod process_support;
mod support;

use common::TestServer;
use process_support::{run_bounded, runs};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether `promtool` runs here; panics instead of skipping when it is required.
fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("BANDSYNC_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool is required (BANDSYNC_REQUIRE_PROMTOOL) but not installed"
        );
        eprintln!(
            "SKIPPED: promtool is not installed (Debian package `prometheus`; \
             scripts/install-test-deps.sh installs it)"
        );
    }
    found
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    if !promtool_available() {
        return;
    }
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "rules"])
        .arg(repo_file("deploy/prometheus/alerts.yml"));
    let outcome = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(outcome.success, "{}", outcome.describe());
    assert!(outcome.stdout.contains("SUCCESS"), "{}", outcome.describe());
}

#[test]
fn the_alert_rules_fire_as_their_unit_tests_expect() {
    if !promtool_available() {
        return;
    }
    let mut cmd = Command::new("promtool");
    cmd.args(["test", "rules"])
        .arg(repo_file("deploy/prometheus/alerts.test.yml"));
    let outcome = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(outcome.success, "{}", outcome.describe());
}

#[test]
fn the_systemd_unit_verifies() {
    if !runs("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let unit = read("deploy/systemd/bandsync.service");
    let exec = "ExecStart=/usr/local/bin/bandsync";
    assert!(unit.contains(exec), "the unit runs the installed binary");
    for hardening in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.contains(hardening),
            "sandboxing: {hardening:?} missing"
        );
    }
    // `verify` insists the binary exists: point it at the one this test suite built.
    let dir = common::scratch_dir("bandsync-unit");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("bandsync.service");
    let built = format!("ExecStart={}", env!("CARGO_BIN_EXE_bandsync"));
    std::fs::write(&copy, unit.replace(exec, &built)).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(&copy);
    let outcome = run_bounded(cmd, TOOL_TIMEOUT);
    let _ = std::fs::remove_dir_all(&dir);
    // `verify` exits 0 on unknown keys and bad values, only warning: any word about the
    // unit file is a failure.
    let about_unit: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("bandsync.service"))
        .collect();
    assert!(
        outcome.success && about_unit.is_empty(),
        "{}",
        outcome.describe()
    );
}

/// Every `bandsync_*` metric name in `text` (expressions, legends aside: `{{` never
/// precedes a name).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bandsync_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > "bandsync_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

/// The sample names a live server exposes, after some traffic of every kind the dashboard
/// graphs (a WebSocket member, an SSE listener, HTTP requests).
async fn live_metric_names() -> BTreeSet<String> {
    let server = TestServer::start().await;
    let (mut member, _) = join_leader(&server, "ops-dashboard").await;
    let _listener = sse(&server, "ops-dashboard", None).await;
    sync(&mut member).await;
    get(&server, "/health").await;
    let text = metrics_text(&server).await;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            l[..end].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_query_exists() {
    let dashboard = read("deploy/grafana/bandsync.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let panels = json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard worth the name");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "unique panel ids"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}: no query", panel["title"]);
    }
    let rules = read("deploy/prometheus/alerts.yml");
    let queried: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&rules))
        .collect();
    for expected in [
        "bandsync_alerts_active",
        "bandsync_process_resident_memory_bytes",
        "bandsync_process_cpu_seconds_total",
        "bandsync_fanout_latency_seconds_bucket",
    ] {
        assert!(queried.contains(expected), "{expected} is not queried");
    }
    let live = live_metric_names().await;
    let missing: Vec<_> = queried.difference(&live).collect();
    assert!(
        missing.is_empty(),
        "queried but not in /metrics: {missing:?}\nlive: {live:?}"
    );
}

#[test]
fn the_container_recipe_is_multi_stage_non_root_and_checks_health() {
    let recipe = read("Dockerfile");
    let stages = recipe.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage");
    let user = recipe
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    let health = recipe
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(health.contains("/health"), "{health}");
    assert!(recipe.contains("EXPOSE 3001"));
    assert!(
        recipe.contains("HOST=0.0.0.0"),
        "reachable from outside the container"
    );
    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim() == "target/"));
}

/// The spawned binary, killed (by its own handle) when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `LOG_FORMAT=json`: every line an object, the HTTP access line inside the request's span
/// with its `request_id`, the same id answered in `x-request-id`; a WebSocket's lines
/// inside its span with `conn` and `session`.
#[tokio::test]
async fn json_logs_carry_the_request_and_connection_spans() {
    let data = common::scratch_dir("bandsync-jsonlog");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bandsync"))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "bandsync=debug")
        .env("ASSET_STORAGE_PATH", data.join("assets"))
        .env("STREAM_STATE_PATH", data.join("streams"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn bandsync");
    let stderr = child.stderr.take().unwrap();
    let child = Child(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a log line in time");
        let json: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            json["timestamp"].is_string() && json["level"].is_string(),
            "{json}"
        );
        json
    };
    let addr = loop {
        let line = next();
        if line["fields"]["message"] == "bandsync listening" {
            break line["fields"]["addr"].as_str().expect("addr").to_owned();
        }
    };
    let response = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answered = loop {
        let line = next();
        if line["fields"]["message"] == "answered" && line["span"]["route"] == "/health" {
            break line;
        }
    };
    // A WebSocket's lines carry its connection and, once joined, its session.
    let mut ws = bandsync_client::WsClient::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.join("band", None, None).await.unwrap();
    drop(ws);
    let closed = loop {
        let line = next();
        if line["fields"]["message"] == "websocket closed" {
            break line;
        }
    };
    drop(child);
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(closed["span"]["name"], "ws", "{closed}");
    assert_eq!(closed["span"]["session"], "band", "{closed}");
    assert!(closed["span"]["conn"].is_u64(), "{closed}");
    assert_eq!(answered["fields"]["status"], 200, "{answered}");
    assert_eq!(answered["span"]["name"], "request");
    assert_eq!(answered["span"]["request_id"].to_string(), id, "{answered}");
    assert!(answered["spans"].is_array(), "the span list: {answered}");
}
