//! The answer to a connection over a cap: read the request head (briefly, boundedly), write
//! a complete HTTP/1.1 error with the contract's JSON body and `Connection: close`, close.
//!
//! Reading the head first matters: closing a socket with unread input makes the kernel
//! send a reset, and the client would see "connection reset" instead of the answer. The
//! answers in flight are capped (a flood must not turn refusals into a new way to use up
//! descriptors); beyond the cap the socket is simply closed.

use crate::http::errors::error_json;
use crate::limits::Refused;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Most time one refusal may take, reading and writing included.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// Most bytes of a refused request read before answering.
const REFUSAL_READ_BYTES: usize = 8 * 1024;

pub struct Refusals {
    in_flight: Arc<Semaphore>,
}

impl Refusals {
    /// Up to half of `FD_RESERVE` refusals at once (at least one).
    pub fn new(fd_reserve: u64) -> Self {
        let n = usize::try_from(fd_reserve / 2).unwrap_or(1).max(1);
        Self {
            in_flight: Arc::new(Semaphore::new(n)),
        }
    }

    pub fn answer(&self, stream: TcpStream, refused: Refused) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_TIME, respond(stream, refused)).await;
        });
    }
}

/// The status line and body for `refused`.
pub fn response(refused: Refused) -> Vec<u8> {
    let (status, code, message) = match refused {
        Refused::ServerFull => (
            "503 Service Unavailable",
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        ),
        Refused::PerAddress => (
            "429 Too Many Requests",
            "TOO_MANY_CONNECTIONS",
            "too many connections from your address; close some and retry",
        ),
    };
    let body = error_json(code, message);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn respond(mut stream: TcpStream, refused: Refused) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < REFUSAL_READ_BYTES {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    stream.write_all(&response(refused)).await?;
    stream.shutdown().await?;
    // Take what the client still sends until it closes, so our close is not a reset.
    let mut drained = 0;
    while drained < REFUSAL_READ_BYTES {
        match stream.read(&mut buf).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_complete_http_answers_with_the_json_error() {
        let text = String::from_utf8(response(Refused::PerAddress)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "TOO_MANY_CONNECTIONS");
        assert_eq!(json["success"], false);
        assert!(String::from_utf8(response(Refused::ServerFull))
            .unwrap()
            .starts_with("HTTP/1.1 503 "));
    }
}
