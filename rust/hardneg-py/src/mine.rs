//! Binding of the mining selection step: `select_negatives`.

use hardneg_core::mine::{select, Candidates, PositiveScores, Sampling, SelectOptions, SelectStats};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::contiguous;
use crate::detach::run_detached;
use crate::errors::{ParameterError, ShapeError};

fn stats_dict<'py>(py: Python<'py>, st: &SelectStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in SelectStats::NAMES.iter().zip(st.values()) {
        d.set_item(*name, value)?;
    }
    Ok(d)
}

/// `(ids int64 [Q, n], scores float32 [Q, n], counters)`.
type Selected<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyDict>);

/// Selection step over given candidate lists; returns `(ids [Q, n] int64, scores [Q, n] float32, stats dict)`.
#[pyfunction]
#[pyo3(signature = (
    candidate_scores, candidate_ids, positive_offsets, positive_values, *, num_negatives, range_min = 0,
    range_max = None, min_score = None, max_score = None, absolute_margin = None, relative_margin = None,
    sampling = "top", simans_a = 0.5, simans_b = 0.0, seed = 0, query_offset = 0, threads = 0
))]
#[allow(clippy::too_many_arguments)]
pub fn select_negatives<'py>(
    py: Python<'py>,
    candidate_scores: PyReadonlyArray2<'py, f32>,
    candidate_ids: PyReadonlyArray2<'py, i64>,
    positive_offsets: PyReadonlyArray1<'py, i64>,
    positive_values: PyReadonlyArray1<'py, f32>,
    num_negatives: usize,
    range_min: usize,
    range_max: Option<usize>,
    min_score: Option<f32>,
    max_score: Option<f32>,
    absolute_margin: Option<f32>,
    relative_margin: Option<f32>,
    sampling: &str,
    simans_a: f64,
    simans_b: f64,
    seed: u64,
    query_offset: u64,
    threads: usize,
) -> PyResult<Selected<'py>> {
    let sampling = match sampling {
        "top" => Sampling::Top,
        "random" => Sampling::Random,
        "simans" => Sampling::Simans { a: simans_a, b: simans_b },
        other => return Err(ParameterError::new_err(format!("unknown sampling {other:?}; use 'top', 'random' or 'simans'"))),
    };
    let (rows, width) = (candidate_scores.shape()[0], candidate_scores.shape()[1]);
    if candidate_ids.shape() != candidate_scores.shape() {
        return Err(ShapeError::new_err(format!(
            "candidate_ids has shape {:?} but candidate_scores has shape {:?}; give one id per score",
            candidate_ids.shape(),
            candidate_scores.shape()
        )));
    }
    let scores = contiguous("candidate_scores", &candidate_scores)?;
    let ids = contiguous("candidate_ids", &candidate_ids)?;
    let offsets = positive_offsets.as_slice()?;
    let values = positive_values.as_slice()?;
    let opts = SelectOptions {
        num_negatives,
        range_min,
        range_max,
        min_score,
        max_score,
        absolute_margin,
        relative_margin,
        sampling,
        seed,
    };
    let sel = run_detached(py, |_| {
        let cands = Candidates::new(rows, width, scores, ids)?;
        let min_pos = PositiveScores { offsets, values }.min_per_row(rows)?;
        select(cands, &min_pos, query_offset, &opts, threads)
    })?;
    let stats = stats_dict(py, &sel.stats)?;
    let n = sel.num_negatives;
    let out_ids = Array2::from_shape_vec((rows, n), sel.ids).expect("shape").into_pyarray(py);
    let out_scores = Array2::from_shape_vec((rows, n), sel.scores).expect("shape").into_pyarray(py);
    Ok((out_ids, out_scores, stats))
}
