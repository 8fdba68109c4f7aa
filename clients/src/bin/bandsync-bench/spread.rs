//! How the cluster scenarios spread clients over instances: evenly (so each instance
//! carries the same audience and per-instance figures compare). Pure arithmetic, kept
//! apart from the sockets so it can be tested.

/// The instance's letter in reports: A (the leader's), B, C...
pub fn label(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("I{index}"),
    }
}

/// `n` clients over `k` instances as evenly as whole clients allow: the first `n % k`
/// instances get one more.
pub fn split_even(n: u64, k: usize) -> Vec<u64> {
    let k = k.max(1);
    let (base, extra) = (n / k as u64, (n % k as u64) as usize);
    (0..k).map(|i| base + u64::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_even() {
        assert_eq!(split_even(1000, 2), [500, 500]);
        assert_eq!(split_even(100, 3), [34, 33, 33]);
        assert_eq!(split_even(1, 2), [1, 0]);
        assert_eq!(split_even(5, 0), [5], "no instances counts as one");
    }

    #[test]
    fn labels_are_letters_then_numbers() {
        assert_eq!(label(0), "A");
        assert_eq!(label(1), "B");
        assert_eq!(label(25), "Z");
        assert_eq!(label(26), "I26");
    }
}
