//! Engine.IO v4 and Socket.IO v5 packets, text only: parsing what clients send and the
//! few packets the server writes itself. Pure; no I/O.
//!
//! Engine.IO: one type digit, then the payload (`4` message, `2` ping, `3` pong, `5`
//! upgrade, `6` noop, `1` close). Over long-polling, packets in one body are separated by
//! the record separator `\x1e`. A Socket.IO packet is the payload of an Engine.IO message:
//! a type digit, an optional `<attachments>-` (binary packets), an optional namespace
//! ending in `,`, an optional acknowledgement id, then JSON.

/// The record separator between packets of one long-polling body.
pub const SEPARATOR: char = '\x1e';

/// One Engine.IO packet from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
    /// Anything else: an `open` from a client, an unknown type, a binary packet (`b...`).
    Invalid,
}

impl<'a> EnginePacket<'a> {
    pub fn parse(text: &'a str) -> Self {
        let mut chars = text.chars();
        let Some(kind) = chars.next() else {
            return EnginePacket::Invalid;
        };
        let rest = chars.as_str();
        match kind {
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(rest),
            '3' => EnginePacket::Pong(rest),
            '4' => EnginePacket::Message(rest),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            _ => EnginePacket::Invalid,
        }
    }
}

/// One Socket.IO packet from a client (in an Engine.IO message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPacket<'a> {
    /// `0[/nsp,][{auth}]`
    Connect {
        namespace: &'a str,
        auth: Option<&'a str>,
    },
    /// `1[/nsp,]`
    Disconnect { namespace: &'a str },
    /// `2[/nsp,][ack]["type", data]`
    Event {
        namespace: &'a str,
        ack: Option<u64>,
        args: &'a str,
    },
    /// `3[/nsp,]ack[...]`: the client acknowledging a server event. The server never asks.
    Ack,
    /// Binary events and acks (`5`, `6`): the contract's client events are JSON.
    Binary,
    /// Not a Socket.IO packet a client may send.
    Invalid(&'static str),
}

/// The namespace the server serves. Socket.IO's main namespace.
pub const MAIN_NAMESPACE: &str = "/";

impl<'a> SocketPacket<'a> {
    pub fn parse(text: &'a str) -> Self {
        let mut chars = text.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        let (namespace, rest) = split_namespace(rest);
        match kind {
            Some('0') => SocketPacket::Connect {
                namespace,
                auth: (!rest.is_empty()).then_some(rest),
            },
            Some('1') => SocketPacket::Disconnect { namespace },
            Some('2') => {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let (ack, args) = rest.split_at(digits);
                match ack {
                    "" => SocketPacket::Event {
                        namespace,
                        ack: None,
                        args,
                    },
                    // Socket.IO ack ids are JavaScript integers; a longer run of digits is
                    // not an id any client made.
                    digits => match digits.parse::<u64>() {
                        Ok(ack) if digits.len() <= 15 => SocketPacket::Event {
                            namespace,
                            ack: Some(ack),
                            args,
                        },
                        _ => SocketPacket::Invalid("acknowledgement id out of range"),
                    },
                }
            }
            Some('3') => SocketPacket::Ack,
            Some('5' | '6') => SocketPacket::Binary,
            Some('4') => SocketPacket::Invalid("CONNECT_ERROR is a server packet"),
            _ => SocketPacket::Invalid("unknown Socket.IO packet type"),
        }
    }
}

/// Splits `/nsp,rest` into the namespace and the rest; no leading `/` is the main one.
fn split_namespace(rest: &str) -> (&str, &str) {
    if !rest.starts_with('/') {
        return (MAIN_NAMESPACE, rest);
    }
    match rest.find(',') {
        Some(comma) => (&rest[..comma], &rest[comma + 1..]),
        None => (rest, ""),
    }
}

/// What a session's `open` packet says.
#[derive(Debug, Clone, Copy)]
pub struct OpenParams {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub max_payload: usize,
}

/// The Engine.IO handshake's `open` packet. A session that starts on WebSocket is offered
/// no upgrade (a client would otherwise probe WebSocket again and pause meanwhile).
pub fn open_packet(sid: &str, transport: TransportKind, params: OpenParams) -> String {
    let upgrades = match transport {
        TransportKind::Polling => "[\"websocket\"]",
        TransportKind::Websocket => "[]",
    };
    let OpenParams {
        ping_interval_ms,
        ping_timeout_ms,
        max_payload,
    } = params;
    format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":{max_payload}}}"
    )
}

/// The answer to a Socket.IO `CONNECT`: the socket's id and its private recovery id.
pub fn connect_packet(sid: &str, pid: &str) -> String {
    format!("40{{\"sid\":\"{sid}\",\"pid\":\"{pid}\"}}")
}

/// A refused `CONNECT`: the client's `connect_error` gets `message` and `data.code`.
pub fn connect_error_packet(namespace: &str, code: &str, message: &str) -> String {
    let body = serde_json::json!({ "message": message, "data": { "code": code } });
    match namespace {
        MAIN_NAMESPACE => format!("44{body}"),
        other => format!("44{other},{body}"),
    }
}

/// The server's `DISCONNECT` of the main namespace: the client does not reconnect by itself
/// ("io server disconnect").
pub const DISCONNECT: &str = "41";
pub const PING: &str = "2";
pub const NOOP: &str = "6";
pub const CLOSE: &str = "1";

/// An Engine.IO error answer to an HTTP request (`{"code":n,"message":...}`, as the
/// reference server words them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
}

impl EngineError {
    pub fn code(self) -> u8 {
        match self {
            EngineError::UnknownTransport => 0,
            EngineError::UnknownSid => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest => 3,
            EngineError::Forbidden => 4,
            EngineError::UnsupportedProtocolVersion => 5,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub fn body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self.code(),
            self.message()
        )
    }
}

/// The transport a request asks for (`?transport=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    Websocket,
}

/// The Engine.IO query of a request: `EIO`, `transport`, `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineQuery {
    pub transport: TransportKind,
    pub sid: Option<String>,
}

impl EngineQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, EngineError> {
        let (mut eio, mut transport, mut sid) = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*name {
                "EIO" => eio = Some(value.into_owned()),
                "transport" => transport = Some(value.into_owned()),
                "sid" => sid = Some(value.into_owned()),
                _ => {}
            }
        }
        if eio.as_deref() != Some("4") {
            return Err(EngineError::UnsupportedProtocolVersion);
        }
        let transport = match transport.as_deref() {
            Some("polling") => TransportKind::Polling,
            Some("websocket") => TransportKind::Websocket,
            _ => return Err(EngineError::UnknownTransport),
        };
        Ok(Self { transport, sid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_packets_parse_by_their_first_character() {
        assert_eq!(EnginePacket::parse("2probe"), EnginePacket::Ping("probe"));
        assert_eq!(EnginePacket::parse("3"), EnginePacket::Pong(""));
        assert_eq!(
            EnginePacket::parse("42[\"x\"]"),
            EnginePacket::Message("2[\"x\"]")
        );
        assert_eq!(EnginePacket::parse("5"), EnginePacket::Upgrade);
        assert_eq!(EnginePacket::parse("1"), EnginePacket::Close);
        assert_eq!(EnginePacket::parse("6"), EnginePacket::Noop);
        for bad in ["", "0{}", "bAAAA", "9", "é"] {
            assert_eq!(EnginePacket::parse(bad), EnginePacket::Invalid, "{bad}");
        }
    }

    #[test]
    fn socket_packets_parse_namespace_ack_and_payload() {
        assert_eq!(
            SocketPacket::parse("0"),
            SocketPacket::Connect {
                namespace: "/",
                auth: None
            }
        );
        assert_eq!(
            SocketPacket::parse("0{\"pid\":\"p\",\"offset\":\"3\"}"),
            SocketPacket::Connect {
                namespace: "/",
                auth: Some("{\"pid\":\"p\",\"offset\":\"3\"}")
            }
        );
        assert_eq!(
            SocketPacket::parse("0/admin,"),
            SocketPacket::Connect {
                namespace: "/admin",
                auth: None
            }
        );
        assert_eq!(
            SocketPacket::parse("212[\"sync_request\"]"),
            SocketPacket::Event {
                namespace: "/",
                ack: Some(12),
                args: "[\"sync_request\"]"
            }
        );
        assert_eq!(
            SocketPacket::parse("2/x,[\"a\"]"),
            SocketPacket::Event {
                namespace: "/x",
                ack: None,
                args: "[\"a\"]"
            }
        );
        assert_eq!(
            SocketPacket::parse("1"),
            SocketPacket::Disconnect { namespace: "/" }
        );
        assert_eq!(SocketPacket::parse("51-[\"a\",{}]"), SocketPacket::Binary);
        assert!(matches!(
            SocketPacket::parse("29999999999999999999[]"),
            SocketPacket::Invalid(_)
        ));
        assert!(matches!(SocketPacket::parse(""), SocketPacket::Invalid(_)));
        assert!(matches!(
            SocketPacket::parse("4{}"),
            SocketPacket::Invalid(_)
        ));
    }

    #[test]
    fn queries_need_eio_4_and_a_known_transport() {
        let q = EngineQuery::parse(Some("EIO=4&transport=polling&t=abc")).unwrap();
        assert_eq!(q.transport, TransportKind::Polling);
        assert_eq!(q.sid, None);
        let q = EngineQuery::parse(Some("EIO=4&transport=websocket&sid=s1")).unwrap();
        assert_eq!(q.sid.as_deref(), Some("s1"));
        assert_eq!(
            EngineQuery::parse(Some("EIO=3&transport=polling")),
            Err(EngineError::UnsupportedProtocolVersion)
        );
        assert_eq!(
            EngineQuery::parse(Some("EIO=4&transport=flash")),
            Err(EngineError::UnknownTransport)
        );
        assert_eq!(
            EngineQuery::parse(None),
            Err(EngineError::UnsupportedProtocolVersion)
        );
    }

    #[test]
    fn server_packets_are_what_clients_expect() {
        let params = OpenParams {
            ping_interval_ms: 2500,
            ping_timeout_ms: 5000,
            max_payload: 16384,
        };
        let open = open_packet("abc", TransportKind::Polling, params);
        let value: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(value["sid"], "abc");
        assert_eq!(value["pingInterval"], 2500);
        assert_eq!(value["maxPayload"], 16384);
        assert_eq!(value["upgrades"][0], "websocket");
        let open = open_packet("abc", TransportKind::Websocket, params);
        let value: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(value["upgrades"], serde_json::json!([]));
        assert_eq!(connect_packet("s", "p"), "40{\"sid\":\"s\",\"pid\":\"p\"}");
        let refused = connect_error_packet("/x", "UNAUTHORIZED", "no");
        assert!(refused.starts_with("44/x,{"), "{refused}");
        assert_eq!(
            EngineError::UnknownSid.body(),
            "{\"code\":1,\"message\":\"Session ID unknown\"}"
        );
    }
}
