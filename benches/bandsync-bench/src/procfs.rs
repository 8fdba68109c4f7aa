//! CPU time and resident memory of a process, from `/proc/PID/stat` and
//! `/proc/PID/status` (Linux). Resolution is one `USER_HZ` tick (10 ms) per reading, so
//! CPU figures over windows shorter than a second are coarse.

use std::time::Duration;

/// The kernel's `USER_HZ`: the unit of `utime`/`stime` in `/proc/*/stat`. Fixed at 100 by
/// the Linux ABI on every mainstream architecture (it is not the kernel's `HZ`); reading it
/// with `sysconf(_SC_CLK_TCK)` would need `unsafe`, which the workspace forbids.
pub const USER_HZ: u64 = 100;

/// CPU time a process used so far (all its threads), in `USER_HZ` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTime {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
}

impl CpuTime {
    pub fn total_us(&self) -> u64 {
        (self.utime_ticks + self.stime_ticks) * (1_000_000 / USER_HZ)
    }

    /// The part of [`CpuTime::total_us`] spent in the kernel.
    pub fn kernel_us(&self) -> u64 {
        self.stime_ticks * (1_000_000 / USER_HZ)
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`: `utime` and
/// `stime` are fields 14 and 15.
pub fn parse_proc_stat(text: &str) -> Option<CpuTime> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11); // fields 3..=13
    let utime_ticks = fields.next()?.parse().ok()?;
    let stime_ticks = fields.next()?.parse().ok()?;
    Some(CpuTime {
        utime_ticks,
        stime_ticks,
    })
}

/// The `VmRSS` line of `/proc/PID/status`, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        _ => None,
    }
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// CPU time of process `pid` (`None`: this process).
pub fn read_cpu(pid: Option<u32>) -> Option<CpuTime> {
    parse_proc_stat(&std::fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

/// Resident memory of process `pid` (`None`: this process), in KiB.
pub fn read_rss_kib(pid: Option<u32>) -> Option<u64> {
    parse_vm_rss_kib(&std::fs::read_to_string(proc_path(pid, "status")).ok()?)
}

/// How many file descriptors process `pid` has open (entries of `/proc/PID/fd`).
pub fn read_fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// CPU used between two readings over `wall` time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub cpu_us: u64,
    /// The part of `cpu_us` spent in the kernel (`stime`): on loopback, a server's writes
    /// also run the receiver's TCP input, so this is most of the cost of a delivery or a
    /// join, and the same for every server doing the same writes. The kernel keeps the
    /// total exact but splits it by sampling at its scheduler tick, so the split is
    /// approximate, and skewed for work that wakes on a timer (the 16 ms ticks): `perf`
    /// measures that case better.
    pub kernel_us: u64,
    pub wall: Duration,
}

impl CpuUsage {
    pub fn between(start: CpuTime, end: CpuTime, wall: Duration) -> Self {
        Self {
            cpu_us: end.total_us().saturating_sub(start.total_us()),
            kernel_us: end.kernel_us().saturating_sub(start.kernel_us()),
            wall,
        }
    }

    /// The kernel's share of the CPU time, in percent (`None` without CPU time).
    pub fn kernel_percent(&self) -> Option<f64> {
        (self.cpu_us > 0).then(|| self.kernel_us as f64 / self.cpu_us as f64 * 100.0)
    }

    /// CPU time as a percentage of one core over the wall time (200 = two cores busy).
    pub fn percent_of_core(&self) -> f64 {
        let wall_us = self.wall.as_secs_f64() * 1e6;
        if wall_us > 0.0 {
            self.cpu_us as f64 / wall_us * 100.0
        } else {
            0.0
        }
    }

    /// CPU µs per unit of work (message, delivery, tick), `None` without work.
    pub fn us_per(&self, count: u64) -> Option<f64> {
        (count > 0).then(|| self.cpu_us as f64 / count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parsing_survives_odd_command_names() {
        let text = "4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        let cpu = parse_proc_stat(text).unwrap();
        assert_eq!(
            cpu,
            CpuTime {
                utime_ticks: 250,
                stime_ticks: 75
            }
        );
        assert_eq!(cpu.total_us(), 3_250_000);
        assert_eq!(parse_proc_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_proc_stat("garbage"), None);
        // This process can read itself.
        assert!(read_cpu(None).is_some());
        assert!(read_rss_kib(None).unwrap() > 0);
        assert!(
            read_fd_count(std::process::id()).unwrap() >= 3,
            "stdio at least"
        );
    }

    #[test]
    fn vm_rss_and_cpu_usage() {
        let status = "Name:\tbandsync\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12_345));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
        let a = CpuTime {
            utime_ticks: 100,
            stime_ticks: 20,
        };
        let b = CpuTime {
            utime_ticks: 140,
            stime_ticks: 30,
        };
        let u = CpuUsage::between(a, b, Duration::from_secs(2));
        assert_eq!(u.cpu_us, 500_000);
        assert!((u.percent_of_core() - 25.0).abs() < 1e-9);
        assert_eq!(u.us_per(1000), Some(500.0));
        assert_eq!(u.us_per(0), None);
        assert_eq!(u.kernel_us, 100_000);
        assert!((u.kernel_percent().unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(
            CpuUsage::between(b, a, Duration::ZERO).percent_of_core(),
            0.0
        );
        assert_eq!(
            CpuUsage::between(b, a, Duration::ZERO).kernel_percent(),
            None
        );
    }
}
