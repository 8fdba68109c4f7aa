//! The load client's wire: Engine.IO v4 over a WebSocket, with Socket.IO v5 packets inside,
//! written directly on tokio-tungstenite so that the client costs the same against both
//! servers and nothing of a Socket.IO client library's own scheduling shows in the figures.
//!
//! Only what the bench needs: the handshake (`0{..}` open, `40` connect, `40{..}`), pings
//! (`2`, answered `3`), events out (`42["type",{..}]`) and events in, of which only the
//! name and a few fields are decoded.

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every wait on the network in the handshake is bounded by this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame the client accepts: a `snapshot` of a large session is the biggest
/// event, a few KiB with the member list capped; anything near this is a broken server.
const MAX_FRAME_BYTES: usize = 1 << 20;

/// What one text frame from the server is, as far as the bench cares.
#[derive(Debug)]
pub enum Packet<'a> {
    /// Engine.IO ping: answer `3`.
    Ping,
    /// Socket.IO event `42[name, arg, ...]`: the name and the raw first argument.
    Event { name: String, arg: &'a RawValue },
    /// Socket.IO disconnect `41`: the server ended this socket.
    Disconnect,
    /// Engine.IO close `1`.
    Close,
    /// Anything else (acks, noop, a connect packet): counted, not decoded.
    Other,
}

/// Decodes one text frame. A `42` packet that is not a JSON array starting with a string
/// is an error: the server broke the protocol, which the bench reports rather than skips.
pub fn parse(text: &str) -> Result<Packet<'_>, String> {
    match text.as_bytes().first() {
        Some(b'2') if text.len() == 1 => return Ok(Packet::Ping),
        Some(b'1') => return Ok(Packet::Close),
        Some(b'4') => {}
        _ => return Ok(Packet::Other),
    }
    let rest = &text[1..];
    if rest.starts_with('1') {
        return Ok(Packet::Disconnect);
    }
    let Some(body) = rest.strip_prefix('2') else {
        return Ok(Packet::Other);
    };
    // `42<ack id>[..]`: the server asks for an ack; the bench never sends such events, so
    // the id is skipped rather than answered.
    let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
    let args: Vec<&RawValue> =
        serde_json::from_str(body).map_err(|e| format!("bad event packet {text:.120}: {e}"))?;
    let (Some(name), Some(arg)) = (args.first(), args.get(1)) else {
        return Err(format!(
            "event packet without name and argument: {text:.120}"
        ));
    };
    let name: String = serde_json::from_str(name.get())
        .map_err(|e| format!("event name is not a string in {text:.120}: {e}"))?;
    Ok(Packet::Event { name, arg })
}

/// `42["type",data]`: a client event with its data object.
pub fn event(name: &str, data: &serde_json::Value) -> String {
    format!("42{}", serde_json::json!([name, data]))
}

/// The `0{..}` open packet's fields the bench reports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    pub sid: String,
    pub ping_interval: u64,
    pub ping_timeout: u64,
}

/// Connects to `/socket.io/?EIO=4&transport=websocket` at `addr` and completes the
/// Engine.IO open and the Socket.IO connect to the main namespace. Every step is bounded
/// by [`HANDSHAKE_TIMEOUT`]; the error says which step failed.
/// Per-socket read chunk: events are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 4096;

pub async fn connect(addr: &str) -> Result<(Ws, Open), String> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    // A small read buffer: tungstenite zero-fills its read chunk before every read, and at
    // its 128 KiB default that memset was a third of the driver's CPU, enough to make the
    // driver (not the server) the bottleneck of a 1,000-socket burst.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    // Nagle off: the leader's small frames must leave when sent, as a browser's do.
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| "the WebSocket upgrade timed out".to_owned())?
        .map_err(|e| format!("the WebSocket upgrade failed: {e}"))?;
    let open = next_text(&mut ws, "the open packet").await?;
    let open: Open = open
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| format!("expected an open packet 0{{..}}, got {open:.120}"))?;
    ws.send(Message::text("40"))
        .await
        .map_err(|e| format!("sending the connect packet: {e}"))?;
    loop {
        let text = next_text(&mut ws, "the connect reply").await?;
        match text.as_str() {
            "2" => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| format!("answering a ping: {e}"))?,
            t if t.starts_with("40{") => return Ok((ws, open)),
            t => return Err(format!("expected 40{{..}} after connecting, got {t:.120}")),
        }
    }
}

/// The next text frame, within [`HANDSHAKE_TIMEOUT`].
pub async fn next_text(ws: &mut Ws, what: &str) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no {what} within {HANDSHAKE_TIMEOUT:?}"))?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(close))) => {
                return Err(format!(
                    "the server closed the socket ({close:?}) before {what}"
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("reading {what}: {e}")),
            None => return Err(format!("the connection ended before {what}")),
        }
    }
}
