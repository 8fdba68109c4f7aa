//! `repo`: repository streams. `repo listen` follows `GET /stream/{repoId}` and writes each
//! composition to a WAV file; `repo test` asks the server to render and broadcast one
//! (`POST /stream/{repoId}/test`).

use crate::output::emit;
use crate::repo_listen;
use bandsync_client::protocol::repo::{
    InstrumentType, MusicalParams, Pattern, TestRequest, Trigger,
};
use bandsync_client::repo::{http_client, post_test, TestAnswer};
use clap::{Args, Subcommand};

/// Where a local bandsync server listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3001";

#[derive(Debug, Clone, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RepoCommand {
    /// Listen to a repository's stream: one line per message, each composition written to
    /// DIR/<n>-<compositionId>.wav (32-bit float, stereo) with --out.
    Listen(repo_listen::ListenArgs),
    /// Render a test composition for a repository and broadcast it to its listeners; print
    /// what was played. Exits 1 with the server's code (INVALID_PARAMS, RENDER_BUSY, ...)
    /// when it refuses.
    Test(TestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Repository: `name` or `owner/name`.
    pub repo_id: String,
    /// HTTP base URL of the server.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Beats per minute (the server takes 40 to 240).
    #[arg(long, allow_negative_numbers = true)]
    pub tempo: Option<f64>,
    /// Seconds of audio (the server takes 0.25 to 20).
    #[arg(long, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// synth, fm, am, pluck, membrane, metal, noise or pad (Tone.js class names too).
    #[arg(long, value_parser = parse_instrument)]
    pub instrument: Option<InstrumentType>,
    /// Note names, comma-separated: C4,E4,G4.
    #[arg(long, value_delimiter = ',')]
    pub scale: Option<Vec<String>>,
    /// Share of steps that sound, 0 to 1.
    #[arg(long, allow_negative_numbers = true)]
    pub density: Option<f64>,
    /// arpeggio, ascending, descending, random or chord.
    #[arg(long, value_parser = parse_pattern)]
    pub pattern: Option<Pattern>,
    /// Seed of the random parts (which steps sound, random notes).
    #[arg(long)]
    pub seed: Option<u32>,
    /// Print the server's answer as one JSON object instead.
    #[arg(long)]
    pub json: bool,
}

fn parse_instrument(s: &str) -> Result<InstrumentType, String> {
    s.parse()
}

fn parse_pattern(s: &str) -> Result<Pattern, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
        "pattern must be one of arpeggio, ascending, descending, random, chord".to_owned()
    })
}

impl TestArgs {
    pub fn request(&self) -> TestRequest {
        TestRequest {
            tempo: self.tempo,
            duration: self.duration,
            instrument_type: self.instrument,
            scale: self.scale.clone(),
            density: self.density,
            pattern: self.pattern,
            seed: self.seed,
        }
    }
}

/// `tempo=120 scale=C4,E4,G4 instrument=synth duration=5 density=0.5 pattern=arpeggio seed=0`.
pub fn params_text(p: &MusicalParams) -> String {
    format!(
        "tempo={} scale={} instrument={} duration={} density={} pattern={} seed={}",
        p.tempo,
        p.scale.join(","),
        p.instrument_type,
        p.duration,
        p.density,
        p.pattern.as_str(),
        p.seed
    )
}

/// `push (opened) by octocat: 3 commits to main (+120 -4)`, from what the server sent.
pub fn trigger_text(t: &Trigger) -> String {
    let mut out = t.event.clone().unwrap_or_else(|| t.kind.clone());
    if let Some(action) = &t.action {
        out.push_str(&format!(" ({action})"));
    }
    if let Some(sender) = &t.sender {
        out.push_str(&format!(" by {sender}"));
    }
    out.push_str(": ");
    out.push_str(&t.summary);
    out
}

fn answer_text(a: &TestAnswer) -> String {
    format!(
        "played {} compositionId={} duration={}s samples={} sampleRate={} channels={} renderTimeMs={:.1} listenersNotified={} sharedRender={}\n  {}",
        a.repo_id,
        a.composition_id,
        a.duration,
        a.samples,
        a.sample_rate,
        a.number_of_channels,
        a.render_time_ms,
        a.listeners_notified,
        a.shared_render,
        params_text(&a.params)
    )
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let http = http_client()?;
    let answer = post_test(&http, &args.url, &args.repo_id, &args.request()).await?;
    if args.json {
        emit(serde_json::json!({
            "repoId": answer.repo_id,
            "compositionId": answer.composition_id,
            "params": answer.params,
            "duration": answer.duration,
            "samples": answer.samples,
            "sampleRate": answer.sample_rate,
            "numberOfChannels": answer.number_of_channels,
            "renderTimeMs": answer.render_time_ms,
            "listenersNotified": answer.listeners_notified,
            "sharedRender": answer.shared_render,
        }));
    } else {
        emit(answer_text(&answer));
    }
    Ok(())
}

pub async fn run(args: RepoArgs) -> anyhow::Result<()> {
    match args.command {
        RepoCommand::Listen(args) => repo_listen::run(args).await,
        RepoCommand::Test(args) => test(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_say_what_was_played_and_why() {
        let trigger = Trigger {
            kind: "webhook".into(),
            event: Some("push".into()),
            action: None,
            delivery: Some("d-1".into()),
            sender: Some("octocat".into()),
            summary: "3 commits to main (+120 -4)".into(),
        };
        assert_eq!(
            trigger_text(&trigger),
            "push by octocat: 3 commits to main (+120 -4)"
        );
        assert_eq!(
            params_text(&MusicalParams::default()),
            "tempo=120 scale=C4,E4,G4 instrument=synth duration=5 density=0.5 pattern=arpeggio seed=0"
        );
        assert_eq!(parse_pattern("Chord"), Ok(Pattern::Chord));
        assert!(parse_pattern("zigzag").is_err());
    }
}
