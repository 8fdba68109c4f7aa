//! A receiver polling `GET /api/share/{id}/audio?since=N`, as the seed's client does.

use super::*;

/// What one poll found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Polled {
    /// 200 with this many chunks.
    Chunks(usize),
    /// 204.
    Nothing,
    /// 404: the share is gone.
    Gone(String),
    /// Anything else, or no answer.
    Failed(String),
}

/// A receiver polling the REST API, on its own connection (the server counts pollers
/// by connection).
pub(super) struct Poller {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Poller {
    pub(super) fn new(run: &AudioRun, ep: &Endpoints, id: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("poller: {e}"))?;
        Ok(Self {
            http,
            url: format!("{}/api/share/{id}/audio", ep.http_base),
            token: run.settings.token.clone(),
        })
    }

    pub(super) async fn get(&self, since: i64) -> Result<(u16, Vec<u8>), String> {
        let response = self
            .http
            .get(format!("{}?since={since}", self.url))
            .header(reqwest::header::AUTHORIZATION, &self.token)
            .send()
            .await
            .map_err(|e| format!("poll: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("poll body: {e}"))?;
        Ok((status, body.to_vec()))
    }

    /// The poll that proves the receiver can poll: before any audio, a 204.
    pub(super) async fn first_poll(&self) -> Result<(), String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.get(-1)).await {
            Ok(Ok((200 | 204, _))) => Ok(()),
            Ok(Ok((status, body))) => Err(format!(
                "first poll: HTTP {status}: {}",
                truncate(&String::from_utf8_lossy(&body), 300)
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("first poll timed out".into()),
        }
    }

    /// One poll after `since`: records its chunks and moves `since` past them.
    pub(super) async fn poll(&self, run: &AudioRun, rx: &mut RxState, since: &mut i64) -> Polled {
        let (status, body) = match self.get(*since).await {
            Ok(answer) => answer,
            Err(e) => return Polled::Failed(e),
        };
        let at = Instant::now();
        let measuring = run.rec.measuring();
        if measuring {
            run.polls.fetch_add(1, Relaxed);
            run.rec.frames.fetch_add(1, Relaxed);
        }
        match status {
            200 => {
                let Ok(chunks) = serde_json::from_slice::<Vec<PollChunk>>(&body) else {
                    run.rec.undecodable.fetch_add(1, Relaxed);
                    return Polled::Failed("a poll answer that is not a chunk array".into());
                };
                let a = &run.settings;
                let wire = body.len() / chunks.len().max(1);
                for c in &chunks {
                    let intact = c.sample_rate == a.sample_rate && c.channels == a.channels;
                    let expected = if intact {
                        run.poll_chunk_bytes
                    } else {
                        usize::MAX
                    };
                    let pcm = base64_decoded_len(&c.data);
                    run.on_chunk(rx, c.sequence_number, pcm, expected, wire, at);
                    *since = (*since).max(c.sequence_number);
                }
                Polled::Chunks(chunks.len())
            }
            204 => {
                if measuring {
                    run.empty_polls.fetch_add(1, Relaxed);
                }
                Polled::Nothing
            }
            404 => Polled::Gone(String::from_utf8_lossy(&body).into_owned()),
            other => Polled::Failed(format!(
                "poll: HTTP {other}: {}",
                truncate(&String::from_utf8_lossy(&body), 300)
            )),
        }
    }

    /// Polls every [`POLL_INTERVAL`] (at once again after a full page) until told to stop.
    pub(super) async fn run(
        self,
        run: &AudioRun,
        mut rx: RxState,
        mut stop: watch::Receiver<bool>,
    ) {
        // Pollers' phases spread over the interval, as independent clients would be.
        let offset = POLL_INTERVAL.mul_f64((rx.hint * 37 % 100) as f64 / 100.0);
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + offset, POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since = -1i64;
        let stopped = stop.changed();
        tokio::pin!(stopped);
        'run: loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = ticks.tick() => {}
            }
            loop {
                let polled = tokio::select! {
                    biased;
                    _ = &mut stopped => break 'run,
                    polled = self.poll(run, &mut rx, &mut since) => polled,
                };
                match polled {
                    Polled::Chunks(n) if n >= POLL_PAGE => continue,
                    Polled::Chunks(_) | Polled::Nothing => break,
                    Polled::Gone(why) => {
                        closed_early(run, || format!("poll: 404 {}", truncate(&why, 300)));
                        break 'run;
                    }
                    Polled::Failed(e) => {
                        run.rec.server_errors.fetch_add(1, Relaxed);
                        run.rec.note_error(|| e);
                        break;
                    }
                }
            }
        }
        run.receiver_finished(rx);
    }
}
