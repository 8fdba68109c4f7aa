//! Operations: the server watching itself, as the seed's performance monitor did.
//!
//! - `config`: `METRICS_INTERVAL`, `SYNC_TARGET_LATENCY` and the `ALERT_*` thresholds.
//! - `figures`: what is evaluated (fan-out latency p99, resident memory, process CPU,
//!   connection errors, rate-limit violations), read from the existing metrics and `/proc`.
//! - `alerts`: the pure raise/clear rules and the board of raised alerts.
//! - `monitor`: the task that evaluates every interval and reports each change: one log
//!   line, `bandsync_alerts_*` in `/metrics`, an event to subscribed operators.
//! - `stream`: `GET /alerts/stream`, the operators' subscription (Server-Sent Events).
//!
//! [`Ops`] is the one place a change goes through ([`Ops::apply`]), so the log, the
//! counters, `/health` and the subscribers cannot disagree.

pub mod alerts;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod monitor;
pub mod stream;

use crate::metrics::Metrics;
use alerts::{Alert, AlertBoard, Change, Reading};
use bytes::Bytes;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Alert events buffered per subscriber. Alerts change at most a few times per interval;
/// a subscriber that falls this far behind is sent a fresh `alerts` list instead (nothing
/// is lost: the list is the whole state).
pub const SUBSCRIBER_QUEUE: usize = 64;

/// The raised alerts and the operators listening for changes.
pub struct Ops {
    /// A std `Mutex`: held for a short, non-async section (evaluate and publish, or take
    /// the list and subscribe), so a subscriber cannot miss or double a change.
    board: Mutex<AlertBoard>,
    events: broadcast::Sender<Bytes>,
    metrics: Arc<Metrics>,
    /// `GET /alerts/stream` subscribers at once ([`stream::MAX_SUBSCRIBERS`]).
    pub subscriber_slots: Arc<tokio::sync::Semaphore>,
}

/// The `data` of an `alert` event: the alert, and whether it was raised or cleared.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertEvent<'a> {
    state: &'static str,
    #[serde(flatten)]
    alert: &'a Alert,
    /// Cleared alerts: when, and the value that cleared it (`value` stays the last one
    /// above the threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    cleared_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cleared_value: Option<f64>,
}

impl Ops {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (events, _) = broadcast::channel(SUBSCRIBER_QUEUE);
        Ops {
            board: Mutex::new(AlertBoard::default()),
            events,
            metrics,
            subscriber_slots: Arc::new(tokio::sync::Semaphore::new(stream::MAX_SUBSCRIBERS)),
        }
    }

    /// The raised alerts (for `/health`).
    pub fn active(&self) -> Vec<Alert> {
        self.lock().active()
    }

    /// Applies one evaluation at `now_ms`: every change is logged once, counted, and sent
    /// to the subscribers. Returns the changes.
    pub fn apply(&self, readings: &[Reading], now_ms: f64) -> Vec<Change> {
        let mut board = self.lock();
        let changes = board.evaluate(readings, now_ms);
        for change in &changes {
            let (alert, event) = match change {
                Change::Raised(alert) => {
                    tracing::warn!(
                        alert = alert.kind.as_str(),
                        value = alert.value,
                        threshold = alert.threshold,
                        "alert raised: {}",
                        alert.message
                    );
                    self.metrics
                        .alerts
                        .raised
                        .with_label_values(&[alert.kind.as_str()])
                        .inc();
                    let event = AlertEvent {
                        state: "raised",
                        alert,
                        cleared_at: None,
                        cleared_value: None,
                    };
                    (alert, event)
                }
                Change::Cleared { alert, value, at } => {
                    tracing::info!(
                        alert = alert.kind.as_str(),
                        value,
                        threshold = alert.threshold,
                        since = alert.since,
                        "alert cleared: {} is back at or below {}",
                        alert.kind.as_str(),
                        alert.threshold
                    );
                    let event = AlertEvent {
                        state: "cleared",
                        alert,
                        cleared_at: Some(*at),
                        cleared_value: Some(*value),
                    };
                    (alert, event)
                }
            };
            let raised = matches!(change, Change::Raised(_));
            self.metrics
                .alerts
                .active
                .with_label_values(&[alert.kind.as_str()])
                .set(i64::from(raised));
            // No receiver is not an error: nobody is listening right now.
            let _ = self.events.send(sse_frame("alert", now_ms, &event));
        }
        changes
    }

    /// The current list as an `alerts` event, and a receiver of every change after it.
    pub fn subscribe(&self, now_ms: f64) -> (Bytes, broadcast::Receiver<Bytes>) {
        let board = self.lock();
        let list = self.list_frame(&board, now_ms);
        (list, self.events.subscribe())
    }

    /// The current list as an `alerts` event (for a subscriber that fell behind).
    pub fn list(&self, now_ms: f64) -> Bytes {
        let board = self.lock();
        self.list_frame(&board, now_ms)
    }

    fn list_frame(&self, board: &AlertBoard, now_ms: f64) -> Bytes {
        #[derive(Serialize)]
        struct List {
            alerts: Vec<Alert>,
        }
        sse_frame(
            "alerts",
            now_ms,
            &List {
                alerts: board.active(),
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AlertBoard> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One SSE event carrying the usual envelope: `data: {"type", "timestamp", "data"}`.
pub fn sse_frame(kind: &str, now_ms: f64, data: &impl Serialize) -> Bytes {
    let envelope = serde_json::json!({"type": kind, "timestamp": now_ms, "data": data});
    Bytes::from(format!("data: {envelope}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::alerts::AlertKind;
    use super::*;

    fn memory(mb: f64) -> [Reading; 1] {
        [Reading {
            kind: AlertKind::Memory,
            value: Some(mb),
            threshold: 100.0,
        }]
    }

    fn decode(frame: &Bytes) -> serde_json::Value {
        let text = std::str::from_utf8(frame).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_subscriber_gets_the_list_then_each_change_once_and_metrics_follow() {
        let metrics = Arc::new(Metrics::new());
        let ops = Ops::new(metrics.clone());
        ops.apply(&memory(150.0), 1.0);
        let (list, mut events) = ops.subscribe(2.0);
        let list = decode(&list);
        assert_eq!(list["type"], "alerts");
        assert_eq!(list["data"]["alerts"][0]["type"], "memory");
        ops.apply(&memory(160.0), 3.0);
        ops.apply(&memory(50.0), 4.0);
        let cleared = decode(&events.try_recv().unwrap());
        assert_eq!(cleared["type"], "alert");
        assert_eq!(cleared["data"]["state"], "cleared");
        assert_eq!(cleared["data"]["since"], 1.0);
        assert_eq!(cleared["data"]["clearedAt"], 4.0);
        assert_eq!(cleared["data"]["clearedValue"], 50.0);
        assert!(events.try_recv().is_err(), "one event per change");
        let raised = |kind: &str| metrics.alerts.raised.with_label_values(&[kind]).get();
        assert_eq!(raised("memory"), 1);
        assert_eq!(
            metrics.alerts.active.with_label_values(&["memory"]).get(),
            0
        );
        let text = metrics.render();
        assert!(
            text.contains("bandsync_alerts_raised_total{type=\"memory\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bandsync_alerts_active{type=\"cpu\"} 0"),
            "{text}"
        );
    }
}
