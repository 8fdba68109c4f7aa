use super::filter::{best_count, median, Timed};
use super::*;

fn sample(offset: f64, round_trip: f64) -> ClockSample {
    ClockSample { offset, round_trip }
}

/// A small seeded generator (xorshift64*), so the
/// synthetic links are the same on every run without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// One way's delay: `base + Exp(mean = sd)`, whose standard deviation is `sd`: the
    /// fault proxy's default jitter model.
    fn delay(&mut self, base: f64, sd: f64) -> f64 {
        base - sd * self.uniform().ln()
    }
}

/// One heartbeat over a link whose server clock is `true_offset` ahead, sent at local
/// `t0`, `up` and `down` ms each way, 0.2 ms in the server. Returns (sample, t3).
fn exchange(true_offset: f64, t0: f64, up: f64, down: f64) -> (ClockSample, f64) {
    let t1 = t0 + true_offset + up;
    let t2 = t1 + 0.2;
    let t3 = t2 - true_offset + down;
    (ClockSample::from_heartbeat(t0, t1, t2, t3), t3)
}

/// Runs a join burst (every 50 ms for `ms`) over a jittery link and returns the error of
/// the estimate against `true_offset`.
fn burst_error(seed: u64, ms: f64, up_base: f64, down_base: f64, sd: f64) -> f64 {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let true_offset = 1_234.5;
    let mut e = ClockEstimator::default();
    let mut t0 = 1_700_000_000_000.0;
    let end = t0 + ms;
    while t0 < end {
        let (up, down) = (rng.delay(up_base, sd), rng.delay(down_base, sd));
        let (s, t3) = exchange(true_offset, t0, up, down);
        assert!(e.add_at(s, t3));
        t0 += 50.0;
    }
    e.offset().unwrap() - true_offset
}

fn p95(mut errors: Vec<f64>) -> f64 {
    errors.iter_mut().for_each(|e| *e = e.abs());
    errors.sort_by(f64::total_cmp);
    errors[(errors.len() * 95).div_ceil(100) - 1]
}

#[test]
fn empty_estimator_has_no_estimate() {
    let e = ClockEstimator::default();
    assert!(e.is_empty());
    assert_eq!(e.estimate(), None);
    assert_eq!(e.server_clock(), None);
    assert_eq!(e.offset_at(0.0), None);
}

#[test]
fn keeps_all_of_three_then_the_best_quarter_but_never_fewer_than_three() {
    let counts: Vec<usize> = [0, 1, 2, 3, 4, 12, 13, 16, 17, 32].map(best_count).into();
    assert_eq!(counts, [0, 1, 2, 3, 3, 3, 4, 4, 5, 8]);
}

#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    assert_eq!(median(&mut []), None);
    assert_eq!(median(&mut [5.0]), Some(5.0));
    assert_eq!(median(&mut [9.0, 1.0, 4.0]), Some(4.0));
    assert_eq!(median(&mut [9.0, 1.0, 4.0, 2.0]), Some(3.0));
}

#[test]
fn takes_the_median_of_the_shortest_round_trips_and_bounds_by_the_widest_of_them() {
    let mut e = ClockEstimator::new(8);
    // Eight samples: K = 3, the round trips 2, 4 and 6 (offsets 10, 30, 20).
    for (offset, rtt) in [
        (100.0, 30.0),
        (10.0, 2.0),
        (-50.0, 40.0),
        (30.0, 4.0),
        (20.0, 6.0),
        (70.0, 8.0),
        (90.0, 50.0),
        (0.0, 9.0),
    ] {
        assert!(e.add_at(sample(offset, rtt), 0.0));
    }
    let est = e.estimate().unwrap();
    assert_eq!(est.offset, 20.0);
    assert_eq!(est.error_bound, 3.0);
    assert_eq!(est.round_trip, 2.0);
}

#[test]
fn forgets_samples_beyond_the_window() {
    let mut e = ClockEstimator::new(3);
    e.add_at(sample(1.0, 1.0), 0.0); // the best, but it will age out
    for offset in [2.0, 3.0, 4.0] {
        e.add_at(sample(offset, 10.0 + offset), 0.0);
    }
    assert_eq!(e.len(), 3);
    assert_eq!(
        e.samples().map(|s| s.offset).collect::<Vec<_>>(),
        [2.0, 3.0, 4.0]
    );
    assert_eq!(e.offset(), Some(3.0));
}

#[test]
fn rejects_impossible_samples() {
    let mut e = ClockEstimator::default();
    assert!(!e.add(sample(f64::NAN, 1.0)));
    assert!(!e.add(sample(1.0, -0.5)));
    assert!(!e.add(sample(1.0, f64::INFINITY)));
    assert!(!e.add_at(sample(1.0, 1.0), f64::NAN));
    assert!(e.is_empty());
}

#[test]
fn heartbeat_reply_becomes_a_sample() {
    // Server clock 250 ms ahead, 4 ms each way, 1 ms processing.
    let reply = HeartbeatResponse {
        t0: 1_000.0,
        t1: 1_254.0,
        t2: 1_255.0,
    };
    let mut e = ClockEstimator::default();
    let s = e.add_heartbeat(&reply, 1_009.0).unwrap();
    assert!((s.offset - 250.0).abs() < 1e-9);
    assert!((s.round_trip - 8.0).abs() < 1e-9);
    assert!((e.error_bound().unwrap() - 4.0).abs() < 1e-9);
}

#[test]
fn symmetric_jitter_of_5_ms_gives_p95_within_1_ms_after_a_2_s_burst() {
    let errors: Vec<f64> = (0..400)
        .map(|seed| burst_error(seed, 2_000.0, 1.0, 1.0, 5.0))
        .collect();
    let p = p95(errors.clone());
    assert!(p <= 1.0, "p95 {p:.3} ms");
    // Unbiased: the mean error is far below the spread.
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    assert!(mean.abs() < 0.15, "mean {mean:.3} ms");
}

#[test]
fn a_single_sample_under_the_same_jitter_is_far_worse() {
    // What the filter buys: the first sample alone is off by ~2.4 ms at p95.
    let errors: Vec<f64> = (0..400)
        .map(|seed| burst_error(seed, 1.0, 1.0, 1.0, 5.0))
        .collect();
    assert!(p95(errors) > 2.0);
}

#[test]
fn a_fixed_asymmetry_biases_the_offset_by_half_of_it_and_no_more() {
    // 10 ms more on the way up than down: the estimate is A/2 = 5 ms ahead of the truth,
    // which no client can see from its side (both ways count in the round trip only).
    for seed in 0..100 {
        let error = burst_error(seed, 2_000.0, 10.0, 0.0, 5.0);
        assert!(
            (error - 5.0).abs() <= 1.5,
            "seed {seed}: error {error:.3} ms"
        );
    }
    for seed in 0..100 {
        let error = burst_error(seed, 2_000.0, 0.0, 10.0, 0.0);
        assert!(
            (error + 5.0).abs() < 1e-6,
            "no jitter: exactly -A/2, got {error}"
        );
    }
}

#[test]
fn the_error_bound_covers_the_true_error() {
    for seed in 0..100 {
        let mut rng = Rng(seed + 7);
        let mut e = ClockEstimator::default();
        for i in 0..40 {
            let (up, down) = (rng.delay(10.0, 5.0), rng.delay(0.0, 5.0));
            let (s, t3) = exchange(-42.0, f64::from(i) * 50.0, up, down);
            e.add_at(s, t3);
        }
        let est = e.estimate().unwrap();
        assert!(
            (est.offset + 42.0).abs() <= est.error_bound,
            "seed {seed}: {est:?}"
        );
    }
}

#[test]
fn outliers_with_long_round_trips_are_ignored_and_one_short_liar_is_outvoted() {
    let mut e = ClockEstimator::default();
    for i in 0..32 {
        let s = match i % 4 {
            // A stalled direction: 300 ms one way, so the offset is off by 150 ms.
            0 => sample(150.0, 302.0),
            // One lucky-looking sample whose split was uneven.
            1 if i == 1 => sample(-0.9, 1.0),
            _ => sample(0.1 * f64::from(i % 3), 2.0 + f64::from(i % 5)),
        };
        e.add_at(s, f64::from(i) * 50.0);
    }
    let est = e.estimate().unwrap();
    assert!(est.offset.abs() <= 0.2, "{est:?}");
    assert!(est.error_bound < 5.0, "{est:?}");
}

/// A client clock drifting 100 ppm from the server's, sampled once a second for a minute
/// with 1 ms of symmetric jitter.
fn drifting(drift_on: bool) -> (ClockEstimator, f64) {
    let mut rng = Rng(99);
    let mut e = ClockEstimator::default().with_drift(drift_on);
    let true_offset = |t: f64| 500.0 + 1e-4 * t;
    let mut t = 0.0;
    while t <= 60_000.0 {
        let (up, down) = (rng.delay(1.0, 1.0), rng.delay(1.0, 1.0));
        let (s, t3) = exchange(true_offset(t), t, up, down);
        e.add_at(s, t3);
        t += 1_000.0;
    }
    (e, true_offset(t))
}

#[test]
fn drift_is_fitted_and_followed_when_on() {
    let (e, truth) = drifting(true);
    let slope = e.drift().expect("a minute of samples spans enough");
    assert!((slope - 1e-4).abs() < 3e-5, "slope {slope:e}");
    let with = (e.offset_at(60_000.0).unwrap() - truth).abs();
    let (plain, _) = drifting(false);
    assert_eq!(plain.drift(), None);
    let without = (plain.offset_at(60_000.0).unwrap() - truth).abs();
    assert!(
        with < without,
        "with drift {with:.3} ms, without {without:.3} ms"
    );
    assert!(with < 0.8, "with drift {with:.3} ms");
}

#[test]
fn no_drift_is_fitted_over_a_short_span() {
    let mut e = ClockEstimator::default().with_drift(true);
    for i in 0..32 {
        e.add_at(sample(f64::from(i), 1.0), f64::from(i) * 50.0);
    }
    assert_eq!(e.drift(), None);
    assert_eq!(e.offset_at(10_000.0), e.offset());
}

#[test]
fn heartbeats_every_50_ms_for_2_s_then_every_second() {
    let mut e = ClockEstimator::default();
    assert!(e.in_burst(0.0));
    assert_eq!(e.next_heartbeat_in(10_000.0), Duration::ZERO);
    e.heartbeat_sent(10_000.0);
    assert_eq!(e.next_heartbeat_in(10_000.0), BURST_INTERVAL);
    assert_eq!(e.next_heartbeat_in(10_020.0), Duration::from_millis(30));
    assert_eq!(e.next_heartbeat_in(10_070.0), Duration::ZERO);
    e.heartbeat_sent(11_990.0);
    assert_eq!(e.heartbeat_interval(11_999.0), BURST_INTERVAL);
    assert_eq!(e.heartbeat_interval(12_000.0), STEADY_INTERVAL);
    assert_eq!(e.next_heartbeat_in(12_000.0), Duration::from_millis(990));
    e.restart_burst(20_000.0);
    assert_eq!(e.heartbeat_interval(20_500.0), BURST_INTERVAL);
    e.heartbeat_sent(f64::NAN);
    assert_eq!(e.next_heartbeat_in(20_500.0), Duration::ZERO);
}

#[test]
fn the_first_sample_starts_the_burst_when_no_send_was_recorded() {
    let mut e = ClockEstimator::default();
    let reply = HeartbeatResponse {
        t0: 5_000.0,
        t1: 5_001.0,
        t2: 5_001.0,
    };
    e.add_heartbeat(&reply, 5_002.0);
    assert!(e.in_burst(6_999.0));
    assert!(!e.in_burst(7_000.0));
}

#[test]
fn window_slices_are_what_the_filter_sees() {
    let t = Timed {
        sample: sample(1.0, 2.0),
        local_ms: 3.0,
    };
    let f = filter::filter(&[t]).unwrap();
    assert_eq!(
        (f.offset, f.error_bound, f.round_trip, f.local_ms),
        (1.0, 1.0, 2.0, 3.0)
    );
}

#[test]
fn server_clock_converts_both_ways() {
    let c = ServerClock::new(-42.5);
    assert_eq!(c.to_server(1_000.0), 957.5);
    assert_eq!(c.to_local(957.5), 1_000.0);
    let before = wall_clock_ms();
    let now = c.server_now();
    assert!(now >= before - 42.5 && now <= wall_clock_ms() - 42.5);
}

#[test]
fn wall_clock_is_after_2020() {
    assert!(wall_clock_ms() > 1_577_836_800_000.0);
}

#[test]
fn equal_round_trips_keep_their_order_in_the_window() {
    let held: Vec<Timed> = (0..8)
        .map(|i| Timed {
            sample: sample(f64::from(i), 5.0),
            local_ms: f64::from(i),
        })
        .collect();
    let kept: Vec<f64> = filter::best(&held)
        .iter()
        .map(|t| t.sample.offset)
        .collect();
    assert_eq!(kept, [0.0, 1.0, 2.0]);
}
