//! Indexes behind one search interface: the [`Searcher`] trait, and the exact [`FlatIndex`].
//!
//! A searcher answers the two questions mining asks of an index, for a chunk of queries at a
//! time: the `k` best corpus rows of each query with some ids excluded, and the scores of given
//! ids computed exactly as the search computes them (so a positive and an equal candidate compare
//! consistently). [`crate::mine::Miner`] works over any `&dyn Searcher`.

pub mod file;
mod flat;
mod storage;

use std::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::exclude::Exclusions;
use crate::matrix::MatrixRef;
use crate::topk::TopK;

pub use flat::{F32Rows, FlatIndex, KernelOptions};
pub use storage::Storage;

/// How query-corpus similarity is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Inner product.
    InnerProduct,
    /// Cosine similarity (inner product of L2-normalised vectors; zero rows score 0).
    Cosine,
}

impl Metric {
    /// `"ip"` or `"cosine"`, the names the Python API uses.
    pub fn name(self) -> &'static str {
        match self {
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// The metric called `name` (see [`Metric::name`]).
    pub fn from_name(name: &str) -> Result<Metric> {
        match name {
            "ip" => Ok(Metric::InnerProduct),
            "cosine" => Ok(Metric::Cosine),
            other => Err(Error::param("metric", format!("metric must be 'ip' or 'cosine', got {other:?}"))),
        }
    }
}

/// What a [`Searcher::search`] call asks for.
#[derive(Clone, Copy, Debug)]
pub struct SearchParams<'a> {
    /// Results per query (`>= 1`).
    pub k: usize,
    /// Ids never returned, one row per query of the chunk.
    pub exclude: Option<&'a Exclusions>,
    /// Worker threads (0 means all available cores).
    pub threads: usize,
    /// Set to true from another thread to stop with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl<'a> SearchParams<'a> {
    /// `k` results per query, no exclusions, every core, no cancellation.
    pub fn new(k: usize) -> Self {
        SearchParams { k, exclude: None, threads: 0, cancel: None }
    }
}

/// An index that mining can run on: exact (`FlatIndex`) or approximate.
///
/// Contract of [`Searcher::search`]: row `q` of the result holds query `q`'s best corpus rows by
/// descending score (ties by the lower id), never an id excluded for `q`; a query with fewer than
/// `k` candidates gets its row filled up with id `-1` and score NaN (never an error). Queries
/// holding NaN/Inf fail with [`Error::NonFinite`].
///
/// Contract of [`Searcher::score`]: `ids` is row-major `[queries.rows(), width]`; the score of
/// each (query, id) pair is bit-identical to the score a search returns for that pair; id `-1`
/// scores NaN; any other id outside `0..len()` is [`Error::IdOutOfRange`].
pub trait Searcher: Sync {
    /// Number of corpus rows (ids are `0..len()`).
    fn len(&self) -> usize;

    /// Whether the corpus is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embedding dimension.
    fn dim(&self) -> usize;

    /// The similarity the scores measure.
    fn metric(&self) -> Metric;

    /// The `params.k` best rows of every query, padded with `-1` / NaN.
    fn search(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>) -> Result<TopK>;

    /// Scores of given ids, exactly as [`Searcher::search`] scores them.
    fn score(&self, queries: MatrixRef<'_>, ids: &[i64], width: usize) -> Result<Vec<f32>>;
}
