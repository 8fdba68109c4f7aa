//! A WebSocket client for `GET /ws`, built for tests and tools rather than for UIs.
//!
//! One [`WsClient`] is one connection, driven by its owner: nothing runs in the background.
//! That keeps ordering obvious (frames come out of [`WsClient::next`] exactly in arrival
//! order, including those that arrived while a [`WsClient::request`] waited for its reply)
//! and makes every wait explicit with a timeout. The price: pings are only answered while
//! the owner reads, so a caller that stops reading for longer than the server's
//! `SOCKET_PING_TIMEOUT` is (correctly) treated as dead.

use crate::clock::wall_clock_ms;
use crate::error::{ClientError, Result};
use bandsync_protocol::{encode_client_frame, ClientEvent, RequestId, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long [`WsClient::join`] and [`WsClient::sync`] wait for their reply.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`WsClient::close`] waits for the server to finish the close handshake.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the connection delivered next.
///
/// `Frame` is large and `Closed` small, but nearly every value is a `Frame` and `Closed`
/// happens once, so boxing the frame would only add an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A server event. `received_at` (monotonic) and `wall_ms` (wall clock, ms since the
    /// Unix epoch) are taken as the frame came off the socket, before any buffering, so
    /// latency measurements stay honest even for frames a `request` held back.
    Frame {
        frame: ServerFrame,
        received_at: Instant,
        wall_ms: f64,
    },
    /// The connection is closed. `code` is the close code the server sent (see
    /// `bandsync_protocol::close`), `None` when it ended without a close frame. Once
    /// closed, every further `next` returns this again.
    Closed { code: Option<u16>, reason: String },
}

/// One WebSocket connection to a bandsync server.
pub struct WsClient {
    socket: Socket,
    /// Next id [`WsClient::send`] assigns: numeric, from 1, so replies are easy to match.
    next_id: u64,
    /// Frames (and non-fatal decode errors) that arrived while a request waited for its
    /// reply, in arrival order. Bounded by what arrives within one request's timeout.
    buffered: VecDeque<Result<Incoming>>,
    /// Set once the connection closed; makes `Closed` sticky.
    closed: Option<(Option<u16>, String)>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("next_id", &self.next_id)
            .field("buffered", &self.buffered.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// tungstenite zero-fills its whole read buffer before every read (128 KiB by default),
/// which cost a busy client a quarter of its CPU; server frames are small, so 16 KiB reads
/// lose nothing and large frames still arrive whole.
fn socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

impl WsClient {
    /// Connects to a WebSocket URL such as `ws://127.0.0.1:3001/ws`. Nagle's algorithm is
    /// off: requests are small and their latency is what the tools measure.
    pub async fn connect(url: &str) -> Result<Self> {
        let (socket, _response) =
            tokio_tungstenite::connect_async_with_config(url, Some(socket_config()), true).await?;
        tracing::debug!(url, "websocket connected");
        Ok(Self {
            socket,
            next_id: 1,
            buffered: VecDeque::new(),
            closed: None,
        })
    }

    /// Sends `event` with a fresh numeric id and returns that id.
    pub async fn send(&mut self, event: ClientEvent) -> Result<RequestId> {
        let id = self.fresh_id();
        self.send_with_id(event, Some(id.clone())).await?;
        Ok(id)
    }

    /// Sends `event` with the given id (or none). Ids chosen here do not advance the
    /// counter [`Self::send`] uses.
    pub async fn send_with_id(&mut self, event: ClientEvent, id: Option<RequestId>) -> Result<()> {
        let text = encode_client_frame(&event, id.as_ref());
        self.write(Message::text(text)).await
    }

    /// Sends any text frame, valid or not (tests use it for malformed input).
    pub async fn send_raw_text(&mut self, text: String) -> Result<()> {
        self.write(Message::text(text)).await
    }

    /// Sends a binary frame (the protocol has none; tests check the server's answer).
    pub async fn send_raw_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.write(Message::binary(bytes)).await
    }

    /// The next frame: first those buffered by [`Self::request`], then from the socket.
    /// Waits as long as it takes; see [`Self::next_timeout`].
    ///
    /// Cancel-safe: dropping the future loses no frame, so it can sit in `tokio::select!`.
    /// A frame that does not decode is `Err(ClientError::Decode)` and the connection stays
    /// usable.
    pub async fn next(&mut self) -> Result<Incoming> {
        match self.buffered.pop_front() {
            Some(buffered) => buffered,
            None => self.read_socket().await,
        }
    }

    /// [`Self::next`], or `ClientError::Timeout` after `timeout`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Incoming> {
        tokio::time::timeout(timeout, self.next())
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// How many frames a `request` is holding for later `next` calls.
    pub fn buffered_len(&self) -> usize {
        self.buffered.len()
    }

    /// Whether the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Closes with 1000 (normal) and waits briefly for the server to finish the handshake.
    pub async fn close(self) -> Result<()> {
        self.close_with(CloseCode::Normal.into(), "").await
    }

    /// Closes with the given code and reason.
    pub async fn close_with(mut self, code: u16, reason: &str) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        match self.socket.close(Some(frame)).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(e) => return Err(e.into()),
        }
        // Read until the server's close reply ends the stream; frames in flight are dropped.
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain).await;
        Ok(())
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        id
    }

    async fn write(&mut self, message: Message) -> Result<()> {
        match self.socket.send(message).await {
            Ok(()) => Ok(()),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Err(self.closed_error()),
            Err(e) => Err(e.into()),
        }
    }

    fn closed_error(&self) -> ClientError {
        let (code, reason) = self.closed.clone().unwrap_or((None, String::new()));
        ClientError::Closed { code, reason }
    }

    /// Reads the next data frame off the socket, skipping pings and pongs (tungstenite
    /// queues the pong replies itself). Cancel-safe: no await after a frame is taken,
    /// except flushing the close reply, and `closed` is set before that.
    async fn read_socket(&mut self) -> Result<Incoming> {
        loop {
            if let Some((code, reason)) = &self.closed {
                return Ok(Incoming::Closed {
                    code: *code,
                    reason: reason.clone(),
                });
            }
            let message = match self.socket.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    self.closed = Some((None, String::new()));
                    continue;
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(message)) => message,
            };
            let received_at = Instant::now();
            let wall_ms = wall_clock_ms();
            match message {
                Message::Text(text) => {
                    return match ServerFrame::decode(text.as_str()) {
                        Ok(frame) => Ok(Incoming::Frame {
                            frame,
                            received_at,
                            wall_ms,
                        }),
                        Err(error) => Err(ClientError::Decode {
                            text: text.as_str().to_owned(),
                            error,
                        }),
                    };
                }
                Message::Binary(bytes) => return Err(ClientError::UnexpectedBinary(bytes.len())),
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((None, String::new()), |f| {
                        (Some(u16::from(f.code)), f.reason.as_str().to_owned())
                    });
                    tracing::debug!(?code, %reason, "server closed the websocket");
                    self.closed = Some((code, reason));
                    // Sends tungstenite's queued close reply; the result does not matter.
                    let _ = self.socket.flush().await;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

mod requests;
pub use requests::unexpected_reply;

#[cfg(test)]
mod tests;
