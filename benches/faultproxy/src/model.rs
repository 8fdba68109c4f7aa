//! The delay model of one direction: base delay, jitter, stalls, all from one seeded
//! generator, so a link with the same seed injects the same delays on every run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

/// The most a delay parameter may be, in ms: a minute is far past any network this proxy
/// stands in for, and bounds what a hostile flag can make the proxy hold.
pub const MAX_DELAY_MS: f64 = 60_000.0;

/// How jitter is drawn. Both are one-sided (a packet is never early: queueing only adds)
/// and both are scaled so that the standard deviation of the one-way delay is exactly
/// [`Link::jitter_sd_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// `base + Exp(mean = sd)`: the textbook queueing delay, with a long tail (SD = mean
    /// of the exponential). The default.
    #[default]
    Exponential,
    /// `base + |N(0, σ)|` with `σ = sd / sqrt(1 − 2/π)` (a half-normal's SD is
    /// `σ·sqrt(1 − 2/π)`, about 0.603σ): a shorter tail.
    HalfNormal,
}

/// What one direction of a link does to the chunks crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Link {
    /// Added to every chunk, ms. Two directions with different bases are an asymmetric link.
    pub base_ms: f64,
    /// The standard deviation of the one-way delay, ms (0: no jitter).
    pub jitter_sd_ms: f64,
    pub jitter: Jitter,
    /// The chance that a chunk starts a stall (0..=1).
    pub stall_p: f64,
    /// How long a stall holds the direction, ms: the chunk that starts it, and every chunk
    /// behind it, waits this much more (chunks never overtake).
    pub stall_ms: f64,
}

/// A parameter out of range.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{0} must be finite and within 0..={MAX_DELAY_MS} ms")]
    Delay(&'static str),
    #[error("stall probability must be within 0..=1")]
    Probability,
}

impl Link {
    /// A link that delays by `base_ms` plus jitter of standard deviation `sd_ms`.
    pub fn jittered(base_ms: f64, sd_ms: f64) -> Self {
        Self {
            base_ms,
            jitter_sd_ms: sd_ms,
            ..Self::default()
        }
    }

    /// Checks every parameter is finite and in range.
    pub fn check(&self) -> Result<(), ConfigError> {
        let in_range = |v: f64| v.is_finite() && (0.0..=MAX_DELAY_MS).contains(&v);
        for (name, v) in [
            ("base delay", self.base_ms),
            ("jitter", self.jitter_sd_ms),
            ("stall length", self.stall_ms),
        ] {
            if !in_range(v) {
                return Err(ConfigError::Delay(name));
            }
        }
        if !(0.0..=1.0).contains(&self.stall_p) {
            return Err(ConfigError::Probability);
        }
        Ok(())
    }
}

/// One direction's delay generator.
#[derive(Debug, Clone)]
pub struct DelayModel {
    link: Link,
    rng: StdRng,
}

/// One drawn delay: the total, and whether it includes a stall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub delay_ms: f64,
    pub stalled: bool,
}

impl DelayModel {
    pub fn new(link: Link, seed: u64) -> Self {
        Self {
            link,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay of the next chunk, ms.
    pub fn draw(&mut self) -> Draw {
        let sd = self.link.jitter_sd_ms;
        let jitter = if sd <= 0.0 {
            0.0
        } else {
            match self.link.jitter {
                // 1 - U is in (0, 1], so its log is finite.
                Jitter::Exponential => -sd * (1.0 - self.rng.random::<f64>()).ln(),
                Jitter::HalfNormal => {
                    let sigma = sd / (1.0 - 2.0 / std::f64::consts::PI).sqrt();
                    (self.normal() * sigma).abs()
                }
            }
        };
        let stalled = self.link.stall_p > 0.0 && self.rng.random::<f64>() < self.link.stall_p;
        let stall = if stalled { self.link.stall_ms } else { 0.0 };
        Draw {
            delay_ms: (self.link.base_ms + jitter + stall).min(3.0 * MAX_DELAY_MS),
            stalled,
        }
    }

    /// A standard normal deviate (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.rng.random::<f64>();
        let v = self.rng.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The seed of one direction of connection number `conn`: distinct per connection and
/// direction (splitmix64 of the three), so links behind one proxy are independent.
pub fn direction_seed(seed: u64, conn: u64, up: bool) -> u64 {
    let mut z = seed
        .wrapping_add(conn.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(u64::from(up));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
