//! The `/ws` transport's own handles on the server's labelled series (`crate::metrics`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// The `/ws` children of the labelled series: finding a child by its label hashes the
/// label and takes a lock (about 130 instructions, measured with callgrind), and `/ws` did it
/// five times a join. The children share their counts with the vectors, so `/metrics` shows
/// the same series.
#[derive(Clone)]
pub struct WsSeries {
    /// `connections{transport="ws"}`.
    pub connections: IntGauge,
    /// `connections_total{transport="ws"}`.
    pub connections_total: IntCounter,
    /// `messages_out_total{transport="ws"}`.
    pub messages_out: IntCounter,
    /// `bytes_out_total{transport="ws"}`.
    pub bytes_out: IntCounter,
    /// `deflate_messages_total{direction="in"}`.
    pub deflate_in: IntCounter,
    /// `deflate_messages_total{direction="out"}`.
    pub deflate_out: IntCounter,
    /// `ws_sends_batched_total`: the engine's socket writes made in a batch through
    /// io_uring (the rest are one `send` each), so an operator can see which path runs.
    pub sends_batched: IntCounter,
}

impl WsSeries {
    pub(crate) fn of(
        connections: &IntGaugeVec,
        connections_total: &IntCounterVec,
        messages_out: &IntCounterVec,
        bytes_out: &IntCounterVec,
        deflate_messages: &IntCounterVec,
    ) -> Self {
        Self {
            connections: connections.with_label_values(&["ws"]),
            connections_total: connections_total.with_label_values(&["ws"]),
            messages_out: messages_out.with_label_values(&["ws"]),
            bytes_out: bytes_out.with_label_values(&["ws"]),
            deflate_in: deflate_messages.with_label_values(&["in"]),
            deflate_out: deflate_messages.with_label_values(&["out"]),
            sends_batched: IntCounter::new(
                "ws_sends_batched_total",
                "WebSocket socket writes submitted in batches through io_uring",
            )
            .expect("a valid metric"),
        }
    }

    /// The series of its own (the others are children of the server's vectors).
    pub(crate) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.sends_batched.clone())]
    }
}
