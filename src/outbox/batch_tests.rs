//! Batched writes (`write_batch`) into real loopback sockets, through io_uring where the
//! kernel allows it.

use super::*;
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
