//! The socket under every accepted connection: it carries the connection's slot
//! ([`ConnPermit`]) for as long as the socket lives (through a WebSocket upgrade, since
//! hyper hands the same IO to the upgraded stream), and notes when bytes last moved, for the
//! idle and first-request watchdog.

use crate::limits::ConnPermit;
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How many bytes a connection's first read takes. A browser's WebSocket handshake is 400
/// to 800 bytes, more with cookies; a longer head goes to hyper, which reads on.
pub const FIRST_READ_BYTES: usize = 4096;

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
    /// Set when the watchdog ends the connection: the socket is closed at once, without
    /// the lingering close (a silent or stuck client has nothing more to say).
    closed_hard: AtomicBool,
    /// Whether the latest request came with a body: only then may the client still be
    /// sending when the server closes, so only then is the close a lingering one.
    body_sent: AtomicBool,
    /// Set by a route that takes the socket over after an upgrade (`/ws`): when hyper drops
    /// the upgraded connection, the socket is put in `handed_over` instead of closed.
    hand_over: AtomicBool,
    handed_over: std::sync::Mutex<Option<HandedOver>>,
    /// What to do with the socket once it is released, for a request answered without
    /// hyper (see `net::first_request`): there is no upgrade future to wait on, and the
    /// socket goes straight to this instead of to `handed_over`.
    on_release: std::sync::Mutex<Option<ReleaseTo>>,
}

/// Given the socket when the connection lets go of it after a `101` answered without
/// hyper, or `None` when the connection failed before the answer was out. Called on the
/// connection's own task, as the connection ends: the route needs no task of its own to
/// wait for the socket.
pub type OnRelease = Box<dyn FnOnce(Option<HandedOver>) + Send>;

/// An [`OnRelease`] kept in the record (named only for `Debug`).
struct ReleaseTo(OnRelease);

impl std::fmt::Debug for ReleaseTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseTo")
    }
}

/// The lock, whether or not a thread panicked while holding it (what it guards is a plain
/// slot, whole either way).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A socket handed over after an upgrade: the stream, its slot, and the bytes read from
/// it that no one consumed yet (they come after any that hyper had buffered).
#[derive(Debug)]
pub struct HandedOver {
    pub stream: TcpStream,
    pub slot: SocketSlot,
    pub unread: BytesMut,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            request_seen: AtomicBool::new(false),
            abort: tokio::sync::Notify::new(),
            closed_hard: AtomicBool::new(false),
            body_sent: AtomicBool::new(false),
            hand_over: AtomicBool::new(false),
            handed_over: std::sync::Mutex::new(None),
            on_release: std::sync::Mutex::new(None),
        })
    }

    /// Asks for the socket, with its slot, when hyper lets go of it (see
    /// [`Activity::take_socket`]).
    ///
    /// Why not `Upgraded::downcast`: hyper-util's protocol detection wraps every connection
    /// in a private type, so the upgraded stream cannot be downcast to ours; dropping it
    /// is the one way to get the socket back out.
    pub fn hand_over_socket(&self) {
        self.hand_over.store(true, Ordering::Relaxed);
    }

    /// The socket, once hyper dropped it after [`Activity::hand_over_socket`].
    pub fn take_socket(&self) -> Option<HandedOver> {
        lock(&self.handed_over).take()
    }

    /// Asks for the socket, for a request answered without hyper: `then` gets it when
    /// the connection lets go of it after the answer (see [`OnRelease`]). `then` must not
    /// hold this record: it is kept here until called.
    pub fn hand_over_socket_to(&self, then: OnRelease) {
        *lock(&self.on_release) = Some(ReleaseTo(then));
        self.hand_over_socket();
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

    /// Whether the watchdog ended the connection.
    pub fn closed_hard(&self) -> bool {
        self.closed_hard.load(Ordering::Relaxed)
    }

    /// Notes whether the request just parsed has a body to follow.
    pub fn saw_body(&self, body: bool) {
        self.body_sent.store(body, Ordering::Relaxed);
    }

    /// Whether a close now should linger: the latest request had a body (which the route
    /// may have answered without reading) and the watchdog did not end the connection.
    fn lingers(&self) -> bool {
        self.body_sent.load(Ordering::Relaxed) && !self.closed_hard()
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
/// Once it resolves the connection is closed hard (no lingering close).
pub async fn watchdog(activity: &Activity, header: Duration, idle: Duration) -> Timeout {
    let why = watch(activity, header, idle).await;
    activity.closed_hard.store(true, Ordering::Relaxed);
    why
}

async fn watch(activity: &Activity, header: Duration, idle: Duration) -> Timeout {
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
///
/// When it is dropped without the client having closed its side, after a request with a
/// body (the server ends the connection, e.g. after answering before reading the body),
/// the socket is not closed at once but handed to a [`linger`](super::linger) task, with
/// its slot: see that module.
pub struct ConnIo {
    /// `None` only once `Drop` has taken it.
    held: Option<Held>,
    /// What [`ConnIo::read_first`] read and no one has consumed yet: the next reads get
    /// it before the socket's bytes. Unallocated once drained.
    early: BytesMut,
    activity: Arc<Activity>,
    /// The client closed its side (a read returned end of stream): nothing to linger for.
    peer_closed: bool,
    /// A read or write failed: the socket is gone, nothing to linger for either.
    failed: bool,
    /// Counts lingering closes cut short by a bound (`http_timeouts_total{kind="linger"}`).
    cut_short: prometheus::IntCounter,
}

/// What lives as long as the socket: the socket and its [`SocketSlot`].
struct Held {
    stream: TcpStream,
    slot: SocketSlot,
}

/// A socket's slot under the connection caps and its place in `bandsync_tcp_connections`
/// (lowered on drop): kept by whatever owns the socket, for as long as it does.
pub struct SocketSlot {
    _permit: ConnPermit,
    open: prometheus::IntGauge,
}

impl std::fmt::Debug for SocketSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketSlot")
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl ConnIo {
    pub fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        permit: ConnPermit,
        open: prometheus::IntGauge,
        cut_short: prometheus::IntCounter,
    ) -> Self {
        open.inc();
        Self {
            held: Some(Held {
                stream,
                slot: SocketSlot {
                    _permit: permit,
                    open,
                },
            }),
            early: BytesMut::new(),
            activity,
            peer_closed: false,
            failed: false,
            cut_short,
        }
    }

    /// Reads the connection's first bytes, at most [`FIRST_READ_BYTES`], waiting until
    /// some arrive (or the client closes: then nothing). They stay here, to be consumed by
    /// [`ConnIo::consume_early`] or read again by whoever reads this stream next: looking at
    /// the request head before choosing who serves it costs no extra `recv`.
    pub async fn read_first(&mut self) -> io::Result<&[u8]> {
        let stream = &self.held.as_ref().expect("taken only by drop").stream;
        let read = loop {
            if let Err(error) = stream.readable().await {
                break Err(error);
            }
            // On the stack, and only between awaits: what is kept is allocated at its
            // size, not the buffer's.
            let mut buf = [0u8; FIRST_READ_BYTES];
            let mut got = 0;
            let result = stream.try_io(Interest::READABLE, || {
                got = std::io::Read::read(&mut &*socket2::SockRef::from(stream), &mut buf)?;
                if got > 0 && got < buf.len() {
                    // A short read drained the socket (edge-triggered readiness): clear the
                    // readiness this read was made under, as tokio's own `poll_read` does,
                    // so the next read waits for bytes instead of asking the kernel for
                    // none. Only here, with the read: bytes that arrived since set a newer
                    // readiness, which this leaves alone.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match result {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock && got == 0 => continue,
                Err(error) if error.kind() != io::ErrorKind::WouldBlock => break Err(error),
                _ => break Ok(BytesMut::from(&buf[..got])),
            }
        };
        match read {
            Ok(bytes) if bytes.is_empty() => self.peer_closed = true,
            Ok(bytes) => {
                self.activity.touch();
                self.early = bytes;
            }
            Err(error) => {
                self.failed = true;
                return Err(error);
            }
        }
        Ok(&self.early)
    }

    /// Drops the first `n` bytes of what [`ConnIo::read_first`] read (a request head
    /// answered without hyper).
    pub fn consume_early(&mut self, n: usize) {
        self.early.advance(n);
        if self.early.is_empty() {
            self.early = BytesMut::new();
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(&mut self.held.as_mut().expect("taken only by drop").stream)
    }

    /// Notes a failed operation (so the socket is not lingered on) and passes it on.
    fn note<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if matches!(result, Poll::Ready(Err(_))) {
            self.failed = true;
        }
        result
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        let hand_over = self.activity.hand_over.load(Ordering::Relaxed);
        let on_release = match hand_over {
            true => lock(&self.activity.on_release).take(),
            false => None,
        };
        // Not after a failure, nor after the watchdog ended the connection: its handshake
        // may not have been answered in full.
        if hand_over && !self.failed && !self.activity.closed_hard() {
            let handed = HandedOver {
                stream: held.stream,
                slot: held.slot,
                unread: std::mem::take(&mut self.early),
            };
            match on_release {
                Some(ReleaseTo(then)) => then(Some(handed)),
                None => *lock(&self.activity.handed_over) = Some(handed),
            }
            return;
        }
        if let Some(ReleaseTo(then)) = on_release {
            then(None);
        }
        let linger = !self.peer_closed && !self.failed && self.activity.lingers();
        // Outside a runtime (never in the server) the socket is simply closed.
        let runtime = tokio::runtime::Handle::try_current();
        if let (true, Ok(runtime)) = (linger, runtime) {
            let cut_short = self.cut_short.clone();
            runtime.spawn(async move {
                let outcome = super::linger::linger(
                    &mut held.stream,
                    super::linger::LINGER_BYTES,
                    super::linger::LINGER_TIME,
                )
                .await;
                if outcome.cut_short() {
                    cut_short.inc();
                }
                tracing::trace!(?outcome, "lingering close ended");
            });
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() && buf.remaining() > 0 {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.consume_early(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let result = self.stream().poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        } else if room && matches!(result, Poll::Ready(Ok(()))) {
            self.peer_closed = true;
        }
        self.note(result)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = self.stream().poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        self.note(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = self.stream().poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        self.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.stream.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = self.stream().poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = self.stream().poll_shutdown(cx);
        self.note(result)
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

    /// What a test holds of a connection served over loopback.
    type Served = (ConnIo, Arc<Activity>, crate::limits::ConnLimits, TcpStream);

    /// A connection over loopback, served by a `ConnIo` whose first read holds `early`,
    /// with the cap its slot is counted in and the client's end (kept open meanwhile).
    async fn served(early: &[u8]) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let mut client = client.unwrap();
        let (stream, peer) = accepted.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, early)
            .await
            .unwrap();
        let limits = crate::limits::ConnLimits::new(10, 10);
        let permit = limits.try_admit(peer.ip(), false).unwrap();
        let activity = Activity::new();
        let open = prometheus::IntGauge::new("open", "open").unwrap();
        let cut_short = prometheus::IntCounter::new("cut", "cut").unwrap();
        let mut io = ConnIo::new(stream, activity.clone(), permit, open, cut_short);
        assert_eq!(io.read_first().await.unwrap(), early);
        (io, activity, limits, client)
    }

    /// What an [`OnRelease`] was given: the unread bytes of the socket, if it got one.
    fn recorder() -> (OnRelease, Arc<std::sync::Mutex<Option<Option<BytesMut>>>>) {
        let got = Arc::new(std::sync::Mutex::new(None));
        let seen = got.clone();
        let then: OnRelease = Box::new(move |handed: Option<HandedOver>| {
            *seen.lock().unwrap() = Some(handed.map(|handed| handed.unread));
        });
        (then, got)
    }

    #[tokio::test]
    async fn a_socket_released_after_its_answer_goes_to_the_route_with_its_unread_bytes() {
        let (mut io, activity, limits, _client) = served(b"HEAD\r\n\r\nframe").await;
        io.consume_early(8);
        let (then, got) = recorder();
        activity.hand_over_socket_to(then);
        drop(io);
        let unread = got
            .lock()
            .unwrap()
            .take()
            .expect("called")
            .expect("a socket");
        assert_eq!(&unread[..], b"frame");
        // The route keeps the slot with the socket (dropped here, with `got`'s value).
        assert_eq!(limits.open().0, 0);
        assert!(
            activity.take_socket().is_none(),
            "not left for a hyper upgrade"
        );
    }

    #[tokio::test]
    async fn a_connection_that_failed_before_its_answer_gives_the_route_nothing() {
        let (mut io, activity, limits, _client) = served(b"HEAD\r\n\r\n").await;
        io.failed = true;
        let (then, got) = recorder();
        activity.hand_over_socket_to(then);
        drop(io);
        assert!(got.lock().unwrap().take().expect("called").is_none());
        assert_eq!(limits.open().0, 0, "the slot went with the socket");
    }

    #[tokio::test]
    async fn without_a_route_waiting_the_socket_is_kept_for_hyper_s_upgrade() {
        let (io, activity, limits, _client) = served(b"GET").await;
        activity.hand_over_socket();
        drop(io);
        let handed = activity.take_socket().expect("kept");
        assert_eq!(&handed.unread[..], b"GET");
        assert_eq!(limits.open().0, 1, "the slot stays with the kept socket");
        drop(handed);
        assert_eq!(limits.open().0, 0);
    }
}
