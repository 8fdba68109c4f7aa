//! `fanout`: one leader, N followers in one session; the leader sends `set_tempo` R times
//! a second for D seconds, each tempo unique, and every follower's receive instant is
//! compared with the send instant (one process, one monotonic clock).

use crate::fleet::{self, Member, Transport};
use crate::leader::{Leader, TempoCounter};
use crate::progress::WindowBar;
use crate::recorder::Recorder;
use crate::target::Endpoints;
use crate::wire::Track;
use crate::Settings;
use anyhow::bail;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Quiet time after the joins (their `room_stats` bursts) before measuring.
pub const SETTLE: Duration = Duration::from_millis(300);
/// How long after the last send deliveries may still arrive before they count as lost.
pub const DRAIN: Duration = Duration::from_secs(2);

pub async fn run(s: &Settings, ep: &Endpoints, rec: Arc<Recorder>) -> anyhow::Result<()> {
    let session: Arc<str> = format!("{}-fanout", s.session_base).into();
    let mut leader = Leader::join(&ep.ws_url, &session, rec.clone()).await?;
    let followers = Arc::new(AtomicU64::new(0));
    let members = (0..s.n as usize)
        .map(|hint| Member {
            session: session.clone(),
            hint,
            joined: Some(followers.clone()),
        })
        .collect();
    let transport = Transport::Ws {
        url: ep.ws_url.as_str().into(),
    };
    let track = Track {
        ticks: false,
        latency: true,
    };
    let fleet = leader
        .while_reading(fleet::open(&rec, &transport, members, s.concurrency, track))
        .await?;
    if followers.load(Relaxed) == 0 {
        bail!(
            "no follower could join: {}",
            rec.first_error().unwrap_or_default()
        );
    }
    leader.while_reading(tokio::time::sleep(SETTLE)).await?;

    rec.begin_window();
    let bar = WindowBar::start(&rec, s.duration);
    let start = Instant::now();
    let counter: TempoCounter = Arc::new(AtomicU64::new(0));
    leader
        .drive_tempo(start, s.rate, start + s.duration, &counter, &followers)
        .await?;
    let all_in = || rec.deliveries.load(Relaxed) >= rec.expected.load(Relaxed);
    leader.idle_until(Instant::now() + DRAIN, all_in).await?;
    rec.end_window();
    drop(bar);

    fleet.stop(Duration::from_secs(3)).await;
    leader.close().await;
    Ok(())
}
