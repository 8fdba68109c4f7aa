//! Just enough of the Redis protocol (RESP2) for the bench to watch the redis-server it
//! spawned: `PING` until it answers, and `INFO` for its command counter. Two commands do
//! not justify the `redis` crate in the load client; the parser below is small and tested.
//! One short connection per command: the bench asks a few times per run.

use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(2);

/// The reply kinds these commands get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<String>),
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply from the start of `buf`: `Ok(None)` while it is incomplete, else the reply
/// and the bytes it took. Arrays are refused (no command here answers with one).
pub fn parse(buf: &[u8]) -> anyhow::Result<Option<(Reply, usize)>> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..end]).context("RESP line is not UTF-8")?;
    let after = end + 2;
    let reply = match buf.first() {
        Some(b'+') => Reply::Simple(line.to_owned()),
        Some(b'-') => Reply::Error(line.to_owned()),
        Some(b':') => Reply::Integer(line.parse().context("RESP integer")?),
        Some(b'$') => {
            let len: i64 = line.parse().context("RESP bulk length")?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let len = len as usize;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            let body = std::str::from_utf8(&buf[after..after + len]).context("RESP bulk")?;
            return Ok(Some((Reply::Bulk(Some(body.to_owned())), after + len + 2)));
        }
        Some(other) => bail!("unexpected RESP reply type {:?}", char::from(*other)),
        None => return Ok(None),
    };
    Ok(Some((reply, after)))
}

/// Sends one command to `addr` and reads its reply.
pub async fn command(addr: SocketAddr, args: &[&str]) -> anyhow::Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&encode(args)).await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            if let Some((reply, _)) = parse(&buf)? {
                return Ok(reply);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("redis closed the connection mid-reply");
            }
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("redis at {addr} did not answer {args:?} in {TIMEOUT:?}"))?
}

/// A numeric field of an `INFO` reply (`name:value` lines).
pub fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// Redis's count of commands it executed so far, including those a Lua script ran
/// (`INFO stats` `total_commands_processed`). Counted after each command runs, so a later
/// reading includes the earlier `INFO` itself.
pub async fn commands_processed(addr: SocketAddr) -> anyhow::Result<u64> {
    match command(addr, &["INFO", "stats"]).await? {
        Reply::Bulk(Some(info)) => info_field(&info, "total_commands_processed")
            .context("INFO stats has no total_commands_processed"),
        other => bail!("INFO stats answered {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["INFO", "stats"]),
            b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"
        );
    }

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        let ok = |b: &[u8]| parse(b).unwrap();
        assert_eq!(ok(b"+PONG\r\n"), Some((Reply::Simple("PONG".into()), 7)));
        assert_eq!(ok(b"+PON"), None);
        assert_eq!(ok(b""), None);
        assert_eq!(ok(b"-ERR no\r\n").unwrap().0, Reply::Error("ERR no".into()));
        assert_eq!(ok(b":42\r\n").unwrap().0, Reply::Integer(42));
        assert_eq!(ok(b"$-1\r\n"), Some((Reply::Bulk(None), 5)));
        assert_eq!(ok(b"$5\r\nab\r\n"), None, "a body may hold CRLF");
        assert_eq!(
            ok(b"$6\r\nab\r\ncd\r\n+x"),
            Some((Reply::Bulk(Some("ab\r\ncd".into())), 12))
        );
        assert!(parse(b"*1\r\n$4\r\nPING\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
    }

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n\
                    total_commands_processed_extra:9\r\n";
        assert_eq!(info_field(info, "total_commands_processed"), Some(1234));
        assert_eq!(info_field(info, "total_connections_received"), Some(3));
        assert_eq!(info_field(info, "missing"), None);
        assert_eq!(info_field("# Stats\r\n", "total_commands_processed"), None);
    }
}
