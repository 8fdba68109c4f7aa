//! The `repo-fanout` report: one JSON line per case (listener count x encoding) and a
//! summary table of them all (schema in `--help`).

use crate::procfs::CpuUsage;
use crate::repo_listener::Arrival;
use crate::Settings;
use bandsync_client::protocol::repo::Encoding;
use bandsync_client::repo::TestAnswer;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// CPU over a case's broadcast (from the POST to the last listener's last byte).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cpu {
    pub cpu_ms: f64,
    pub percent_of_core: f64,
}

impl From<CpuUsage> for Cpu {
    fn from(u: CpuUsage) -> Self {
        Cpu {
            cpu_ms: u.cpu_us as f64 / 1000.0,
            percent_of_core: u.percent_of_core(),
        }
    }
}

/// When listeners had the whole composition, ms after the POST was sent.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub first: f64,
    pub p50: f64,
    pub p99: f64,
    pub last: f64,
}

#[derive(Debug, Serialize)]
pub struct CaseReport {
    pub scenario: &'static str,
    pub listeners: u64,
    pub encoding: &'static str,
    pub composition_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Listeners that had their `connected` message before the POST.
    pub connected: u64,
    /// Listeners that got the whole `audio_buffer`.
    pub received: u64,
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The POST's round trip: render, serialize (every encoding), queue for every listener.
    pub post_ms: Option<f64>,
    pub render_time_ms: Option<f64>,
    pub listeners_notified: Option<u64>,
    pub samples: Option<u64>,
    /// Frames the verifying listener decoded (must equal `samples`).
    pub verified_frames: Option<u64>,
    /// From the POST until each listener had the last byte of the composition.
    pub complete_ms: Option<Spread>,
    /// The `audio_buffer` message as one listener received it.
    pub message_bytes: Option<u64>,
    /// Everything one listener read (mean), and all listeners together.
    pub bytes_per_listener: Option<f64>,
    pub bytes_total: u64,
    /// bytes_total over the time to the last listener.
    pub throughput_mb_s: Option<f64>,
    /// Over the same window; null without a server pid.
    pub server_cpu: Option<Cpu>,
    pub server_rss_kib: Option<u64>,
    /// The load client (this process), which shares the machine.
    pub client_cpu: Option<Cpu>,
}

impl CaseReport {
    pub fn new(listeners: u64, encoding: Encoding, composition_s: f64) -> Self {
        CaseReport {
            scenario: "repo-fanout",
            listeners,
            encoding: encoding.as_str(),
            composition_s,
            error: None,
            connected: 0,
            received: 0,
            failed: 0,
            first_error: None,
            post_ms: None,
            render_time_ms: None,
            listeners_notified: None,
            samples: None,
            verified_frames: None,
            complete_ms: None,
            message_bytes: None,
            bytes_per_listener: None,
            bytes_total: 0,
            throughput_mb_s: None,
            server_cpu: None,
            server_rss_kib: None,
            client_cpu: None,
        }
    }

    pub fn error(listeners: u64, encoding: Encoding, composition_s: f64, error: String) -> Self {
        CaseReport {
            error: Some(error),
            ..CaseReport::new(listeners, encoding, composition_s)
        }
    }

    /// No case could run (no server).
    pub fn failed(s: &Settings, error: String) -> Self {
        let listeners = s.repo.listeners.first().copied().unwrap_or(0);
        let encoding = s.repo.encodings.first().copied().unwrap_or(Encoding::Json);
        CaseReport::error(listeners, encoding, s.repo.composition_s, error)
    }

    pub fn answer(&mut self, a: &TestAnswer) {
        self.render_time_ms = Some(a.render_time_ms);
        self.listeners_notified = Some(a.listeners_notified as u64);
        self.samples = Some(a.samples as u64);
    }

    /// Fills in the arrivals; `errors` are the listeners that did not get it whole.
    pub fn arrivals(&mut self, posted: Instant, arrivals: &[Arrival], errors: Vec<String>) {
        self.received = arrivals.len() as u64;
        self.failed = errors.len() as u64;
        self.first_error = errors.into_iter().next();
        let mut ms: Vec<f64> = arrivals
            .iter()
            .map(|a| a.at.saturating_duration_since(posted).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        if !ms.is_empty() {
            self.complete_ms = Some(Spread {
                first: ms[0],
                p50: at(0.5),
                p99: at(0.99),
                last: ms[ms.len() - 1],
            });
        }
        self.message_bytes = arrivals.iter().map(|a| a.message_bytes).max();
        self.bytes_total = arrivals.iter().map(|a| a.body_bytes).sum();
        if !arrivals.is_empty() {
            self.bytes_per_listener = Some(self.bytes_total as f64 / arrivals.len() as f64);
        }
        self.throughput_mb_s = self
            .complete_ms
            .filter(|c| c.last > 0.0)
            .map(|c| self.bytes_total as f64 / 1e6 / (c.last / 1000.0));
        if self.verified_frames.is_some() && self.verified_frames != self.samples {
            self.error = Some(format!(
                "the verifier decoded {:?} frames; the server rendered {:?}",
                self.verified_frames, self.samples
            ));
        }
        if self.failed > 0 && self.error.is_none() {
            self.error = Some(format!(
                "{} of {} listeners did not get the composition",
                self.failed, self.listeners
            ));
        }
    }

    /// One line for stderr.
    pub fn line(&self) -> String {
        let mut out = format!(
            "== repo-fanout {} listeners, {} ({} s): ",
            self.listeners, self.encoding, self.composition_s
        );
        match (&self.complete_ms, &self.error) {
            (Some(c), _) => {
                let _ = write!(
                    out,
                    "{}/{} complete, last {:.0} ms (first {:.0}, p50 {:.0}, p99 {:.0}), {} per listener, {} total, server CPU {}",
                    self.received,
                    self.connected,
                    c.last,
                    c.first,
                    c.p50,
                    c.p99,
                    human_bytes(self.message_bytes.unwrap_or(0) as f64),
                    human_bytes(self.bytes_total as f64),
                    self.server_cpu
                        .map_or("n/a".into(), |c| format!("{:.0} ms ({:.0}% of a core)", c.cpu_ms, c.percent_of_core))
                );
            }
            (None, _) => out.push_str("no composition arrived"),
        }
        if let Some(e) = &self.error {
            let _ = write!(out, " [ERROR: {e}]");
        }
        out
    }
}

fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// The cases as a Markdown table (what BENCHMARKS.md holds).
pub fn table(reports: &[CaseReport]) -> String {
    let mut out = String::from(
        "| listeners | encoding | message | all listeners | POST answered | first | p50 | last | server CPU | throughput |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let c = r.complete_ms;
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.listeners,
            r.encoding,
            r.message_bytes
                .map_or("-".into(), |b| human_bytes(b as f64)),
            human_bytes(r.bytes_total as f64),
            f(r.post_ms),
            f(c.map(|c| c.first)),
            f(c.map(|c| c.p50)),
            f(c.map(|c| c.last)),
            r.server_cpu.map_or("-".into(), |c| format!(
                "{:.0} ms ({:.0}%)",
                c.cpu_ms, c.percent_of_core
            )),
            r.throughput_mb_s
                .map_or("-".into(), |t| format!("{t:.0} MB/s")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn arrivals_make_the_spread_and_the_totals() {
        let posted = Instant::now();
        let arrivals: Vec<Arrival> = (1..=100u64)
            .map(|i| Arrival {
                at: posted + Duration::from_millis(i * 10),
                message_bytes: 1000,
                body_bytes: 1200,
            })
            .collect();
        let mut r = CaseReport::new(101, Encoding::F32, 5.0);
        r.samples = Some(220_500);
        r.verified_frames = Some(220_500);
        r.arrivals(posted, &arrivals, vec!["refused".into()]);
        let c = r.complete_ms.unwrap();
        assert!((c.first - 10.0).abs() < 1.0 && (c.last - 1000.0).abs() < 1.0);
        assert!((c.p50 - 510.0).abs() < 11.0, "{c:?}");
        assert_eq!((r.received, r.failed, r.bytes_total), (100, 1, 120_000));
        assert_eq!(r.first_error.as_deref(), Some("refused"));
        assert!(r.error.as_deref().unwrap().contains("1 of 101"));
        assert!((r.throughput_mb_s.unwrap() - 0.12).abs() < 0.01);
        assert!(table(&[r]).contains("| 101 | f32 | 1 kB | 120 kB |"));

        let mut wrong = CaseReport::new(1, Encoding::Json, 5.0);
        wrong.samples = Some(10);
        wrong.verified_frames = Some(9);
        wrong.arrivals(posted, &arrivals[..1], Vec::new());
        assert!(wrong.error.unwrap().contains("decoded"));
    }
}
