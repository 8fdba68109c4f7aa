//! The `bandsync-cli` binary, for tests that run it as a child process, and the WAV files
//! they exchange with it.

#![allow(dead_code)]

pub mod wav;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Bound of one CLI run; a run that hangs fails the test instead of the whole suite.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The CLI binary: `target/<profile>/bandsync-cli`, beside this test's
/// `target/<profile>/deps/`. The root package cannot name another package's binary
/// (`CARGO_BIN_EXE_*` is per package) and `cargo test` does not build it, so it is built
/// here once per test run, with the same cargo, profile and target directory. Always
/// building (rather than only when it is missing) keeps a stale binary from being tested;
/// when it is up to date, cargo returns at once.
pub fn cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target/<profile>");
        let cargo = std::env::var("CARGO")
            .ok()
            .or_else(|| option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "bandsync-client",
                "--bin",
                "bandsync-cli",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building bandsync-cli failed");
        let bin = profile_dir.join(format!("bandsync-cli{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// Runs the CLI to its end (bounded by [`RUN_TIMEOUT`]) without blocking the runtime
/// the server runs on.
pub async fn run_cli(args: Vec<String>) -> Output {
    let child = Command::new(cli())
        .args(&args)
        .env_remove("BEARER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting bandsync-cli");
    let pid = child.id();
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(RUN_TIMEOUT, wait).await {
        Ok(output) => output.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("bandsync-cli {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
    }
}

/// Exit code, stdout and stderr of a run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Owned arguments for [`run_cli`].
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
