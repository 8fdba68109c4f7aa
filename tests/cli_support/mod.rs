//! The `bandsync-cli` binary, for tests that run it as a child process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
