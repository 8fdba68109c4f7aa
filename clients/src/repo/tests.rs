//! The repository-stream client against a fake server on a real socket: the bytes it
//! sends, the messages it parses out of awkwardly cut writes, and every refusal.

use super::*;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(5);

/// Serves one HTTP response: `head_extra` headers, then `body` in writes of `cut` bytes,
/// then closes. Hands back the raw request (head and body) it got.
async fn fake_http(
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    cut: usize,
) -> (String, oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then as much body as Content-Length says.
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "request ended early");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        for piece in body.chunks(cut.max(1)) {
            tcp.write_all(piece).await.unwrap();
            tcp.flush().await.unwrap();
        }
        tcp.shutdown().await.unwrap();
    });
    (base, rx)
}

fn f32_base64(samples: &[f32]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn audio_buffer_json(left: &[f32], right: &[f32]) -> String {
    serde_json::json!({
        "type": "audio_buffer",
        "timestamp": 1_700_000_000_000u64,
        "data": {
            "buffer": {
                "sampleRate": 44100, "length": left.len(),
                "duration": left.len() as f64 / 44100.0, "numberOfChannels": 2,
                "encoding": "f32", "channels": [f32_base64(left), f32_base64(right)],
            },
            "params": MusicalParams::default(),
            "repoId": "octocat/hello-world",
            "trigger": {"kind": "test", "summary": "a test"},
            "compositionId": "0123456789abcdef",
        }
    })
    .to_string()
}

#[test]
fn reserved_first_segments_are_percent_encoded() {
    assert_eq!(
        repo_path("octocat/hello-world").unwrap(),
        "octocat/hello-world"
    );
    assert_eq!(repo_path("status/site").unwrap(), "%73tatus/site");
    assert_eq!(repo_path("layers").unwrap(), "%6Cayers");
    assert_eq!(repo_path("site/status").unwrap(), "site/status");
    assert!(matches!(
        repo_path("a/b/c"),
        Err(ClientError::InvalidUrl { .. })
    ));
    let options = StreamOptions {
        client_id: Some("cli 1".into()),
        encoding: Some(Encoding::I16),
        ..StreamOptions::default()
    };
    assert_eq!(
        stream_url("http://h:1/", "o/r", &options).unwrap(),
        "http://h:1/stream/o/r?clientId=cli+1&encoding=i16"
    );
    assert_eq!(
        stream_url("http://h:1", "r", &StreamOptions::default()).unwrap(),
        "http://h:1/stream/r"
    );
}

#[tokio::test]
async fn messages_are_parsed_from_small_writes_and_decoded() {
    let left: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.01).sin()).collect();
    let right: Vec<f32> = left.iter().map(|s| -s).collect();
    let audio = audio_buffer_json(&left, &right);
    let body = format!(
        ": hi\n\ndata: {{\"type\":\"connected\",\"timestamp\":1,\"data\":{{\"message\":\"Connected\",\"clientId\":\"c1\",\"repoId\":\"octocat/hello-world\"}}}}\n\ndata: {audio}\n\ndata: {{\"type\":\"heartbeat\",\"timestamp\":2}}\n\n"
    );
    let (base, request) = fake_http("200 OK", "text/event-stream", body.into_bytes(), 997).await;
    let options = StreamOptions {
        client_id: Some("c1".into()),
        encoding: Some(Encoding::F32),
        ..StreamOptions::default()
    };
    let mut stream = RepoStream::connect(&base, "octocat/hello-world", &options)
        .await
        .unwrap();
    let request = request.await.unwrap().to_ascii_lowercase();
    assert!(
        request.starts_with("get /stream/octocat/hello-world?clientid=c1&encoding=f32 http/1.1"),
        "{request}"
    );
    assert!(request.contains("accept: text/event-stream"), "{request}");

    let connected = stream.next_message(WAIT).await.unwrap().unwrap();
    assert!(matches!(
        connected.message,
        StreamMessage::Connected { ref data, .. } if data.client_id == "c1"
    ));
    let message = stream.next_message(WAIT).await.unwrap().unwrap();
    assert_eq!(message.wire_bytes, "data: \n\n".len() + audio.len());
    let StreamMessage::AudioBuffer { data, .. } = message.message else {
        panic!("expected audio_buffer")
    };
    assert_eq!(data.composition_id.as_deref(), Some("0123456789abcdef"));
    assert_eq!(decode_channels(&data.buffer).unwrap(), [left, right]);
    assert!(matches!(
        stream.next_message(WAIT).await.unwrap().unwrap().message,
        StreamMessage::Heartbeat { .. }
    ));
    assert!(stream.next_message(WAIT).await.unwrap().is_none());
    assert!(stream.next_message(WAIT).await.unwrap().is_none());
    assert!(stream.bytes_received() > audio.len() as u64);
}

#[tokio::test]
async fn refusals_carry_the_servers_code() {
    let error =
        br#"{"success":false,"error":"repoId must be ...","code":"INVALID_REPO_ID","timestamp":1}"#;
    let (base, _request) =
        fake_http("400 Bad Request", "application/json", error.to_vec(), 64).await;
    let err = RepoStream::connect(&base, "x", &StreamOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 400, ref code, .. } if code == "INVALID_REPO_ID"),
        "{err}"
    );
    let (base, _request) = fake_http("502 Bad Gateway", "text/html", b"<html>".to_vec(), 64).await;
    let err = RepoStream::connect(&base, "x", &StreamOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::HttpStatus { status: 502, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_message_past_the_limit_ends_the_stream() {
    let body = format!("data: {}\n\n", "7".repeat(100_000)).into_bytes();
    let (base, _request) = fake_http("200 OK", "text/event-stream", body, 4096).await;
    let options = StreamOptions {
        max_message_bytes: 50_000,
        ..StreamOptions::default()
    };
    let mut stream = RepoStream::connect(&base, "x", &options).await.unwrap();
    let err = stream.next_raw(WAIT).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MessageTooLarge { limit: 50_000 }),
        "{err}"
    );
    assert!(stream.bytes_received() < 60_000, "it stopped reading");
    assert!(stream.next_raw(WAIT).await.unwrap().is_none());
}

#[tokio::test]
async fn undecodable_messages_are_quoted_short() {
    let body = format!(
        "data: {{\"type\":\"nope\",\"pad\":\"{}\"}}\n\n",
        "p".repeat(5000)
    );
    let (base, _request) = fake_http("200 OK", "text/event-stream", body.into_bytes(), 512).await;
    let mut stream = RepoStream::connect(&base, "x", &StreamOptions::default())
        .await
        .unwrap();
    let err = stream.next_message(WAIT).await.unwrap_err();
    let ClientError::Decode { text, .. } = err else {
        panic!("expected a decode error, got {err}")
    };
    assert!(text.len() < 400 && text.ends_with("bytes)"), "{text}");
}

#[tokio::test]
async fn post_test_sends_the_request_and_reads_the_answer() {
    let answer = serde_json::json!({
        "success": true, "repoId": "octocat/hello-world", "compositionId": "ab",
        "params": MusicalParams::default(), "duration": 5.0, "samples": 220500,
        "sampleRate": 44100, "numberOfChannels": 2, "renderTimeMs": 3.5,
        "listenersNotified": 2, "sharedRender": false,
    });
    let (base, request) = fake_http(
        "200 OK",
        "application/json",
        answer.to_string().into_bytes(),
        40,
    )
    .await;
    let body = TestRequest {
        tempo: Some(90.0),
        ..TestRequest::default()
    };
    let http = http_client().unwrap();
    let got = post_test(&http, &base, "octocat/hello-world", &body)
        .await
        .unwrap();
    assert_eq!((got.samples, got.listeners_notified), (220_500, 2));
    let request = request.await.unwrap();
    assert!(
        request.starts_with("POST /stream/octocat/hello-world/test HTTP/1.1"),
        "{request}"
    );
    assert!(request.ends_with(r#"{"tempo":90.0}"#), "{request}");

    let refusal = br#"{"success":false,"error":"tempo must be between 40 and 240 beats per minute","code":"INVALID_PARAMS","timestamp":1}"#;
    let (base, _request) =
        fake_http("400 Bad Request", "application/json", refusal.to_vec(), 40).await;
    let err = post_test(&http, &base, "x", &body).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "HTTP 400 INVALID_PARAMS: tempo must be between 40 and 240 beats per minute"
    );
}
