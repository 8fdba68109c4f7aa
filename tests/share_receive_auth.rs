//! Issue 7, finding 4: a share's metadata and audio reach only receivers that present the
//! share's authorization, over WebSocket (`shareToken` in `join_session`) and SSE
//! (`?shareToken=`, or the `Authorization` header); the others still follow the sync
//! session (snapshot, room_stats, ...) but get none of the share's data, not even on a
//! late join's burst. Before the fix, anyone who joined `/ws` or opened `/sse/600000` got
//! the share's metadata and audio without the token that `GET .../metadata` demands.

mod common;
mod share_support;
mod support;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use share_support::{chunk, seed_metadata, share_server, tiny_samples, Api, TOKEN};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const ID: &str = "600000";
/// How long a receiver is watched for share data that must (or must not) arrive.
const WINDOW: Duration = Duration::from_millis(800);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one receiver got in a window: event types in order, and binary (audio) frames.
#[derive(Debug, Default)]
struct Seen {
    types: Vec<String>,
    audio_frames: usize,
    errors: Vec<Value>,
}

impl Seen {
    fn has(&self, kind: &str) -> bool {
        self.types.iter().any(|t| t == kind)
    }
    fn share_data(&self) -> bool {
        self.audio_frames > 0
            || self.has("share_metadata")
            || self.has("audio_chunk")
            || self.has("share_ended")
    }
}

/// A started share with metadata and two chunks of audio, so late joiners get a burst.
async fn running_share(server: &TestServer) -> Api {
    let sharer = Api::new(server);
    sharer.start_ok(ID).await;
    sharer
        .post_metadata(ID, &seed_metadata("Secret Song", 1.0))
        .await
        .ok();
    for seq in 0..2 {
        sharer
            .post_audio_ok(ID, &chunk(seq, 8000, 1, &tiny_samples(seq, 80)))
            .await;
    }
    sharer
}

async fn join_ws(server: &TestServer, share_token: Option<&str>) -> (Socket, Seen) {
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let mut data = json!({"sessionId": ID, "name": "receiver"});
    if let Some(token) = share_token {
        data["shareToken"] = json!(token);
    }
    let join = json!({"type": "join_session", "id": 1, "data": data});
    socket.send(Message::text(join.to_string())).await.unwrap();
    let seen = watch_ws(&mut socket, WINDOW).await;
    (socket, seen)
}

async fn watch_ws(socket: &mut Socket, window: Duration) -> Seen {
    let mut seen = Seen::default();
    let until = Instant::now() + window;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, socket.next()).await {
        match message.unwrap() {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                let kind = value["type"].as_str().unwrap().to_owned();
                if kind == "error" {
                    seen.errors.push(value);
                }
                seen.types.push(kind);
            }
            Message::Binary(_) => seen.audio_frames += 1,
            _ => {}
        }
    }
    seen
}

/// Opens `/sse/600000{query}` and reads it for a window: (status, event types).
async fn watch_sse(
    server: &TestServer,
    query: &str,
    authorization: Option<&str>,
) -> (u16, Seen, Option<reqwest::Response>) {
    let mut request = reqwest::Client::new().get(server.http_url(&format!("/sse/{ID}{query}")));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return (status, Seen::default(), Some(response));
    }
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let until = Instant::now() + WINDOW;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(until, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let mut seen = Seen::default();
    for line in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let value: Value = serde_json::from_str(line.trim()).unwrap();
        seen.types.push(value["type"].as_str().unwrap().to_owned());
    }
    (status, seen, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_members_without_the_share_token_get_no_share_data() {
    let server = share_server(|_| {}).await;
    let sharer = running_share(&server).await;
    let (mut outsider, seen) = join_ws(&server, None).await;
    assert!(seen.has("snapshot"), "{seen:?}");
    assert!(
        !seen.share_data(),
        "the join burst leaked share data: {seen:?}"
    );
    let (mut insider, seen) = join_ws(&server, Some(TOKEN)).await;
    assert!(seen.has("snapshot"), "{seen:?}");
    assert!(seen.has("share_metadata"), "{seen:?}");
    assert_eq!(seen.audio_frames, 2, "the burst: {seen:?}");

    // Live data, then the end of the share: only the insider gets it; the outsider still
    // follows the session (room_stats of the insider's arrival).
    sharer
        .post_metadata(ID, &seed_metadata("Secret Song", 2.0))
        .await
        .ok();
    sharer
        .post_audio_ok(ID, &chunk(2, 8000, 1, &tiny_samples(2, 80)))
        .await;
    sharer.stop(ID).await.ok();
    let inside = watch_ws(&mut insider, WINDOW).await;
    assert!(
        inside.has("share_metadata") && inside.has("share_ended"),
        "{inside:?}"
    );
    assert_eq!(inside.audio_frames, 1, "{inside:?}");
    let outside = watch_ws(&mut outsider, WINDOW).await;
    assert!(!outside.share_data(), "{outside:?}");
    assert!(
        outside.has("room_stats"),
        "sync events still flow: {outside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_share_token_is_refused_with_unauthorized() {
    let server = share_server(|_| {}).await;
    running_share(&server).await;
    let (mut socket, seen) = join_ws(&server, Some("Bearer guess")).await;
    assert!(!seen.share_data() && !seen.has("snapshot"), "{seen:?}");
    assert_eq!(seen.errors.len(), 1, "{seen:?}");
    assert_eq!(seen.errors[0]["data"]["code"], "UNAUTHORIZED");
    assert_eq!(seen.errors[0]["id"], 1);
    // The socket stays open: a join with the right token works.
    let join =
        json!({"type": "join_session", "id": 2, "data": {"sessionId": ID, "shareToken": TOKEN}});
    socket.send(Message::text(join.to_string())).await.unwrap();
    let seen = watch_ws(&mut socket, WINDOW).await;
    assert!(
        seen.has("snapshot") && seen.has("share_metadata"),
        "{seen:?}"
    );

    let (status, _, response) = watch_sse(&server, "?shareToken=guess", None).await;
    assert_eq!(status, 401);
    let body: Value = response.unwrap().json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    assert_eq!(body["success"], false, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_listeners_need_the_share_token_in_the_url_or_the_header() {
    let server = share_server(|_| {}).await;
    running_share(&server).await;
    let (status, seen, _) = watch_sse(&server, "", None).await;
    assert_eq!(status, 200);
    assert!(seen.has("snapshot"), "{seen:?}");
    assert!(!seen.share_data(), "{seen:?}");

    let (status, seen, _) = watch_sse(&server, "?shareToken=Bearer%20Token", None).await;
    assert_eq!(status, 200);
    assert!(
        seen.has("share_metadata") && seen.has("audio_chunk"),
        "{seen:?}"
    );

    let (status, seen, _) = watch_sse(&server, "", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(
        seen.has("share_metadata") && seen.has("audio_chunk"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_share_data_skips_unauthorized_listeners() {
    let server = share_server(|_| {}).await;
    let sharer = Api::new(&server);
    sharer.start_ok(ID).await;
    // Both listen before anything is shared; then metadata and audio arrive live.
    let outsider = tokio::spawn({
        let url = server.base_url();
        async move { live_types(&url, "").await }
    });
    let insider = tokio::spawn({
        let url = server.base_url();
        async move { live_types(&url, "?shareToken=Bearer%20Token").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sharer
        .post_metadata(ID, &seed_metadata("Live", 1.0))
        .await
        .ok();
    sharer
        .post_audio_ok(ID, &chunk(0, 8000, 1, &tiny_samples(0, 80)))
        .await;
    let outsider = outsider.await.unwrap();
    let insider = insider.await.unwrap();
    assert!(
        insider.contains(&"share_metadata".to_owned()),
        "{insider:?}"
    );
    assert!(insider.contains(&"audio_chunk".to_owned()), "{insider:?}");
    assert!(
        !outsider
            .iter()
            .any(|t| t == "share_metadata" || t == "audio_chunk"),
        "{outsider:?}"
    );
}

/// Event types an SSE stream delivers in its first 1.2 s.
async fn live_types(base: &str, query: &str) -> Vec<String> {
    let response = reqwest::get(format!("{base}/sse/{ID}{query}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let until = Instant::now() + Duration::from_millis(1200);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(until, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| {
            serde_json::from_str::<Value>(l.trim()).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_authenticated_mode_a_token_for_the_session_opens_the_share() {
    const SECRET: &str = "the share test's secret, 32+ bytes";
    let server = share_server(|c| c.jwt_secret = Some(SECRET.into())).await;
    running_share(&server).await;
    let spec = |session: &str| bandsync_client::token::TokenSpec {
        session: session.into(),
        leader: false,
        ttl: Duration::from_secs(120),
        sub: None,
    };
    let key = bandsync_client::token::SigningKey::Secret(SECRET.into());
    let jwt = bandsync_client::token::mint(&key, &spec(ID)).unwrap();

    // WebSocket: the JWT on the URL, no shareToken.
    let url = format!("{}?token={jwt}", server.ws_url());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = json!({"type": "join_session", "id": 1, "data": {"sessionId": ID}});
    socket.send(Message::text(join.to_string())).await.unwrap();
    let seen = watch_ws(&mut socket, WINDOW).await;
    assert!(
        seen.has("snapshot") && seen.has("share_metadata"),
        "{seen:?}"
    );
    assert_eq!(seen.audio_frames, 2, "{seen:?}");

    // SSE: the JWT as a bearer token; without one the stream is refused outright.
    let (status, seen, _) = watch_sse(&server, "", Some(&format!("Bearer {jwt}"))).await;
    assert_eq!(status, 200);
    assert!(
        seen.has("share_metadata") && seen.has("audio_chunk"),
        "{seen:?}"
    );
    let (status, _, _) = watch_sse(&server, "?shareToken=Bearer%20Token", None).await;
    assert_eq!(status, 401, "the share token alone is no session token");
}
