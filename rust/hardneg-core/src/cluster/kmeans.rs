//! Spherical k-means (unbalanced) whose assignment step is the fused top-k engine.

use super::rng::Rng;
use super::{check_cancel, normalize_into, search_kernel, validate, ClusterOptions, Clustering};
use crate::error::Result;
use crate::matrix::MatrixRef;
use crate::topk::{search, Isa, SearchOptions};

/// Rows per assignment call (the rows are the queries, the centroids the corpus).
const ASSIGN_CHUNK: usize = 4096;

/// Spherical k-means with `opts.n_clusters` centroids.
///
/// Initial centroids are distinct random rows. Each iteration assigns every row to its most
/// similar centroid (the exact top-1 of the row against the centroids, ties to the lower id),
/// then moves each centroid to the normalised mean of its rows. A centroid left without rows is
/// re-seeded with the row that is least similar to its own centroid (distinct rows, by
/// ascending similarity then row id). Stops after `opts.iters` iterations, when no label
/// changes, or when the objective improves by less than `opts.tol`. Clusters may be empty.
pub fn kmeans(x: MatrixRef<'_>, opts: &ClusterOptions<'_>) -> Result<Clustering> {
    let (threads, isa, inv) = validate(x, opts)?;
    let (n, d, k) = (x.rows(), x.dim(), opts.n_clusters);
    let mut rng = Rng::for_words(&[opts.seed, 0x6b6d_6561_6e73]);
    let mut idx: Vec<u32> = (0..n as u32).collect();
    rng.partial_shuffle(&mut idx, k);
    let mut cent = vec![0.0f32; k * d];
    for c in 0..k {
        set_unit_row(x, &inv, idx[c] as usize, &mut cent[c * d..(c + 1) * d]);
    }
    drop(idx);
    let mut labels = vec![-1i64; n];
    let mut scores = vec![0.0f32; n];
    let mut objective = 0.0f64;
    let mut prev = f64::NEG_INFINITY;
    for _ in 0..opts.iters {
        check_cancel(opts.cancel)?;
        let changed = assign(x, &inv, &cent, k, threads, isa, &mut labels, &mut scores, opts)?;
        let sums = cluster_sums(x, &inv, &labels, k, threads, isa);
        let mut total = 0.0f64;
        let mut empty = Vec::new();
        for (c, s) in sums.chunks_exact(d).enumerate() {
            let nv = normalize_into(s, &mut cent[c * d..(c + 1) * d]);
            total += nv;
            if nv == 0.0 {
                empty.push(c);
            }
        }
        objective = total / n as f64;
        if !empty.is_empty() {
            let mut worst: Vec<u32> = (0..n as u32).collect();
            let m = empty.len().min(n);
            let cmp = |a: &u32, b: &u32| scores[*a as usize].total_cmp(&scores[*b as usize]).then(a.cmp(b));
            if m < n {
                worst.select_nth_unstable_by(m, cmp);
            }
            worst[..m].sort_unstable_by(cmp);
            for (&c, &r) in empty.iter().zip(&worst[..m]) {
                set_unit_row(x, &inv, r as usize, &mut cent[c * d..(c + 1) * d]);
            }
        }
        let done = changed == 0 || objective - prev < opts.tol;
        prev = objective;
        if done {
            break;
        }
    }
    Ok(Clustering { labels, n_clusters: k, objective })
}

fn set_unit_row(x: MatrixRef<'_>, inv: &[f32], r: usize, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x.row(r)) {
        *o = v * inv[r];
    }
}

/// Assigns every row to its nearest centroid; returns how many labels changed.
#[allow(clippy::too_many_arguments)]
fn assign(
    x: MatrixRef<'_>,
    inv: &[f32],
    cent: &[f32],
    k: usize,
    threads: usize,
    isa: Isa,
    labels: &mut [i64],
    scores: &mut [f32],
    opts: &ClusterOptions<'_>,
) -> Result<usize> {
    let old = labels.to_vec();
    nearest(x, inv, cent, k, 1, threads, isa, opts.cancel, labels, scores)?;
    Ok(old.iter().zip(labels.iter()).filter(|(a, b)| a != b).count())
}

/// The `m` most similar centroids of every row (the exact top-`m` of the row's unit vector
/// against the centroids: scores are cosines, ties to the lower id), written row-major into
/// `ids` and `scores` (`N * m` each). Rows are the queries and the centroids the corpus of the
/// fused top-k engine; chunks of rows run on separate threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn nearest(
    x: MatrixRef<'_>,
    inv: &[f32],
    cent: &[f32],
    k: usize,
    m: usize,
    threads: usize,
    isa: Isa,
    cancel: Option<&std::sync::atomic::AtomicBool>,
    ids: &mut [i64],
    scores: &mut [f32],
) -> Result<()> {
    let d = x.dim();
    let corpus = MatrixRef::new("centroids", cent, k, d)?;
    let work = |start: usize, ids: &mut [i64], scores: &mut [f32]| -> Result<()> {
        let mut buf = Vec::with_capacity(ASSIGN_CHUNK * d);
        for (c, (is, ss)) in ids.chunks_mut(ASSIGN_CHUNK * m).zip(scores.chunks_mut(ASSIGN_CHUNK * m)).enumerate() {
            check_cancel(cancel)?;
            let r0 = start + c * ASSIGN_CHUNK;
            let rows = is.len() / m;
            buf.clear();
            for (r, &s) in inv.iter().enumerate().skip(r0).take(rows) {
                buf.extend(x.row(r).iter().map(|&v| v * s));
            }
            let q = MatrixRef::new("rows", &buf, rows, d)?;
            let so = SearchOptions { threads: 1, cancel, kernel: search_kernel(isa), ..SearchOptions::new(m) };
            let top = search(q, corpus, &so)?;
            is.copy_from_slice(&top.ids);
            ss.copy_from_slice(&top.scores);
        }
        Ok(())
    };
    let chunks = x.rows().div_ceil(ASSIGN_CHUNK);
    let threads = threads.min(chunks).max(1);
    if threads == 1 {
        return work(0, ids, scores);
    }
    let per = chunks.div_ceil(threads) * ASSIGN_CHUNK;
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks_mut(per * m)
            .zip(scores.chunks_mut(per * m))
            .enumerate()
            .map(|(t, (is, ss))| {
                let work = &work;
                s.spawn(move || work(t * per, is, ss))
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Per-cluster sums of the normalised rows, `k * d`, each taken in row order.
pub(super) fn cluster_sums(x: MatrixRef<'_>, inv: &[f32], labels: &[i64], k: usize, threads: usize, isa: Isa) -> Vec<f64> {
    let d = x.dim();
    let (offsets, order) = super::rows_by_cluster(labels, k);
    let mut sums = vec![0.0f64; k * d];
    let per = k.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (t, part) in sums.chunks_mut(per * d).enumerate() {
            let (offsets, order) = (&offsets, &order);
            s.spawn(move || {
                for (j, acc) in part.chunks_exact_mut(d).enumerate() {
                    let c = t * per + j;
                    for &i in &order[offsets[c]..offsets[c + 1]] {
                        let sc = inv[i as usize];
                        if sc != 0.0 {
                            super::simd::axpy(isa, acc, x.row(i as usize), sc);
                        }
                    }
                }
            });
        }
    });
    sums
}

#[cfg(test)]
mod tests {
    use super::super::{kmeans, objective, ClusterOptions};
    use crate::matrix::MatrixRef;

    #[test]
    fn recovers_axis_groups_and_is_thread_independent() {
        let (n, d) = (9000, 6);
        let mut v = Vec::new();
        for i in 0..n {
            let mut r = [0.02f32 * ((i % 5) as f32); 6];
            r[i % 3] = 1.0;
            v.extend_from_slice(&r);
        }
        let x = MatrixRef::new("x", &v, n, d).unwrap();
        let mut o = ClusterOptions::new(3);
        o.threads = 1;
        let a = kmeans(x, &o).unwrap();
        for i in 0..n {
            assert_eq!(a.labels[i], a.labels[i % 3]);
        }
        assert!((objective(x, &a.labels, 3).unwrap() - a.objective).abs() < 1e-6);
        o.threads = 3;
        assert_eq!(kmeans(x, &o).unwrap(), a);
    }
}
