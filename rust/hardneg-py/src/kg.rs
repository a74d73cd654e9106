//! Binding of `hardneg.kg.TripleCorruptor`: filtered corruption of knowledge-graph triples.

use hardneg_core::sample::kg::{CorruptOptions, Corruptor, HardCorruptOptions, Mode, Strategy};
use hardneg_core::sample::triples::{Side, TripleIndex};
use hardneg_core::sample::Streams;
use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::arrays::{contiguous, matrix_ref, parse_isa};
use crate::detach::run_detached;
use crate::errors::{ParameterError, ShapeError};

/// The flat `(h, r, t)` rows of an int64 `[N, 3]` array.
fn triple_rows<'a>(what: &str, a: &'a PyReadonlyArray2<'_, i64>) -> PyResult<&'a [i64]> {
    let data = contiguous(what, a)?;
    if a.as_array().ncols() != 3 {
        return Err(ShapeError::new_err(format!("{what} must have 3 columns (head, relation, tail)")));
    }
    Ok(data)
}

fn triples_out(flat: Vec<i64>, rows: usize, n: usize) -> Array3<i64> {
    Array3::from_shape_vec((rows, n, 3), flat).expect("the core returns rows x n x 3 values")
}

/// Known triples plus a corruption scheme; draws corrupted triples that are never known.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct TripleCorruptor {
    inner: Corruptor,
}

#[pymethods]
impl TripleCorruptor {
    #[new]
    #[pyo3(signature = (triples, num_entities, num_relations, *, mode = "both", strategy = "uniform", filtered = true, clusters = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        triples: PyReadonlyArray2<'_, i64>,
        num_entities: usize,
        num_relations: usize,
        mode: &str,
        strategy: &str,
        filtered: bool,
        clusters: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<Self> {
        let mode = match mode {
            "head" => Mode::Head,
            "tail" => Mode::Tail,
            "both" => Mode::Both,
            other => return Err(ParameterError::new_err(format!("mode must be 'head', 'tail' or 'both', got {other:?}"))),
        };
        let strategy = match strategy {
            "uniform" => Strategy::Uniform,
            "bernoulli" => Strategy::Bernoulli,
            "cluster" => Strategy::Cluster,
            other => return Err(ParameterError::new_err(format!("strategy must be 'uniform', 'bernoulli' or 'cluster', got {other:?}"))),
        };
        let t = triple_rows("triples", &triples)?;
        let labels = match &clusters {
            Some(c) => Some(c.as_slice()?),
            None => None,
        };
        let inner = run_detached(py, |_| Corruptor::new(TripleIndex::new(t, num_entities, num_relations)?, mode, strategy, filtered, labels))?;
        Ok(TripleCorruptor { inner })
    }

    #[getter]
    fn num_entities(&self) -> usize {
        self.inner.index().num_entities()
    }

    #[getter]
    fn num_relations(&self) -> usize {
        self.inner.index().num_relations()
    }

    #[getter]
    fn num_triples(&self) -> usize {
        self.inner.index().len()
    }

    /// Per relation, the Bernoulli probability of replacing the head (NaN: no triple).
    fn head_probability<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.index().head_probability().to_vec().into_pyarray(py)
    }

    /// For each triple, the known entities on `side` as CSR `(offsets, ids)`.
    #[allow(clippy::type_complexity)]
    fn known<'py>(&self, py: Python<'py>, triples: PyReadonlyArray2<'py, i64>, side: &str) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
        let side = match side {
            "head" => Side::Head,
            "tail" => Side::Tail,
            other => return Err(ParameterError::new_err(format!("side must be 'head' or 'tail', got {other:?}"))),
        };
        let t = triple_rows("triples", &triples)?;
        let (offsets, ids) = run_detached(py, |_| self.inner.index().known_csr(t, side))?;
        Ok((offsets.into_pyarray(py), ids.into_pyarray(py)))
    }

    /// `[len(triples), num_negatives, 3]` corrupted triples.
    #[pyo3(signature = (triples, num_negatives, *, seed = 0, epoch = 0, offset = 0, threads = 0))]
    #[allow(clippy::too_many_arguments)]
    fn corrupt<'py>(
        &self,
        py: Python<'py>,
        triples: PyReadonlyArray2<'py, i64>,
        num_negatives: usize,
        seed: u64,
        epoch: u64,
        offset: u64,
        threads: usize,
    ) -> PyResult<Bound<'py, PyArray3<i64>>> {
        let t = triple_rows("triples", &triples)?;
        let opts = CorruptOptions { num_negatives, streams: Streams { seed, epoch, offset }, threads };
        let out = run_detached(py, |cancel| self.inner.corrupt(t, &opts, Some(cancel)))?;
        Ok(triples_out(out, t.len() / 3, num_negatives).into_pyarray(py))
    }

    /// `[len(triples), num_negatives, 3]` highest-scoring corruptions below the false-negative margin.
    #[pyo3(signature = (triples, num_negatives, entity_embeddings, *, head_queries = None, tail_queries = None, false_negative_margin = None, seed = 0, epoch = 0, offset = 0, threads = 0, isa = None))]
    #[allow(clippy::too_many_arguments)]
    fn hard<'py>(
        &self,
        py: Python<'py>,
        triples: PyReadonlyArray2<'py, i64>,
        num_negatives: usize,
        entity_embeddings: PyReadonlyArray2<'py, f32>,
        head_queries: Option<PyReadonlyArray2<'py, f32>>,
        tail_queries: Option<PyReadonlyArray2<'py, f32>>,
        false_negative_margin: Option<f32>,
        seed: u64,
        epoch: u64,
        offset: u64,
        threads: usize,
        isa: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray3<i64>>> {
        let t = triple_rows("triples", &triples)?;
        let entities = matrix_ref("entity_embeddings", &entity_embeddings)?;
        let hq = head_queries.as_ref().map(|q| matrix_ref("head_queries", q)).transpose()?;
        let tq = tail_queries.as_ref().map(|q| matrix_ref("tail_queries", q)).transpose()?;
        let opts = HardCorruptOptions { num_negatives, margin: false_negative_margin, streams: Streams { seed, epoch, offset }, threads, isa: parse_isa(isa)? };
        let out = run_detached(py, |cancel| self.inner.hard(t, entities, hq, tq, &opts, Some(cancel)))?;
        Ok(triples_out(out, t.len() / 3, num_negatives).into_pyarray(py))
    }
}
