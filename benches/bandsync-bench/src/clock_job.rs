//! Runs a clock scenario (`clock-accuracy`, `clock-agreement`) as one job: its own server
//! (with --spawn), the scenario under the run's deadline, one JSON line whatever happened.

use crate::cli::Scenario;
use crate::plan::{Plan, Settings};
use crate::target::{self, ServerExtras};
use crate::{clock_accuracy, clock_agreement, Outcome};
use serde::Serialize;

/// The line printed: what every scenario's line says, then the scenario's own report.
#[derive(Debug, Serialize)]
pub struct Line {
    pub scenario: &'static str,
    pub n: u64,
    pub duration_s: f64,
    pub url: String,
    pub spawned: bool,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<clock_accuracy::Report>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<clock_agreement::Report>,
}

impl Line {
    pub fn human(&self) -> String {
        let body = match (&self.accuracy, &self.agreement) {
            (Some(r), _) => r.human(),
            (_, Some(r)) => r.human(),
            _ => format!("{}: no result", self.scenario),
        };
        match &self.error {
            Some(e) => format!("{body}\n  error: {e}"),
            None => body,
        }
    }
}

pub async fn job(
    plan: &Plan,
    s: &Settings,
    extras: &ServerExtras,
    deadline: tokio::time::Instant,
    scenario: Scenario,
) -> (Line, Outcome) {
    let mut line = Line {
        scenario: scenario.name(),
        n: s.n.max(2),
        duration_s: s.duration.as_secs_f64(),
        url: String::new(),
        spawned: plan.spawn.is_some(),
        timed_out: false,
        error: None,
        accuracy: None,
        agreement: None,
    };
    let started = match (&plan.spawn, &plan.url) {
        (Some(opts), _) => {
            match tokio::time::timeout_at(deadline, target::spawn(opts, scenario.name(), extras))
                .await
            {
                Ok(Ok((ep, guard))) => Ok((ep.ws_url, Some(guard))),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("timed out starting the server".into()),
            }
        }
        (None, Some((ws_url, _))) => Ok((ws_url.clone(), None)),
        (None, None) => Err("no server: give --url or --spawn".into()),
    };
    let (ws_url, _guard) = match started {
        Ok(started) => started,
        Err(e) => {
            line.error = Some(e);
            return (line, Outcome::Failed);
        }
    };
    line.url = ws_url.clone();
    let work = async {
        match scenario {
            Scenario::ClockAgreement => {
                line.agreement = Some(clock_agreement::run(&ws_url, s, &s.clock).await?);
            }
            _ => line.accuracy = Some(clock_accuracy::run(&ws_url, s, &s.clock).await?),
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => match r {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(e)) => {
                line.error = Some(format!("{e:#}"));
                Outcome::Failed
            }
            Err(_) => {
                line.timed_out = true;
                line.error = Some("--timeout reached".into());
                Outcome::TimedOut
            }
        },
        _ = tokio::signal::ctrl_c() => {
            line.error = Some("interrupted".into());
            Outcome::Interrupted
        }
    };
    (line, outcome)
}
