//! Per-query candidate reservoirs of the AMX scan: append above a threshold, shrink rarely.
//!
//! Each query owns `2 * keep` slots. A candidate that beats the query's threshold is appended;
//! when the slots are full, a selection keeps the `keep` best and the threshold becomes the
//! worst kept score. So every candidate ever dropped or refused scored at most the threshold,
//! which is what the certificate needs, and an append costs O(1) amortised (a heap costs a
//! log-depth sift for every admitted row, and the scan admits many early on).

/// Candidates of every query of one scan thread.
pub(crate) struct Reservoirs {
    cap: usize,
    keep: usize,
    scores: Vec<f32>,
    ids: Vec<u32>,
    lens: Vec<u32>,
    thresholds: Vec<f32>,
    scratch: Vec<(f32, u32)>,
}

impl Reservoirs {
    /// `rows` queries keeping at least `keep` candidates each.
    pub(crate) fn new(rows: usize, keep: usize) -> Self {
        let keep = keep.max(1);
        let cap = 2 * keep;
        Reservoirs {
            cap,
            keep,
            scores: vec![0.0; rows * cap],
            ids: vec![0; rows * cap],
            lens: vec![0; rows],
            thresholds: vec![f32::NEG_INFINITY; rows],
            scratch: Vec::with_capacity(cap),
        }
    }

    /// Each query's threshold: only scores above it are worth offering. Minus infinity until
    /// the query's slots first fill.
    #[inline(always)]
    pub(crate) fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Appends (score, id) to query `q`, which the caller checked beats its threshold.
    #[inline]
    pub(crate) fn push(&mut self, q: usize, score: f32, id: u32) {
        debug_assert!(score > self.thresholds[q]);
        let mut len = self.lens[q] as usize;
        if len == self.cap {
            len = self.shrink(q);
        }
        let at = q * self.cap + len;
        self.scores[at] = score;
        self.ids[at] = id;
        self.lens[q] = len as u32 + 1;
    }

    /// Keeps the `keep` best of query `q` (ties in any order) and raises its threshold to the
    /// worst of them. Returns the new length.
    #[cold]
    fn shrink(&mut self, q: usize) -> usize {
        let base = q * self.cap;
        self.scratch.clear();
        self.scratch.extend(self.scores[base..base + self.cap].iter().copied().zip(self.ids[base..base + self.cap].iter().copied()));
        let keep = self.keep;
        self.scratch.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
        for (i, &(s, id)) in self.scratch[..keep].iter().enumerate() {
            self.scores[base + i] = s;
            self.ids[base + i] = id;
        }
        self.thresholds[q] = self.scratch[keep - 1].0;
        keep
    }

    /// The (score, id) candidates of query `q`, unordered; all beat the final threshold.
    pub(crate) fn entries(&self, q: usize) -> impl Iterator<Item = (f32, u64)> + '_ {
        let base = q * self.cap;
        let len = self.lens[q] as usize;
        self.scores[base..base + len].iter().copied().zip(self.ids[base..base + len].iter().map(|&i| u64::from(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_and_every_dropped_score_is_at_most_the_threshold() {
        let mut r = Reservoirs::new(2, 3);
        let mut seed = 5u64;
        let mut offered = vec![];
        for id in 0..200u32 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let s = ((seed >> 40) % 50) as f32; // many ties
            if s > r.thresholds()[1] {
                r.push(1, s, id);
            }
            offered.push((s, id));
        }
        let kept: Vec<(f32, u64)> = r.entries(1).collect();
        let thr = r.thresholds()[1];
        assert!(kept.len() >= 3 && kept.len() <= 6);
        assert!(kept.iter().all(|&(s, _)| s >= thr));
        for &(s, id) in &offered {
            if !kept.iter().any(|&(_, k)| k == u64::from(id)) {
                assert!(s <= thr, "dropped {s} above threshold {thr}");
            }
        }
        // the three best scores are all kept
        let mut all: Vec<f32> = offered.iter().map(|x| x.0).collect();
        all.sort_by(|a, b| b.total_cmp(a));
        let mut ks: Vec<f32> = kept.iter().map(|x| x.0).collect();
        ks.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(&ks[..3], &all[..3]);
        assert_eq!(r.entries(0).count(), 0);
        assert_eq!(r.thresholds()[0], f32::NEG_INFINITY);
    }
}
