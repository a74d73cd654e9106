//! Hard-negative mining building blocks: the selection step ([`select()`]) and the per-query
//! random streams ([`rng`]).
//!
//! The search is [`crate::search`] and positives are scored by [`crate::topk::score_ids`]; the
//! Python layer chains search, positive scoring and selection chunk by chunk.

pub mod rng;
mod select;

pub use select::{select, Candidates, PositiveScores, SelectOptions, SelectStats, Sampling, Selection, SIMANS_A, SIMANS_B};
