//! `listen`: an SSE listener that measures what it receives.
//!
//! An SSE listener cannot send, so it cannot heartbeat: tick lag uses `--clock-offset`
//! (default 0, right when client and server share a host clock) and says so.

use crate::monitor::Monitor;
use crate::{until_stopped, Common, Watch};
use anyhow::Context as _;
use bandsync_client::{ClientError, SseClient};
use clap::Args;
use std::time::{Duration, Instant};

/// How long one wait for an event may last before the loop checks again. Only a bound
/// for the library call: the run's own end is `--duration` or Ctrl-C.
const POLL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// HTTP base URL of the server, e.g. http://127.0.0.1:3001
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub watch: Watch,
    /// Resume after this event id (sent as Last-Event-ID).
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,
    /// Server clock minus local clock, in ms, for tick lag (SSE cannot measure it).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub clock_offset: f64,
}

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let session = &args.common.session;
    let credentials = args.common.credentials();
    let connect = SseClient::connect_with(
        &args.url,
        session,
        args.last_event_id.as_deref(),
        &credentials,
    );
    let mut sse = tokio::time::timeout(crate::CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {}: timed out", args.url))?
        .with_context(|| format!("opening the SSE stream of session {session}"))?;

    let mut monitor = Monitor::new(start, args.watch.view(), args.watch.tick_interval);
    monitor.note(&format!(
        "listening on {}; tick lag assumes a clock offset of {} ms",
        sse.url(),
        args.clock_offset
    ));
    let stopped = until_stopped(args.common.duration);
    tokio::pin!(stopped);

    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            () = &mut stopped => break Ok(()),
            next = sse.next_event(POLL) => match next {
                Ok(Some(event)) => monitor.on_frame(
                    &event.frame,
                    event.received_at,
                    event.wall_ms,
                    Some(args.clock_offset),
                    event.id.as_deref(),
                ),
                Ok(None) => {
                    let resume = sse.last_event_id().unwrap_or("-");
                    break Err(anyhow::anyhow!(
                        "the server ended the SSE stream (last event id {resume})"
                    ));
                }
                Err(ClientError::Timeout(_)) => {}
                Err(e) => break Err(anyhow::Error::new(e).context("reading the SSE stream")),
            }
        }
    };
    monitor.print_summary(None, args.clock_offset);
    outcome
}
