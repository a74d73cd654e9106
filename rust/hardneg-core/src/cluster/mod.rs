//! Clustering of embeddings for cluster-balanced mini-batches (NGAME, TAS-Balanced).
//!
//! * [`balanced`]: recursive balanced spherical 2-means. `N` rows go into exactly
//!   `n_clusters` clusters whose sizes differ by at most one (no power-of-two rounding): a node
//!   with `n` rows and `L` leaves is split into `floor(L/2)` and `ceil(L/2)` leaves, and each
//!   side gets the number of rows its leaves need. Each split is a 2-means whose assignment
//!   step is a balanced partition: rows are ranked by `x . (c0 - c1)` and the top `n_left` go
//!   left (`select_nth_unstable`, O(n)); the first partition of a split follows the principal
//!   direction of its rows (a few power iterations). Independent subtrees run on separate
//!   threads; large nodes near the root split their row passes over threads in fixed blocks.
//!   The tree is then refined by balanced spherical k-means over all clusters: each iteration
//!   gives every row its 8 most similar centroids as candidates (an exact top-k search over all
//!   centroids in the first two iterations, then over the 32 centroids nearest to the row's own
//!   cluster), solves the capacitated assignment by auction (module `auction`, within 1e-3 per row
//!   of the best assignment over those candidates, every size kept) and moves the centroids.
//! * [`kmeans`]: spherical k-means (unbalanced, as TAS-B uses), whose assignment step is the
//!   fused exact top-k engine ([`crate::search`], k = 1, rows as queries, centroids as corpus).
//!
//! Rows are compared by cosine: each row is scaled by its inverse norm on the fly (no copy of the
//! input). Rows of norm zero have cosine 0 to everything. Both methods are deterministic for a
//! seed whatever the thread count: every random choice comes from a generator seeded by a hash of
//! (seed, what is decided), and every sum is taken in a fixed order.
//!
//! The objective is the mean cosine of each row to the normalised mean of its cluster,
//! `sum_c |S_c| / N` where `S_c` is the sum of the normalised rows of cluster `c`.

mod auction;
mod balanced;
mod kmeans;
pub mod rng;
pub(crate) mod simd;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;
use crate::topk::{resolve_threads, Isa};

pub use balanced::balanced;
pub use kmeans::kmeans;

/// Options shared by [`balanced`] and [`kmeans`].
#[derive(Clone, Copy, Debug)]
pub struct ClusterOptions<'a> {
    /// Number of clusters (1..=rows).
    pub n_clusters: usize,
    /// Maximum iterations: per split for [`balanced`], in total for [`kmeans`].
    pub iters: usize,
    /// Stop a split (or k-means) when the objective improves by less than this.
    pub tol: f64,
    /// Random seed.
    pub seed: u64,
    /// Worker threads (0 means all available cores).
    pub threads: usize,
    /// Set to true from another thread to stop with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Force an instruction set (tests); `None` picks the best one.
    pub isa: Option<Isa>,
}

impl<'a> ClusterOptions<'a> {
    /// Options for `n_clusters` clusters with every other setting at its default
    /// (20 iterations, tol 1e-4, seed 0, all cores).
    pub fn new(n_clusters: usize) -> Self {
        ClusterOptions { n_clusters, iters: 20, tol: 1e-4, seed: 0, threads: 0, cancel: None, isa: None }
    }
}

/// Result of a clustering.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// Cluster id of every row, in `0..n_clusters`.
    pub labels: Vec<i64>,
    /// Number of clusters.
    pub n_clusters: usize,
    /// Mean cosine of each row to its cluster's normalised mean.
    pub objective: f64,
}

/// `ceil(rows / cluster_size)`: the number of clusters for a target cluster size.
pub fn n_clusters_for_size(rows: usize, cluster_size: usize) -> Result<usize> {
    if cluster_size == 0 {
        return Err(Error::param("cluster_size", "cluster_size must be at least 1"));
    }
    Ok(rows.div_ceil(cluster_size))
}

/// Shared validation (cluster count, iterations, finiteness) and set-up. Returns the thread
/// count, the instruction set and every row's inverse norm (0 for zero rows), the norms taken
/// in the same pass over the rows as the finiteness check.
pub(crate) fn validate(x: MatrixRef<'_>, opts: &ClusterOptions<'_>) -> Result<(usize, Isa, Vec<f32>)> {
    let n = x.rows();
    if opts.n_clusters < 1 || opts.n_clusters > n {
        return Err(Error::param(
            "n_clusters",
            format!("n_clusters must be between 1 and the number of rows ({n}), got {}; lower it or use a larger cluster_size", opts.n_clusters),
        ));
    }
    if opts.iters < 1 {
        return Err(Error::param("iters", format!("iters must be at least 1, got {}", opts.iters)));
    }
    if opts.tol.is_nan() || opts.tol < 0.0 {
        return Err(Error::param("tol", format!("tol must be >= 0, got {}", opts.tol)));
    }
    if n > u32::MAX as usize {
        return Err(Error::param("embeddings", format!("at most {} rows can be clustered at once, got {n}", u32::MAX)));
    }
    let threads = resolve_threads(opts.threads);
    let isa = opts.isa.unwrap_or_else(Isa::detect);
    if !isa.is_supported() {
        return Err(Error::param("isa", format!("this CPU cannot run the {} kernels", isa.name())));
    }
    let inv = crate::matrix::finite_inverse_norms("embeddings", x, threads)?;
    Ok((threads, isa, inv))
}

/// Rows grouped by cluster with a counting sort: the rows of cluster `c` are
/// `order[offsets[c]..offsets[c + 1]]`, in row order. Labels must be in `0..k`.
pub(crate) fn rows_by_cluster(labels: &[i64], k: usize) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = vec![0usize; k + 1];
    for &l in labels {
        offsets[l as usize + 1] += 1;
    }
    for c in 0..k {
        offsets[c + 1] += offsets[c];
    }
    let mut fill = offsets.clone();
    let mut order = vec![0u32; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    (offsets, order)
}

/// Returns `Err(Cancelled)` if the flag is raised.
#[inline]
/// The search kernel of a clustering on `isa`: free (the AMX scan when it applies, or
/// `HARDNEG_KERNEL`) on the best instruction set, the float32 kernels of `isa` when a lesser one
/// was asked for. Either gives the same neighbours.
pub(crate) fn search_kernel(isa: Isa) -> Option<crate::topk::Kernel> {
    (isa != Isa::detect()).then_some(isa.into())
}

pub(crate) fn check_cancel(cancel: Option<&AtomicBool>) -> Result<()> {
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// L2 norm of an f64 vector.
#[inline]
pub(crate) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `v / |v|` as f32 (zero stays zero).
pub(crate) fn normalized(v: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    normalize_into(v, &mut out);
    out
}

/// Writes `v / |v|` as f32 into `out` (zeros if `v` is zero) and returns `|v|`.
pub(crate) fn normalize_into(v: &[f64], out: &mut [f32]) -> f64 {
    let nv = norm(v);
    for (o, x) in out.iter_mut().zip(v) {
        *o = if nv > 0.0 { (x / nv) as f32 } else { 0.0 };
    }
    nv
}

/// Objective of a labelling, computed directly (reference for tests and for callers that have
/// labels from elsewhere): `sum_c |sum of normalised rows of c| / N`.
pub fn objective(x: MatrixRef<'_>, labels: &[i64], n_clusters: usize) -> Result<f64> {
    if labels.len() != x.rows() {
        return Err(Error::RowCountMismatch { what: "labels", expected: x.rows(), got: labels.len() });
    }
    let d = x.dim();
    let mut sums = vec![0.0f64; n_clusters * d];
    for (i, &l) in labels.iter().enumerate() {
        if l < 0 || l as usize >= n_clusters {
            return Err(Error::IdOutOfRange { what: "labels", row: i, id: l, n: n_clusters });
        }
        let r = x.row(i);
        let nr = r.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
        if nr > 0.0 {
            let s = &mut sums[l as usize * d..(l as usize + 1) * d];
            for t in 0..d {
                s[t] += f64::from(r[t]) / nr;
            }
        }
    }
    Ok(sums.chunks_exact(d).map(norm).sum::<f64>() / x.rows() as f64)
}
