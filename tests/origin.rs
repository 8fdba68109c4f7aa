//! Issue 7, finding 3: cross-site WebSocket. With `CORS_ORIGIN` set to a list, a browser
//! page from another origin must not open `/ws` (and take a vacant leader seat) or
//! `/sse/{id}`; clients that send no `Origin` (the CLI, native apps) keep working, and the
//! default `CORS_ORIGIN=*` allows every page.

mod common;
mod support;

use bandsync_client::protocol::Role;
use bandsync_client::WsClient;
use common::TestServer;
use serde_json::Value;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

const GOOD: &str = "http://good.example";
const EVIL: &str = "http://evil.example";

async fn guarded() -> TestServer {
    TestServer::start_with(|c| c.cors_origin = format!("{GOOD}, https://other.example")).await
}

/// Opens `/ws` with this `Origin`: the socket, or the refusal's status and JSON body.
async fn ws_with_origin(
    server: &TestServer,
    origin: Option<&str>,
) -> Result<RawSocket, (u16, Value)> {
    let mut request = server.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            Err((
                status,
                serde_json::from_slice(&body).expect("a JSON error body"),
            ))
        }
        Err(e) => panic!("unexpected websocket failure: {e}"),
    }
}

async fn sse_with_origin(server: &TestServer, origin: Option<&str>) -> reqwest::Response {
    let mut request = http().get(server.http_url("/sse/band"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

fn assert_refused(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], "ORIGIN_NOT_ALLOWED", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("CORS_ORIGIN"),
        "{body}"
    );
    assert!(body["timestamp"].as_f64().is_some(), "{body}");
}

#[tokio::test]
async fn a_foreign_page_cannot_open_the_websocket_nor_take_the_leader_seat() {
    let server = guarded().await;
    let (status, body) = ws_with_origin(&server, Some(EVIL)).await.unwrap_err();
    assert_refused(status, &body);
    assert_eq!(
        metric(&server, "bandsync_origin_rejected_total{transport=\"ws\"}").await,
        1.0
    );
    // The seat the foreign page was after is still free for the band.
    let (_leader, snapshot) = join_leader(&server, "band").await;
    assert_eq!(snapshot.role, Role::Leader);
}

#[tokio::test]
async fn allowed_pages_and_clients_without_origin_open_the_websocket() {
    let server = guarded().await;
    for origin in [Some(GOOD), Some("HTTPS://OTHER.EXAMPLE"), None] {
        let mut socket = ws_with_origin(&server, origin)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e:?}"));
        raw_send_text(
            &mut socket,
            r#"{"type":"join_session","id":1,"data":{"sessionId":"band"}}"#,
        )
        .await;
        let snapshot = raw_next_json(&mut socket, &["room_stats"]).await;
        assert_eq!(snapshot["type"], "snapshot", "{origin:?}: {snapshot}");
    }
}

#[tokio::test]
async fn a_foreign_page_cannot_listen_over_sse() {
    let server = guarded().await;
    let refused = sse_with_origin(&server, Some(EVIL)).await;
    let status = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_refused(status, &body);
    assert_eq!(
        metric(&server, "bandsync_origin_rejected_total{transport=\"sse\"}").await,
        1.0
    );
    for origin in [Some(GOOD), None] {
        let response = sse_with_origin(&server, origin).await;
        assert_eq!(response.status(), 200, "{origin:?}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn a_null_origin_is_refused_under_a_list() {
    let server = guarded().await;
    let (status, body) = ws_with_origin(&server, Some("null")).await.unwrap_err();
    assert_refused(status, &body);
}

#[tokio::test]
async fn the_default_star_allows_every_page() {
    let server = TestServer::start().await;
    assert!(ws_with_origin(&server, Some(EVIL)).await.is_ok());
    assert_eq!(sse_with_origin(&server, Some(EVIL)).await.status(), 200);
    // The library client (no Origin) is unaffected either way.
    let mut client = WsClient::connect(&server.ws_url()).await.unwrap();
    client.join("band", None, None).await.unwrap();
}
