//! The side-by-side table: one column per server and the ratio Node / bandsync, printed
//! as Markdown so that a run's output goes into BENCHMARKS.md as it is.

use crate::scenarios::{FanoutStats, TickStats};

/// Everything measured on one server.
#[derive(Debug, Clone)]
pub struct Measured {
    pub setup_s: f64,
    pub fanout: FanoutStats,
    pub ticks: TickStats,
    pub rss_mib: f64,
    /// Clients whose connection ended during the run (the first reason), and error events.
    pub lost: usize,
    pub first_loss: Option<String>,
    pub error_events: u64,
    pub first_error: Option<String>,
}

/// One server's outcome: figures, or why there are none.
pub struct Column {
    pub title: String,
    pub result: Result<Measured, String>,
}

/// A row: its label, its cell for one server, and the figure whose ratio Node / bandsync
/// is shown (none where a ratio says nothing, as for counts that should be equal).
struct Row {
    label: &'static str,
    cell: fn(&Measured) -> String,
    ratio: Option<fn(&Measured) -> f64>,
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn one(v: f64) -> String {
    format!("{v:.1}")
}

/// A whole number with thousands separators.
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const ROWS: &[Row] = &[
    Row {
        label: "fan-out: deliveries / expected",
        cell: |m| {
            let expected = u64::from(m.fanout.events) * m.fanout.followers as u64;
            format!("{} / {}", count(m.fanout.delivered), count(expected))
        },
        ratio: None,
    },
    Row {
        label: "fan-out: latency p50 (ms)",
        cell: |m| ms(m.fanout.p50_ms),
        ratio: Some(|m| m.fanout.p50_ms),
    },
    Row {
        label: "fan-out: latency p99 (ms)",
        cell: |m| ms(m.fanout.p99_ms),
        ratio: Some(|m| m.fanout.p99_ms),
    },
    Row {
        label: "fan-out: latency max (ms)",
        cell: |m| ms(m.fanout.max_ms),
        ratio: Some(|m| m.fanout.max_ms),
    },
    Row {
        label: "fan-out: until the last follower has it, p50 (ms)",
        cell: |m| ms(m.fanout.last_p50_ms),
        ratio: Some(|m| m.fanout.last_p50_ms),
    },
    Row {
        label: "fan-out: until the last follower has it, max (ms)",
        cell: |m| ms(m.fanout.last_max_ms),
        ratio: Some(|m| m.fanout.last_max_ms),
    },
    Row {
        label: "fan-out: server CPU per delivery (µs)",
        cell: |m| one(m.fanout.cpu_per_delivery_us),
        ratio: Some(|m| m.fanout.cpu_per_delivery_us),
    },
    Row {
        label: "fan-out: server CPU (% of a core)",
        cell: |m| one(m.fanout.server_cpu_pct),
        ratio: Some(|m| m.fanout.server_cpu_pct),
    },
    Row {
        label: "ticks: per follower per second, mean / slowest",
        cell: |m| format!("{} / {}", ms(m.ticks.rate_mean), ms(m.ticks.rate_min)),
        ratio: None,
    },
    Row {
        label: "ticks: missing seq (all followers)",
        cell: |m| count(m.ticks.missing),
        ratio: None,
    },
    Row {
        label: "ticks: jitter p50 (ms)",
        cell: |m| ms(m.ticks.jitter_p50_ms),
        ratio: Some(|m| m.ticks.jitter_p50_ms),
    },
    Row {
        label: "ticks: jitter p99 (ms)",
        cell: |m| ms(m.ticks.jitter_p99_ms),
        ratio: Some(|m| m.ticks.jitter_p99_ms),
    },
    Row {
        label: "ticks: jitter max (ms)",
        cell: |m| ms(m.ticks.jitter_max_ms),
        ratio: Some(|m| m.ticks.jitter_max_ms),
    },
    Row {
        label: "ticks: server CPU in the window (s)",
        cell: |m| ms(m.ticks.server_cpu_s),
        ratio: Some(|m| m.ticks.server_cpu_s),
    },
    Row {
        label: "ticks: server CPU (% of a core)",
        cell: |m| one(m.ticks.server_cpu_pct),
        ratio: Some(|m| m.ticks.server_cpu_pct),
    },
    Row {
        label: "ticks: server CPU per tick delivered (µs)",
        cell: |m| one(m.ticks.cpu_per_tick_us),
        ratio: Some(|m| m.ticks.cpu_per_tick_us),
    },
    Row {
        label: "server RSS at the end (MiB)",
        cell: |m| one(m.rss_mib),
        ratio: Some(|m| m.rss_mib),
    },
    Row {
        label: "setup: connect and join all (s)",
        cell: |m| ms(m.setup_s),
        ratio: Some(|m| m.setup_s),
    },
    Row {
        label: "load driver CPU, fan-out / ticks (% of a core)",
        cell: |m| {
            format!(
                "{} / {}",
                one(m.fanout.driver_cpu_pct),
                one(m.ticks.driver_cpu_pct)
            )
        },
        ratio: None,
    },
];

/// Prints the table (Node first, bandsync second, then the ratio when both ran).
pub fn print(columns: &[Column]) {
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for c in columns {
        header.push_str(&format!(" {} |", c.title));
        rule.push_str("---:|");
    }
    let ratio_of = match columns {
        [Column { result: Ok(a), .. }, Column { result: Ok(b), .. }] => Some((a, b)),
        _ => None,
    };
    if ratio_of.is_some() {
        header.push_str(" Node / bandsync |");
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    for row in ROWS {
        let mut line = format!("| {} |", row.label);
        for c in columns {
            let cell = match &c.result {
                Ok(m) => (row.cell)(m),
                Err(_) => "—".to_owned(),
            };
            line.push_str(&format!(" {cell} |"));
        }
        if let Some((a, b)) = ratio_of {
            let cell = match row.ratio.map(|f| (f(a), f(b))) {
                Some((x, y)) if y > 0.0 => format!("×{:.2}", x / y),
                _ => String::new(),
            };
            line.push_str(&format!(" {cell} |"));
        }
        println!("{line}");
    }
    for c in columns {
        match &c.result {
            Ok(m) => {
                if let Some(first) = &m.first_loss {
                    println!(
                        "\n{}: {} clients lost their connection; the first: {first}",
                        c.title, m.lost
                    );
                }
                if let Some(first) = &m.first_error {
                    println!(
                        "\n{}: {} error events; the first: {first}",
                        c.title, m.error_events
                    );
                }
            }
            Err(why) => println!("\n{}: FAILED: {why}", c.title),
        }
    }
}
