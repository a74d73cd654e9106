//! Walker's alias method (Vose's construction): O(1) draws from a fixed discrete distribution.
//!
//! A column is 8 bytes (the keep probability as a 32-bit threshold, and the alias), so the table
//! of 100,000 items stays in L2; each column's split is exact up to that 2^-32 rounding, which
//! [`AliasTable::probabilities`] reports.

use crate::error::{Error, Result};
use crate::mine::rng::Rng;

/// One column of the table: keep the column's own id when 32 random bits fall below `keep`,
/// else take `alias` (a column that always keeps itself has itself as alias).
#[derive(Clone, Copy, Debug)]
struct Column {
    keep: u32,
    alias: u32,
}

/// Draws per [`AliasTable::draw_into`] call.
pub const BATCH: usize = 16;

/// Draws id `i` of `0..n` with probability `weights[i] / sum(weights)`; ids of weight 0 are never drawn.
#[derive(Clone, Debug)]
pub struct AliasTable {
    columns: Vec<Column>,
}

impl AliasTable {
    /// Builds the table. Weights must be finite, `>= 0`, with a positive sum, and at most
    /// `u32::MAX` of them.
    pub fn new(weights: &[f64]) -> Result<Self> {
        let n = weights.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::param("weights", format!("need between 1 and {} weights, got {n}", u32::MAX)));
        }
        if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::param("weights", format!("weight {i} is {}; weights must be finite and >= 0", weights[i])));
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::param("weights", "the weights sum to 0 (or overflow); give at least one positive weight"));
        }
        // Scaled so that the mean column holds exactly 1.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![1.0f64; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<u32>, Vec<u32>) = (0..n as u32).partition(|&i| scaled[i as usize] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            (keep[s as usize], alias[s as usize]) = (scaled[s as usize], l);
            scaled[l as usize] -= 1.0 - scaled[s as usize];
            if scaled[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers hold 1 up to rounding: they keep themselves (keep 1, alias self, from the
        // initial values). A zero-weight id never keeps its column; should rounding have left it
        // unpaired, its column goes to the heaviest id (its share is a rounding error).
        let heaviest = (0..n).max_by(|&a, &b| weights[a].total_cmp(&weights[b])).unwrap_or(0) as u32;
        let columns = (0..n)
            .map(|i| {
                if weights[i] == 0.0 {
                    let a = if alias[i] == i as u32 { heaviest } else { alias[i] };
                    return Column { keep: 0, alias: a };
                }
                let k = (keep[i] * 4_294_967_296.0).round();
                Column { keep: if k >= u32::MAX as f64 { u32::MAX } else { k as u32 }, alias: if k >= u32::MAX as f64 { i as u32 } else { alias[i] } }
            })
            .collect();
        Ok(AliasTable { columns })
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the table is empty (never: construction needs one weight).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// One draw: a uniform column, then its own id or its alias.
    #[inline]
    pub fn draw(&self, rng: &mut Rng) -> u32 {
        let i = rng.below(self.columns.len() as u64) as u32;
        let coin = (rng.next_u64() >> 32) as u32;
        self.pick(i, coin)
    }

    /// `out.len()` draws, the same as as many [`AliasTable::draw`] calls: the random numbers are
    /// drawn first so that the table reads are independent and overlap in the memory system.
    #[inline]
    pub fn draw_into(&self, rng: &mut Rng, out: &mut [u32; BATCH]) {
        let mut coins = [0u32; BATCH];
        for (o, c) in out.iter_mut().zip(&mut coins) {
            *o = rng.below(self.columns.len() as u64) as u32;
            *c = (rng.next_u64() >> 32) as u32;
        }
        for (o, &c) in out.iter_mut().zip(&coins) {
            *o = self.pick(*o, c);
        }
    }

    #[inline]
    fn pick(&self, i: u32, coin: u32) -> u32 {
        let c = self.columns[i as usize];
        if coin < c.keep {
            i
        } else {
            c.alias
        }
    }

    /// The exact probability of each id under [`AliasTable::draw`] (sum of its column shares).
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.columns.len() as f64;
        let mut p = vec![0.0; self.columns.len()];
        for (i, c) in self.columns.iter().enumerate() {
            let keep = f64::from(c.keep) / 4_294_967_296.0;
            p[i] += keep / n;
            p[c.alias as usize] += (1.0 - keep) / n;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_equal_the_normalised_weights() {
        for w in [vec![1.0], vec![3.0, 1.0], vec![0.0, 5.0, 0.0, 1.0, 2.0], (1..200).map(|i| 1.0 / i as f64).collect::<Vec<_>>()] {
            let t = AliasTable::new(&w).unwrap();
            let total: f64 = w.iter().sum();
            for (p, wi) in t.probabilities().iter().zip(&w) {
                assert!((p - wi / total).abs() < 1e-9, "{w:?}");
            }
        }
    }

    #[test]
    fn draws_follow_the_weights_and_skip_zero_weights() {
        let w = [0.0, 6.0, 0.0, 3.0, 1.0];
        let t = AliasTable::new(&w).unwrap();
        let mut rng = Rng::for_query(1, 2);
        let mut counts = [0u32; 5];
        let mut batch = [0u32; BATCH];
        for _ in 0..100_000 / BATCH {
            t.draw_into(&mut rng, &mut batch);
            batch.iter().for_each(|&x| counts[x as usize] += 1);
        }
        // a batch is the same as single draws
        let (mut a, mut b) = (Rng::for_query(5, 5), Rng::for_query(5, 5));
        t.draw_into(&mut a, &mut batch);
        assert_eq!(batch.to_vec(), (0..BATCH).map(|_| t.draw(&mut b)).collect::<Vec<_>>());
        assert_eq!((counts[0], counts[2]), (0, 0));
        for (c, want) in [(counts[1], 60_000.0), (counts[3], 30_000.0), (counts[4], 10_000.0)] {
            assert!((f64::from(c) - want).abs() < 5.0 * want.sqrt(), "{counts:?}");
        }
    }

    #[test]
    fn rejects_bad_weights() {
        assert!(AliasTable::new(&[]).is_err());
        assert!(AliasTable::new(&[0.0, 0.0]).is_err());
        assert!(AliasTable::new(&[1.0, f64::NAN]).is_err());
        assert!(AliasTable::new(&[1.0, -1.0]).is_err());
    }
}
