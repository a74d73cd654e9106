//! The index classes mining runs on, seen as core [`Searcher`]s.
//!
//! `hardneg._hardneg.Miner` accepts any extension index listed in [`IndexRef`]; the Python
//! index classes hand over their extension object (their `_inner` attribute).

use hardneg_core::{MatrixRef, Metric, SearchParams, Searcher, TopK};
use pyo3::prelude::*;

use crate::errors::ParameterError;
use crate::hnsw::HnswIndex;
use crate::index::FlatIndex;
use crate::partial::ShardIndex;

/// A reference to an extension index object, kept alive by the holder.
pub(crate) enum IndexRef {
    Flat(Py<FlatIndex>),
    Shard(Py<ShardIndex>),
    Hnsw(Py<HnswIndex>),
}

impl IndexRef {
    /// The extension index behind `obj`, or a `ParameterError` naming what was given.
    pub(crate) fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(flat) = obj.cast::<FlatIndex>() {
            return Ok(IndexRef::Flat(flat.clone().unbind()));
        }
        if let Ok(shard) = obj.cast::<ShardIndex>() {
            return Ok(IndexRef::Shard(shard.clone().unbind()));
        }
        if let Ok(hnsw) = obj.cast::<HnswIndex>() {
            return Ok(IndexRef::Hnsw(hnsw.clone().unbind()));
        }
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into());
        Err(ParameterError::new_err(format!("expected a hardneg index (hardneg._hardneg.FlatIndex, HnswIndex or ShardIndex), got {kind}")))
    }

    /// The core searcher (frozen classes: no GIL needed to read it).
    pub(crate) fn searcher(&self) -> &dyn Searcher {
        match self {
            IndexRef::Flat(f) => &f.get().index,
            IndexRef::Shard(s) => &s.get().shard,
            IndexRef::Hnsw(h) => &h.get().index,
        }
    }
}

/// The held index searches (a shard wraps any index kind this way).
impl Searcher for IndexRef {
    fn len(&self) -> usize {
        self.searcher().len()
    }

    fn dim(&self) -> usize {
        self.searcher().dim()
    }

    fn metric(&self) -> Metric {
        self.searcher().metric()
    }

    fn search(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>) -> hardneg_core::Result<TopK> {
        self.searcher().search(queries, params)
    }

    fn score(&self, queries: MatrixRef<'_>, ids: &[i64], width: usize) -> hardneg_core::Result<Vec<f32>> {
        self.searcher().score(queries, ids, width)
    }
}
