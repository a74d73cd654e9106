//! A small deterministic PRNG (splitmix64 seeding + xoshiro256**), independent of thread order.
//!
//! Every random decision of the clustering and batch planning draws from a generator seeded by
//! a hash of *what* is being decided (the seed plus a node path or an epoch), never from a
//! shared stream, so results do not depend on which thread runs first.

/// One step of splitmix64: a good 64-bit mixer, also used to hash seeds and paths together.
#[inline]
pub fn splitmix64(z: u64) -> u64 {
    crate::mine::rng::mix64(z.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// Hashes a list of words into one seed.
pub fn hash_words(words: &[u64]) -> u64 {
    words.iter().fold(0x6A09_E667_F3BC_C908u64, |h, &w| splitmix64(h ^ splitmix64(w)))
}

/// xoshiro256** generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose state is expanded from `seed` with splitmix64.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *w = splitmix64(z);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    /// A generator for the decision named by `words` (for example `[seed, path]`).
    pub fn for_words(words: &[u64]) -> Self {
        Rng::new(hash_words(words))
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire's method).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        crate::mine::rng::lemire_below(n as u64, || self.next_u64()) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// Moves a uniform random sample of `m` elements to the front of `v` (the first `m` steps
    /// of a forward Fisher-Yates shuffle), in the order drawn.
    pub fn partial_shuffle<T>(&mut self, v: &mut [T], m: usize) {
        for i in 0..m.min(v.len()) {
            let j = i + self.below(v.len() - i);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(7);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[r.below(10)] += 1;
        }
        for &c in &counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_seeded() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        Rng::new(3).shuffle(&mut a);
        Rng::new(3).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(hash_words(&[1, 2]), hash_words(&[2, 1]));
    }
}
