//! `ticks` and `sse`: N WebSocket followers or N SSE listeners of one playing session
//! for D seconds: inter-arrival jitter, lag behind `serverTime`, ticks per second per
//! client, missing `seq`.

use crate::fanout::SETTLE;
use crate::fleet::{self, Member, Transport};
use crate::leader::Leader;
use crate::progress::WindowBar;
use crate::recorder::Recorder;
use crate::target::Endpoints;
use crate::wire::{Track, CONNECT_TIMEOUT};
use crate::Settings;
use anyhow::bail;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(
    s: &Settings,
    ep: &Endpoints,
    rec: Arc<Recorder>,
    sse: bool,
) -> anyhow::Result<()> {
    let name = if sse { "sse" } else { "ticks" };
    let session: Arc<str> = format!("{}-{name}", s.session_base).into();
    let mut leader = Leader::join(&ep.ws_url, &session, rec.clone()).await?;
    leader.play().await?;
    let transport = if sse {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Transport::Sse {
            http,
            base: ep.http_base.as_str().into(),
        }
    } else {
        Transport::Ws {
            url: ep.ws_url.as_str().into(),
        }
    };
    let members = (0..s.n as usize)
        .map(|hint| Member {
            session: session.clone(),
            hint,
            joined: None,
        })
        .collect();
    let track = Track {
        ticks: true,
        latency: false,
    };
    let fleet = leader
        .while_reading(fleet::open(&rec, &transport, members, s.concurrency, track))
        .await?;
    if rec.connected.load(Relaxed) == 0 {
        bail!(
            "no {name} client could connect: {}",
            rec.first_error().unwrap_or_default()
        );
    }
    leader.while_reading(tokio::time::sleep(SETTLE)).await?;

    rec.begin_window();
    let bar = WindowBar::start(&rec, s.duration);
    leader.while_reading(tokio::time::sleep(s.duration)).await?;
    rec.end_window();
    drop(bar);

    fleet.stop(Duration::from_secs(3)).await;
    leader.close().await;
    Ok(())
}
