//! Readings of every server process of a run at the edges of its measured window: each
//! bandsync instance's CPU, memory, descriptors and `/metrics`, and Redis's CPU and
//! command counter. The difference between two readings says what the window cost each
//! instance (CPU per delivery on that instance) and Redis (commands per state change).
//!
//! The Redis figures come two ways that check each other: Redis's own count of commands
//! it executed (Lua scripts' inner calls included: one commit script is many commands), and
//! the instances' `bandsync_redis_commands_total{purpose}` (round trips they made, by what
//! for). Background traffic (heartbeats once a second per instance, leases, presence) is in
//! both; the per-purpose split shows how much.

use crate::cluster::RedisTarget;
use crate::metrics::{self, ServerMetrics};
use crate::procfs::{read_cpu, read_fd_count, read_rss_kib, CpuTime, CpuUsage};
use crate::target::Endpoints;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// The Prometheus series of the instances' Redis round trips.
const REDIS_COMMANDS: &str = "bandsync_redis_commands_total";

/// What to read.
#[derive(Debug, Clone)]
pub struct Probe {
    /// (label, endpoints) of each instance, the leader's first.
    pub instances: Vec<(String, Endpoints)>,
    pub redis: Option<RedisTarget>,
}

/// One instance at one instant.
#[derive(Debug, Clone, Default)]
pub struct InstanceReading {
    pub cpu: Option<CpuTime>,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    pub metrics: Option<metrics::Sample>,
    pub redis_commands: BTreeMap<String, f64>,
}

/// Every process at one instant.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: Instant,
    pub instances: Vec<InstanceReading>,
    pub redis_cpu: Option<CpuTime>,
    pub redis_commands: Option<u64>,
}

impl Probe {
    /// Reads CPU times first, all together (they are what the window's edge means), then
    /// what needs a request.
    pub async fn read(&self) -> Reading {
        let at = Instant::now();
        let mut instances: Vec<InstanceReading> = self
            .instances
            .iter()
            .map(|(_, ep)| InstanceReading {
                cpu: ep.pid.and_then(|p| read_cpu(Some(p))),
                rss_kib: ep.pid.and_then(|p| read_rss_kib(Some(p))),
                fds: ep.pid.and_then(read_fd_count),
                ..InstanceReading::default()
            })
            .collect();
        let redis_cpu = self.redis.and_then(|r| read_cpu(Some(r.pid?)));
        for ((_, ep), reading) in self.instances.iter().zip(&mut instances) {
            if let Some(text) = metrics::scrape_text(&ep.http_base).await {
                reading.metrics = Some(metrics::parse(&text));
                reading.redis_commands = metrics::by_label(&text, REDIS_COMMANDS, "purpose");
            }
        }
        let redis_commands = match self.redis {
            Some(r) => crate::resp::commands_processed(r.addr).await.ok(),
            None => None,
        };
        Reading {
            at,
            instances,
            redis_cpu,
            redis_commands,
        }
    }
}

/// What one instance spent in the window.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceUsage {
    pub label: String,
    pub url: String,
    pub cpu_ms: Option<f64>,
    pub percent_of_core: Option<f64>,
    /// Deliveries this instance made to its followers, and its CPU per delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_delivery: Option<f64>,
    pub rss_kib_before: Option<u64>,
    pub rss_kib_after: Option<u64>,
    pub fds_before: Option<u64>,
    pub fds_after: Option<u64>,
    /// Redis round trips it made in the window, by purpose (empty without Redis).
    pub redis_round_trips: BTreeMap<String, f64>,
    pub server_metrics: Option<ServerMetrics>,
}

/// What Redis did in the window, per state change the leader sent.
#[derive(Debug, Clone, Serialize)]
pub struct RedisUsage {
    pub state_changes: u64,
    /// Commands Redis executed (Lua scripts' inner calls included), less the probe's own
    /// `INFO`.
    pub commands: Option<u64>,
    pub commands_per_change: Option<f64>,
    /// ... and per second of the window (churn's resumes and presence are not changes).
    pub commands_per_s: Option<f64>,
    /// The instances' `commit` round trips (one script call each), and all their round
    /// trips, per change.
    pub commit_round_trips_per_change: Option<f64>,
    pub round_trips_per_change: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub percent_of_core: Option<f64>,
    pub us_per_change: Option<f64>,
}

/// What a window cost every process.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub window_s: f64,
    pub instances: Vec<InstanceUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisUsage>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn per(x: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| round(x / count as f64, 2))
}

/// The window between `before` and `after`. `changes`: state changes the leader sent in
/// it; `deliveries`: per instance, when the scenario counts them there.
pub fn usage(
    probe: &Probe,
    before: &Reading,
    after: &Reading,
    changes: u64,
    deliveries: Option<&[u64]>,
) -> Usage {
    let wall = after.at.saturating_duration_since(before.at);
    let cpu = |a: Option<CpuTime>, b: Option<CpuTime>| Some(CpuUsage::between(a?, b?, wall));
    let instances = probe
        .instances
        .iter()
        .enumerate()
        .map(|(i, (label, ep))| {
            let (b, a) = (&before.instances[i], &after.instances[i]);
            let used = cpu(b.cpu, a.cpu);
            let delivered = deliveries.and_then(|d| d.get(i).copied());
            InstanceUsage {
                label: label.clone(),
                url: ep.ws_url.clone(),
                cpu_ms: used.map(|u| round(u.cpu_us as f64 / 1000.0, 1)),
                percent_of_core: used.map(|u| round(u.percent_of_core(), 1)),
                deliveries: delivered,
                us_per_delivery: used
                    .zip(delivered)
                    .and_then(|(u, d)| per(u.cpu_us as f64, d)),
                rss_kib_before: b.rss_kib,
                rss_kib_after: a.rss_kib,
                fds_before: b.fds,
                fds_after: a.fds,
                redis_round_trips: a
                    .redis_commands
                    .iter()
                    .map(|(k, v)| (k.clone(), v - b.redis_commands.get(k).unwrap_or(&0.0)))
                    .filter(|(_, v)| *v != 0.0)
                    .collect(),
                server_metrics: b
                    .metrics
                    .as_ref()
                    .zip(a.metrics.as_ref())
                    .map(|(b, a)| metrics::delta(b, a)),
            }
        })
        .collect::<Vec<_>>();
    let redis = probe.redis.map(|_| {
        let trips = |purpose: Option<&str>| {
            instances
                .iter()
                .flat_map(|i| &i.redis_round_trips)
                .filter(|(k, _)| purpose.is_none_or(|p| k.as_str() == p))
                .map(|(_, v)| v)
                .sum::<f64>()
        };
        // A reading's INFO is counted after it ran: the later reading includes it.
        let commands = before
            .redis_commands
            .zip(after.redis_commands)
            .map(|(b, a)| a.saturating_sub(b).saturating_sub(1));
        let used = cpu(before.redis_cpu, after.redis_cpu);
        RedisUsage {
            state_changes: changes,
            commands,
            commands_per_change: commands.and_then(|c| per(c as f64, changes)),
            commands_per_s: commands
                .filter(|_| !wall.is_zero())
                .map(|c| round(c as f64 / wall.as_secs_f64(), 1)),
            commit_round_trips_per_change: per(trips(Some("commit")), changes),
            round_trips_per_change: per(trips(None), changes),
            cpu_ms: used.map(|u| round(u.cpu_us as f64 / 1000.0, 1)),
            percent_of_core: used.map(|u| round(u.percent_of_core(), 1)),
            us_per_change: used.and_then(|u| per(u.cpu_us as f64, changes)),
        }
    });
    Usage {
        window_s: round(wall.as_secs_f64(), 3),
        instances,
        redis,
    }
}

impl Usage {
    /// CPU of every instance (and of Redis, when `with_redis`) per delivery made.
    pub fn us_per_delivery_total(&self, with_redis: bool) -> Option<f64> {
        let deliveries: u64 = self.instances.iter().filter_map(|i| i.deliveries).sum();
        let mut ms: f64 = self.instances.iter().filter_map(|i| i.cpu_ms).sum();
        if with_redis {
            ms += self.redis.as_ref().and_then(|r| r.cpu_ms).unwrap_or(0.0);
        }
        per(ms * 1000.0, deliveries)
    }

    /// Summary lines for a person.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for i in &self.instances {
            let kib = |v: Option<u64>| v.map_or("n/a".into(), |v| v.to_string());
            out.push_str(&format!(
                "   instance {}: CPU {:.1}% of a core{}; rss {} -> {} KiB, fds {} -> {}\n",
                i.label,
                i.percent_of_core.unwrap_or(0.0),
                i.us_per_delivery
                    .map_or(String::new(), |v| format!(", {v} µs/delivery")),
                kib(i.rss_kib_before),
                kib(i.rss_kib_after),
                kib(i.fds_before),
                kib(i.fds_after)
            ));
        }
        if let Some(r) = &self.redis {
            let n = |v: Option<f64>| v.map_or("n/a".into(), |v| v.to_string());
            out.push_str(&format!(
                "   redis: {} changes, {} commands ({}/change, {}/s; commit round trips {}/change, all {}/change), CPU {:.1}% of a core\n",
                r.state_changes,
                r.commands.map_or("n/a".into(), |v| v.to_string()),
                n(r.commands_per_change),
                n(r.commands_per_s),
                n(r.commit_round_trips_per_change),
                n(r.round_trips_per_change),
                r.percent_of_core.unwrap_or(0.0)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ep(port: u16) -> Endpoints {
        Endpoints {
            ws_url: format!("ws://127.0.0.1:{port}/ws"),
            http_base: format!("http://127.0.0.1:{port}"),
            pid: Some(1),
        }
    }

    fn reading(at: Instant, ticks: [u64; 2], commits: [f64; 2], redis: u64) -> Reading {
        let instance = |t: u64, c: f64| InstanceReading {
            cpu: Some(CpuTime {
                utime_ticks: t,
                stime_ticks: 0,
            }),
            redis_commands: [("commit".to_owned(), c), ("heartbeat".to_owned(), c / 10.0)]
                .into_iter()
                .collect(),
            ..InstanceReading::default()
        };
        Reading {
            at,
            instances: vec![
                instance(ticks[0], commits[0]),
                instance(ticks[1], commits[1]),
            ],
            redis_cpu: Some(CpuTime {
                utime_ticks: redis,
                stime_ticks: 0,
            }),
            redis_commands: Some(redis * 100),
        }
    }

    #[test]
    fn a_window_costs_each_instance_and_redis_per_change() {
        let probe = Probe {
            instances: vec![("A".into(), ep(1)), ("B".into(), ep(2))],
            redis: Some(RedisTarget {
                addr: "127.0.0.1:6379".parse().unwrap(),
                pid: Some(3),
            }),
        };
        let t0 = Instant::now();
        let before = reading(t0, [100, 200], [10.0, 0.0], 10);
        let after = reading(t0 + Duration::from_secs(2), [150, 220], [60.0, 0.0], 20);
        let u = usage(&probe, &before, &after, 50, Some(&[1000, 2000]));
        assert_eq!(u.window_s, 2.0);
        let a = &u.instances[0];
        assert_eq!(a.cpu_ms, Some(500.0));
        assert_eq!(a.percent_of_core, Some(25.0));
        assert_eq!(a.us_per_delivery, Some(500.0));
        assert_eq!(a.redis_round_trips["commit"], 50.0);
        assert_eq!(a.redis_round_trips["heartbeat"], 5.0);
        assert!(
            u.instances[1].redis_round_trips.is_empty(),
            "no change, no entry"
        );
        assert_eq!(u.instances[1].us_per_delivery, Some(100.0));
        let r = u.redis.as_ref().unwrap();
        assert_eq!(r.commands, Some(999), "less the first reading's INFO");
        assert_eq!(r.commands_per_change, Some(19.98));
        assert_eq!(r.commands_per_s, Some(499.5));
        assert_eq!(r.commit_round_trips_per_change, Some(1.0));
        assert_eq!(r.round_trips_per_change, Some(1.1));
        assert_eq!(r.cpu_ms, Some(100.0));
        assert_eq!(r.us_per_change, Some(2000.0));
        // (500 + 200) ms over 3000 deliveries; with Redis's 100 ms as well.
        assert_eq!(u.us_per_delivery_total(false), Some(233.33));
        assert_eq!(u.us_per_delivery_total(true), Some(266.67));

        let single = Probe {
            instances: vec![("single".into(), ep(1))],
            redis: None,
        };
        let u = usage(&single, &before, &after, 50, None);
        assert!(u.redis.is_none());
        assert_eq!(u.instances.len(), 1);
        assert_eq!(u.instances[0].us_per_delivery, None);
        assert_eq!(u.us_per_delivery_total(true), None);
    }
}
