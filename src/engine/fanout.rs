//! Encoding (and compressing) once and queueing the shared bytes for every recipient;
//! ticks.

use super::session::Session;
use super::writers::WritePool;
use super::{ConnKey, Engine, Peer};
use crate::clock::ServerClock;
use crate::deflate::Deflater;
use crate::frames::{sse_event, EncodedText, WsFrame};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, PushError, PREFETCH_AHEAD};
use bandsync_protocol::server::{RoomStats, ScrollTick};
use bandsync_protocol::{encode_server_frame, RequestId, ServerEvent};
use bytes::Bytes;
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Who a broadcast is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Audience {
    /// Every member and listener, but `except`; kept for `Last-Event-ID` resumes.
    Everyone { except: Option<ConnKey> },
    /// The receivers authorized for share data (see [`super::Access::share_ok`]), but
    /// `except`; never replayed, so the others cannot get it through a resume.
    ShareReceivers { except: Option<ConnKey> },
}

/// Writers to wake once the current batch or tick is fully queued.
#[derive(Default)]
pub(super) struct Wakes {
    pub(super) ws: Vec<Arc<Outbox<WsFrame>>>,
    pub(super) sse: Vec<Arc<Outbox<Bytes>>>,
    /// The sockets of one slice ([`Wakes::flush_some`]), kept to be reused.
    slice: Vec<Arc<Outbox<WsFrame>>>,
}

impl Wakes {
    /// Writes what the batch queued for each `/ws` socket straight into it (see
    /// [`WritePool`]), and wakes every other writer.
    pub(super) fn flush(&mut self, pool: &mut WritePool, clock: &ServerClock, metrics: &Metrics) {
        pool.write_all(&mut self.ws, clock, metrics);
        self.wake_sse();
    }

    /// As [`Wakes::flush`], for at most `most` of the `/ws` sockets. True while some are
    /// left. (The slice is taken from the end: the order between sockets means nothing,
    /// each socket's own order is its outbox's.)
    pub(super) fn flush_some(
        &mut self,
        most: usize,
        pool: &mut WritePool,
        clock: &ServerClock,
        metrics: &Metrics,
    ) -> bool {
        let from = self.ws.len().saturating_sub(most);
        self.slice.extend(self.ws.drain(from..));
        pool.write_all(&mut self.slice, clock, metrics);
        self.wake_sse();
        !self.ws.is_empty()
    }

    fn wake_sse(&mut self) {
        for outbox in self.sse.drain(..) {
            outbox.wake();
        }
    }
}

/// Prefetches the outbox [`PREFETCH_AHEAD`] members after the one at `index`.
fn prefetch_member(members: &super::session::Members, index: usize) {
    if let Some((_, outbox)) = members.get_index(index + PREFETCH_AHEAD) {
        outbox.prefetch();
    }
}

/// Records the outcome of one push: a writer to wake, or a slow client to count.
pub(super) fn after_push<F>(
    result: Result<bool, PushError>,
    outbox: &Arc<Outbox<F>>,
    wakes: &mut Vec<Arc<Outbox<F>>>,
    metrics: &Metrics,
    session: &str,
) {
    match result {
        Ok(true) => wakes.push(outbox.clone()),
        Ok(false) | Err(PushError::Closed) => {}
        Err(PushError::SlowConsumer) => {
            metrics.slow_client_disconnects.inc();
            tracing::warn!(
                session,
                "client fell behind on state events; disconnecting as slow (4001)"
            );
            // The push closed the outbox; wake the writer so it sends the close now.
            wakes.push(outbox.clone());
        }
    }
}

/// The frame for an encoded envelope, framed once: compressed too, once, when it is over
/// `COMPRESSION_THRESHOLD` and `wanted()` says some recipient negotiated deflate (asked
/// only for large messages, so small ones cost no scan).
fn ws_frame(json: String, deflater: &mut Deflater, wanted: impl FnOnce() -> bool) -> WsFrame {
    let deflated = if deflater.worthwhile(json.len()) && wanted() {
        deflater.deflate(json.as_bytes())
    } else {
        None
    };
    WsFrame::shared(json, deflated)
}

/// The Socket.IO form of one broadcast, converted at its first Socket.IO recipient and
/// shared by the rest (a session without Socket.IO members never pays for it).
#[derive(Default)]
struct SocketIoForm(Option<WsFrame>);

impl SocketIoForm {
    fn of(&mut self, frame: &WsFrame) -> WsFrame {
        self.0
            .get_or_insert_with(|| {
                let (WsFrame::Text(text) | WsFrame::Deflated { text, .. }) = frame else {
                    return frame.clone();
                };
                match bandsync_protocol::socketio::broadcast_packet(text.json()) {
                    Some(packet) => WsFrame::Packet(Utf8Bytes::from(packet)),
                    None => frame.clone(),
                }
            })
            .clone()
    }
}

/// Encodes `event` once and queues it for every member (except `except`) and listener,
/// and keeps it in the SSE history for `Last-Event-ID` resumes.
pub(super) fn broadcast(
    session: &mut Session,
    wakes: &mut Wakes,
    metrics: &Metrics,
    deflater: &mut Deflater,
    event: &ServerEvent,
    now_ms: f64,
    except: Option<ConnKey>,
) {
    let (id, sse) = queue(session, wakes, metrics, deflater, event, now_ms, &|key| {
        Some(key) != except
    });
    session.remember(id, sse);
}

/// Queues one encoding of `event` for every connection `admit` accepts; returns the SSE
/// event id and frame.
fn queue(
    session: &mut Session,
    wakes: &mut Wakes,
    metrics: &Metrics,
    deflater: &mut Deflater,
    event: &ServerEvent,
    now_ms: f64,
    admit: &dyn Fn(ConnKey) -> bool,
) -> (u64, Bytes) {
    let json = encode_server_frame(event, None, now_ms);
    let id = session.next_event_id();
    let sse = sse_event(id, &json);
    let members = &session.members;
    let frame = ws_frame(json, deflater, || {
        members
            .iter()
            .any(|(key, outbox)| admit(*key) && outbox.deflate())
    });
    let mut packet = SocketIoForm::default();
    for (index, (key, outbox)) in session.members.iter().enumerate() {
        prefetch_member(&session.members, index);
        if admit(*key) {
            let frame = match outbox.socket_io() {
                true => packet.of(&frame),
                false => frame.clone(),
            };
            let result = outbox.push(frame);
            after_push(result, outbox, &mut wakes.ws, metrics, &session.id);
        }
    }
    for (key, outbox) in &session.listeners {
        if admit(*key) {
            let result = outbox.push(sse.clone());
            after_push(result, outbox, &mut wakes.sse, metrics, &session.id);
        }
    }
    (id, sse)
}

/// Queues the session's `scroll_tick` for deadline `deadline` for everyone, if it is
/// playing. Its `seq` comes from the deadline and the session's shared tick count, so every
/// instance numbers the same deadline alike (`tick_grid`). Ticks (about 200 bytes) are
/// always below `COMPRESSION_THRESHOLD` and go out plain.
///
/// A scheduled change whose instant has come counts as applied (its activation may still
/// be on its way from another instance), numbering included.
fn tick(
    session: &mut Session,
    wakes: &mut Wakes,
    metrics: &Metrics,
    now_ms: f64,
    tick_ms: f64,
    deadline: u64,
) {
    if session.audience() == 0 {
        return;
    }
    let (transport, ticks, _) = session.effective(now_ms, tick_ms);
    if !transport.playing {
        return;
    }
    let Some(seq) = ticks.seq_at(deadline) else {
        return;
    };
    let id = session.next_event_id();
    let event = ServerEvent::ScrollTick(ScrollTick {
        session_id: String::from(&*session.id),
        seq,
        beat: transport.position_at(now_ms),
        tempo: transport.tempo,
        playing: true,
        version: session.version,
        server_time: now_ms,
    });
    let json = encode_server_frame(&event, None, now_ms);
    if !session.listeners.is_empty() {
        let sse = sse_event(id, &json);
        for outbox in session.listeners.values() {
            let result = outbox.push_tick(sse.clone());
            after_push(result, outbox, &mut wakes.sse, metrics, &session.id);
        }
    }
    let text = WsFrame::Text(EncodedText::new(json));
    let mut packet = SocketIoForm::default();
    for (index, outbox) in session.members.values().enumerate() {
        prefetch_member(&session.members, index);
        let frame = match outbox.socket_io() {
            true => packet.of(&text),
            false => text.clone(),
        };
        let result = outbox.push_tick(frame);
        after_push(result, outbox, &mut wakes.ws, metrics, &session.id);
    }
    metrics.ticks_sent.inc();
}

impl Engine {
    /// Ticks every playing session for tick deadline `deadline` (see `tick_grid`).
    ///
    /// Only the sessions listed in `ticking` are looked at, and one that can no longer tick
    /// (stopped, retired) leaves the list here: an idle session costs nothing 62.5 times a
    /// second. (Looking at every session was 4 to 9 % of a core with 10,000 idle ones, in
    /// the profiles of BENCHMARKS.md, issue 12, fifth round.)
    pub(super) fn tick_all(&mut self, deadline: u64) {
        let now_ms = self.clock.now_ms();
        let tick_ms = self.tick_ms();
        let (sessions, wakes, metrics) = (&mut self.sessions, &mut self.wakes, &self.metrics);
        self.ticking.retain(|id| {
            let Some(session) = sessions.get_mut(id).filter(|s| s.may_tick()) else {
                return false;
            };
            tick(session, wakes, metrics, now_ms, tick_ms, deadline);
            true
        });
    }

    /// The one local fan-out: encodes `event` once for this instance and queues it for
    /// `audience`. Committed states (local or remote), `room_stats` and share events all
    /// leave through here.
    pub(super) fn broadcast(&mut self, session_id: &str, event: &ServerEvent, audience: Audience) {
        let now_ms = self.clock.now_ms();
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let (except, share_only) = match audience {
            Audience::Everyone { except } => (except, false),
            Audience::ShareReceivers { except } => (except, true),
        };
        let conns = &self.conns;
        let admit = |key: ConnKey| {
            Some(key) != except
                && (!share_only || conns.get(&key).is_some_and(|c| c.access.share_ok))
        };
        let (id, sse) = queue(
            session,
            &mut self.wakes,
            &self.metrics,
            &mut self.deflater,
            event,
            now_ms,
            &admit,
        );
        if !share_only {
            session.remember(id, sse);
        }
    }

    /// Sends one event to one connection, with the request id echoed.
    pub(super) fn send_to(&mut self, key: ConnKey, event: &ServerEvent, id: Option<&RequestId>) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let json = encode_server_frame(event, id, self.clock.now_ms());
        let session = conn.session.as_deref().unwrap_or("");
        match &conn.peer {
            Peer::Ws(outbox) => {
                // A large snapshot is compressed for this one recipient if it asked.
                let frame = ws_frame(json, &mut self.deflater, || outbox.deflate());
                let result = outbox.push(frame);
                after_push(result, outbox, &mut self.wakes.ws, &self.metrics, session);
            }
            Peer::Sse(outbox) => {
                // Direct SSE events (the opening snapshot) carry the session's current
                // event id: resuming after it replays what came next.
                let id = self
                    .sessions
                    .get(session)
                    .map_or(0, |s| s.current_event_id());
                let result = outbox.push(sse_event(id, &json));
                after_push(result, outbox, &mut self.wakes.sse, &self.metrics, session);
            }
        }
    }

    /// Marks a session's audience as changed; `room_stats` follows, coalesced.
    pub(super) fn stats_changed(&mut self, session_id: &Arc<str>) {
        // The share API's listenerCount is read at any time: keep it exact, unlike the
        // coalesced room_stats.
        self.share_audience_changed(session_id);
        self.stats_dirty.insert(session_id.clone());
        if self.broker.is_shared() {
            self.presence_dirty.insert(session_id.clone());
        }
    }

    /// Sends `room_stats` for changed sessions whose last one is at least
    /// `ROOM_STATS_INTERVAL_MS` old. A changed session whose last one is more recent waits
    /// in `stats_waiting`, by the instant it is due, for the first pass at or after that
    /// instant (passes follow every batch and every tick). A pass looks only at the sessions
    /// changed since the last pass and at those that came due: with every session of a busy
    /// server waiting, looking at each of them after every batch was a cost per batch that
    /// grew with the sessions (BENCHMARKS.md, issue 12, fifth round).
    pub(super) fn flush_room_stats(&mut self) {
        self.publish_presence();
        let now = Instant::now();
        let next_due = self.stats_waiting.peek().map(|Reverse((due, _))| *due);
        if self.stats_dirty.is_empty() && next_due.is_none_or(|due| due > now) {
            return;
        }
        let interval = self.settings.room_stats_interval;
        let now_ms = self.clock.now_ms();
        let (sessions, waiting) = (&mut self.sessions, &mut self.stats_waiting);
        let (wakes, metrics, deflater) = (&mut self.wakes, &self.metrics, &mut self.deflater);
        for session_id in self.stats_dirty.drain() {
            let Some(session) = sessions.get_mut(&session_id) else {
                continue;
            };
            if session.stats_due.is_some() {
                // Already waiting: it sends the totals of its instant, this change included.
                continue;
            }
            match session.stats_sent_at {
                Some(sent) if now.duration_since(sent) < interval => {
                    session.stats_due = Some(sent + interval);
                    waiting.push(Reverse((sent + interval, session_id)));
                }
                _ => send_room_stats(session, now, now_ms, wakes, metrics, deflater),
            }
        }
        while let Some(Reverse((due, _))) = waiting.peek() {
            if *due > now {
                break;
            }
            let Reverse((due, session_id)) = waiting.pop().expect("peeked");
            // A retired session leaves its entry behind; a new session of the same id has
            // its own (or none).
            let Some(session) = sessions
                .get_mut(&session_id)
                .filter(|s| s.stats_due == Some(due))
            else {
                continue;
            };
            session.stats_due = None;
            send_room_stats(session, now, now_ms, wakes, metrics, deflater);
        }
    }
}

/// Sends the session's `room_stats` (its totals now) to everyone in it.
fn send_room_stats(
    session: &mut Session,
    now: Instant,
    now_ms: f64,
    wakes: &mut Wakes,
    metrics: &Metrics,
    deflater: &mut Deflater,
) {
    session.stats_sent_at = Some(now);
    let (members, followers, listeners) = session.totals();
    let event = ServerEvent::RoomStats(RoomStats {
        session_id: String::from(&*session.id),
        members,
        followers,
        listeners,
        leader_id: session.leader.as_deref().map(str::to_owned),
    });
    broadcast(session, wakes, metrics, deflater, &event, now_ms, None);
}
