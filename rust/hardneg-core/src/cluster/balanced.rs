//! Recursive balanced spherical 2-means with any number of clusters.

use std::sync::atomic::AtomicBool;

use super::rng::Rng;
use super::{check_cancel, inverse_norms, norm, normalized, simd, validate, ClusterOptions, Clustering};
use crate::error::Result;
use crate::matrix::MatrixRef;
use crate::topk::Isa;

/// Rows per block of a parallel sum; sums are taken block by block in this fixed order.
const SUM_BLOCK: usize = 8192;
/// Nodes smaller than this split on one thread.
const PAR_MIN: usize = 32 * 1024;

struct Ctx<'a> {
    x: MatrixRef<'a>,
    inv: &'a [f32],
    /// floor(N / n_clusters): every cluster has `q` or `q + 1` rows.
    q: usize,
    iters: usize,
    tol: f64,
    seed: u64,
    isa: Isa,
    cancel: Option<&'a AtomicBool>,
}

struct Leaf {
    size: usize,
    norm: f64,
}

/// Balanced spherical clustering: `opts.n_clusters` clusters of `floor(N/K)` or `ceil(N/K)` rows.
///
/// Cluster ids follow the split tree depth-first (left first), so clusters with nearby ids are
/// siblings in the tree. `opts.iters` caps the 2-means iterations of each split; a split stops
/// early when its objective improves by less than `opts.tol` or the partition stops changing.
pub fn balanced(x: MatrixRef<'_>, opts: &ClusterOptions<'_>) -> Result<Clustering> {
    let (threads, isa) = validate(x, opts)?;
    let (n, k) = (x.rows(), opts.n_clusters);
    let inv = inverse_norms(x, isa, threads);
    let ctx = Ctx { x, inv: &inv, q: n / k, iters: opts.iters, tol: opts.tol, seed: opts.seed, isa, cancel: opts.cancel };
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let total = block_sum(&ctx, &perm, threads);
    let mut leaves = Vec::with_capacity(k);
    solve(&ctx, &mut perm, k, 1, threads, total, &mut leaves)?;
    let mut labels = vec![0i64; n];
    let mut pos = 0;
    for (c, leaf) in leaves.iter().enumerate() {
        for &i in &perm[pos..pos + leaf.size] {
            labels[i as usize] = c as i64;
        }
        pos += leaf.size;
    }
    debug_assert_eq!(pos, n);
    let objective = leaves.iter().map(|l| l.norm).sum::<f64>() / n as f64;
    Ok(Clustering { labels, n_clusters: k, objective })
}

/// Splits the rows `perm` (whose normalised sum is `sum`) into `leaves` clusters, appending
/// them to `out` in depth-first order. `path` names the node (root 1, children 2p and 2p+1).
fn solve(ctx: &Ctx<'_>, perm: &mut [u32], leaves: usize, path: u64, threads: usize, sum: Vec<f64>, out: &mut Vec<Leaf>) -> Result<()> {
    if leaves == 1 {
        out.push(Leaf { size: perm.len(), norm: norm(&sum) });
        return Ok(());
    }
    check_cancel(ctx.cancel)?;
    let n = perm.len();
    let (l1, l2) = (leaves / 2, leaves - leaves / 2);
    // `extra` leaves of this node hold q + 1 rows (0 <= extra <= leaves); share them in proportion.
    let extra = n - leaves * ctx.q;
    let n1 = l1 * ctx.q + extra * l1 / leaves;
    let (sl, sr) = split(ctx, perm, n1, path, threads, &sum)?;
    let (pl, pr) = perm.split_at_mut(n1);
    if threads >= 2 {
        let t1 = ((threads * l1 + leaves / 2) / leaves).clamp(1, threads - 1);
        let t2 = threads - t1;
        let mut left = Vec::new();
        let mut right = Vec::new();
        std::thread::scope(|s| {
            let h = s.spawn(|| solve(ctx, pl, l1, 2 * path, t1, sl, &mut left));
            let rr = solve(ctx, pr, l2, 2 * path + 1, t2, sr, &mut right);
            let lr = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            lr.and(rr)
        })?;
        out.extend(left);
        out.extend(right);
        Ok(())
    } else {
        solve(ctx, pl, l1, 2 * path, 1, sl, out)?;
        solve(ctx, pr, l2, 2 * path + 1, 1, sr, out)
    }
}

/// One balanced 2-means split: reorders `perm` so its first `n1` rows are the left cluster and
/// returns the normalised sums of the two sides.
fn split(ctx: &Ctx<'_>, perm: &mut [u32], n1: usize, path: u64, threads: usize, sum: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = perm.len();
    let d = ctx.x.dim();
    let threads = if n < PAR_MIN { 1 } else { threads };
    let mut rng = Rng::for_words(&[ctx.seed, path]);
    let a = rng.below(n);
    let mut b = rng.below(n - 1);
    if b >= a {
        b += 1;
    }
    let row_unit = |i: u32| -> Vec<f32> {
        let s = ctx.inv[i as usize];
        ctx.x.row(i as usize).iter().map(|&v| v * s).collect()
    };
    let (mut c0, mut c1) = (row_unit(perm[a]), row_unit(perm[b]));
    let mut keyed: Vec<(f32, u32)> = vec![(0.0, 0); n];
    let mut w = vec![0.0f32; d];
    let mut prev = f64::NEG_INFINITY;
    let mut result = (Vec::new(), Vec::new());
    for _ in 0..ctx.iters {
        check_cancel(ctx.cancel)?;
        for t in 0..d {
            w[t] = c0[t] - c1[t];
        }
        score(ctx, perm, &w, &mut keyed, threads);
        // Highest x.(c0 - c1) first, ties by lower row id: a total order, so the left set is
        // unique and select_nth (O(n)) is enough.
        keyed.select_nth_unstable_by(n1, |p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
        for (p, &(_, i)) in perm.iter_mut().zip(&keyed) {
            *p = i;
        }
        let sl = block_sum(ctx, &perm[..n1], threads);
        let sr: Vec<f64> = sum.iter().zip(&sl).map(|(t, l)| t - l).collect();
        let obj = (norm(&sl) + norm(&sr)) / n as f64;
        c0 = normalized(&sl);
        c1 = normalized(&sr);
        result = (sl, sr);
        let done = obj - prev < ctx.tol;
        prev = obj;
        if done {
            break;
        }
    }
    Ok(result)
}

/// `keyed[j] = (cos-scaled x[perm[j]] . w, perm[j])`.
fn score(ctx: &Ctx<'_>, perm: &[u32], w: &[f32], keyed: &mut [(f32, u32)], threads: usize) {
    let work = |p: &[u32], k: &mut [(f32, u32)]| {
        for (o, &i) in k.iter_mut().zip(p) {
            *o = (simd::dot(ctx.isa, ctx.x.row(i as usize), w) * ctx.inv[i as usize], i);
        }
    };
    if threads <= 1 {
        work(perm, keyed);
        return;
    }
    let per = perm.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (p, k) in perm.chunks(per).zip(keyed.chunks_mut(per)) {
            s.spawn(move || work(p, k));
        }
    });
}

/// Sum of the normalised rows `perm`, block by block in a fixed order.
fn block_sum(ctx: &Ctx<'_>, perm: &[u32], threads: usize) -> Vec<f64> {
    let d = ctx.x.dim();
    let one = |p: &[u32]| {
        let mut acc = vec![0.0f64; d];
        for &i in p {
            let s = ctx.inv[i as usize];
            if s != 0.0 {
                simd::axpy(ctx.isa, &mut acc, ctx.x.row(i as usize), s);
            }
        }
        acc
    };
    let blocks: Vec<&[u32]> = perm.chunks(SUM_BLOCK).collect();
    let partials: Vec<Vec<f64>> = if threads <= 1 || blocks.len() < 2 {
        blocks.iter().map(|b| one(b)).collect()
    } else {
        let per = blocks.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks.chunks(per).map(|bs| s.spawn(move || bs.iter().map(|b| one(b)).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    };
    let mut total = vec![0.0f64; d];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::{balanced, objective, ClusterOptions};
    use crate::matrix::MatrixRef;

    fn blobs(n: usize, d: usize, centers: usize, seed: u64) -> Vec<f32> {
        let mut rng = super::Rng::new(seed);
        let cs: Vec<f32> = (0..centers * d).map(|_| (rng.below(2000) as f32 / 1000.0) - 1.0).collect();
        let mut v = Vec::with_capacity(n * d);
        for i in 0..n {
            let c = i % centers;
            for t in 0..d {
                v.push(cs[c * d + t] + (rng.below(200) as f32 / 1000.0) - 0.1);
            }
        }
        v
    }

    #[test]
    fn sizes_differ_by_at_most_one_for_any_count() {
        let (n, d) = (1003, 8);
        let v = blobs(n, d, 5, 1);
        let x = MatrixRef::new("x", &v, n, d).unwrap();
        for k in [1usize, 2, 3, 7, 16, 100, 501, 1003] {
            let c = balanced(x, &ClusterOptions::new(k)).unwrap();
            let mut sizes = vec![0usize; k];
            for &l in &c.labels {
                sizes[l as usize] += 1;
            }
            let (lo, hi) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
            assert!(hi - lo <= 1 && lo == n / k, "k={k}: {lo}..{hi}");
            let direct = objective(x, &c.labels, k).unwrap();
            assert!((direct - c.objective).abs() < 1e-6, "k={k}: {direct} vs {}", c.objective);
        }
    }

    #[test]
    fn same_result_whatever_the_thread_count() {
        let (n, d) = (70_000, 16);
        let v = blobs(n, d, 9, 2);
        let x = MatrixRef::new("x", &v, n, d).unwrap();
        let mut o = ClusterOptions::new(1000);
        o.threads = 1;
        let a = balanced(x, &o).unwrap();
        for t in [2, 3, 5] {
            o.threads = t;
            assert_eq!(balanced(x, &o).unwrap(), a, "threads={t}");
        }
        o.seed = 1;
        assert_ne!(balanced(x, &o).unwrap().labels, a.labels);
    }

    #[test]
    fn separates_well_separated_blobs() {
        let (n, d) = (800, 4);
        // Four tight groups along the axes: a balanced 4-way split must recover them.
        let mut v = Vec::new();
        for i in 0..n {
            let mut r = [0.01f32 * ((i % 7) as f32); 4];
            r[i % 4] = 1.0;
            v.extend_from_slice(&r);
        }
        let x = MatrixRef::new("x", &v, n, d).unwrap();
        let c = balanced(x, &ClusterOptions::new(4)).unwrap();
        for i in 0..n {
            assert_eq!(c.labels[i], c.labels[i % 4], "row {i}");
        }
        assert!(c.objective > 0.99);
    }
}
