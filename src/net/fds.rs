//! The connection budget, derived from the open-file limit.
//!
//! Every socket is a file descriptor. When accepted sockets use up the process's limit,
//! `accept` fails (EMFILE), nothing new gets in, not even `/health`, and a client over
//! `MAX_CONNECTIONS` never gets its 503. So at start the soft limit is raised to the hard
//! one where allowed, `FD_RESERVE` descriptors are kept for everything that is not a client
//! connection, the TCP cap is held under what is left, and the WebSocket + SSE cap under the
//! TCP cap with room for plain HTTP requests (health checks, the share API, the refusals).

/// What the limits come to at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most TCP connections of any kind.
    pub tcp: usize,
    /// Most WebSocket + SSE connections (`MAX_CONNECTIONS` after clamping).
    pub realtime: usize,
    /// What was lowered, for the warnings.
    pub tcp_clamped: bool,
    pub realtime_clamped: bool,
}

/// The least room kept for plain HTTP beside the realtime connections.
const MIN_HTTP_HEADROOM: usize = 4;

/// Pure arithmetic: `nofile` is the (raised) soft limit; `max_tcp` 0 means "the budget".
pub fn plan(nofile: u64, reserve: u64, max_tcp: usize, max_realtime: usize) -> Budget {
    let fd_budget = usize::try_from(nofile.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(MIN_HTTP_HEADROOM + 1);
    let tcp = if max_tcp == 0 {
        fd_budget
    } else {
        max_tcp.min(fd_budget)
    };
    let tcp_clamped = max_tcp != 0 && tcp < max_tcp;
    // A sixteenth of the connections (at least a few) stays free of WebSocket and SSE.
    let headroom = (tcp / 16).max(MIN_HTTP_HEADROOM).min(tcp - 1);
    let realtime = max_realtime.min(tcp - headroom).max(1);
    Budget {
        tcp,
        realtime,
        tcp_clamped,
        realtime_clamped: realtime < max_realtime,
    }
}

/// Raises the soft open-file limit to the hard one and returns the soft limit now in force
/// (`u64::MAX` where there is no such limit).
pub fn raise_nofile_limit() -> u64 {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(error) => {
                tracing::warn!(%error, "could not raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_case_keeps_every_cap_under_the_file_limit() {
        // Limit 20,000 and MAX_CONNECTIONS 20,000: the connection cap could never trigger.
        let b = plan(20_000, 128, 0, 20_000);
        assert_eq!(b.tcp, 19_872);
        assert_eq!(b.realtime, 19_872 - 19_872 / 16);
        assert!(b.realtime_clamped && !b.tcp_clamped);
    }

    #[test]
    fn a_high_limit_keeps_the_configured_caps() {
        let b = plan(1 << 20, 128, 50_000, 20_000);
        assert_eq!((b.tcp, b.realtime), (50_000, 20_000));
        assert!(!b.tcp_clamped && !b.realtime_clamped);
    }

    #[test]
    fn a_tcp_cap_above_the_budget_is_clamped() {
        let b = plan(1024, 128, 5000, 20_000);
        assert_eq!(b.tcp, 896);
        assert!(b.tcp_clamped);
        assert_eq!(b.realtime, 896 - 56);
    }

    #[test]
    fn tiny_limits_still_leave_room_for_one_request_beside_the_streams() {
        let b = plan(10, 128, 0, 20_000);
        assert_eq!(b.tcp, 5);
        assert_eq!(b.realtime, 1);
        let b = plan(u64::MAX, 128, 10, 10);
        assert_eq!((b.tcp, b.realtime), (10, 6));
    }
}
