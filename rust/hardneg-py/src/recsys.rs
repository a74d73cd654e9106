//! Binding of `hardneg.recsys.InteractionSampler`: negative items for implicit feedback.

use hardneg_core::sample::recsys::{HardOptions, Interactions, NegativeSampler, SampleOptions, Strategy};
use hardneg_core::sample::Streams;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::arrays::{matrix_ref, parse_isa};
use crate::detach::run_detached;
use crate::errors::ParameterError;

fn parse_strategy(strategy: &str, alpha: f64) -> PyResult<Strategy> {
    match strategy {
        "uniform" => Ok(Strategy::Uniform),
        "popularity" => Ok(Strategy::Popularity { alpha }),
        other => Err(ParameterError::new_err(format!("strategy must be 'uniform' or 'popularity', got {other:?}"))),
    }
}

fn rows_of(flat: Vec<i64>, rows: usize, width: usize) -> Array2<i64> {
    Array2::from_shape_vec((rows, width), flat).expect("the core returns rows x width values")
}

/// Each user's items (sorted, unique) and a strategy; draws items a user never interacted with.
#[pyclass(frozen, module = "hardneg._hardneg")]
pub struct InteractionSampler {
    inner: NegativeSampler,
}

#[pymethods]
impl InteractionSampler {
    /// From `(users[i], items[i])` pairs.
    #[staticmethod]
    #[pyo3(signature = (users, items, num_users, num_items, *, strategy = "uniform", alpha = 0.75, threads = 0))]
    #[allow(clippy::too_many_arguments)]
    fn from_pairs(
        py: Python<'_>,
        users: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, i64>,
        num_users: usize,
        num_items: usize,
        strategy: &str,
        alpha: f64,
        threads: usize,
    ) -> PyResult<Self> {
        let strategy = parse_strategy(strategy, alpha)?;
        let (u, i) = (users.as_slice()?, items.as_slice()?);
        let inner = run_detached(py, |_| NegativeSampler::new(Interactions::from_pairs(u, i, num_users, num_items, threads)?, strategy))?;
        Ok(InteractionSampler { inner })
    }

    /// From CSR arrays: user `u` owns `items[offsets[u]..offsets[u + 1]]`.
    #[staticmethod]
    #[pyo3(signature = (offsets, items, num_items, *, strategy = "uniform", alpha = 0.75, threads = 0))]
    fn from_csr(
        py: Python<'_>,
        offsets: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, i64>,
        num_items: usize,
        strategy: &str,
        alpha: f64,
        threads: usize,
    ) -> PyResult<Self> {
        let strategy = parse_strategy(strategy, alpha)?;
        let (o, i) = (offsets.as_slice()?, items.as_slice()?);
        let inner = run_detached(py, |_| NegativeSampler::new(Interactions::from_csr(o, i, num_items, threads)?, strategy))?;
        Ok(InteractionSampler { inner })
    }

    #[getter]
    fn num_users(&self) -> usize {
        self.inner.interactions().num_users()
    }

    #[getter]
    fn num_items(&self) -> usize {
        self.inner.interactions().num_items()
    }

    #[getter]
    fn num_interactions(&self) -> usize {
        self.inner.interactions().len()
    }

    /// Each item's probability in one draw, before a user's own items are excluded.
    fn probabilities<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.probabilities().into_pyarray(py)
    }

    /// The de-duplicated interactions as CSR `(offsets, items)`, int64.
    fn csr<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>) {
        let (offsets, items) = self.inner.interactions().csr();
        let offsets: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
        let items: Vec<i64> = items.iter().map(|&i| i64::from(i)).collect();
        (offsets.into_pyarray(py), items.into_pyarray(py))
    }

    /// `[len(users), num_negatives]` items none of which the row's user interacted with.
    #[pyo3(signature = (users, num_negatives, *, replace = true, seed = 0, epoch = 0, offset = 0, threads = 0))]
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        num_negatives: usize,
        replace: bool,
        seed: u64,
        epoch: u64,
        offset: u64,
        threads: usize,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let u = users.as_slice()?;
        let opts = SampleOptions { num_negatives, replace, streams: Streams { seed, epoch, offset }, threads };
        let out = run_detached(py, |cancel| self.inner.sample(u, &opts, Some(cancel)))?;
        Ok(rows_of(out, u.len(), num_negatives).into_pyarray(py))
    }

    /// `[len(users), num_negatives]` hard negatives by descending score (best of a pool, or exact top-k).
    #[pyo3(signature = (users, user_embeddings, item_embeddings, num_negatives, *, pool = None, metric = "ip", seed = 0, epoch = 0, offset = 0, threads = 0, isa = None))]
    #[allow(clippy::too_many_arguments)]
    fn hard<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        user_embeddings: PyReadonlyArray2<'py, f32>,
        item_embeddings: PyReadonlyArray2<'py, f32>,
        num_negatives: usize,
        pool: Option<usize>,
        metric: &str,
        seed: u64,
        epoch: u64,
        offset: u64,
        threads: usize,
        isa: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let cosine = match metric {
            "ip" => false,
            "cosine" => true,
            other => return Err(ParameterError::new_err(format!("metric must be 'ip' or 'cosine', got {other:?}"))),
        };
        let u = users.as_slice()?;
        let q = matrix_ref("user_embeddings", &user_embeddings)?;
        let items = matrix_ref("item_embeddings", &item_embeddings)?;
        let opts = HardOptions { num_negatives, pool, cosine, streams: Streams { seed, epoch, offset }, threads, isa: parse_isa(isa)? };
        let out = run_detached(py, |cancel| self.inner.hard(u, q, items, &opts, Some(cancel)))?;
        Ok(rows_of(out, u.len(), num_negatives).into_pyarray(py))
    }
}
