//! A few of the server's own Prometheus counters, as deltas over a scenario: they say
//! whether lost ticks were dropped by the server (latest-value-wins) or by the network,
//! and what the server thinks its fan-out costs. Any server without `/metrics`, or without
//! these names, simply yields fewer fields.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Counters summed over their labels, and histogram `_sum`/`_count` pairs.
const WANTED: &[&str] = &[
    "bandsync_ticks_dropped_total",
    "bandsync_slow_client_disconnects_total",
    "bandsync_engine_queue_full_total",
    "bandsync_rate_limit_violations_total",
    "bandsync_connections_rejected_total",
    "bandsync_messages_out_total",
    "bandsync_bytes_out_total",
    "bandsync_audio_chunks_in_total",
    "bandsync_audio_dropped_total",
    "bandsync_fanout_latency_seconds_sum",
    "bandsync_fanout_latency_seconds_count",
    "bandsync_tick_lag_seconds_sum",
    "bandsync_tick_lag_seconds_count",
    "bandsync_event_processing_seconds_sum",
    "bandsync_event_processing_seconds_count",
];

pub type Sample = BTreeMap<String, f64>;

/// Sums the wanted series of a Prometheus text exposition by metric name.
pub fn parse(text: &str) -> Sample {
    let mut out = Sample::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let (true, Ok(v)) = (WANTED.contains(&name), value.parse::<f64>()) {
            *out.entry(name.trim_start_matches("bandsync_").to_owned())
                .or_default() += v;
        }
    }
    out
}

/// One metric's series by the value of `label` (`name{label="x"} 3` -> `x: 3`), summed
/// over any other labels: e.g. the Redis round trips per purpose.
pub fn by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let key = format!("{label}=\"");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(labels) = series
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('{'))
        else {
            continue;
        };
        let Some(start) = labels.find(&key).map(|i| i + key.len()) else {
            continue;
        };
        let Some(len) = labels[start..].find('"') else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(labels[start..start + len].to_owned())
                .or_default() += v;
        }
    }
    out
}

/// `GET {base}/metrics` as text, `None` when it does not answer in time.
pub async fn scrape_text(http_base: &str) -> Option<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = http.get(format!("{http_base}/metrics")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// `GET {base}/metrics`, `None` when it does not answer in time.
pub async fn scrape(http_base: &str) -> Option<Sample> {
    Some(parse(&scrape_text(http_base).await?))
}

/// What the report shows: counter deltas, and histogram means in µs.
#[derive(Debug, Clone, Serialize)]
pub struct ServerMetrics {
    pub counters: BTreeMap<String, f64>,
    pub mean_us: BTreeMap<String, f64>,
}

pub fn delta(before: &Sample, after: &Sample) -> ServerMetrics {
    let d = |k: &str| {
        after
            .get(k)
            .map(|a| a - before.get(k).copied().unwrap_or(0.0))
    };
    let mut counters = BTreeMap::new();
    let mut mean_us = BTreeMap::new();
    for key in after.keys() {
        if let Some(base) = key.strip_suffix("_sum") {
            let count = format!("{base}_count");
            if let (Some(sum), Some(n)) = (d(key), d(&count)) {
                if n > 0.0 {
                    mean_us.insert(base.to_owned(), (sum / n * 1e7).round() / 10.0);
                }
            }
        } else if !key.ends_with("_count") {
            counters.insert(key.clone(), d(key).unwrap_or(0.0));
        }
    }
    ServerMetrics { counters, mean_us }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labels_and_turns_histograms_into_means() {
        let before = parse("bandsync_ticks_dropped_total 5\nbandsync_tick_lag_seconds_sum 1\nbandsync_tick_lag_seconds_count 10\n");
        let after = parse(
            "# HELP x y\nbandsync_ticks_dropped_total 12\n\
             bandsync_messages_out_total{transport=\"ws\"} 100\n\
             bandsync_messages_out_total{transport=\"sse\"} 20\n\
             bandsync_tick_lag_seconds_bucket{le=\"0.001\"} 3\n\
             bandsync_tick_lag_seconds_sum 1.002\nbandsync_tick_lag_seconds_count 20\nother_metric 9\n",
        );
        let m = delta(&before, &after);
        assert_eq!(m.counters["ticks_dropped_total"], 7.0);
        assert_eq!(m.counters["messages_out_total"], 120.0);
        assert_eq!(m.counters.len(), 2);
        assert_eq!(
            m.mean_us["tick_lag_seconds"], 200.0,
            "2 ms over 10 ticks, in µs"
        );
    }

    #[test]
    fn series_split_by_one_label() {
        let text = "# HELP bandsync_redis_commands_total x\n\
            bandsync_redis_commands_total{purpose=\"commit\"} 12\n\
            bandsync_redis_commands_total{purpose=\"heartbeat\"} 5\n\
            bandsync_redis_commands_total{other=\"a\",purpose=\"commit\"} 1\n\
            bandsync_redis_commands_total_other{purpose=\"commit\"} 99\n\
            bandsync_redis_commands_total 7\n";
        let by = by_label(text, "bandsync_redis_commands_total", "purpose");
        assert_eq!(by.len(), 2);
        assert_eq!(by["commit"], 13.0);
        assert_eq!(by["heartbeat"], 5.0);
        assert!(by_label(text, "bandsync_nothing", "purpose").is_empty());
    }
}
