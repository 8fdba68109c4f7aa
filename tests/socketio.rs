//! The `/socket.io/` endpoint as the old Socket.IO server's apps meet it: the real
//! `socket.io-client` (npm, pinned in `tests/socketio/package-lock.json`) runs the scenarios
//! of `tests/socketio/scenarios/` against a server started in-process on `127.0.0.1:0`.
//! Each scenario uses the client as an app does (`io(url)`, `socket.emit(type, data)`,
//! `socket.on(event, ...)`); only the URL differs from an app of the old server.
//!
//! Also here: the Engine.IO layer's HTTP answers checked over raw HTTP, and a Socket.IO
//! client sharing a session with a native `/ws` client (the Rust client of `clients/`).
//! Needs node on PATH (and npm once); see `tests/socketio_support`.

mod common;
mod socketio_support;

use bandsync_client::token::{mint, SigningKey, TokenSpec};
use bandsync_client::WsClient;
use bandsync_protocol::client::{SetRole, SetTempo, UpdateMessage};
use bandsync_protocol::{ClientEvent, ErrorCode, Role, ServerEvent, ServerFrame};
use common::TestServer;
use socketio_support::{node_ready, run_scenario, spawn_scenario, Outcome};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs `scenario` against a fresh server configured by `adjust`.
async fn scenario(name: &str, adjust: impl FnOnce(&mut bandsync::Config)) {
    if !node_ready().await {
        return;
    }
    let server = TestServer::start_with(adjust).await;
    run_scenario(name, &[server.base_url()], &[]).await;
    // The gate (no engine panic, a clean stop) after the scenario's own verdict.
    server.shutdown().await;
}

/// `join_session` answered by `snapshot` as event and as ack, `room_stats` to both
/// members, `heartbeat` and `sync_request` with their ids echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_io_app_joins_and_gets_snapshot_room_stats_and_heartbeats() {
    scenario("session", |_| {}).await;
}

/// NOT_LEADER and LEADER_TAKEN as event and ack; the leader's five commands reach every
/// member as `state_update` with version + 1 and are acked with the state; the seat passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_rules_hold_for_socket_io_clients() {
    scenario("leader", |_| {}).await;
}

/// `scroll_tick` every 16 ms: consecutive seqs, the mean interval, beats from the anchor,
/// and none after a pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_clients_get_ticks_every_16_ms() {
    scenario("ticks", |_| {}).await;
}

/// Long-polling only, WebSocket only, and the default upgrade, in one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_websocket_and_upgrading_clients_share_a_session() {
    scenario("transports", |_| {}).await;
}

/// A dropped connection (engine closed; TCP destroyed) recovers with its id, seat and the
/// missed `state_update`s; `disconnect()` frees the seat at once and is not recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_recovers_its_id_seat_and_missed_events() {
    scenario("recovery", |_| {}).await;
}

/// After RECOVERY_WINDOW_MS the socket is new, in no session, and its seat was freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_back_after_the_recovery_window_is_a_new_one() {
    scenario("recovery_expired", |c| c.recovery_window_ms = 400).await;
}

/// INVALID_TEMPO, UNKNOWN_TYPE, INVALID_MESSAGE, and another namespace's connect_error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_and_other_namespaces_are_refused() {
    scenario("errors", |_| {}).await;
}

/// Another namespace on the connection the main socket already uses (socket.io-client
/// multiplexes `io(url)` and `io(url + '/admin')` onto one Manager): CONNECT_ERROR too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespace_on_a_multiplexed_connection_is_refused() {
    scenario("namespace", |_| {}).await;
}

/// A small rate limit: 5 frames a second, disconnected at the 4th violation.
fn small_rate_limit(c: &mut bandsync::Config) {
    c.rate_limit_max_requests = 5;
    c.rate_limit_window_ms = 1000;
    c.rate_limit_close_after = 3;
}

/// `rate_limit_exceeded` (as acks and events), then "io server disconnect" after
/// RATE_LIMIT_CLOSE_AFTER violations; no reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_then_disconnects_a_socket_io_client() {
    scenario("rate_limit", small_rate_limit).await;
}

/// The same for a flood sent without waiting for replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_socket_io_client_hears_why_it_is_disconnected() {
    scenario("rate_limit_flood", small_rate_limit).await;
}

/// The authenticated mode: `auth: {token}` and `?token=` admit, a bad token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_clients_present_tokens_in_the_authenticated_mode() {
    const SECRET: &str = "socket-io-test-secret-of-enough-length";
    if !node_ready().await {
        return;
    }
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let session = "auth-band";
    let token = |leader| {
        let spec = TokenSpec {
            session: session.into(),
            leader,
            ttl: Duration::from_secs(600),
            sub: None,
        };
        mint(&SigningKey::Secret(SECRET.into()), &spec).expect("mint")
    };
    let (leader, follower) = (token(true), token(false));
    let env = [
        ("BANDSYNC_LEADER_TOKEN", leader.as_str()),
        ("BANDSYNC_FOLLOWER_TOKEN", follower.as_str()),
    ];
    run_scenario("auth", &[server.base_url(), session.into()], &env).await;
    server.shutdown().await;
}

/// A bad `?token=` on the URL: the spec promises the same connect_error as a bad `auth`
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_token_is_a_connect_error_with_unauthorized() {
    scenario("auth_bad_url", |c| {
        c.jwt_secret = Some("socket-io-test-secret-of-enough-length".into())
    })
    .await;
}

/// How long the `/ws` side waits for the Socket.IO side's next step.
const STEP: Duration = Duration::from_secs(10);

/// The next frame `pick` accepts on the `/ws` client; on none, the test fails with what
/// the node scenario printed (its FAIL line says more than a timeout here).
async fn step(
    ws: &mut WsClient,
    node: &mut JoinHandle<Outcome>,
    what: &str,
    pick: impl FnMut(&ServerFrame) -> bool,
) -> ServerFrame {
    match ws.wait_for(pick, STEP).await {
        Ok(frame) => frame,
        Err(error) => {
            let out = node.await.expect("scenario task panicked");
            panic!(
                "the /ws client saw no {what}: {error}\nthe Socket.IO side:\n{}",
                out.describe()
            );
        }
    }
}

fn state(frame: &ServerFrame) -> Option<&bandsync_protocol::server::SessionState> {
    match &frame.event {
        ServerEvent::StateUpdate(s) => Some(s),
        _ => None,
    }
}

/// A Socket.IO follower (`tests/socketio/scenarios/mixed.mjs`) and a native `/ws` leader
/// in one session: each hears the other's changes, and the seat passes from `/ws` to
/// Socket.IO. The steps interlock; the scenario's comment lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_io_client_and_a_ws_client_share_a_session() {
    if !node_ready().await {
        return;
    }
    let server = TestServer::start().await;
    let session = "mixed-band";
    let mut ws = WsClient::connect(&server.ws_url()).await.unwrap();
    let joined = ws
        .join(session, Some(Role::Leader), Some("native"))
        .await
        .unwrap();
    assert_eq!(joined.role, Role::Leader);
    let mut node = spawn_scenario("mixed", &[server.base_url(), session.into()], &[]);

    step(
        &mut ws,
        &mut node,
        "the Socket.IO member",
        |f| matches!(&f.event, ServerEvent::RoomStats(s) if s.members == 2),
    )
    .await;
    ws.send(ClientEvent::SetTempo(SetTempo::new(133.0)))
        .await
        .unwrap();
    step(&mut ws, &mut node, "the Socket.IO message", |f| {
        state(f).is_some_and(|s| s.message == "hello from socket.io")
    })
    .await;
    ws.send(ClientEvent::SetRole(SetRole {
        role: Role::Follower,
    }))
    .await
    .unwrap();
    let playing = step(&mut ws, &mut node, "the Socket.IO leader's play", |f| {
        state(f).is_some_and(|s| s.transport.playing)
    })
    .await;
    let playing = state(&playing).unwrap();
    assert_eq!(
        playing.transport.tempo, 90.0,
        "the Socket.IO leader's tempo"
    );
    let sio_leader = playing.leader_id.clone().expect("a leader");
    assert_ne!(sio_leader, joined.client_id, "the Socket.IO client leads");
    let refused = ws
        .request(ClientEvent::SetTempo(SetTempo::new(70.0)), STEP)
        .await
        .unwrap();
    assert!(
        matches!(&refused.event, ServerEvent::Error(e) if e.code == ErrorCode::NotLeader),
        "the /ws client follows now: {refused:?}"
    );
    ws.send(ClientEvent::UpdateMessage(UpdateMessage {
        text: "done".into(),
    }))
    .await
    .unwrap();

    let out = node.await.expect("scenario task panicked");
    socketio_support::assert_passed(&out, "mixed");
    server.shutdown().await;
}

/// `GET path` on `server` over raw HTTP: status and JSON body.
async fn get(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(server.http_url(path)).await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(body.into()))
}

/// The Engine.IO layer's HTTP errors: `400 {"code":n,"message":...}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_io_http_errors_carry_their_codes() {
    let server = TestServer::start().await;
    let cases = [
        ("/socket.io/?EIO=3&transport=polling", 5, "EIO=3"),
        (
            "/socket.io/?EIO=4&transport=carrier-pigeon",
            0,
            "unknown transport",
        ),
        (
            "/socket.io/?EIO=4&transport=polling&sid=nobody",
            1,
            "unknown sid",
        ),
    ];
    for (path, code, what) in cases {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
    // A handshake must be a GET.
    let response = reqwest::Client::new()
        .post(server.http_url("/socket.io/?EIO=4&transport=polling"))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 2, "a POST handshake: {body}");
    server.shutdown().await;
}

/// A long-polling POST over `maxPayload` (the open packet's, = MAX_FRAME_BYTES) is 413
/// JSON; one at the limit is taken, and the session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_post_over_max_payload_is_413() {
    const MAX: usize = 32 * 1024;
    let server = TestServer::start_with(|c| c.max_frame_bytes = MAX).await;
    let open = reqwest::get(server.http_url("/socket.io/?EIO=4&transport=polling"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: serde_json::Value =
        serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(open["maxPayload"], MAX, "{open}");
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]), "{open}");
    let sid = open["sid"].as_str().unwrap();
    let url = server.http_url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
    let client = reqwest::Client::new();

    let over = client
        .post(&url)
        .body("6".repeat(MAX + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status().as_u16(), 413);
    let body: serde_json::Value = over.json().await.unwrap();
    assert!(
        body["code"].is_string() || body["code"].is_number(),
        "{body}"
    );

    // Noops up to the limit exactly: accepted, and the session is still there.
    let noops = vec!["6"; MAX / 2].join("\u{1e}");
    assert!(noops.len() < MAX);
    let at_limit = client.post(&url).body(noops).send().await.unwrap();
    assert_eq!(at_limit.status().as_u16(), 200);
    let connect = client.post(&url).body("40").send().await.unwrap();
    assert_eq!(connect.status().as_u16(), 200);
    let answer = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(answer.starts_with("40{\"sid\":"), "{answer}");
    server.shutdown().await;
}

/// Long-polling sessions are capped per address (`MAX_CONNECTIONS_PER_IP`), even when one
/// keep-alive connection opens them all; a session that ends gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_sessions_are_capped_per_address() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 3).await;
    let client = reqwest::Client::new();
    let handshake = server.http_url("/socket.io/?EIO=4&transport=polling");
    let mut sids = Vec::new();
    for _ in 0..3 {
        let open = client.get(&handshake).send().await.unwrap();
        assert_eq!(open.status().as_u16(), 200, "under the cap of 3");
        let open = open.text().await.unwrap();
        let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        sids.push(open["sid"].as_str().unwrap().to_owned());
    }
    let refused = client.get(&handshake).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "TOO_MANY_CONNECTIONS", "{body}");

    // A client that closes its session (Engine.IO `1`) frees a slot at once.
    let url = server.http_url(&format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        sids[0]
    ));
    assert_eq!(
        client
            .post(&url)
            .body("1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let mut admitted = false;
    for _ in 0..50 {
        let again = client.get(&handshake).send().await.unwrap();
        if again.status().as_u16() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "a closed session gives its slot back");
    server.shutdown().await;
}

/// A session that starts on WebSocket is offered no upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_is_offered_no_upgrade() {
    use futures_util::StreamExt;
    let server = TestServer::start().await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = tokio::time::timeout(STEP, socket.next())
        .await
        .expect("an open packet in time")
        .expect("a message")
        .unwrap();
    let text = first.into_text().unwrap();
    let open: serde_json::Value =
        serde_json::from_str(text.strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!([]), "{open}");
    assert!(open["pingInterval"].is_u64() && open["pingTimeout"].is_u64());
    drop(socket);
    server.shutdown().await;
}
