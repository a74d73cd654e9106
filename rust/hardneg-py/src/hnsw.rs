//! `HnswIndex`: the binding of `hardneg_core::hnsw` used by `hardneg.HnswIndex`.

use std::path::PathBuf;

use hardneg_core::hnsw::{self, HnswOptions, HnswParams, Storage};
use hardneg_core::{Exclusions, MatrixRef, Metric, SearchParams, Searcher};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{matrix_ref, optional_csr};
use crate::detach::run_detached;
use crate::errors::to_py;
use crate::index::{score_given_ids, NumpyRows, ScoresIds};

/// An HNSW index (usearch) over a float32 corpus `[N, d]`, searched with FlatIndex's semantics.
///
/// Built empty by the constructor, filled with `add_rows` chunk by chunk (progress is reported
/// between chunks) and closed by `finish_build`. The corpus array, when there is one, is
/// borrowed for exact rescoring: do not write to it while the index is alive.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct HnswIndex {
    pub(crate) index: hnsw::HnswIndex<'static>,
}

impl HnswIndex {
    /// Runs `work` without the GIL on the queries and the search parameters built from the
    /// binding's arguments (exclusions as CSR arrays, checked against the index).
    #[allow(clippy::too_many_arguments)]
    fn detached<'py, R: Send>(
        &self,
        py: Python<'py>,
        queries: &PyReadonlyArray2<'py, f32>,
        k: usize,
        exclude_offsets: &Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: &Option<PyReadonlyArray1<'py, i64>>,
        threads: usize,
        work: impl FnOnce(MatrixRef<'_>, &SearchParams<'_>) -> hardneg_core::Result<R> + Send,
    ) -> PyResult<R> {
        let q = matrix_ref("queries", queries)?;
        let exclude_csr = optional_csr(exclude_offsets, exclude_ids)?;
        let n = self.index.len();
        run_detached(py, |cancel| {
            let exclude = exclude_csr.map(|(o, i)| Exclusions::from_csr("exclude", o, i, n)).transpose()?;
            work(q, &SearchParams { k, exclude: exclude.as_ref(), threads, cancel: Some(cancel) })
        })
    }
}

#[pymethods]
impl HnswIndex {
    /// An empty index over `corpus` (checked for shape, NaN/Inf and, for int8 + ip, row lengths).
    #[new]
    #[pyo3(signature = (corpus, *, metric = "ip", storage = "float32", connectivity = 16, expansion_add = 128, expansion_search = 128, seed = 0, threads = 0, deterministic = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        corpus: PyReadonlyArray2<'_, f32>,
        metric: &str,
        storage: &str,
        connectivity: usize,
        expansion_add: usize,
        expansion_search: usize,
        seed: u64,
        threads: usize,
        deterministic: bool,
    ) -> PyResult<Self> {
        let params = HnswParams {
            metric: Metric::from_name(metric).map_err(to_py)?,
            storage: Storage::from_name(storage).map_err(to_py)?,
            connectivity,
            expansion_add,
            expansion_search,
            seed,
        };
        let (rows, dim) = (corpus.shape()[0], corpus.shape()[1]);
        let owner = NumpyRows::new(py, "corpus", &corpus)?;
        let index = run_detached(py, |_| hnsw::HnswIndex::new_empty(owner, rows, dim, params, threads, deterministic))?;
        Ok(HnswIndex { index })
    }

    /// Inserts the next `count` rows (seeded order); returns how many rows the index holds.
    #[pyo3(signature = (count, *, threads = 0))]
    fn add_rows(&self, py: Python<'_>, count: usize, threads: usize) -> PyResult<usize> {
        run_detached(py, |cancel| self.index.add_rows(count, threads, Some(cancel)))
    }

    /// Audits level 0 for nodes without incoming edges and re-inserts them; returns `(found, remaining)`.
    #[pyo3(signature = (*, threads = 0))]
    fn finish_build(&self, py: Python<'_>, threads: usize) -> PyResult<(usize, usize)> {
        let report = run_detached(py, |_| self.index.finish_build(threads))?;
        Ok((report.found, report.remaining))
    }

    /// Opens a file written by `save`; `corpus` (the float32 rows it was built from) enables
    /// exact rescoring for bfloat16/int8 storage and bit-identical cosine scores.
    #[staticmethod]
    #[pyo3(signature = (path, *, corpus = None, mmap = true, threads = 0))]
    fn load(py: Python<'_>, path: PathBuf, corpus: Option<PyReadonlyArray2<'_, f32>>, mmap: bool, threads: usize) -> PyResult<Self> {
        let owner = corpus.as_ref().map(|c| NumpyRows::new(py, "corpus", c)).transpose()?;
        let index = run_detached(py, |_| hnsw::HnswIndex::load(&path, mmap, owner.map(|o| Box::new(o) as _), threads))?;
        Ok(HnswIndex { index })
    }

    /// Writes the index to `path`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        run_detached(py, |_| self.index.save(&path))
    }

    fn __len__(&self) -> usize {
        self.index.len()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.index.dim()
    }

    #[getter]
    fn metric(&self) -> &'static str {
        self.index.metric().name()
    }

    #[getter]
    fn storage(&self) -> &'static str {
        self.index.params().storage.name()
    }

    /// `(connectivity, expansion_add, expansion_search, seed)`.
    #[getter]
    fn params(&self) -> (usize, usize, usize, u64) {
        let p = self.index.params();
        (p.connectivity, p.expansion_add, p.expansion_search, p.seed)
    }

    /// The build's orphan audit: `(found, remaining)`.
    #[getter]
    fn orphans(&self) -> (usize, usize) {
        let r = self.index.orphan_report();
        (r.found, r.remaining)
    }

    /// Digest of the parameters and the level-0 edges (equal for an index and its saved file).
    #[pyo3(signature = (*, threads = 0))]
    fn graph_digest(&self, py: Python<'_>, threads: usize) -> PyResult<u64> {
        run_detached(py, |_| self.index.graph_digest(threads))
    }

    #[getter]
    fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    #[getter]
    fn is_view(&self) -> bool {
        self.index.is_view()
    }

    #[getter]
    fn has_corpus(&self) -> bool {
        self.index.has_corpus()
    }

    /// Approximate top-k: `(scores float32 [Q, k], ids int64 [Q, k])`, -1 / NaN padded.
    #[pyo3(signature = (queries, k, *, exclude_offsets = None, exclude_ids = None, expansion_search = None, rescore = true, threads = 0))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        expansion_search: Option<usize>,
        rescore: bool,
        threads: usize,
    ) -> PyResult<ScoresIds<'py>> {
        let opts = HnswOptions { expansion_search, rescore };
        let top = self.detached(py, &queries, k, &exclude_offsets, &exclude_ids, threads, |q, params| self.index.search_with(q, params, &opts))?;
        let scores = Array2::from_shape_vec((top.rows, top.k), top.scores).expect("shape").into_pyarray(py);
        let ids = Array2::from_shape_vec((top.rows, top.k), top.ids).expect("shape").into_pyarray(py);
        Ok((scores, ids))
    }

    /// Exact scores of given ids `[Q, m]` (-1 = none, scored NaN), as a rescoring search scores them.
    fn score<'py>(&self, py: Python<'py>, queries: PyReadonlyArray2<'py, f32>, ids: PyReadonlyArray2<'py, i64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        score_given_ids(py, &self.index, queries, ids)
    }

    /// Tie-aware recall@k of a rescoring search against exact search over the corpus.
    #[pyo3(signature = (queries, k, *, exclude_offsets = None, exclude_ids = None, expansion_search = None, threads = 0))]
    #[allow(clippy::too_many_arguments)]
    fn recall(
        &self,
        py: Python<'_>,
        queries: PyReadonlyArray2<'_, f32>,
        k: usize,
        exclude_offsets: Option<PyReadonlyArray1<'_, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'_, i64>>,
        expansion_search: Option<usize>,
        threads: usize,
    ) -> PyResult<f64> {
        self.detached(py, &queries, k, &exclude_offsets, &exclude_ids, threads, |q, params| self.index.recall(q, params, expansion_search))
    }
}
