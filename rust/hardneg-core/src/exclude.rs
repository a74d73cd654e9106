//! Per-query corpus ids that a search must never return (positives, the query itself, ...).

use crate::error::{Error, Result};

/// Per-query excluded ids in compressed-row form, each row sorted and de-duplicated.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    offsets: Vec<usize>,
    ids: Vec<u64>,
}

impl Exclusions {
    /// Builds exclusions from CSR arrays: row `q` owns `ids[offsets[q]..offsets[q + 1]]`.
    /// `-1` is padding and is dropped; other ids must lie in `0..n`.
    pub fn from_csr(what: &'static str, offsets: &[i64], ids: &[i64], n: usize) -> Result<Self> {
        if offsets.is_empty() || offsets[0] != 0 || *offsets.last().unwrap() as usize != ids.len() {
            return Err(Error::param(what, "offsets must start at 0 and end at the number of ids"));
        }
        let rows = offsets.len() - 1;
        let mut out = Exclusions { offsets: Vec::with_capacity(rows + 1), ids: Vec::with_capacity(ids.len()) };
        out.offsets.push(0);
        for q in 0..rows {
            let (a, b) = (offsets[q], offsets[q + 1]);
            if a < 0 || a > b || b as usize > ids.len() {
                return Err(Error::param(what, "offsets must be non-decreasing"));
            }
            let start = out.ids.len();
            for &id in &ids[a as usize..b as usize] {
                if id == -1 {
                    continue;
                }
                if id < 0 || id as u64 >= n as u64 {
                    return Err(Error::IdOutOfRange { what, row: q, id, n });
                }
                out.ids.push(id as u64);
            }
            let row = &mut out.ids[start..];
            row.sort_unstable();
            let unique = dedup_sorted(row);
            out.ids.truncate(start + unique);
            out.offsets.push(out.ids.len());
        }
        Ok(out)
    }

    /// Builds exclusions from one list per query.
    pub fn from_rows(what: &'static str, rows: &[Vec<i64>], n: usize) -> Result<Self> {
        let mut offsets = vec![0i64];
        let mut ids = Vec::new();
        for r in rows {
            ids.extend_from_slice(r);
            offsets.push(ids.len() as i64);
        }
        Self::from_csr(what, &offsets, &ids, n)
    }

    /// Builds exclusions from rows that are already sorted and unique (a sampler's positives,
    /// a triple's known entities), one row per query.
    pub fn from_sorted_rows<'a>(rows: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut out = Exclusions { offsets: vec![0], ids: Vec::new() };
        for row in rows {
            debug_assert!(row.windows(2).all(|w| w[0] < w[1]), "rows must be sorted and unique");
            out.ids.extend(row.iter().map(|&x| u64::from(x)));
            out.offsets.push(out.ids.len());
        }
        out
    }

    /// Number of queries covered.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The sorted, unique excluded ids of query `q`.
    #[inline]
    pub fn row(&self, q: usize) -> &[u64] {
        &self.ids[self.offsets[q]..self.offsets[q + 1]]
    }

    /// Whether `id` is excluded for query `q`.
    #[inline]
    pub fn contains(&self, q: usize, id: u64) -> bool {
        let row = self.row(q);
        !row.is_empty() && row.binary_search(&id).is_ok()
    }

    /// The largest number of ids excluded for any single query, and that query.
    pub fn max_row_len(&self) -> (usize, usize) {
        (0..self.rows()).map(|q| (self.row(q).len(), q)).max_by_key(|&(len, q)| (len, std::cmp::Reverse(q))).unwrap_or((0, 0))
    }
}

/// Moves the distinct values of the sorted `v` to its front and returns their number.
pub(crate) fn dedup_sorted<T: PartialEq + Copy>(v: &mut [T]) -> usize {
    if v.is_empty() {
        return 0;
    }
    let mut w = 1;
    for r in 1..v.len() {
        if v[r] != v[w - 1] {
            v[w] = v[r];
            w += 1;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_dedups_and_drops_padding() {
        let e = Exclusions::from_rows("exclude", &[vec![5, -1, 2, 5], vec![], vec![0]], 6).unwrap();
        assert_eq!(e.rows(), 3);
        assert_eq!(e.row(0), &[2, 5]);
        assert!(e.row(1).is_empty());
        assert!(e.contains(0, 5) && !e.contains(0, 3) && e.contains(2, 0));
        assert_eq!(e.max_row_len(), (2, 0));
    }

    #[test]
    fn rejects_out_of_range_ids() {
        let err = Exclusions::from_rows("exclude", &[vec![1], vec![6]], 6).unwrap_err();
        assert_eq!(err, Error::IdOutOfRange { what: "exclude", row: 1, id: 6, n: 6 });
        let err = Exclusions::from_rows("exclude", &[vec![-2]], 6).unwrap_err();
        assert_eq!(err, Error::IdOutOfRange { what: "exclude", row: 0, id: -2, n: 6 });
    }
}
