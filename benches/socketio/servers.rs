//! The two servers under test, started as child processes on ephemeral loopback ports and
//! stopped by their pid: bandsync's release binary, and `node server.mjs` (the seed's
//! stack). Also their CPU time and resident memory, read from `/proc`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to say where it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of a server's own output echoed to the bench's stderr; past that they are counted,
/// so a server that logs per message cannot flood the report.
const ECHOED_LINES: usize = 20;

/// The kernel's `USER_HZ`, the unit of `utime`/`stime` in `/proc/PID/stat`: 100 on every
/// mainstream Linux architecture (reading it with `sysconf` would need `unsafe`).
const USER_HZ: f64 = 100.0;

/// A server the bench started; killed by its pid when dropped, also when the bench fails.
pub struct Server {
    pub name: &'static str,
    pub addr: String,
    child: Child,
    scratch: Option<PathBuf>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system, all threads) the server has used so far.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        parse_cpu_seconds(&stat).ok_or_else(|| format!("{path}: no utime/stime"))
    }

    /// Resident memory in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| format!("{path}: no VmRSS"))
    }

    /// Whether the process is still running (a crash mid-run is reported as such).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` signals this child's own pid; it never touches other processes.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// CPU seconds from `/proc/PID/stat`: fields 14 and 15, counted after the `)` that ends
/// the command name (which may itself hold spaces).
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `program` pinned to `cpu` with taskset (which execs it, so the pid is the program's).
fn command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The server as users build it (`cargo build --release`). The binary cargo builds for a
/// bench carries the dev-dependencies' features (tokio's `test-util`, whose clock checks
/// for paused time on every `Instant::now`), so it is not the one users run: build the
/// plain one, which cargo puts at the same path, and run that.
fn release_binary() -> Result<std::path::PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "bandsync",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("building the release server: {e}"))?;
    if !status.success() {
        return Err(format!("building the release server failed: {status}"));
    }
    Ok(Path::new(env!("CARGO_BIN_EXE_bandsync")).to_path_buf())
}

/// Starts bandsync's release binary on port 0 and learns the port from its
/// `bandsync listening addr=..` log line. Logs stay at `warn` elsewhere (per-connection
/// logs would cost it CPU that the other server does not spend); the whole load comes
/// from 127.0.0.1, so the per-address connection cap is lifted.
pub fn spawn_bandsync(cpu: Option<usize>) -> Result<Server, String> {
    let scratch = std::env::temp_dir().join(format!("siobench-{}", std::process::id()));
    let mut cmd = command(&release_binary()?, cpu);
    cmd.env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "warn,bandsync::server=info")
        .env("MAX_CONNECTIONS_PER_IP", "0")
        .env("ASSET_STORAGE_PATH", scratch.join("assets"))
        .env("STREAM_STATE_PATH", scratch.join("streams"))
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting bandsync: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let addr = watch_output("bandsync", stderr, |line| {
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        Some(addr.to_owned())
    });
    finish_spawn("bandsync", child, addr, Some(scratch))
}

/// Starts `node server.mjs` in `dir` on port 0 and learns the port from its
/// `listening on HOST:PORT` line.
pub fn spawn_node(node: &Path, dir: &Path, cpu: Option<usize>) -> Result<Server, String> {
    let mut cmd = command(node, cpu);
    cmd.arg("server.mjs")
        .current_dir(dir)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("NODE_ENV", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting node: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let addr = watch_output("node", stdout, |line| {
        Some(line.strip_prefix("listening on ")?.trim().to_owned())
    });
    // Nothing to learn from stderr; it is drained (and its first lines echoed) so that the
    // child never blocks on a full pipe.
    drop(watch_output("node", stderr, |_| None::<String>));
    finish_spawn("node", child, addr, None)
}

fn finish_spawn(
    name: &'static str,
    child: Child,
    addr: mpsc::Receiver<String>,
    scratch: Option<PathBuf>,
) -> Result<Server, String> {
    let mut server = Server {
        name,
        addr: String::new(),
        child,
        scratch,
    };
    match addr.recv_timeout(STARTUP_TIMEOUT) {
        Ok(addr) => {
            server.addr = addr;
            Ok(server)
        }
        Err(_) if !server.alive() => Err(format!("{name} exited before it listened")),
        Err(_) => Err(format!(
            "{name} did not say where it listens within {STARTUP_TIMEOUT:?}"
        )),
    }
}

/// Reads a child's output on a thread until it closes: sends the first value `find`
/// returns, echoes the first [`ECHOED_LINES`] other lines prefixed with the server's name,
/// and counts the rest.
fn watch_output<T: Send + 'static>(
    name: &'static str,
    output: impl Read + Send + 'static,
    find: impl Fn(&str) -> Option<T> + Send + 'static,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut found = false;
        let mut echoed = 0usize;
        let mut silenced = 0usize;
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if !found {
                if let Some(value) = find(&line) {
                    found = true;
                    let _ = tx.send(value);
                    continue;
                }
            }
            if echoed < ECHOED_LINES {
                echoed += 1;
                eprintln!("   [{name}] {line}");
            } else {
                silenced += 1;
            }
        }
        if silenced > 0 {
            eprintln!("   [{name}] ... and {silenced} more lines");
        }
    });
    rx
}
