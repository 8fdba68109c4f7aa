//! The stream WebSocket (`/ws/stream`) over real sockets: the first `streamState`, every
//! REST change pushed in version order, the client messages and their errors, previews
//! relayed latest-wins from one producer, the sync session's members getting the same
//! changes, and a client that falls behind getting a fresh `streamState`.

mod common;
mod stage_support;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use stage_support::{Api, StageSocket, TOKEN};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn server() -> TestServer {
    TestServer::start_with(|c| c.share.bearer_token = Some(TOKEN.into())).await
}

#[tokio::test]
async fn a_client_gets_the_state_then_every_change_in_order() {
    let server = server().await;
    let api = Api::new(server.base_url());
    let (mut socket, first) = StageSocket::open(server.addr, "?session=band").await;
    let payload = &first["payload"];
    assert_eq!(payload["status"]["state"], "idle");
    assert_eq!(payload["status"]["viewers"], 1);
    assert_eq!(payload["layers"].as_array().unwrap().len(), 2);
    assert_eq!(first["version"], 0);
    assert!(first["timestamp"].as_f64().unwrap() > 1.6e12);

    let q = "?session=band";
    api.post(&format!("/stream/start{q}"), json!({})).await;
    let id = api.text_layer(q, "Verse 1").await;
    api.call(
        "PUT",
        &format!("/stream/layers/{id}{q}"),
        Some(json!({"content": {"type": "text", "content": "Verse 2"}})),
    )
    .await;
    api.call("PATCH", &format!("/stream/layers/{id}/visibility{q}"), None)
        .await;
    api.call("DELETE", &format!("/stream/layers/{id}{q}"), None)
        .await;
    api.post(&format!("/stream/pause{q}"), json!({})).await;
    api.post(&format!("/stream/reset{q}"), json!({})).await;
    // A change of another stream is not this client's.
    api.post("/stream/start", json!({})).await;

    let expected = [
        "stateUpdate",
        "layerUpdate",
        "layerUpdate",
        "layerVisibility",
        "layerUpdate",
        "stateUpdate",
        "streamState",
    ];
    let mut events = Vec::new();
    for (n, kind) in expected.iter().enumerate() {
        let event = socket.next().await;
        assert_eq!(event["type"], *kind, "event {n}: {event}");
        assert_eq!(event["version"], n as u64 + 1, "event {n}: {event}");
        events.push(event);
    }
    assert_eq!(events[0]["payload"]["state"], "live");
    assert_eq!(events[0]["payload"]["viewers"], 1);
    assert_eq!(events[1]["payload"]["id"], json!(id));
    assert_eq!(events[1]["payload"]["content"]["content"], "Verse 1");
    assert_eq!(events[1]["payload"]["deleted"], false);
    assert_eq!(events[2]["payload"]["content"]["content"], "Verse 2");
    assert_eq!(events[3]["payload"], json!({"id": id, "visible": false}));
    assert_eq!(
        events[4]["payload"],
        json!({"id": id, "visible": false, "deleted": true})
    );
    assert_eq!(events[5]["payload"]["state"], "paused");
    assert_eq!(events[6]["payload"]["status"]["state"], "idle");
    assert_eq!(events[6]["payload"]["layers"].as_array().unwrap().len(), 2);
    assert!(
        socket.try_next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );
}

#[tokio::test]
async fn messages_are_answered_and_bad_ones_refused_without_closing() {
    let server = server().await;
    let (mut socket, _) = StageSocket::open(server.addr, "").await;
    socket
        .send(json!({"type": "ping", "payload": {"t": 7}}))
        .await;
    let pong = socket.next().await;
    assert_eq!(
        (&pong["type"], &pong["payload"]["echo"]),
        (&json!("pong"), &json!({"t": 7}))
    );
    assert!(pong["payload"]["timestamp"].as_f64().unwrap() > 1.6e12);
    socket.send(json!({"type": "status"})).await;
    let status = socket.next().await;
    assert_eq!(
        status["payload"],
        json!({"viewers": 1, "producer": false, "authorized": false, "state": "idle"})
    );
    let refusals = [
        ("not json", "INVALID_MESSAGE"),
        ("{}", "INVALID_MESSAGE"),
        (r#"{"type":"dance"}"#, "UNKNOWN_TYPE"),
        (
            r#"{"type":"quality","payload":{"quality":"ultra"}}"#,
            "INVALID_PAYLOAD",
        ),
        (
            r#"{"type":"quality","payload":{"quality":"low"}}"#,
            "UNAUTHORIZED",
        ),
        (
            r#"{"type":"preview","payload":{"data":"aGk=","timestamp":1,"quality":"low"}}"#,
            "UNAUTHORIZED",
        ),
        (
            r#"{"type":"auth","payload":{"token":"guess"}}"#,
            "UNAUTHORIZED",
        ),
    ];
    for (text, code) in refusals {
        socket.send_text(text).await;
        let error = socket.next().await;
        assert_eq!(
            (&error["type"], &error["payload"]["code"]),
            (&json!("error"), &json!(code)),
            "{text}"
        );
    }
    socket
        .socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(socket.next().await["payload"]["code"], "INVALID_MESSAGE");

    socket
        .send(json!({"type": "auth", "payload": {"token": TOKEN}}))
        .await;
    let status = socket.next().await;
    assert_eq!(
        (&status["type"], &status["payload"]["authorized"]),
        (&json!("status"), &json!(true))
    );
    socket
        .send(json!({"type": "quality", "payload": {"quality": "medium"}}))
        .await;
    let quality = socket.next().await;
    assert_eq!(
        (&quality["type"], &quality["payload"]),
        (&json!("quality"), &json!({"quality": "medium"}))
    );
    assert_eq!(quality["version"], 1);
    let (_, status) = Api::anonymous(server.base_url())
        .get("/stream/status")
        .await;
    assert_eq!(status["quality"], "medium");
}

#[tokio::test]
async fn previews_go_latest_wins_from_one_producer() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        c.stream_manager.stream_preview_max_bytes = 64 * 1024;
    })
    .await;
    let (mut viewer, _) = StageSocket::open(server.addr, "?session=band").await;
    let url = format!("ws://{}/ws/stream?session=band", server.addr);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut producer = StageSocket { socket };
    assert_eq!(producer.next().await["type"], "streamState");
    let (mut rival, _) = StageSocket::open(server.addr, "?session=band").await;
    rival
        .send(json!({"type": "auth", "payload": {"token": TOKEN}}))
        .await;
    assert_eq!(rival.next().await["payload"]["authorized"], true);

    let frame = |n: u8| json!({"type": "preview", "payload": {"data": base64_of(&[n; 30]), "timestamp": n, "quality": "low"}});
    producer.send(frame(1)).await;
    let first = viewer.next_of("preview").await;
    assert_eq!(
        first["payload"],
        json!({"data": base64_of(&[1; 30]), "timestamp": 1.0, "quality": "low"})
    );
    assert!(first.get("version").is_none());
    rival.send(frame(9)).await;
    assert_eq!(
        rival.next_of("error").await["payload"]["code"],
        "PRODUCER_BUSY"
    );
    // Many frames while the viewer is not reading: when it reads, the newest arrives,
    // not a backlog.
    for n in 2..=40 {
        producer.send(frame(n)).await;
    }
    producer.send(json!({"type": "status"})).await;
    assert_eq!(
        producer.next_of("status").await["payload"]["producer"],
        true
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last = 0.0;
    let mut previews = 0;
    while let Some(message) = viewer.try_next(Duration::from_millis(500)).await {
        if message["type"] == "preview" {
            previews += 1;
            last = message["payload"]["timestamp"].as_f64().unwrap();
        }
    }
    assert_eq!(last, 40.0, "the newest frame arrives");
    assert!(
        previews < 39,
        "frames are replaced, not queued ({previews} arrived)"
    );

    let too_big = json!({"type": "preview", "payload": {"data": "A".repeat(64 * 1024 + 4), "timestamp": 1, "quality": "low"}});
    producer.send(too_big).await;
    assert_eq!(
        producer.next_of("error").await["payload"]["code"],
        "PAYLOAD_TOO_LARGE"
    );
    // Past the whole message's bound, the frame guard discards it as it arrives.
    let far_too_big = json!({"type": "preview", "payload": {"data": "A".repeat(100_000), "timestamp": 1, "quality": "low"}});
    producer.send(far_too_big).await;
    assert_eq!(
        producer.next_of("error").await["payload"]["code"],
        "PAYLOAD_TOO_LARGE"
    );
    producer.send(json!({"type": "preview", "payload": {"data": "not base64!", "timestamp": 1, "quality": "low"}})).await;
    assert_eq!(
        producer.next_of("error").await["payload"]["code"],
        "INVALID_PAYLOAD"
    );
    // The producer leaves: the role is free.
    drop(producer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    rival.send(frame(50)).await;
    let next = viewer.next_of("preview").await;
    assert_eq!(next["payload"]["timestamp"], 50.0);
}

/// The next contract envelope of type `kind` on a `/ws` socket, skipping the others.
async fn until_kind(member: &mut stage_support::Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, member.next())
            .await
            .expect("in time");
        if let Some(Ok(Message::Text(text))) = message {
            let event: Value = serde_json::from_str(text.as_str()).unwrap();
            if event["type"] == kind {
                return event;
            }
        }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn sync_session_members_receive_the_changes_as_stream_event() {
    let server = server().await;
    let (mut member, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    member
        .send(Message::Text(
            r#"{"type":"join_session","id":"j1","data":{"sessionId":"band"}}"#.into(),
        ))
        .await
        .unwrap();
    let api = Api::new(server.base_url());
    until_kind(&mut member, "snapshot").await;
    api.call(
        "PATCH",
        "/stream/layers/overlay/visibility?session=band",
        Some(json!({"visible": false})),
    )
    .await;
    api.call(
        "PATCH",
        "/stream/layers/overlay/visibility",
        Some(json!({"visible": false})),
    )
    .await;
    let event = until_kind(&mut member, "stream_event").await;
    assert!(event["timestamp"].is_number());
    assert_eq!(event["data"]["type"], "layerVisibility");
    assert_eq!(
        event["data"]["payload"],
        json!({"id": "overlay", "visible": false})
    );
    assert_eq!(event["data"]["version"], 1);
}

#[tokio::test]
async fn a_client_that_falls_behind_gets_a_fresh_state() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        c.stream_manager.stream_client_queue = 4;
    })
    .await;
    // A small receive window, and no reading: the server's writes stall, its queue fills.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/ws/stream?session=band", server.addr);
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let api = Api::new(server.base_url());
    let id = api.text_layer("?session=band", "x").await;
    // Past what the kernel's buffers absorb (a loopback send buffer grows to 4 MiB): 2,400
    // changes of 2,000 characters, from 8 writers at once.
    let long = "la ".repeat(660);
    let writers = (0..8).map(|w| {
        let api = Api::new(server.base_url());
        let (id, long) = (id.clone(), long.clone());
        tokio::spawn(async move {
            for n in 0..300 {
                let body =
                    json!({"content": {"type": "text", "content": format!("{w}/{n} {long}")}});
                let (status, _) = api
                    .call(
                        "PUT",
                        &format!("/stream/layers/{id}?session=band"),
                        Some(body),
                    )
                    .await;
                assert_eq!(status, 200);
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let mut versions = Vec::new();
    let mut states = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while versions.last() != Some(&2401) {
        let message = tokio::time::timeout_at(deadline, slow.next())
            .await
            .expect("in time");
        let Some(Ok(Message::Text(text))) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(text.as_str()).unwrap();
        if event["type"] == "streamState" {
            states += 1;
        }
        versions.push(event["version"].as_u64().unwrap());
    }
    assert!(
        states >= 2,
        "a fresh streamState after the first: {versions:?}"
    );
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "never backwards: {versions:?}"
    );
    assert!(
        versions.len() < 2402,
        "events were skipped for the snapshot: {versions:?}"
    );
    let metrics = reqwest::get(server.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("bandsync_stream_client_resyncs_total 0"),
        "resyncs counted"
    );
}
