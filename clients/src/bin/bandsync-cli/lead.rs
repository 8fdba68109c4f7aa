//! `lead`: take the leader seat and drive the transport from stdin.
//!
//! Commands go out with numeric ids and are not awaited: their effect is the broadcast
//! `state_update` (printed like every event), and a refusal is an `error` carrying the
//! same id. Ticks are hidden unless `--ticks`, or they would bury the prompt.

use crate::monitor::{Monitor, View};
use crate::output::emit;
use crate::{connect_ws, until_stopped, Common};
use anyhow::Context as _;
use bandsync_client::protocol::client::{
    Pause, Play, Schedule, Seek, SetSheet, SetTempo, UpdateMessage,
};
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::validate::{self, MAX_SHEET_BYTES};
use bandsync_client::protocol::{ClientEvent, Role, ServerFrame};
use bandsync_client::{wall_clock_ms, Incoming, WsClient, DEFAULT_REQUEST_TIMEOUT};
use clap::Args;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};

const HELP: &str = "commands: tempo BPM | play [BEAT] | pause | seek BEAT (each may end in @N: at \
     the next bar of N beats) | msg TEXT | sheet FILE (ChordPro; `sheet` alone clears it) | \
     sync | help | quit";

#[derive(Debug, Clone, Args)]
pub struct LeadArgs {
    /// WebSocket URL of the server, e.g. ws://127.0.0.1:3001/ws
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub common: Common,
    /// Tempo to set after joining, in beats per minute (20-400).
    #[arg(long, default_value_t = 120.0)]
    pub tempo: f64,
    /// Start playing after setting the tempo.
    #[arg(long)]
    pub play: bool,
    /// Display name to join with.
    #[arg(long)]
    pub name: Option<String>,
    /// Print scroll_tick lines too.
    #[arg(long)]
    pub ticks: bool,
    /// Print frames as JSON envelopes.
    #[arg(long)]
    pub json: bool,
}

/// One line of stdin, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Send(ClientEvent),
    Help,
    Quit,
}

/// Parses one stdin line; `Ok(None)` for a blank one. Values are sent as typed, so the
/// server's validation (and its error codes) can be tried from the terminal.
fn parse_line(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let mut rest = rest.trim();
    // `tempo 140 @4`: at the next bar of 4 beats (the server checks the quantum's range).
    let mut schedule = Schedule::default();
    if matches!(word, "tempo" | "play" | "pause" | "seek") {
        if let Some((before, quantum)) = rest.rsplit_once('@') {
            let quantum = quantum.trim();
            let beats = quantum
                .parse()
                .map_err(|_| format!("`@` needs a number of beats, got {quantum:?}"))?;
            schedule.quantum = Some(beats);
            rest = before.trim();
        }
    }
    let number = |what: &str| -> Result<f64, String> {
        rest.parse()
            .map_err(|_| format!("`{word}` needs a number ({what}), got {rest:?}"))
    };
    Ok(Some(match word {
        "" => return Ok(None),
        "tempo" => Line::Send(ClientEvent::SetTempo(SetTempo {
            tempo: number("beats per minute")?,
            schedule,
        })),
        "play" => {
            let beat = match rest.is_empty() {
                true => None,
                false => Some(number("a beat")?),
            };
            Line::Send(ClientEvent::Play(Play { beat, schedule }))
        }
        "pause" => Line::Send(ClientEvent::Pause(Pause { schedule })),
        "seek" => Line::Send(ClientEvent::Seek(Seek {
            beat: number("a beat")?,
            schedule,
        })),
        "sheet" => {
            let text = match rest.is_empty() {
                true => String::new(),
                false => read_sheet(rest)?,
            };
            Line::Send(ClientEvent::SetSheet(SetSheet { text }))
        }
        "msg" => Line::Send(ClientEvent::UpdateMessage(UpdateMessage {
            text: rest.to_owned(),
        })),
        "sync" => Line::Send(ClientEvent::SyncRequest),
        "help" | "?" => Line::Help,
        "quit" | "exit" => Line::Quit,
        other => return Err(format!("unknown command `{other}`; {HELP}")),
    }))
}

/// A ChordPro file for `sheet`, refused before sending when the server would refuse it.
fn read_sheet(path: &str) -> Result<String, String> {
    let too_large = || format!("{path}: a sheet is at most {MAX_SHEET_BYTES} bytes");
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{path}: {e}"))?
        .len();
    if size > MAX_SHEET_BYTES as u64 {
        return Err(too_large());
    }
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

pub async fn run(args: LeadArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let session = &args.common.session;
    validate::tempo(args.tempo).map_err(|e| anyhow::anyhow!("--tempo: {}", e.message))?;
    let mut client = connect_ws(&args.url).await?;
    let snapshot = client
        .join_as(
            session,
            Some(Role::Leader),
            args.name.as_deref(),
            &args.common.credentials(),
        )
        .await
        .with_context(|| format!("joining session {session}"))?;
    if snapshot.role != Role::Leader {
        let leader = snapshot.leader_id.as_deref().unwrap_or("another member");
        anyhow::bail!("session {session} already has a leader ({leader})");
    }
    let view = View {
        json: args.json,
        hide_ticks: !args.ticks,
    };
    let mut monitor = Monitor::new(start, view, 16.0);
    let snapshot = ServerFrame {
        id: None,
        timestamp: snapshot.server_time,
        event: ServerEvent::Snapshot(snapshot),
    };
    monitor.on_frame(&snapshot, Instant::now(), wall_clock_ms(), None, None);

    let tempo = ClientEvent::SetTempo(SetTempo::new(args.tempo));
    client.send(tempo).await.context("setting the tempo")?;
    if args.play {
        let play = ClientEvent::Play(Play::new(None));
        client.send(play).await.context("starting playback")?;
    }
    if !args.json {
        emit(HELP);
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let stopped = until_stopped(args.common.duration);
    tokio::pin!(stopped);
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            () = &mut stopped => break Ok(()),
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match parse_line(&line) {
                    Ok(None) => {}
                    Ok(Some(Line::Help)) => emit(HELP),
                    Ok(Some(Line::Quit)) => break drain(&mut client, &mut monitor).await,
                    Ok(Some(Line::Send(event))) => {
                        let kind = event.type_name();
                        match client.send(event).await {
                            Ok(id) => tracing::debug!(?id, kind, "sent"),
                            Err(e) => break Err(anyhow::Error::new(e).context(format!("sending {kind}"))),
                        }
                    }
                    Err(message) => eprintln!("{message}"),
                },
                // End of input: without --duration that ends the run, with it the run
                // goes on (so `lead --play --duration 30 </dev/null` works).
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    if args.common.duration.is_none() {
                        break drain(&mut client, &mut monitor).await;
                    }
                }
            },
            incoming = client.next() => match incoming {
                Ok(Incoming::Frame { frame, received_at, wall_ms }) => {
                    monitor.on_frame(&frame, received_at, wall_ms, None, None);
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
    if outcome.is_ok() {
        // A deliberate end releases the seat at once; without `leave_session` the server
        // would hold it for the recovery window, as for a dropped connection.
        let _ = client.send(ClientEvent::LeaveSession).await;
        let _ = client.close().await;
    }
    outcome
}

/// Prints the answers to everything sent so far before the run ends. The server handles
/// one connection's requests in order, so once the reply to a `sync_request` is back, every
/// earlier command's `state_update` or `error` has arrived too (and sits in the buffer).
async fn drain(client: &mut WsClient, monitor: &mut Monitor) -> anyhow::Result<()> {
    let reply = client
        .request(ClientEvent::SyncRequest, DEFAULT_REQUEST_TIMEOUT)
        .await
        .context("waiting for the answers to the last commands")?;
    while client.buffered_len() > 0 {
        if let Ok(Incoming::Frame {
            frame,
            received_at,
            wall_ms,
        }) = client.next().await
        {
            monitor.on_frame(&frame, received_at, wall_ms, None, None);
        }
    }
    monitor.on_frame(&reply, Instant::now(), wall_clock_ms(), None, None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(line: &str) -> ClientEvent {
        match parse_line(line) {
            Ok(Some(Line::Send(event))) => event,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_the_documented_commands() {
        assert_eq!(
            send("tempo 128"),
            ClientEvent::SetTempo(SetTempo::new(128.0))
        );
        assert_eq!(send("play"), ClientEvent::Play(Play::new(None)));
        assert_eq!(send("  play 16 "), ClientEvent::Play(Play::new(Some(16.0))));
        assert_eq!(send("pause"), ClientEvent::Pause(Default::default()));
        assert_eq!(send("seek 8"), ClientEvent::Seek(Seek::new(8.0)));
        assert_eq!(
            send("msg  chorus, twice "),
            ClientEvent::UpdateMessage(UpdateMessage {
                text: "chorus, twice".into()
            })
        );
        assert_eq!(send("sync"), ClientEvent::SyncRequest);
        assert_eq!(parse_line("quit"), Ok(Some(Line::Quit)));
        assert_eq!(parse_line("   "), Ok(None));
    }

    #[test]
    fn a_trailing_at_schedules_at_the_next_bar() {
        let quantum = |q| Schedule {
            at: None,
            quantum: Some(q),
        };
        assert_eq!(
            send("tempo 140 @4"),
            ClientEvent::SetTempo(SetTempo {
                tempo: 140.0,
                schedule: quantum(4.0)
            })
        );
        assert_eq!(
            send("play @3"),
            ClientEvent::Play(Play {
                beat: None,
                schedule: quantum(3.0)
            })
        );
        assert_eq!(
            send("pause @4"),
            ClientEvent::Pause(Pause {
                schedule: quantum(4.0)
            })
        );
        assert!(parse_line("seek 8 @bar")
            .unwrap_err()
            .contains("number of beats"));
        assert!(
            parse_line("msg meet @ 8").is_ok(),
            "only transport commands schedule"
        );
    }

    #[test]
    fn sheet_reads_a_file_or_clears() {
        let path = std::env::temp_dir().join(format!("lead-sheet-{}.cho", std::process::id()));
        std::fs::write(&path, "{title: Blue}\n[G]Hello").unwrap();
        assert_eq!(
            send(&format!("sheet {}", path.display())),
            ClientEvent::SetSheet(SetSheet {
                text: "{title: Blue}\n[G]Hello".into()
            })
        );
        std::fs::write(&path, "a".repeat(MAX_SHEET_BYTES + 1)).unwrap();
        let refused = parse_line(&format!("sheet {}", path.display()));
        assert!(refused.unwrap_err().contains("at most"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            send("sheet"),
            ClientEvent::SetSheet(SetSheet {
                text: String::new()
            })
        );
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        assert!(parse_line("tempo fast")
            .unwrap_err()
            .contains("needs a number"));
        assert!(parse_line("seek").is_err());
        assert!(parse_line("dance").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn out_of_range_values_still_go_to_the_server() {
        // The server's validation answers with INVALID_TEMPO; the CLI lets you see that.
        assert_eq!(
            send("tempo 1000"),
            ClientEvent::SetTempo(SetTempo::new(1000.0))
        );
    }
}
