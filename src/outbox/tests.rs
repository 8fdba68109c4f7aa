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

/// Batched writes (`write_batch`) into real loopback sockets, through io_uring where the
/// kernel allows it.
mod batched {
    use super::super::*;
    use crate::clock::ServerClock;
    use crate::frames::{EncodedText, WsFrame};
    use std::io::{self, IoSlice, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsFd, BorrowedFd};
    use uring_send::SendBatch;

    struct RealSocket(TcpStream);

    impl Sink for RealSocket {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            (&self.0).write_vectored(bufs)
        }
        fn socket(&self) -> Option<BorrowedFd<'_>> {
            Some(self.0.as_fd())
        }
    }

    /// An outbox writing into a fresh loopback connection, and that connection's far end.
    fn connected(listener: &TcpListener) -> (Arc<Outbox<WsFrame>>, TcpStream) {
        let far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        near.set_nonblocking(true).unwrap();
        far.set_nonblocking(true).unwrap();
        let limits = OutboxLimits {
            max_frames: 10,
            max_bytes: 1 << 20,
            max_audio_frames: 2,
        };
        let outbox = Outbox::new(limits).with_sink(Arc::new(RealSocket(near)));
        (Arc::new(outbox), far)
    }

    fn text(json: &str) -> WsFrame {
        WsFrame::Text(EncodedText::new(json.into()))
    }

    /// Everything the far end has received so far.
    fn received(far: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = far.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    }

    fn ring() -> Option<SendBatch> {
        let ring = SendBatch::new(4).ok();
        if ring.is_none() {
            eprintln!("io_uring unavailable here: the plain writes are tested elsewhere");
        }
        ring
    }

    #[test]
    fn each_frame_goes_out_once_and_in_order_even_from_an_outbox_listed_twice() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ((a, mut far_a), (b, mut far_b)) = (connected(&listener), connected(&listener));
        let (one, two, three) = (text(r#"{"n":1}"#), text(r#"{"n":2}"#), text(r#"{"n":3}"#));
        a.push(one.clone()).unwrap();
        b.push(two.clone()).unwrap();
        b.push(three.clone()).unwrap();
        // `a` twice (its task emptied it and the engine queued again, in one batch); `b`
        // with two frames, which it writes alone.
        let listed = [a.clone(), b.clone(), a.clone()];
        let mut reports = Vec::new();
        let mut scratch = BatchScratch::default();
        let clock = ServerClock::shared();
        let batched = write_batch(&listed, &mut ring, &mut scratch, &clock, |_, w| {
            reports.push(w)
        });
        assert_eq!(batched, 1, "only `a`'s one frame fits a batch");
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|w| !w.needs_task()), "{reports:?}");
        assert_eq!(reports.iter().map(|w| w.messages).sum::<u64>(), 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(received(&mut far_a), one.wire(false).to_vec());
        let mut expected = two.wire(false).to_vec();
        expected.extend_from_slice(three.wire(false));
        assert_eq!(received(&mut far_b), expected);
    }

    #[test]
    fn a_socket_without_room_keeps_its_frame_for_the_task_intact() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (full, mut far) = connected(&listener);
        let (other, mut far_other) = connected(&listener);
        // Fill the socket to the brim through the outbox's own sink.
        let filler = vec![b'f'; 64 * 1024];
        let mut sent = 0;
        loop {
            let sink = full.sink.as_deref().unwrap();
            match sink.try_write_vectored(&[IoSlice::new(&filler)]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let late = text(r#"{"late":true}"#);
        full.push(late.clone()).unwrap();
        other.push(late.clone()).unwrap();
        let mut reports = Vec::new();
        let clock = ServerClock::shared();
        let listed = [full.clone(), other.clone()];
        write_batch(
            &listed,
            &mut ring,
            &mut BatchScratch::default(),
            &clock,
            |o, w| reports.push((Arc::ptr_eq(o, &full), w)),
        );
        let full_report = reports.iter().find(|(is_full, _)| *is_full).unwrap().1;
        assert!(
            full_report.pending && full_report.needs_task(),
            "{full_report:?}"
        );
        let other_report = reports.iter().find(|(is_full, _)| !*is_full).unwrap().1;
        assert!(!other_report.needs_task(), "{other_report:?}");
        // The reader catches up; the task's write then sends the whole frame after the filler.
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < sent + late.wire(false).len() && std::time::Instant::now() < deadline {
            got.extend(received(&mut far));
            full.write(&clock);
        }
        assert_eq!(got.len(), sent + late.wire(false).len());
        assert!(got[..sent].iter().all(|&byte| byte == b'f'));
        assert_eq!(&got[sent..], &late.wire(false)[..]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(received(&mut far_other), late.wire(false).to_vec());
    }
}
