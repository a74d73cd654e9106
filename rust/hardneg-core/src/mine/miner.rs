//! The streaming mining engine: one call turns a chunk of queries into their negatives.
//!
//! [`Miner::mine`] runs, for a chunk of queries and over any [`Searcher`]:
//!
//! 1. the search for the `candidates` best corpus rows of every query (default `range_max`),
//!    with the query's `exclude` ids (and, in [`PositiveMode::Exclude`], its positives; with
//!    `exclude_self`, its own row) skipped inside the search; a query with fewer candidates gets a
//!    short row (padding `-1`);
//! 2. in [`PositiveMode::Mask`], candidates that are positives of their query are masked (`-1`)
//!    after the search, as sentence-transformers does;
//! 3. the positives' scores, by [`Searcher::score`] (bit-identical to the search's scores);
//! 4. the selection ([`crate::mine::select()`]): filters against the lowest positive score,
//!    rank window, sampling seeded by the query's global index.
//!
//! Nothing depends on how the queries are cut into chunks or on the thread count.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::exclude::{own_rows, Exclusions, IdRows};
use crate::index::{SearchParams, Searcher};
use crate::matrix::MatrixRef;
use crate::mine::select::{select, Candidates, PositiveScores, SelectOptions, SelectStats};
use crate::topk::TopK;

/// What the search does with a query's positives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositiveMode {
    /// Skipped inside the search: the pool is the best rows that are not positives.
    Exclude,
    /// Searched like any row, then masked: they take a place in the candidate list but are never
    /// chosen (sentence-transformers' `mine_hard_negatives`).
    Mask,
    /// Ordinary candidates (sentence-transformers' `include_positives=True`).
    Keep,
}

/// Options of a [`Miner`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MineOptions {
    /// Filters, window and sampling; `range_max` bounds the pool.
    pub select: SelectOptions,
    /// Rows searched per query; `None` means `select.range_max` (one of the two must be given).
    pub candidates: Option<usize>,
    /// What happens to positives.
    pub positives: PositiveMode,
    /// Query `i` (global index) never gets corpus row `i`: queries are the corpus itself.
    pub exclude_self: bool,
    /// Columns of the padded positive ids and scores returned (at least the longest positive row).
    pub positive_width: usize,
    /// Worker threads (0: every core); results do not depend on it.
    pub threads: usize,
}

impl MineOptions {
    /// `num_negatives` top negatives from a pool of `range_max`, positives excluded.
    pub fn new(num_negatives: usize, range_max: usize, positive_width: usize) -> Self {
        MineOptions {
            select: SelectOptions { range_max: Some(range_max), ..SelectOptions::new(num_negatives) },
            candidates: None,
            positives: PositiveMode::Exclude,
            exclude_self: false,
            positive_width,
            threads: 0,
        }
    }
}

/// A chunk of queries with their per-query id lists (`-1` entries are padding).
#[derive(Clone, Copy, Debug)]
pub struct QueryChunk<'a> {
    /// Query embeddings, `[rows, dim]`.
    pub queries: MatrixRef<'a>,
    /// Positive corpus ids of each query.
    pub positives: IdRows<'a>,
    /// More ids never returned, per query.
    pub exclude: Option<IdRows<'a>>,
    /// Global index of the chunk's first query (it seeds the random streams).
    pub query_offset: u64,
}

/// The candidate lists of a chunk ([`Miner::candidates`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkCandidates {
    /// `[rows, candidates]` by descending score; `-1` marks padding and masked positives.
    pub top: TopK,
    /// Columns of the positive arrays.
    pub positive_width: usize,
    /// `[rows, positive_width]`: each query's positives as given, padded with `-1`.
    pub positive_ids: Vec<i64>,
    /// Their scores (the search's computation), NaN for padding.
    pub positive_scores: Vec<f32>,
}

/// The negatives of a chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct MinedChunk {
    /// Number of queries.
    pub rows: usize,
    /// Negatives per query.
    pub num_negatives: usize,
    /// `[rows, num_negatives]` corpus ids in rank order, `-1` where a query got too few.
    pub negatives: Vec<i64>,
    /// Their scores, NaN for `-1`.
    pub scores: Vec<f32>,
    /// Columns of the positive arrays.
    pub positive_width: usize,
    /// `[rows, positive_width]`: each query's positives as given, padded with `-1`.
    pub positive_ids: Vec<i64>,
    /// Their scores (the search's computation), NaN for padding.
    pub positive_scores: Vec<f32>,
    /// Counters of the selection.
    pub stats: SelectStats,
}

/// Mines chunks of queries against one index.
pub struct Miner<'s> {
    searcher: &'s dyn Searcher,
    opts: MineOptions,
    k: usize,
}

impl<'s> Miner<'s> {
    /// Checks the options against the index.
    pub fn new(searcher: &'s dyn Searcher, opts: MineOptions) -> Result<Self> {
        let k = match (opts.candidates, opts.select.range_max) {
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => return Err(Error::param("range_max", "give range_max or the number of candidates to search")),
        };
        if k < 1 {
            return Err(Error::param("candidates", format!("the number of candidates must be at least 1, got {k}")));
        }
        opts.select.validate(Some(k))?;
        Ok(Miner { searcher, opts, k })
    }

    /// The candidate lists of a chunk, before selection: search (with exclusions, or masking,
    /// of positives) and positive scores. [`Miner::mine`] is this followed by the selection;
    /// callers that rescore candidates (a cross-encoder) select themselves.
    pub fn candidates(&self, chunk: &QueryChunk<'_>, cancel: Option<&AtomicBool>) -> Result<ChunkCandidates> {
        let (rows, n, width) = (chunk.queries.rows(), self.searcher.len(), self.opts.positive_width);
        for part in std::iter::once(&chunk.positives).chain(chunk.exclude.as_ref()) {
            if part.rows() != rows {
                return Err(Error::RowCountMismatch { what: part.what(), expected: rows, got: part.rows() });
            }
        }
        let own = if self.opts.exclude_self { own_rows(chunk.query_offset, rows) } else { Default::default() };
        let mut parts = Vec::with_capacity(3);
        if self.opts.positives == PositiveMode::Exclude {
            parts.push(chunk.positives);
        }
        parts.extend(chunk.exclude);
        if self.opts.exclude_self {
            parts.push(IdRows::new("exclude_self", &own.0, &own.1)?);
        }
        let exclude = if parts.is_empty() { None } else { Some(Exclusions::union(&parts, n)?) };
        let params = SearchParams { k: self.k, exclude: exclude.as_ref(), threads: self.opts.threads, cancel };
        let mut top = self.searcher.search(chunk.queries, &params)?;
        if self.opts.positives == PositiveMode::Mask {
            let positives = Exclusions::union(&[chunk.positives], n)?;
            for (q, ids) in top.ids.chunks_mut(self.k).enumerate() {
                ids.iter_mut().filter(|id| **id >= 0 && positives.contains(q, **id as u64)).for_each(|id| *id = -1);
            }
        }
        let positive_ids = chunk.positives.to_padded(width)?;
        let positive_scores = if width == 0 { Vec::new() } else { self.searcher.score(chunk.queries, &positive_ids, width)? };
        Ok(ChunkCandidates { top, positive_width: width, positive_ids, positive_scores })
    }

    /// Mines one chunk: search, positive scores, selection. `cancel` stops it with
    /// [`Error::Cancelled`].
    pub fn mine(&self, chunk: &QueryChunk<'_>, cancel: Option<&AtomicBool>) -> Result<MinedChunk> {
        let c = self.candidates(chunk, cancel)?;
        let (rows, width) = (c.top.rows, c.positive_width);
        let offsets: Vec<i64> = (0..=rows).map(|r| (r * width) as i64).collect();
        let min_positive = PositiveScores { offsets: &offsets, values: &c.positive_scores }.min_per_row(rows)?;
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        let cands = Candidates::new(rows, self.k, &c.top.scores, &c.top.ids)?;
        let sel = select(cands, &min_positive, chunk.query_offset, &self.opts.select, self.opts.threads)?;
        Ok(MinedChunk {
            rows,
            num_negatives: sel.num_negatives,
            negatives: sel.ids,
            scores: sel.scores,
            positive_width: width,
            positive_ids: c.positive_ids,
            positive_scores: c.positive_scores,
            stats: sel.stats,
        })
    }
}
