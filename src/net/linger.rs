//! Lingering close: how a connection ends when the server stops first.
//!
//! A route may answer before it has read the request body (a wrong token, a body over the
//! limit, a ban, an unknown path), and hyper then stops reading and closes the connection
//! once the answer is written. Closing a socket that still has unread input, or that input
//! arrives at afterwards, makes the kernel send a reset, and a client that writes its whole
//! body before it reads (Python's `httpx`, .NET's `HttpClient` with a buffered body) then
//! sees "connection reset" instead of the answer: the reset aborts its write, or discards
//! the answer waiting in its receive buffer.
//!
//! So the socket is closed in stages, as RFC 9112 §9.6 describes: the write side first
//! (the client gets the answer, then end of stream), then whatever the client still sends
//! is read and discarded until it closes its side too, and only then is the socket
//! closed. This is bounded ([`LINGER_BYTES`], [`LINGER_TIME`]), so a client that keeps
//! sending cannot hold the socket: past either bound the socket is closed as before.
//!
//! Only a connection whose latest request had a body lingers (only then can the client
//! still be sending), and only when the client has not closed first and the watchdog did
//! not end it ([`super::io::ConnIo`] decides): a `GET` answered with `Connection: close`
//! is closed at once, so a client that keeps its socket after such an answer holds no
//! slot under the connection caps.
//!
//! Why here and not around the request body: every route takes hyper's own `Incoming`,
//! which cannot be wrapped without changing every route's type; and hyper decides to
//! close on its own (it drains only what it already buffered). At the socket, one place
//! covers every route, HTTP/1 and HTTP/2 alike, and costs nothing while a response is
//! being served: it only runs after hyper has let go of the connection.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Most bytes read and discarded after the server's last answer. Above the largest body
/// a route answers early (a 5 MiB metadata post, a 1 MiB audio chunk in base64), so a
/// client sending one of those still reads its answer.
pub const LINGER_BYTES: u64 = 8 * 1024 * 1024;

/// Most time a closing connection is kept open for the client to finish sending. A client
/// on loopback sends [`LINGER_BYTES`] in milliseconds; over a slow link the bound holds
/// the descriptor (and the connection's slot under the caps) no longer than this.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// How a lingering close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed its side: every byte it sent was read, no reset.
    Closed,
    /// The socket failed (the client reset it); nothing more to do.
    Failed,
    /// [`LINGER_BYTES`] were discarded and the client was still sending.
    ByteLimit,
    /// [`LINGER_TIME`] passed before the client closed.
    TimeLimit,
}

impl Outcome {
    /// Whether the close was cut short by a bound (the client may see a reset).
    pub fn cut_short(self) -> bool {
        matches!(self, Outcome::ByteLimit | Outcome::TimeLimit)
    }
}

/// Shuts the write side of `socket` (if not already), then reads and discards until the
/// client closes, at most `max_bytes` and `max_time`. The caller closes the socket.
pub async fn linger<S>(socket: &mut S, max_bytes: u64, max_time: Duration) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        // Already shut down by hyper in the usual case; a second shutdown is harmless, and
        // its error (the client already gone) shows again on the read below.
        let _ = socket.shutdown().await;
        // One more than the bound, to tell "exactly the bound, then closed" from "more".
        let mut limited = tokio::io::AsyncReadExt::take(&mut *socket, max_bytes + 1);
        match tokio::io::copy(&mut limited, &mut tokio::io::sink()).await {
            Ok(n) if n > max_bytes => Outcome::ByteLimit,
            Ok(_) => Outcome::Closed,
            Err(_) => Outcome::Failed,
        }
    };
    tokio::time::timeout(max_time, drain)
        .await
        .unwrap_or(Outcome::TimeLimit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair of loopback sockets: (the server's, the client's).
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    #[tokio::test]
    async fn a_client_still_sending_reads_the_answer_and_the_end_of_stream() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"answer").await.unwrap();
        // The client writes far more than the socket buffers hold before it reads.
        let body = vec![7u8; 3 * 1024 * 1024];
        let writer = tokio::spawn(async move {
            client.write_all(&body).await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let outcome = linger(&mut server, LINGER_BYTES, LINGER_TIME).await;
        assert_eq!(outcome, Outcome::Closed);
        assert_eq!(writer.await.unwrap(), b"answer");
    }

    #[tokio::test]
    async fn a_client_that_keeps_sending_is_cut_off_at_the_byte_bound() {
        let (mut server, mut client) = pair().await;
        let writer = tokio::spawn(async move {
            let block = vec![1u8; 64 * 1024];
            while client.write_all(&block).await.is_ok() {}
        });
        let outcome = linger(&mut server, 256 * 1024, LINGER_TIME).await;
        assert_eq!(outcome, Outcome::ByteLimit);
        assert!(outcome.cut_short());
        drop(server);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_neither_sends_nor_closes_is_cut_off_at_the_time_bound() {
        let (mut server, _client) = pair().await;
        let began = tokio::time::Instant::now();
        let outcome = linger(&mut server, LINGER_BYTES, LINGER_TIME).await;
        assert_eq!(outcome, Outcome::TimeLimit);
        assert_eq!(began.elapsed(), LINGER_TIME);
    }

    #[tokio::test]
    async fn exactly_the_byte_bound_then_a_close_is_a_clean_close() {
        let (mut server, mut client) = pair().await;
        let writer = tokio::spawn(async move {
            client.write_all(&[3u8; 1000]).await.unwrap();
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
        });
        assert_eq!(
            linger(&mut server, 1000, LINGER_TIME).await,
            Outcome::Closed
        );
        writer.await.unwrap();
    }
}
