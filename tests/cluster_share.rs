//! Music Share across instances: a sharer posting to A, receivers on B polling, over
//! WebSocket and over SSE; one session per id and the session cap across the cluster.

mod cluster_support;

use bandsync_client::{Credentials, Incoming, SseClient, WsClient};
use bandsync_protocol::client::ShareStart;
use bandsync_protocol::{ClientEvent, ErrorCode, ServerEvent};
use cluster_support::{cluster, Instance, WAIT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "Bearer Token";

async fn post(instance: &Instance, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", instance.http_url()))
        .header("Authorization", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(instance: &Instance, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", instance.http_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn chunk(seq: i64) -> Value {
    use base64::Engine as _;
    let samples: Vec<u8> = (0..800u32)
        .flat_map(|i| (i as f32 / 800.0).to_le_bytes())
        .collect();
    json!({
        "data": base64::engine::general_purpose::STANDARD.encode(samples),
        "sampleRate": 8000,
        "channels": 2,
        "timestamp": 1_700_000_000_000i64 + seq,
        "sequenceNumber": seq,
    })
}

/// Polls `path` on `instance` until `accept` takes the answer.
async fn poll_until(
    instance: &Instance,
    path: &str,
    accept: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(instance, path).await;
        if accept(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_on_one_instance_reaches_receivers_on_another() {
    // Every request comes from 127.0.0.1: lift the start rate; the cap is 3 sessions (2
    // per address and instance).
    let env = [
        ("BEARER_TOKEN", TOKEN),
        ("MAX_SESSIONS", "3"),
        ("SHARE_SESSIONS_PER_IP", "10"),
        ("SHARE_STARTS_PER_MINUTE", "100"),
    ];
    let Some((_redis, [a, b])) = cluster(&env) else {
        return;
    };
    // Push receivers on B, there before the share starts.
    let mut member = WsClient::connect(&b.ws_url()).await.unwrap();
    member
        .join_as("314159", None, None, &Credentials::share_token(TOKEN))
        .await
        .unwrap();
    let mut listener = SseClient::connect_with(
        &b.http_url(),
        "314159",
        None,
        &Credentials::share_token(TOKEN),
    )
    .await
    .unwrap();

    let (status, _) = post(&a, "/api/share/start", json!({"sessionId": "314159"})).await;
    assert_eq!(status, 200);
    // One session per id in the whole cluster.
    let (status, body) = post(&b, "/api/share/start", json!({"sessionId": "314159"})).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = post(&a, "/api/share/start", json!({"sessionId": "271828"})).await;
    assert_eq!(status, 200);
    let (status, _) = post(&b, "/api/share/start", json!({"sessionId": "161803"})).await;
    assert_eq!(status, 200);
    let (status, body) = post(&b, "/api/share/start", json!({"sessionId": "141421"})).await;
    assert_eq!(status, 503, "the cap is cluster-wide: {body}");

    poll_until(&b, "/api/share/314159/status", |s, v| {
        s == 200 && v["isActive"] == true
    })
    .await;
    // A counts B's receivers (a WebSocket member and an SSE listener) in listenerCount.
    poll_until(&a, "/api/share/314159/status", |s, v| {
        s == 200 && v["listenerCount"].as_u64().is_some_and(|n| n >= 2)
    })
    .await;
    let metadata =
        json!({"title": "Blue in Green", "artist": "Miles Davis", "elapsedSeconds": 1.5});
    assert_eq!(
        post(&a, "/api/share/314159/metadata", metadata).await.0,
        200
    );
    for seq in 0..3 {
        assert_eq!(post(&a, "/api/share/314159/audio", chunk(seq)).await.0, 200);
    }
    // Polling B.
    let polled = poll_until(&b, "/api/share/314159/metadata", |s, _| s == 200).await;
    assert_eq!(polled["title"], "Blue in Green");
    let audio = poll_until(&b, "/api/share/314159/audio?since=-1", |s, v| {
        s == 200 && v.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    assert_eq!(audio[2]["sequenceNumber"], 2);
    assert_eq!(
        audio[0]["data"],
        chunk(0)["data"],
        "the samples arrive intact"
    );
    // WebSocket on B: metadata and binary audio.
    let (mut got_metadata, mut frames) = (false, 0);
    let deadline = Instant::now() + WAIT;
    while !(got_metadata && frames == 3) {
        assert!(
            Instant::now() < deadline,
            "metadata {got_metadata}, frames {frames}"
        );
        match member.next_timeout(WAIT).await {
            Ok(Incoming::Frame { frame, .. }) => {
                if let ServerEvent::ShareMetadata(m) = frame.event {
                    got_metadata = m.metadata["artist"] == "Miles Davis";
                }
            }
            // Audio reaches WebSocket members as binary frames.
            Err(bandsync_client::ClientError::UnexpectedBinary(_)) => frames += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // SSE on B: audio chunks as JSON.
    let mut sse_chunks = 0;
    while sse_chunks < 3 {
        let event = listener.next_event(WAIT).await.unwrap().expect("open");
        if let ServerEvent::AudioChunk(c) = event.frame.event {
            assert_eq!(c.session_id, "314159");
            sse_chunks += 1;
        }
    }
    // The end reaches B too.
    assert_eq!(post(&a, "/api/share/314159/stop", json!({})).await.0, 200);
    poll_until(&b, "/api/share/314159/status", |s, v| {
        s == 200 && v["isActive"] == false
    })
    .await;
    // And the id is free again, anywhere.
    let (status, body) = post(&b, "/api/share/start", json!({"sessionId": "314159"})).await;
    assert_eq!(status, 200, "{body}");

    // A WebSocket sharer's start counts against the same cluster-wide cap (3 active).
    let mut sharer = WsClient::connect(&a.ws_url()).await.unwrap();
    sharer.join("577215", None, None).await.unwrap();
    let start = || {
        ClientEvent::ShareStart(ShareStart {
            token: TOKEN.into(),
        })
    };
    let refused = sharer.request(start(), WAIT).await.unwrap();
    match refused.event {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::SessionLimit),
        other => panic!("the cap is full: {other:?}"),
    }
    assert_eq!(post(&a, "/api/share/271828/stop", json!({})).await.0, 200);
    let started = sharer.request(start(), WAIT).await.unwrap();
    assert!(
        matches!(started.event, ServerEvent::ShareStarted(_)),
        "{:?}",
        started.event
    );
    // Claimed in Redis: the cap is full again for a REST start on the other instance.
    poll_until(&b, "/api/share/577215/status", |s, v| {
        s == 200 && v["isActive"] == true
    })
    .await;
    let (status, body) = post(&b, "/api/share/start", json!({"sessionId": "662607"})).await;
    assert_eq!(status, 503, "{body}");
}
