//! The listening socket, with a backlog sized for a crowd arriving at once.
//!
//! `tokio::net::TcpListener::bind` listens with a backlog of 128, the standard library's. A
//! band's worth of clients is far below that, but a server's whole audience reconnecting
//! after a network blip, or a load test opening 256 connections at a time, fills 128
//! connections that finished the TCP handshake and wait for `accept`: Linux then drops the
//! next SYNs (`ListenOverflows` in `nstat`), and each of those clients waits a full second
//! for its SYN to be sent again (measured: BENCHMARKS.md, issue 12, fifth round).

use std::io;
use tokio::net::{TcpListener, TcpSocket};

/// Connections that may wait for `accept`. Linux caps it at `net.core.somaxconn` (4,096 by
/// default since 5.4); uWebSockets and Node ask for 512 and 511.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` (`host:port`, the host a name or an address) with [`LISTEN_BACKLOG`],
/// on the first of its addresses that can be bound, as `TcpListener::bind` does.
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last_error = None;
    for address in tokio::net::lookup_host(addr).await? {
        let socket = match address {
            std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind`: a restarted server can take its port back at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More connections than the standard library's backlog of 128 all finish their TCP
    /// handshake before the first `accept`, and every one is accepted.
    #[tokio::test]
    async fn a_crowd_larger_than_128_waits_for_accept_without_losing_anyone() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let crowd = 300;
        let mut clients = Vec::new();
        for _ in 0..crowd {
            // `connect` returns once the handshake is done, whether or not it was accepted.
            let client = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .expect("a SYN dropped by a full accept queue is only retried after a second")
            .unwrap();
            clients.push(client);
        }
        for _ in 0..crowd {
            listener.accept().await.unwrap();
        }
    }

    #[tokio::test]
    async fn names_resolve_and_nothing_to_bind_is_an_error() {
        let listener = listen("localhost:0").await.unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        assert!(listen("127.0.0.1:99999").await.is_err());
    }
}
