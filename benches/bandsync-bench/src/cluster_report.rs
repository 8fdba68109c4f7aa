//! The `cluster-fanout` report: each phase (baseline, cluster) with its followers' latency
//! and its servers' costs per instance, and the ratios of the cluster to the baseline, so
//! one JSON line carries the comparison (schema in `--help`).

use crate::probe::{InstanceUsage, RedisUsage, Usage};
use crate::report::{Connections, Cpu, Report};
use crate::target::SpawnOptions;
use crate::Settings;
use bandsync_bench::bench_stats::LatencySummary;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// The followers of one instance, and what that instance spent.
#[derive(Debug, Serialize)]
pub struct InstanceResult {
    pub label: String,
    pub followers: Connections,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub latency_us: Option<LatencySummary>,
    pub server: Option<InstanceUsage>,
}

/// One phase: one instance without Redis, or the cluster.
#[derive(Debug, Serialize)]
pub struct PhaseResult {
    pub window_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// State changes the leader sent in the window.
    pub sent: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    /// Every follower, on any instance.
    pub latency_us: Option<LatencySummary>,
    pub instances: Vec<InstanceResult>,
    /// All instances' CPU over all deliveries; and with Redis's CPU added.
    pub server_us_per_delivery: Option<f64>,
    pub server_and_redis_us_per_delivery: Option<f64>,
    pub redis: Option<RedisUsage>,
    /// The load client (this process): per frame received by any follower.
    pub client_cpu: Cpu,
}

impl PhaseResult {
    /// From each instance's report (labelled, the leader's first), the probe's usage,
    /// every follower's latency merged, and the frames all followers received.
    pub fn assemble(
        reports: impl IntoIterator<Item = (String, Report)>,
        usage: Option<Usage>,
        all: &Histogram<u64>,
        frames: u64,
        error: Option<String>,
    ) -> Self {
        let mut servers = usage.as_ref().map(|u| u.instances.clone());
        let mut window_s = 0.0;
        let mut sent = 0;
        let mut client_cpu = None;
        let mut instances = Vec::new();
        for (i, (label, r)) in reports.into_iter().enumerate() {
            window_s = r.window_s;
            let f = r.fanout.as_ref();
            sent = sent.max(f.map_or(0, |f| f.sent));
            instances.push(InstanceResult {
                label,
                followers: r.connections,
                expected_deliveries: f.map_or(0, |f| f.expected_deliveries),
                deliveries: f.map_or(0, |f| f.deliveries),
                lost: f.map_or(0, |f| f.lost),
                latency_us: f.and_then(|f| f.latency_us),
                server: servers.as_mut().and_then(|s| s.get(i).cloned()),
            });
            client_cpu.get_or_insert(r.client_cpu);
        }
        let mut client_cpu = client_cpu.unwrap_or(Cpu {
            cpu_ms: 0.0,
            percent_of_core: 0.0,
            kernel_percent: None,
            us_per_msg: None,
            us_per_delivery: None,
            us_per_tick: None,
            us_per_connection: None,
        });
        client_cpu.us_per_msg = (frames > 0)
            .then(|| (client_cpu.cpu_ms * 1000.0 / frames as f64 * 100.0).round() / 100.0);
        Self {
            window_s,
            error,
            sent,
            expected_deliveries: instances.iter().map(|i| i.expected_deliveries).sum(),
            deliveries: instances.iter().map(|i| i.deliveries).sum(),
            lost: instances.iter().map(|i| i.lost).sum(),
            latency_us: LatencySummary::of(all),
            instances,
            server_us_per_delivery: usage.as_ref().and_then(|u| u.us_per_delivery_total(false)),
            server_and_redis_us_per_delivery: usage
                .as_ref()
                .filter(|u| u.redis.is_some())
                .and_then(|u| u.us_per_delivery_total(true)),
            redis: usage.and_then(|u| u.redis),
            client_cpu,
        }
    }
}

/// The cluster's figure over the baseline's (2.0: twice the baseline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    /// `A`, `B`, ...: the followers of that instance and its CPU per delivery; `all`: every
    /// follower, and every instance's CPU over every delivery.
    pub followers_on: String,
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
    pub us_per_delivery: Option<f64>,
    /// `all` only: the instances' and Redis's CPU per delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_delivery_with_redis: Option<f64>,
}

fn ratio(cluster: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (cluster, base) {
        (Some(c), Some(b)) if b > 0.0 => Some((c / b * 100.0).round() / 100.0),
        _ => None,
    }
}

impl Ratio {
    /// Each cluster instance, then `all`, against the baseline's single instance.
    pub fn between(base: &PhaseResult, cluster: &PhaseResult) -> Vec<Ratio> {
        let p = |l: &Option<LatencySummary>, q: fn(&LatencySummary) -> u64| {
            l.as_ref().map(|l| q(l) as f64)
        };
        let base_cpu = base.server_us_per_delivery;
        let mut out: Vec<Ratio> = cluster
            .instances
            .iter()
            .map(|i| Ratio {
                followers_on: i.label.clone(),
                latency_p50: ratio(p(&i.latency_us, |l| l.p50), p(&base.latency_us, |l| l.p50)),
                latency_p99: ratio(p(&i.latency_us, |l| l.p99), p(&base.latency_us, |l| l.p99)),
                us_per_delivery: ratio(i.server.as_ref().and_then(|s| s.us_per_delivery), base_cpu),
                us_per_delivery_with_redis: None,
            })
            .collect();
        out.push(Ratio {
            followers_on: "all".into(),
            latency_p50: ratio(
                p(&cluster.latency_us, |l| l.p50),
                p(&base.latency_us, |l| l.p50),
            ),
            latency_p99: ratio(
                p(&cluster.latency_us, |l| l.p99),
                p(&base.latency_us, |l| l.p99),
            ),
            us_per_delivery: ratio(cluster.server_us_per_delivery, base_cpu),
            us_per_delivery_with_redis: ratio(cluster.server_and_redis_us_per_delivery, base_cpu),
        });
        out
    }
}

/// A figure or `n/a`.
fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

/// The JSON line of a `cluster-fanout` run.
#[derive(Debug, Serialize)]
pub struct ClusterFanoutReport {
    pub scenario: &'static str,
    pub n: u64,
    pub instances: usize,
    pub rate_hz: f64,
    pub duration_s: f64,
    pub connect_concurrency: usize,
    pub spawned: bool,
    /// What the servers (instances and Redis) were pinned to.
    pub server_cpus: Option<String>,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub baseline: Option<PhaseResult>,
    pub cluster: Option<PhaseResult>,
    pub ratios: Vec<Ratio>,
}

impl ClusterFanoutReport {
    pub fn new(s: &Settings, spawn: Option<&SpawnOptions>) -> Self {
        Self {
            scenario: "cluster-fanout",
            n: s.n,
            instances: s.cluster.instances,
            rate_hz: s.rate,
            duration_s: s.duration.as_secs_f64(),
            connect_concurrency: s.concurrency,
            spawned: spawn.is_some(),
            server_cpus: spawn.and_then(|o| o.cpus.clone()),
            timed_out: false,
            error: None,
            baseline: None,
            cluster: None,
            ratios: Vec::new(),
        }
    }

    /// Adds an error to the report's (a phase's, prefixed with its name).
    pub fn note(&mut self, error: Option<String>) {
        if let Some(e) = error {
            self.error = Some(match self.error.take() {
                Some(earlier) => format!("{earlier}; {e}"),
                None => e,
            });
        }
    }

    /// A few lines for a person (stderr).
    pub fn human(&self) -> String {
        let mut out = format!(
            "== cluster-fanout n={} over {} instances, {} Hz{}\n",
            self.n,
            self.instances,
            self.rate_hz,
            if self.timed_out { " [TIMED OUT]" } else { "" }
        );
        let pct = |l: &Option<LatencySummary>| {
            l.map_or("n/a".into(), |l| {
                format!("p50 {} p99 {} max {} µs", l.p50, l.p99, l.max)
            })
        };
        for (name, phase) in [("baseline", &self.baseline), ("cluster", &self.cluster)] {
            let Some(p) = phase else { continue };
            let _ = writeln!(
                out,
                "   {name}: {} changes, deliveries {}/{} (lost {}), all followers {}; server {} µs/delivery (with redis {})",
                p.sent,
                p.deliveries,
                p.expected_deliveries,
                p.lost,
                pct(&p.latency_us),
                opt(p.server_us_per_delivery),
                opt(p.server_and_redis_us_per_delivery)
            );
            for i in &p.instances {
                let _ = writeln!(
                    out,
                    "     {}: {} followers, {}; CPU {}% of a core, {} µs/delivery",
                    i.label,
                    i.followers.connected,
                    pct(&i.latency_us),
                    opt(i.server.as_ref().and_then(|s| s.percent_of_core)),
                    opt(i.server.as_ref().and_then(|s| s.us_per_delivery))
                );
            }
            if let Some(r) = &p.redis {
                let _ = writeln!(
                    out,
                    "     redis: {} commands/change, commit round trips {}/change (all {}), CPU {}% of a core",
                    opt(r.commands_per_change),
                    opt(r.commit_round_trips_per_change),
                    opt(r.round_trips_per_change),
                    opt(r.percent_of_core)
                );
            }
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "   cluster/baseline, followers on {}: p50 x{}, p99 x{}, CPU per delivery x{}{}",
                r.followers_on,
                opt(r.latency_p50),
                opt(r.latency_p99),
                opt(r.us_per_delivery),
                r.us_per_delivery_with_redis
                    .map_or(String::new(), |v| format!(" (with redis x{v})"))
            );
        }
        if let Some(e) = &self.error {
            let _ = write!(out, "   error: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: u64, p99: u64) -> Option<LatencySummary> {
        Some(LatencySummary {
            count: 1,
            min: 1,
            mean: p50 as f64,
            p50,
            p90: p99,
            p99,
            p999: p99,
            max: p99,
        })
    }

    fn phase(
        instances: &[(&str, Option<LatencySummary>, Option<f64>)],
        all: Option<LatencySummary>,
        cpu: Option<f64>,
        with_redis: Option<f64>,
    ) -> PhaseResult {
        let empty = Histogram::<u64>::new(3).unwrap();
        let mut p = PhaseResult::assemble(std::iter::empty(), None, &empty, 0, None);
        p.latency_us = all;
        p.server_us_per_delivery = cpu;
        p.server_and_redis_us_per_delivery = with_redis;
        p.instances = instances
            .iter()
            .map(|(label, latency, us)| InstanceResult {
                label: (*label).into(),
                followers: Connections {
                    connected: 1,
                    failed: 0,
                    closed_early: 0,
                    first_error: None,
                },
                expected_deliveries: 0,
                deliveries: 0,
                lost: 0,
                latency_us: *latency,
                server: us.map(|us| InstanceUsage {
                    label: (*label).into(),
                    url: String::new(),
                    cpu_ms: None,
                    percent_of_core: None,
                    deliveries: None,
                    us_per_delivery: Some(us),
                    rss_kib_before: None,
                    rss_kib_after: None,
                    fds_before: None,
                    fds_after: None,
                    redis_round_trips: Default::default(),
                    server_metrics: None,
                }),
            })
            .collect();
        p
    }

    #[test]
    fn ratios_compare_each_instance_and_all_with_the_baseline() {
        let base = phase(
            &[("single", lat(100, 400), Some(10.0))],
            lat(100, 400),
            Some(10.0),
            None,
        );
        let cluster = phase(
            &[
                ("A", lat(300, 800), Some(25.0)),
                ("B", lat(250, 1000), None),
            ],
            lat(280, 900),
            Some(15.0),
            Some(20.0),
        );
        let r = Ratio::between(&base, &cluster);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].followers_on, "A");
        assert_eq!((r[0].latency_p50, r[0].latency_p99), (Some(3.0), Some(2.0)));
        assert_eq!(r[0].us_per_delivery, Some(2.5));
        assert_eq!(r[1].us_per_delivery, None, "no CPU reading, no ratio");
        assert_eq!(r[1].latency_p99, Some(2.5));
        assert_eq!(r[2].followers_on, "all");
        assert_eq!(
            (r[2].latency_p50, r[2].us_per_delivery),
            (Some(2.8), Some(1.5))
        );
        assert_eq!(r[2].us_per_delivery_with_redis, Some(2.0));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn errors_accumulate_per_phase() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["bandsync-bench", "--spawn", "cluster-fanout"]);
        let plan = cli.unwrap().validate("bench-1".into()).unwrap();
        let mut r = ClusterFanoutReport::new(&plan.settings, None);
        r.note(None);
        assert_eq!(r.error, None);
        r.note(Some("baseline: x".into()));
        r.note(Some("cluster: y".into()));
        assert_eq!(r.error.as_deref(), Some("baseline: x; cluster: y"));
        assert!(!r.spawned);
    }
}
