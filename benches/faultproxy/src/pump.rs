//! One direction of one connection: a reader that stamps each chunk with its release time
//! and a writer that sends it then, in order.
//!
//! The order rule: a chunk's release time is `max(arrival + its drawn delay, the previous
//! chunk's release)`. TCP is a byte stream, so no chunk may overtake another; a late chunk
//! holds up those behind it, as a queue on a real link does. Reader and writer are two
//! tasks joined by a bounded channel, so a writer waiting out a delay never stops the
//! reader from stamping what arrives meanwhile (stamping late would add the wait to every
//! chunk behind it); when the channel is full the reader stops reading and TCP's own flow
//! control pushes back on the sender.

use crate::model::DelayModel;
use crate::stats::Recorder;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at once: a WebSocket frame of this protocol is far smaller, so one read is
/// usually one frame and each frame gets its own delay.
const READ_CHUNK: usize = 16 * 1024;

/// Chunks in flight per direction, at most (with [`READ_CHUNK`], 4 MiB).
const QUEUE: usize = 256;

struct Chunk {
    bytes: Vec<u8>,
    read_at: Instant,
    release: Instant,
    drawn_ms: f64,
    stalled: bool,
}

/// Copies `from` to `to` through `model`, recording each chunk's real delay. Ends when
/// `from` ends (the write side is then shut down, after the last chunk) or either fails.
pub async fn run(from: OwnedReadHalf, to: OwnedWriteHalf, model: DelayModel, rec: Arc<Recorder>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = read(from, model, tx);
    let writer = write(to, rx, rec);
    // The writer ends after the reader drops its sender and the queue drains.
    let _ = tokio::join!(reader, writer);
}

async fn read(mut from: OwnedReadHalf, mut model: DelayModel, tx: mpsc::Sender<Chunk>) {
    let mut previous = Instant::now();
    loop {
        let mut bytes = vec![0; READ_CHUNK];
        let n = match from.read(&mut bytes).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        bytes.truncate(n);
        let read_at = Instant::now();
        let draw = model.draw();
        let release = (read_at + Duration::from_secs_f64(draw.delay_ms / 1000.0)).max(previous);
        previous = release;
        let chunk = Chunk {
            bytes,
            read_at,
            release,
            drawn_ms: draw.delay_ms,
            stalled: draw.stalled,
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

async fn write(mut to: OwnedWriteHalf, mut rx: mpsc::Receiver<Chunk>, rec: Arc<Recorder>) {
    while let Some(chunk) = rx.recv().await {
        tokio::time::sleep_until(chunk.release).await;
        if to.write_all(&chunk.bytes).await.is_err() {
            return;
        }
        let delay = chunk.read_at.elapsed().as_secs_f64() * 1000.0;
        rec.record(delay, chunk.drawn_ms, chunk.bytes.len(), chunk.stalled);
    }
    let _ = to.shutdown().await;
}
