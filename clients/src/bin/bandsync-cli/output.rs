//! How events look on the terminal: one line each, either a compact human form or the
//! envelope JSON. All normal output goes to stdout through [`emit`]; errors go to stderr
//! from `main`.

use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{encode_server_frame, RequestId, ServerFrame, Transport};
use bandsync_client::{ClockEstimate, TickSummary};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;

/// Writes one line to stdout. A closed stdout (`| head`) is not an error worth dying for:
/// the run goes on to its end and its exit code.
pub fn emit(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `[  12.345s] ` relative to the start of the run.
pub fn stamp(start: Instant, at: Instant) -> String {
    format!(
        "[{:>9.3}s] ",
        at.saturating_duration_since(start).as_secs_f64()
    )
}

/// The frame as the server's envelope JSON (re-encoded with the protocol's own encoder,
/// so it is the same shape the server sends).
pub fn frame_json(frame: &ServerFrame) -> String {
    encode_server_frame(&frame.event, frame.id.as_ref(), frame.timestamp)
}

fn id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::Text(s) => format!("{s:?}"),
    }
}

fn transport_text(t: &Transport) -> String {
    format!(
        "{} tempo={} beat={:.3}@{:.3}",
        if t.playing { "playing" } else { "paused" },
        t.tempo,
        t.beat,
        t.anchor_time
    )
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// One line describing a frame, e.g.
/// `state_update v3 playing tempo=120 beat=4.000@1732190000123.456 leader=c1 msg="verse"`.
pub fn describe(frame: &ServerFrame) -> String {
    let mut out = String::from(frame.event.type_name());
    if let Some(id) = &frame.id {
        let _ = write!(out, " id={}", id_text(id));
    }
    let _ = match &frame.event {
        ServerEvent::Snapshot(s) => write!(
            out,
            " session={} client={} role={} leader={} members={}{} v{} {} msg={:?}",
            s.session_id,
            s.client_id,
            s.role.as_str(),
            or_dash(s.leader_id.as_deref()),
            s.members.len(),
            if s.members_truncated { "+" } else { "" },
            s.version,
            transport_text(&s.transport),
            s.message
        ),
        ServerEvent::StateUpdate(s) | ServerEvent::SyncResponse(s) => write!(
            out,
            " v{} {} leader={} msg={:?}",
            s.version,
            transport_text(&s.transport),
            or_dash(s.leader_id.as_deref()),
            s.message
        ),
        ServerEvent::ScrollTick(t) => write!(
            out,
            " #{} beat={:.3} tempo={}{} v{} at={:.3}",
            t.seq,
            t.beat,
            t.tempo,
            if t.playing { "" } else { " paused" },
            t.version,
            t.server_time
        ),
        ServerEvent::RoomStats(s) => write!(
            out,
            " members={} followers={} listeners={} leader={}",
            s.members,
            s.followers,
            s.listeners,
            or_dash(s.leader_id.as_deref())
        ),
        ServerEvent::HeartbeatResponse(h) => {
            write!(out, " t0={:.3} t1={:.3} t2={:.3}", h.t0, h.t1, h.t2)
        }
        ServerEvent::Error(e) => write!(out, " {}: {}", e.code, e.message),
        ServerEvent::RateLimitExceeded(r) => write!(out, " retry after {} ms", r.retry_after_ms),
        ServerEvent::Shutdown(s) => write!(out, " reason={:?}", s.reason),
        ServerEvent::ShareStarted(s) => write!(out, " session={}", s.session_id),
        ServerEvent::ShareMetadata(m) => {
            let field = |k: &str| {
                m.metadata
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_owned()
            };
            write!(
                out,
                " title={:?} artist={:?}",
                field("title"),
                field("artist")
            )
        }
        ServerEvent::ShareEnded(e) => write!(out, " session={} reason={}", e.session_id, e.reason),
        ServerEvent::AudioChunk(c) => write!(
            out,
            " #{} {} Hz x{} {} ({} base64 chars)",
            c.sequence_number,
            c.sample_rate,
            c.channels,
            c.format,
            c.data.len()
        ),
        ServerEvent::StreamEvent(e) => write!(
            out,
            " {} v{}",
            e.get("type").and_then(|t| t.as_str()).unwrap_or("?"),
            e.get("version").and_then(|v| v.as_u64()).unwrap_or(0)
        ),
        ServerEvent::Sheet(s) => write!(
            out,
            " session={} v{} ({} lines)",
            s.session_id,
            s.version,
            s.text.lines().count()
        ),
    };
    out
}

/// `clock offset=+12.345 ms ±0.250 ms (rtt 0.500 ms, 3 samples)`.
pub fn clock_text(estimate: &ClockEstimate, samples: usize) -> String {
    format!(
        "clock offset={:+.3} ms ±{:.3} ms (rtt {:.3} ms, {samples} samples)",
        estimate.offset, estimate.error_bound, estimate.round_trip
    )
}

pub fn clock_json(estimate: &ClockEstimate, samples: usize) -> Value {
    json!({
        "type": "clock",
        "offsetMs": estimate.offset,
        "errorBoundMs": estimate.error_bound,
        "roundTripMs": estimate.round_trip,
        "samples": samples,
    })
}

/// The end-of-run summary as one JSON object (for `--json` runs).
pub fn summary_json(summary: &TickSummary, clock: Option<&ClockEstimate>) -> Value {
    let percentiles = |p: &Option<bandsync_client::Percentiles>| {
        p.map(|p| json!({"p50": p.p50, "p99": p.p99, "max": p.max}))
    };
    json!({
        "type": "summary",
        "ticksReceived": summary.received,
        "missingSeq": summary.missing,
        "outOfOrder": summary.out_of_order,
        "jitterMs": percentiles(&summary.jitter_ms),
        "lagMs": percentiles(&summary.lag_ms),
        "negativeLag": summary.negative_lag,
        "minLagMs": summary.min_lag_ms,
        "clock": clock.map(|c| json!({"offsetMs": c.offset, "errorBoundMs": c.error_bound})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_client::protocol::server::{ErrorEvent, ScrollTick};
    use bandsync_client::protocol::ErrorCode;

    #[test]
    fn describes_ticks_and_errors_on_one_line() {
        let tick = ServerFrame {
            id: None,
            timestamp: 2.0,
            event: ServerEvent::ScrollTick(ScrollTick {
                session_id: "band".into(),
                seq: 42,
                beat: 1.5,
                tempo: 120.0,
                playing: true,
                version: 7,
                server_time: 2.0,
            }),
        };
        assert_eq!(
            describe(&tick),
            "scroll_tick #42 beat=1.500 tempo=120 v7 at=2.000"
        );
        let error = ServerFrame {
            id: Some(RequestId::from(3)),
            timestamp: 2.0,
            event: ServerEvent::Error(ErrorEvent {
                code: ErrorCode::NotLeader,
                message: "only the leader may play".into(),
            }),
        };
        assert_eq!(
            describe(&error),
            "error id=3 NOT_LEADER: only the leader may play"
        );
        let json = frame_json(&error);
        assert!(
            json.starts_with(r#"{"type":"error","id":3,"timestamp":2"#),
            "{json}"
        );
    }
}
