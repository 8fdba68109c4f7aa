//! `clock-accuracy`: N clients, each behind its own seeded proxy link with the same jitter,
//! each with its own skewed local clock, heartbeat from joining at the estimator's cadence;
//! their offset errors against the truth at 0.5, 1, 2 and 5 s. Two phases: symmetric jitter,
//! then the same jitter with a fixed asymmetry A (extra base delay up), where the error is
//! expected to be A/2: one side cannot see asymmetry, only the round trip.

use crate::clock_link::{self, drive, injected, spread, Injected, Spread, View};
use crate::clock_plan::ClockArgs;
use crate::plan::Settings;
use bandsync_client::protocol::Role;
use bandsync_client::WsClient;
use faultproxy::{FaultProxy, Faults, Link};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// When the estimates are read, after each client's first heartbeat.
pub const CHECKPOINTS_S: [f64; 4] = [0.5, 1.0, 2.0, 5.0];

#[derive(Debug, Serialize)]
pub struct Checkpoint {
    pub t_s: f64,
    pub clients_with_estimate: usize,
    /// |estimate − truth|, ms.
    pub abs_error_ms: Spread,
    /// Mean of estimate − truth (signed), ms: the bias.
    pub bias_ms: f64,
    /// The estimators' own error bounds, ms.
    pub error_bound_ms: Spread,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub up_base_ms: f64,
    pub down_base_ms: f64,
    /// What the proxies really added, over all links.
    pub injected_up: Injected,
    pub injected_down: Injected,
    pub checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub n: u64,
    pub jitter_sd_ms: f64,
    pub jitter_model: &'static str,
    pub seed: u64,
    /// Server clock − wall clock from direct round trips, before and after, and the
    /// shortest round trip of each (its half bounds the truth's own error).
    pub truth_ms: [f64; 2],
    pub truth_rtt_ms: [f64; 2],
    pub phases: Vec<Phase>,
}

/// Runs both phases against the server at `ws_url`.
pub async fn run(ws_url: &str, s: &Settings, c: &ClockArgs) -> anyhow::Result<Report> {
    let upstream = clock_link::socket_addr(ws_url).await?;
    let (truth_before, rtt_before) = clock_link::truth(ws_url).await?;
    let session = &format!("{}-clock-accuracy", s.session_base);
    let mut phases = Vec::new();
    for (name, up_base, seed_shift) in [
        ("symmetric", 0.0, 0),
        ("asymmetric", c.asymmetry_ms, 1 << 32),
    ] {
        let link = |base_ms| Link {
            base_ms,
            jitter_sd_ms: c.jitter_ms,
            jitter: c.jitter_model.proxy(),
            ..Link::default()
        };
        let mut proxies = Vec::new();
        for i in 0..s.n {
            let faults = Faults {
                up: link(up_base),
                down: link(0.0),
                seed: c.clock_seed.wrapping_add(seed_shift).wrapping_add(i),
            };
            proxies.push(FaultProxy::start(upstream, faults).await?);
        }
        let checkpoints: Vec<Duration> = CHECKPOINTS_S
            .iter()
            .map(|&t| Duration::from_secs_f64(t))
            .collect();
        let last = checkpoints[checkpoints.len() - 1] + Duration::from_millis(100);
        let clients = proxies.iter().enumerate().map(|(i, p)| {
            let url = format!("ws://{}/ws", p.addr());
            let skew = clock_link::skew_ms(c.clock_seed, i as u64);
            let checkpoints = checkpoints.clone();
            async move {
                let mut ws = WsClient::connect(&url).await?;
                ws.join(session, Some(Role::Follower), None).await?;
                // The clock starts at the join: the burst, then the checkpoints.
                let view = Arc::new(Mutex::new(View::new(skew)));
                let got = drive(&mut ws, &view, Instant::now() + last, &checkpoints).await?;
                let _ = ws.close().await;
                anyhow::Ok((skew, got))
            }
        });
        let results = futures_util::future::join_all(clients).await;
        let mut per_checkpoint: Vec<Vec<(f64, f64)>> = vec![Vec::new(); CHECKPOINTS_S.len()];
        for result in results {
            let (skew, got) = result?;
            for (k, estimate) in got.into_iter().enumerate() {
                if let Some(e) = estimate {
                    // The offset this client should find: the server's clock minus its own.
                    let truth = truth_before - skew;
                    per_checkpoint[k].push((e.offset - truth, e.error_bound));
                }
            }
        }
        let (injected_up, injected_down) = injected(&proxies);
        phases.push(Phase {
            name,
            up_base_ms: up_base,
            down_base_ms: 0.0,
            injected_up,
            injected_down,
            checkpoints: per_checkpoint
                .into_iter()
                .zip(CHECKPOINTS_S)
                .map(|(errors, t_s)| Checkpoint {
                    t_s,
                    clients_with_estimate: errors.len(),
                    bias_ms: errors.iter().map(|e| e.0).sum::<f64>() / errors.len().max(1) as f64,
                    abs_error_ms: spread(errors.iter().map(|e| e.0.abs()).collect()),
                    error_bound_ms: spread(errors.iter().map(|e| e.1).collect()),
                })
                .collect(),
        });
    }
    let (truth_after, rtt_after) = clock_link::truth(ws_url).await?;
    Ok(Report {
        n: s.n,
        jitter_sd_ms: c.jitter_ms,
        jitter_model: c.jitter_model.name(),
        seed: c.clock_seed,
        truth_ms: [truth_before, truth_after],
        truth_rtt_ms: [rtt_before, rtt_after],
        phases,
    })
}

/// The injected delays in one line: measured SD, p99 and mean, and the drawn SD.
pub fn injected_text(up: &Injected, down: &Injected) -> String {
    let one = |i: &Injected| {
        format!(
            "SD {:.2} ms (drawn {:.2}), mean {:.2}, p99 {:.2}, max {:.1}",
            i.sd_ms, i.drawn_sd_ms, i.mean_ms, i.p99_ms, i.max_ms
        )
    };
    format!("injected up {}; down {}", one(up), one(down))
}

impl Report {
    pub fn human(&self) -> String {
        let mut out = format!(
            "clock-accuracy: {} clients, jitter SD {} ms ({}), truth {:+.3} ms (rtt {:.3}) -> {:+.3} ms",
            self.n, self.jitter_sd_ms, self.jitter_model, self.truth_ms[0], self.truth_rtt_ms[0], self.truth_ms[1]
        );
        for p in &self.phases {
            out += &format!(
                "\n  {} (up +{} ms, down +{} ms): {}",
                p.name,
                p.up_base_ms,
                p.down_base_ms,
                injected_text(&p.injected_up, &p.injected_down)
            );
            for k in &p.checkpoints {
                out += &format!(
                    "\n    {:>4} s: |error| p50 {:.3} p95 {:.3} max {:.3} ms, bias {:+.3} ms, bound p50 {:.2} ms ({} clients)",
                    k.t_s, k.abs_error_ms.p50, k.abs_error_ms.p95, k.abs_error_ms.max, k.bias_ms,
                    k.error_bound_ms.p50, k.clients_with_estimate
                );
            }
        }
        out
    }
}
