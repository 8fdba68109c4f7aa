//! The queue policies of [`Outbox`]: order, bounds, latest-wins ticks, drop-oldest audio.

use super::*;
use bytes::Bytes;
use std::time::Duration;

fn outbox(max_frames: usize, max_bytes: usize) -> Outbox<Bytes> {
    Outbox::new(OutboxLimits {
        max_frames,
        max_bytes,
        max_audio_frames: 3,
    })
}

fn drain(o: &Outbox<Bytes>) -> (Vec<Bytes>, Drained) {
    let mut out = Vec::new();
    let d = o.drain_into(&mut out);
    (out, d)
}

#[test]
fn the_sweep_pings_directly_only_a_peer_heard_lately_with_nothing_unfinished() {
    let outbox = outbox(10, 1_000);
    outbox.heard(10_000);
    assert!(outbox.may_ping_directly(10_000 + 4_949, 4_950));
    assert!(
        !outbox.may_ping_directly(10_000 + 4_950, 4_950),
        "left to the task's check"
    );
    outbox.set_unfinished(true);
    assert!(
        !outbox.may_ping_directly(10_001, 4_950),
        "a message to time out, maybe"
    );
    outbox.set_unfinished(false);
    outbox.heard(20_000);
    assert!(outbox.may_ping_directly(20_100, 4_950));
}

#[test]
fn state_frames_arrive_in_order() {
    let o = outbox(10, 1000);
    assert_eq!(o.push(Bytes::from_static(b"a")), Ok(true));
    assert_eq!(o.push(Bytes::from_static(b"b")), Ok(false));
    let (frames, d) = drain(&o);
    assert_eq!(
        frames,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    assert_eq!(d, Drained::default());
}

#[test]
fn a_newer_tick_replaces_an_unsent_one_and_stays_behind_state() {
    let o = outbox(10, 1000);
    o.push_tick(Bytes::from_static(b"t1")).unwrap();
    o.push(Bytes::from_static(b"s1")).unwrap();
    o.push_tick(Bytes::from_static(b"t2")).unwrap();
    let (frames, d) = drain(&o);
    assert_eq!(
        frames,
        vec![Bytes::from_static(b"s1"), Bytes::from_static(b"t2")]
    );
    assert_eq!(d.dropped_ticks, 1);
}

#[test]
fn ticks_never_count_against_the_state_bound() {
    let o = outbox(2, 1000);
    for _ in 0..100 {
        o.push_tick(Bytes::from_static(b"t")).unwrap();
    }
    o.push(Bytes::from_static(b"s1")).unwrap();
    o.push(Bytes::from_static(b"s2")).unwrap();
    let (frames, d) = drain(&o);
    assert_eq!(frames.len(), 3);
    assert_eq!(d.dropped_ticks, 99);
}

#[test]
fn overflowing_state_frames_closes_as_slow_consumer() {
    let o = outbox(2, 1000);
    o.push(Bytes::from_static(b"1")).unwrap();
    o.push(Bytes::from_static(b"2")).unwrap();
    assert_eq!(
        o.push(Bytes::from_static(b"3")),
        Err(PushError::SlowConsumer)
    );
    assert_eq!(o.push(Bytes::from_static(b"4")), Err(PushError::Closed));
    let (frames, d) = drain(&o);
    assert!(frames.is_empty(), "a slow client's backlog is discarded");
    assert_eq!(d.closed, Some(CloseReason::SlowConsumer));
}

#[test]
fn the_byte_bound_also_applies() {
    let o = outbox(100, 10);
    o.push(Bytes::from(vec![0u8; 8])).unwrap();
    assert_eq!(
        o.push(Bytes::from(vec![0u8; 3])),
        Err(PushError::SlowConsumer)
    );
}

#[test]
fn audio_drops_its_oldest_and_never_closes() {
    let o = outbox(2, 1000);
    for chunk in [&b"a1"[..], b"a2", b"a3", b"a4", b"a5"] {
        o.push_audio(Bytes::copy_from_slice(chunk)).unwrap();
    }
    o.push(Bytes::from_static(b"s1")).unwrap();
    o.push(Bytes::from_static(b"s2")).unwrap();
    let (frames, d) = drain(&o);
    assert_eq!(
        frames,
        vec![
            Bytes::from_static(b"a3"),
            Bytes::from_static(b"a4"),
            Bytes::from_static(b"a5"),
            Bytes::from_static(b"s1"),
            Bytes::from_static(b"s2")
        ]
    );
    assert_eq!(d.dropped_audio, 2);
    assert_eq!(
        d.closed, None,
        "audio and two state frames stay within bounds"
    );
}

#[test]
fn a_slow_consumer_close_discards_but_others_deliver_first() {
    let o = outbox(10, 1000);
    o.push(Bytes::from_static(b"why")).unwrap();
    o.close(CloseReason::RateLimited);
    assert_eq!(
        drain(&o).0.len(),
        1,
        "the error explaining the close is delivered"
    );
    let o = outbox(10, 1000);
    o.push(Bytes::from_static(b"stale")).unwrap();
    o.close(CloseReason::PeerGone);
    assert!(drain(&o).0.is_empty());
}

#[test]
fn shutdown_delivers_what_was_queued_first() {
    let o = outbox(10, 1000);
    o.push(Bytes::from_static(b"last words")).unwrap();
    o.close(CloseReason::Shutdown);
    o.close(CloseReason::SlowConsumer);
    let (frames, d) = drain(&o);
    assert_eq!(frames.len(), 1);
    assert_eq!(d.closed, Some(CloseReason::Shutdown));
}

#[test]
fn a_refused_compressed_message_still_delivers_the_error_before_the_close() {
    let o = outbox(10, 1000);
    o.push(Bytes::from_static(b"error event")).unwrap();
    o.close(CloseReason::InflatedTooBig);
    let (frames, d) = drain(&o);
    assert_eq!(frames.len(), 1);
    assert_eq!(d.closed, Some(CloseReason::InflatedTooBig));
}

#[tokio::test]
async fn a_wake_before_waiting_is_not_lost() {
    let o = outbox(10, 1000);
    o.push(Bytes::from_static(b"x")).unwrap();
    o.wake();
    tokio::time::timeout(Duration::from_secs(1), o.ready())
        .await
        .unwrap();
}

/// Direct writes (`write.rs`) into a socket that takes `room` more bytes, then would block.
mod direct {
    use super::super::*;
    use crate::clock::ServerClock;
    use crate::frames::{EncodedText, WsFrame};
    use std::io::{self, IoSlice};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct FakeSocket {
        room: Mutex<usize>,
        wire: Mutex<Vec<u8>>,
        writes: AtomicUsize,
        broken: std::sync::atomic::AtomicBool,
    }

    impl FakeSocket {
        fn give(&self, room: usize) {
            *self.room.lock().unwrap() = room;
        }
        fn taken(&self) -> Vec<u8> {
            self.wire.lock().unwrap().clone()
        }
    }

    impl Sink for FakeSocket {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            if self.broken.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut wire = self.wire.lock().unwrap();
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(*room - n);
                wire.extend_from_slice(&buf[..take]);
                n += take;
            }
            *room -= n;
            Ok(n)
        }
    }

    fn outbox(socket: &Arc<FakeSocket>, deflate: bool) -> Outbox<WsFrame> {
        let limits = OutboxLimits {
            max_frames: 10,
            max_bytes: 10_000,
            max_audio_frames: 2,
        };
        Outbox::new(limits)
            .with_deflate(deflate)
            .with_sink(socket.clone())
    }

    fn text(json: &str) -> WsFrame {
        WsFrame::Text(EncodedText::new(json.into()))
    }

    fn wire_of(frames: &[&WsFrame], deflate: bool) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| f.wire(deflate).to_vec())
            .collect()
    }

    #[test]
    fn everything_queued_goes_out_in_one_write() {
        let socket = Arc::new(FakeSocket::default());
        socket.give(usize::MAX);
        let o = outbox(&socket, false);
        let (a, b) = (text(r#"{"a":1}"#), text(r#"{"b":2}"#));
        o.push(a.clone()).unwrap();
        o.push_tick(b.clone()).unwrap();
        let written = o.write(&ServerClock::shared());
        assert_eq!(socket.writes.load(Ordering::Relaxed), 1);
        assert_eq!(socket.taken(), wire_of(&[&a, &b], false));
        assert_eq!(written.messages, 2);
        assert_eq!(written.bytes, socket.taken().len() as u64);
        assert!(!written.needs_task(), "{written:?}");
        assert!(!o.has_work());
    }

    #[test]
    fn a_frame_written_in_part_is_finished_first_and_never_dropped() {
        let socket = Arc::new(FakeSocket::default());
        let o = outbox(&socket, false);
        let tick = text(r#"{"type":"scroll_tick","seq":1}"#);
        o.push_tick(tick.clone()).unwrap();
        socket.give(5);
        let written = o.write(&ServerClock::shared());
        assert!(written.pending && written.needs_task());
        assert_eq!(written.messages, 0);
        // A newer tick would replace an unsent one, but not one already begun; a slow
        // consumer's close discards the backlog, but not the rest of a begun frame.
        let newer = text(r#"{"type":"scroll_tick","seq":2}"#);
        o.push_tick(newer.clone()).unwrap();
        o.push_audio(WsFrame::Binary(crate::frames::binary_frame(b"pcm")))
            .unwrap();
        o.close(CloseReason::SlowConsumer);
        socket.give(usize::MAX);
        let written = o.write(&ServerClock::shared());
        assert_eq!(socket.taken(), wire_of(&[&tick], false), "whole, once");
        assert_eq!(written.messages, 1);
        assert_eq!(written.closed, Some(CloseReason::SlowConsumer));
        assert!(!written.pending);
    }

    #[test]
    fn a_socket_that_would_block_keeps_everything_queued_in_order() {
        let socket = Arc::new(FakeSocket::default());
        let o = outbox(&socket, false);
        let frames: Vec<WsFrame> = (0..5).map(|i| text(&format!("{{\"n\":{i}}}"))).collect();
        for frame in &frames {
            o.push(frame.clone()).unwrap();
        }
        assert!(o.write(&ServerClock::shared()).pending);
        assert!(socket.taken().is_empty());
        let mut total = 0;
        for room in [3, 11, 1, 40, 1000] {
            socket.give(room);
            total += o.write(&ServerClock::shared()).messages;
        }
        assert_eq!(total, 5);
        assert_eq!(
            socket.taken(),
            wire_of(&frames.iter().collect::<Vec<_>>(), false)
        );
    }

    #[test]
    fn deflate_connections_get_the_compressed_form_and_heartbeats_are_stamped() {
        let socket = Arc::new(FakeSocket::default());
        socket.give(usize::MAX);
        let o = outbox(&socket, true);
        let shared = WsFrame::shared("{}".into(), Some(bytes::Bytes::from_static(b"zz")));
        o.push(shared.clone()).unwrap();
        o.push(WsFrame::Heartbeat {
            id: None,
            t0: 1.0,
            t1: 2.0,
        })
        .unwrap();
        let written = o.write(&ServerClock::shared());
        assert_eq!(written.compressed, 1);
        assert_eq!(written.messages, 2);
        let wire = socket.taken();
        assert_eq!(&wire[..4], &[0xc1, 2, b'z', b'z']);
        assert!(String::from_utf8_lossy(&wire[4..]).contains("heartbeat_response"));
    }

    #[test]
    fn a_broken_socket_closes_the_outbox_as_gone() {
        let socket = Arc::new(FakeSocket::default());
        socket.broken.store(true, Ordering::Relaxed);
        let o = outbox(&socket, false);
        o.push(text("{}")).unwrap();
        let written = o.write(&ServerClock::shared());
        assert!(written.failed);
        assert_eq!(written.closed, Some(CloseReason::PeerGone));
        assert_eq!(o.push(text("{}")), Err(PushError::Closed));
    }
}
