//! `repo listen`: follow a repository stream, print each message, write each composition
//! to a WAV file.
//!
//! Files are 32-bit float WAV whatever the encoding: `json` and `f32` carry f32 samples, so
//! the file holds exactly what the server rendered; `i16` samples are written as
//! `v / 32767` (the server scales by 32767), exact as floats too.

use crate::output::emit;
use crate::repo::{params_text, trigger_text, DEFAULT_URL};
use crate::wav::{Pcm, WavSink};
use anyhow::Context as _;
use bandsync_client::args::parse_secs;
use bandsync_client::protocol::audio::SampleFormat;
use bandsync_client::protocol::repo::{AudioBufferData, Encoding, StreamMessage};
use bandsync_client::repo::{decode_channels, RepoStream, StreamOptions};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stream silent this long is taken as dead: the server sends a heartbeat every 30 s.
const SILENCE_LIMIT: Duration = Duration::from_secs(95);
/// Longest compositionId put in a file name (the server's are 16 hex digits).
const MAX_ID_CHARS: usize = 64;

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Repository: `name` or `owner/name`.
    pub repo_id: String,
    /// HTTP base URL of the server.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// How the samples travel: json (the default, arrays of numbers), f32 or i16 (base64).
    #[arg(long, value_parser = parse_encoding)]
    pub encoding: Option<Encoding>,
    /// Write each composition to DIR/<n>-<compositionId>.wav (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Stop after this many compositions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// `?clientId=` (1-64 characters of A-Z a-z 0-9 _ - .; the server makes one up without).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Give up (exit 1) when --count compositions have not come within SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    s.parse()
}

/// `<n>-<compositionId>.wav`, the id kept to `A-Z a-z 0-9 _ -` (it comes from the server).
pub fn wav_name(n: u64, composition_id: Option<&str>) -> String {
    let id: String = composition_id
        .unwrap_or("composition")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .take(MAX_ID_CHARS)
        .collect();
    let id = if id.is_empty() { "composition" } else { &id };
    format!("{n}-{id}.wav")
}

/// Writes the composition's two channels, interleaved, as a float WAV.
fn write_wav(path: &Path, data: &AudioBufferData) -> anyhow::Result<u64> {
    let rate = data.buffer.sample_rate;
    anyhow::ensure!(
        (1..=384_000).contains(&rate),
        "the server sent a sample rate of {rate} Hz"
    );
    let [left, right] = decode_channels(&data.buffer).context("reading the composition")?;
    let interleaved: Vec<f32> = left
        .iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect();
    let mut sink = WavSink::create(path, rate, 2, SampleFormat::F32)?;
    sink.write(&Pcm::F32(interleaved))?;
    sink.finish()
}

/// Prints one message; writes and counts a composition.
fn on_message(
    message: StreamMessage,
    wire_bytes: usize,
    args: &ListenArgs,
    compositions: &mut u64,
) -> anyhow::Result<()> {
    match message {
        StreamMessage::Connected { data, .. } => emit(format!(
            "connected repo={} clientId={}: {}",
            data.repo_id, data.client_id, data.message
        )),
        StreamMessage::Heartbeat { .. } => emit("heartbeat"),
        StreamMessage::Error { data, .. } => emit(format!("error {}: {}", data.code, data.message)),
        StreamMessage::AudioBuffer { data, .. } => {
            *compositions += 1;
            let n = *compositions;
            let b = &data.buffer;
            let why = data
                .trigger
                .as_ref()
                .map_or_else(|| "no trigger".to_owned(), trigger_text);
            let mut line = format!(
                "composition {n} repo={} id={} {why}\n  {}\n  {} frames {} Hz {} ch {} {} bytes",
                data.repo_id,
                data.composition_id.as_deref().unwrap_or("-"),
                params_text(&data.params),
                b.length,
                b.sample_rate,
                b.number_of_channels,
                b.encoding.unwrap_or(Encoding::Json).as_str(),
                wire_bytes
            );
            if let Some(dir) = &args.out {
                let path = dir.join(wav_name(n, data.composition_id.as_deref()));
                let frames = write_wav(&path, &data)
                    .with_context(|| format!("composition {n} to {}", path.display()))?;
                line.push_str(&format!(" -> {} ({frames} frames)", path.display()));
            }
            emit(line);
        }
    }
    Ok(())
}

async fn listen(args: &ListenArgs) -> anyhow::Result<u64> {
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = StreamOptions {
        client_id: args.client_id.clone(),
        encoding: args.encoding,
        ..StreamOptions::default()
    };
    let mut stream = tokio::time::timeout(
        crate::CONNECT_TIMEOUT,
        RepoStream::connect(&args.url, &args.repo_id, &options),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting: timed out after {:?}", crate::CONNECT_TIMEOUT))?
    .with_context(|| format!("listening to {}", args.repo_id))?;
    let mut compositions = 0;
    while args.count.is_none_or(|count| compositions < count) {
        let next = stream
            .next_message(SILENCE_LIMIT)
            .await
            .with_context(|| format!("reading {}", stream.url()))?;
        let Some(message) = next else {
            anyhow::bail!("the server ended the stream after {compositions} compositions");
        };
        on_message(message.message, message.wire_bytes, args, &mut compositions)?;
    }
    Ok(compositions)
}

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let timeout = async {
        match args.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = listen(&args) => {
            let n = result?;
            emit(format!("done: {n} compositions"));
            Ok(())
        }
        () = timeout => anyhow::bail!(
            "--timeout: {} compositions did not come within {:?}",
            args.count.unwrap_or(1),
            args.timeout.unwrap_or_default()
        ),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(wav_name(1, Some("0123abcd")), "1-0123abcd.wav");
        assert_eq!(wav_name(2, Some("../../etc/passwd")), "2-etcpasswd.wav");
        assert_eq!(wav_name(3, Some("///")), "3-composition.wav");
        assert_eq!(wav_name(4, None), "4-composition.wav");
        assert_eq!(wav_name(5, Some(&"a".repeat(500))).len(), 2 + 64 + 4);
    }
}
