//! Opening many connections with bounded concurrency, and stopping them together.

use crate::listener;
use crate::progress;
use crate::recorder::Recorder;
use crate::wire::{self, Sink, Track, CONNECT_TIMEOUT};
use bandsync_client::protocol::Role;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How connections reach the server.
#[derive(Clone)]
pub enum Transport {
    /// WebSocket followers joining with `join_session`.
    Ws { url: Arc<str> },
    /// SSE listeners on `{base}/sse/{session}`.
    Sse {
        http: reqwest::Client,
        base: Arc<str>,
    },
}

/// One connection to open.
pub struct Member {
    pub session: Arc<str>,
    /// Spreads histogram recording over shards; the connection's number.
    pub hint: usize,
    /// Counted up once this connection has joined (followers per session).
    pub joined: Option<Arc<AtomicU64>>,
}

/// Running connections. Dropping it aborts them (that is what a timeout does).
pub struct Fleet {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

/// Opens every member, at most `concurrency` connecting at once, and returns when each
/// has joined or failed. Joined connections keep reading (answering pings) into `rec`.
pub async fn open(
    rec: &Arc<Recorder>,
    transport: &Transport,
    members: Vec<Member>,
    concurrency: usize,
    track: Track,
) -> Fleet {
    let (stop, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(concurrency));
    let bar = progress::counter(rec, members.len() as u64, "connecting");
    let mut tasks = JoinSet::new();
    for member in members {
        let permit = sem.clone().acquire_owned().await.expect("never closed");
        let (rec, transport, stop_rx, bar) =
            (rec.clone(), transport.clone(), stop_rx.clone(), bar.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let sink = Sink::new(rec.clone(), member.hint, track);
            let done = |rec: &Recorder| {
                rec.connected.fetch_add(1, Relaxed);
                let us = started.elapsed().as_micros() as u64;
                rec.join_latency.record(member.hint, us);
                if let Some(joined) = &member.joined {
                    joined.fetch_add(1, Relaxed);
                }
                bar.inc(1);
            };
            let fail = |rec: &Recorder, e: String| {
                rec.connect_failed.fetch_add(1, Relaxed);
                rec.note_error(|| e);
            };
            match transport {
                Transport::Ws { url } => {
                    let join = wire::join_text(&member.session, Role::Follower);
                    let result =
                        tokio::time::timeout(CONNECT_TIMEOUT, wire::connect_join(&url, &join))
                            .await;
                    drop(permit);
                    match result {
                        Ok(Ok(ws)) => {
                            done(&rec);
                            wire::read_loop(ws, sink, stop_rx).await;
                        }
                        Ok(Err(e)) => fail(&rec, e),
                        Err(_) => fail(
                            &rec,
                            format!("connect+join timed out after {CONNECT_TIMEOUT:?}"),
                        ),
                    }
                }
                Transport::Sse { http, base } => {
                    let url = format!("{base}/sse/{}", member.session);
                    let result =
                        tokio::time::timeout(CONNECT_TIMEOUT, listener::connect(&http, &url)).await;
                    drop(permit);
                    match result {
                        Ok(Ok(response)) => {
                            done(&rec);
                            listener::read_loop(response, sink, stop_rx).await;
                        }
                        Ok(Err(e)) => fail(&rec, e),
                        Err(_) => fail(
                            &rec,
                            format!("sse connect timed out after {CONNECT_TIMEOUT:?}"),
                        ),
                    }
                }
            }
        });
    }
    // Every permit back means every connect attempt has finished.
    let _all = sem.acquire_many(concurrency as u32).await;
    bar.finish_and_clear();
    Fleet { tasks, stop }
}

impl Fleet {
    /// Tells every connection to close and waits up to `grace` for them.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}
