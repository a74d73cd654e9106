//! Per-query corpus ids that a search must never return (positives, the query itself, ...).

use crate::error::{Error, Result};

/// Per-query id lists as given (compressed rows, `-1` entries are padding), borrowed.
///
/// Row `q` is `ids[offsets[q]..offsets[q + 1]]`. Offsets index `ids` directly, so rows `a..b` of a
/// longer list are `IdRows::new(what, &offsets[a..=b], &ids)`, without copying or rebasing.
#[derive(Clone, Copy, Debug)]
pub struct IdRows<'a> {
    what: &'static str,
    offsets: &'a [i64],
    ids: &'a [i64],
}

impl<'a> IdRows<'a> {
    /// Checks the layout: at least one offset, non-decreasing, inside `ids`. `what` names the
    /// input in error messages.
    pub fn new(what: &'static str, offsets: &'a [i64], ids: &'a [i64]) -> Result<Self> {
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Err(Error::param(what, "offsets must hold at least one value (rows + 1 values)"));
        };
        if first < 0 || last as u64 > ids.len() as u64 {
            return Err(Error::param(what, "offsets must lie between 0 and the number of ids"));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::param(what, "offsets must be non-decreasing"));
        }
        Ok(IdRows { what, offsets, ids })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Row `q` as given (padding and duplicates included).
    #[inline]
    pub fn row(&self, q: usize) -> &'a [i64] {
        &self.ids[self.offsets[q] as usize..self.offsets[q + 1] as usize]
    }

    /// The name of the input, for error messages.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The rows as a row-major `[rows, width]` matrix padded with `-1` (each row as given, then
    /// padding); a row longer than `width` is an error.
    pub fn to_padded(&self, width: usize) -> Result<Vec<i64>> {
        let mut out = vec![-1i64; self.rows() * width];
        for q in 0..self.rows() {
            let row = self.row(q);
            if row.len() > width {
                return Err(Error::param(self.what, format!("query {q} holds {} ids, more than the width {width}", row.len())));
            }
            out[q * width..q * width + row.len()].copy_from_slice(row);
        }
        Ok(out)
    }
}

/// CSR arrays `(offsets, ids)` giving query `q` of `rows` queries the single id `first + q`: each
/// query's own corpus row when queries are the corpus itself (`exclude_self`).
pub fn own_rows(first: u64, rows: usize) -> (Vec<i64>, Vec<i64>) {
    ((0..=rows as i64).collect(), (0..rows as u64).map(|q| (first + q) as i64).collect())
}

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
        Self::union(&[IdRows::new(what, offsets, ids)?], n)
    }

    /// The row-wise union of several id lists with the same number of rows (a query's positives
    /// and its other exclusions). `-1` is padding and is dropped; other ids must lie in `0..n`.
    pub fn union(parts: &[IdRows<'_>], n: usize) -> Result<Self> {
        let rows = parts.first().map_or(0, IdRows::rows);
        if let Some(p) = parts.iter().find(|p| p.rows() != rows) {
            return Err(Error::RowCountMismatch { what: p.what(), expected: rows, got: p.rows() });
        }
        let total = parts.iter().map(|p| (p.offsets[rows] - p.offsets[0]) as usize).sum();
        let mut out = Exclusions { offsets: Vec::with_capacity(rows + 1), ids: Vec::with_capacity(total) };
        out.offsets.push(0);
        for q in 0..rows {
            let start = out.ids.len();
            for p in parts {
                for &id in p.row(q) {
                    if id == -1 {
                        continue;
                    }
                    if id < 0 || id as u64 >= n as u64 {
                        return Err(Error::IdOutOfRange { what: p.what(), row: q, id, n });
                    }
                    out.ids.push(id as u64);
                }
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

    /// The exclusions of the queries `rows` (in that order), as a new set whose row `i` is row
    /// `rows[i]` of this one.
    pub fn select(&self, rows: &[usize]) -> Exclusions {
        let mut out = Exclusions { offsets: Vec::with_capacity(rows.len() + 1), ids: Vec::new() };
        out.offsets.push(0);
        for &q in rows {
            out.ids.extend_from_slice(self.row(q));
            out.offsets.push(out.ids.len());
        }
        out
    }

    /// The number of (distinct) ids excluded for every query.
    pub fn row_lens(&self) -> Vec<i64> {
        self.offsets.windows(2).map(|w| (w[1] - w[0]) as i64).collect()
    }

    /// The largest number of ids excluded for any single query, and that query.
    pub fn max_row_len(&self) -> (usize, usize) {
        (0..self.rows()).map(|q| (self.row(q).len(), q)).max_by_key(|&(len, q)| (len, std::cmp::Reverse(q))).unwrap_or((0, 0))
    }
}

fn dedup_sorted(v: &mut [u64]) -> usize {
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
        let s = e.select(&[2, 0, 2]);
        assert_eq!((s.rows(), s.row(0), s.row(1), s.row(2)), (3, &[0u64][..], &[2u64, 5][..], &[0u64][..]));
    }

    #[test]
    fn rejects_out_of_range_ids() {
        let err = Exclusions::from_rows("exclude", &[vec![1], vec![6]], 6).unwrap_err();
        assert_eq!(err, Error::IdOutOfRange { what: "exclude", row: 1, id: 6, n: 6 });
        let err = Exclusions::from_rows("exclude", &[vec![-2]], 6).unwrap_err();
        assert_eq!(err, Error::IdOutOfRange { what: "exclude", row: 0, id: -2, n: 6 });
    }

    #[test]
    fn id_rows_slice_a_longer_list_without_rebasing() {
        let offsets = [0i64, 2, 2, 5, 6];
        let ids = [3i64, 3, 1, -1, 4, 0];
        let all = IdRows::new("positives", &offsets, &ids).unwrap();
        assert_eq!(Exclusions::union(&[all], 5).unwrap().row_lens(), vec![1, 0, 2, 1]);
        let tail = IdRows::new("positives", &offsets[2..], &ids).unwrap();
        assert_eq!((tail.rows(), tail.row(0)), (2, &[1i64, -1, 4][..]));
        assert_eq!(tail.to_padded(3).unwrap(), vec![1, -1, 4, 0, -1, -1]);
        assert!(matches!(tail.to_padded(2), Err(Error::InvalidParameter { name: "positives", .. })));
        assert!(IdRows::new("p", &[], &ids).is_err());
        assert!(IdRows::new("p", &[0, 7], &ids).is_err());
        assert!(IdRows::new("p", &[-1, 2], &ids).is_err());
        assert!(IdRows::new("p", &[3, 2], &ids).is_err());
    }

    #[test]
    fn union_merges_rows_and_names_the_bad_input() {
        let pos = IdRows::new("positives", &[0, 1, 2], &[4, 0]).unwrap();
        let ex = IdRows::new("exclude", &[0, 2, 2], &[1, 4]).unwrap();
        let u = Exclusions::union(&[pos, ex], 6).unwrap();
        assert_eq!((u.row(0), u.row(1)), (&[1u64, 4][..], &[0u64][..]));
        let bad = IdRows::new("exclude", &[0, 1, 1], &[9]).unwrap();
        assert_eq!(Exclusions::union(&[pos, bad], 6).unwrap_err(), Error::IdOutOfRange { what: "exclude", row: 0, id: 9, n: 6 });
        let short = IdRows::new("exclude", &[0, 1], &[1]).unwrap();
        assert!(matches!(Exclusions::union(&[pos, short], 6), Err(Error::RowCountMismatch { what: "exclude", .. })));
        assert_eq!(Exclusions::union(&[], 6).unwrap().rows(), 0);
        let (o, i) = own_rows(3, 2);
        let own = IdRows::new("exclude_self", &o, &i).unwrap();
        let u = Exclusions::union(&[pos, own], 6).unwrap();
        assert_eq!((u.row(0), u.row(1)), (&[3u64, 4][..], &[0u64, 4][..]));
        assert!(matches!(Exclusions::union(&[own], 4), Err(Error::IdOutOfRange { what: "exclude_self", row: 1, id: 4, .. })));
    }
}
