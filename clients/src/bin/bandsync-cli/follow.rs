//! `follow`: a WebSocket follower that measures what it receives.
//!
//! It heartbeats once a second, so its clock offset (and thus tick lag) is measured, not
//! assumed. The heartbeat replies are matched by their echoed `t0`, not awaited: the main
//! loop keeps reading ticks the whole time, so no arrival time is delayed by a request.

use crate::monitor::Monitor;
use crate::{connect_ws, until_stopped, Common, Watch};
use anyhow::Context as _;
use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role, ServerFrame};
use bandsync_client::{wall_clock_ms, ClockEstimator, Incoming};
use clap::Args;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// How often to send a `heartbeat`.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

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
}

pub async fn run(args: FollowArgs) -> anyhow::Result<()> {
    let start = Instant::now();
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
    let mut clock = ClockEstimator::default();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stopped = until_stopped(args.common.duration);
    tokio::pin!(stopped);

    // The snapshot was consumed by `join`; frames that arrived with it are in the buffer.
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            () = &mut stopped => break Ok(()),
            _ = heartbeat.tick() => {
                let event = ClientEvent::Heartbeat(Heartbeat { t0: wall_clock_ms() });
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
                            }
                        }
                        continue;
                    }
                    monitor.on_frame(&frame, received_at, wall_ms, clock.offset(), None);
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
