//! The flags of the clock scenarios (`clock-accuracy`, `clock-agreement`), flattened into
//! the command line so `cli.rs` stays one list of the common flags.

use clap::{Args, ValueEnum};

/// How the fault proxy draws each one-way delay's jitter (both have the SD asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JitterModel {
    /// base + Exp(mean = SD): queueing, with a long tail.
    Exponential,
    /// base + |N(0, σ)| scaled to the SD: a shorter tail.
    HalfNormal,
}

impl JitterModel {
    pub fn name(self) -> &'static str {
        match self {
            JitterModel::Exponential => "exponential",
            JitterModel::HalfNormal => "half-normal",
        }
    }

    pub fn proxy(self) -> faultproxy::Jitter {
        match self {
            JitterModel::Exponential => faultproxy::Jitter::Exponential,
            JitterModel::HalfNormal => faultproxy::Jitter::HalfNormal,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ClockArgs {
    /// clock-*: standard deviation of each one-way delay through the fault proxy, ms.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub jitter_ms: f64,
    /// clock-*: how the proxy draws the jitter.
    #[arg(long, value_enum, value_name = "MODEL", default_value_t = JitterModel::Exponential)]
    pub jitter_model: JitterModel,
    /// clock-accuracy: the second phase's extra base delay on the way up (A), ms; the way
    /// down gets none. The estimate is then expected A/2 off.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    pub asymmetry_ms: f64,
    /// clock-*: seeds every proxy link (link i gets seed + i) and the clients' clock skews.
    #[arg(long, value_name = "SEED", default_value_t = 13)]
    pub clock_seed: u64,
    /// clock-agreement: how often (ms) the two clients' positions are compared.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub sample_every_ms: u64,
}

impl ClockArgs {
    pub fn check(&self) -> Result<(), String> {
        let ms = |v: f64| v.is_finite() && (0.0..=1_000.0).contains(&v);
        if !ms(self.jitter_ms) || !ms(self.asymmetry_ms) {
            return Err("--jitter-ms and --asymmetry-ms must be within 0..=1000".into());
        }
        if !(1..=1_000).contains(&self.sample_every_ms) {
            return Err("--sample-every-ms must be 1..=1000".into());
        }
        Ok(())
    }
}
