//! The bytes the floor reads and writes: the HTTP request that opens a connection (the
//! WebSocket upgrade, or `/health`), masked client frames in, unmasked text frames out.

use std::ops::Range;

/// What the first bytes of a connection asked for, once `buf` holds a whole request head.
pub enum Request {
    /// `GET /ws` upgrade: the `Sec-WebSocket-Accept` value and the head's length.
    Upgrade { accept: String, head: usize },
    /// `GET /health`, which the bench polls before it starts.
    Health,
}

/// `Ok(None)` while the head is incomplete; `Err` for anything but the two requests.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = request.parse(buf).map_err(|_| ())? else {
        return Ok(None);
    };
    if request.method != Some("GET") {
        return Err(());
    }
    match request.path {
        Some("/health") => return Ok(Some(Request::Health)),
        Some(path) if path.starts_with("/ws") => {}
        _ => return Err(()),
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    if !upgrade || header("sec-websocket-version") != Some(b"13") {
        return Err(());
    }
    let key = header("sec-websocket-key").ok_or(())?;
    let accept = tungstenite::handshake::derive_accept_key(key);
    Ok(Some(Request::Upgrade { accept, head }))
}

pub fn upgrade_response(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )
}

pub const HEALTH_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 32\r\nconnection: close\r\n\r\n{\"status\":\"ok\",\"server\":\"floor\"}";

/// An unmasked text frame around `json`.
pub fn text_frame(json: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(json.len() + 10);
    frame.push(0x81);
    match json.len() {
        n if n < 126 => frame.push(n as u8),
        n if n < 65536 => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(json.as_bytes());
    frame
}

/// One client frame, unmasked in place.
pub struct ClientFrame {
    pub opcode: u8,
    pub payload: Range<usize>,
    /// Bytes of `buf` the frame took, header included.
    pub len: usize,
}

/// Unmasks the first frame of `buf` (masked, as clients send them; lengths up to 16 bits):
/// `Ok(None)` until it is whole, `Err` when it cannot fit `capacity` bytes or is not a
/// client frame.
pub fn next_frame(buf: &mut [u8], capacity: usize) -> Result<Option<ClientFrame>, ()> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 == 0 {
        return Err(());
    }
    let (payload_len, offset) = match buf[1] & 0x7f {
        127 => return Err(()),
        126 if buf.len() < 4 => return Ok(None),
        126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        n => (usize::from(n), 2),
    };
    let start = offset + 4;
    let end = start + payload_len;
    if end > capacity {
        return Err(());
    }
    if buf.len() < end {
        return Ok(None);
    }
    let mask = [
        buf[offset],
        buf[offset + 1],
        buf[offset + 2],
        buf[offset + 3],
    ];
    for (i, byte) in buf[start..end].iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Ok(Some(ClientFrame {
        opcode: buf[0] & 0x0f,
        payload: start..end,
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_frame_is_unmasked_once_whole() {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 5];
        frame.extend_from_slice(&mask);
        frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        assert!(next_frame(&mut frame[..6].to_vec(), 4096)
            .unwrap()
            .is_none());
        let parsed = next_frame(&mut frame, 4096).unwrap().unwrap();
        assert_eq!((parsed.opcode, parsed.len), (1, 11));
        assert_eq!(&frame[parsed.payload], b"hello");
        assert!(next_frame(&mut frame, 8).is_err(), "longer than the buffer");
        frame[1] = 5;
        assert!(next_frame(&mut frame, 4096).is_err(), "unmasked");
    }

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(text_frame("ab"), b"\x81\x02ab");
        let long = "x".repeat(300);
        assert_eq!(&text_frame(&long)[..4], &[0x81, 126, 1, 44]);
    }

    #[test]
    fn the_health_answer_has_its_length() {
        let text = std::str::from_utf8(HEALTH_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
