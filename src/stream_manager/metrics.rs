//! What the Stream Manager counts (`bandsync_stream_*`, `bandsync_assets*`): the seed's
//! WebSocket metrics (clients, message throughput, broadcasts) and resource metrics
//! (asset count, storage used).

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

pub struct StreamManagerMetrics {
    /// Connected stream WebSockets.
    pub clients: IntGauge,
    /// Stream WebSocket messages, by direction (`in`, `out`).
    pub messages: IntCounterVec,
    /// Encoded events handed to stream channels (one per event and stream, however many
    /// clients share it).
    pub broadcasts: IntCounter,
    /// Committed changes (REST writes and WebSocket quality changes).
    pub changes: IntCounter,
    /// Clients that fell behind and were sent a fresh `streamState`.
    pub resyncs: IntCounter,
    /// Previews relayed (received from a producer).
    pub previews: IntCounter,
    /// Streams with a document on this instance (without Redis: all of them).
    pub streams: IntGauge,
    pub assets: IntGauge,
    pub asset_bytes: IntGauge,
    /// Uploads by outcome (`stored`, or the refusal's code in lower case).
    pub uploads: IntCounterVec,
}

impl StreamManagerMetrics {
    pub fn new() -> Self {
        StreamManagerMetrics {
            clients: IntGauge::new("stream_clients", "Connected stream WebSockets (/ws/stream)")
                .unwrap(),
            messages: IntCounterVec::new(
                Opts::new(
                    "stream_messages_total",
                    "Stream WebSocket messages, by direction",
                ),
                &["direction"],
            )
            .unwrap(),
            broadcasts: IntCounter::new(
                "stream_broadcasts_total",
                "Stream events encoded and handed to a stream's clients (once for all of them)",
            )
            .unwrap(),
            changes: IntCounter::new(
                "stream_changes_total",
                "Committed changes to streams (state, layers, assets, quality)",
            )
            .unwrap(),
            resyncs: IntCounter::new(
                "stream_client_resyncs_total",
                "Stream clients that fell STREAM_CLIENT_QUEUE events behind and got a fresh streamState",
            )
            .unwrap(),
            previews: IntCounter::new(
                "stream_previews_total",
                "Preview frames received from producers and relayed latest-wins",
            )
            .unwrap(),
            streams: IntGauge::new("streams", "Streams with a stored document").unwrap(),
            assets: IntGauge::new("assets", "Stored assets").unwrap(),
            asset_bytes: IntGauge::new("asset_storage_bytes", "Bytes of stored assets").unwrap(),
            uploads: IntCounterVec::new(
                Opts::new("asset_uploads_total", "Asset uploads, by outcome"),
                &["outcome"],
            )
            .unwrap(),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.clients.clone()),
            Box::new(self.messages.clone()),
            Box::new(self.broadcasts.clone()),
            Box::new(self.changes.clone()),
            Box::new(self.resyncs.clone()),
            Box::new(self.previews.clone()),
            Box::new(self.streams.clone()),
            Box::new(self.assets.clone()),
            Box::new(self.asset_bytes.clone()),
            Box::new(self.uploads.clone()),
        ]
    }
}

impl Default for StreamManagerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
