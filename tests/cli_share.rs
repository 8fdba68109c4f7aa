//! `bandsync-cli share` and `receive` end to end: the real server in-process, the real CLI
//! binary as child processes (a sharer over REST, a receiver polling), a WAV file in and a
//! WAV file out, compared sample for sample.
//!
//! The WAV files are written and read by hand (`cli_support::wav`), not with the CLI's
//! own `hound`: an independent reader also checks that what the CLI writes is a standard
//! file.

mod cli_support;
mod common;

use cli_support::wav::{read_wav, write_wav, Samples, Wav};
use cli_support::{args, cli, run_cli, text};
use common::TestServer;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOKEN: &str = "Bearer Token";

/// What a REST receiver must get: f32, i16 scaled by 1/32768 (as bits, so -0.0 and
/// rounding differences would show).
fn as_f32_bits(samples: &Samples) -> Vec<u32> {
    match samples {
        Samples::I16(s) => s
            .iter()
            .map(|v| (f32::from(*v) / 32768.0).to_bits())
            .collect(),
        Samples::F32(s) => s.iter().map(|v| v.to_bits()).collect(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("bandsync-cli-share-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until the share is active, so the receiver's status check finds it.
async fn wait_active(server: &TestServer, session: &str) {
    let http = reqwest::Client::new();
    let url = server.http_url(&format!("/api/share/{session}/status"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http.get(&url).header("authorization", TOKEN).send().await;
        if response.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "share {session} never became active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shares `wav` in `session` over `uplink` (`rest` or `ws`), receives it over `downlink`
/// (`poll`, `ws` or `sse`), and checks the recording sample for sample.
async fn share_and_receive(
    server: &TestServer,
    session: &str,
    wav: Wav,
    uplink: &str,
    downlink: &str,
) {
    let dir = temp_dir(session);
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    write_wav(&input, &wav);
    let url = server.base_url();
    let sharer = tokio::spawn(run_cli(args(&[
        "share",
        "--url",
        &url,
        "--session",
        session,
        "--token",
        TOKEN,
        "--file",
        input.to_str().unwrap(),
        "--transport",
        uplink,
        "--title",
        "Test Tone",
        "--artist",
        "bandsync",
        // The share stays up 2 s after the file's end, so that a receiver slowed down
        // by a busy machine still finds it active (with 0.6 s it sometimes did not).
        "--linger",
        "2",
    ])));
    wait_active(server, session).await;
    let receiver = run_cli(args(&[
        "receive",
        "--url",
        &url,
        "--session",
        session,
        "--token",
        TOKEN,
        "--transport",
        downlink,
        "--out",
        output.to_str().unwrap(),
        "--duration",
        "20",
    ]))
    .await;
    let sharer = sharer.await.unwrap();
    assert!(sharer.status.success(), "sharer: {}", text(&sharer));
    assert!(receiver.status.success(), "receiver: {}", text(&receiver));
    let shared = String::from_utf8_lossy(&sharer.stdout);
    assert!(
        shared.contains("share stopped: sessionDuration=") && shared.contains("bytesTransferred="),
        "sharer: {}",
        text(&sharer)
    );
    let received = String::from_utf8_lossy(&receiver.stdout);
    assert!(
        received.contains("the share ended"),
        "receiver: {}",
        text(&receiver)
    );
    assert!(
        received.contains(" 0 lost"),
        "receiver: {}",
        text(&receiver)
    );
    assert!(
        received.contains(r#"now playing "Test Tone" by bandsync"#),
        "receiver: {}",
        text(&receiver)
    );

    let got = read_wav(&output);
    assert_eq!(
        (got.sample_rate, got.channels),
        (wav.sample_rate, wav.channels)
    );
    if downlink == "poll" {
        assert!(matches!(got.samples, Samples::F32(_)), "REST audio is f32");
    }
    let (want, got) = (as_f32_bits(&wav.samples), as_f32_bits(&got.samples));
    assert_eq!(got.len(), want.len(), "samples received");
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "sample {i} differs: sent {:?}, received {:?}",
            f32::from_bits(want[i]),
            f32::from_bits(got[i])
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The receivers join after the sharer started: the CLI processes start while others
/// run (up to six at once), and on a busy 2-core machine a receiver has taken longer
/// than the default 1 s `AUDIO_BURST_MS` to join, losing the start of the file. So the
/// burst is the whole 5 s buffer, longer than any file shared here: every receiver gets
/// the file from its first chunk, in order, whenever it joins during the share.
async fn start_server() -> TestServer {
    TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        c.share.audio_burst_ms = (c.share.audio_buffer_seconds * 1000.0) as u64;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_wavs_are_received_sample_for_sample() {
    cli(); // build first: not part of any run's timing
    let server = start_server().await;
    // 1.5 s of 8 kHz stereo 16-bit (both extremes included), and 1.2 s of 11.025 kHz mono
    // float, whose 200 ms chunks (2205 frames) and short last chunk exercise the rounding.
    let i16_wav = Wav {
        sample_rate: 8000,
        channels: 2,
        samples: Samples::I16(
            (0..12_000 * 2)
                .map(|i: i32| match i {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => ((i * 7919) % 65_536 - 32_768) as i16,
                })
                .collect(),
        ),
    };
    let f32_wav = Wav {
        sample_rate: 11_025,
        channels: 1,
        samples: Samples::F32(
            (0..13_230)
                .map(|i| (i as f32 * 0.0731).sin() * 0.9 + if i == 5 { -0.0 } else { 0.0 })
                .collect(),
        ),
    };
    tokio::join!(
        share_and_receive(&server, "123456", i16_wav, "rest", "poll"),
        share_and_receive(&server, "654321", f32_wav, "rest", "poll"),
    );
    server.shutdown().await;
}

/// Push delivery: audio shared over the WebSocket (i16 stays i16) or REST reaches
/// WebSocket members as binary frames and SSE listeners as JSON, sample for sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_wavs_are_received_sample_for_sample_over_ws_and_sse() {
    cli();
    let server = start_server().await;
    let tone = |sample_rate: u32, channels: u16, frames: i32| Wav {
        sample_rate,
        channels,
        samples: Samples::I16(
            (0..frames * i32::from(channels))
                .map(|i| ((i * 7919) % 65_536 - 32_768) as i16)
                .collect(),
        ),
    };
    tokio::join!(
        share_and_receive(&server, "222222", tone(8000, 2, 9600), "ws", "ws"),
        share_and_receive(&server, "333333", tone(8000, 1, 9600), "ws", "sse"),
        share_and_receive(&server, "444444", tone(8000, 2, 9600), "rest", "ws"),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_end_the_cli_with_a_clear_message() {
    cli();
    let server = start_server().await;
    let url = server.base_url();
    let dir = temp_dir("refusals");
    let input = dir.join("in.wav");
    write_wav(
        &input,
        &Wav {
            sample_rate: 8000,
            channels: 1,
            samples: Samples::I16(vec![0; 800]),
        },
    );

    let wrong_token = run_cli(args(&[
        "share",
        "--url",
        &url,
        "--session",
        "111111",
        "--token",
        "Bearer Nope",
        "--file",
        input.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(wrong_token.status.code(), Some(1), "{}", text(&wrong_token));
    let stderr = String::from_utf8_lossy(&wrong_token.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("refused the token"),
        "{stderr}"
    );

    let nothing_shared = run_cli(args(&[
        "receive",
        "--url",
        &url,
        "--session",
        "222222",
        "--token",
        TOKEN,
    ]))
    .await;
    assert_eq!(
        nothing_shared.status.code(),
        Some(1),
        "{}",
        text(&nothing_shared)
    );
    let stderr = String::from_utf8_lossy(&nothing_shared.stderr);
    assert!(
        stderr.contains("no active share in session 222222"),
        "{stderr}"
    );

    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}
