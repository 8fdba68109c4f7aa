//! Repository streams over real sockets: `GET /stream/{repoId}` (SSE), `POST
//! /stream/{repoId}/test`, `GET /health/repo/{repoId}`, the heartbeat and idle lifecycle,
//! the encodings, late listeners, the render pool's bounds, and the path rules shared with
//! the Stream Manager.

mod common;
mod repo_support;

use common::TestServer;
use repo_support::{channels, get_json, post_test, RepoListener};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

#[tokio::test]
async fn a_listener_gets_connected_then_each_composition_in_the_seed_shapes() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let mut listener = RepoListener::open(&base, "octocat/hello-world?clientId=me-1").await;
    let h = &listener.response_headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert!(h["cache-control"].to_str().unwrap().contains("no-cache"));
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["access-control-allow-origin"], "*");

    let connected = listener.next().await;
    assert_eq!(connected["type"], "connected");
    assert!(connected["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        connected["data"],
        json!({
            "message": "Streaming audio for repo: octocat/hello-world",
            "clientId": "me-1",
            "repoId": "octocat/hello-world",
        })
    );

    let (status, played) = post_test(
        &base,
        "octocat/hello-world",
        json!({"tempo": 120, "duration": 1, "instrumentType": "synth"}),
    )
    .await;
    assert_eq!(status, 200, "{played}");
    assert_eq!(played["success"], true);
    assert_eq!(played["samples"], 44_100);
    assert_eq!(played["duration"], 1.0);
    assert_eq!(played["listenersNotified"], 1);
    assert!(played["renderTimeMs"].as_f64().unwrap() > 0.0);

    let message = listener.next().await;
    assert_eq!(message["type"], "audio_buffer");
    let data = &message["data"];
    assert_eq!(data["repoId"], "octocat/hello-world");
    assert_eq!(data["compositionId"], played["compositionId"]);
    assert_eq!(data["buffer"]["sampleRate"], 44_100);
    assert_eq!(data["buffer"]["length"], 44_100);
    assert_eq!(data["buffer"]["duration"], 1.0);
    assert_eq!(data["buffer"]["numberOfChannels"], 2);
    assert_eq!(data["params"]["tempo"], 120.0);
    assert_eq!(data["params"]["instrumentType"], "synth");
    assert_eq!(data["params"]["scale"], json!(["C4", "E4", "G4"]));
    assert_eq!(data["trigger"]["kind"], "test");
    let samples = channels(&message);
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().all(|c| c.len() == 44_100));
    let peak = samples[0].iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.01 && peak <= 1.0, "peak {peak}");
    server.shutdown().await;
}

#[tokio::test]
async fn every_encoding_carries_the_same_composition_and_late_listeners_get_it() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let mut json_listener = RepoListener::open(&base, "band/site?encoding=json").await;
    let mut f32_listener = RepoListener::open(&base, "band/site?encoding=f32").await;
    let mut i16_listener = RepoListener::open(&base, "band/site?encoding=i16").await;
    for l in [&mut json_listener, &mut f32_listener, &mut i16_listener] {
        l.next_of("connected").await;
    }
    let body = json!({"tempo": 90, "duration": 0.5, "instrumentType": "pluck", "seed": 7});
    let (status, played) = post_test(&base, "band/site", body).await;
    assert_eq!(status, 200, "{played}");
    assert_eq!(played["listenersNotified"], 3);

    let as_json = json_listener.next_of("audio_buffer").await;
    let as_f32 = f32_listener.next_of("audio_buffer").await;
    let as_i16 = i16_listener.next_of("audio_buffer").await;
    assert_eq!(as_f32["data"]["buffer"]["encoding"], "f32");
    assert_eq!(as_i16["data"]["buffer"]["encoding"], "i16");
    let exact = channels(&as_json);
    assert_eq!(channels(&as_f32), exact, "f32 is bit-exact");
    let quantized = channels(&as_i16);
    for (a, b) in exact.iter().flatten().zip(quantized.iter().flatten()) {
        assert!((a - b).abs() <= 1.0 / 32767.0 + 1e-6);
    }

    // A listener that connects afterwards hears the latest composition at once.
    let mut late = RepoListener::open(&base, "Band/Site?encoding=f32").await;
    assert_eq!(late.next().await["type"], "connected");
    let latest = late.next().await;
    assert_eq!(latest["type"], "audio_buffer");
    assert_eq!(latest["data"]["compositionId"], played["compositionId"]);
    assert_eq!(channels(&latest), exact);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let cases = [
        (json!({"tempo": "fast"}), "INVALID_PARAMS"),
        (json!({"tempo": 10}), "INVALID_PARAMS"),
        (json!({"duration": 600}), "INVALID_PARAMS"),
        (json!({"instrumentType": "kazoo"}), "INVALID_PARAMS"),
        (json!({"scale": ["H9"]}), "INVALID_PARAMS"),
        (json!({"density": 2}), "INVALID_PARAMS"),
        (json!([1, 2]), "INVALID_PARAMS"),
    ];
    for (body, code) in cases {
        let (status, answer) = post_test(&base, "octocat/x", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["code"], code, "{body}");
        assert!(answer["error"].as_str().unwrap().len() > 5);
    }
    let client = reqwest::Client::new();
    let form = client
        .post(format!("{base}/stream/octocat/x/test"))
        .header("content-type", "text/plain")
        .body("tempo=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let huge = client
        .post(format!("{base}/stream/octocat/x/test"))
        .header("content-type", "application/json")
        .body(format!("{{\"scale\": [\"{}\"]}}", "C".repeat(40_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    for path in [
        "/stream/a/b/c",
        "/stream/a%2F..",
        "/stream/a%20b",
        "/health/repo/a/b/c",
    ] {
        let (status, answer) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(answer["code"], "INVALID_REPO_ID", "{path}");
    }
    let (status, answer) = get_json(&format!("{base}/stream/octocat/x?encoding=mp3")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("INVALID_QUERY"))
    );
    let put = client
        .put(format!("{base}/stream/octocat/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_manager_paths_are_reserved_and_such_owners_are_reachable_encoded() {
    let server = TestServer::start().await;
    let base = server.base_url();
    // `/stream/status` is the Stream Manager's, never a repository called `status`.
    let status = reqwest::get(format!("{base}/stream/status")).await.unwrap();
    assert_ne!(
        status
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    // The repository `status/site`, percent-encoded two ways.
    let mut listener = RepoListener::open(&base, "status%2Fsite").await;
    let connected = listener.next().await;
    assert_eq!(connected["data"]["repoId"], "status/site");
    let (code, played) = post_test(&base, "%73tatus/site", json!({"duration": 0.25})).await;
    assert_eq!(code, 200, "{played}");
    assert_eq!(played["repoId"], "status/site");
    assert_eq!(played["listenersNotified"], 1);
    assert_eq!(listener.next().await["type"], "audio_buffer");
    // A repository whose name is `test`: GET listens to it, POST .../test plays to it.
    let mut named_test = RepoListener::open(&base, "owner/test").await;
    named_test.next().await;
    let (code, played) = post_test(&base, "owner/test", json!({"duration": 0.25})).await;
    assert_eq!((code, played["repoId"].as_str()), (200, Some("owner/test")));
    assert_eq!(named_test.next().await["type"], "audio_buffer");
    server.shutdown().await;
}

#[tokio::test]
async fn health_counts_listeners_and_compositions() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let mut a = RepoListener::open(&base, "octo/one?clientId=a").await;
    let mut b = RepoListener::open(&base, "octo/one?clientId=b").await;
    let mut c = RepoListener::open(&base, "octo/two?clientId=c").await;
    for l in [&mut a, &mut b, &mut c] {
        l.next().await;
    }
    post_test(&base, "octo/one", json!({"duration": 0.25})).await;
    let (status, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["activeClients"], 3);
    assert_eq!(health["activeRepos"], 2);
    assert_eq!(health["totalBuffersCreated"], 1);
    assert!(health["memoryUsage"]["rss"].as_u64().unwrap() > 0);
    assert!(health["memoryUsage"]["used"].as_f64().unwrap() > 0.0);
    assert!(health["uptime"].as_f64().is_some());
    assert!(
        health["activeSessions"].as_i64().is_some(),
        "the contract's fields stay"
    );
    assert_eq!(health["clients"].as_array().unwrap().len(), 3);

    let (status, repo) = get_json(&format!("{base}/health/repo/Octo/One")).await;
    assert_eq!(status, 200);
    assert_eq!(repo["repoId"], "Octo/One");
    assert_eq!(repo["activeClients"], 2);
    let ids: Vec<&str> = repo["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"a") && ids.contains(&"b"));
    for client in repo["clients"].as_array().unwrap() {
        assert!(client["connectionDurationMs"].as_u64().is_some());
        assert!(client["connectedAt"].as_u64().unwrap() > 1_600_000_000_000);
    }
    assert!(repo["latestComposition"]["compositionId"].is_string());
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, repo) = get_json(&format!("{base}/health/repo/octo/one")).await;
        if repo["activeClients"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed listener is forgotten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_keep_readers_and_a_stalled_listener_is_cleaned_up() {
    let server = TestServer::start_with(|c| {
        c.repo.repo_heartbeat_ms = 300;
        c.repo.repo_idle_timeout_ms = 3_000;
        c.repo.repo_cleanup_interval_ms = 250;
    })
    .await;
    let base = server.base_url();
    let mut reader = RepoListener::open(&base, "octo/idle?clientId=reader&encoding=i16").await;
    reader.next().await;
    let heartbeat = reader.next_of("heartbeat").await;
    assert_eq!(
        heartbeat.as_object().unwrap().len(),
        2,
        "type and timestamp only"
    );
    assert!(heartbeat["timestamp"].as_u64().is_some());

    // A client that asks and then never reads: the compositions fill its socket buffers,
    // its queue stops moving, and the sweep disconnects it.
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    write!(
        stalled,
        "GET /stream/octo/idle?clientId=stalled HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let repo_clients = || async {
        let (_, repo) = get_json(&format!("{base}/health/repo/octo/idle")).await;
        repo["activeClients"].as_u64().unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while repo_clients().await < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for seed in 0..3 {
        let body = json!({"duration": 20, "density": 1, "instrumentType": "noise", "seed": seed});
        let (status, answer) = post_test(&base, "octo/idle", body).await;
        assert_eq!(status, 200, "{answer}");
        reader.next_of("audio_buffer").await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while repo_clients().await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled listener is disconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, repo) = get_json(&format!("{base}/health/repo/octo/idle")).await;
    assert_eq!(repo["clients"][0]["clientId"], "reader");
    // The reader is still served.
    reader.next_of("heartbeat").await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bandsync_repo_listeners_swept_total 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_render_queue_answers_503_and_identical_renders_are_shared() {
    let server = TestServer::start_with(|c| {
        c.repo.render_threads = 1;
        c.repo.render_queue = 1;
    })
    .await;
    let base = server.base_url();
    // Identical parameters asked twice at once: one render.
    let body = json!({"duration": 2, "density": 1, "instrumentType": "synth", "seed": 1});
    let (a, b) = tokio::join!(
        post_test(&base, "octo/busy", body.clone()),
        post_test(&base, "octo/busy", body.clone())
    );
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(a.1["compositionId"], b.1["compositionId"]);
    let shared = [&a.1, &b.1]
        .iter()
        .filter(|p| p["sharedRender"] == true)
        .count();
    assert_eq!(shared, 1, "{} {}", a.1, b.1);
    // Six different renders at once against one thread and a queue of one: some wait,
    // the rest are refused at once.
    let requests = (10..16).map(|seed| {
        let body = json!({"duration": 2, "density": 1, "instrumentType": "synth", "seed": seed});
        let base = base.clone();
        async move { post_test(&base, "octo/busy", body).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "{answers:?}");
    assert!(answers.iter().any(|(s, _)| *s == 200));
    for (_, answer) in busy {
        assert_eq!(answer["code"], "RENDER_BUSY");
        assert_eq!(answer["success"], false);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_listener_gets_each_composition_as_one_binary_frame() {
    use bandsync_protocol::audio::{decode_audio_frame, SampleFormat};
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start().await;
    let base = server.base_url();
    let url = format!(
        "ws://{}/stream/octo/binary?encoding=i16&clientId=ws-1",
        server.addr
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let connected = loop {
        if let Message::Text(t) = socket.next().await.unwrap().unwrap() {
            break serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
    };
    assert_eq!(connected["type"], "connected");
    assert_eq!(connected["data"]["clientId"], "ws-1");
    let mut sse = RepoListener::open(&base, "octo/binary").await;
    sse.next().await;

    let (status, played) = post_test(&base, "octo/binary", json!({"duration": 0.5})).await;
    assert_eq!(status, 200, "{played}");
    assert_eq!(played["listenersNotified"], 2);
    let header = loop {
        if let Message::Text(t) = socket.next().await.unwrap().unwrap() {
            break serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
    };
    assert_eq!(header["type"], "audio_buffer");
    assert_eq!(header["data"]["binary"], "BSA1");
    assert_eq!(header["data"]["buffer"]["encoding"], "i16");
    assert_eq!(header["data"]["buffer"]["channels"], json!([]));
    assert_eq!(header["data"]["compositionId"], played["compositionId"]);
    let Message::Binary(frame) = socket.next().await.unwrap().unwrap() else {
        panic!("the samples follow as a binary frame")
    };
    let (audio, samples) = decode_audio_frame(&frame).unwrap();
    assert_eq!(
        (audio.sample_rate, audio.channels, audio.format),
        (44_100, 2, SampleFormat::I16)
    );
    assert_eq!(samples.len(), 22_050 * 2 * 2);
    let exact = channels(&sse.next_of("audio_buffer").await);
    for (n, pair) in samples.chunks_exact(4).enumerate() {
        let left = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32767.0;
        let right = f32::from(i16::from_le_bytes([pair[2], pair[3]])) / 32767.0;
        assert!((left - exact[0][n]).abs() <= 1.0 / 32767.0 + 1e-6);
        assert!((right - exact[1][n]).abs() <= 1.0 / 32767.0 + 1e-6);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn test_renders_are_limited_per_client_address() {
    let server = TestServer::start_with(|c| c.repo.repo_tests_per_minute = 2).await;
    let base = server.base_url();
    for _ in 0..2 {
        let (status, answer) = post_test(&base, "octo/rate", json!({"duration": 0.25})).await;
        assert_eq!(status, 200, "{answer}");
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/stream/octo/rate/test"))
        .json(&json!({"duration": 0.25}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "RATE_LIMITED");
    // Listening is not limited by it.
    let mut listener = RepoListener::open(&base, "octo/rate").await;
    assert_eq!(listener.next().await["type"], "connected");
    server.shutdown().await;
}
