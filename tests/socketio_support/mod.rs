//! Runs the socket.io-client scenarios of `tests/socketio/` (`node clients.mjs <scenario>
//! <args>`) for tests/socketio.rs and tests/cluster_socketio.rs: each bounded in time, its
//! output shown when it fails.
//!
//! Needs node (18+) on PATH, and npm once to install `tests/socketio`'s one package
//! (`socket.io-client`, pinned by its lock file; `scripts/install-test-deps.sh` installs it
//! too). Without them the tests fail with the install command, unless
//! `BANDSYNC_SKIP_SOCKETIO=1`, which turns the failure into a printed skip.
//!
//! Why not the browser test's runner: tests/browser.rs keeps its runner to itself, and
//! this project is a different node project with its own skip switch.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
    out.assert_passed(scenario);
}

/// How a child process ended, with its output.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    note: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "{}--- stdout ---\n{}\n--- stderr ---\n{}",
            self.note, self.stdout, self.stderr
        )
    }

    /// Fails with the output unless the scenario printed its PASS line and exited 0;
    /// prints the output otherwise (shown with `--nocapture`).
    pub fn assert_passed(&self, scenario: &str) {
        assert!(
            self.success && self.stdout.contains(&format!("PASS {scenario}")),
            "Socket.IO scenario '{scenario}' failed:\n{}",
            self.describe()
        );
        print!("{}", self.stdout);
    }
}

/// Runs `cmd` to completion or until `timeout`, when it is killed (by its own handle, so
/// only that child). Both pipes are drained on their own threads so a chatty child cannot
/// block on a full pipe.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Outcome {
    let shown = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return Outcome {
                success: false,
                stdout: String::new(),
                stderr: String::new(),
                note: format!("could not start {shown}: {e}\n"),
            }
        }
    };
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let (success, note) = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break (status.success(), format!("{shown} exited with {status}\n"))
            }
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("{shown} killed after {timeout:?}\n"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => break (false, format!("waiting for {shown} failed: {e}\n")),
        }
    };
    Outcome {
        success,
        stdout: collect(stdout),
        stderr: collect(stderr),
        note,
    }
}

/// A drained pipe's text. Waits at most a few seconds: a grandchild that inherited the pipe
/// and outlived a killed child must not hang the test.
fn collect(reader: thread::JoinHandle<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if reader.is_finished() {
        reader.join().unwrap_or_default()
    } else {
        "(output not collected: the pipe was still open)".to_owned()
    }
}

/// Reads a pipe to its end on a thread of its own; the first 1 MiB is kept, the rest read
/// and dropped (so the child never blocks on a full pipe).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
