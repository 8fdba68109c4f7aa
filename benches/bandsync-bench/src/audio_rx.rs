//! The receivers of the `audio` scenario, R per share session: WebSocket members reading
//! binary audio frames, SSE listeners reading `audio_chunk` events, or pollers of
//! `GET /api/share/{id}/audio?since=N` every 100 ms (the seed's client). Each keeps the
//! set of sequences it got and records each new one into the run (see `audio.rs`).
//!
//! Like the other receivers of the bench they decode as little as they can: a binary
//! frame's 28-byte header, or a borrowed view of the JSON that skips the base64 samples
//! (their length is all that is checked).

use crate::audio::{AudioRun, RxState};
use crate::cli::RxTransport;
use crate::listener;
use crate::progress;
use crate::target::Endpoints;
use crate::wire::{self, Lite, Ws, CONNECT_TIMEOUT};
use crate::Settings;
use bandsync_bench::bench_stats::base64_decoded_len;
use bandsync_client::protocol::audio::decode_audio_frame;
use futures_util::StreamExt;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

mod poll;

use poll::*;

/// How often a poller asks (the seed: "Polling Frequency: Every 100ms").
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The most chunks one poll returns (the seed's "up to 10"): a full page means the
/// poller is behind, and it asks again at once.
const POLL_PAGE: usize = 10;

/// An SSE event, as far as the bench reads it: its type, and `audio_chunk` fields.
#[derive(Debug, Deserialize)]
pub struct SseLite<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: SseAudio<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SseAudio<'a> {
    pub sequence_number: Option<i64>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u16>,
    #[serde(borrow)]
    pub format: Option<Text<'a>>,
    /// Base64 samples: borrowed (base64 has nothing to unescape), never decoded.
    #[serde(borrow)]
    pub data: Option<Text<'a>>,
}

/// A string borrowed from the input when it has no escapes. serde borrows a `Cow` field
/// only when it is the field's whole type, not inside an `Option`: this newtype is.
#[derive(Debug, PartialEq, Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// One chunk of a poll answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollChunk<'a> {
    pub sequence_number: i64,
    pub sample_rate: u32,
    pub channels: u16,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

/// Running receivers. Dropping it aborts them.
pub struct Receivers {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Receivers {
    /// Tells every receiver to stop (each hands in what it saw) and waits up to `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// Opens R receivers per session, at most `--connect-concurrency` at once; returns when
/// each has joined (WebSocket: `snapshot`; SSE: the stream is open; poll: a first poll was
/// answered) or failed.
pub async fn open_all(
    run: &Arc<AudioRun>,
    ep: &Endpoints,
    s: &Settings,
) -> anyhow::Result<Receivers> {
    let (stop, stop_rx) = watch::channel(false);
    let receivers = s.audio.receivers as usize;
    let total = run.ids.len() * receivers;
    let sem = Arc::new(Semaphore::new(s.concurrency));
    let bar = progress::counter(&run.rec, total as u64, "receivers");
    let sse_http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?;
    let mut tasks = JoinSet::new();
    for hint in 0..total {
        let session = hint / receivers;
        let permit = sem.clone().acquire_owned().await.expect("never closed");
        let (run, ep, stop_rx, bar, sse_http) = (
            run.clone(),
            ep.clone(),
            stop_rx.clone(),
            bar.clone(),
            sse_http.clone(),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            let rx = run.rx_state(session, hint);
            let joined = |run: &AudioRun| {
                let rec = &run.rec;
                rec.connected.fetch_add(1, Relaxed);
                rec.join_latency
                    .record(hint, started.elapsed().as_micros() as u64);
                run.joined[session].fetch_add(1, Relaxed);
                bar.inc(1);
            };
            let failed = |run: &AudioRun, e: String| {
                run.rec.connect_failed.fetch_add(1, Relaxed);
                run.rec.note_error(|| e);
            };
            let id = &run.ids[session];
            match run.settings.transport {
                RxTransport::Ws => {
                    let join = wire::receiver_join_text(id, &run.settings.token);
                    // Audio frames are ~35 KB: a read buffer that takes one in a few reads.
                    let config = WebSocketConfig::default().read_buffer_size(64 * 1024);
                    let result = tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        wire::connect_join_with(&ep.ws_url, &join, config),
                    )
                    .await;
                    drop(permit);
                    match result {
                        Ok(Ok(ws)) => {
                            joined(&run);
                            ws_loop(ws, &run, rx, stop_rx).await;
                        }
                        Ok(Err(e)) => failed(&run, e),
                        Err(_) => failed(&run, "receiver connect+join timed out".into()),
                    }
                }
                RxTransport::Sse => {
                    // The share token authorizes the listener for the audio events.
                    let token: String =
                        form_urlencoded::byte_serialize(run.settings.token.as_bytes()).collect();
                    let url = format!("{}/sse/{id}?shareToken={token}", ep.http_base);
                    let result =
                        tokio::time::timeout(CONNECT_TIMEOUT, listener::connect(&sse_http, &url))
                            .await;
                    drop(permit);
                    match result {
                        Ok(Ok(response)) => {
                            joined(&run);
                            sse_loop(response, &run, rx, stop_rx).await;
                        }
                        Ok(Err(e)) => failed(&run, e),
                        Err(_) => failed(&run, "sse connect timed out".into()),
                    }
                }
                RxTransport::Poll => {
                    let poller = Poller::new(&run, &ep, id);
                    let first = match &poller {
                        Ok(p) => p.first_poll().await,
                        Err(e) => Err(e.clone()),
                    };
                    drop(permit);
                    match (poller, first) {
                        (Ok(poller), Ok(())) => {
                            joined(&run);
                            poller.run(&run, rx, stop_rx).await;
                        }
                        (_, Err(e)) => failed(&run, e),
                        (Err(e), _) => failed(&run, e),
                    }
                }
            }
        });
    }
    // Every permit back means every attempt has finished.
    let _all = sem.acquire_many(s.concurrency as u32).await;
    bar.finish_and_clear();
    Ok(Receivers { tasks, stop })
}

fn closed_early(run: &AudioRun, why: impl FnOnce() -> String) {
    run.rec.closed_early.fetch_add(1, Relaxed);
    run.rec.note_error(why);
}

/// Counts a non-audio JSON frame or event; errors count as server errors.
fn other_frame(run: &AudioRun, text: &str) {
    match serde_json::from_str::<Lite>(text) {
        Ok(frame) if frame.kind == "error" || frame.kind == "rate_limit_exceeded" => {
            run.rec.server_errors.fetch_add(1, Relaxed);
            run.rec
                .note_error(|| format!("receiver got {}", truncate(text, 300)));
        }
        Ok(_) => {}
        Err(_) => {
            run.rec.undecodable.fetch_add(1, Relaxed);
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// A WebSocket member: binary frames are audio, text frames everything else.
async fn ws_loop(mut ws: Ws, run: &AudioRun, mut rx: RxState, mut stop: watch::Receiver<bool>) {
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            biased;
            msg = ws.next() => msg,
            _ = &mut stopped => break,
        };
        let at = Instant::now();
        if run.rec.measuring() {
            run.rec.frames.fetch_add(1, Relaxed);
        }
        match msg {
            Some(Ok(Message::Binary(bytes))) => match decode_audio_frame(&bytes) {
                Ok((header, samples)) => {
                    let a = &run.settings;
                    let intact = header.sample_rate == a.sample_rate
                        && header.channels == a.channels
                        && header.format == run.format;
                    let expected = if intact { run.chunk_bytes } else { usize::MAX };
                    run.on_chunk(
                        &mut rx,
                        header.sequence,
                        samples.len(),
                        expected,
                        bytes.len(),
                        at,
                    );
                }
                Err(_) => {
                    run.rec.undecodable.fetch_add(1, Relaxed);
                }
            },
            Some(Ok(Message::Text(text))) => other_frame(run, text.as_str()),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                closed_early(run, || format!("server closed a receiver (code {code:?})"));
                run.receiver_finished(rx);
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                closed_early(run, || format!("receiver socket error: {e}"));
                run.receiver_finished(rx);
                return;
            }
            None => {
                closed_early(run, || "receiver connection ended".into());
                run.receiver_finished(rx);
                return;
            }
        }
    }
    run.receiver_finished(rx);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Handles one SSE event's data.
fn on_sse_event(run: &AudioRun, rx: &mut RxState, data: &str, at: Instant) {
    if run.rec.measuring() {
        run.rec.frames.fetch_add(1, Relaxed);
    }
    let Ok(event) = serde_json::from_str::<SseLite>(data) else {
        run.rec.undecodable.fetch_add(1, Relaxed);
        return;
    };
    if event.kind != "audio_chunk" {
        return other_frame(run, data);
    }
    let d = &event.data;
    let (Some(seq), Some(samples)) = (d.sequence_number, d.data.as_deref()) else {
        run.rec.undecodable.fetch_add(1, Relaxed);
        return;
    };
    let a = &run.settings;
    let intact = d.sample_rate == Some(a.sample_rate)
        && d.channels == Some(a.channels)
        && d.format.as_deref() == Some(run.format.as_str());
    let expected = if intact { run.chunk_bytes } else { usize::MAX };
    run.on_chunk(
        rx,
        seq,
        base64_decoded_len(samples),
        expected,
        data.len(),
        at,
    );
}

/// An SSE listener of `/sse/{id}`.
async fn sse_loop(
    response: reqwest::Response,
    run: &AudioRun,
    mut rx: RxState,
    stop: watch::Receiver<bool>,
) {
    let ended = listener::stream_events(response, stop, |data, at, _| {
        on_sse_event(run, &mut rx, data, at)
    })
    .await;
    if let Some(why) = ended {
        closed_early(run, || why);
    }
    run.receiver_finished(rx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_audio_events_are_read_without_decoding_the_samples() {
        let event = r#"{"type":"audio_chunk","timestamp":1732190000123.456,"data":{"sessionId":"123456","sequenceNumber":42,"sampleRate":44100,"channels":2,"format":"f32","timestamp":1732190000100,"data":"AAAAAAAAgD8="}}"#;
        let e: SseLite = serde_json::from_str(event).unwrap();
        assert_eq!(e.kind, "audio_chunk");
        assert_eq!(e.data.sequence_number, Some(42));
        assert_eq!(e.data.sample_rate, Some(44_100));
        assert_eq!(e.data.channels, Some(2));
        assert_eq!(e.data.format.as_deref(), Some("f32"));
        let samples = e.data.data.unwrap();
        assert!(matches!(samples.0, Cow::Borrowed(_)), "not copied");
        assert_eq!(base64_decoded_len(&samples), 8);

        // Other events pass through the same view.
        let meta = r#"{"type":"share_metadata","timestamp":1,"data":{"sessionId":"123456","metadata":{"title":"x","data":{"nested":true}}}}"#;
        let e: SseLite = serde_json::from_str(meta).unwrap();
        assert_eq!(e.kind, "share_metadata");
        assert_eq!(e.data.data, None);
        let stats =
            r#"{"type":"room_stats","timestamp":1,"data":{"sessionId":"123456","memberCount":3}}"#;
        assert_eq!(
            serde_json::from_str::<SseLite>(stats).unwrap().kind,
            "room_stats"
        );
    }

    #[test]
    fn poll_answers_are_chunk_arrays() {
        let body = r#"[{"data":"AAAAAA==","sampleRate":44100,"channels":2,"timestamp":1732190000123,"sequenceNumber":43},
            {"data":"AAAAAAAAAAA=","sampleRate":44100,"channels":2,"timestamp":1.5,"sequenceNumber":44}]"#;
        let chunks: Vec<PollChunk> = serde_json::from_str(body).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].sequence_number, 43);
        assert!(matches!(chunks[0].data, Cow::Borrowed(_)), "not copied");
        assert_eq!(base64_decoded_len(&chunks[0].data), 4);
        assert_eq!(chunks[1].sequence_number, 44);
        assert_eq!(base64_decoded_len(&chunks[1].data), 8);
        assert!(serde_json::from_str::<Vec<PollChunk>>(r#"{"error":"x"}"#).is_err());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 10), "hi");
    }
}
