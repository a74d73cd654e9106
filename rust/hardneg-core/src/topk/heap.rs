//! Per-query bounded top-k state for one thread: flat binary min-heaps ordered worst-first.
//!
//! Order: a higher score is better; on equal scores the lower corpus id is better. The root of
//! each heap is its worst entry, and `thresholds[q]` mirrors the root score once the heap is full
//! (minus infinity before) so the kernels can test scores against it while still in registers.

/// `k` results for each of `rows` queries.
pub(crate) struct Heaps {
    k: usize,
    scores: Vec<f32>,
    ids: Vec<u64>,
    lens: Vec<usize>,
    thresholds: Vec<f32>,
}

/// True when (s1, i1) ranks strictly below (s2, i2).
#[inline(always)]
pub(crate) fn worse(s1: f32, i1: u64, s2: f32, i2: u64) -> bool {
    s1 < s2 || (s1 == s2 && i1 > i2)
}

impl Heaps {
    pub(crate) fn new(rows: usize, k: usize) -> Self {
        Heaps {
            k,
            scores: vec![f32::NEG_INFINITY; rows * k],
            ids: vec![u64::MAX; rows * k],
            lens: vec![0; rows],
            thresholds: vec![f32::NEG_INFINITY; rows],
        }
    }

    #[inline(always)]
    pub(crate) fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Offers (score, id) to query `q`'s heap.
    #[inline]
    pub(crate) fn push(&mut self, q: usize, score: f32, id: u64) {
        let k = self.k;
        let base = q * k;
        let s = &mut self.scores[base..base + k];
        let ids = &mut self.ids[base..base + k];
        let len = self.lens[q];
        if len < k {
            let mut i = len;
            while i > 0 {
                let p = (i - 1) / 2;
                if worse(score, id, s[p], ids[p]) {
                    s[i] = s[p];
                    ids[i] = ids[p];
                    i = p;
                } else {
                    break;
                }
            }
            s[i] = score;
            ids[i] = id;
            self.lens[q] = len + 1;
            if len + 1 == k {
                self.thresholds[q] = s[0];
            }
            return;
        }
        if !worse(s[0], ids[0], score, id) {
            return;
        }
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= k {
                break;
            }
            let r = l + 1;
            let c = if r < k && worse(s[r], ids[r], s[l], ids[l]) { r } else { l };
            if worse(s[c], ids[c], score, id) {
                s[i] = s[c];
                ids[i] = ids[c];
                i = c;
            } else {
                break;
            }
        }
        s[i] = score;
        ids[i] = id;
        self.thresholds[q] = s[0];
    }

    /// The (score, id) entries of query `q`, unordered.
    pub(crate) fn entries(&self, q: usize) -> impl Iterator<Item = (f32, u64)> + '_ {
        let base = q * self.k;
        let len = self.lens[q];
        self.scores[base..base + len].iter().copied().zip(self.ids[base..base + len].iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_k_with_low_id_ties() {
        let mut h = Heaps::new(1, 3);
        let items = [(1.0, 9), (5.0, 1), (1.0, 2), (3.0, 4), (1.0, 0), (0.5, 3), (5.0, 0)];
        for &(s, id) in &items {
            h.push(0, s, id);
        }
        let mut got: Vec<_> = h.entries(0).collect();
        got.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(got, vec![(5.0, 0), (5.0, 1), (3.0, 4)]);
        assert_eq!(h.thresholds()[0], 3.0);
    }

    #[test]
    fn threshold_is_minus_infinity_until_full() {
        let mut h = Heaps::new(2, 2);
        h.push(1, 1.0, 0);
        assert_eq!(h.thresholds()[1], f32::NEG_INFINITY);
        h.push(1, 2.0, 1);
        assert_eq!(h.thresholds()[1], 1.0);
        assert_eq!(h.thresholds()[0], f32::NEG_INFINITY);
    }
}
