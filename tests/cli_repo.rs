//! `bandsync-cli repo listen` and `repo test` end to end: the real server in-process, the
//! CLI as child processes, and an in-process listener (the client library, `json`) as the
//! reference for what the server sent. Every WAV file the CLI writes must hold that
//! composition sample for sample, whatever the encoding it listened with.

mod cli_support;
mod common;

use bandsync::Config;
use bandsync_client::protocol::repo::{Encoding, StreamMessage};
use bandsync_client::repo::{decode_channels, RepoStream, StreamOptions};
use cli_support::wav::{read_wav, Samples};
use cli_support::{args, cli, run_cli, text};
use common::TestServer;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bandsync-cli-repo-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `repo` has `n` listeners, as `GET /health/repo/{repoId}` counts them.
async fn wait_listeners(server: &TestServer, repo: &str, n: u64) {
    let http = reqwest::Client::new();
    let url = server.http_url(&format!("/health/repo/{repo}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let body: Option<serde_json::Value> = match http.get(&url).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let count = body.as_ref().and_then(|b| b["activeClients"].as_u64());
        if count == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{repo} never had {n} listeners (last: {body:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one WAV file in `dir`: its name, and its samples de-interleaved.
fn the_wav(dir: &Path) -> (String, u32, [Vec<f32>; 2]) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one file in {}: {entries:?}",
        dir.display()
    );
    let wav = read_wav(&entries[0]);
    assert_eq!(wav.channels, 2);
    let Samples::F32(samples) = wav.samples else {
        panic!("the CLI writes float WAV")
    };
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (name, wav.sample_rate, [left, right])
}

/// The server's i16 form of a sample, read back as the CLI reads it.
fn via_i16(x: f32) -> f32 {
    f32::from((x.clamp(-1.0, 1.0) * 32767.0).round() as i16) / 32767.0
}

fn assert_same_bits(what: &str, got: &[f32], want: impl Iterator<Item = f32>) {
    let want: Vec<f32> = want.collect();
    assert_eq!(got.len(), want.len(), "{what}: frames");
    if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: sample {i} is {} where the server sent {}",
            got[i], want[i]
        );
    }
}

async fn start_server() -> TestServer {
    TestServer::start_with(|_: &mut Config| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_write_what_the_server_sent_in_every_encoding() {
    cli(); // build first: not part of any run's timing
    let server = start_server().await;
    let url = server.base_url();
    let repo = "octocat/hello-world";
    let mut reference = RepoStream::connect(&url, repo, &StreamOptions::default())
        .await
        .unwrap();
    let dirs = Encoding::ALL.map(|e| temp_dir(e.as_str()));
    let listeners: Vec<_> = Encoding::ALL
        .iter()
        .zip(&dirs)
        .map(|(encoding, dir)| {
            tokio::spawn(run_cli(args(&[
                "repo",
                "listen",
                repo,
                "--url",
                &url,
                "--encoding",
                encoding.as_str(),
                "--count",
                "1",
                "--out",
                dir.to_str().unwrap(),
                "--timeout",
                "25",
            ])))
        })
        .collect();
    wait_listeners(&server, repo, 4).await;

    let played = run_cli(args(&[
        "repo",
        "test",
        repo,
        "--url",
        &url,
        "--tempo",
        "100",
        "--duration",
        "1.5",
        "--instrument",
        "pluck",
        "--scale",
        "A3,C4,E4",
        "--seed",
        "7",
        "--json",
    ]))
    .await;
    assert!(played.status.success(), "repo test: {}", text(&played));
    let answer: serde_json::Value = serde_json::from_slice(&played.stdout).unwrap();
    assert_eq!(answer["listenersNotified"], 4, "{answer}");
    assert_eq!(answer["samples"], 66_150, "{answer}");
    assert_eq!(answer["params"]["instrumentType"], "pluck", "{answer}");
    let composition_id = answer["compositionId"].as_str().unwrap().to_owned();

    // The reference: `connected`, then the composition as JSON numbers.
    let first = reference.next_message(WAIT).await.unwrap().unwrap();
    assert!(matches!(first.message, StreamMessage::Connected { .. }));
    let message = reference.next_message(WAIT).await.unwrap().unwrap();
    let StreamMessage::AudioBuffer { data, .. } = message.message else {
        panic!("expected audio_buffer, got {:?}", message.message)
    };
    assert_eq!(
        data.composition_id.as_deref(),
        Some(composition_id.as_str())
    );
    let sent = decode_channels(&data.buffer).unwrap();
    assert_eq!(sent[0].len(), 66_150);

    for ((listener, encoding), dir) in listeners.into_iter().zip(Encoding::ALL).zip(&dirs) {
        let output = listener.await.unwrap();
        assert!(
            output.status.success(),
            "listen {encoding:?}: {}",
            text(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("connected repo=octocat/hello-world")
                && stdout.contains("test composition")
                && stdout.contains("tempo=100 scale=A3,C4,E4 instrument=pluck duration=1.5")
                && stdout.contains("done: 1 compositions"),
            "{}",
            text(&output)
        );
        let (name, rate, got) = the_wav(dir);
        assert_eq!(name, format!("1-{composition_id}.wav"));
        assert_eq!(rate, 44_100);
        for (channel, samples) in got.iter().enumerate() {
            let what = format!("{encoding:?} channel {channel}");
            let want = sent[channel].iter().copied();
            match encoding {
                Encoding::I16 => assert_same_bits(&what, samples, want.map(via_i16)),
                Encoding::Json | Encoding::F32 => assert_same_bits(&what, samples, want),
            }
        }
    }

    // A listener that comes later gets the latest composition first.
    let late = temp_dir("late");
    let output = run_cli(args(&[
        "repo",
        "listen",
        repo,
        "--url",
        &url,
        "--encoding",
        "f32",
        "--count",
        "1",
        "--out",
        late.to_str().unwrap(),
        "--timeout",
        "25",
    ]))
    .await;
    assert!(output.status.success(), "late listener: {}", text(&output));
    let (name, _, got) = the_wav(&late);
    assert_eq!(name, format!("1-{composition_id}.wav"));
    assert_same_bits("late", &got[1], sent[1].iter().copied());

    for dir in dirs.iter().chain([&late]) {
        let _ = std::fs::remove_dir_all(dir);
    }
    drop(reference);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tests_exit_1_with_the_servers_code() {
    cli();
    let server = start_server().await;
    let url = server.base_url();
    for (flag, value, needle) in [
        ("--tempo", "500", "tempo must be between"),
        ("--duration", "0", "duration must be between"),
        ("--scale", "C4,H9", "not a note name"),
        ("--density", "1.5", "density must be between"),
    ] {
        let output = run_cli(args(&["repo", "test", "solo", "--url", &url, flag, value])).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{flag} {value}: {}",
            text(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("HTTP 400 INVALID_PARAMS") && stderr.contains(needle),
            "{flag} {value}: {}",
            text(&output)
        );
        assert!(
            output.stdout.is_empty(),
            "nothing played: {}",
            text(&output)
        );
    }
    // Refused by the CLI itself, before any request: exit 2 (clap) or 1 (a bad repo id).
    let output = run_cli(args(&[
        "repo",
        "test",
        "solo",
        "--url",
        &url,
        "--instrument",
        "kazoo",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = run_cli(args(&["repo", "test", "a/b/c", "--url", &url])).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("repoId must be"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_named_like_a_stream_manager_route_is_reachable() {
    cli();
    let server = start_server().await;
    let url = server.base_url();
    let dir = temp_dir("status");
    let listener = tokio::spawn(run_cli(args(&[
        "repo",
        "listen",
        "status/site",
        "--url",
        &url,
        "--count",
        "1",
        "--out",
        dir.to_str().unwrap(),
        "--timeout",
        "25",
    ])));
    wait_listeners(&server, "%73tatus/site", 1).await;
    let played = run_cli(args(&[
        "repo",
        "test",
        "status/site",
        "--url",
        &url,
        "--duration",
        "0.5",
    ]))
    .await;
    assert!(played.status.success(), "{}", text(&played));
    let stdout = String::from_utf8_lossy(&played.stdout);
    assert!(
        stdout.contains("played status/site") && stdout.contains("listenersNotified=1"),
        "{}",
        text(&played)
    );
    let output = listener.await.unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let (_, rate, got) = the_wav(&dir);
    assert_eq!((rate, got[0].len()), (44_100, 22_050));
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}
