//! The socket under every accepted connection: it carries the connection's slot
//! ([`ConnPermit`]) for as long as the socket lives (through a WebSocket upgrade, since
//! hyper hands the same IO to the upgraded stream), and notes when bytes last moved, for the
//! idle and first-request watchdog.

use crate::limits::ConnPermit;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the watchdog reads: when the connection started, when bytes last moved, and
/// whether a request head has arrived.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    request_seen: AtomicBool,
    /// Set by a route that must end the connection even while a write is stuck (a
    /// repository listener that stopped reading); wakes the watchdog.
    abort: tokio::sync::Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            request_seen: AtomicBool::new(false),
            abort: tokio::sync::Notify::new(),
        })
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Called when a request head was parsed: the first-request deadline no longer applies.
    pub fn saw_request(&self) {
        self.request_seen.store(true, Ordering::Relaxed);
    }

    pub fn request_seen(&self) -> bool {
        self.request_seen.load(Ordering::Relaxed)
    }

    /// Ends the connection: the watchdog resolves with [`Timeout::Aborted`] and the
    /// connection task drops the socket, whatever hyper is doing with it.
    pub fn abort(&self) {
        self.abort.notify_one();
    }
}

/// A request's handle on its connection (in the request's extensions): lets a long-lived
/// response end a connection that no longer takes bytes.
#[derive(Debug, Clone)]
pub struct ConnAbort(pub Arc<Activity>);

impl ConnAbort {
    pub fn abort(&self) {
        self.0.abort();
    }
}

/// Why the watchdog closed a connection (the label of `bandsync_http_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No complete request head within `HEADER_READ_TIMEOUT_MS` of accept.
    Header,
    /// No byte either way within `IDLE_TIMEOUT_MS`.
    Idle,
    /// A route ended the connection ([`ConnAbort`]).
    Aborted,
}

impl Timeout {
    pub fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
            Timeout::Aborted => "aborted",
        }
    }
}

/// Resolves when the connection has been silent for `idle`, or got no request head within
/// `header` of being accepted. hyper's own header timeout only starts once the HTTP version
/// has been read, so a client that sends nothing at all would escape it; this one does not.
pub async fn watchdog(activity: &Activity, header: Duration, idle: Duration) -> Timeout {
    loop {
        let now = Instant::now();
        let idle_at = activity.last() + idle;
        if now >= idle_at {
            return Timeout::Idle;
        }
        let mut wake = idle_at;
        if !activity.request_seen() {
            let header_at = activity.started() + header;
            if now >= header_at {
                return Timeout::Header;
            }
            wake = wake.min(header_at);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = activity.abort.notified() => return Timeout::Aborted,
        }
    }
}

/// An accepted TCP stream with its slot and its activity clock.
pub struct ConnIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: ConnPermit,
    /// `bandsync_tcp_connections`, raised here and lowered on drop.
    open: prometheus::IntGauge,
}

impl ConnIo {
    pub fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        permit: ConnPermit,
        open: prometheus::IntGauge,
    ) -> Self {
        open.inc();
        Self {
            stream,
            activity,
            _permit: permit,
            open,
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_hits_the_header_deadline_first() {
        let a = Activity::new();
        let t0 = Instant::now();
        let why = watchdog(&a, Duration::from_secs(10), Duration::from_secs(60)).await;
        assert_eq!(why, Timeout::Header);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_request_only_silence_counts() {
        let a = Activity::new();
        a.saw_request();
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.touch();
        let t0 = Instant::now();
        let why = watchdog(&a, Duration::from_secs(10), Duration::from_secs(60)).await;
        assert_eq!(why, Timeout::Idle);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }
}
