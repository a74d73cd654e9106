//! Hard-negative mining building blocks: the selection step ([`select()`]), exact pair scores
//! of positives ([`pair_scores`]) and the per-query random streams ([`rng`]).
//!
//! The search itself is [`crate::search`]; the Python layer chains search, positive scoring and
//! selection chunk by chunk.

mod pairs;
pub mod rng;
mod select;

pub use pairs::{dot_fma, pair_scores};
pub use select::{select, Candidates, PositiveScores, SelectOptions, SelectStats, Sampling, Selection, SIMANS_A, SIMANS_B};
