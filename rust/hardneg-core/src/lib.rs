//! hardneg-core: the pure-Rust engine behind the `hardneg` Python package.
//!
//! * [`topk`]: exact fused SIMD top-k similarity search (queries x corpus) with per-query
//!   exclusions; the score matrix is never materialised.
//! * [`matrix`]: borrowed row-major matrices and their validation (shape, finiteness).
//! * [`exclude`]: per-query id lists that a search must never return.
//! * [`index`]: the [`Searcher`] trait mining runs on, and the exact [`FlatIndex`].
//! * [`partial`]: search split over corpus shards: a shard's top-k with global ids and the
//!   exact merge of shards' results.
//! * [`hnsw`]: approximate top-k on an HNSW graph (usearch) with the same output and exclusions.
//! * [`mine`]: hard-negative selection (filters, rank window, top/random/SimANS sampling).
//! * [`sample`]: negative sampling for recommendation (items a user never interacted with) and
//!   knowledge graphs (filtered triple corruption).
//! * [`synthetic`]: deterministic pseudo-random data for tests, examples and benchmarks.
//! * [`cluster`]: balanced spherical 2-means and spherical k-means; [`batchplan`]: epoch plans
//!   of cluster-balanced mini-batches.
//!
//! Nothing here knows about Python: errors are the typed [`Error`] enum and cancellation is an
//! [`std::sync::atomic::AtomicBool`] polled between corpus chunks.

pub mod error;
pub mod exclude;
pub mod hnsw;
pub mod index;
pub mod matrix;
pub mod mine;
pub mod partial;
pub mod sample;
pub mod synthetic;
pub mod topk;

pub use error::{Error, Result};
pub use exclude::{Exclusions, IdRows};
pub use index::{FlatIndex, Metric, SearchParams, Searcher};
pub use matrix::MatrixRef;
pub use topk::{kernel_stats, pair_score, score_ids, search, Bf16Rows, Isa, Kernel, KernelCounter, KernelStats, SearchOptions, TopK};

pub mod cluster;
pub mod batchplan;
