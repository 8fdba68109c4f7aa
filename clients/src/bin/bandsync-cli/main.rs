//! `bandsync-cli`: lead, follow or listen to a bandsync session from a terminal, or share
//! and receive music through the Music Share API; listen to a repository stream.
//!
//! Exit codes: 0 when the run ended as asked (`--duration` elapsed, `quit`, Ctrl-C),
//! 1 on a connection or protocol error (message on stderr), 2 on bad arguments (clap).

mod bars;
mod chunk;
mod click;
mod follow;
mod lead;
mod listen;
mod mint;
mod monitor;
mod output;
mod playback;
mod receive;
mod reception;
mod repo;
mod repo_listen;
mod share;
mod share_api;
mod share_ws;
mod uplink;
mod wav;

use anyhow::Context as _;
use bandsync_client::args::parse_secs;
use bandsync_client::WsClient;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// How long connecting (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "bandsync-cli",
    version,
    about = "Lead, follow or listen to a bandsync session; share or receive music"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join as leader, set the tempo, then take commands from stdin
    /// (tempo N, play, play BEAT, pause, seek BEAT, msg TEXT, sync, help, quit).
    Lead(lead::LeadArgs),
    /// Join as follower over WebSocket; print events, the clock offset and tick statistics.
    Follow(follow::FollowArgs),
    /// Listen over Server-Sent Events; print events and tick statistics.
    Listen(listen::ListenArgs),
    /// Stream a WAV file into a Music Share session in real time (REST or WebSocket),
    /// with now-playing metadata; stop the share at the end or on Ctrl-C.
    Share(share::ShareArgs),
    /// Follow a Music Share session (poll, WebSocket or SSE): record it to a WAV file,
    /// play it, report lost chunks and latency.
    Receive(receive::ReceiveArgs),
    /// Print a session token for a server in the authenticated mode (JWT_SECRET or
    /// JWT_PUBLIC_KEY), e.g. for testing: `mint-token --secret S --session band --role leader`.
    MintToken(mint::MintArgs),
    /// Repository streams: `repo listen <repoId>` (compositions to WAV files),
    /// `repo test <repoId>` (render and broadcast a test composition).
    Repo(repo::RepoArgs),
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Session id (1-128 characters of A-Z a-z 0-9 . _ - /).
    #[arg(long)]
    pub session: String,
    /// Stop after this many seconds (fractions allowed); without it, run until Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Session token for a server in the authenticated mode (see `mint-token`).
    #[arg(long, env = "BANDSYNC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Common {
    pub fn credentials(&self) -> bandsync_client::Credentials {
        bandsync_client::Credentials {
            token: self.token.clone(),
            share_token: None,
        }
    }
}

/// Options of the subcommands that watch ticks.
#[derive(Debug, Clone, Args)]
pub struct Watch {
    /// Print each frame as its JSON envelope (and the clock and summary as JSON objects).
    #[arg(long)]
    pub json: bool,
    /// Do not print scroll_tick lines (they still count in the summary).
    #[arg(long)]
    pub no_ticks: bool,
    /// The server's SCROLL_TICK_INTERVAL in ms, the expected gap between ticks.
    #[arg(long, value_name = "MS", default_value_t = 16.0)]
    pub tick_interval: f64,
}

impl Watch {
    pub fn view(&self) -> monitor::View {
        monitor::View {
            json: self.json,
            hide_ticks: self.no_ticks,
        }
    }
}

/// Resolves when the run should end: `--duration` elapsed (never, without it) or Ctrl-C.
pub async fn until_stopped(duration: Option<Duration>) {
    let run_out = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = run_out => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Connects a WebSocket client, bounded by [`CONNECT_TIMEOUT`].
pub async fn connect_ws(url: &str) -> anyhow::Result<WsClient> {
    tokio::time::timeout(CONNECT_TIMEOUT, WsClient::connect(url))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {url}: timed out after {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {url}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lead(args) => lead::run(args).await,
        Command::Follow(args) => follow::run(args).await,
        Command::Listen(args) => listen::run(args).await,
        Command::Share(args) => share::run(args).await,
        Command::Receive(args) => receive::run(args).await,
        Command::MintToken(args) => mint::run(&args),
        Command::Repo(args) => repo::run(args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    // One thread is plenty for one connection, and keeps tick arrival times free of
    // cross-thread wake-ups.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bandsync-cli: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // `lead` may leave a blocking stdin read behind that nothing can cancel; do not wait
    // for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bandsync-cli: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn follow_parses_its_flags() {
        let cli = Cli::try_parse_from([
            "bandsync-cli",
            "follow",
            "--url",
            "ws://127.0.0.1:3001/ws",
            "--session",
            "band",
            "--duration",
            "2",
            "--json",
        ])
        .unwrap();
        let Command::Follow(args) = cli.command else {
            panic!("expected follow")
        };
        assert_eq!(args.common.duration, Some(Duration::from_secs(2)));
        assert!(args.watch.json);
    }

    #[test]
    fn repo_parses_its_subcommands() {
        let cli = Cli::try_parse_from([
            "bandsync-cli",
            "repo",
            "listen",
            "octocat/hello-world",
            "--encoding",
            "i16",
            "--out",
            "/tmp/x",
            "--count",
            "2",
        ])
        .unwrap();
        let Command::Repo(repo::RepoArgs {
            command: repo::RepoCommand::Listen(args),
        }) = cli.command
        else {
            panic!("expected repo listen")
        };
        assert_eq!(args.url, "http://127.0.0.1:3001");
        assert_eq!(args.count, Some(2));
        assert_eq!(
            args.encoding,
            Some(bandsync_client::protocol::repo::Encoding::I16)
        );

        let cli = Cli::try_parse_from([
            "bandsync-cli",
            "repo",
            "test",
            "solo",
            "--tempo",
            "-5",
            "--scale",
            "C4,Eb4,G4",
            "--instrument",
            "FMSynth",
            "--pattern",
            "chord",
        ])
        .unwrap();
        let Command::Repo(repo::RepoArgs {
            command: repo::RepoCommand::Test(args),
        }) = cli.command
        else {
            panic!("expected repo test")
        };
        let request = args.request();
        assert_eq!(request.tempo, Some(-5.0), "the server judges the range");
        assert_eq!(request.scale.unwrap(), ["C4", "Eb4", "G4"]);
        assert_eq!(
            request.instrument_type,
            Some(bandsync_client::protocol::repo::InstrumentType::Fm)
        );
        assert!(
            Cli::try_parse_from(["bandsync-cli", "repo", "listen", "x", "--count", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["bandsync-cli", "repo", "listen", "x", "--encoding", "mp3"])
                .is_err()
        );
    }

    #[test]
    fn share_and_receive_parse_their_flags() {
        let cli = Cli::try_parse_from([
            "bandsync-cli",
            "share",
            "--url",
            "http://127.0.0.1:3001",
            "--session",
            "123456",
            "--file",
            "song.wav",
            "--token",
            "Bearer Token",
            "--transport",
            "ws",
            "--chunk-ms",
            "100",
            "--loop",
        ])
        .unwrap();
        let Command::Share(args) = cli.command else {
            panic!("expected share")
        };
        assert_eq!(args.transport, share::ShareTransport::Ws);
        assert_eq!((args.chunk_ms, args.repeat), (100, true));
        assert_eq!(args.token, "Bearer Token");
        assert_eq!(args.linger, Duration::from_secs(1));

        let cli = Cli::try_parse_from([
            "bandsync-cli",
            "receive",
            "--url",
            "http://127.0.0.1:3001",
            "--session",
            "123456",
            "--token",
            "T",
            "--transport",
            "sse",
            "--out",
            "out.wav",
            "--duration",
            "2.5",
        ])
        .unwrap();
        let Command::Receive(args) = cli.command else {
            panic!("expected receive")
        };
        assert_eq!(args.transport, receive::ReceiveTransport::Sse);
        assert_eq!(args.duration, Some(Duration::from_millis(2500)));
        assert!(!args.play);

        let base = [
            "bandsync-cli",
            "share",
            "--url",
            "http://h",
            "--file",
            "f.wav",
        ];
        let with = |extra: &[&'static str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied()).map(drop)
        };
        assert!(with(&["--session", "band", "--token", "T"]).is_err());
        assert!(with(&["--session", "123456", "--token", "T", "--chunk-ms", "5"]).is_err());
    }
}
