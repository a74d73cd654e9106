//! Bindings of mining: the streaming engine (`Miner`), the selection step alone
//! (`select_negatives`) and the per-query counts of excluded ids the Python layer validates with.

use hardneg_core::mine::{select, Candidates, MineOptions, Miner as CoreMiner, PositiveMode, PositiveScores, QueryChunk, Sampling, SelectOptions, SelectStats};
use hardneg_core::exclude::own_rows;
use hardneg_core::{Exclusions, IdRows, MatrixRef};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{contiguous, matrix_ref, optional_csr};
use crate::detach::run_detached;
use crate::errors::{to_py, ParameterError, ShapeError};
use crate::searcher::IndexRef;

fn stats_dict<'py>(py: Python<'py>, st: &SelectStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in SelectStats::NAMES.iter().zip(st.values()) {
        d.set_item(*name, value)?;
    }
    Ok(d)
}

fn parse_sampling(sampling: &str, a: f64, b: f64) -> PyResult<Sampling> {
    match sampling {
        "top" => Ok(Sampling::Top),
        "random" => Ok(Sampling::Random),
        "simans" => Ok(Sampling::Simans { a, b }),
        other => Err(ParameterError::new_err(format!("unknown sampling {other:?}; use 'top', 'random' or 'simans'"))),
    }
}

fn matrix<'py, T: numpy::Element>(py: Python<'py>, rows: usize, cols: usize, data: Vec<T>) -> Bound<'py, PyArray2<T>> {
    Array2::from_shape_vec((rows, cols), data).expect("shape").into_pyarray(py)
}

/// `(ids int64 [Q, n], scores float32 [Q, n], counters)`.
type Selected<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyDict>);

/// `(negatives int64 [Q, n], scores float32 [Q, n], positives int64 [Q, P], positive scores float32 [Q, P], counters)`.
type MinedArrays<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyDict>);

/// `(scores float32 [Q, c], ids int64 [Q, c], positives int64 [Q, P], positive scores float32 [Q, P])`.
type CandidateArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

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
    let sampling = parse_sampling(sampling, simans_a, simans_b)?;
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
    let opts = SelectOptions { num_negatives, range_min, range_max, min_score, max_score, absolute_margin, relative_margin, sampling, seed };
    let sel = run_detached(py, |_| {
        let cands = Candidates::new(rows, width, scores, ids)?;
        let min_pos = PositiveScores { offsets, values }.min_per_row(rows)?;
        select(cands, &min_pos, query_offset, &opts, threads)
    })?;
    let stats = stats_dict(py, &sel.stats)?;
    let n = sel.num_negatives;
    Ok((matrix(py, rows, n, sel.ids), matrix(py, rows, n, sel.scores), stats))
}

/// The number of distinct corpus ids each query excludes: the union of its CSR rows (offsets index
/// the ids directly; -1 is padding) and, with `exclude_self`, its own row. Ids must lie in `0..n`.
#[pyfunction]
#[pyo3(signature = (n, offsets, ids, exclude_offsets = None, exclude_ids = None, *, exclude_self = false))]
pub fn excluded_counts<'py>(
    py: Python<'py>,
    n: usize,
    offsets: PyReadonlyArray1<'py, i64>,
    ids: PyReadonlyArray1<'py, i64>,
    exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
    exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
    exclude_self: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let lists = CsrLists::new((&offsets, &ids), (&exclude_offsets, &exclude_ids))?;
    let counts = run_detached(py, |_| {
        let first = lists.first()?;
        let own = if exclude_self { own_rows(0, first.rows()) } else { Default::default() };
        let mut parts = vec![first];
        parts.extend(lists.exclude()?);
        if exclude_self {
            parts.push(IdRows::new("exclude_self", &own.0, &own.1)?);
        }
        Ok(Exclusions::union(&parts, n)?.row_lens())
    })?;
    Ok(counts.into_pyarray(py))
}

/// The mining engine over one index: search, positive scores and selection of a chunk of queries
/// in one call without the GIL.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct Miner {
    index: IndexRef,
    opts: MineOptions,
}

#[pymethods]
impl Miner {
    #[new]
    #[pyo3(signature = (
        index, *, num_negatives, positive_width, range_max = None, candidates = None, positives = "exclude",
        exclude_self = false, range_min = 0, min_score = None, max_score = None, absolute_margin = None,
        relative_margin = None, sampling = "top", simans_a = 0.5, simans_b = 0.0, seed = 0, threads = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: &Bound<'_, PyAny>,
        num_negatives: usize,
        positive_width: usize,
        range_max: Option<usize>,
        candidates: Option<usize>,
        positives: &str,
        exclude_self: bool,
        range_min: usize,
        min_score: Option<f32>,
        max_score: Option<f32>,
        absolute_margin: Option<f32>,
        relative_margin: Option<f32>,
        sampling: &str,
        simans_a: f64,
        simans_b: f64,
        seed: u64,
        threads: usize,
    ) -> PyResult<Self> {
        let index = IndexRef::extract(index)?;
        let positives = match positives {
            "exclude" => PositiveMode::Exclude,
            "mask" => PositiveMode::Mask,
            "keep" => PositiveMode::Keep,
            other => return Err(ParameterError::new_err(format!("positives must be 'exclude', 'mask' or 'keep', got {other:?}"))),
        };
        let sampling = parse_sampling(sampling, simans_a, simans_b)?;
        let select = SelectOptions { num_negatives, range_min, range_max, min_score, max_score, absolute_margin, relative_margin, sampling, seed };
        let opts = MineOptions { select, candidates, positives, exclude_self, positive_width, threads };
        CoreMiner::new(index.searcher(), opts).map_err(to_py)?;
        Ok(Miner { index, opts })
    }

    /// Mines queries `[Q, d]` whose positives (and exclusions) are CSR rows: offsets `[Q + 1]`
    /// index the id arrays directly (a slice of a longer list's offsets works as is).
    #[pyo3(signature = (queries, positive_offsets, positive_ids, exclude_offsets = None, exclude_ids = None, *, query_offset = 0))]
    #[allow(clippy::too_many_arguments)]
    fn mine<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        positive_offsets: PyReadonlyArray1<'py, i64>,
        positive_ids: PyReadonlyArray1<'py, i64>,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        query_offset: u64,
    ) -> PyResult<MinedArrays<'py>> {
        let input = ChunkInput::new(&queries, &positive_offsets, &positive_ids, &exclude_offsets, &exclude_ids)?;
        let out = run_detached(py, |cancel| CoreMiner::new(self.index.searcher(), self.opts)?.mine(&input.chunk(query_offset)?, Some(cancel)))?;
        let (rows, n, w) = (out.rows, out.num_negatives, out.positive_width);
        let stats = stats_dict(py, &out.stats)?;
        Ok((matrix(py, rows, n, out.negatives), matrix(py, rows, n, out.scores), matrix(py, rows, w, out.positive_ids), matrix(py, rows, w, out.positive_scores), stats))
    }

    /// The selection step alone, with this miner's options: candidate lists `(scores [Q, c],
    /// ids [Q, c])` with `c` the miner's candidate count (e.g. merged from corpus shards) and the
    /// positives' scores `[Q, P]` (NaN padding) -> `(negatives [Q, n], scores [Q, n], counters)`.
    #[pyo3(signature = (candidate_scores, candidate_ids, positive_scores, *, query_offset = 0))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        candidate_scores: PyReadonlyArray2<'py, f32>,
        candidate_ids: PyReadonlyArray2<'py, i64>,
        positive_scores: PyReadonlyArray2<'py, f32>,
        query_offset: u64,
    ) -> PyResult<Selected<'py>> {
        let rows = candidate_scores.shape()[0];
        if candidate_ids.shape() != candidate_scores.shape() || positive_scores.shape()[0] != rows {
            return Err(ShapeError::new_err(format!(
                "candidate_scores {:?}, candidate_ids {:?} and positive_scores {:?} must have one row per query and one id per score",
                candidate_scores.shape(),
                candidate_ids.shape(),
                positive_scores.shape()
            )));
        }
        let scores = contiguous("candidate_scores", &candidate_scores)?;
        let ids = contiguous("candidate_ids", &candidate_ids)?;
        let positive = contiguous("positive_scores", &positive_scores)?;
        let width = candidate_scores.shape()[1];
        let sel = run_detached(py, |_| {
            CoreMiner::new(self.index.searcher(), self.opts)?.select(Candidates::new(rows, width, scores, ids)?, positive, query_offset)
        })?;
        let stats = stats_dict(py, &sel.stats)?;
        let n = sel.num_negatives;
        Ok((matrix(py, rows, n, sel.ids), matrix(py, rows, n, sel.scores), stats))
    }

    /// The candidate lists before selection (for rescoring): `(scores [Q, c], ids [Q, c],
    /// positives [Q, P], positive scores [Q, P])`, ids -1 for padding and masked positives.
    #[pyo3(signature = (queries, positive_offsets, positive_ids, exclude_offsets = None, exclude_ids = None, *, query_offset = 0))]
    #[allow(clippy::too_many_arguments)]
    fn candidates<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        positive_offsets: PyReadonlyArray1<'py, i64>,
        positive_ids: PyReadonlyArray1<'py, i64>,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        query_offset: u64,
    ) -> PyResult<CandidateArrays<'py>> {
        let input = ChunkInput::new(&queries, &positive_offsets, &positive_ids, &exclude_offsets, &exclude_ids)?;
        let out = run_detached(py, |cancel| CoreMiner::new(self.index.searcher(), self.opts)?.candidates(&input.chunk(query_offset)?, Some(cancel)))?;
        let (rows, k, w) = (out.top.rows, out.top.k, out.positive_width);
        Ok((matrix(py, rows, k, out.top.scores), matrix(py, rows, k, out.top.ids), matrix(py, rows, w, out.positive_ids), matrix(py, rows, w, out.positive_scores)))
    }
}

/// Borrowed CSR id lists: a first list (the positives) and optional exclusions.
struct CsrLists<'a> {
    first: (&'a [i64], &'a [i64]),
    exclude: Option<(&'a [i64], &'a [i64])>,
}

type Csr<'a, 'py> = (&'a PyReadonlyArray1<'py, i64>, &'a PyReadonlyArray1<'py, i64>);
type OptionalCsr<'a, 'py> = (&'a Option<PyReadonlyArray1<'py, i64>>, &'a Option<PyReadonlyArray1<'py, i64>>);

impl<'a> CsrLists<'a> {
    fn new<'py>(first: Csr<'a, 'py>, exclude: OptionalCsr<'a, 'py>) -> PyResult<Self> {
        Ok(CsrLists { first: (first.0.as_slice()?, first.1.as_slice()?), exclude: optional_csr(exclude.0, exclude.1)? })
    }

    /// The positives as a core view (checks the layout).
    fn first(&self) -> hardneg_core::Result<IdRows<'a>> {
        IdRows::new("positives", self.first.0, self.first.1)
    }

    fn exclude(&self) -> hardneg_core::Result<Option<IdRows<'a>>> {
        self.exclude.map(|(o, i)| IdRows::new("exclude", o, i)).transpose()
    }
}

/// The borrowed arrays of one `Miner` call.
struct ChunkInput<'a> {
    queries: MatrixRef<'a>,
    lists: CsrLists<'a>,
}

impl<'a> ChunkInput<'a> {
    fn new<'py>(
        queries: &'a PyReadonlyArray2<'py, f32>,
        positive_offsets: &'a PyReadonlyArray1<'py, i64>,
        positive_ids: &'a PyReadonlyArray1<'py, i64>,
        exclude_offsets: &'a Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: &'a Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Self> {
        let lists = CsrLists::new((positive_offsets, positive_ids), (exclude_offsets, exclude_ids))?;
        Ok(ChunkInput { queries: matrix_ref("queries", queries)?, lists })
    }

    /// The core view (checks the CSR layouts).
    fn chunk(&self, query_offset: u64) -> hardneg_core::Result<QueryChunk<'a>> {
        Ok(QueryChunk { queries: self.queries, positives: self.lists.first()?, exclude: self.lists.exclude()?, query_offset })
    }
}
