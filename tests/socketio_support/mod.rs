//! Runs the socket.io-client scenarios of `tests/socketio/` (`node clients.mjs <scenario>
//! <args>`) for tests/socketio.rs and tests/cluster_socketio.rs: each bounded in time, its
//! output shown when it fails.
//!
//! Needs node (18+) on PATH, and npm once to install `tests/socketio`'s one package
//! (`socket.io-client`, pinned by its lock file; `scripts/install-test-deps.sh` installs it
//! too). Without them the tests fail with the install command, unless
//! `BANDSYNC_SKIP_SOCKETIO=1`, which turns the failure into a printed skip.
//!
//! Child processes run through `tests/process_support` (shared with the browser tests); this
//! node project has its own package and skip switch.

#![allow(dead_code)]

#[path = "../process_support/mod.rs"]
mod process;

pub use process::Outcome;
use process::{run_bounded, runs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The scenarios bound themselves to 40 s; this is the backstop should node itself hang.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// `npm ci` of one package and its few dependencies from the registry.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);
/// The switch that turns missing node or npm into a skip.
const SKIP_VAR: &str = "BANDSYNC_SKIP_SOCKETIO";

/// `tests/socketio`, the node project.
pub fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("socketio")
}

/// Installed once per test binary, by whichever test gets here first.
static READY: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();

/// Whether the scenarios can run: node is there and `socket.io-client` installed (with
/// `npm ci` when it is missing). `false` means skip (`BANDSYNC_SKIP_SOCKETIO=1` and a
/// tool is missing; the reason is printed); otherwise a missing tool fails the test.
pub async fn node_ready() -> bool {
    *READY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(prepare)
                .await
                .expect("preparing node panicked")
        })
        .await
}

fn prepare() -> bool {
    let installed = project()
        .join("node_modules")
        .join("socket.io-client")
        .is_dir();
    let mut missing = Vec::new();
    if !runs("node") {
        missing.push("node not found on PATH (apt-get install -y nodejs)");
    }
    if !installed && !runs("npm") {
        missing.push(
            "npm not found on PATH, needed once to install tests/socketio (apt-get install -y npm)",
        );
    }
    if !missing.is_empty() {
        let why = missing.join("\n  ");
        if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
            println!("Socket.IO client test skipped ({SKIP_VAR}=1):\n  {why}");
            return false;
        }
        panic!(
            "the Socket.IO client tests cannot run:\n  {why}\n\
             Install with `apt-get install -y nodejs npm` (or run scripts/install-test-deps.sh), \
             or set {SKIP_VAR}=1 to skip them."
        );
    }
    if !installed {
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(project());
        let out = run_bounded(cmd, NPM_TIMEOUT);
        assert!(
            out.success,
            "installing tests/socketio (npm ci) failed:\n{}",
            out.describe()
        );
    }
    true
}

/// Starts `node clients.mjs <scenario> <args>` with `env` on a blocking thread; await the
/// handle for its outcome (so a test can drive another client meanwhile).
pub fn spawn_scenario(
    scenario: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> tokio::task::JoinHandle<Outcome> {
    let mut cmd = Command::new("node");
    cmd.arg(project().join("clients.mjs"))
        .arg(scenario)
        .args(args)
        .current_dir(project());
    for (key, value) in env {
        cmd.env(key, value);
    }
    tokio::task::spawn_blocking(move || run_bounded(cmd, SCRIPT_TIMEOUT))
}

/// Runs a scenario to its end; fails the test with its output unless it passed.
pub async fn run_scenario(scenario: &str, args: &[String], env: &[(&str, &str)]) {
    let out = spawn_scenario(scenario, args, env)
        .await
        .expect("scenario task panicked");
    assert_passed(&out, scenario);
}

/// Fails with the output unless the scenario printed its PASS line and exited 0;
/// prints the output otherwise (shown with `--nocapture`).
pub fn assert_passed(out: &Outcome, scenario: &str) {
    assert!(
        out.success && out.stdout.contains(&format!("PASS {scenario}")),
        "Socket.IO scenario '{scenario}' failed:\n{}",
        out.describe()
    );
    print!("{}", out.stdout);
}
