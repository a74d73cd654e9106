//! `FlatIndex` (the core index over a borrowed numpy corpus) and the kernel queries of tests.

use hardneg_core::index::{F32Rows, KernelOptions, Storage};
use hardneg_core::topk::{amx, dispatch, Kernel};
use hardneg_core::{Exclusions, FlatIndex as CoreFlatIndex, Isa, Metric, SearchParams, Searcher};
use numpy::ndarray::ArrayView2;
use pyo3::types::PyDict;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{contiguous, matrix_ref, optional_csr, parse_kernel};
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
    #[pyo3(signature = (corpus, *, metric = "ip", threads = 0, storage = "float32"))]
    fn new(py: Python<'_>, corpus: PyReadonlyArray2<'_, f32>, metric: &str, threads: usize, storage: &str) -> PyResult<Self> {
        let metric = Metric::from_name(metric).map_err(to_py)?;
        let storage = Storage::from_name(storage).map_err(to_py)?;
        let (rows, dim) = (corpus.shape()[0], corpus.shape()[1]);
        let owner = NumpyRows::new(py, "corpus", &corpus)?;
        let index = run_detached(py, |_| Ok(CoreFlatIndex::new(owner, rows, dim, metric, threads)?.with_storage(storage, threads)))?;
        Ok(FlatIndex { index })
    }

    /// Reads an index written by `save` (rows memory-mapped with `mmap`).
    #[staticmethod]
    #[pyo3(signature = (path, *, mmap = true, verify = false))]
    fn load(py: Python<'_>, path: std::path::PathBuf, mmap: bool, verify: bool) -> PyResult<Self> {
        let index = run_detached(py, |_| CoreFlatIndex::load(&path, mmap, verify))?;
        Ok(FlatIndex { index })
    }

    /// Writes the index to `path`.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        run_detached(py, |_| self.index.save(&path))
    }

    #[getter]
    fn storage(&self) -> &'static str {
        self.index.storage().name()
    }

    /// The kernel a search of `n_queries` queries uses (`kernel` forces one, as in `search`).
    #[pyo3(signature = (n_queries, kernel = None))]
    fn kernel_for(&self, n_queries: usize, kernel: Option<&str>) -> PyResult<&'static str> {
        let forced = parse_kernel(kernel)?;
        Ok(self.index.kernel_for(n_queries, forced).map_err(to_py)?.name())
    }

    /// The float32 rows as a read-only array that shares the index's memory (a view of the
    /// numpy corpus given, or of the loaded or memory-mapped file).
    fn vectors<'py>(slf: Bound<'py, Self>) -> Bound<'py, PyArray2<f32>> {
        let (ptr, rows, dim) = {
            let this = slf.get();
            (this.index.corpus().data().as_ptr(), this.index.len(), Searcher::dim(&this.index))
        };
        // SAFETY: `ptr` points at the index's rows x dim floats, which the new array keeps
        // alive through its base object (the index); the index never writes or moves its rows,
        // and the array is made read-only.
        let arr = unsafe { PyArray2::borrow_from_array(&ArrayView2::from_shape_ptr((rows, dim), ptr), slf.into_any()) };
        arr.readwrite().make_nonwriteable();
        arr
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
    #[pyo3(signature = (queries, k, *, exclude_offsets = None, exclude_ids = None, threads = 0, exact = true, kernel = None, chunk_rows = None, dim_slice = None, overfetch = None, bound_factor = 1.0))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        threads: usize,
        exact: bool,
        kernel: Option<&str>,
        chunk_rows: Option<usize>,
        dim_slice: Option<usize>,
        overfetch: Option<usize>,
        bound_factor: f64,
    ) -> PyResult<ScoresIds<'py>> {
        let kernel = KernelOptions { kernel: parse_kernel(kernel)?, chunk_rows, dim_slice, pad: false, overfetch, bound_factor, exact };
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

/// What runs searches here: `{"available": [...], "amx": status, "amx_min_queries": {storage: n},
/// "override": HARDNEG_KERNEL or None, "large_batches": name, "small_batches": name,
/// "counts": {...}}` (`counts`: queries per path since the process started).
#[pyfunction]
pub fn kernels(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("available", Kernel::available().into_iter().map(Kernel::name).collect::<Vec<_>>())?;
    d.set_item("amx", amx::status().describe())?;
    let mins = PyDict::new(py);
    for s in [Storage::Float32, Storage::Bfloat16, Storage::Int8] {
        mins.set_item(s.name(), s.amx_min_queries())?;
    }
    d.set_item("amx_min_queries", mins)?;
    d.set_item("override", std::env::var(dispatch::KERNEL_ENV).ok())?;
    // A report never raises: a bad override shows as the error searches will raise.
    let pick = |q: usize| Kernel::resolve(None, q).map_or_else(|e| format!("error: {e}"), |k| k.name().to_string());
    d.set_item("large_batches", pick(dispatch::AMX_MIN_QUERIES))?;
    d.set_item("small_batches", pick(1))?;
    let s = dispatch::kernel_stats();
    let counts = PyDict::new(py);
    counts.set_item("f32_queries", s.f32_queries)?;
    counts.set_item("amx_certified", s.amx_certified)?;
    counts.set_item("amx_retried", s.amx_retried)?;
    counts.set_item("amx_fallback", s.amx_fallback)?;
    counts.set_item("approximate", s.approximate)?;
    d.set_item("counts", counts)?;
    Ok(d)
}
