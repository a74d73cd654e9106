//! Bindings of the clustering (`hardneg.cluster`) and of the batch planner
//! (`hardneg.ClusterBatchSampler`).

use hardneg_core::batchplan::{self, Packing, PlanOptions};
use hardneg_core::cluster::{self as core_cluster, ClusterOptions};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::arrays::{matrix_ref, parse_isa};
use crate::detach::run_detached;
use crate::errors::ParameterError;

/// Clusters the rows of a float32 matrix: returns `(labels int64 [N], objective)`.
#[pyfunction(name = "cluster")]
#[pyo3(signature = (embeddings, n_clusters, *, method = "balanced", iters = 20, tol = 1e-4, seed = 0, threads = 0, isa = None))]
#[allow(clippy::too_many_arguments)]
pub fn cluster_rows<'py>(
    py: Python<'py>,
    embeddings: PyReadonlyArray2<'py, f32>,
    n_clusters: usize,
    method: &str,
    iters: usize,
    tol: f64,
    seed: u64,
    threads: usize,
    isa: Option<&str>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, f64)> {
    let isa = parse_isa(isa)?;
    let balanced = match method {
        "balanced" => true,
        "kmeans" => false,
        other => return Err(ParameterError::new_err(format!("method must be 'balanced' or 'kmeans', got {other:?}"))),
    };
    let x = matrix_ref("embeddings", &embeddings)?;
    let out = run_detached(py, |cancel| {
        let opts = ClusterOptions { n_clusters, iters, tol, seed, threads, cancel: Some(cancel), isa };
        if balanced {
            core_cluster::balanced(x, &opts)
        } else {
            core_cluster::kmeans(x, &opts)
        }
    })?;
    Ok((out.labels.into_pyarray(py), out.objective))
}

/// Dense ids (in order of first appearance) of 64-bit keys: returns `(ids uint32 [N], n_keys)`.
#[pyfunction]
pub fn dense_keys<'py>(py: Python<'py>, keys: PyReadonlyArray1<'py, u64>) -> PyResult<(Bound<'py, PyArray1<u32>>, usize)> {
    let k = keys.as_slice()?;
    let (ids, n) = run_detached(py, |_| Ok(batchplan::dense_keys(k)))?;
    Ok((ids.into_pyarray(py), n))
}

/// One epoch's batch plan: returns `(rows int64, offsets int64, dropped)`.
#[pyfunction]
#[pyo3(signature = (labels, n_clusters, batch_size, *, random_fraction = 0.0, clusters_per_batch = None, keys = None, drop_last = false, seed = 0, epoch = 0))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn plan_epoch<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    n_clusters: usize,
    batch_size: usize,
    random_fraction: f64,
    clusters_per_batch: Option<usize>,
    keys: Option<PyReadonlyArray1<'py, u32>>,
    drop_last: bool,
    seed: u64,
    epoch: u64,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, usize)> {
    let labels = labels.as_slice()?;
    let keys = match &keys {
        Some(k) => Some(k.as_slice()?),
        None => None,
    };
    let packing = match clusters_per_batch {
        None => Packing::WholeClusters,
        Some(k) => Packing::Lanes(k),
    };
    let plan = run_detached(py, |_| {
        let opts = PlanOptions { batch_size, random_fraction, packing, keys, drop_last, seed, epoch };
        batchplan::plan_epoch(labels, n_clusters, &opts)
    })?;
    Ok((plan.rows.into_pyarray(py), plan.offsets.into_pyarray(py), plan.dropped))
}
