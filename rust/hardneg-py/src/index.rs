//! `FlatIndex` (the core index over a borrowed numpy corpus) and the kernel queries of tests.

use hardneg_core::index::{F32Rows, KernelOptions};
use hardneg_core::{Exclusions, FlatIndex as CoreFlatIndex, Isa, Metric, SearchParams, Searcher};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{contiguous, matrix_ref, optional_csr, parse_isa};
use crate::detach::run_detached;
use crate::errors::{to_py, ShapeError};

/// `(scores float32 [Q, k], ids int64 [Q, k])`.
pub(crate) type ScoresIds<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// The data of a C-contiguous float32 numpy array, kept alive by a reference to the array.
pub(crate) struct NumpyRows {
    _array: Py<PyArray2<f32>>,
    ptr: *const f32,
    len: usize,
}

// SAFETY: the buffer belongs to `_array`, which this struct keeps alive, and numpy never moves
// the data of a live array (`resize` refuses while other references exist). The index only reads
// it; the Python documentation tells users not to write to the corpus while the index lives.
unsafe impl Send for NumpyRows {}
// SAFETY: as above; shared reads from several threads are fine.
unsafe impl Sync for NumpyRows {}

impl NumpyRows {
    /// Borrows `array` (which must be C-contiguous) for as long as the result lives.
    pub(crate) fn new(py: Python<'_>, what: &str, array: &PyReadonlyArray2<'_, f32>) -> PyResult<Self> {
        let data = contiguous(what, array)?;
        Ok(NumpyRows { _array: array.as_unbound().clone_ref(py), ptr: data.as_ptr(), len: data.len() })
    }
}

impl F32Rows for NumpyRows {
    fn values(&self) -> &[f32] {
        // SAFETY: `ptr`/`len` describe the live, contiguous buffer of `_array` (see above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An exact index over a borrowed, C-contiguous float32 corpus `[N, d]` (the core `FlatIndex`).
///
/// The corpus is checked once for NaN/Inf. The array is borrowed, not copied: do not write to
/// it while the index is alive.
/// With `metric="cosine"` the corpus is still not copied: its inverse row norms are multiplied
/// into the scores, and queries are normalised into a copy.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct FlatIndex {
    pub(crate) index: CoreFlatIndex<'static>,
}

#[pymethods]
impl FlatIndex {
    #[new]
    #[pyo3(signature = (corpus, *, metric = "ip", threads = 0))]
    fn new(py: Python<'_>, corpus: PyReadonlyArray2<'_, f32>, metric: &str, threads: usize) -> PyResult<Self> {
        let metric = Metric::from_name(metric).map_err(to_py)?;
        let (rows, dim) = (corpus.shape()[0], corpus.shape()[1]);
        let owner = NumpyRows::new(py, "corpus", &corpus)?;
        let index = run_detached(py, |_| CoreFlatIndex::new(owner, rows, dim, metric, threads))?;
        Ok(FlatIndex { index })
    }

    #[getter]
    fn metric(&self) -> &'static str {
        self.index.metric().name()
    }

    /// Scores of given ids `[Q, m]` (-1 = none, scored NaN), exactly as `search` scores them.
    fn score<'py>(&self, py: Python<'py>, queries: PyReadonlyArray2<'py, f32>, ids: PyReadonlyArray2<'py, i64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        score_given_ids(py, &self.index, queries, ids)
    }

    fn __len__(&self) -> usize {
        self.index.len()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.index.dim()
    }

    /// Exact top-k: returns `(scores float32 [Q, k], ids int64 [Q, k])`; a `k` larger than what a
    /// query has left after its exclusions is an error.
    #[pyo3(signature = (queries, k, *, exclude_offsets = None, exclude_ids = None, threads = 0, isa = None, chunk_rows = None, dim_slice = None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        threads: usize,
        isa: Option<&str>,
        chunk_rows: Option<usize>,
        dim_slice: Option<usize>,
    ) -> PyResult<ScoresIds<'py>> {
        let kernel = KernelOptions { isa: parse_isa(isa)?, chunk_rows, dim_slice, pad: false };
        let q = matrix_ref("queries", &queries)?;
        let exclude_csr = optional_csr(&exclude_offsets, &exclude_ids)?;
        let top = run_detached(py, |cancel| {
            // Built without the GIL: sorting long exclusion lists takes time and can be interrupted.
            let exclude = exclude_csr.map(|(o, i)| Exclusions::from_csr("exclude", o, i, self.index.len())).transpose()?;
            let params = SearchParams { k, exclude: exclude.as_ref(), threads, cancel: Some(cancel) };
            self.index.search_with(q, &params, &kernel)
        })?;
        let scores = Array2::from_shape_vec((top.rows, top.k), top.scores).expect("shape").into_pyarray(py);
        let ids = Array2::from_shape_vec((top.rows, top.k), top.ids).expect("shape").into_pyarray(py);
        Ok((scores, ids))
    }
}

/// `Searcher::score` of any index for `[Q, m]` ids (-1 = none), without the GIL.
pub(crate) fn score_given_ids<'py>(py: Python<'py>, index: &dyn Searcher, queries: PyReadonlyArray2<'py, f32>, ids: PyReadonlyArray2<'py, i64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let q = matrix_ref("queries", &queries)?;
    let (rows, width) = (ids.shape()[0], ids.shape()[1]);
    if rows != q.rows() {
        return Err(ShapeError::new_err(format!("ids has {rows} rows but there are {} queries; give one row per query", q.rows())));
    }
    let ids = contiguous("ids", &ids)?;
    let scores = run_detached(py, |_| index.score(q, ids, width))?;
    Ok(Array2::from_shape_vec((rows, width), scores).expect("shape").into_pyarray(py))
}

/// The instruction set the kernels use on this CPU.
#[pyfunction]
pub fn isa() -> &'static str {
    Isa::detect().name()
}

/// Every instruction set this CPU can run, best first.
#[pyfunction]
pub fn available_isas() -> Vec<&'static str> {
    Isa::available().into_iter().map(Isa::name).collect()
}
