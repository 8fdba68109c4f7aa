//! The floor under "server CPU per delivered message": what one small write to a loopback
//! TCP socket costs the writing thread (user + kernel, which on loopback includes handing
//! the segment to the receiver), with no WebSocket framing, no tokio and no bandsync code.
//! Any server that writes each message to each socket pays at least this.
//!
//! Its receiver spins on non-blocking reads, so it leaves out what waking a receiver asleep
//! in `epoll_wait` adds to the write, which every real client costs: it is a lower bound,
//! below any scenario. `bandsync-bench --spawn-server floor` measures the same bare write
//! in a scenario's own conditions (`benches/reference/floor`).
//!
//! `cargo bench --bench write_floor` prints one JSON line per socket count.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `scroll_tick` envelope is about this size with its WebSocket header.
const MESSAGE: [u8; 170] = [b'x'; 170];

/// CPU time (user + system) of the calling thread, from /proc (10 ms resolution, so the
/// measured phase runs for seconds).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn measure(sockets: usize, min_cpu: Duration) -> (f64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut receivers = Vec::with_capacity(sockets);
    let mut senders = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nodelay(true).unwrap();
        client.set_nonblocking(true).unwrap();
        receivers.push(client);
        senders.push(server);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                for r in &mut receivers {
                    while let Ok(n) = r.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
        })
    };
    let start_cpu = thread_cpu();
    let started = Instant::now();
    let mut writes = 0u64;
    while thread_cpu() - start_cpu < min_cpu && started.elapsed() < Duration::from_secs(60) {
        for s in &mut senders {
            s.write_all(&MESSAGE).unwrap();
            writes += 1;
        }
        // Pace rounds a little, like ticks: the receiver keeps up and buffers stay small.
        std::thread::sleep(Duration::from_micros(200));
    }
    let cpu = thread_cpu() - start_cpu;
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    (cpu.as_secs_f64() * 1e6 / writes as f64, writes)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let min_cpu = if full {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(50)
    };
    for sockets in [100usize, 1000] {
        let (us_per_write, writes) = measure(sockets, min_cpu);
        println!(
            "{{\"bench\":\"write_floor\",\"sockets\":{sockets},\"message_bytes\":{},\"writes\":{writes},\"writer_cpu_us_per_write\":{us_per_write:.3}}}",
            MESSAGE.len()
        );
    }
}
