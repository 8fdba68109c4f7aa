//! The floor under "server CPU per delivery", with and without io_uring.
//!
//! A fan-out writes one small frame to each of N loopback TCP sockets. This tool measures
//! what that costs the writing thread (user and kernel; on loopback the kernel's work
//! includes the receiver's TCP input and its wake-up) three ways, alternating in one run on
//! the same sockets:
//!
//! - `send`: one `send(2)` per socket, as bandsync and uWebSockets.js do;
//! - `uring`: one `IORING_OP_SEND` per socket, all of a round submitted with one
//!   `io_uring_enter`, completions reaped before the next round: `uring-send`, the crate the
//!   server's engine writes its fan-outs with. (Registering the sockets with the ring, to
//!   skip the file lookup, measured the same in the eighth round, so neither uses it.)
//!
//! No WebSocket, tokio or bandsync code is involved: the difference between the modes is
//! what batching the system calls can save, the rest is the TCP work no design avoids.
//!
//! The receiver runs on its own core, either sleeping in `epoll_wait` like a real client
//! (`--receiver epoll`, the default: each round wakes it) or spinning on non-blocking reads
//! (`--receiver spin`, as `cargo bench --bench write_floor`).
//!
//! ```text
//! cargo run --release -p uring-floor -- [--sockets 1000] [--receiver epoll|spin]
//!     [--gap-us 16000] [--rounds-cpu-ms 1500] [--reps 5] [--writer-cpu 1] [--receiver-cpu 0]
//! ```
//!
//! One JSON line per measurement on stdout, then one with each mode's median and its ratio
//! to `send`.

use rustix::event::epoll;
use rustix::time::{clock_gettime, ClockId, Timespec};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uring_send::SendBatch;

/// A `scroll_tick` envelope is about this size with its WebSocket header (as `write_floor`).
const MESSAGE: [u8; 170] = [b'x'; 170];
/// Sends per `io_uring_enter`; larger rounds are submitted in parts.
const RING_ENTRIES: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Uring,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Send, Mode::Uring];

    fn name(self) -> &'static str {
        match self {
            Mode::Send => "send",
            Mode::Uring => "uring",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    sockets: usize,
    spin: bool,
    gap: Duration,
    cpu_per_measurement: Duration,
    reps: usize,
    writer_cpu: usize,
    receiver_cpu: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        sockets: 1000,
        spin: false,
        gap: Duration::from_micros(16_000),
        cpu_per_measurement: Duration::from_millis(1500),
        reps: 5,
        writer_cpu: 1,
        receiver_cpu: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--sockets" => options.sockets = number(value()?)?.clamp(1, 20_000) as usize,
            "--receiver" => match value()?.as_str() {
                "epoll" => options.spin = false,
                "spin" => options.spin = true,
                other => return Err(format!("--receiver epoll|spin, not {other}")),
            },
            "--gap-us" => options.gap = Duration::from_micros(number(value()?)?),
            "--rounds-cpu-ms" => {
                options.cpu_per_measurement = Duration::from_millis(number(value()?)?.max(10))
            }
            "--reps" => options.reps = number(value()?)?.clamp(1, 100) as usize,
            "--writer-cpu" => options.writer_cpu = number(value()?)? as usize,
            "--receiver-cpu" => options.receiver_cpu = number(value()?)? as usize,
            // `cargo test --workspace` runs nothing here; `--bench` is what cargo bench adds.
            "--bench" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(options)
}

/// CPU time of the calling thread, user and kernel, to the nanosecond.
fn thread_cpu() -> Duration {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Keeps the calling thread on `cpu` (ignored where the machine has no such CPU).
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("uring-floor: not pinned to CPU {cpu}: {e}");
    }
}

/// Reads everything that arrives on `receivers` until `stop`: asleep in `epoll_wait`
/// between rounds like a real client, or spinning.
fn receive(mut receivers: Vec<TcpStream>, spin: bool, stop: &AtomicBool) -> std::io::Result<()> {
    let mut buf = [0u8; 65536];
    let mut drain =
        |socket: &mut TcpStream| while matches!(socket.read(&mut buf), Ok(n) if n > 0) {};
    if spin {
        while !stop.load(Ordering::Relaxed) {
            receivers.iter_mut().for_each(&mut drain);
        }
        return Ok(());
    }
    let poller = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    for (index, socket) in receivers.iter().enumerate() {
        let data = epoll::EventData::new_u64(index as u64);
        epoll::add(&poller, socket, data, epoll::EventFlags::IN)?;
    }
    let mut events = Vec::with_capacity(1024);
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    while !stop.load(Ordering::Relaxed) {
        events.clear();
        epoll::wait(
            &poller,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        )?;
        for event in &events {
            drain(&mut receivers[event.data.u64() as usize]);
        }
    }
    Ok(())
}

/// Sends `MESSAGE` once on every socket through the ring, and waits for every completion.
fn send_round_uring(
    batch: &mut SendBatch,
    senders: &[TcpStream],
    results: &mut Vec<std::io::Result<usize>>,
) -> std::io::Result<()> {
    let sends: Vec<uring_send::Send<'_>> = senders
        .iter()
        .map(|s| (s.as_raw_fd(), &MESSAGE[..]))
        .collect();
    batch.send_all(&sends, results);
    for (index, result) in results.iter().enumerate() {
        match result {
            Ok(n) if *n == MESSAGE.len() => {}
            other => {
                return Err(std::io::Error::other(format!("send {index}: {other:?}")));
            }
        }
    }
    Ok(())
}

/// Rounds of one mode until the thread has spent `options.cpu_per_measurement`: CPU per
/// send in microseconds, and sends made.
fn measure(
    mode: Mode,
    senders: &mut [TcpStream],
    batch: &mut SendBatch,
    options: &Options,
) -> std::io::Result<(f64, u64)> {
    let mut results = Vec::with_capacity(senders.len());
    let start = thread_cpu();
    let started = Instant::now();
    let mut sends = 0u64;
    while thread_cpu() - start < options.cpu_per_measurement
        && started.elapsed() < Duration::from_secs(120)
    {
        match mode {
            Mode::Send => {
                for socket in senders.iter_mut() {
                    socket.write_all(&MESSAGE)?;
                }
            }
            Mode::Uring => send_round_uring(batch, senders, &mut results)?,
        }
        sends += senders.len() as u64;
        // Rounds are paced like ticks: the receiver keeps up, buffers stay small.
        std::thread::sleep(options.gap);
    }
    let cpu = thread_cpu() - start;
    Ok((cpu.as_secs_f64() * 1e6 / sends as f64, sends))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(options: &Options) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut receivers = Vec::with_capacity(options.sockets);
    let mut senders = Vec::with_capacity(options.sockets);
    for _ in 0..options.sockets {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        client.set_nonblocking(true)?;
        receivers.push(client);
        senders.push(server);
    }
    let mut batch = SendBatch::new(RING_ENTRIES)?;

    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (stop, spin, cpu) = (stop.clone(), options.spin, options.receiver_cpu);
        std::thread::spawn(move || {
            pin_to(cpu);
            receive(receivers, spin, &stop)
        })
    };
    pin_to(options.writer_cpu);
    let receiver_kind = if options.spin { "spin" } else { "epoll" };
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    for rep in 0..options.reps {
        for (slot, mode) in Mode::ALL.into_iter().enumerate() {
            let (us, sends) = measure(mode, &mut senders, &mut batch, options)?;
            results[slot].push(us);
            println!(
                "{{\"bench\":\"uring_floor\",\"rep\":{rep},\"mode\":\"{}\",\"sockets\":{},\"receiver\":\"{receiver_kind}\",\"gap_us\":{},\"sends\":{sends},\"writer_cpu_us_per_send\":{us:.3}}}",
                mode.name(),
                options.sockets,
                options.gap.as_micros()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))??;

    let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    let fields: Vec<String> = Mode::ALL
        .iter()
        .zip(&medians)
        .map(|(mode, m)| {
            format!(
                "\"{}\":{{\"median_us_per_send\":{m:.3},\"ratio_to_send\":{:.3}}}",
                mode.name(),
                m / medians[0]
            )
        })
        .collect();
    println!(
        "{{\"bench\":\"uring_floor\",\"summary\":true,\"sockets\":{},\"receiver\":\"{receiver_kind}\",\"reps\":{},{}}}",
        options.sockets,
        options.reps,
        fields.join(",")
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("uring-floor: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "uring-floor: {e} (io_uring may be disabled: /proc/sys/kernel/io_uring_disabled)"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
