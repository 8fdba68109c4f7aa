//! The `bandsync` binary: configuration, logging, signals; the rest is [`bandsync::run`].

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

// The system allocator is the default, chosen by measurement (BENCHMARKS.md, "Memory after
// load"); these features exist to repeat that measurement.
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("enable at most one of the features mimalloc and jemalloc");
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = bandsync::Config::parse();
    init_logs(&config);
    let addr = format!("{}:{}", config.host, config.port);
    let listener = bandsync::net::listen(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let server = bandsync::run(listener, config, shutdown_signal());
    // With one worker thread (one core), the server runs as a task of that worker rather
    // than on this thread: otherwise this thread's accept loop and the worker take turns on
    // the core, two context switches for every connection accepted. With several workers
    // the accept loop keeps this thread, which hands new connections to whichever worker
    // is free (as a worker's task it would queue them on its own worker, to be stolen
    // late). Measured in BENCHMARKS.md (issue 12, fourth round).
    if tokio::runtime::Handle::current().metrics().num_workers() == 1 {
        tokio::spawn(server).await.context("the server task")?
    } else {
        server.await
    }
}

/// Logs to stderr, as text (colored on a terminal) or, with `LOG_FORMAT=json`, one JSON
/// object a line carrying the current span's fields and the list of enclosing spans
/// (`conn` of a WebSocket, `request_id` of an HTTP request), for a log collector.
fn init_logs(config: &bandsync::Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        bandsync::config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        bandsync::config::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
