//! The connection and per-address limits: timeouts, connection caps, trusted proxies, share
//! creation per address and failed-authentication bans. Every quantity a client controls
//! (how many sockets it opens, how slowly it sends, how often it guesses a token) has a
//! bound here.

use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Most time to receive a request's headers, ms. It starts when the server waits for a
    /// request: at accept, and on a keep-alive HTTP/1.1 connection right after the previous
    /// response, so an idle keep-alive connection is closed after it too.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Close an HTTP connection (HTTP/1.1 or HTTP/2, before any WebSocket upgrade) that moved
    /// no byte in either direction for this long, ms. Must exceed `SSE_KEEPALIVE_MS`.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Most TCP connections of any kind at once (0: as many as the open-file limit allows,
    /// minus `FD_RESERVE`). Larger values are clamped to that budget with a warning.
    #[arg(long, env = "MAX_TCP_CONNECTIONS", default_value_t = 0)]
    pub max_tcp_connections: usize,
    /// File descriptors kept out of the connection budget: the listener, logs, outgoing
    /// connections, and the short-lived sockets used to answer refused connections.
    #[arg(long, env = "FD_RESERVE", default_value_t = 128)]
    pub fd_reserve: u64,
    /// Most TCP connections from one client address (IPv6: one /64). Trusted proxies are
    /// exempt. 0 turns the cap off.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed: comma-separated IPs or CIDRs
    /// (e.g. `10.0.0.0/8,::1`). Empty: the TCP peer is always the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Most active share sessions started from one address; held below `MAX_SESSIONS` (see
    /// [`Self::share_sessions_per_ip_under`]).
    #[arg(long, env = "SHARE_SESSIONS_PER_IP", default_value_t = 5)]
    pub share_sessions_per_ip: usize,
    /// Share sessions one address may start per minute (a burst of as many).
    #[arg(long, env = "SHARE_STARTS_PER_MINUTE", default_value_t = 10)]
    pub share_starts_per_minute: u32,
    /// Failed authentications from one address within `AUTH_FAILURE_WINDOW_MS` that ban it.
    #[arg(long, env = "AUTH_FAILURE_LIMIT", default_value_t = 10)]
    pub auth_failure_limit: u32,
    /// The window in which `AUTH_FAILURE_LIMIT` failures ban an address, ms.
    #[arg(long, env = "AUTH_FAILURE_WINDOW_MS", default_value_t = 60_000)]
    pub auth_failure_window_ms: u64,
    /// How long a banned address is refused without its token being checked, ms.
    #[arg(long, env = "AUTH_BAN_MS", default_value_t = 300_000)]
    pub auth_ban_ms: u64,
    /// Addresses each per-address table (failed authentications, share starts) remembers;
    /// beyond it the least recently seen address is forgotten.
    #[arg(long, env = "TRACKED_ADDRESSES", default_value_t = 10_000)]
    pub tracked_addresses: usize,
}

impl LimitsConfig {
    /// Checks what clap cannot. `sse_keepalive_ms` comes from the rest of the configuration.
    pub fn validate(&self, sse_keepalive_ms: u64) -> Result<(), String> {
        let positive = [
            ("HEADER_READ_TIMEOUT_MS", self.header_read_timeout_ms),
            ("IDLE_TIMEOUT_MS", self.idle_timeout_ms),
            ("SHARE_SESSIONS_PER_IP", self.share_sessions_per_ip as u64),
            (
                "SHARE_STARTS_PER_MINUTE",
                u64::from(self.share_starts_per_minute),
            ),
            ("AUTH_FAILURE_LIMIT", u64::from(self.auth_failure_limit)),
            ("AUTH_FAILURE_WINDOW_MS", self.auth_failure_window_ms),
            ("AUTH_BAN_MS", self.auth_ban_ms),
            ("TRACKED_ADDRESSES", self.tracked_addresses as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.idle_timeout_ms <= sse_keepalive_ms {
            // An SSE stream on a quiet session writes only its keep-alive comments.
            return Err("IDLE_TIMEOUT_MS must exceed SSE_KEEPALIVE_MS".into());
        }
        super::client_ip::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| format!("TRUSTED_PROXIES: {e}"))?;
        Ok(())
    }

    /// The per-address share cap in force under `max_share_sessions`: below it, so that one
    /// address never takes every share session from everyone else, except on a server
    /// configured for a single share (`MAX_SESSIONS=1`), where that one is all there is.
    pub fn share_sessions_per_ip_under(&self, max_share_sessions: usize) -> usize {
        self.share_sessions_per_ip
            .min(max_share_sessions.saturating_sub(1))
            .max(1)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn auth_failure_window(&self) -> Duration {
        Duration::from_millis(self.auth_failure_window_ms)
    }
    pub fn auth_ban(&self) -> Duration {
        Duration::from_millis(self.auth_ban_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use clap::Parser;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::defaults();
        assert!(c.validate().is_ok());
        let l = &c.limits;
        assert_eq!(
            (l.header_read_timeout_ms, l.idle_timeout_ms),
            (10_000, 60_000)
        );
        assert_eq!((l.max_tcp_connections, l.fd_reserve), (0, 128));
        assert_eq!(l.max_connections_per_ip, 256);
        assert_eq!(
            (l.share_sessions_per_ip, l.share_starts_per_minute),
            (5, 10)
        );
        assert_eq!(l.auth_failure_limit, 10);
        assert!(l.trusted_proxies.is_empty());
    }

    #[test]
    fn settings_that_would_defeat_a_limit_are_refused() {
        let bad = |args: &[&str]| {
            let mut argv = vec!["bandsync"];
            argv.extend_from_slice(args);
            Config::parse_from(argv).validate().unwrap_err()
        };
        assert!(bad(&["--idle-timeout-ms", "15000"]).contains("IDLE_TIMEOUT_MS"));
        assert!(bad(&["--trusted-proxies", "10.0.0.0/8,proxy"]).contains("TRUSTED_PROXIES"));
        assert!(bad(&["--header-read-timeout-ms", "0"]).contains("HEADER_READ_TIMEOUT_MS"));
        let ok = Config::parse_from(["bandsync", "--trusted-proxies", "10.0.0.0/8, ::1"]);
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn the_per_address_share_cap_stays_below_max_sessions() {
        let limits = Config::parse_from(["bandsync", "--share-sessions-per-ip", "50"]).limits;
        assert_eq!(limits.share_sessions_per_ip_under(50), 49);
        assert_eq!(limits.share_sessions_per_ip_under(100), 50);
        assert_eq!(
            limits.share_sessions_per_ip_under(1),
            1,
            "a one-share server"
        );
        assert!(
            Config::parse_from(["bandsync", "--max-share-sessions", "1"])
                .validate()
                .is_ok()
        );
    }
}
