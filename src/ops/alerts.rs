//! The alert board: which alerts are raised, since when, and what changed at each
//! evaluation. Pure (no I/O, no clock of its own), so the rules are tested without a server:
//! the monitor hands it one [`Reading`] per alert and the time, and gets back the changes to
//! log, count and send.
//!
//! Rule: an alert is raised when its value exceeds its threshold and cleared at the first
//! evaluation where it no longer does. A raised alert stays one alert (its `since` kept, its
//! `value` updated) however many intervals it lasts, so it is logged and sent once when
//! raised and once when cleared, never at every interval.

use serde::Serialize;

/// The kinds of alert, one per figure the seed's monitor watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Fan-out latency p99 over one interval, above twice `SYNC_TARGET_LATENCY`.
    Latency,
    /// Resident memory, above `ALERT_MEMORY_MB`.
    Memory,
    /// Process CPU over one interval, above `ALERT_CPU_PERCENT` of the CPUs available.
    Cpu,
    /// Connection errors in one interval, above `ALERT_CONNECTION_ERRORS`.
    ConnectionErrors,
    /// Rate-limited events in one interval, above `ALERT_RATE_LIMIT_VIOLATIONS`.
    RateLimitViolations,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::Latency,
        AlertKind::Memory,
        AlertKind::Cpu,
        AlertKind::ConnectionErrors,
        AlertKind::RateLimitViolations,
    ];

    /// The `type` of the alert on the wire and the `type` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Latency => "latency",
            AlertKind::Memory => "memory",
            AlertKind::Cpu => "cpu",
            AlertKind::ConnectionErrors => "connection_errors",
            AlertKind::RateLimitViolations => "rate_limit_violations",
        }
    }

    /// What `value` and `threshold` are measured in.
    pub fn unit(self) -> &'static str {
        match self {
            AlertKind::Latency => "ms",
            AlertKind::Memory => "MB",
            AlertKind::Cpu => "percent",
            AlertKind::ConnectionErrors | AlertKind::RateLimitViolations => "per_interval",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn message(self, value: f64, threshold: f64) -> String {
        match self {
            AlertKind::Latency => {
                format!("fan-out latency p99 {value:.3} ms is above {threshold} ms (twice SYNC_TARGET_LATENCY)")
            }
            AlertKind::Memory => {
                format!("resident memory {value:.1} MB is above ALERT_MEMORY_MB ({threshold} MB)")
            }
            AlertKind::Cpu => format!(
                "process CPU {value:.1}% of the available CPUs is above ALERT_CPU_PERCENT ({threshold}%)"
            ),
            AlertKind::ConnectionErrors => format!(
                "{value} connection errors in the last interval, above ALERT_CONNECTION_ERRORS ({threshold})"
            ),
            AlertKind::RateLimitViolations => format!(
                "{value} rate-limited events in the last interval, above ALERT_RATE_LIMIT_VIOLATIONS ({threshold})"
            ),
        }
    }
}

/// One raised alert, as `/health` lists it and operators receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub message: String,
    /// The latest value (updated at each evaluation while the alert lasts).
    pub value: f64,
    pub threshold: f64,
    /// Unit of `value` and `threshold` (`ms`, `MB`, `percent`, `per_interval`).
    pub unit: &'static str,
    /// When it was raised: server wall clock, ms since the Unix epoch.
    pub since: f64,
}

/// The figure of one alert at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub kind: AlertKind,
    /// `None` when the figure could not be read (no `/proc`, the first interval of a
    /// rate): the alert keeps its state.
    pub value: Option<f64>,
    pub threshold: f64,
}

/// What an evaluation changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Raised(Alert),
    /// The alert as it stood at its last evaluation above the threshold, the value that
    /// cleared it, and when.
    Cleared {
        alert: Alert,
        value: f64,
        at: f64,
    },
}

/// The raised alerts, at most one per kind.
#[derive(Debug, Default)]
pub struct AlertBoard {
    active: [Option<Alert>; AlertKind::ALL.len()],
}

impl AlertBoard {
    /// Applies one evaluation taken at `now_ms`; returns what was raised and cleared.
    pub fn evaluate(&mut self, readings: &[Reading], now_ms: f64) -> Vec<Change> {
        let mut changes = Vec::new();
        for reading in readings {
            let Some(value) = reading.value else { continue };
            let slot = &mut self.active[reading.kind.index()];
            let above = value > reading.threshold;
            match (slot.as_mut(), above) {
                (None, true) => {
                    let alert = Alert {
                        kind: reading.kind,
                        message: reading.kind.message(value, reading.threshold),
                        value,
                        threshold: reading.threshold,
                        unit: reading.kind.unit(),
                        since: now_ms,
                    };
                    *slot = Some(alert.clone());
                    changes.push(Change::Raised(alert));
                }
                (Some(alert), true) => {
                    alert.value = value;
                    alert.threshold = reading.threshold;
                    alert.message = reading.kind.message(value, reading.threshold);
                }
                (Some(_), false) => {
                    if let Some(alert) = slot.take() {
                        changes.push(Change::Cleared {
                            alert,
                            value,
                            at: now_ms,
                        });
                    }
                }
                (None, false) => {}
            }
        }
        changes
    }

    /// The raised alerts, in the order of [`AlertKind::ALL`].
    pub fn active(&self) -> Vec<Alert> {
        self.active.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: AlertKind, value: Option<f64>, threshold: f64) -> Reading {
        Reading {
            kind,
            value,
            threshold,
        }
    }

    #[test]
    fn an_alert_is_raised_once_updated_while_it_lasts_and_cleared_once() {
        let mut board = AlertBoard::default();
        let memory = |mb| [reading(AlertKind::Memory, Some(mb), 500.0)];
        assert!(board.evaluate(&memory(400.0), 1.0).is_empty());
        let raised = board.evaluate(&memory(600.0), 2.0);
        assert!(matches!(&raised[..], [Change::Raised(a)] if a.since == 2.0 && a.value == 600.0));
        assert!(board.evaluate(&memory(700.0), 3.0).is_empty());
        let listed = board.active();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].since, listed[0].value), (2.0, 700.0));
        assert!(
            listed[0].message.contains("700.0 MB"),
            "{}",
            listed[0].message
        );
        let cleared = board.evaluate(&memory(500.0), 4.0);
        assert!(
            matches!(&cleared[..], [Change::Cleared { alert, value, at }]
                if alert.since == 2.0 && *value == 500.0 && *at == 4.0),
            "{cleared:?}"
        );
        assert!(board.active().is_empty());
        assert!(board.evaluate(&memory(10.0), 5.0).is_empty());
    }

    #[test]
    fn a_missing_reading_keeps_the_alert_as_it_is() {
        let mut board = AlertBoard::default();
        board.evaluate(&[reading(AlertKind::Cpu, Some(95.0), 80.0)], 1.0);
        assert!(board
            .evaluate(&[reading(AlertKind::Cpu, None, 80.0)], 2.0)
            .is_empty());
        assert_eq!(board.active().len(), 1);
    }

    #[test]
    fn kinds_are_independent_and_listed_in_a_fixed_order() {
        let mut board = AlertBoard::default();
        let changes = board.evaluate(
            &[
                reading(AlertKind::RateLimitViolations, Some(3.0), 0.0),
                reading(AlertKind::Latency, Some(250.0), 100.0),
                reading(AlertKind::ConnectionErrors, Some(0.0), 0.0),
            ],
            1.0,
        );
        assert_eq!(changes.len(), 2);
        let kinds: Vec<_> = board.active().iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["latency", "rate_limit_violations"]);
    }

    #[test]
    fn an_alert_serializes_with_the_fields_operators_read() {
        let mut board = AlertBoard::default();
        board.evaluate(
            &[reading(AlertKind::ConnectionErrors, Some(12.0), 10.0)],
            1_700_000_000_000.5,
        );
        let json = serde_json::to_value(&board.active()[0]).unwrap();
        assert_eq!(json["type"], "connection_errors");
        assert_eq!(json["value"], 12.0);
        assert_eq!(json["threshold"], 10.0);
        assert_eq!(json["unit"], "per_interval");
        assert_eq!(json["since"], 1_700_000_000_000.5);
        assert!(json["message"]
            .as_str()
            .unwrap()
            .contains("12 connection errors"));
    }
}
