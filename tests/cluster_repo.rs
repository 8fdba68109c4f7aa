//! Repository streams across instances: a composition rendered on one instance reaches
//! the listeners of every instance, rendered once; a webhook delivery is played once in the
//! whole cluster; a listener on an instance that never saw a composition still gets the
//! repository's latest.

mod cluster_support;
mod repo_support;

use cluster_support::cluster;
use repo_support::{channels, post_test, RepoListener};
use serde_json::{json, Value};
use std::time::Duration;

async fn deliver(http_url: &str, delivery: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{http_url}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `bandsync_repo_compositions_total` and the render histogram's count of an instance.
async fn counts(metrics: &str) -> (u64, u64) {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (
        value("bandsync_repo_compositions_total "),
        value("bandsync_repo_render_seconds_count "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composition_is_rendered_once_and_heard_on_every_instance() {
    let Some((_redis, [a, b])) = cluster::<2>(&[]) else {
        return;
    };
    let mut on_a = RepoListener::open(&a.http_url(), "octo/band").await;
    let mut on_b = RepoListener::open(&b.http_url(), "octo/band?encoding=f32").await;
    on_a.next_of("connected").await;
    on_b.next_of("connected").await;

    let (status, played) = post_test(&a.http_url(), "octo/band", json!({"duration": 0.5})).await;
    assert_eq!(status, 200, "{played}");
    let here = on_a.next_of("audio_buffer").await;
    let there = on_b.next_of("audio_buffer").await;
    assert_eq!(there["data"]["compositionId"], played["compositionId"]);
    assert_eq!(
        channels(&there),
        channels(&here),
        "the same samples everywhere"
    );
    assert_eq!(counts(&a.metrics().await).await, (1, 1), "A rendered it");
    assert_eq!(
        counts(&b.metrics().await).await,
        (1, 0),
        "B only serialized it"
    );

    // A listener on a third instance started after the broadcast hears it first thing.
    let c = cluster_support::Instance::start(&_redis.url(), &[], true);
    let mut on_c = RepoListener::open(&c.http_url(), "Octo/Band").await;
    on_c.next_of("connected").await;
    let latest = on_c.next().await;
    assert_eq!(latest["type"], "audio_buffer");
    assert_eq!(latest["data"]["compositionId"], played["compositionId"]);
    assert_eq!(channels(&latest), channels(&here));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_plays_once_in_the_cluster() {
    let Some((_redis, [a, b])) = cluster::<2>(&[]) else {
        return;
    };
    let push = include_str!("fixtures/github/push.json");
    let repo: Value = serde_json::from_str(push).unwrap();
    let repo = repo["repository"]["full_name"].as_str().unwrap().to_owned();
    let mut on_b = RepoListener::open(&b.http_url(), &repo).await;
    on_b.next_of("connected").await;

    // The same delivery reaching both instances (a retry behind a balancer).
    let (url_a, url_b) = (a.http_url(), b.http_url());
    let (first, second) = tokio::join!(
        deliver(&url_a, "cluster-1", push),
        deliver(&url_b, "cluster-1", push)
    );
    let outcomes = [first.1["outcome"].clone(), second.1["outcome"].clone()];
    assert_eq!((first.0, second.0), (200, 200), "{outcomes:?}");
    assert!(outcomes.contains(&json!("played")), "{outcomes:?}");
    assert!(outcomes.contains(&json!("duplicate")), "{outcomes:?}");
    let message = on_b.next_of("audio_buffer").await;
    assert_eq!(message["data"]["trigger"]["delivery"], "cluster-1");
    assert!(
        on_b.try_next(Duration::from_millis(800)).await.is_none(),
        "played once"
    );
}
