//! `share`: stream a WAV file into a Music Share session in real time.
//!
//! Chunk `k` is sent when the audio before it has played: its deadline is the start plus
//! the frames already sent divided by the sample rate, computed in whole nanoseconds from
//! the start each time, so rounding never accumulates and a late send (a slow request, a
//! 429) is caught up by the next ones instead of shifting everything after it.
//!
//! A refused chunk is never dropped: a 429 waits `Retry-After` and sends the same chunk
//! (same sequence number) again, and over the WebSocket a rate-limit notice repeats the
//! last frame (receivers drop the copy if the first one did arrive). Everything else the
//! server refuses ends the run with a message saying what to do. Metadata is
//! latest-value-wins, so a refused metadata post is simply superseded by the next one,
//! 500 ms later.

use crate::output::emit;
use crate::share_api::{parse_share_id, ShareApi};
use crate::uplink::{OutChunk, Sent, Uplink};
use crate::wav::WavSource;
use bandsync_client::protocol::audio::SampleFormat;
use bandsync_client::wall_clock_ms;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// How often the now-playing metadata is posted (the seed's receivers poll it this often;
/// the server allows 2 metadata requests per second per session).
const METADATA_EVERY: Duration = Duration::from_millis(500);
/// Largest decoded chunk the server takes.
const MAX_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShareTransport {
    /// POST /api/share/{id}/audio with base64 float32 (16-bit files are converted).
    Rest,
    /// Binary audio frames over /ws, in the file's own format.
    Ws,
}

#[derive(Debug, Clone, Args)]
pub struct ShareArgs {
    /// HTTP base URL of the server, e.g. http://127.0.0.1:3001
    #[arg(long)]
    pub url: String,
    /// Share session id: exactly 6 digits.
    #[arg(long, value_parser = parse_share_id)]
    pub session: String,
    /// WAV file to share: 16-bit PCM or 32-bit float, any sample rate, 1-32 channels.
    #[arg(long)]
    pub file: PathBuf,
    /// The Authorization header value, sent as given (e.g. "Bearer Token").
    #[arg(long, env = "BEARER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// How the audio travels.
    #[arg(long, value_enum, default_value_t = ShareTransport::Rest)]
    pub transport: ShareTransport,
    /// Title to announce (default: from the file name, "Artist - Title.wav" or "Title.wav").
    #[arg(long)]
    pub title: Option<String>,
    /// Artist to announce (default: from the file name, else none).
    #[arg(long)]
    pub artist: Option<String>,
    /// Audio per chunk, in ms. The server takes at most 10 audio requests per second per
    /// session: 100 ms chunks would use all of them and leave no room to catch up after a
    /// slow request or a retry, so the default is 200 ms (5 requests a second).
    #[arg(long, value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub chunk_ms: u64,
    /// Start over at the end of the file, until Ctrl-C.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// After the last chunk, keep the share open this long before stopping it: stopping
    /// clears the server's buffer, so this is what lets polling receivers fetch the tail.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_linger)]
    pub linger: Duration,
}

fn parse_linger(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} is not a number of seconds >= 0"))
}

/// Frames in one chunk of `chunk_ms` at `sample_rate`: rounded, at least 1.
pub fn frames_per_chunk(sample_rate: u32, chunk_ms: u64) -> usize {
    let frames = (u64::from(sample_rate) * chunk_ms + 500) / 1000;
    usize::try_from(frames.max(1)).unwrap_or(usize::MAX)
}

/// How long `frames` frames play at `sample_rate`, to the nanosecond (rounded down).
pub fn frames_duration(frames: u64, sample_rate: u32) -> Duration {
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(sample_rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The real-time schedule: when the next chunk is due, from the frames sent so far.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    sample_rate: u32,
    frames: u64,
}

impl Pacer {
    pub fn new(start: Instant, sample_rate: u32) -> Self {
        Self {
            start,
            sample_rate,
            frames: 0,
        }
    }

    /// When the chunk after everything sent so far is due (also: when the audio sent so
    /// far has played out).
    pub fn due(&self) -> Instant {
        self.start + frames_duration(self.frames, self.sample_rate)
    }

    pub fn advance(&mut self, frames: u64) {
        self.frames += frames;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// Title and artist: the flags, else `Artist - Title.wav`, else the file stem as title.
pub fn title_and_artist(
    file: &Path,
    title: Option<&str>,
    artist: Option<&str>,
) -> (String, Option<String>) {
    let stem = file.file_stem().map_or_else(
        || "untitled".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let (from_artist, from_title) = match stem.split_once(" - ") {
        Some((a, t)) if !a.trim().is_empty() && !t.trim().is_empty() => {
            (Some(a.trim().to_owned()), t.trim().to_owned())
        }
        _ => (None, stem.clone()),
    };
    (
        title.map_or(from_title, str::to_owned),
        artist.map(str::to_owned).or(from_artist),
    )
}

/// The seed's metadata object.
pub fn metadata_json(
    title: &str,
    artist: Option<&str>,
    elapsed: f64,
    total: f64,
    now_ms: f64,
) -> Value {
    json!({
        "title": title,
        "artist": artist.unwrap_or(""),
        "lyrics": null,
        "hasSyncedLyrics": false,
        "elapsedSeconds": (elapsed * 1000.0).round() / 1000.0,
        "totalSeconds": (total * 1000.0).round() / 1000.0,
        "thumbnailData": null,
        // Whole ms, as the seed's clients send and parse it.
        "timestamp": now_ms.round() as i64,
    })
}

/// What a run sent, for the closing line.
#[derive(Debug, Default)]
struct Totals {
    chunks: u64,
    retries: u64,
    metadata_skipped: u64,
}

/// The file being shared and what is announced about it.
struct Track {
    source: WavSource,
    title: String,
    artist: Option<String>,
    chunk_frames: usize,
    repeat: bool,
}

impl Track {
    /// The metadata after `sent` frames: the position wraps with `--loop` and stays at the
    /// end without it.
    fn metadata(&self, sent: u64) -> Value {
        let total = self.source.total_frames;
        let position = if self.repeat {
            sent % total
        } else {
            sent.min(total)
        };
        let elapsed = position as f64 / f64::from(self.source.sample_rate);
        let (title, artist) = (&self.title, self.artist.as_deref());
        metadata_json(
            title,
            artist,
            elapsed,
            self.source.duration_secs(),
            wall_clock_ms(),
        )
    }
}

/// Refuses a `--chunk-ms` whose chunks the server would refuse (over 1 MiB decoded).
fn check_chunk_size(args: &ShareArgs, source: &WavSource, frames: usize) -> anyhow::Result<()> {
    let wire_format = match args.transport {
        ShareTransport::Rest => SampleFormat::F32,
        ShareTransport::Ws => source.format,
    };
    let chunk_bytes = frames * usize::from(source.channels) * wire_format.bytes_per_sample();
    if chunk_bytes > MAX_CHUNK_BYTES {
        let max_ms = args.chunk_ms * MAX_CHUNK_BYTES as u64 / chunk_bytes as u64;
        anyhow::bail!(
            "--chunk-ms {} makes {chunk_bytes}-byte chunks of this file; the server takes at \
             most {MAX_CHUNK_BYTES}: use --chunk-ms {max_ms} or less",
            args.chunk_ms
        );
    }
    Ok(())
}

pub async fn run(args: ShareArgs) -> anyhow::Result<()> {
    let source = WavSource::open(&args.file)?;
    let chunk_frames = frames_per_chunk(source.sample_rate, args.chunk_ms);
    check_chunk_size(&args, &source, chunk_frames)?;
    let (title, artist) =
        title_and_artist(&args.file, args.title.as_deref(), args.artist.as_deref());
    emit(format!(
        "sharing {}: {} Hz, {} ch, {}, {:.3} s as {title:?}{} to session {} over {}, {} ms chunks",
        args.file.display(),
        source.sample_rate,
        source.channels,
        source.format.as_str(),
        source.duration_secs(),
        artist
            .as_deref()
            .map(|a| format!(" by {a:?}"))
            .unwrap_or_default(),
        args.session,
        match args.transport {
            ShareTransport::Rest => "rest",
            ShareTransport::Ws => "ws",
        },
        args.chunk_ms,
    ));
    let mut track = Track {
        source,
        title,
        artist,
        chunk_frames,
        repeat: args.repeat,
    };

    let api = ShareApi::new(&args.url, &args.token, &args.session)?;
    let mut uplink = match args.transport {
        ShareTransport::Rest => Uplink::start_rest(&api).await?,
        ShareTransport::Ws => Uplink::start_ws(&api, &args.url, &args.token).await?,
    };
    emit(format!("share started in session {}", args.session));

    let mut totals = Totals::default();
    let streamed = stream(&mut track, &api, &mut uplink, args.linger, &mut totals).await;
    let interrupted = match streamed {
        Ok(interrupted) => interrupted,
        Err(e) => {
            // Best effort: free the session id, then report what went wrong.
            let _ = uplink.stop(&api).await;
            return Err(e);
        }
    };
    if interrupted {
        emit("interrupted; stopping the share");
    }
    let stopped = uplink.stop(&api).await?;
    emit(format!(
        "share stopped: {stopped}; sent {} chunks ({} retried), {} metadata updates skipped",
        totals.chunks, totals.retries, totals.metadata_skipped
    ));
    Ok(())
}

/// Sleeps until `at`; never without it.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn note_retry(seq: i64, wait: Duration, totals: &mut Totals) {
    emit(format!(
        "chunk #{seq} rate limited; sending it again in {:.3} s",
        wait.as_secs_f64()
    ));
    totals.retries += 1;
}

/// Sends the track in real time, with metadata every [`METADATA_EVERY`], until its end
/// plus `linger` (forever with `--loop`) or Ctrl-C; `Ok(true)` when interrupted.
async fn stream(
    track: &mut Track,
    api: &ShareApi,
    uplink: &mut Uplink,
    linger: Duration,
    totals: &mut Totals,
) -> anyhow::Result<bool> {
    let (rate, channels) = (track.source.sample_rate, track.source.channels);
    let start = Instant::now();
    let mut pacer = Pacer::new(start, rate);
    let mut metadata = tokio::time::interval(METADATA_EVERY);
    metadata.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut next_seq: i64 = 0;
    // A chunk read but not yet accepted (a 429 is retried with this very chunk), or a
    // WebSocket frame to repeat.
    let mut pending: Option<OutChunk> = None;
    let mut send_at = start;
    // Set once the whole file is sent (never with --loop): when to stop.
    let mut stop_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(true),
            // Not while a chunk waits to be sent again: none is ever dropped.
            () = sleep_until_some(stop_at), if pending.is_none() => return Ok(false),
            _ = metadata.tick() => {
                if !uplink.post_metadata(api, &track.metadata(pacer.frames())).await? {
                    totals.metadata_skipped += 1;
                }
            }
            () = tokio::time::sleep_until(send_at), if stop_at.is_none() || pending.is_some() => {
                let chunk = match pending.take() {
                    Some(chunk) => chunk,
                    None => match track.source.read(track.chunk_frames)? {
                        Some(pcm) => {
                            next_seq += 1;
                            OutChunk::new(next_seq - 1, pcm, channels)
                        }
                        None if track.repeat => {
                            track.source.rewind()?;
                            continue;
                        }
                        None => {
                            // From when the audio has played out, or from now if retries
                            // made the last chunk late.
                            stop_at = Some(pacer.due().max(Instant::now()) + linger);
                            continue;
                        }
                    },
                };
                match uplink.send(api, &chunk, rate, channels).await? {
                    Sent::Accepted => {
                        if !chunk.resend {
                            pacer.advance(chunk.frames);
                            totals.chunks += 1;
                        }
                        send_at = pacer.due();
                        // A repeat after the end: receivers need the linger again.
                        if let Some(at) = &mut stop_at {
                            *at = (*at).max(Instant::now() + linger);
                        }
                    }
                    Sent::RetryAfter(wait) => {
                        note_retry(chunk.seq, wait, totals);
                        send_at = Instant::now() + wait;
                        pending = Some(chunk);
                    }
                }
            }
            // A WebSocket frame refused for the session's rate: send the last one again
            // (over REST the 429 answers the request itself, above).
            retry = uplink.watch() => {
                if let (Some(wait), Some(last)) = (retry?, uplink.last_sent()) {
                    note_retry(last.seq, wait, totals);
                    pending = Some(last);
                    send_at = Instant::now() + wait;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_to_whole_frames() {
        assert_eq!(frames_per_chunk(44_100, 200), 8820);
        assert_eq!(frames_per_chunk(8_000, 100), 800);
        assert_eq!(frames_per_chunk(11_025, 10), 110); // 110.25 rounds down
        assert_eq!(frames_per_chunk(22_050, 10), 221); // 220.5 rounds up
        assert_eq!(frames_per_chunk(1, 10), 1);
    }

    #[test]
    fn deadlines_do_not_drift() {
        let start = Instant::now();
        // 11025 Hz, 10 ms: 110-frame chunks are 9.977 ms each; after 10000 of them the
        // deadline is exactly 1100000 frames in, not 10000 rounded chunk lengths.
        let mut pacer = Pacer::new(start, 11_025);
        for _ in 0..10_000 {
            pacer.advance(frames_per_chunk(11_025, 10) as u64);
        }
        assert_eq!(pacer.frames(), 1_100_000);
        let expected = Duration::from_nanos(1_100_000u64 * 1_000_000_000 / 11_025);
        assert_eq!(pacer.due() - start, expected);
        let mut pacer = Pacer::new(start, 44_100);
        pacer.advance(44_100 * 3600);
        assert_eq!(pacer.due() - start, Duration::from_secs(3600));
    }

    #[test]
    fn a_late_chunk_is_caught_up_not_shifted() {
        // Each chunk goes at max(now, due), as the send loop does; chunk 1's request takes
        // 450 ms.
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 1000);
        let mut now = start;
        let mut sent_at = Vec::new();
        for k in 0..6u64 {
            now = now.max(pacer.due());
            sent_at.push((now - start).as_millis());
            if k == 1 {
                now += Duration::from_millis(450);
            }
            pacer.advance(200);
        }
        // Chunks 2 and 3 go at once after the stall; 4 and 5 are back on the grid.
        assert_eq!(sent_at, vec![0, 200, 650, 650, 800, 1000]);
    }

    #[test]
    fn titles_come_from_flags_or_the_file_name() {
        let p = Path::new("/music/Nina Simone - Feeling Good.wav");
        assert_eq!(
            title_and_artist(p, None, None),
            ("Feeling Good".into(), Some("Nina Simone".into()))
        );
        assert_eq!(
            title_and_artist(p, Some("T"), Some("A")),
            ("T".into(), Some("A".into()))
        );
        assert_eq!(
            title_and_artist(Path::new("song.wav"), None, None),
            ("song".into(), None)
        );
    }

    #[test]
    fn metadata_has_the_seed_fields() {
        let v = metadata_json("Song", None, 1.23456, 180.5, 1_732_190_000_123.6);
        assert_eq!(v["title"], "Song");
        assert_eq!(v["artist"], "");
        assert_eq!(v["elapsedSeconds"], 1.235);
        assert_eq!(v["totalSeconds"], 180.5);
        assert_eq!(v["timestamp"], 1_732_190_000_124i64);
        assert_eq!(v["hasSyncedLyrics"], false);
    }

    #[test]
    fn linger_accepts_zero() {
        assert_eq!(parse_linger("0"), Ok(Duration::ZERO));
        assert_eq!(parse_linger("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_linger("-1").is_err());
    }
}
