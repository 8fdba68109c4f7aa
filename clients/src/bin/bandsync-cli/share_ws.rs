//! A WebSocket to `/ws` for Music Share traffic: JSON events the typed sync protocol does
//! not have (`share_start`, `share_started`, `share_metadata`, `share_ended`, `share_stop`)
//! and binary audio frames (`protocol/src/audio.rs`).
//!
//! Why not `bandsync_client::WsClient`: it decodes every text frame into the typed
//! `ServerEvent` (an error code it does not know becomes `UNKNOWN`, so `SESSION_CONFLICT`
//! would be lost) and treats binary frames as a protocol violation, which is right for the
//! sync protocol but drops exactly what a receiver wants. So this keeps the socket itself,
//! and takes from the protocol crate what is shared: the `join_session` encoding, the
//! snapshot, the audio frame codec. Like `WsClient`, nothing runs in the background: pings
//! are answered while the owner reads.

use crate::CONNECT_TIMEOUT;
use anyhow::Context as _;
use bandsync_client::protocol::{encode_client_frame, ClientEvent, RequestId};
use bandsync_client::wall_clock_ms;
use bandsync_client::Credentials;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The id `join_session` goes out with; its reply (`snapshot` or `error`) carries it back.
const JOIN_ID: &str = "join";

/// What the server sent next. `wall_ms` is the wall clock as the frame came off the
/// socket (ms since the Unix epoch), for latency.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A text frame, parsed as JSON (the envelope `{"type", "id"?, "data"?}`).
    Json { value: Value, wall_ms: f64 },
    /// A binary frame: an audio frame, not yet decoded.
    Binary { bytes: Vec<u8>, wall_ms: f64 },
    /// The connection is closed (sticky: every later `next` says so again).
    Closed { code: Option<u16>, reason: String },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct ShareSocket {
    socket: Socket,
    /// Frames that arrived while `join` waited for its reply, in arrival order (the join
    /// burst of recent audio may come first). Bounded by what arrives during one join.
    pending: VecDeque<Pushed>,
    closed: Option<(Option<u16>, String)>,
}

/// The `error` envelope's `code` and `message`, if `value` is one.
pub fn error_of(value: &Value) -> Option<(String, String)> {
    if value.get("type")?.as_str()? != "error" {
        return None;
    }
    let data = value.get("data");
    let text = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Some((text("code"), text("message")))
}

/// The envelope's `type`, or `""`.
pub fn type_of(value: &Value) -> &str {
    value.get("type").and_then(Value::as_str).unwrap_or("")
}

impl ShareSocket {
    /// Connects to `ws://host:port/ws`, bounded by [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {url}: timed out"))?
            .with_context(|| format!("connecting to {url}"))?;
        Ok(Self {
            socket,
            pending: VecDeque::new(),
            closed: None,
        })
    }

    /// Joins `session` as a follower, presenting `credentials` (receivers need the share
    /// token to get the share's audio and metadata; an authenticated server, a session
    /// token); returns the `snapshot`'s client id. Everything that
    /// arrives before the reply is kept for [`Self::next`].
    pub async fn join(
        &mut self,
        session: &str,
        name: &str,
        credentials: &Credentials,
    ) -> anyhow::Result<String> {
        let join = ClientEvent::JoinSession(credentials.join(session, None, Some(name)));
        let id = RequestId::from(JOIN_ID);
        self.send_text(encode_client_frame(&join, Some(&id)))
            .await?;
        let wait = async {
            loop {
                match self.read().await? {
                    Pushed::Json { value, .. } if value.get("id") == Some(&JOIN_ID.into()) => {
                        if let Some((code, message)) = error_of(&value) {
                            anyhow::bail!("joining session {session}: {code}: {message}");
                        }
                        let client = value.pointer("/data/clientId").and_then(Value::as_str);
                        return Ok(client.unwrap_or("?").to_owned());
                    }
                    Pushed::Closed { code, reason } => anyhow::bail!(
                        "joining session {session}: the server closed the connection \
                         (code {code:?}): {reason}"
                    ),
                    other => self.pending.push_back(other),
                }
            }
        };
        tokio::time::timeout(bandsync_client::DEFAULT_REQUEST_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow::anyhow!("joining session {session}: no reply"))?
    }

    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.write(Message::text(text)).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.write(Message::binary(bytes)).await
    }

    async fn write(&mut self, message: Message) -> anyhow::Result<()> {
        match self.socket.send(message).await {
            Ok(()) => Ok(()),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                let (code, reason) = self.closed.clone().unwrap_or((None, String::new()));
                anyhow::bail!("the server closed the connection (code {code:?}): {reason}")
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing to the websocket")),
        }
    }

    /// The next frame: first those `join` kept, then from the socket. Cancel-safe, so it
    /// can sit in `tokio::select!`.
    pub async fn next(&mut self) -> anyhow::Result<Pushed> {
        match self.pending.pop_front() {
            Some(pushed) => Ok(pushed),
            None => self.read().await,
        }
    }

    /// Reads the socket until a data frame or the close. A text frame that is not JSON is
    /// an error (the server only sends JSON), and so is a broken connection.
    async fn read(&mut self) -> anyhow::Result<Pushed> {
        loop {
            if let Some((code, reason)) = &self.closed {
                return Ok(Pushed::Closed {
                    code: *code,
                    reason: reason.clone(),
                });
            }
            let message = match self.socket.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    self.closed = Some((None, String::new()));
                    continue;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("reading the websocket")),
                Some(Ok(message)) => message,
            };
            let wall_ms = wall_clock_ms();
            match message {
                Message::Text(text) => {
                    let value = serde_json::from_str(text.as_str())
                        .with_context(|| format!("the server sent a non-JSON frame: {text}"))?;
                    return Ok(Pushed::Json { value, wall_ms });
                }
                Message::Binary(bytes) => {
                    return Ok(Pushed::Binary {
                        bytes: bytes.to_vec(),
                        wall_ms,
                    })
                }
                Message::Close(frame) => {
                    self.closed = Some(frame.map_or((None, String::new()), |f| {
                        (Some(u16::from(f.code)), f.reason.as_str().to_owned())
                    }));
                    // Sends tungstenite's queued close reply; the result does not matter.
                    let _ = self.socket.flush().await;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Closes with 1000 (normal), waiting briefly for the server's reply.
    pub async fn close(mut self) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.socket.close(None).await;
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;
    use tokio::net::TcpListener;

    pub type ServerSide = WebSocketStream<TcpStream>;

    /// A one-connection WebSocket server standing in for bandsync: it answers
    /// `join_session` with a snapshot, then hands the socket to `script`. Returns the
    /// server's http:// base URL (the CLI derives `/ws` from it).
    pub async fn fake_server<F, Fut>(script: F) -> (String, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(ServerSide) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let join = next_json(&mut ws).await;
            assert_eq!(type_of(&join), "join_session", "{join}");
            let snapshot = json!({"type": "snapshot", "id": join["id"],
                "data": {"sessionId": join["data"]["sessionId"], "clientId": "c1"}});
            send_json(&mut ws, &snapshot).await;
            script(ws).await;
        });
        (base, task)
    }

    /// The next text frame from the client, as JSON.
    pub async fn next_json(ws: &mut ServerSide) -> Value {
        loop {
            match ws.next().await.expect("the client hung up").unwrap() {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(_) => panic!("the client closed"),
                _ => {}
            }
        }
    }

    /// The next binary frame from the client.
    pub async fn next_binary(ws: &mut ServerSide) -> Vec<u8> {
        loop {
            match ws.next().await.expect("the client hung up").unwrap() {
                Message::Binary(bytes) => return bytes.to_vec(),
                Message::Close(_) => panic!("the client closed"),
                _ => {}
            }
        }
    }

    pub async fn send_json(ws: &mut ServerSide, value: &Value) {
        ws.send(Message::text(value.to_string())).await.unwrap();
    }

    #[tokio::test]
    async fn join_keeps_what_came_before_the_reply() {
        let (base, server) = fake_server(|mut ws| async move {
            ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
            send_json(&mut ws, &json!({"type": "share_ended", "data": {}})).await;
            let _ = ws.close(None).await;
        })
        .await;
        let url = crate::share_api::ws_url(&base).unwrap();
        let mut socket = ShareSocket::connect(&url).await.unwrap();
        let none = Credentials::default();
        assert_eq!(socket.join("123456", "test", &none).await.unwrap(), "c1");
        assert!(
            matches!(socket.next().await.unwrap(), Pushed::Binary { bytes, .. } if bytes == [1, 2, 3])
        );
        assert!(
            matches!(socket.next().await.unwrap(), Pushed::Json { value, .. } if type_of(&value) == "share_ended")
        );
        assert!(matches!(
            socket.next().await.unwrap(),
            Pushed::Closed { .. }
        ));
        assert!(
            matches!(socket.next().await.unwrap(), Pushed::Closed { .. }),
            "sticky"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_join_says_why() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let join = next_json(&mut ws).await;
            let error = json!({"type": "error", "id": join["id"],
                "data": {"code": "SESSION_FULL", "message": "the session is full"}});
            send_json(&mut ws, &error).await;
        });
        let mut socket = ShareSocket::connect(&url).await.unwrap();
        let err = socket
            .join("123456", "test", &Credentials::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("SESSION_FULL: the session is full"), "{err}");
        server.await.unwrap();
    }

    #[test]
    fn errors_and_types_are_read_from_the_envelope() {
        let e = json!({"type": "error", "id": "s", "data": {"code": "SESSION_CONFLICT", "message": "in use"}});
        assert_eq!(
            error_of(&e),
            Some(("SESSION_CONFLICT".into(), "in use".into()))
        );
        assert_eq!(type_of(&e), "error");
        let ok = json!({"type": "share_started", "id": "s"});
        assert_eq!(error_of(&ok), None);
        assert_eq!(type_of(&ok), "share_started");
        assert_eq!(type_of(&json!([1])), "");
    }
}
