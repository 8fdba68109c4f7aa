//! The Stream Manager across instances sharing one Redis: a change on one instance reaches
//! the stream clients of another in version order, concurrent writes on two instances all
//! land, an asset uploaded on one is served by another, the documents outlive every
//! instance, the stream cap is cluster-wide, and writes fail closed while Redis is down.

mod cluster_support;
mod stage_support;

use cluster_support::{cluster, Instance};
use futures_util::future::join_all;
use serde_json::{json, Value};
use stage_support::{png, Api, StageSocket, TOKEN};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ENV: &[(&str, &str)] = &[("BEARER_TOKEN", TOKEN)];

/// A Redis and `N` instances whose Stream Manager link is up: `/health` reports the
/// instance's main Redis link, while the Stream Manager's connects on its own a moment
/// later, and until then a read of an uncached stream is `503 STORE_UNAVAILABLE`.
async fn stage_cluster<const N: usize>(
    env: &[(&str, &str)],
) -> Option<(cluster_support::Redis, [Instance; N])> {
    let (redis, instances) = cluster::<N>(env)?;
    for instance in &instances {
        stage_ready(instance).await;
    }
    Some((redis, instances))
}

/// Waits until `instance` answers a read of a stream that no test writes (reads of a
/// never-written stream create nothing, so the stream cap is untouched).
async fn stage_ready(instance: &Instance) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api(instance).get("/stream/status?session=probe").await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {status} {body}",
            instance.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn api(instance: &Instance) -> Api {
    Api::new(instance.http_url())
}

async fn socket(instance: &Instance, query: &str) -> (StageSocket, Value) {
    StageSocket::open(instance.addr.parse().unwrap(), query).await
}

/// Reads `socket` until it has seen `version`, checking that every change comes exactly one
/// version after the one before (a `streamState` may replace what was skipped). Returns the
/// ids of the layers it learned of, from events and snapshots alike.
async fn follow_to(socket: &mut StageSocket, mut seen: u64, version: u64) -> BTreeSet<String> {
    let mut layers = BTreeSet::new();
    while seen < version {
        let message = socket.next().await;
        let Some(at) = message["version"].as_u64() else {
            continue; // not a change (status, pong)
        };
        if message["type"] == "streamState" {
            layers = message["payload"]["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(at >= seen, "a snapshot went back from {seen} to {at}");
        } else {
            assert_eq!(at, seen + 1, "a gap or a repeat: {message}");
            if message["type"] == "layerUpdate" {
                layers.insert(message["payload"]["id"].as_str().unwrap().to_owned());
            }
        }
        seen = at;
    }
    layers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_reaches_the_clients_of_another_in_order() {
    let Some((_redis, [a, b])) = stage_cluster::<2>(ENV).await else {
        return;
    };
    let (mut on_b, first) = socket(&b, "?session=x").await;
    assert_eq!(first["payload"]["status"]["version"], 0);

    let on_a = api(&a);
    let (status, live) = on_a.post("/stream/start?session=x", json!({})).await;
    assert_eq!((status, &live["version"]), (200, &json!(1)), "{live}");
    let layer = on_a.text_layer("?session=x", "Hey Jude").await;
    let (status, _) = on_a
        .call(
            "PATCH",
            &format!("/stream/layers/{layer}/visibility?session=x"),
            None,
        )
        .await;
    assert_eq!(status, 200);

    let state = on_b.next().await;
    assert_eq!(
        (
            &state["type"],
            &state["version"],
            &state["payload"]["state"]
        ),
        (&json!("stateUpdate"), &json!(1), &json!("live")),
        "{state}"
    );
    let created = on_b.next().await;
    assert_eq!(
        (
            &created["type"],
            &created["version"],
            &created["payload"]["id"]
        ),
        (&json!("layerUpdate"), &json!(2), &json!(layer)),
        "{created}"
    );
    assert_eq!(created["payload"]["content"]["content"], "Hey Jude");
    let hidden = on_b.next().await;
    assert_eq!(
        (
            &hidden["type"],
            &hidden["version"],
            &hidden["payload"]["visible"]
        ),
        (&json!("layerVisibility"), &json!(3), &json!(false)),
        "{hidden}"
    );

    let (status, there) = api(&b).get("/stream/status?session=x").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &there["state"],
            &there["version"],
            &there["layers"],
            &there["visibleLayers"]
        ),
        (&json!("live"), &json!(3), &json!(3), &json!(2)),
        "{there}"
    );
    assert_eq!(there["startedAt"], live["startedAt"]);
    // The default stream was not touched.
    let (_, default) = api(&b).get("/stream/status").await;
    assert_eq!(default["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_two_instances_all_land() {
    let Some((_redis, [a, b])) = stage_cluster::<2>(ENV).await else {
        return;
    };
    let (mut on_a, _) = socket(&a, "?session=busy").await;
    let (mut on_b, _) = socket(&b, "?session=busy").await;
    let (api_a, api_b) = (api(&a), api(&b));
    let writes = (0..20).map(|i| {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        async move {
            api.post(
                "/stream/layers?session=busy",
                json!({"name": format!("l{i}"), "content": {"type": "text", "content": format!("{i}")}}),
            )
            .await
        }
    });
    let mut created = BTreeSet::new();
    for (status, body) in join_all(writes).await {
        assert_eq!(status, 201, "{body}");
        created.insert(body["layer"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created.len(), 20);

    for instance in [&a, &b] {
        // Reads are served from each instance's cache: the other instance's last commit
        // arrives through Redis a moment after its answer.
        let status =
            cluster_support::json_until(&instance.addr, "/stream/status?session=busy", |s| {
                s["version"].as_u64() >= Some(20)
            })
            .await;
        assert_eq!(
            (&status["version"], &status["layers"]),
            (&json!(20), &json!(22))
        );
        let (_, layers) = api(instance).get("/stream/layers?session=busy").await;
        assert_eq!(layers["layers"].as_array().unwrap().len(), 22);
    }
    for (name, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        let seen = tokio::time::timeout(Duration::from_secs(15), follow_to(client, 0, 20))
            .await
            .unwrap_or_else(|_| panic!("the client on {name} never reached version 20"));
        assert!(
            created.is_subset(&seen),
            "the client on {name} missed {:?}",
            created.difference(&seen).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_uploaded_on_one_instance_is_served_by_another() {
    let Some((_redis, [a, b])) = stage_cluster::<2>(ENV).await else {
        return;
    };
    let (mut on_b, _) = socket(&b, "?session=art").await;
    let (status, body) = api(&a).upload("?session=art", "logo.png", &png()).await;
    assert_eq!(status, 201, "{body}");
    let asset = body["asset"].clone();
    let id = asset["id"].as_str().unwrap();

    let pushed = on_b.next_of("assetUpdate").await;
    assert_eq!(pushed["payload"]["id"], asset["id"]);
    let (status, info) = api(&b)
        .get(&format!("/stream/assets/{id}?session=art"))
        .await;
    assert_eq!((status, &info["asset"]), (200, &asset));
    let response = reqwest::get(format!("{}/stream/assets/{id}/content", b.http_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.unwrap(), png());

    // Deleted on B: gone for A too.
    let (status, _) = api(&b)
        .call("DELETE", &format!("/stream/assets/{id}?session=art"), None)
        .await;
    assert_eq!(status, 200);
    cluster_support::json_until(&a.addr, &format!("/stream/assets/{id}?session=art"), |b| {
        b["code"] == "ASSET_NOT_FOUND"
    })
    .await;
    let response = reqwest::get(format!("{}/stream/assets/{id}/content", a.http_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_documents_outlive_every_instance() {
    let Some((redis, [mut a, mut b])) = stage_cluster::<2>(ENV).await else {
        return;
    };
    let (status, _) = api(&a).post("/stream/start?session=keep", json!({})).await;
    assert_eq!(status, 200);
    let layer = api(&b).text_layer("?session=keep", "still here").await;
    let (status, _) = api(&a).post("/stream/pause?session=keep", json!({})).await;
    assert_eq!(status, 200);
    assert!(a.terminate().success());
    assert!(b.terminate().success());

    let c = Instance::start(&redis.url(), ENV, true);
    stage_ready(&c).await;
    let (status, body) = api(&c).get("/stream/status?session=keep").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["state"], &body["version"], &body["layers"]),
        (&json!("paused"), &json!(3), &json!(3)),
        "{body}"
    );
    let (_, layers) = api(&c).get("/stream/layers?session=keep").await;
    let kept = &layers["layers"][2];
    assert_eq!(
        (&kept["id"], &kept["content"]["content"]),
        (&json!(layer), &json!("still here"))
    );
    let (status, body) = api(&c).post("/stream/start?session=keep", json!({})).await;
    assert_eq!(
        (status, &body["version"]),
        (200, &json!(4)),
        "and it goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_holds_across_the_cluster() {
    let env = [("BEARER_TOKEN", TOKEN), ("STREAM_MAX_STREAMS", "2")];
    let Some((_redis, [a, b])) = stage_cluster::<2>(&env).await else {
        return;
    };
    let (status, _) = api(&a).post("/stream/start?session=one", json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = api(&b).post("/stream/start?session=two", json!({})).await;
    assert_eq!(status, 200);
    for instance in [&a, &b] {
        let (status, body) = api(instance)
            .post("/stream/start?session=three", json!({}))
            .await;
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("STREAM_LIMIT")),
            "{body}"
        );
    }
    // Existing streams still take writes anywhere, and an unwritten one still reads.
    let (status, _) = api(&a).post("/stream/pause?session=two", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = api(&b).get("/stream/status?session=three").await;
    assert_eq!((status, &body["version"]), (200, &json!(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_closed_while_redis_is_down_and_reads_serve_the_cache() {
    let Some((mut redis, [a, b])) = stage_cluster::<2>(ENV).await else {
        return;
    };
    let (status, _) = api(&a).post("/stream/start?session=air", json!({})).await;
    assert_eq!(status, 200);
    api(&a).text_layer("?session=air", "on air").await;
    // B has it cached (it heard the changes, and reads it once).
    cluster_support::json_until(&b.addr, "/stream/status?session=air", |s| s["version"] == 2).await;

    redis.kill();
    for instance in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = api(instance)
                .post("/stream/pause?session=air", json!({}))
                .await;
            if status == 503 {
                assert_eq!(body["code"], "STORE_UNAVAILABLE", "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a write while Redis is down: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = api(instance).get("/stream/status?session=air").await;
        assert_eq!(status, 200, "a cached read: {body}");
        assert_eq!(
            (&body["state"], &body["version"]),
            (&json!("live"), &json!(2))
        );
        let (status, body) = api(instance).get("/stream/layers?session=air").await;
        assert_eq!(
            (status, body["layers"].as_array().map(Vec::len)),
            (200, Some(3))
        );
    }

    // Back (empty: the test's Redis keeps nothing): writes work again on both.
    redis.restart();
    for instance in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = api(instance)
                .post("/stream/reset?session=air", json!({}))
                .await;
            if status == 200 {
                break;
            }
            assert_eq!(body["code"], "STORE_UNAVAILABLE", "{body}");
            assert!(
                Instant::now() < deadline,
                "writes never resumed on {}",
                instance.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
