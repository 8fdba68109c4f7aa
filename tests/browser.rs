//! The web page in a real browser: starts the server in-process on `127.0.0.1:0` and runs
//! `tests/browser/two_pages.mjs` (playwright-core driving Debian's Chromium) against it.
//! A leader page, a follower page and an SSE listener page must stay in step through tempo,
//! play, pause, seek and message changes; a screenshot of the follower lands in
//! `target/browser-follower.png`. A second test runs `tests/browser/deflate.mjs`:
//! Chromium's permessage-deflate against ours (`ws.extensions`, a large update both ways).
//! Two more play repository streams: `listen_page.mjs` (our listening page) and
//! `seed_client.mjs` (the original streaming server's browser client, unchanged).
//! Two drive the Stream Manager's pages against a server with a `BEARER_TOKEN` (given to the
//! script as `BANDSYNC_BEARER_TOKEN`): `overlay.mjs` (REST changes reach the overlay, a
//! visibility toggle within 100 ms) and `operator.mjs` (the operator page and its preview).
//! `click_sheet.mjs` sounds the page's metronome click in two pages and scrolls its chord
//! sheet; the page's pure modules have node unit tests in `tests/browser/unit/`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and node with npm. When either
//! is missing the test fails with the install command, unless `BANDSYNC_SKIP_BROWSER=1`,
//! which turns that failure into a printed skip. No browser is ever downloaded: the node
//! project depends on `playwright-core` only and launches the system Chromium.

mod common;
mod process_support;

use process_support::{run_bounded, runs, Outcome};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The script bounds itself to 55 s; this is the backstop should node itself hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
/// `npm ci` of one package from the registry.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_follower_and_sse_listener_stay_in_step_in_chromium() {
    run_script("two_pages.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_negotiates_permessage_deflate() {
    run_script("deflate.mjs").await;
}

/// The page's click and chord sheet (`click_sheet.mjs`, audio allowed headless): a leader and
/// a follower hear the same beats at server times within 2 ms; a tempo change at the next
/// bar changes both pages' click interval exactly at that bar; the sheet reaches a follower
/// and an SSE listener and scrolls with the position; a pause silences the click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_click_agrees_across_pages_and_the_sheet_scrolls_in_chromium() {
    run_script("click_sheet.mjs").await;
}

/// The page's pure modules (the clock estimator, the click's audio-clock mapping, the
/// timeline, the ChordPro parser) under `node --test tests/browser/unit/`: no browser, no
/// server.
#[test]
fn the_page_modules_pass_their_node_unit_tests() {
    if !runs("node") {
        if std::env::var("BANDSYNC_SKIP_BROWSER").as_deref() == Ok("1") {
            println!("node unit tests skipped (BANDSYNC_SKIP_BROWSER=1): node not found");
            return;
        }
        panic!(
            "node not found on PATH (apt-get install -y nodejs), or set BANDSYNC_SKIP_BROWSER=1"
        );
    }
    let mut cmd = Command::new("node");
    cmd.args(["--test", "tests/browser/unit/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert!(
        out.success,
        "node --test tests/browser/unit/ failed:\n{}",
        out.describe()
    );
}

/// The listening page (`/listen/{owner}/{name}`): a composition posted while it listens, one
/// posted before it opened (the late listener), and one waiting for "Start audio" while the
/// autoplay policy locks audio; each an AudioBuffer with the server's samples, played.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listening_page_plays_each_composition_in_chromium() {
    run_script("listen_page.mjs").await;
}

/// The original streaming server's browser client, unchanged but for its Tone.js source,
/// receives a composition from bandsync and plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_browser_client_plays_a_composition_unchanged() {
    run_script("seed_client.mjs").await;
}

/// The Stream Manager's writes need the bearer token; the scripts send it from node (and type
/// it into the operator page).
const STREAM_TOKEN: &str = "overlay-test-token";

/// The overlay page (`/overlay?session=...`): the default layers, a styled text layer, ten
/// visibility toggles over REST each in the DOM within 100 ms (the figures are printed), an
/// uploaded PNG in an image layer (screenshot in `target/overlay-stage.png`), state, update
/// and delete events, and a reconnect that redraws from the fresh snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_follows_rest_changes_within_100_ms_in_chromium() {
    run_stream_manager_script("overlay.mjs").await;
}

/// The operator page (`/operator?session=...`): a refusal shown verbatim, the token, a text
/// layer made with the form shown in the overlay preview and toggled there, the state buttons,
/// an upload through the page used by an image layer, the 409 of deleting it, delete, reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_manages_a_stream_and_its_preview_in_chromium() {
    run_stream_manager_script("operator.mjs").await;
}

async fn run_stream_manager_script(name: &str) {
    run_script_with(
        name,
        |c| c.share.bearer_token = Some(STREAM_TOKEN.into()),
        &[("BANDSYNC_BEARER_TOKEN", STREAM_TOKEN)],
    )
    .await;
}

/// One browser at a time: the scripts share one node project (installed once, by the
/// first), and the page test measures timing that a second Chromium would disturb.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `tests/browser/<name>` against a fresh server; fails with its output if it fails.
async fn run_script(name: &str) {
    run_script_with(name, |_| {}, &[]).await;
}

/// [`run_script`] against a server configured by `adjust`, with `env` set for the script.
async fn run_script_with(
    name: &str,
    adjust: impl FnOnce(&mut bandsync::Config),
    env: &[(&str, &str)],
) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let project = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let node_modules_ready = project
        .join("node_modules")
        .join("playwright-core")
        .is_dir();

    let missing = missing_tools(node_modules_ready);
    if !missing.is_empty() {
        let why = missing.join("\n  ");
        if std::env::var("BANDSYNC_SKIP_BROWSER").as_deref() == Ok("1") {
            println!("browser test skipped (BANDSYNC_SKIP_BROWSER=1):\n  {why}");
            return;
        }
        panic!(
            "the browser test cannot run:\n  {why}\n\
             Install as root with `apt-get update && apt-get install -y chromium nodejs npm`, \
             or set BANDSYNC_SKIP_BROWSER=1 to skip this test."
        );
    }

    if !node_modules_ready {
        let install = project.clone();
        let out = tokio::task::spawn_blocking(move || npm_install(&install))
            .await
            .expect("npm install task panicked");
        assert!(
            out.success,
            "installing tests/browser (npm) failed:\n{}",
            out.describe()
        );
    }

    let server = common::TestServer::start_with(adjust).await;
    let base = server.http_url("/").trim_end_matches('/').to_owned();
    let script = project.join(name);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .arg(&base)
            .envs(env)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        run_bounded(cmd, SCRIPT_TIMEOUT)
    })
    .await
    .expect("browser script task panicked");

    assert!(
        out.success,
        "tests/browser/{name} failed:\n{}",
        out.describe()
    );
    println!("{}", out.stdout);
    // The gate (no engine panic, `run` returned Ok in time): after the script's own
    // verdict, which says more when both fail.
    server.shutdown().await;
}

/// What is missing to run the browser test, one line each.
fn missing_tools(node_modules_ready: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!(
            "Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
        ));
    }
    if !runs("node") {
        missing.push("node not found on PATH (apt-get install -y nodejs)".to_owned());
    }
    if !node_modules_ready && !runs("npm") {
        missing.push(
            "npm not found on PATH, needed once to install tests/browser (apt-get install -y npm)"
                .to_owned(),
        );
    }
    missing
}

/// `npm ci` from the committed lock file (`npm install` if there is none). Playwright's
/// browser download is switched off: the test uses the system Chromium.
fn npm_install(project: &Path) -> Outcome {
    let has_lock = project.join("package-lock.json").is_file();
    let mut cmd = Command::new("npm");
    cmd.arg(if has_lock { "ci" } else { "install" })
        .args(["--no-audit", "--no-fund"])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(project);
    run_bounded(cmd, NPM_TIMEOUT)
}
