//! The validated plan made from the flags: which scenarios, with which settings.

use crate::audio_plan::check_audio;
pub use crate::audio_plan::{AudioSettings, Preset, AUDIO_SEED};
use crate::cli::{Cli, Scenario};
use crate::reference::ServerKind;
use crate::repo_fanout::RepoSettings;
use crate::target::{derive_urls, SpawnOptions};
use bandsync_bench::bench_stats::TEMPO_CAPACITY;
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
    pub audio: AudioSettings,
    pub churn: ChurnSettings,
    pub cluster: ClusterSettings,
    pub repo: RepoSettings,
    /// mixed: sample the server and the latency this often (the soak).
    pub sample_every: Option<Duration>,
    /// clock-accuracy, clock-agreement.
    pub clock: crate::clock_plan::ClockArgs,
}

/// What the `churn` scenario reads besides the common settings.
#[derive(Debug, Clone)]
pub struct ChurnSettings {
    pub drop_every: Duration,
    pub away: Duration,
    /// Resume with `lastVersion`.
    pub last_version: bool,
}

/// What the cluster scenarios read.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// bandsync instances sharing the Redis.
    pub instances: usize,
    /// Seeds the random instances churning clients resume on (in the report).
    pub seed: u64,
}

/// One scenario run (presets expand into several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Never `All` or `AudioSeed`.
    pub scenario: Scenario,
    pub preset: Option<Preset>,
}

impl Job {
    fn plain(scenario: Scenario) -> Self {
        Self {
            scenario,
            preset: None,
        }
    }
}

/// Validated flags.
#[derive(Debug, Clone)]
pub struct Plan {
    pub jobs: Vec<Job>,
    /// -d as given (`None`: each scenario's default).
    pub duration: Option<Duration>,
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
        Scenario::Fanout | Scenario::ClusterFanout => per_leader,
        Scenario::Mixed => per_leader * s.sessions,
        _ => 0,
    }
}

/// -d when not given: audio streams for 10 s (the seed's runs), churn for 120 s (eight
/// drops per client at the default 15 s), the rest 5 s.
pub fn default_duration(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::Audio => Duration::from_secs(10),
        Scenario::Churn | Scenario::ClusterChurn => Duration::from_secs(120),
        _ => Duration::from_secs(5),
    }
}

impl Plan {
    /// The settings for one scenario (the rate and duration defaults differ).
    #[cfg(test)]
    pub fn settings_for(&self, scenario: Scenario) -> Settings {
        self.job_settings(&Job::plain(scenario), 0)
    }

    /// The settings of job number `index`: a preset fixes sessions and receivers.
    pub fn job_settings(&self, job: &Job, index: usize) -> Settings {
        let default_rate = if matches!(
            job.scenario,
            Scenario::Mixed | Scenario::Churn | Scenario::ClusterChurn
        ) {
            1.0
        } else {
            10.0
        };
        let mut s = Settings {
            rate: self.rate.unwrap_or(default_rate),
            duration: self
                .duration
                .unwrap_or_else(|| default_duration(job.scenario)),
            ..self.settings.clone()
        };
        s.audio.id_seed = s.audio.id_seed.wrapping_add(index as u64);
        if let Some(preset) = job.preset {
            s.sessions = preset.sessions;
            s.audio.receivers = preset.receivers;
        }
        s
    }
}

impl Cli {
    pub fn validate(self, session_base: String) -> Result<Plan, String> {
        let mut jobs = Vec::new();
        for &scenario in self.scenarios.iter().chain(&self.scenario_flag) {
            use Scenario::*;
            match scenario {
                All => jobs.extend([Fanout, Ticks, Connect, Sse, Mixed].map(Job::plain)),
                AudioSeed => jobs.extend(AUDIO_SEED.map(|preset| Job {
                    scenario: Audio,
                    preset: Some(preset),
                })),
                other => jobs.push(Job::plain(other)),
            }
        }
        if jobs.is_empty() {
            return Err(
                "name a scenario: fanout, ticks, connect, sse, mixed, all, audio, audio-seed, churn, cluster-fanout, cluster-churn, repo-fanout, clock-accuracy or clock-agreement"
                    .into(),
            );
        }
        let check_churn = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_owned()) };
        check_churn(
            self.away > Duration::ZERO && self.away < self.drop_every,
            "--away must be above 0 and below --drop-every",
        )?;
        check_churn(
            self.drop_every <= Duration::from_secs(3600),
            "--drop-every must be at most 3600 s",
        )?;
        check_churn(
            self.sample_every
                .is_none_or(|e| e >= Duration::from_secs(1)),
            "--sample-every must be at least 1 s",
        )?;
        let repo = RepoSettings {
            listeners: self.listeners,
            encodings: self.encodings,
            composition_s: self.composition_secs,
        };
        if jobs.iter().any(|j| j.scenario == Scenario::RepoFanout) {
            repo.check()?;
        }
        self.clock.check()?;
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_owned()) };
        check(
            self.spawn || !jobs.iter().any(|j| j.scenario.is_cluster()),
            "cluster-fanout and cluster-churn start their own Redis and instances: add --spawn",
        )?;
        check(
            (2..=8).contains(&self.instances),
            "--instances must be 2..=8",
        )?;
        check(
            (1..=100_000).contains(&self.n),
            "--clients must be 1..=100000",
        )?;
        check(
            self.duration.is_none_or(|d| d <= Duration::from_secs(3600)),
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
        check(
            self.spawn || self.spawn_server == ServerKind::Bandsync,
            "--spawn-server needs --spawn",
        )?;
        if self.spawn_server != ServerKind::Bandsync {
            let name = self.spawn_server.name();
            check(
                jobs.iter().all(|j| self.spawn_server.serves(j.scenario)),
                &format!("--spawn-server {name} serves fanout, ticks and connect only"),
            )?;
            check(
                self.server_args.is_empty() && self.server_bin.is_none(),
                &format!(
                    "--server-arg and --server-bin are for bandsync, not --spawn-server {name}"
                ),
            )?;
        }
        let url = if self.spawn {
            None
        } else {
            Some(derive_urls(&self.url, self.allow_remote)?)
        };
        let timeout = self.timeout.unwrap_or_else(|| {
            jobs.iter()
                .map(|j| {
                    let d = self
                        .duration
                        .unwrap_or_else(|| default_duration(j.scenario));
                    match j.scenario {
                        // Two phases (baseline, cluster), and Redis to start.
                        Scenario::ClusterFanout => d * 2 + Duration::from_secs(90),
                        Scenario::RepoFanout => repo.budget(),
                        // Two phases of 5 s, or a warm-up and the comparison.
                        Scenario::ClockAccuracy => Duration::from_secs(90),
                        Scenario::ClockAgreement => d + Duration::from_secs(60),
                        _ => d + Duration::from_secs(60),
                    }
                })
                .sum()
        });
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let plan = Plan {
            duration: self.duration,
            settings: Settings {
                n: self.n,
                duration: self.duration.unwrap_or(Duration::from_secs(5)),
                rate: 0.0,
                sessions: self.sessions,
                members: self.members,
                concurrency: self.connect_concurrency,
                tick_interval_ms: self.tick_interval_ms,
                session_base,
                audio: AudioSettings {
                    receivers: self.receivers,
                    transport: self.receiver_transport,
                    uplink: self.uplink,
                    chunk_ms: self.chunk_ms,
                    sample_rate: self.sample_rate,
                    channels: self.channels,
                    format: self.format,
                    token: self.token,
                    id_seed: (u64::from(std::process::id()) << 32) ^ unix_ms.wrapping_mul(1000),
                },
                churn: ChurnSettings {
                    drop_every: self.drop_every,
                    away: self.away,
                    last_version: !self.no_last_version,
                },
                cluster: ClusterSettings {
                    instances: self.instances,
                    seed: (u64::from(std::process::id()) << 20) ^ unix_ms,
                },
                sample_every: self.sample_every,
                clock: self.clock,
                repo,
            },
            rate: self.rate,
            url,
            server_pid: self.server_pid,
            spawn: self.spawn.then_some(SpawnOptions {
                server: self.spawn_server,
                node: self.node,
                uws_script: self.uws_script,
                floor_bin: self.floor_bin,
                binary: self.server_bin,
                args: self.server_args,
                cpus: self.server_cpus,
                redis_bin: self.redis_server,
            }),
            timeout,
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            progress: !self.no_progress,
            jobs,
        };
        for (index, job) in plan.jobs.iter().enumerate() {
            let scenario = job.scenario;
            let s = plan.job_settings(job, index);
            if scenario == Scenario::Audio {
                check_audio(&s.audio, s.sessions, s.duration)?;
            }
            let slots = tempo_slots(scenario, &s);
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
    use crate::cli::{PcmFormat, RxTransport, Uplink};
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
            p.jobs.iter().map(|j| j.scenario).collect::<Vec<_>>(),
            [Scenario::Fanout, Scenario::Ticks, Scenario::Sse]
        );
        assert_eq!(p.settings.n, 100);
        assert_eq!(p.settings.concurrency, 64);
        assert_eq!(p.timeout, Duration::from_secs(65 * 3));
        assert_eq!(p.settings_for(Scenario::Fanout).rate, 10.0);
        assert_eq!(p.settings_for(Scenario::Mixed).rate, 1.0);
        assert_eq!(p.url.unwrap().0, "ws://127.0.0.1:3001/ws");
        assert_eq!(plan(&["all"]).unwrap().jobs.len(), 5);
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
    fn audio_defaults_and_the_seed_preset() {
        let p = plan(&["audio"]).unwrap();
        let s = p.settings_for(Scenario::Audio);
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!((s.sessions, s.audio.receivers), (10, 1));
        assert_eq!(s.audio.transport, RxTransport::Ws);
        assert_eq!(s.audio.uplink, Uplink::Rest);
        assert_eq!(s.audio.format, PcmFormat::F32);
        assert_eq!(s.audio.token, "Bearer Token");
        assert_eq!(s.audio.chunk_bytes(), 4410 * 2 * 4);
        assert_eq!(s.audio.spawn_audio_rate(), 20);
        assert_eq!(p.timeout, Duration::from_secs(70));

        let p = plan(&["audio-seed", "-d", "5", "--receiver-transport", "sse"]).unwrap();
        let shapes: Vec<_> = p
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                assert_eq!(j.scenario, Scenario::Audio);
                let s = p.job_settings(j, i);
                assert_eq!(s.duration, Duration::from_secs(5));
                assert_eq!(s.audio.transport, RxTransport::Sse);
                (s.sessions, s.audio.receivers, s.audio.id_seed)
            })
            .collect();
        assert_eq!(
            shapes.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            [(10, 1), (5, 10), (50, 5)]
        );
        assert_ne!(shapes[0].2, shapes[1].2, "each run its own share ids");
        assert_eq!(p.timeout, Duration::from_secs(65 * 3));

        let p = plan(&[
            "audio",
            "--chunk-ms",
            "20",
            "--uplink",
            "ws",
            "--format",
            "i16",
        ])
        .unwrap();
        let s = p.settings_for(Scenario::Audio);
        assert_eq!(s.audio.spawn_audio_rate(), 100);
        assert_eq!(s.audio.chunk_bytes(), 882 * 2 * 2);
    }

    #[test]
    fn churn_defaults_match_the_issue() {
        let p = plan(&["churn", "--clients", "1000"]).unwrap();
        let s = p.settings_for(Scenario::Churn);
        assert_eq!(s.duration, Duration::from_secs(120));
        assert_eq!(s.rate, 1.0);
        assert_eq!(s.churn.drop_every, Duration::from_secs(15));
        assert_eq!(s.churn.away, Duration::from_secs(2));
        assert!(s.churn.last_version);
        assert_eq!(p.timeout, Duration::from_secs(180));
        let p = plan(&[
            "churn",
            "--no-last-version",
            "--drop-every",
            "5",
            "--away",
            "0.5",
        ])
        .unwrap();
        assert!(!p.settings.churn.last_version);
        assert_eq!(p.settings.churn.away, Duration::from_millis(500));
    }

    #[test]
    fn cluster_scenarios_need_spawn_and_two_instances() {
        assert!(plan(&["cluster-fanout"]).unwrap_err().contains("--spawn"));
        assert!(plan(&["churn", "cluster-churn"])
            .unwrap_err()
            .contains("--spawn"));
        assert!(plan(&["--spawn", "cluster-fanout", "--instances", "1"])
            .unwrap_err()
            .contains("--instances"));
        let p = plan(&["--spawn", "cluster-fanout", "-n", "1000", "-d", "10"]).unwrap();
        let s = p.settings_for(Scenario::ClusterFanout);
        assert_eq!((s.rate, s.cluster.instances), (10.0, 2));
        assert_eq!(
            p.timeout,
            Duration::from_secs(110),
            "two phases of 10 s, and 90"
        );
        assert_eq!(tempo_slots(Scenario::ClusterFanout, &s), 101);
        assert_eq!(
            p.spawn.unwrap().redis_bin,
            std::path::PathBuf::from("redis-server")
        );
        let p = plan(&["--spawn", "cluster-churn", "--instances", "3"]).unwrap();
        let s = p.settings_for(Scenario::ClusterChurn);
        assert_eq!((s.rate, s.duration.as_secs()), (1.0, 120));
        assert_eq!(s.cluster.instances, 3);
        assert_eq!(
            plan(&["all"]).unwrap().jobs.len(),
            5,
            "all stays single-server"
        );
    }

    #[test]
    fn bad_audio_flags_are_refused_clearly() {
        let err = |args: &[&str]| plan(args).unwrap_err();
        assert!(err(&["audio", "--format", "i16"]).contains("--uplink ws"));
        assert!(err(&["audio", "--sessions", "1001"]).contains("--sessions"));
        assert!(err(&["audio", "--receivers", "0"]).contains("--receivers"));
        assert!(err(&["audio", "--chunk-ms", "1"]).contains("--chunk-ms"));
        assert!(err(&["audio", "--channels", "0"]).contains("--channels"));
        assert!(err(&["audio", "--sample-rate", "0"]).contains("--sample-rate"));
        assert!(err(&["audio", "--chunk-ms", "5000", "--channels", "32"]).contains("1 MiB"));
        assert!(err(&["audio", "--token", ""]).contains("--token"));
        assert!(plan(&["audio", "--receiver-transport", "carrier-pigeon"]).is_err());
        // A preset fixes sessions and receivers, so --sessions does not apply to it.
        assert!(plan(&["audio-seed", "--sessions", "5000"]).is_ok());
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
        assert!(plan(&["churn", "--away", "15"])
            .unwrap_err()
            .contains("--away"));
        assert!(plan(&["churn", "--away", "0"]).is_err());
        assert!(plan(&["mixed", "--sample-every", "0.5"])
            .unwrap_err()
            .contains("--sample-every"));
        assert!(plan(&["ticks", "-d", "soon"]).is_err());
        assert_eq!(
            plan(&["ticks", "-d", "0.25"]).unwrap().settings.duration,
            Duration::from_millis(250)
        );
    }
}
