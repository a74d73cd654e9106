//! The per-query random stream of the samplers: SplitMix64, seeded from `(seed, query index)`.
//!
//! Each query gets its own generator, seeded only by the user's seed and the query's global
//! index, so sampling never depends on chunking, threads or the order queries are processed in.
//! The generator is simple enough to be re-implemented in a few lines of Python (the tests do).

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a bijective 64-bit mixer).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The generator of query `query` (global index) for `seed`: state `mix64(mix64(seed) ^ query)`.
    pub fn for_query(seed: u64, query: u64) -> Rng {
        Rng { state: mix64(mix64(seed) ^ query) }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in the open interval (0, 1): `((bits >> 11) + 0.5) / 2^53`.
    #[inline]
    pub fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n >= 1`), unbiased ([`lemire_below`]).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        lemire_below(n, || self.next_u64())
    }
}

/// Uniform integer in `0..n` (`n >= 1`) from 64-bit random words, unbiased: Lemire's
/// multiply-and-reject. The rejection threshold `2^64 mod n` is below `n`, so it is computed (a
/// division) only when the low half of the product falls below `n`, which is rare.
#[inline]
pub fn lemire_below(n: u64, mut next: impl FnMut() -> u64) -> u64 {
    debug_assert!(n >= 1);
    let mut m = u128::from(next()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(next()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the original C code).
        let mut r = Rng { state: 1234567 };
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::for_query(7, 3);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let x = r.open01();
        assert!(x > 0.0 && x < 1.0);
    }

    #[test]
    fn streams_differ_by_seed_and_query() {
        let a = Rng::for_query(0, 0).next_u64();
        assert_ne!(a, Rng::for_query(0, 1).next_u64());
        assert_ne!(a, Rng::for_query(1, 0).next_u64());
        assert_eq!(a, Rng::for_query(0, 0).next_u64());
    }
}
