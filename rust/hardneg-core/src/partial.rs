//! Search split over corpus shards: the top-k of one shard with global ids ([`search_partial`])
//! and the exact merge of such partial results ([`merge_topk`]).
//!
//! Every result row is ordered by (score descending, id ascending), a strict total order on
//! finite scores, so a query's global top-k is unique. Each of its members has fewer than `k`
//! better rows in its own shard, hence it is in that shard's top-k; taking the first `k` of the
//! union of the shards' lists under the same order gives the global top-k. A pair's score does
//! not depend on the shard, the chunking or the thread count (see [`crate::topk`]), so the merge
//! of the shards' results equals a search over the whole corpus, bit for bit. The merge is
//! associative and commutative: shards can be merged in any order or as a tree.
//!
//! [`Shard`] shows one shard to the mining engine as the whole corpus (global ids), so a rank of
//! a distributed run gets its candidate lists from [`crate::mine::Miner::candidates`] and, after
//! the merge, its negatives from [`crate::mine::Miner::select`]: the same code as one process.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::exclude::Exclusions;
use crate::index::{Metric, SearchParams, Searcher};
use crate::matrix::MatrixRef;
use crate::mine::Candidates;
use crate::topk::{resolve_threads, TopK};

impl TopK {
    /// This result as candidate lists (the parts [`merge_topk`] merges).
    pub fn view(&self) -> Candidates<'_> {
        Candidates { rows: self.rows, width: self.k, scores: &self.scores, ids: &self.ids }
    }
}

/// One row of a part.
fn row<'a>(part: &Candidates<'a>, q: usize) -> (&'a [f32], &'a [i64]) {
    let w = part.width;
    (&part.scores[q * w..(q + 1) * w], &part.ids[q * w..(q + 1) * w])
}

/// Per-query id lists in compressed-row form over the *whole* corpus: row `q` owns
/// `ids[offsets[q]..offsets[q + 1]]`; `-1` entries are padding.
#[derive(Clone, Copy, Debug)]
pub struct GlobalIds<'a> {
    /// `rows + 1` offsets, from 0 to `ids.len()`, never decreasing.
    pub offsets: &'a [i64],
    /// Global corpus ids.
    pub ids: &'a [i64],
}

/// What a [`search_partial`] call asks for.
#[derive(Clone, Copy, Debug)]
pub struct PartialParams<'a> {
    /// Results per query (`>= 1`); a shard with fewer candidates pads its rows.
    pub k: usize,
    /// Global id of the shard's row 0.
    pub row_offset: u64,
    /// Ids never returned, per query, in global ids (ids outside the shard are ignored).
    pub exclude: Option<GlobalIds<'a>>,
    /// Rows of the whole corpus, if known: the shard and the excluded ids must lie below it.
    pub total_rows: Option<u64>,
    /// Worker threads (0 means all available cores).
    pub threads: usize,
    /// Set to true from another thread to stop with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl<'a> PartialParams<'a> {
    /// `k` results of a shard starting at global row `row_offset`, nothing excluded.
    pub fn new(k: usize, row_offset: u64) -> Self {
        PartialParams { k, row_offset, exclude: None, total_rows: None, threads: 0, cancel: None }
    }
}

/// The top-k of every query over one corpus shard, with global ids.
///
/// `shard` holds global rows `row_offset..row_offset + shard.len()`. Exclusions are given in
/// global ids and applied inside the search; a query with fewer than `k` candidates in the shard
/// gets its row padded with id `-1` / score NaN. The result, fed with the other shards' results to
/// [`merge_topk`], equals the search of the whole corpus.
pub fn search_partial(shard: &dyn Searcher, queries: MatrixRef<'_>, params: &PartialParams<'_>) -> Result<TopK> {
    let n = shard.len();
    let end = params.row_offset.checked_add(n as u64).filter(|&e| e <= i64::MAX as u64);
    let Some(end) = end else {
        return Err(Error::param("row_offset", format!("row_offset={} plus the shard's {n} rows overflows a 64-bit id", params.row_offset)));
    };
    if let Some(total) = params.total_rows {
        if end > total {
            return Err(Error::param(
                "row_offset",
                format!("the shard holds global rows {}..{end} but the corpus has only {total} rows; fix row_offset or total_rows", params.row_offset),
            ));
        }
    }
    let local = match params.exclude {
        Some(ex) => Some(shard_exclusions(ex, queries.rows(), params.row_offset, n, params.total_rows)?),
        None => None,
    };
    let search = SearchParams { k: params.k, exclude: local.as_ref(), threads: params.threads, cancel: params.cancel };
    let mut top = shard.search(queries, &search)?;
    let offset = params.row_offset as i64;
    for id in top.ids.iter_mut().filter(|id| **id >= 0) {
        *id += offset;
    }
    Ok(top)
}

/// The excluded ids that fall inside global rows `row_offset..row_offset + n`, as shard-local ids.
fn shard_exclusions(ex: GlobalIds<'_>, rows: usize, row_offset: u64, n: usize, total: Option<u64>) -> Result<Exclusions> {
    let o = ex.offsets;
    if o.len() != rows + 1 {
        return Err(Error::RowCountMismatch { what: "exclude", expected: rows, got: o.len().saturating_sub(1) });
    }
    if o[0] != 0 || o[rows] as u64 != ex.ids.len() as u64 || o.windows(2).any(|w| w[0] > w[1]) {
        return Err(Error::param("exclude", "offsets must start at 0, never decrease and end at the number of ids"));
    }
    let mut offsets = Vec::with_capacity(rows + 1);
    let mut ids = Vec::new();
    offsets.push(0i64);
    for q in 0..rows {
        for &id in &ex.ids[o[q] as usize..o[q + 1] as usize] {
            if id == -1 {
                continue;
            }
            if id < -1 {
                return Err(Error::NegativeId { what: "exclude", row: q, id });
            }
            if let Some(t) = total {
                if id as u64 >= t {
                    return Err(Error::IdOutOfRange { what: "exclude", row: q, id, n: t as usize });
                }
            }
            let local = (id as u64).wrapping_sub(row_offset);
            if local < n as u64 {
                ids.push(local as i64);
            }
        }
        offsets.push(ids.len() as i64);
    }
    Exclusions::from_csr("exclude", &offsets, &ids, n)
}

/// One shard of a corpus of `total_rows` rows, holding global rows
/// `row_offset..row_offset + inner.len()` (no rows when `inner` is `None`), as a [`Searcher`]
/// over the whole corpus: ids are global, exclusions are given in global ids, a search returns
/// the shard's best rows (padded with `-1` / NaN), and [`Searcher::score`] scores the ids the
/// shard holds and gives NaN to the rows of other shards (ids outside `0..total_rows` are errors).
pub struct Shard<S> {
    inner: Option<S>,
    row_offset: u64,
    total_rows: usize,
    dim: usize,
    metric: Metric,
}

impl<S: Searcher> Shard<S> {
    /// Checks that the shard lies inside the corpus and matches `dim` and `metric`.
    pub fn new(inner: Option<S>, row_offset: u64, total_rows: usize, dim: usize, metric: Metric) -> Result<Self> {
        if let Some(s) = &inner {
            let end = row_offset.checked_add(s.len() as u64).filter(|&e| e <= total_rows as u64);
            if end.is_none() {
                return Err(Error::param(
                    "row_offset",
                    format!("the shard holds global rows {row_offset}..{row_offset}+{} but the corpus has only {total_rows} rows; fix row_offset or the corpus size", s.len()),
                ));
            }
            if s.dim() != dim {
                return Err(Error::param("dim", format!("the shard has dimension {} but the corpus has dimension {dim}", s.dim())));
            }
            if s.metric() != metric {
                return Err(Error::param("metric", format!("the shard measures {} but the corpus {}", s.metric().name(), metric.name())));
            }
        }
        Ok(Shard { inner, row_offset, total_rows, dim, metric })
    }

    fn rows(&self) -> usize {
        self.inner.as_ref().map_or(0, Searcher::len)
    }
}

impl<S: Searcher> Searcher for Shard<S> {
    fn len(&self) -> usize {
        self.total_rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn search(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>) -> Result<TopK> {
        let rows = queries.rows();
        let Some(inner) = self.inner.as_ref().filter(|s| !s.is_empty()) else {
            if params.k < 1 {
                return Err(Error::param("k", format!("k must be at least 1, got {}", params.k)));
            }
            return Ok(TopK { rows, k: params.k, scores: vec![f32::NAN; rows * params.k], ids: vec![-1; rows * params.k] });
        };
        let local = params.exclude.map(|ex| ex.window(self.row_offset, self.rows()));
        let mut top = inner.search(queries, &SearchParams { exclude: local.as_ref(), ..*params })?;
        let offset = self.row_offset as i64;
        top.ids.iter_mut().filter(|id| **id >= 0).for_each(|id| *id += offset);
        Ok(top)
    }

    fn score(&self, queries: MatrixRef<'_>, ids: &[i64], width: usize) -> Result<Vec<f32>> {
        let (start, end) = (self.row_offset as i64, (self.row_offset + self.rows() as u64) as i64);
        let mut local = Vec::with_capacity(ids.len());
        for (j, &id) in ids.iter().enumerate() {
            if id < -1 || id >= self.total_rows as i64 {
                return Err(Error::IdOutOfRange { what: "ids", row: j / width.max(1), id, n: self.total_rows });
            }
            local.push(if (start..end).contains(&id) { id - start } else { -1 });
        }
        match &self.inner {
            Some(inner) => inner.score(queries, &local, width),
            None => Ok(vec![f32::NAN; local.len()]),
        }
    }
}

/// One entry of a row being merged; the greatest entry is the best (higher score, then lower id).
#[derive(Clone, Copy)]
struct Head {
    score: f32,
    id: i64,
    part: usize,
    pos: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.id.cmp(&self.id)).then(other.part.cmp(&self.part))
    }
}

/// Checks that row `q` of part `p` is ordered (score descending, id ascending), holds no NaN
/// score and no id below -1, and keeps its `-1` padding at the end.
fn check_row(p: usize, q: usize, scores: &[f32], ids: &[i64]) -> Result<()> {
    let live = ids.iter().position(|&id| id == -1).unwrap_or(ids.len());
    if let Some(&id) = ids[live..].iter().find(|&&id| id != -1) {
        return Err(Error::param("parts", format!("part {p}, query {q}: id {id} follows padding (-1); padding must end a row")));
    }
    for j in 0..live {
        let (s, id) = (scores[j], ids[j]);
        if id < -1 {
            return Err(Error::NegativeId { what: "partial ids", row: q, id });
        }
        if s.is_nan() {
            return Err(Error::NonFinite { what: "partial scores", row: q });
        }
        if j > 0 {
            let (ps, pid) = (scores[j - 1], ids[j - 1]);
            if ps < s || (ps == s && pid >= id) {
                return Err(Error::param(
                    "parts",
                    format!(
                        "part {p}, query {q} is not ordered by descending score then ascending id at position {j} \
                         ({ps}, id {pid}) before ({s}, id {id}); pass rows as search_partial returns them"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Merges the rows `start..end` of every part.
fn merge_rows(parts: &[Candidates<'_>], k: usize, start: usize, end: usize) -> Result<(Vec<f32>, Vec<i64>)> {
    let mut scores = Vec::with_capacity((end - start) * k);
    let mut ids = Vec::with_capacity((end - start) * k);
    let mut heap = BinaryHeap::with_capacity(parts.len());
    for q in start..end {
        heap.clear();
        for (p, part) in parts.iter().enumerate() {
            let (s, i) = row(part, q);
            check_row(p, q, s, i)?;
            if let Some(&id) = i.first().filter(|&&id| id != -1) {
                heap.push(Head { score: s[0], id, part: p, pos: 0 });
            }
        }
        let row_start = ids.len();
        while ids.len() - row_start < k {
            let Some(best) = heap.pop() else { break };
            if ids.len() > row_start && ids[ids.len() - 1] == best.id {
                return Err(Error::param(
                    "parts",
                    format!("id {} appears in two parts for query {q}: the shards overlap; give every corpus row to one shard", best.id),
                ));
            }
            scores.push(best.score);
            ids.push(best.id);
            let (s, i) = row(&parts[best.part], q);
            let next = best.pos + 1;
            if next < i.len() && i[next] != -1 {
                heap.push(Head { score: s[next], id: i[next], part: best.part, pos: next });
            }
        }
        let filled = ids.len() - row_start;
        scores.extend(std::iter::repeat_n(f32::NAN, k - filled));
        ids.extend(std::iter::repeat_n(-1, k - filled));
    }
    Ok((scores, ids))
}

/// The exact top-`k` of every query over the union of partial results.
///
/// Each part is one shard's result ([`search_partial`]) for the same queries: rows ordered by
/// (score descending, id ascending), global ids, `-1` padding at the end; parts may have
/// different widths. The merged rows follow the same order and are padded with `-1` / NaN when
/// all parts together hold fewer than `k` entries. Unordered rows, NaN scores, ids below -1 and
/// an entry that two parts both hold (overlapping shards) once it reaches the merged rows are
/// errors. The result does
/// not depend on the order of `parts` or on `threads`.
pub fn merge_topk(parts: &[Candidates<'_>], k: usize, threads: usize) -> Result<TopK> {
    if k < 1 {
        return Err(Error::param("k", format!("k must be at least 1, got {k}")));
    }
    let Some(first) = parts.first() else {
        return Err(Error::param("parts", "give at least one partial result"));
    };
    let rows = first.rows;
    if let Some(bad) = parts.iter().find(|p| p.rows != rows) {
        return Err(Error::RowCountMismatch { what: "parts", expected: rows, got: bad.rows });
    }
    // Per-query work is k heap operations; split the rows only when there are enough of them.
    let threads = resolve_threads(threads).min(rows.div_ceil(256)).max(1);
    let (scores, ids) = if threads == 1 {
        merge_rows(parts, k, 0, rows)?
    } else {
        let per = rows.div_ceil(threads);
        let pieces = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (a, b) = ((t * per).min(rows), ((t + 1) * per).min(rows));
                    s.spawn(move || merge_rows(parts, k, a, b))
                })
                .collect();
            // In row order: the first error is the one of the lowest row, whatever the split.
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Result<Vec<_>>>()
        })?;
        let mut scores = Vec::with_capacity(rows * k);
        let mut ids = Vec::with_capacity(rows * k);
        for (s, i) in pieces {
            scores.extend(s);
            ids.extend(i);
        }
        (scores, ids)
    };
    Ok(TopK { rows, k, scores, ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{FlatIndex, Metric};

    fn data(n: usize, seed: u64, steps: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * steps
            })
            .map(|x| if steps > 2.0 { x.round() } else { x })
            .collect()
    }

    fn bits(t: &TopK) -> (Vec<u32>, Vec<i64>) {
        (t.scores.iter().map(|x| x.to_bits()).collect(), t.ids.clone())
    }

    #[test]
    fn merged_shards_equal_the_whole_corpus_bit_for_bit() {
        // Integer-valued data: many exact ties, some straddling shard boundaries.
        let (nq, n, d) = (9, 230, 5);
        for (steps, metric) in [(6.0, Metric::InnerProduct), (1.0, Metric::Cosine), (6.0, Metric::Cosine)] {
            let q = data(nq * d, 1, steps);
            let c = data(n * d, 2, steps);
            let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
            let whole = FlatIndex::new(c.as_slice(), n, d, metric, 1).unwrap();
            let excl: Vec<Vec<i64>> = (0..nq as i64).map(|i| vec![i * 13 % n as i64, (i * 29 + 100) % n as i64, -1]).collect();
            let (mut eo, mut ei) = (vec![0i64], vec![]);
            for r in &excl {
                ei.extend_from_slice(r);
                eo.push(ei.len() as i64);
            }
            let ex = GlobalIds { offsets: &eo, ids: &ei };
            for k in [1, 7, 40] {
                let all = Exclusions::from_csr("exclude", &eo, &ei, n).unwrap();
                let want = whole.search(qm, &SearchParams { exclude: Some(&all), ..SearchParams::new(k) }).unwrap();
                for cuts in [vec![0, 115, 230], vec![0, 3, 100, 230], vec![0, 229, 230], vec![0, 64, 128, 192, 230]] {
                    let shards: Vec<TopK> = cuts
                        .windows(2)
                        .map(|w| {
                            let idx = FlatIndex::new(&c[w[0] * d..w[1] * d], w[1] - w[0], d, metric, 1).unwrap();
                            let p = PartialParams { exclude: Some(ex), total_rows: Some(n as u64), threads: 2, ..PartialParams::new(k, w[0] as u64) };
                            search_partial(&idx, qm, &p).unwrap()
                        })
                        .collect();
                    let mut views: Vec<Candidates> = shards.iter().map(TopK::view).collect();
                    let got = merge_topk(&views, k, 1).unwrap();
                    assert_eq!(bits(&got), bits(&want), "k={k} cuts={cuts:?} {metric:?}");
                    views.reverse();
                    assert_eq!(bits(&merge_topk(&views, k, 3).unwrap()), bits(&want));
                }
            }
        }
    }

    #[test]
    fn mining_over_shards_equals_mining_the_whole_corpus() {
        use crate::exclude::IdRows;
        use crate::mine::{MineOptions, Miner, QueryChunk, Sampling};

        // Ties across shards, positives and exclusions on every shard, a shard shorter than k,
        // an empty shard, each sampling mode.
        let (nq, n, d, k) = (11, 120, 4, 30);
        let c = data(n * d, 7, 6.0);
        let q = data(nq * d, 8, 6.0);
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let (po, pi): (Vec<i64>, Vec<i64>) = ((0..=nq as i64).map(|i| 2 * i).collect(), (0..nq as i64).flat_map(|i| [i * 11 % 120, (i * 37 + 5) % 120]).collect());
        let (eo, ei): (Vec<i64>, Vec<i64>) = ((0..=nq as i64).collect(), (0..nq as i64).map(|i| (i * 53 + 1) % 120).collect());
        let chunk = QueryChunk {
            queries: qm,
            positives: IdRows::new("positives", &po, &pi).unwrap(),
            exclude: Some(IdRows::new("exclude", &eo, &ei).unwrap()),
            query_offset: 3,
        };
        for (metric, sampling) in [(Metric::InnerProduct, Sampling::Top), (Metric::Cosine, Sampling::Random), (Metric::Cosine, Sampling::Simans { a: 0.5, b: 0.0 })] {
            let mut opts = MineOptions::new(6, k, 2);
            opts.select.sampling = sampling;
            opts.select.relative_margin = Some(0.05);
            opts.select.seed = 9;
            opts.exclude_self = true;
            let whole = FlatIndex::new(c.as_slice(), n, d, metric, 1).unwrap();
            let want = Miner::new(&whole, opts).unwrap().mine(&chunk, None).unwrap();
            for cuts in [vec![0, 60, 120], vec![0, 7, 7, 90, 120]] {
                let idx: Vec<FlatIndex> = cuts.windows(2).filter(|w| w[1] > w[0]).map(|w| FlatIndex::new(&c[w[0] * d..w[1] * d], w[1] - w[0], d, metric, 1).unwrap()).collect();
                let mut held = idx.iter();
                let shards: Vec<Shard<&FlatIndex>> = cuts
                    .windows(2)
                    .map(|w| Shard::new((w[1] > w[0]).then(|| held.next().unwrap()), w[0] as u64, n, d, metric).unwrap())
                    .collect();
                let parts: Vec<_> = shards.iter().map(|s| Miner::new(s, opts).unwrap().candidates(&chunk, None).unwrap()).collect();
                let merged = merge_topk(&parts.iter().map(|p| p.top.view()).collect::<Vec<_>>(), k, 1).unwrap();
                // Exactly one shard scores each positive; the others give NaN.
                let pos: Vec<f32> = (0..parts[0].positive_scores.len())
                    .map(|j| parts.iter().map(|p| p.positive_scores[j]).fold(f32::NAN, f32::max))
                    .collect();
                let lone = Shard::new(None::<&FlatIndex>, 0, n, d, metric).unwrap();
                let sel = Miner::new(&lone, opts).unwrap().select(merged.view(), &pos, chunk.query_offset).unwrap();
                assert_eq!(sel.ids, want.negatives, "{cuts:?} {sampling:?}");
                assert_eq!(sel.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                assert_eq!(pos.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.positive_scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                assert_eq!(sel.stats, want.stats);
            }
        }
    }

    #[test]
    fn a_shard_rejects_what_lies_outside_the_corpus() {
        let (n, d) = (5, 2);
        let c = data(n * d, 3, 6.0);
        let idx = FlatIndex::new(c.as_slice(), n, d, Metric::InnerProduct, 1).unwrap();
        assert!(matches!(Shard::new(Some(&idx), 3, 7, d, Metric::InnerProduct), Err(Error::InvalidParameter { name: "row_offset", .. })));
        assert!(matches!(Shard::new(Some(&idx), 0, 7, 3, Metric::InnerProduct), Err(Error::InvalidParameter { name: "dim", .. })));
        assert!(matches!(Shard::new(Some(&idx), 0, 7, d, Metric::Cosine), Err(Error::InvalidParameter { name: "metric", .. })));
        let s = Shard::new(Some(&idx), 2, 7, d, Metric::InnerProduct).unwrap();
        let q = data(d, 4, 6.0);
        let qm = MatrixRef::new("queries", &q, 1, d).unwrap();
        let got = s.score(qm, &[2, 1, -1, 6], 4).unwrap();
        assert_eq!(got[0].to_bits(), idx.score(qm, &[0], 1).unwrap()[0].to_bits());
        assert!(got[1].is_nan() && got[2].is_nan() && got[3].to_bits() == idx.score(qm, &[4], 1).unwrap()[0].to_bits());
        assert!(matches!(s.score(qm, &[7], 1), Err(Error::IdOutOfRange { id: 7, n: 7, .. })));
    }

    #[test]
    fn short_shards_pad_and_the_merge_pads_what_all_lack() {
        let (n, d) = (4, 3);
        let c = data(n * d, 3, 6.0);
        let q = data(2 * d, 4, 6.0);
        let qm = MatrixRef::new("queries", &q, 2, d).unwrap();
        let a = search_partial(&FlatIndex::new(&c[..d], 1, d, Metric::InnerProduct, 1).unwrap(), qm, &PartialParams::new(3, 0)).unwrap();
        assert_eq!(&a.ids[..3], &[0, -1, -1]);
        assert!(a.scores[1].is_nan());
        let eo = [0i64, 1, 1];
        let ei = [2i64];
        let p = PartialParams { exclude: Some(GlobalIds { offsets: &eo, ids: &ei }), ..PartialParams::new(3, 1) };
        let b = search_partial(&FlatIndex::new(&c[d..], 3, d, Metric::InnerProduct, 1).unwrap(), qm, &p).unwrap();
        assert!(!b.ids[..3].contains(&2) && b.ids[2] == -1);
        let m = merge_topk(&[a.view(), b.view()], 5, 1).unwrap();
        assert_eq!(m.ids[3..5], [-1, -1]);
        assert_eq!(m.ids[5..10].iter().filter(|&&i| i == -1).count(), 1);
    }

    #[test]
    fn bad_partials_are_typed_errors() {
        let s = [3.0f32, 2.0, 1.0];
        let ok = Candidates::new(1, 3, &s, &[0, 1, 2]).unwrap();
        assert!(matches!(Candidates::new(2, 3, &s, &[0, 1, 2]), Err(Error::BadLength { .. })));
        let unordered = Candidates::new(1, 3, &[1.0, 2.0, 0.0], &[5, 6, 7]).unwrap();
        assert!(matches!(merge_topk(&[ok, unordered], 2, 1), Err(Error::InvalidParameter { name: "parts", .. })));
        let tie_order = Candidates::new(1, 3, &[2.0, 2.0, 0.0], &[6, 5, 7]).unwrap();
        assert!(matches!(merge_topk(&[tie_order], 2, 1), Err(Error::InvalidParameter { name: "parts", .. })));
        let overlap = Candidates::new(1, 3, &[2.0, 0.5, 0.0], &[1, 8, 9]).unwrap();
        let err = merge_topk(&[ok, overlap], 3, 1).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        let nan = Candidates::new(1, 3, &[f32::NAN, 1.0, 0.0], &[4, 5, 6]).unwrap();
        assert!(matches!(merge_topk(&[nan], 1, 1), Err(Error::NonFinite { .. })));
        let gap = Candidates::new(1, 3, &[1.0, f32::NAN, 0.0], &[4, -1, 6]).unwrap();
        assert!(matches!(merge_topk(&[gap], 1, 1), Err(Error::InvalidParameter { name: "parts", .. })));
        let other_rows = Candidates::new(0, 3, &[], &[]).unwrap();
        assert!(matches!(merge_topk(&[ok, other_rows], 1, 1), Err(Error::RowCountMismatch { .. })));
        assert!(matches!(merge_topk(&[], 1, 1), Err(Error::InvalidParameter { name: "parts", .. })));
        assert!(matches!(merge_topk(&[ok], 0, 1), Err(Error::InvalidParameter { name: "k", .. })));

        let c = [0.0f32; 6];
        let idx = FlatIndex::new(&c[..], 2, 3, Metric::InnerProduct, 1).unwrap();
        let q = [1.0f32; 3];
        let qm = MatrixRef::new("queries", &q, 1, 3).unwrap();
        let far = PartialParams { total_rows: Some(5), ..PartialParams::new(1, 4) };
        assert!(matches!(search_partial(&idx, qm, &far), Err(Error::InvalidParameter { name: "row_offset", .. })));
        let huge = PartialParams::new(1, i64::MAX as u64);
        assert!(matches!(search_partial(&idx, qm, &huge), Err(Error::InvalidParameter { name: "row_offset", .. })));
        let (o, bad) = ([0i64, 1], [-3i64]);
        let p = PartialParams { exclude: Some(GlobalIds { offsets: &o, ids: &bad }), ..PartialParams::new(1, 0) };
        assert_eq!(search_partial(&idx, qm, &p).unwrap_err(), Error::NegativeId { what: "exclude", row: 0, id: -3 });
        let beyond = [9i64];
        let p = PartialParams { exclude: Some(GlobalIds { offsets: &o, ids: &beyond }), total_rows: Some(6), ..PartialParams::new(1, 0) };
        assert!(matches!(search_partial(&idx, qm, &p), Err(Error::IdOutOfRange { id: 9, .. })));
        let rows = [0i64, 0, 0];
        let p = PartialParams { exclude: Some(GlobalIds { offsets: &rows, ids: &[] }), ..PartialParams::new(1, 0) };
        assert!(matches!(search_partial(&idx, qm, &p), Err(Error::RowCountMismatch { .. })));
    }
}
