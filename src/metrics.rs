//! Prometheus metrics: what operators watch, and what the benchmarks cross-check.
//!
//! Collectors are atomics, so the engine thread, writer tasks and HTTP handlers update them
//! without locks. Writers add their counts once per flush, not once per frame.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub connections_rejected: IntCounter,
    pub sessions: IntGauge,
    pub messages_in: IntCounter,
    pub messages_out: IntCounterVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounterVec,
    pub errors_sent: IntCounterVec,
    pub rate_limit_violations: IntCounter,
    pub rate_limit_disconnects: IntCounter,
    /// Socket.IO sockets recovered (`socket.recovered`) with their session membership.
    pub socket_io_recoveries: IntCounter,
    pub slow_client_disconnects: IntCounter,
    pub ticks_dropped: IntCounter,
    pub ticks_sent: IntCounter,
    /// Transport commands accepted with a schedule, and activations this instance proposed.
    pub scheduled_changes: IntCounter,
    pub scheduled_activations: IntCounter,
    pub tick_lag: Histogram,
    pub event_processing: Histogram,
    pub fanout_latency: Histogram,
    pub batch_size: Histogram,
    pub engine_queue_full: IntCounter,
    pub engine_panics: IntCounter,
    pub tick_deadlines_missed: IntCounter,
    pub audio_dropped: IntCounter,
    pub audio_chunks_in: IntCounter,
    /// permessage-deflate messages: `out` written compressed (per recipient), `in`
    /// received compressed and inflated.
    pub deflate_messages: IntCounterVec,
    /// The children of the vectors above that `/ws` counts into on every connection and
    /// every pass of writes, found once.
    pub ws: crate::ws::metrics::WsSeries,
    // Connection-level and per-address limits (`src/net`, `src/limits`).
    pub tcp_connections: IntGauge,
    pub connections_refused: IntCounterVec,
    pub accept_errors: IntCounter,
    pub http_timeouts: IntCounterVec,
    /// Refused authorizations, by transport and reason: wrong share tokens (`wrong_token`,
    /// counted toward the per-address ban) and, in the authenticated mode, JWTs missing,
    /// invalid, expired, for another session, or a follower's asking to lead.
    pub auth_failures: IntCounterVec,
    pub auth_bans: IntCounter,
    pub auth_refused: IntCounter,
    pub share_starts_refused: IntCounterVec,
    /// Bytes held right now in partially received WebSocket messages, server-wide.
    pub partial_message_bytes: IntGauge,
    /// WebSocket messages refused by the frame guard, by reason (`oversize`: over
    /// `MAX_MESSAGE_BYTES`, discarded, socket kept; `too_big`, `protocol`, `corrupt`,
    /// `timeout`, `budget`: socket closed).
    pub ws_messages_refused: IntCounterVec,
    /// Sessions kept in the store for their retention window, live or not.
    pub retained_sessions: IntGauge,
    /// The cluster seam's figures (registered, zero without `REDIS_URL`).
    pub cluster: crate::cluster::metrics::ClusterMetrics,
    /// Repository streams and webhooks.
    pub repo: crate::repo::metrics::RepoMetrics,
    pub stream_manager: crate::stream_manager::metrics::StreamManagerMetrics,
    /// Every HTTP request, by route template, method and status.
    pub http: crate::http::metrics::HttpMetrics,
    /// The monitor's alerts, by type (`src/ops`).
    pub alerts: crate::ops::metrics::AlertMetrics,
    /// Retained sessions forgotten early because `MAX_RETAINED_SESSIONS` was reached.
    pub retained_sessions_evicted: IntCounter,
    /// WebSocket resumes that sent `lastVersion`: `replayed` (the missed state events were
    /// re-sent) or `snapshot` (the log no longer held them; the snapshot alone).
    pub resume_replays: IntCounterVec,
    /// `state_update`s re-sent to resuming clients.
    pub resume_replayed_events: IntCounter,
    /// WebSocket upgrades and SSE requests refused for their `Origin`.
    pub origin_rejected: IntCounterVec,
}

/// Latency buckets from 10 µs to 1 s: sync work is measured in microseconds, and a bucket
/// at 16 ms marks a whole tick interval.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.016, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("bandsync".into()), None).expect("static prefix is valid");
        let transport = &["transport"];
        let deflate_messages = IntCounterVec::new(
            Opts::new(
                "deflate_messages_total",
                "WebSocket messages sent (out) or received (in) compressed with permessage-deflate",
            ),
            &["direction"],
        )
        .unwrap();
        let connections = IntGaugeVec::new(
            Opts::new("connections", "Open realtime connections"),
            transport,
        )
        .unwrap();
        let by_transport =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), transport).unwrap();
        let connections_total = by_transport("connections_total", "Realtime connections accepted");
        let messages_out = by_transport("messages_out_total", "Frames written to clients");
        let bytes_out = by_transport("bytes_out_total", "Bytes written to clients");
        let ws = crate::ws::metrics::WsSeries::of(
            &connections,
            &connections_total,
            &messages_out,
            &bytes_out,
            &deflate_messages,
        );
        let m = Self {
            connections,
            connections_total,
            connections_rejected: IntCounter::new(
                "connections_rejected_total",
                "Connections refused because MAX_CONNECTIONS was reached",
            )
            .unwrap(),
            sessions: IntGauge::new("sessions", "Live sessions").unwrap(),
            messages_in: IntCounter::new("messages_in_total", "Client events received").unwrap(),
            messages_out,
            bytes_in: IntCounter::new("bytes_in_total", "Bytes of client events received")
                .unwrap(),
            bytes_out,
            errors_sent: IntCounterVec::new(
                Opts::new("errors_sent_total", "error events sent, by code"),
                &["code"],
            )
            .unwrap(),
            rate_limit_violations: IntCounter::new(
                "rate_limit_violations_total",
                "Events dropped by the per-socket rate limit",
            )
            .unwrap(),
            rate_limit_disconnects: IntCounter::new(
                "rate_limit_disconnects_total",
                "Sockets closed with 1008 for repeated rate-limit violations",
            )
            .unwrap(),
            socket_io_recoveries: IntCounter::new(
                "socketio_recoveries_total",
                "Socket.IO sockets that recovered their session membership after a drop",
            )
            .unwrap(),
            slow_client_disconnects: IntCounter::new(
                "slow_client_disconnects_total",
                "Clients disconnected because their outbound queue overflowed",
            )
            .unwrap(),
            ticks_dropped: IntCounter::new(
                "ticks_dropped_total",
                "scroll_ticks replaced by a newer one before a slow client took them",
            )
            .unwrap(),
            ticks_sent: IntCounter::new("ticks_total", "scroll_ticks produced, per session")
                .unwrap(),
            scheduled_changes: IntCounter::new(
                "scheduled_changes_total",
                "Transport commands accepted to take effect at a later instant",
            )
            .unwrap(),
            scheduled_activations: IntCounter::new(
                "scheduled_activations_total",
                "Scheduled changes this instance proposed to apply at their instant",
            )
            .unwrap(),
            tick_lag: Histogram::with_opts(
                HistogramOpts::new("tick_lag_seconds", "Tick start minus its scheduled deadline")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap(),
            event_processing: Histogram::with_opts(
                HistogramOpts::new(
                    "event_processing_seconds",
                    "Engine time to decide one client event and queue its frames",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap(),
            fanout_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "fanout_latency_seconds",
                    "From reading a client event off its socket to its broadcast being queued for every recipient",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap(),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("batch_size", "Events per engine batch")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0]),
            )
            .unwrap(),
            engine_queue_full: IntCounter::new(
                "engine_queue_full_total",
                "Times a connection waited because the engine queue was full",
            )
            .unwrap(),
            audio_dropped: IntCounter::new(
                "audio_dropped_total",
                "Audio frames a slow receiver lost (oldest first) so that it never stalls the share",
            )
            .unwrap(),
            audio_chunks_in: IntCounter::new(
                "audio_chunks_in_total",
                "Audio chunks received from sharers (REST and WebSocket)",
            )
            .unwrap(),
            tick_deadlines_missed: IntCounter::new(
                "tick_deadlines_missed_total",
                "Tick deadlines skipped because the engine thread got no CPU in time (no tick, no seq)",
            )
            .unwrap(),
            engine_panics: IntCounter::new(
                "engine_panics_total",
                "Events whose handling panicked; the engine contained them and carried on",
            )
            .unwrap(),
            deflate_messages,
            tcp_connections: IntGauge::new(
                "tcp_connections",
                "Open TCP connections of every kind (HTTP, SSE, WebSocket)",
            )
            .unwrap(),
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "tcp_connections_refused_total",
                    "TCP connections refused at accept: server_full (MAX_TCP_CONNECTIONS) or per_address (MAX_CONNECTIONS_PER_IP)",
                ),
                &["reason"],
            )
            .unwrap(),
            accept_errors: IntCounter::new(
                "accept_errors_total",
                "Failed accept calls (e.g. out of file descriptors), each followed by a backoff",
            )
            .unwrap(),
            http_timeouts: IntCounterVec::new(
                Opts::new(
                    "http_timeouts_total",
                    "HTTP connections closed for a missing request head (header), silence (idle), a route's abort (aborted) or a lingering close cut short (linger)",
                ),
                &["kind"],
            )
            .unwrap(),
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "auth_failures_total",
                    "Refused authorizations (wrong share token; JWT missing, invalid, expired, for another session or role), by transport and reason",
                ),
                &["transport", "reason"],
            )
            .unwrap(),
            auth_bans: IntCounter::new(
                "auth_bans_total",
                "Addresses banned after AUTH_FAILURE_LIMIT failed authentications",
            )
            .unwrap(),
            auth_refused: IntCounter::new(
                "auth_refused_total",
                "Attempts refused, without checking credentials, from a banned address",
            )
            .unwrap(),
            share_starts_refused: IntCounterVec::new(
                Opts::new(
                    "share_starts_refused_total",
                    "Share sessions not started: per_address (SHARE_SESSIONS_PER_IP) or rate (SHARE_STARTS_PER_MINUTE)",
                ),
                &["reason"],
            )
            .unwrap(),
            partial_message_bytes: IntGauge::new(
                "partial_message_bytes",
                "Bytes held in partially received WebSocket messages (PARTIAL_MESSAGE_BUDGET_BYTES bounds it)",
            )
            .unwrap(),
            ws_messages_refused: IntCounterVec::new(
                Opts::new(
                    "ws_messages_refused_total",
                    "WebSocket messages refused by the frame guard, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            retained_sessions: IntGauge::new(
                "retained_sessions",
                "Session records kept for their retention window (MAX_RETAINED_SESSIONS bounds it)",
            )
            .unwrap(),
            retained_sessions_evicted: IntCounter::new(
                "retained_sessions_evicted_total",
                "Retained sessions forgotten before their window ended, oldest first, at MAX_RETAINED_SESSIONS",
            )
            .unwrap(),
            resume_replays: IntCounterVec::new(
                Opts::new(
                    "resume_replays_total",
                    "WebSocket resumes with lastVersion, by outcome (replayed, snapshot)",
                ),
                &["outcome"],
            )
            .unwrap(),
            resume_replayed_events: IntCounter::new(
                "resume_replayed_events_total",
                "state_updates re-sent to resuming clients",
            )
            .unwrap(),
            origin_rejected: IntCounterVec::new(
                Opts::new(
                    "origin_rejected_total",
                    "WebSocket upgrades and SSE requests refused because their Origin is not allowed",
                ),
                transport,
            )
            .unwrap(),
            cluster: crate::cluster::metrics::ClusterMetrics::new(),
            repo: crate::repo::metrics::RepoMetrics::new(),
            stream_manager: crate::stream_manager::metrics::StreamManagerMetrics::new(),
            http: crate::http::metrics::HttpMetrics::new(),
            alerts: crate::ops::metrics::AlertMetrics::new(),
            registry,
            ws,
        };
        // The known reasons are present from the start (at 0), so dashboards and alert rules
        // see the series (and `rate()` its first increase) before anything is refused.
        for reason in ["server_full", "per_address"] {
            m.connections_refused.with_label_values(&[reason]);
        }
        for reason in [
            "oversize", "too_big", "corrupt", "protocol", "timeout", "budget",
        ] {
            m.ws_messages_refused.with_label_values(&[reason]);
        }
        m.register_all();
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.connections.clone()),
            Box::new(self.connections_total.clone()),
            Box::new(self.connections_rejected.clone()),
            Box::new(self.sessions.clone()),
            Box::new(self.messages_in.clone()),
            Box::new(self.messages_out.clone()),
            Box::new(self.bytes_in.clone()),
            Box::new(self.bytes_out.clone()),
            Box::new(self.errors_sent.clone()),
            Box::new(self.rate_limit_violations.clone()),
            Box::new(self.rate_limit_disconnects.clone()),
            Box::new(self.socket_io_recoveries.clone()),
            Box::new(self.slow_client_disconnects.clone()),
            Box::new(self.ticks_dropped.clone()),
            Box::new(self.ticks_sent.clone()),
            Box::new(self.scheduled_changes.clone()),
            Box::new(self.scheduled_activations.clone()),
            Box::new(self.tick_lag.clone()),
            Box::new(self.event_processing.clone()),
            Box::new(self.fanout_latency.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.engine_queue_full.clone()),
            Box::new(self.engine_panics.clone()),
            Box::new(self.tick_deadlines_missed.clone()),
            Box::new(self.audio_dropped.clone()),
            Box::new(self.audio_chunks_in.clone()),
            Box::new(self.deflate_messages.clone()),
            Box::new(self.tcp_connections.clone()),
            Box::new(self.connections_refused.clone()),
            Box::new(self.accept_errors.clone()),
            Box::new(self.http_timeouts.clone()),
            Box::new(self.auth_failures.clone()),
            Box::new(self.auth_bans.clone()),
            Box::new(self.auth_refused.clone()),
            Box::new(self.share_starts_refused.clone()),
            Box::new(self.partial_message_bytes.clone()),
            Box::new(self.ws_messages_refused.clone()),
            Box::new(self.retained_sessions.clone()),
            Box::new(self.retained_sessions_evicted.clone()),
            Box::new(self.resume_replays.clone()),
            Box::new(self.resume_replayed_events.clone()),
            Box::new(self.origin_rejected.clone()),
        ];
        let groups = self
            .cluster
            .collectors()
            .into_iter()
            .chain(self.repo.collectors())
            .chain(self.stream_manager.collectors())
            .chain(self.http.collectors())
            .chain(self.alerts.collectors())
            .chain(self.ws.collectors())
            .chain(crate::ops::metrics::process_collector());
        for c in collectors.into_iter().chain(groups) {
            self.registry.register(c).expect("metric names are unique");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8192);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }

    /// Total open realtime connections (WebSocket and SSE).
    pub fn open_connections(&self) -> i64 {
        self.connections.with_label_values(&["ws"]).get()
            + self.connections.with_label_values(&["sse"]).get()
            + self.connections.with_label_values(&["repo"]).get()
    }

    /// Counts a share start refused by a per-address limit in `share_starts_refused_total`.
    pub fn count_refused_share_start(&self, error: &crate::share::ShareError) {
        if let Some(reason) = error.refused_start_reason() {
            self.share_starts_refused.with_label_values(&[reason]).inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_prometheus_text() {
        let m = Metrics::new();
        m.messages_in.inc();
        m.connections.with_label_values(&["ws"]).inc();
        m.tick_lag.observe(0.0002);
        let text = m.render();
        assert!(text.contains("bandsync_messages_in_total 1"), "{text}");
        assert!(text.contains("bandsync_connections{transport=\"ws\"} 1"));
        assert!(text.contains("bandsync_tick_lag_seconds_bucket"));
        assert_eq!(m.open_connections(), 1);
    }
}
