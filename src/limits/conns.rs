//! The cap on every TCP connection, and on the connections of one client address.
//!
//! Both are counted at accept, before hyper sees a byte, and the permit lives inside the
//! connection's IO, so it is released when the socket closes, whether the connection ended
//! as plain HTTP, an SSE stream or an upgraded WebSocket. The per-address map only holds
//! addresses with an open connection, so it is bounded by the total cap.

use super::client_ip::AddrKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server holds its maximum number of TCP connections")]
    ServerFull,
    #[error("too many connections from this address")]
    PerAddress,
}

impl Refused {
    /// The label of `bandsync_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::ServerFull => "server_full",
            Refused::PerAddress => "per_address",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<AddrKey, usize>,
}

pub struct ConnLimits {
    max_total: usize,
    /// 0: no per-address cap.
    max_per_addr: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it gives the slot back.
pub struct ConnPermit {
    counts: Arc<Mutex<Counts>>,
    addr: Option<AddrKey>,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_addr: usize) -> Self {
        Self {
            max_total,
            max_per_addr,
            counts: Arc::default(),
        }
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Admits a connection from `peer`; `exempt` (a trusted proxy) skips the per-address cap.
    pub fn try_admit(&self, peer: IpAddr, exempt: bool) -> Result<ConnPermit, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            return Err(Refused::ServerFull);
        }
        let addr = (!exempt && self.max_per_addr > 0).then(|| AddrKey::of(peer));
        if let Some(addr) = addr {
            let n = counts.per_addr.entry(addr).or_insert(0);
            if *n >= self.max_per_addr {
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(ConnPermit {
            counts: self.counts.clone(),
            addr,
        })
    }

    /// Open connections (all, and addresses with at least one).
    pub fn open(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (counts.total, counts.per_addr.len())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(addr) = self.addr {
            if let Some(n) = counts.per_addr.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    counts.per_addr.remove(&addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn the_per_address_cap_leaves_room_for_other_addresses() {
        let limits = ConnLimits::new(10, 2);
        let a1 = limits.try_admit(ip(1), false).unwrap();
        let _a2 = limits.try_admit(ip(1), false).unwrap();
        assert_eq!(
            limits.try_admit(ip(1), false).err(),
            Some(Refused::PerAddress)
        );
        let _b = limits.try_admit(ip(2), false).unwrap();
        let _proxy = limits.try_admit(ip(1), true).unwrap();
        drop(a1);
        let _a3 = limits.try_admit(ip(1), false).unwrap();
        assert_eq!(limits.open(), (4, 2));
    }

    #[test]
    fn the_total_cap_counts_every_address_and_slots_come_back() {
        let limits = ConnLimits::new(2, 0);
        let a = limits.try_admit(ip(1), false).unwrap();
        let _b = limits.try_admit(ip(2), false).unwrap();
        assert_eq!(
            limits.try_admit(ip(3), false).err(),
            Some(Refused::ServerFull)
        );
        drop(a);
        assert!(limits.try_admit(ip(3), false).is_ok());
        assert_eq!(
            limits.open().1,
            0,
            "no per-address entries without a per-address cap"
        );
    }
}
