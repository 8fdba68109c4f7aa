//! `faultproxy`: run the fault-injection proxy by hand, e.g. between `bandsync-cli follow`
//! and a local server, to hear and see what jitter does to a band's clock.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use faultproxy::{FaultProxy, Faults, Jitter, Link};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    Exponential,
    HalfNormal,
}

#[derive(Debug, Parser)]
#[command(
    name = "faultproxy",
    version,
    about = "A TCP proxy that adds seeded delay, jitter, asymmetry and stalls (loopback only)",
    after_help = "EXAMPLE\n  faultproxy --listen 127.0.0.1:4001 --upstream 127.0.0.1:3001 --jitter-ms 5 --up-ms 10\n  then point the client at ws://127.0.0.1:4001/ws"
)]
struct Args {
    /// Where clients connect (a loopback address).
    #[arg(long, default_value = "127.0.0.1:4001")]
    listen: SocketAddr,
    /// The server the proxy forwards to (a loopback address).
    #[arg(long, default_value = "127.0.0.1:3001")]
    upstream: SocketAddr,
    /// Base delay client -> server, ms.
    #[arg(long, default_value_t = 0.0)]
    up_ms: f64,
    /// Base delay server -> client, ms.
    #[arg(long, default_value_t = 0.0)]
    down_ms: f64,
    /// Standard deviation of each one-way delay, ms (both directions).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// How jitter is drawn (both have the SD given).
    #[arg(long, value_enum, default_value_t = Model::Exponential)]
    jitter_model: Model,
    /// Chance that a chunk stalls its direction (0..=1).
    #[arg(long, default_value_t = 0.0)]
    stall_p: f64,
    /// How long a stall lasts, ms.
    #[arg(long, default_value_t = 0.0)]
    stall_ms: f64,
    /// Seed of every delay drawn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print what was injected every SECS seconds (0: never).
    #[arg(long, default_value_t = 5)]
    report_every: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback() && args.upstream.ip().is_loopback(),
        "--listen and --upstream must be loopback addresses"
    );
    let jitter = match args.jitter_model {
        Model::Exponential => Jitter::Exponential,
        Model::HalfNormal => Jitter::HalfNormal,
    };
    let link = |base_ms| Link {
        base_ms,
        jitter_sd_ms: args.jitter_ms,
        jitter,
        stall_p: args.stall_p,
        stall_ms: args.stall_ms,
    };
    let faults = Faults {
        up: link(args.up_ms),
        down: link(args.down_ms),
        seed: args.seed,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let proxy = FaultProxy::serve(listener, args.upstream, faults)?;
    eprintln!(
        "faultproxy: {} -> {} ({faults:?})",
        proxy.addr(),
        args.upstream
    );
    let every = Duration::from_secs(args.report_every.max(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(every), if args.report_every > 0 => {
                let i = proxy.injected();
                eprintln!(
                    "connections {} | up {} chunks, mean {:.2} ms, sd {:.2} ms, {} stalls | down {} chunks, mean {:.2} ms, sd {:.2} ms, {} stalls",
                    i.connections, i.up.chunks, i.up.mean_ms, i.up.sd_ms, i.up.stalls,
                    i.down.chunks, i.down.mean_ms, i.down.sd_ms, i.down.stalls
                );
            }
        }
    }
    Ok(())
}
