//! Hard-negative mining: the streaming engine ([`Miner`]), the selection step ([`select()`]) and
//! the per-query random streams ([`rng`]).
//!
//! [`Miner::mine`] takes a chunk of queries with their positives and exclusions and returns their
//! negatives in one call over any [`crate::index::Searcher`]; [`select()`] is also usable alone on
//! candidate lists from elsewhere (e.g. rescored by a cross-encoder).

mod miner;
pub mod rng;
mod select;

pub use miner::{ChunkCandidates, MineOptions, MinedChunk, Miner, PositiveMode, QueryChunk};
pub use select::{select, Candidates, PositiveScores, SelectOptions, SelectStats, Sampling, Selection, SIMANS_A, SIMANS_B};
