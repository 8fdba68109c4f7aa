//! `follow`: a WebSocket follower that measures what it receives.
//!
//! It heartbeats every 50 ms for the first 2 s after joining (so the clock estimate is
//! good almost at once), then once a second, so its clock offset (and thus tick lag) is
//! measured, not assumed. With `--bars` it prints each bar boundary as it reaches it, and
//! with `--click` it sounds a metronome click on the shared timeline (`bars.rs`). The heartbeat replies are matched by their echoed `t0`, not awaited: the main
//! loop keeps reading ticks the whole time, so no arrival time is delayed by a request.

use crate::bars::{BarOptions, Metronome};
use crate::click::ClickOutput;
use crate::monitor::Monitor;
use crate::{connect_ws, until_stopped, Common, Watch};
use anyhow::Context as _;
use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role, ServerFrame};
use bandsync_client::{wall_clock_ms, ClockEstimator, Incoming};
use clap::Args;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct FollowArgs {
    /// WebSocket URL of the server, e.g. ws://127.0.0.1:3001/ws
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub watch: Watch,
    /// Display name to join with.
    #[arg(long)]
    pub name: Option<String>,
    /// Print each bar boundary when this client reaches it on the shared timeline, with the
    /// error of its estimate of server time at that moment.
    #[arg(long)]
    pub bars: bool,
    /// Sound a metronome click on the shared timeline (accented on the bar); needs the
    /// `playback` feature.
    #[arg(long)]
    pub click: bool,
    /// Beats in a bar, for `--bars` and the click's accent.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub beats_per_bar: u32,
    /// The sound output's latency in ms (its buffer): clicks are rendered this much ahead
    /// of when they must be heard.
    #[arg(long, value_name = "MS", default_value_t = 20.0, value_parser = parse_delay_ms)]
    pub click_latency_ms: f64,
    /// This device's calibration in ms, the latency the sound output does not report (a
    /// Bluetooth headset, a mixer): positive sounds the click earlier, negative later, as
    /// the page's calibration does.
    #[arg(long, value_name = "MS", default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_delay_ms)]
    pub click_offset_ms: f64,
}

/// A delay in ms: finite, within ±1 s.
fn parse_delay_ms(text: &str) -> Result<f64, String> {
    let ms: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !ms.is_finite() || ms.abs() > 1_000.0 {
        return Err("must be a number of ms between -1000 and 1000".into());
    }
    Ok(ms)
}

pub async fn run(args: FollowArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    // Open the sound output first: a missing feature or device fails before joining.
    let click = match args.click {
        true => Some(ClickOutput::open(
            args.click_latency_ms + args.click_offset_ms,
        )?),
        false => None,
    };
    let mut metronome = Metronome::new(
        BarOptions {
            beats_per_bar: args.beats_per_bar,
            print_bars: args.bars,
            json: args.watch.json,
        },
        click,
    );
    let session = &args.common.session;
    let mut client = connect_ws(&args.url).await?;
    let snapshot = client
        .join_as(
            session,
            Some(Role::Follower),
            args.name.as_deref(),
            &args.common.credentials(),
        )
        .await
        .with_context(|| format!("joining session {session}"))?;
    tracing::debug!(client_id = %snapshot.client_id, "joined");

    let mut monitor = Monitor::new(start, args.watch.view(), args.watch.tick_interval);
    let snapshot = ServerFrame {
        id: None,
        timestamp: snapshot.server_time,
        event: ServerEvent::Snapshot(snapshot),
    };
    monitor.on_frame(&snapshot, Instant::now(), wall_clock_ms(), None, None);
    // The estimator keeps the heartbeat cadence (its join burst, then the steady rate).
    let mut clock = ClockEstimator::default();
    let stopped = until_stopped(args.common.duration);
    tokio::pin!(stopped);

    // The snapshot was consumed by `join`; frames that arrived with it are in the buffer.
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            () = &mut stopped => break Ok(()),
            () = sleep_until(metronome.next_wake(monitor.timeline(), clock.offset().unwrap_or(0.0))) => {
                metronome.on_wake(monitor.timeline(), clock.estimate().as_ref());
            }
            () = tokio::time::sleep(clock.next_heartbeat_in(wall_clock_ms())) => {
                let t0 = wall_clock_ms();
                clock.heartbeat_sent(t0);
                let event = ClientEvent::Heartbeat(Heartbeat { t0 });
                if let Err(e) = client.send(event).await {
                    break Err(anyhow::Error::new(e).context("sending a heartbeat"));
                }
            }
            incoming = client.next() => match incoming {
                Ok(Incoming::Frame { frame, received_at, wall_ms }) => {
                    if let ServerEvent::HeartbeatResponse(reply) = &frame.event {
                        if clock.add_heartbeat(reply, wall_ms).is_some() {
                            if let Some(estimate) = clock.estimate() {
                                monitor.on_clock(&estimate, clock.len());
                                metronome.replan(monitor.timeline(), estimate.offset);
                            }
                        }
                        continue;
                    }
                    monitor.on_frame(&frame, received_at, wall_ms, clock.offset(), None);
                    if !matches!(frame.event, ServerEvent::ScrollTick(_)) {
                        metronome.replan(monitor.timeline(), clock.offset().unwrap_or(0.0));
                    }
                }
                Ok(Incoming::Closed { code, reason }) => {
                    let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                    break Err(anyhow::anyhow!(
                        "the server closed the connection (code {code}): {reason}"
                    ));
                }
                Err(e) => break Err(anyhow::Error::new(e).context("reading from the server")),
            }
        }
    };
    monitor.print_summary(clock.estimate().as_ref(), clock.offset().unwrap_or(0.0));
    if outcome.is_ok() {
        // Best effort: the run is over either way.
        let _ = client.close().await;
    }
    outcome
}

/// Sleeps until `deadline`, or forever without one (a `select!` arm that never fires).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
