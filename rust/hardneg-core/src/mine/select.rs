//! The selection step of hard-negative mining: from each query's ranked candidates to its negatives.
//!
//! # Semantics (the order of sentence-transformers' `mine_hard_negatives`)
//!
//! For every query, independently:
//!
//! 1. **Candidates.** The row's `(score, id)` pairs with `id != -1` (`-1` marks a missing or
//!    masked candidate: padding, a positive, an excluded id). They are ranked by descending
//!    score, ties by the earlier column (for rows coming from [`crate::search`] that is the
//!    lower id). Rows already in that order (the search's output) are not re-sorted; rescored
//!    rows (e.g. by a cross-encoder) are.
//! 2. **Filters**, in this order; a candidate removed by one rule is counted under that rule only:
//!    * `absolute_margin` `m`: removed if `score + m > p`, i.e. kept iff `score + m <= p`;
//!    * `relative_margin` `m`: removed if `score > p - |p| * m` (sign-safe; 0.05 is NV-Retriever's
//!      TopK-PercPos 95 %);
//!    * `max_score`: removed if `score > max_score`;
//!    * `min_score`: removed if `score < min_score`.
//!
//!    `p` is the query's **lowest** positive score. Arithmetic is in `f32` (thresholds are rounded
//!    to `f32` once), exactly as sentence-transformers' torch code computes it.
//! 3. **Window.** The survivors keep their rank order; the first `range_min` survivors are skipped
//!    and only survivors of rank `< range_max` are kept (`range_max = None`: no upper bound).
//!    Fed with the top-`range_max` candidates of a search (as [`crate::mine`] does), the pool is
//!    "the `range_max` best candidates after exclusions", filtered, minus the `range_min` best
//!    survivors. Fed with sentence-transformers' own candidate rows (`range_max + max_positives`
//!    columns, positives masked) this is exactly its `topk(range_max)` then `[:, range_min:]`.
//! 4. **Sampling** of `num_negatives` among the `m` window members:
//!    * `Top`: the first `num_negatives`;
//!    * `Random`: a uniform subset without replacement (partial Fisher–Yates on positions);
//!    * `Simans { a, b }`: without replacement with probability proportional to
//!      `exp(-a * (score - p - b)^2)` (SimANS, Zhou et al. 2022), drawn by the Gumbel-top-k trick:
//!      key `-a*(s-p-b)^2 - ln(-ln u)`, the `num_negatives` largest keys win (ties: earlier rank),
//!      which is the distribution of successive weighted draws without replacement.
//!
//!    When `m <= num_negatives` every member is taken and no random number is drawn. The chosen
//!    negatives are returned in rank order (descending score); missing slots are id `-1`, score NaN.
//!
//! Queries without a positive score (every entry NaN): allowed when no rule needs `p`; with a
//! margin or `Simans` the selection fails with [`Error::InvalidParameter`] naming the query.
//!
//! Randomness comes from [`Rng::for_query`]`(seed, query_offset + row)`, so the result of a row
//! depends only on its own data, the options and its global index: never on chunking or threads.

use crate::error::{Error, Result};
use crate::mine::rng::Rng;

/// How negatives are drawn from the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The hardest window members.
    Top,
    /// Uniform without replacement.
    Random,
    /// SimANS: weights `exp(-a * (s - p - b)^2)`, without replacement.
    Simans {
        /// Peakedness (`a > 0`; SimANS default 0.5).
        a: f64,
        /// Shift of the mode relative to the positive score (SimANS default 0).
        b: f64,
    },
}

/// Default SimANS `a` (the `--a` default of microsoft/SimXNS's SimANS scripts).
pub const SIMANS_A: f64 = 0.5;
/// Default SimANS `b` (the `--b` default of microsoft/SimXNS's SimANS scripts).
pub const SIMANS_B: f64 = 0.0;

/// Options of [`select`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectOptions {
    /// Negatives per query (`>= 1`).
    pub num_negatives: usize,
    /// Survivors skipped before the window.
    pub range_min: usize,
    /// Survivors of rank `>= range_max` are dropped; `None` keeps them all.
    pub range_max: Option<usize>,
    /// Remove candidates scoring below.
    pub min_score: Option<f32>,
    /// Remove candidates scoring above.
    pub max_score: Option<f32>,
    /// Keep only `score + m <= p`.
    pub absolute_margin: Option<f32>,
    /// Keep only `score <= p - |p| * m`.
    pub relative_margin: Option<f32>,
    /// Sampling mode.
    pub sampling: Sampling,
    /// Seed of the per-query random streams.
    pub seed: u64,
}

impl SelectOptions {
    /// `num_negatives` top negatives, no filter, no window bound.
    pub fn new(num_negatives: usize) -> Self {
        SelectOptions {
            num_negatives,
            range_min: 0,
            range_max: None,
            min_score: None,
            max_score: None,
            absolute_margin: None,
            relative_margin: None,
            sampling: Sampling::Top,
            seed: 0,
        }
    }

    /// Whether some rule needs the query's positive score.
    pub fn needs_positive(&self) -> Option<&'static str> {
        if self.absolute_margin.is_some() {
            Some("absolute_margin")
        } else if self.relative_margin.is_some() {
            Some("relative_margin")
        } else if matches!(self.sampling, Sampling::Simans { .. }) {
            Some("sampling='simans'")
        } else {
            None
        }
    }

    /// Checks the options against a candidate width (`None`: not known yet).
    pub fn validate(&self, width: Option<usize>) -> Result<()> {
        let n = self.num_negatives;
        if n < 1 {
            return Err(Error::param("num_negatives", format!("num_negatives must be at least 1, got {n}")));
        }
        for (name, v) in [
            ("min_score", self.min_score),
            ("max_score", self.max_score),
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
        ] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(Error::param(name, format!("{name} must be a finite number, got {v}")));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_score, self.max_score) {
            if lo > hi {
                return Err(Error::param(
                    "min_score",
                    format!("min_score={lo} is above max_score={hi}, so no candidate could pass; lower min_score or raise max_score"),
                ));
            }
        }
        if let Sampling::Simans { a, b } = self.sampling {
            if !(a.is_finite() && a > 0.0) {
                return Err(Error::param("simans_a", format!("simans_a must be a finite number > 0, got {a}")));
            }
            if !b.is_finite() {
                return Err(Error::param("simans_b", format!("simans_b must be a finite number, got {b}")));
            }
        }
        if let Some(hi) = self.range_max {
            if self.range_min >= hi {
                return Err(Error::param(
                    "range_min",
                    format!("range_min={} must be smaller than range_max={hi}; lower range_min or raise range_max", self.range_min),
                ));
            }
        }
        let end = match (self.range_max, width) {
            (Some(hi), Some(w)) => Some(hi.min(w)),
            (Some(hi), None) => Some(hi),
            (None, w) => w,
        };
        if let Some(end) = end {
            let window = end.saturating_sub(self.range_min);
            if n > window {
                return Err(Error::param(
                    "num_negatives",
                    format!(
                        "num_negatives={n} is larger than the window: only {window} candidates remain after skipping the first \
                         range_min={} of {end}; lower num_negatives or range_min, or raise range_max",
                        self.range_min
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Counters of a selection; counts add up over chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectStats {
    /// Queries processed.
    pub queries: u64,
    /// Candidates seen (ids other than -1).
    pub candidates: u64,
    /// Removed by `absolute_margin`.
    pub skipped_absolute_margin: u64,
    /// Removed by `relative_margin` (and not by an earlier rule).
    pub skipped_relative_margin: u64,
    /// Removed by `max_score` (and not by an earlier rule).
    pub skipped_max_score: u64,
    /// Removed by `min_score` (and not by an earlier rule).
    pub skipped_min_score: u64,
    /// Survivors skipped by `range_min`.
    pub skipped_range_min: u64,
    /// Survivors beyond `range_max`.
    pub skipped_range_max: u64,
    /// Window members (survivors inside the window).
    pub window: u64,
    /// Queries that got fewer than `num_negatives` negatives.
    pub short_queries: u64,
    /// Queries that got no negative at all.
    pub empty_queries: u64,
    /// Missing negatives over all queries (slots left at -1).
    pub missing_negatives: u64,
}

impl SelectStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &SelectStats) {
        self.queries += o.queries;
        self.candidates += o.candidates;
        self.skipped_absolute_margin += o.skipped_absolute_margin;
        self.skipped_relative_margin += o.skipped_relative_margin;
        self.skipped_max_score += o.skipped_max_score;
        self.skipped_min_score += o.skipped_min_score;
        self.skipped_range_min += o.skipped_range_min;
        self.skipped_range_max += o.skipped_range_max;
        self.window += o.window;
        self.short_queries += o.short_queries;
        self.empty_queries += o.empty_queries;
        self.missing_negatives += o.missing_negatives;
    }

    /// Field names in the order of [`SelectStats::values`].
    pub const NAMES: [&'static str; 12] = [
        "queries",
        "candidates",
        "skipped_absolute_margin",
        "skipped_relative_margin",
        "skipped_max_score",
        "skipped_min_score",
        "skipped_range_min",
        "skipped_range_max",
        "window",
        "short_queries",
        "empty_queries",
        "missing_negatives",
    ];

    /// The counters in the order of [`SelectStats::NAMES`].
    pub fn values(&self) -> [u64; 12] {
        [
            self.queries,
            self.candidates,
            self.skipped_absolute_margin,
            self.skipped_relative_margin,
            self.skipped_max_score,
            self.skipped_min_score,
            self.skipped_range_min,
            self.skipped_range_max,
            self.window,
            self.short_queries,
            self.empty_queries,
            self.missing_negatives,
        ]
    }
}

/// Ranked candidate lists: row-major `[rows, width]` scores and ids (`-1` = missing/masked).
#[derive(Clone, Copy, Debug)]
pub struct Candidates<'a> {
    /// Number of queries.
    pub rows: usize,
    /// Candidates per query.
    pub width: usize,
    /// Scores, `rows * width`.
    pub scores: &'a [f32],
    /// Corpus ids, `rows * width`; `-1` marks a missing or masked candidate.
    pub ids: &'a [i64],
}

impl<'a> Candidates<'a> {
    /// Wraps and checks the buffer lengths.
    pub fn new(rows: usize, width: usize, scores: &'a [f32], ids: &'a [i64]) -> Result<Self> {
        if rows.checked_mul(width) != Some(scores.len()) {
            return Err(Error::BadLength { what: "candidate_scores", len: scores.len(), rows, dim: width });
        }
        if ids.len() != scores.len() {
            return Err(Error::BadLength { what: "candidate_ids", len: ids.len(), rows, dim: width });
        }
        Ok(Candidates { rows, width, scores, ids })
    }
}

/// Per-query positive scores in compressed-row form; NaN entries are padding.
#[derive(Clone, Copy, Debug)]
pub struct PositiveScores<'a> {
    /// Row `q` owns `values[offsets[q]..offsets[q + 1]]`.
    pub offsets: &'a [i64],
    /// Scores (NaN = padding, ignored).
    pub values: &'a [f32],
}

impl PositiveScores<'_> {
    /// The lowest non-NaN score of each row (NaN when the row has none); checks the layout.
    pub fn min_per_row(&self, rows: usize) -> Result<Vec<f32>> {
        let o = self.offsets;
        if o.len() != rows + 1 {
            return Err(Error::RowCountMismatch { what: "positive_scores", expected: rows, got: o.len().saturating_sub(1) });
        }
        if o[0] != 0 || o[rows] as usize != self.values.len() || o.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::param("positive_scores", "offsets must start at 0, never decrease and end at the number of scores"));
        }
        let mut out = Vec::with_capacity(rows);
        for q in 0..rows {
            let mut m = f32::NAN;
            for &v in &self.values[o[q] as usize..o[q + 1] as usize] {
                if v.is_infinite() {
                    return Err(Error::NonFinite { what: "positive_scores", row: q });
                }
                if !v.is_nan() && (m.is_nan() || v < m) {
                    m = v;
                }
            }
            out.push(m);
        }
        Ok(out)
    }
}

/// The output of [`select`]: `[rows, num_negatives]` ids (`-1` = missing) and scores (NaN = missing).
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Number of queries.
    pub rows: usize,
    /// Negatives per query.
    pub num_negatives: usize,
    /// Chosen ids, row-major.
    pub ids: Vec<i64>,
    /// Their scores, row-major.
    pub scores: Vec<f32>,
    /// Counters.
    pub stats: SelectStats,
}

/// Selects negatives for every row of `cands`; see the module documentation for the exact rules.
///
/// `min_positive[q]` is the query's lowest positive score (NaN: none). `query_offset` is the
/// global index of row 0 (it seeds the random streams). `threads` = 0 uses every core.
pub fn select(
    cands: Candidates<'_>,
    min_positive: &[f32],
    query_offset: u64,
    opts: &SelectOptions,
    threads: usize,
) -> Result<Selection> {
    opts.validate(Some(cands.width))?;
    let rows = cands.rows;
    if min_positive.len() != rows {
        return Err(Error::RowCountMismatch { what: "positive_scores", expected: rows, got: min_positive.len() });
    }
    if let Some(rule) = opts.needs_positive() {
        if let Some(q) = min_positive.iter().position(|p| p.is_nan()) {
            return Err(Error::param(
                "positives",
                format!(
                    "query {} has no positive score, but {rule} is measured from the query's lowest positive score; \
                     give every query at least one positive, or drop the queries without one",
                    query_offset + q as u64
                ),
            ));
        }
    }
    if let Some(p) = min_positive.iter().position(|p| p.is_infinite()) {
        return Err(Error::NonFinite { what: "positive_scores", row: p });
    }
    // Validate candidates up front so that errors do not depend on the thread split.
    for q in 0..rows {
        let base = q * cands.width;
        for j in 0..cands.width {
            let id = cands.ids[base + j];
            if id < -1 {
                return Err(Error::NegativeId { what: "candidate_ids", row: q, id });
            }
            if id != -1 && !cands.scores[base + j].is_finite() {
                return Err(Error::NonFinite { what: "candidate_scores", row: q });
            }
        }
    }

    let n = opts.num_negatives;
    let mut ids = vec![-1i64; rows * n];
    let mut scores = vec![f32::NAN; rows * n];
    let work = rows * cands.width.max(1);
    let threads = if work < 1 << 15 { 1 } else { crate::topk::resolve_threads(threads).min(rows).max(1) };
    let per = rows.div_ceil(threads).max(1);
    let mut stats = SelectStats::default();
    if threads == 1 {
        select_rows(cands, min_positive, 0, query_offset, opts, &mut ids, &mut scores, &mut stats);
    } else {
        let parts: Vec<SelectStats> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .chunks_mut(per * n)
                .zip(scores.chunks_mut(per * n))
                .enumerate()
                .map(|(t, (id_part, score_part))| {
                    let start = t * per;
                    s.spawn(move || {
                        let mut st = SelectStats::default();
                        select_rows(cands, min_positive, start, query_offset, opts, id_part, score_part, &mut st);
                        st
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        for p in &parts {
            stats.add(p);
        }
    }
    Ok(Selection { rows, num_negatives: n, ids, scores, stats })
}

#[allow(clippy::too_many_arguments)]
fn select_rows(
    cands: Candidates<'_>,
    min_positive: &[f32],
    start: usize,
    query_offset: u64,
    opts: &SelectOptions,
    out_ids: &mut [i64],
    out_scores: &mut [f32],
    stats: &mut SelectStats,
) {
    let n = opts.num_negatives;
    let mut scratch = Scratch::default();
    for (r, (oi, os)) in out_ids.chunks_mut(n).zip(out_scores.chunks_mut(n)).enumerate() {
        let q = start + r;
        let base = q * cands.width;
        let row_scores = &cands.scores[base..base + cands.width];
        let row_ids = &cands.ids[base..base + cands.width];
        select_row(row_scores, row_ids, min_positive[q], query_offset + q as u64, opts, &mut scratch, oi, os, stats);
    }
}

#[derive(Default)]
struct Scratch {
    ranked: Vec<(f32, u32)>,
    window: Vec<(f32, i64)>,
    picks: Vec<usize>,
    keys: Vec<(f64, usize)>,
}

/// One query. `out_ids` / `out_scores` arrive filled with -1 / NaN.
#[allow(clippy::too_many_arguments)]
fn select_row(
    scores: &[f32],
    ids: &[i64],
    p: f32,
    global_q: u64,
    opts: &SelectOptions,
    sc: &mut Scratch,
    out_ids: &mut [i64],
    out_scores: &mut [f32],
    st: &mut SelectStats,
) {
    st.queries += 1;
    // 1. Candidates in rank order.
    sc.ranked.clear();
    sc.ranked.extend(ids.iter().zip(scores).enumerate().filter(|(_, (&id, _))| id != -1).map(|(j, (_, &s))| (s, j as u32)));
    st.candidates += sc.ranked.len() as u64;
    if sc.ranked.windows(2).any(|w| w[0].0 < w[1].0) {
        // Stable: equal scores keep column order.
        sc.ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    // 2. Filters, 3. window.
    let abs_thr = opts.absolute_margin;
    let rel_thr = opts.relative_margin.map(|m| p - p.abs() * m);
    let hi = opts.range_max.unwrap_or(usize::MAX);
    let mut survivors = 0usize;
    sc.window.clear();
    for &(s, j) in &sc.ranked {
        if let Some(m) = abs_thr {
            if s + m > p {
                st.skipped_absolute_margin += 1;
                continue;
            }
        }
        if let Some(t) = rel_thr {
            if s > t {
                st.skipped_relative_margin += 1;
                continue;
            }
        }
        if let Some(x) = opts.max_score {
            if s > x {
                st.skipped_max_score += 1;
                continue;
            }
        }
        if let Some(x) = opts.min_score {
            if s < x {
                st.skipped_min_score += 1;
                continue;
            }
        }
        let rank = survivors;
        survivors += 1;
        if rank < opts.range_min {
            st.skipped_range_min += 1;
        } else if rank >= hi {
            st.skipped_range_max += 1;
        } else {
            sc.window.push((s, ids[j as usize]));
        }
    }
    let m = sc.window.len();
    st.window += m as u64;
    // 4. Sampling: positions into the window, in rank order.
    let n = opts.num_negatives;
    sc.picks.clear();
    if m <= n {
        sc.picks.extend(0..m);
    } else {
        match opts.sampling {
            Sampling::Top => sc.picks.extend(0..n),
            Sampling::Random => {
                let mut rng = Rng::for_query(opts.seed, global_q);
                sc.picks.extend(0..m);
                for i in 0..n {
                    let j = i + rng.below((m - i) as u64) as usize;
                    sc.picks.swap(i, j);
                }
                sc.picks.truncate(n);
                sc.picks.sort_unstable();
            }
            Sampling::Simans { a, b } => {
                let mut rng = Rng::for_query(opts.seed, global_q);
                let p = f64::from(p);
                sc.keys.clear();
                for (i, &(s, _)) in sc.window.iter().enumerate() {
                    let d = f64::from(s) - p - b;
                    let gumbel = -(-rng.open01().ln()).ln();
                    sc.keys.push((-a * d * d + gumbel, i));
                }
                sc.keys.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                sc.picks.extend(sc.keys[..n].iter().map(|&(_, i)| i));
                sc.picks.sort_unstable();
            }
        }
    }
    for (slot, &i) in sc.picks.iter().enumerate() {
        out_scores[slot] = sc.window[i].0;
        out_ids[slot] = sc.window[i].1;
    }
    if sc.picks.len() < n {
        st.short_queries += 1;
        st.missing_negatives += (n - sc.picks.len()) as u64;
        if sc.picks.is_empty() {
            st.empty_queries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(scores: &[f32], ids: &[i64], p: f32, opts: &SelectOptions) -> Selection {
        let c = Candidates::new(1, scores.len(), scores, ids).unwrap();
        select(c, &[p], 0, opts, 1).unwrap()
    }

    #[test]
    fn worked_example_of_the_documented_order() {
        // Ranked: 0.9(a) 0.8(b) 0.7(masked) 0.6(c) 0.5(d) 0.4(e) 0.1(f); positive 0.85.
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1];
        let ids = [10, 11, -1, 12, 13, 14, 15];
        let opts = SelectOptions {
            absolute_margin: Some(0.1), // removes 0.9 and 0.8 (0.8 + 0.1 > 0.85)
            min_score: Some(0.2),       // removes 0.1
            range_min: 1,               // skips 0.6
            range_max: Some(3),         // survivors of rank 1, 2: 0.5, 0.4
            ..SelectOptions::new(2)
        };
        let got = one(&scores, &ids, 0.85, &opts);
        assert_eq!(got.ids, vec![13, 14]);
        assert_eq!(got.scores, vec![0.5, 0.4]);
        let st = got.stats;
        assert_eq!((st.candidates, st.skipped_absolute_margin, st.skipped_min_score), (6, 2, 1));
        assert_eq!((st.skipped_range_min, st.skipped_range_max, st.window, st.short_queries), (1, 0, 2, 0));
    }

    #[test]
    fn unsorted_rows_are_ranked_with_ties_by_column() {
        let got = one(&[0.1, 0.5, 0.3, 0.5], &[1, 2, 3, 4], f32::NAN, &SelectOptions::new(3));
        assert_eq!(got.ids, vec![2, 4, 3]);
    }

    #[test]
    fn short_rows_are_padded() {
        let got = one(&[0.3, 0.2], &[5, -1], f32::NAN, &SelectOptions::new(2));
        assert_eq!(got.ids, vec![5, -1]);
        assert!(got.scores[1].is_nan());
        assert_eq!((got.stats.short_queries, got.stats.missing_negatives, got.stats.empty_queries), (1, 1, 0));
    }

    #[test]
    fn relative_margin_is_sign_safe() {
        // p = -0.5, m = 0.1: threshold -0.55 (below the positive), not -0.45.
        let opts = SelectOptions { relative_margin: Some(0.1), ..SelectOptions::new(1) };
        let got = one(&[-0.5, -0.54, -0.56], &[1, 2, 3], -0.5, &opts);
        assert_eq!(got.ids, vec![3]);
        assert_eq!(got.stats.skipped_relative_margin, 2);
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bad = |o: SelectOptions, name: &str| match o.validate(Some(10)) {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{other:?}"),
        };
        bad(SelectOptions::new(0), "num_negatives");
        bad(SelectOptions { range_min: 5, range_max: Some(5), ..SelectOptions::new(1) }, "range_min");
        bad(SelectOptions { range_min: 2, range_max: Some(5), ..SelectOptions::new(4) }, "num_negatives");
        bad(SelectOptions::new(11), "num_negatives");
        bad(SelectOptions { min_score: Some(0.5), max_score: Some(0.4), ..SelectOptions::new(1) }, "min_score");
        bad(SelectOptions { relative_margin: Some(f32::NAN), ..SelectOptions::new(1) }, "relative_margin");
        bad(SelectOptions { sampling: Sampling::Simans { a: 0.0, b: 0.0 }, ..SelectOptions::new(1) }, "simans_a");
        bad(SelectOptions { sampling: Sampling::Simans { a: 1.0, b: f64::INFINITY }, ..SelectOptions::new(1) }, "simans_b");
    }

    #[test]
    fn missing_positive_is_an_error_only_when_needed() {
        let c = Candidates::new(2, 2, &[0.3, 0.2, 0.4, 0.1], &[1, 2, 3, 4]).unwrap();
        assert!(select(c, &[0.5, f32::NAN], 0, &SelectOptions::new(1), 1).is_ok());
        let opts = SelectOptions { absolute_margin: Some(0.0), ..SelectOptions::new(1) };
        match select(c, &[0.5, f32::NAN], 40, &opts, 1) {
            Err(Error::InvalidParameter { name: "positives", message }) => assert!(message.contains("query 41"), "{message}"),
            other => panic!("{other:?}"),
        }
        let simans = SelectOptions { sampling: Sampling::Simans { a: SIMANS_A, b: SIMANS_B }, ..SelectOptions::new(1) };
        assert!(select(c, &[f32::NAN, 0.5], 0, &simans, 1).is_err());
    }

    #[test]
    fn bad_candidates_are_rejected() {
        let c = Candidates::new(1, 2, &[f32::NAN, 0.2], &[1, 2]).unwrap();
        assert_eq!(select(c, &[0.0], 0, &SelectOptions::new(1), 1), Err(Error::NonFinite { what: "candidate_scores", row: 0 }));
        // A masked candidate may hold any score (sentence-transformers uses -inf).
        let c = Candidates::new(1, 2, &[f32::NEG_INFINITY, 0.2], &[-1, 2]).unwrap();
        assert_eq!(select(c, &[0.0], 0, &SelectOptions::new(1), 1).unwrap().ids, vec![2]);
        assert!(Candidates::new(2, 2, &[0.0; 3], &[0; 3]).is_err());
        let pos = PositiveScores { offsets: &[0, 2], values: &[0.5, f32::INFINITY] };
        assert_eq!(pos.min_per_row(1), Err(Error::NonFinite { what: "positive_scores", row: 0 }));
        let pos = PositiveScores { offsets: &[0, 3, 3], values: &[0.5, f32::NAN, 0.25] };
        let m = pos.min_per_row(2).unwrap();
        assert_eq!(m[0], 0.25);
        assert!(m[1].is_nan());
    }
}
