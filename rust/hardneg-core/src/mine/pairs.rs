//! Scores of given (query, corpus id) pairs, computed exactly like the search computes them.

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;

/// The score of query `q` against corpus row `c`: the sequential fused multiply-add chain of the
/// top-k kernels (`acc = fma(q[t], c[t], acc)` from zero), so a pair scores bit-identically here
/// and in [`crate::search`].
#[inline]
pub fn dot_fma(q: &[f32], c: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (&x, &y) in q.iter().zip(c) {
        acc = x.mul_add(y, acc);
    }
    acc
}

/// Scores of per-query id lists in compressed-row form: row `q` owns `ids[offsets[q]..offsets[q+1]]`.
///
/// Returns one score per id (NaN for the padding id `-1`). Ids must lie in `0..corpus.rows()`.
pub fn pair_scores(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, offsets: &[i64], ids: &[i64]) -> Result<Vec<f32>> {
    let (nq, n) = (queries.rows(), corpus.rows());
    if queries.dim() != corpus.dim() {
        return Err(Error::DimensionMismatch { what: "queries", expected: corpus.dim(), got: queries.dim() });
    }
    if offsets.len() != nq + 1 {
        return Err(Error::RowCountMismatch { what: "positives", expected: nq, got: offsets.len().saturating_sub(1) });
    }
    if offsets[0] != 0 || offsets[nq] as usize != ids.len() || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(Error::param("positives", "offsets must start at 0, never decrease and end at the number of ids"));
    }
    let mut out = Vec::with_capacity(ids.len());
    for q in 0..nq {
        for &id in &ids[offsets[q] as usize..offsets[q + 1] as usize] {
            if id == -1 {
                out.push(f32::NAN);
            } else if id < 0 || id as u64 >= n as u64 {
                return Err(Error::IdOutOfRange { what: "positives", row: q, id, n });
            } else {
                out.push(dot_fma(queries.row(q), corpus.row(id as usize)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{search, SearchOptions};

    #[test]
    fn pair_scores_equal_search_scores_bit_for_bit() {
        let (nq, n, d) = (5, 300, 37);
        let mut s = 17u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let q: Vec<f32> = (0..nq * d).map(|_| next()).collect();
        let c: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let top = search(qm, cm, &SearchOptions::new(n)).unwrap();
        let offsets: Vec<i64> = (0..=nq as i64).map(|i| i * n as i64).collect();
        let got = pair_scores(qm, cm, &offsets, &top.ids).unwrap();
        assert_eq!(got, top.scores);
    }

    #[test]
    fn padding_and_bad_ids() {
        let q = vec![1.0f32, 2.0];
        let c = vec![1.0f32, 0.0, 0.0, 1.0];
        let qm = MatrixRef::new("queries", &q, 1, 2).unwrap();
        let cm = MatrixRef::new("corpus", &c, 2, 2).unwrap();
        let got = pair_scores(qm, cm, &[0, 3], &[1, -1, 0]).unwrap();
        assert_eq!(got[0], 2.0);
        assert!(got[1].is_nan());
        assert_eq!(got[2], 1.0);
        assert_eq!(pair_scores(qm, cm, &[0, 1], &[2]), Err(Error::IdOutOfRange { what: "positives", row: 0, id: 2, n: 2 }));
        assert!(matches!(pair_scores(qm, cm, &[0, 1, 1], &[0]), Err(Error::RowCountMismatch { .. })));
    }
}
