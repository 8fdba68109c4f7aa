//! How the cluster scenarios spread clients over instances: evenly at the start (so each
//! instance carries the same audience and per-instance figures compare), and at random
//! when a churning client comes back (so resumes cross instances as they would behind a
//! load balancer). Pure arithmetic, kept apart from the sockets so it can be tested.

/// The instance's letter in reports: A (the leader's), B, C...
pub fn label(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("I{index}"),
    }
}

/// `n` clients over `k` instances as evenly as whole clients allow: the first `n % k`
/// instances get one more. Client `i` goes to [`home`]`(i, k)`, which agrees with it.
pub fn split_even(n: u64, k: usize) -> Vec<u64> {
    let k = k.max(1);
    let (base, extra) = (n / k as u64, (n % k as u64) as usize);
    (0..k).map(|i| base + u64::from(i < extra)).collect()
}

/// The instance client `i` joins first: round robin, so any prefix of the clients is
/// spread evenly too.
pub fn home(i: u64, k: usize) -> usize {
    (i % k.max(1) as u64) as usize
}

/// SplitMix64: a tiny, seedable generator for picking instances. Not for anything secret;
/// seeded, so a run's choices can be reproduced from the seed in its report (the bench
/// needs no `rand` dependency for this).
#[derive(Debug, Clone)]
pub struct Picker {
    state: u64,
}

impl Picker {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly random instance out of `k` (0 when there is one or none). The modulo
    /// bias is below 2^-58 for the handful of instances here.
    pub fn pick(&mut self, k: usize) -> usize {
        if k <= 1 {
            return 0;
        }
        (self.next_u64() % k as u64) as usize
    }
}

/// The seed of client `i`'s picker, from the run's seed: distinct per client.
pub fn client_seed(run_seed: u64, i: u64) -> u64 {
    run_seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_split_agrees_with_home() {
        assert_eq!(split_even(1000, 2), [500, 500]);
        assert_eq!(split_even(100, 3), [34, 33, 33]);
        assert_eq!(split_even(1, 2), [1, 0]);
        assert_eq!(split_even(5, 0), [5], "no instances counts as one");
        for (n, k) in [(1000, 2), (101, 3), (7, 4)] {
            let mut counted = vec![0; k];
            for i in 0..n {
                counted[home(i, k)] += 1;
            }
            assert_eq!(counted, split_even(n, k), "{n} over {k}");
        }
    }

    #[test]
    fn labels_are_letters_then_numbers() {
        assert_eq!(label(0), "A");
        assert_eq!(label(1), "B");
        assert_eq!(label(25), "Z");
        assert_eq!(label(26), "I26");
    }

    #[test]
    fn picks_are_seeded_in_range_and_spread() {
        let mut a = Picker::new(42);
        let mut b = Picker::new(42);
        let picks: Vec<usize> = (0..2000).map(|_| a.pick(2)).collect();
        assert!(picks
            .iter()
            .zip((0..2000).map(|_| b.pick(2)))
            .all(|(x, y)| *x == y));
        let ones = picks.iter().filter(|&&p| p == 1).count();
        assert!((900..=1100).contains(&ones), "{ones} of 2000 on B");
        let mut c = Picker::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[c.pick(3)] += 1;
        }
        assert!(seen.iter().all(|&s| s > 800), "{seen:?}");
        assert_eq!(Picker::new(1).pick(1), 0);
        assert_eq!(Picker::new(1).pick(0), 0);
        assert_ne!(client_seed(9, 1), client_seed(9, 2));
        assert_ne!(
            Picker::new(client_seed(9, 1)).pick(1 << 20),
            Picker::new(client_seed(9, 2)).pick(1 << 20)
        );
    }
}
