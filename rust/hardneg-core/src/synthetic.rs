//! Deterministic pseudo-random data for tests, examples and benchmarks (a 64-bit LCG, the same
//! stream on every platform), so they need no random-number crate.

/// The next value of the stream `seed`: uniform in [-0.5, 0.5), 24 random bits.
pub fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// `len` values of the stream that starts at `seed` (see [`lcg`]).
pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len).map(|_| lcg(&mut s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed_and_in_range() {
        let v = uniform(1000, 7);
        assert_eq!(v, uniform(1000, 7));
        assert_ne!(v, uniform(1000, 8));
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
        let mut s = 7;
        assert_eq!(lcg(&mut s), v[0]);
    }
}
