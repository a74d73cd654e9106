//! `hardneg._hardneg`: thin PyO3 bindings over `hardneg-core`.
//!
//! The binding converts arguments, releases the GIL around core calls ([`detach::run_detached`])
//! and maps core errors to the exception classes of `hardneg.errors` ([`errors`]). It holds no
//! loops over data: those belong in the core.

mod arrays;
mod cluster;
mod detach;
mod errors;
mod hnsw;
mod index;
mod kg;
mod mine;
mod partial;
mod recsys;
mod runtime;
mod searcher;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _hardneg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("build_profile", if cfg!(debug_assertions) { "debug" } else { "release" })?;
    m.add("STAT_NAMES", hardneg_core::mine::SelectStats::NAMES.to_vec())?;
    m.add_class::<index::FlatIndex>()?;
    m.add_class::<hnsw::HnswIndex>()?;
    m.add_function(wrap_pyfunction!(index::isa, m)?)?;
    m.add_function(wrap_pyfunction!(index::available_isas, m)?)?;
    m.add_function(wrap_pyfunction!(index::kernels, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(mine::select_negatives, m)?)?;
    m.add_function(wrap_pyfunction!(partial::search_partial, m)?)?;
    m.add_function(wrap_pyfunction!(partial::merge_topk, m)?)?;
    m.add_class::<partial::ShardIndex>()?;
    m.add_function(wrap_pyfunction!(mine::excluded_counts, m)?)?;
    m.add_class::<mine::Miner>()?;
    m.add_function(wrap_pyfunction!(cluster::cluster_rows, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::dense_keys, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::plan_epoch, m)?)?;
    m.add_class::<recsys::InteractionSampler>()?;
    m.add_class::<kg::TripleCorruptor>()?;
    Ok(())
}
