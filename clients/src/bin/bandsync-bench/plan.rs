//! The validated plan made from the flags: which scenarios, with which settings.

use crate::cli::{Cli, Scenario};
use crate::target::{derive_urls, SpawnOptions};
use bandsync_client::bench_stats::TEMPO_CAPACITY;
use std::time::Duration;

/// The scenario-independent settings each scenario reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub n: u64,
    pub duration: Duration,
    pub rate: f64,
    pub sessions: u64,
    pub members: u64,
    pub concurrency: usize,
    pub tick_interval_ms: f64,
    pub session_base: String,
}

/// Validated flags.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub settings: Settings,
    pub rate: Option<f64>,
    /// `None` with --spawn.
    pub url: Option<(String, String)>,
    pub server_pid: Option<u32>,
    pub spawn: Option<SpawnOptions>,
    pub timeout: Duration,
    pub threads: usize,
    pub progress: bool,
}

/// How many set_tempo a scenario sends at most (tempo slots to reserve).
pub fn tempo_slots(scenario: Scenario, s: &Settings) -> u64 {
    let per_leader = (s.rate * s.duration.as_secs_f64()).ceil() as u64 + 1;
    match scenario {
        Scenario::Fanout => per_leader,
        Scenario::Mixed => per_leader * s.sessions,
        _ => 0,
    }
}

impl Plan {
    /// The settings for one scenario (the rate default differs).
    pub fn settings_for(&self, scenario: Scenario) -> Settings {
        let default_rate = if scenario == Scenario::Mixed {
            1.0
        } else {
            10.0
        };
        Settings {
            rate: self.rate.unwrap_or(default_rate),
            ..self.settings.clone()
        }
    }
}

impl Cli {
    pub fn validate(self, session_base: String) -> Result<Plan, String> {
        let mut scenarios: Vec<Scenario> = self
            .scenarios
            .iter()
            .chain(&self.scenario_flag)
            .copied()
            .collect();
        if scenarios.contains(&Scenario::All) {
            use Scenario::*;
            scenarios = vec![Fanout, Ticks, Connect, Sse, Mixed];
        }
        if scenarios.is_empty() {
            return Err("name a scenario: fanout, ticks, connect, sse, mixed or all".into());
        }
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_owned()) };
        check(
            (1..=100_000).contains(&self.n),
            "--clients must be 1..=100000",
        )?;
        check(
            self.duration <= Duration::from_secs(3600),
            "--duration must be at most 3600 s",
        )?;
        if let Some(rate) = self.rate {
            check(
                rate.is_finite() && rate > 0.0 && rate <= 1000.0,
                "--rate must be > 0 and <= 1000",
            )?;
        }
        check(
            (1..=10_000).contains(&self.sessions),
            "--sessions must be 1..=10000",
        )?;
        check(
            (2..=20_000).contains(&self.members),
            "--members must be 2..=20000 (a leader and followers)",
        )?;
        check(
            self.sessions * self.members <= 100_000,
            "--sessions x --members must be at most 100000",
        )?;
        check(
            (1..=10_000).contains(&self.connect_concurrency),
            "--connect-concurrency must be 1..=10000",
        )?;
        check(
            self.tick_interval_ms.is_finite()
                && self.tick_interval_ms > 0.0
                && self.tick_interval_ms <= 10_000.0,
            "--tick-interval-ms must be > 0 and <= 10000",
        )?;
        check(
            self.threads.is_none_or(|t| (1..=256).contains(&t)),
            "--threads must be 1..=256",
        )?;
        bandsync_client::protocol::validate::session_id(&format!(
            "{session_base}-connect-{}",
            self.sessions
        ))
        .map_err(|_| {
            "--session-prefix: use at most ~80 characters of A-Z a-z 0-9 . _ - /".to_owned()
        })?;
        let url = if self.spawn {
            None
        } else {
            Some(derive_urls(&self.url, self.allow_remote)?)
        };
        let plan = Plan {
            settings: Settings {
                n: self.n,
                duration: self.duration,
                rate: 0.0,
                sessions: self.sessions,
                members: self.members,
                concurrency: self.connect_concurrency,
                tick_interval_ms: self.tick_interval_ms,
                session_base,
            },
            rate: self.rate,
            url,
            server_pid: self.server_pid,
            spawn: self.spawn.then_some(SpawnOptions {
                binary: self.server_bin,
                args: self.server_args,
                cpus: self.server_cpus,
            }),
            timeout: self
                .timeout
                .unwrap_or((self.duration + Duration::from_secs(60)) * scenarios.len() as u32),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            progress: !self.no_progress,
            scenarios,
        };
        for &scenario in &plan.scenarios {
            let slots = tempo_slots(scenario, &plan.settings_for(scenario));
            if slots > TEMPO_CAPACITY {
                return Err(format!(
                    "{}: --rate x --duration{} needs {slots} unique tempos; at most {TEMPO_CAPACITY}",
                    scenario.name(),
                    if scenario == Scenario::Mixed { " x --sessions" } else { "" }
                ));
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("bandsync-bench").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        cli.validate("bench-1".into())
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_scenario_lists() {
        let p = plan(&["fanout,ticks", "--scenario", "sse"]).unwrap();
        assert_eq!(
            p.scenarios,
            [Scenario::Fanout, Scenario::Ticks, Scenario::Sse]
        );
        assert_eq!(p.settings.n, 100);
        assert_eq!(p.settings.concurrency, 64);
        assert_eq!(p.timeout, Duration::from_secs(65 * 3));
        assert_eq!(p.settings_for(Scenario::Fanout).rate, 10.0);
        assert_eq!(p.settings_for(Scenario::Mixed).rate, 1.0);
        assert_eq!(p.url.unwrap().0, "ws://127.0.0.1:3001/ws");
        assert_eq!(plan(&["all"]).unwrap().scenarios.len(), 5);
        let p = plan(&[
            "--spawn",
            "--server-arg=--batch-interval-ms=0",
            "--server-arg",
            "--log-level=info",
            "mixed",
        ])
        .unwrap();
        assert!(p.url.is_none());
        assert_eq!(
            p.spawn.unwrap().args,
            ["--batch-interval-ms=0", "--log-level=info"]
        );
    }

    #[test]
    fn bad_flags_are_refused_clearly() {
        assert!(plan(&[]).unwrap_err().contains("name a scenario"));
        assert!(plan(&["fanout", "-n", "0"])
            .unwrap_err()
            .contains("--clients"));
        assert!(plan(&["fanout", "-d", "0"]).is_err());
        assert!(plan(&["fanout", "--rate", "-1"])
            .unwrap_err()
            .contains("--rate"));
        assert!(plan(&["fanout", "--rate", "0"])
            .unwrap_err()
            .contains("--rate"));
        assert!(plan(&["fanout", "--rate", "1000", "-d", "3600"])
            .unwrap_err()
            .contains("unique tempos"));
        assert!(plan(&["mixed", "--sessions", "1000", "--rate", "100", "-d", "10"]).is_err());
        assert!(plan(&["mixed", "--members", "1"])
            .unwrap_err()
            .contains("--members"));
        assert!(plan(&["ticks", "--url", "ws://192.168.1.2:3001"])
            .unwrap_err()
            .contains("loopback"));
        assert!(plan(&["ticks", "--spawn", "--server-pid", "1"]).is_err());
        assert!(
            plan(&["ticks", "--server-arg", "x"]).is_err(),
            "needs --spawn"
        );
        assert!(plan(&["ticks", "--connect-concurrency", "0"]).is_err());
        assert!(plan(&["bogus"]).is_err());
        assert!(plan(&["ticks", "-d", "soon"]).is_err());
        assert_eq!(
            plan(&["ticks", "-d", "0.25"]).unwrap().settings.duration,
            Duration::from_millis(250)
        );
    }
}
