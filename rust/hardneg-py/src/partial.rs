//! Bindings of search split over corpus shards: `search_partial` over a `FlatIndex` shard,
//! `merge_topk` of partial results, and `ShardIndex` (a shard the mining engine mines as the
//! whole corpus).

use hardneg_core::mine::Candidates;
use hardneg_core::partial::{self, GlobalIds, PartialParams, Shard};
use hardneg_core::Metric;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{contiguous, matrix_ref};
use crate::detach::run_detached;
use crate::errors::{ParameterError, ShapeError};
use crate::index::FlatIndex;
use crate::searcher::IndexRef;

/// `(scores float32 [Q, k], ids int64 [Q, k])`.
type ScoresIds<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

fn to_arrays(py: Python<'_>, top: hardneg_core::TopK) -> ScoresIds<'_> {
    let scores = Array2::from_shape_vec((top.rows, top.k), top.scores).expect("shape").into_pyarray(py);
    let ids = Array2::from_shape_vec((top.rows, top.k), top.ids).expect("shape").into_pyarray(py);
    (scores, ids)
}

/// Top-k of a shard with global ids (`row_offset` + local row), exclusions in global ids,
/// short rows padded with -1 / NaN.
#[pyfunction]
#[pyo3(signature = (shard, queries, k, *, row_offset = 0, exclude_offsets = None, exclude_ids = None, total_rows = None, threads = 0))]
#[allow(clippy::too_many_arguments)]
pub fn search_partial<'py>(
    py: Python<'py>,
    shard: &FlatIndex,
    queries: PyReadonlyArray2<'py, f32>,
    k: usize,
    row_offset: u64,
    exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
    exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
    total_rows: Option<u64>,
    threads: usize,
) -> PyResult<ScoresIds<'py>> {
    let q = matrix_ref("queries", &queries)?;
    let exclude = match (&exclude_offsets, &exclude_ids) {
        (Some(o), Some(i)) => Some(GlobalIds { offsets: o.as_slice()?, ids: i.as_slice()? }),
        (None, None) => None,
        _ => return Err(ParameterError::new_err("give both exclude_offsets and exclude_ids, or neither")),
    };
    let top = run_detached(py, |cancel| {
        let params = PartialParams { k, row_offset, exclude, total_rows, threads, cancel: Some(cancel) };
        partial::search_partial(&shard.index, q, &params)
    })?;
    Ok(to_arrays(py, top))
}

/// Exact merge of partial results `[(scores [Q, k_i], ids [Q, k_i]), ...]` into the top-k.
#[pyfunction]
#[pyo3(signature = (parts, k, *, threads = 0))]
pub fn merge_topk<'py>(
    py: Python<'py>,
    parts: Vec<(PyReadonlyArray2<'py, f32>, PyReadonlyArray2<'py, i64>)>,
    k: usize,
    threads: usize,
) -> PyResult<ScoresIds<'py>> {
    let mut views = Vec::with_capacity(parts.len());
    for (p, (scores, ids)) in parts.iter().enumerate() {
        if scores.shape() != ids.shape() {
            return Err(ShapeError::new_err(format!(
                "part {p}: ids have shape {:?} but scores have shape {:?}; give one id per score",
                ids.shape(),
                scores.shape()
            )));
        }
        let (rows, width) = (scores.shape()[0], scores.shape()[1]);
        views.push(Candidates::new(rows, width, contiguous("partial scores", scores)?, contiguous("partial ids", ids)?).map_err(crate::errors::to_py)?);
    }
    let top = run_detached(py, |_| partial::merge_topk(&views, k, threads))?;
    Ok(to_arrays(py, top))
}

/// One shard of a corpus of `total_rows` rows (global rows `row_offset..` + the index's rows; no
/// rows when `index` is None) that `Miner` mines with global ids: exclusions in global ids, the
/// positives of other shards scored NaN.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct ShardIndex {
    pub(crate) shard: Shard<IndexRef>,
}

#[pymethods]
impl ShardIndex {
    #[new]
    #[pyo3(signature = (index, *, row_offset, total_rows, dim, metric))]
    fn new(index: Option<&Bound<'_, PyAny>>, row_offset: u64, total_rows: usize, dim: usize, metric: &str) -> PyResult<Self> {
        let inner = index.map(IndexRef::extract).transpose()?;
        let metric = Metric::from_name(if metric == "dot" { "ip" } else { metric }).map_err(crate::errors::to_py)?;
        let shard = Shard::new(inner, row_offset, total_rows, dim, metric).map_err(crate::errors::to_py)?;
        Ok(ShardIndex { shard })
    }

    fn __len__(&self) -> usize {
        hardneg_core::Searcher::len(&self.shard)
    }
}
