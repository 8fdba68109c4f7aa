//! The Stream Manager's REST API over real sockets: the state machine, layers, the
//! bearer token and the read rule, rate limits, several streams, the paths shared with
//! repository streams, limits, and persistence across a restart.

mod common;
mod stage_support;

use common::TestServer;
use serde_json::json;
use stage_support::{Api, TOKEN};

async fn server() -> TestServer {
    TestServer::start_with(|c| c.share.bearer_token = Some(TOKEN.into())).await
}

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        body["timestamp"].is_f64() || body["timestamp"].is_u64(),
        "{body}"
    );
}

#[tokio::test]
async fn every_transition_of_the_state_machine() {
    let server = server().await;
    let api = Api::new(server.base_url());
    let (status, body) = api.get("/stream/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert_eq!(body["state"], "idle");
    assert_eq!(body["session"], serde_json::Value::Null);
    assert_eq!(
        (body["version"].as_u64(), body["layers"].as_u64()),
        (Some(0), Some(2))
    );
    // (action, expected status, state after)
    let steps = [
        ("pause", 409, "idle"),
        ("stop", 409, "idle"),
        ("start", 200, "live"),
        ("start", 409, "live"),
        ("pause", 200, "paused"),
        ("pause", 409, "paused"),
        ("start", 200, "live"),
        ("stop", 200, "stopped"),
        ("stop", 409, "stopped"),
        ("pause", 409, "stopped"),
        ("start", 200, "live"),
        ("reset", 200, "idle"),
        ("reset", 200, "idle"),
    ];
    let mut version = 0;
    for (action, want, state) in steps {
        let (status, body) = api.post(&format!("/stream/{action}"), json!({})).await;
        if want == 409 {
            assert_error(status, &body, 409, "INVALID_TRANSITION");
            assert!(body["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("cannot {action}")));
        } else {
            version += 1;
            assert_eq!(status, 200, "{action}: {body}");
            assert_eq!(body["state"], state, "{action}");
            assert_eq!(body["version"], version, "{action}");
        }
        let (_, now) = api.get("/stream/status").await;
        assert_eq!(now["state"], state, "after {action}");
    }
    let (_, reset) = api.post("/stream/reset", json!({})).await;
    assert_eq!(reset["layers"], 2, "the status's count");
    assert_eq!(reset["layerList"][0]["id"], "host");
    assert_eq!(
        reset["layerList"][1]["content"]["content"],
        "Current Bid: 1.5 ETH"
    );
    let (status, live) = api.post("/stream/start", json!({"quality": "low"})).await;
    assert_eq!((status, &live["quality"]), (200, &json!("low")));
    assert!(live["startedAt"].is_number());
    let (status, body) = api.post("/stream/start", json!({"quality": "ultra"})).await;
    assert_error(status, &body, 400, "INVALID_PARAMS");
    assert_eq!(body["field"], "quality");
}

#[tokio::test]
async fn layers_are_created_updated_toggled_and_deleted() {
    let server = server().await;
    let api = Api::new(server.base_url());
    let (status, body) = api.get("/stream/layers").await;
    assert_eq!(status, 200);
    let ids: Vec<_> = body["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(ids, [json!("host"), json!("overlay")]);

    let id = api.text_layer("", "Hey Jude").await;
    assert!(id.starts_with("lyr_") && id.len() == 16, "{id}");
    let (_, body) = api.get("/stream/layers").await;
    let top = &body["layers"][2];
    assert_eq!(
        (&top["id"], &top["zIndex"], &top["visible"]),
        (&json!(id), &json!(2), &json!(true))
    );
    assert_eq!(top["content"]["style"]["font"], "Arial");

    let path = format!("/stream/layers/{id}");
    let (status, body) = api
        .call(
            "PUT",
            &path,
            Some(json!({"zIndex": -3, "position": {"x": 10, "y": 80, "width": 80}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["layer"]["zIndex"], -3);
    assert_eq!(
        body["layer"]["content"]["content"], "Hey Jude",
        "content kept"
    );
    let (_, body) = api.get("/stream/layers").await;
    assert_eq!(body["layers"][0]["id"], json!(id), "now at the bottom");

    let visibility = format!("{path}/visibility");
    let (_, body) = api.call("PATCH", &visibility, None).await;
    assert_eq!(body["layer"]["visible"], false, "no body toggles");
    let (_, body) = api.call("PATCH", &visibility, Some(json!({}))).await;
    assert_eq!(body["layer"]["visible"], true);
    let (_, body) = api
        .call("PATCH", &visibility, Some(json!({"visible": true})))
        .await;
    assert_eq!(body["layer"]["visible"], true, "an explicit value sets");
    let (_, status) = api.get("/stream/status").await;
    assert_eq!(status["visibleLayers"], 3);

    let (status, body) = api.call("DELETE", &path, None).await;
    assert_eq!((status, &body["id"]), (200, &json!(id)));
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_error(status, &body, 404, "LAYER_NOT_FOUND");
    let (status, body) = api.call("PATCH", &visibility, None).await;
    assert_error(status, &body, 404, "LAYER_NOT_FOUND");
    let (status, body) = api
        .call("PUT", "/stream/layers/..%2Fetc", Some(json!({})))
        .await;
    assert_error(status, &body, 400, "INVALID_LAYER_ID");
}

#[tokio::test]
async fn bad_layers_are_refused_naming_the_field() {
    let server = server().await;
    let api = Api::new(server.base_url());
    let cases = [
        (json!({}), "content"),
        (json!({"content": {"type": "video"}}), "content.type"),
        (
            json!({"content": {"type": "text", "style": {"fontSize": "big"}}}),
            "content.style.fontSize",
        ),
        (
            json!({"content": {"type": "text", "style": {"fontSize": 900}}}),
            "content.style.fontSize",
        ),
        (
            json!({"content": {"type": "text", "style": {"color": "red"}}}),
            "content.style.color",
        ),
        (
            json!({"zIndex": 1.5, "content": {"type": "text"}}),
            "zIndex",
        ),
        (
            json!({"visible": "yes", "content": {"type": "text"}}),
            "visible",
        ),
        (
            json!({"position": {"x": 150}, "content": {"type": "text"}}),
            "position.x",
        ),
        (json!({"name": "", "content": {"type": "text"}}), "name"),
        (
            json!({"content": {"type": "image", "assetId": "ast_00000000000000000000000000000000"}}),
            "content.assetId",
        ),
        (
            json!({"content": {"type": "character", "modelUrl": "../../etc/passwd", "animations": {"idle": "i"}}}),
            "content.modelUrl",
        ),
        (
            json!({"content": {"type": "character", "modelUrl": "m.png", "animations": {}}}),
            "content.animations",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = api.post("/stream/layers", body.clone()).await;
        assert_error(status, &answer, 400, "INVALID_PARAMS");
        assert_eq!(answer["field"], field, "{body} -> {answer}");
    }
    let (status, body) = api.get("/stream/status").await;
    assert_eq!(
        (status, &body["version"]),
        (200, &json!(0)),
        "nothing was committed"
    );

    let response = api
        .request(reqwest::Method::POST, "/stream/layers")
        .header("content-type", "text/plain")
        .body("{\"content\":{\"type\":\"text\"}}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let big = json!({"content": {"type": "text", "content": "x".repeat(70_000)}});
    let (status, body) = api.post("/stream/layers", big).await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
    let response = api
        .request(reqwest::Method::POST, "/stream/layers")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn routes_methods_and_ids_are_checked_before_anything_else() {
    let server = server().await;
    let api = Api::anonymous(server.base_url());
    let (status, body) = api.get("/stream/layers/x/y/z").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let response = api
        .request(reqwest::Method::DELETE, "/stream/status")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let response = api
        .request(reqwest::Method::GET, "/stream/start")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let (status, body) = api.get("/stream/assets/not-an-id").await;
    assert_error(status, &body, 400, "INVALID_ASSET_ID");
    let (status, body) = api
        .get("/stream/assets/ast_0123456789abcdef0123456789abcdef")
        .await;
    assert_error(status, &body, 404, "ASSET_NOT_FOUND");
    let response = api
        .request(reqwest::Method::HEAD, "/stream/status")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = api.get("/ws/stream").await;
    assert_error(status, &body, 426, "UPGRADE_REQUIRED");
    // A browser's preflight for the write methods.
    let response = api
        .request(reqwest::Method::OPTIONS, "/stream/layers/host/visibility")
        .header("origin", "http://operator.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let allowed = response.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed.contains("PATCH") && allowed.contains("DELETE") && allowed.contains("PUT"),
        "{allowed}"
    );
}

#[tokio::test]
async fn writes_need_the_bearer_token_and_reads_are_open() {
    let server = server().await;
    let anonymous = Api::anonymous(server.base_url());
    let (status, body) = anonymous.post("/stream/start", json!({})).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let wrong = Api {
        token: Some("guess".into()),
        ..Api::new(server.base_url())
    };
    let (status, body) = wrong.call("DELETE", "/stream/layers/host", None).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, _) = anonymous.get("/stream/layers").await;
    assert_eq!(status, 200);
    let (_, body) = anonymous.get("/stream/status").await;
    assert_eq!(body["state"], "idle", "the refused writes changed nothing");
    // The whole configured value as the header works too (the Music Share client's way).
    let response = anonymous
        .request(reqwest::Method::POST, "/stream/start")
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn without_a_configured_token_writes_are_disabled() {
    let server = TestServer::start().await;
    let api = Api::new(server.base_url());
    let (status, body) = api.post("/stream/start", json!({})).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert!(
        body["error"].as_str().unwrap().contains("BEARER_TOKEN"),
        "{body}"
    );
}

#[tokio::test]
async fn the_authenticated_mode_guards_reads_by_session() {
    use bandsync_client::token::{mint, SigningKey, TokenSpec};
    const SECRET: &str = "a test secret of at least 32 bytes!";
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.share.bearer_token = Some(TOKEN.into());
    })
    .await;
    let token = |session: &str| {
        let spec = TokenSpec {
            session: session.into(),
            leader: false,
            ttl: std::time::Duration::from_secs(300),
            sub: None,
        };
        mint(&SigningKey::Secret(SECRET.into()), &spec).unwrap()
    };
    let anonymous = Api::anonymous(server.base_url());
    let (status, body) = anonymous.get("/stream/status?session=band").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, _) = anonymous
        .get(&format!(
            "/stream/status?session=band&token={}",
            token("band")
        ))
        .await;
    assert_eq!(status, 200);
    let (status, _) = anonymous
        .get(&format!(
            "/stream/status?session=band&token={}",
            token("other")
        ))
        .await;
    assert_eq!(status, 401);
    let (status, _) = anonymous
        .get(&format!("/stream/status?token={}", token("band")))
        .await;
    assert_eq!(status, 401, "the default stream needs a server-wide token");
    let (status, _) = anonymous
        .get(&format!("/stream/status?token={}", token("*")))
        .await;
    assert_eq!(status, 200);
    let (status, _) = Api::new(server.base_url())
        .get("/stream/layers?session=band")
        .await;
    assert_eq!(status, 200, "the bearer token admits reads");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        c.stream_manager.stream_rate_limit_max = 5;
        c.stream_manager.stream_rate_limit_window_ms = 60_000;
    })
    .await;
    let api = Api::anonymous(server.base_url());
    for _ in 0..5 {
        assert_eq!(api.get("/stream/status").await.0, 200);
    }
    let response = api
        .request(reqwest::Method::GET, "/stream/layers")
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
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn each_session_has_its_own_stream_and_the_number_is_bounded() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        c.stream_manager.stream_max_streams = 2;
    })
    .await;
    let api = Api::new(server.base_url());
    assert_eq!(
        api.post("/stream/start?session=band-a", json!({})).await.0,
        200
    );
    let (_, a) = api.get("/stream/status?session=band-a").await;
    let (_, default) = api.get("/stream/status").await;
    assert_eq!(
        (&a["state"], &a["session"]),
        (&json!("live"), &json!("band-a"))
    );
    assert_eq!(default["state"], "idle");
    assert_eq!(
        api.post("/stream/start?session=owner/repo", json!({}))
            .await
            .0,
        200
    );
    let (status, body) = api.post("/stream/start", json!({})).await;
    assert_error(status, &body, 503, "STREAM_LIMIT");
    let (status, _) = api.get("/stream/status").await;
    assert_eq!(status, 200, "reading an unwritten stream still works");
    let (status, body) = api.get("/stream/status?session=bad%20id").await;
    assert_error(status, &body, 400, "INVALID_SESSION_ID");
}

#[tokio::test]
async fn repository_streams_keep_the_rest_of_the_prefix() {
    let server = server().await;
    let api = Api::anonymous(server.base_url());
    let response = api
        .request(reqwest::Method::GET, "/stream/%73tatus/site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    drop(response);
    let (status, body) = api.get("/health/repo/status/site").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.get("/stream/status").await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("idle")),
        "the Stream Manager's own"
    );
}

#[tokio::test]
async fn state_layers_and_assets_survive_a_restart() {
    let dir = common::scratch_dir("bandsync-persist");
    let configure = |c: &mut bandsync::Config| {
        c.share.bearer_token = Some(TOKEN.into());
        c.stream_manager.asset_storage_path = dir.join("assets");
        c.stream_manager.stream_state_path = dir.join("streams");
    };
    let server = TestServer::start_with(configure).await;
    let api = Api::new(server.base_url());
    assert_eq!(
        api.post("/stream/start?session=band", json!({})).await.0,
        200
    );
    let layer = api.text_layer("?session=band", "Chorus").await;
    let (status, asset) = api
        .upload("?session=band", "logo.png", &stage_support::png())
        .await;
    assert_eq!(status, 201, "{asset}");
    let (_, before) = api.get("/stream/layers?session=band").await;
    server.shutdown().await;

    let server = TestServer::start_with(configure).await;
    let api = Api::new(server.base_url());
    let (_, status) = api.get("/stream/status?session=band").await;
    assert_eq!(
        (&status["state"], &status["version"]),
        (&json!("live"), &json!(3))
    );
    let (_, after) = api.get("/stream/layers?session=band").await;
    assert_eq!(after, before);
    assert!(after["layers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["id"] == json!(layer)));
    let id = asset["asset"]["id"].as_str().unwrap();
    let (status, info) = api.get(&format!("/stream/assets/{id}?session=band")).await;
    assert_eq!(
        (status, &info["asset"]["sha256"]),
        (200, &asset["asset"]["sha256"])
    );
    let bytes = api
        .request(
            reqwest::Method::GET,
            &format!("/stream/assets/{id}/content"),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), stage_support::png().as_slice());
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
