//! [`WsClient`] against a scripted fake server on loopback: id assignment, reply matching,
//! buffering order, close codes, timeouts. The real server is tested from the workspace's
//! `tests/`; these pin down the client's own behaviour.

use super::*;
use bandsync_protocol::error::ErrorCode;
use bandsync_protocol::server::{ErrorEvent, HeartbeatResponse, RoomStats, ServerEvent, Snapshot};
use bandsync_protocol::{decode_client_frame, encode_server_frame, ClientFrame, Role, Transport};
use std::future::Future;
use tokio::net::TcpListener;

type ServerSocket = WebSocketStream<TcpStream>;

const T: f64 = 1_700_000_000_000.0;
const WAIT: Duration = Duration::from_secs(5);

/// Accepts one WebSocket connection on an ephemeral port and runs `script` on it.
async fn fake_server<F, Fut>(script: F) -> String
where
    F: FnOnce(ServerSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        script(ws).await;
    });
    format!("ws://{addr}/ws")
}

async fn recv(ws: &mut ServerSocket) -> ClientFrame {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => return decode_client_frame(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn reply(ws: &mut ServerSocket, event: ServerEvent, id: Option<&RequestId>) {
    let text = encode_server_frame(&event, id, T);
    ws.send(Message::text(text)).await.unwrap();
}

fn stats(members: u64) -> ServerEvent {
    ServerEvent::RoomStats(RoomStats {
        session_id: "band".into(),
        members,
        followers: members,
        listeners: 0,
        leader_id: None,
    })
}

fn snapshot(client_id: &str) -> ServerEvent {
    ServerEvent::Snapshot(Snapshot {
        session_id: "band".into(),
        client_id: client_id.into(),
        role: Role::Follower,
        resume_token: "secret".into(),
        leader_id: None,
        members: vec![],
        transport: Transport::new(T),
        message: String::new(),
        version: 0,
        server_time: T,
        resumed: false,
        members_truncated: false,
        replay_count: 0,
        scheduled: None,
        sheet: None,
    })
}

fn frame_of(incoming: Incoming) -> ServerFrame {
    match incoming {
        Incoming::Frame { frame, .. } => frame,
        closed => panic!("expected a frame, got {closed:?}"),
    }
}

#[tokio::test]
async fn request_matches_its_reply_and_buffers_the_rest_in_order() {
    let url = fake_server(|mut ws| async move {
        let join = recv(&mut ws).await;
        assert_eq!(join.id, Some(RequestId::from(1)));
        assert_eq!(join.event.type_name(), "join_session");
        reply(&mut ws, stats(1), None).await;
        reply(&mut ws, stats(2), Some(&RequestId::from(99))).await;
        reply(&mut ws, snapshot("c1"), join.id.as_ref()).await;
        reply(&mut ws, stats(3), None).await;
        // Second join: refused.
        let join = recv(&mut ws).await;
        assert_eq!(join.id, Some(RequestId::from(2)));
        let error = ErrorEvent {
            code: ErrorCode::InvalidSessionId,
            message: "bad id".into(),
        };
        reply(&mut ws, ServerEvent::Error(error), join.id.as_ref()).await;
        let _ = ws.next().await;
    })
    .await;

    let mut client = WsClient::connect(&url).await.unwrap();
    let snap = client.join("band", None, Some("ada")).await.unwrap();
    assert_eq!(snap.client_id, "c1");
    assert_eq!(client.buffered_len(), 2);
    let members = |i: Incoming| match frame_of(i).event {
        ServerEvent::RoomStats(s) => s.members,
        other => panic!("{other:?}"),
    };
    assert_eq!(members(client.next_timeout(WAIT).await.unwrap()), 1);
    assert_eq!(members(client.next_timeout(WAIT).await.unwrap()), 2);
    assert_eq!(members(client.next_timeout(WAIT).await.unwrap()), 3);

    let err = client.join("band", None, None).await.unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::InvalidSessionId), "{err}");
}

#[tokio::test]
async fn surfaces_the_close_code_and_stays_closed() {
    let url = fake_server(|mut ws| async move {
        let frame = CloseFrame {
            code: CloseCode::Policy,
            reason: "rate limit".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;

    let mut client = WsClient::connect(&url).await.unwrap();
    for _ in 0..2 {
        match client.next_timeout(WAIT).await.unwrap() {
            Incoming::Closed { code, reason } => {
                assert_eq!(code, Some(1008));
                assert_eq!(reason, "rate limit");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(client.is_closed());
    let err = client
        .request(ClientEvent::SyncRequest, WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Closed { .. } | ClientError::WebSocket(_)),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_from_the_server_is_an_error_but_not_fatal() {
    let url = fake_server(|mut ws| async move {
        // Echo what the client sent, which is garbage, then a valid frame.
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("expected text")
        };
        assert_eq!(text.as_str(), "{not json");
        let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
            panic!("expected binary")
        };
        assert_eq!(&bytes[..], &[0xff, 0x00]);
        ws.send(Message::text(text)).await.unwrap();
        ws.send(Message::binary(bytes)).await.unwrap();
        reply(&mut ws, stats(1), None).await;
        let _ = ws.next().await;
    })
    .await;

    let mut client = WsClient::connect(&url).await.unwrap();
    client.send_raw_text("{not json".into()).await.unwrap();
    client.send_raw_binary(vec![0xff, 0x00]).await.unwrap();
    let err = client.next_timeout(WAIT).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { ref text, .. } if text == "{not json"));
    let err = client.next_timeout(WAIT).await.unwrap_err();
    assert!(matches!(err, ClientError::UnexpectedBinary(2)), "{err}");
    let frame = frame_of(client.next_timeout(WAIT).await.unwrap());
    assert_eq!(frame.event.type_name(), "room_stats");
}

#[tokio::test]
async fn wait_for_skips_and_next_times_out() {
    let url = fake_server(|mut ws| async move {
        for members in 1..=3 {
            reply(&mut ws, stats(members), None).await;
        }
        let _ = ws.next().await;
    })
    .await;

    let mut client = WsClient::connect(&url).await.unwrap();
    let frame = client
        .wait_for(
            |f| matches!(&f.event, ServerEvent::RoomStats(s) if s.members == 3),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(frame.timestamp, T);
    let err = client
        .next_timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let err = client
        .wait_for(|_| true, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn heartbeat_yields_a_clock_sample_and_ids_keep_counting() {
    let url = fake_server(|mut ws| async move {
        let explicit = recv(&mut ws).await;
        assert_eq!(explicit.id, Some(RequestId::from("mine")));
        let hb = recv(&mut ws).await;
        assert_eq!(hb.id, Some(RequestId::from(1)));
        let ClientEvent::Heartbeat(h) = hb.event else {
            panic!("expected heartbeat")
        };
        // A server clock exactly 10 s ahead.
        let t = h.t0 + 10_000.0;
        let r = HeartbeatResponse {
            t0: h.t0,
            t1: t,
            t2: t,
        };
        reply(&mut ws, ServerEvent::HeartbeatResponse(r), hb.id.as_ref()).await;
        let next = recv(&mut ws).await;
        assert_eq!(next.id, Some(RequestId::from(2)));
        let _ = ws.next().await;
    })
    .await;

    let mut client = WsClient::connect(&url).await.unwrap();
    client
        .send_with_id(ClientEvent::SyncRequest, Some("mine".into()))
        .await
        .unwrap();
    let sample = client.heartbeat(WAIT).await.unwrap();
    assert!(sample.round_trip >= 0.0 && sample.round_trip < 1_000.0);
    assert!((sample.offset - 10_000.0).abs() <= sample.round_trip / 2.0 + 1e-6);
    assert_eq!(
        client
            .send(ClientEvent::Pause(Default::default()))
            .await
            .unwrap(),
        RequestId::from(2)
    );
    client.close().await.unwrap();
}
