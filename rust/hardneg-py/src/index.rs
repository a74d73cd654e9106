//! `FlatIndex` and the array helpers used by `hardneg.FlatIndex` / `hardneg.topk`.

use hardneg_core::matrix::{self, MatrixRef};
use hardneg_core::{search, Exclusions, Isa, SearchOptions};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{matrix_ref, parse_kernel};
use crate::detach::run_detached;
use crate::errors::{ParameterError, ShapeError};

/// `(scores float32 [Q, k], ids int64 [Q, k])`.
type ScoresIds<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// An exact inner-product index over a borrowed, C-contiguous float32 corpus `[N, d]`.
///
/// The corpus is checked once for NaN/Inf. The array is borrowed, not copied: do not write to
/// it while the index is alive.
/// With `metric="cosine"` the corpus is still not copied: its inverse row norms are multiplied
/// into the scores, and queries are normalised into a copy.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct FlatIndex {
    corpus: Py<PyArray2<f32>>,
    rows: usize,
    dim: usize,
    /// Inverse row norms for cosine; `None` for inner product.
    inv_norms: Option<Vec<f32>>,
}

impl FlatIndex {
    /// Queries as the kernels need them: normalised (a copy) for cosine, borrowed otherwise.
    fn prepare<'a>(&self, q: MatrixRef<'a>, threads: usize) -> hardneg_core::Result<std::borrow::Cow<'a, [f32]>> {
        if self.inv_norms.is_none() {
            return Ok(std::borrow::Cow::Borrowed(q.data()));
        }
        matrix::check_finite("queries", q, threads)?;
        let mut owned = q.data().to_vec();
        matrix::normalize_rows(&mut owned, q.dim());
        Ok(std::borrow::Cow::Owned(owned))
    }
}

#[pymethods]
impl FlatIndex {
    #[new]
    #[pyo3(signature = (corpus, *, metric = "ip", threads = 0))]
    fn new(py: Python<'_>, corpus: PyReadonlyArray2<'_, f32>, metric: &str, threads: usize) -> PyResult<Self> {
        let cosine = match metric {
            "ip" => false,
            "cosine" => true,
            other => return Err(ParameterError::new_err(format!("metric must be 'ip' or 'cosine', got {other:?}"))),
        };
        let m = matrix_ref("corpus", &corpus)?;
        let (rows, dim) = (m.rows(), m.dim());
        let threads = hardneg_core::topk::resolve_threads(threads);
        let inv_norms = run_detached(py, |_| {
            if cosine {
                matrix::finite_inverse_norms("corpus", m, threads).map(Some)
            } else {
                matrix::check_finite("corpus", m, threads).map(|()| None)
            }
        })?;
        Ok(FlatIndex { corpus: corpus.as_unbound().clone_ref(py), rows, dim, inv_norms })
    }

    #[getter]
    fn metric(&self) -> &'static str {
        if self.inv_norms.is_some() {
            "cosine"
        } else {
            "ip"
        }
    }

    /// Scores of given ids `[Q, m]` (-1 = none, scored NaN), exactly as `search` scores them.
    fn score<'py>(&self, py: Python<'py>, queries: PyReadonlyArray2<'py, f32>, ids: PyReadonlyArray2<'py, i64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let corpus = self.corpus.bind(py).readonly();
        let c = matrix_ref("corpus", &corpus)?;
        let q = matrix_ref("queries", &queries)?;
        let (rows, width) = (ids.shape()[0], ids.shape()[1]);
        if rows != q.rows() {
            return Err(ShapeError::new_err(format!("ids has {rows} rows but there are {} queries; give one row per query", q.rows())));
        }
        let ids = ids.as_slice().map_err(|_| ShapeError::new_err("ids must be C-contiguous"))?;
        let scores = run_detached(py, |_| {
            let qd = self.prepare(q, 1)?;
            let qm = MatrixRef::new("queries", &qd, q.rows(), q.dim())?;
            hardneg_core::score_ids(qm, c, self.inv_norms.as_deref(), ids, width)
        })?;
        Ok(Array2::from_shape_vec((rows, width), scores).expect("shape").into_pyarray(py))
    }

    fn __len__(&self) -> usize {
        self.rows
    }

    #[getter]
    fn dim(&self) -> usize {
        self.dim
    }

    /// Exact top-k: returns `(scores float32 [Q, k], ids int64 [Q, k])`.
    #[pyo3(signature = (queries, k, *, exclude_offsets = None, exclude_ids = None, threads = 0, kernel = None, chunk_rows = None, dim_slice = None, overfetch = None, bound_factor = 1.0))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        exclude_offsets: Option<PyReadonlyArray1<'py, i64>>,
        exclude_ids: Option<PyReadonlyArray1<'py, i64>>,
        threads: usize,
        kernel: Option<&str>,
        chunk_rows: Option<usize>,
        dim_slice: Option<usize>,
        overfetch: Option<usize>,
        bound_factor: f64,
    ) -> PyResult<ScoresIds<'py>> {
        let kernel = parse_kernel(kernel)?;
        let corpus = self.corpus.bind(py).readonly();
        let c = matrix_ref("corpus", &corpus)?;
        let q = matrix_ref("queries", &queries)?;
        let exclude_csr = match (&exclude_offsets, &exclude_ids) {
            (Some(o), Some(i)) => Some((o.as_slice()?, i.as_slice()?)),
            (None, None) => None,
            _ => return Err(ParameterError::new_err("give both exclude_offsets and exclude_ids, or neither")),
        };
        let top = run_detached(py, |cancel| {
            // Built without the GIL: sorting long exclusion lists takes time and can be interrupted.
            let exclude = exclude_csr.map(|(o, i)| Exclusions::from_csr("exclude", o, i, self.rows)).transpose()?;
            let qd = self.prepare(q, hardneg_core::topk::resolve_threads(threads))?;
            let qm = MatrixRef::new("queries", &qd, q.rows(), q.dim())?;
            let row_scale = self.inv_norms.as_deref();
            let opts = SearchOptions {
                exclude: exclude.as_ref(),
                threads,
                cancel: Some(cancel),
                kernel,
                chunk_rows,
                dim_slice,
                row_scale,
                overfetch,
                bound_factor,
                ..SearchOptions::new(k)
            };
            search(qm, c, &opts)
        })?;
        let scores = Array2::from_shape_vec((top.rows, top.k), top.scores).expect("shape").into_pyarray(py);
        let ids = Array2::from_shape_vec((top.rows, top.k), top.ids).expect("shape").into_pyarray(py);
        Ok((scores, ids))
    }
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
