//! The stream clients connected to this instance, per stream: a bounded broadcast of
//! encoded events, the latest preview frame, and the counts a status reports.
//!
//! An event is encoded once (`{"type", "payload", "timestamp", "version"}`) and the same
//! bytes go to every client. Previews go through a `watch` channel: it holds only the
//! newest frame, which is exactly the latest-wins relay a viewer behind on previews needs.

use bandsync_protocol::stream_manager::StageEvent;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One pushed change, encoded.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub version: u64,
    /// The text frame, shared by every client (a clone is a reference count).
    pub frame: Utf8Bytes,
    /// A `streamState`: the whole stream, so it may follow any earlier version.
    pub whole: bool,
}

/// The clients of one stream.
pub struct StreamChannel {
    pub events: broadcast::Sender<Pushed>,
    pub preview: watch::Sender<Option<Utf8Bytes>>,
    viewers: AtomicUsize,
    /// The connection sending previews, if any.
    producer: Mutex<Option<u64>>,
}

impl StreamChannel {
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    pub fn has_producer(&self) -> bool {
        self.producer.lock().expect("producer lock").is_some()
    }

    pub fn is_producer(&self, conn: u64) -> bool {
        *self.producer.lock().expect("producer lock") == Some(conn)
    }

    /// Makes `conn` the producer unless another connection is; true when `conn` is it.
    pub fn claim_producer(&self, conn: u64) -> bool {
        let mut producer = self.producer.lock().expect("producer lock");
        match *producer {
            Some(current) => current == conn,
            None => {
                *producer = Some(conn);
                true
            }
        }
    }
}

#[derive(Default)]
pub struct StageHub {
    streams: Mutex<HashMap<String, Arc<StreamChannel>>>,
}

/// A connected client: leaving (dropping this) updates the counts and frees the stream's
/// channel when it was the last.
pub struct Viewer {
    hub: Arc<StageHub>,
    key: String,
    conn: u64,
    pub channel: Arc<StreamChannel>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        {
            let mut producer = self.channel.producer.lock().expect("producer lock");
            if *producer == Some(self.conn) {
                *producer = None;
                self.channel.preview.send_replace(None);
            }
        }
        let mut streams = self.hub.streams.lock().expect("hub lock");
        if self.channel.viewers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Only remove the channel if no one joined it in the meantime.
            if self.channel.viewers() == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

impl StageHub {
    /// Joins the stream `key` as connection `conn`; `queue` bounds each client's backlog.
    pub fn join(self: &Arc<Self>, key: &str, conn: u64, queue: usize) -> Viewer {
        let mut streams = self.streams.lock().expect("hub lock");
        let channel = streams
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(StreamChannel {
                    events: broadcast::channel(queue).0,
                    preview: watch::channel(None).0,
                    viewers: AtomicUsize::new(0),
                    producer: Mutex::new(None),
                })
            })
            .clone();
        channel.viewers.fetch_add(1, Ordering::AcqRel);
        Viewer {
            hub: self.clone(),
            key: key.to_owned(),
            conn,
            channel,
        }
    }

    pub fn channel(&self, key: &str) -> Option<Arc<StreamChannel>> {
        self.streams.lock().expect("hub lock").get(key).cloned()
    }

    /// `(viewers, producer)` of a stream on this instance.
    pub fn counts(&self, key: &str) -> (usize, bool) {
        self.channel(key)
            .map_or((0, false), |c| (c.viewers(), c.has_producer()))
    }

    /// Every connected client, all streams.
    pub fn total_viewers(&self) -> usize {
        let streams = self.streams.lock().expect("hub lock");
        streams.values().map(|c| c.viewers()).sum()
    }

    /// Sends already encoded frames to the clients of `key` (none connected: nothing).
    pub fn push(&self, key: &str, pushed: impl IntoIterator<Item = Pushed>) -> usize {
        let Some(channel) = self.channel(key) else {
            return 0;
        };
        let mut sent = 0;
        for item in pushed {
            // An error only means every receiver left meanwhile.
            if channel.events.send(item).is_ok() {
                sent += 1;
            }
        }
        sent
    }
}

#[derive(Serialize)]
struct Frame<'a> {
    #[serde(flatten)]
    event: &'a StageEvent,
    timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

/// Encodes one event in the seed's envelope with the server's `timestamp` (and `version`
/// for a change).
pub fn encode(event: &StageEvent, timestamp: f64, version: Option<u64>) -> Bytes {
    let frame = Frame {
        event,
        timestamp,
        version,
    };
    Bytes::from(serde_json::to_vec(&frame).expect("stage events always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::stream_manager::events::{StageError, VisibilityChange};

    #[test]
    fn frames_are_the_seed_envelope_plus_timestamp_and_version() {
        let event = StageEvent::LayerVisibility(VisibilityChange {
            id: "host".into(),
            visible: true,
        });
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&event, 5.5, Some(3))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "layerVisibility", "payload": {"id": "host", "visible": true},
                               "timestamp": 5.5, "version": 3})
        );
        let error = StageEvent::Error(StageError {
            code: "X".into(),
            message: "m".into(),
        });
        let json: serde_json::Value = serde_json::from_slice(&encode(&error, 1.0, None)).unwrap();
        assert!(json.get("version").is_none());
    }

    #[test]
    fn channels_live_while_someone_watches_and_producers_are_single() {
        let hub = Arc::new(StageHub::default());
        let a = hub.join("band", 1, 4);
        let b = hub.join("band", 2, 4);
        assert_eq!(hub.counts("band"), (2, false));
        assert!(a.channel.claim_producer(1));
        assert!(!b.channel.claim_producer(2));
        a.channel
            .preview
            .send_replace(Some(Utf8Bytes::from_static("frame")));
        drop(a);
        assert_eq!(
            hub.counts("band"),
            (1, false),
            "the producer's leaving frees the role"
        );
        assert!(
            b.channel.preview.borrow().is_none(),
            "and clears its last frame"
        );
        assert!(b.channel.claim_producer(2));
        drop(b);
        assert!(hub.channel("band").is_none());
        assert_eq!(
            hub.push(
                "band",
                [Pushed {
                    version: 1,
                    frame: Utf8Bytes::default(),
                    whole: false,
                }]
            ),
            0
        );
    }
}
