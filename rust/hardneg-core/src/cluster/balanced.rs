//! Recursive balanced spherical 2-means with any number of clusters.

use std::sync::atomic::AtomicBool;

use super::rng::Rng;
use super::{check_cancel, inverse_norms, norm, normalized, simd, validate, ClusterOptions, Clustering};
use crate::error::Result;
use crate::matrix::MatrixRef;
use crate::topk::{search, Isa, SearchOptions};

/// Rows per block of a parallel sum; sums are taken block by block in this fixed order.
const SUM_BLOCK: usize = 8192;
/// Nodes smaller than this split on one thread.
const PAR_MIN: usize = 32 * 1024;
/// Power iterations for the principal direction that starts each split.
const POWER_ITERS: usize = 3;
/// Nearest clusters (itself included) a row may move to during the final refinement.
const NEIGHBOURS: usize = 32;
/// Iterations of the final refinement.
const REFINE_ITERS: usize = 10;

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
}

/// Balanced spherical clustering: `opts.n_clusters` clusters of `floor(N/K)` or `ceil(N/K)` rows.
///
/// Cluster ids follow the split tree depth-first (left first), so clusters with nearby ids are
/// mostly siblings in the tree. After the splits, a refinement lets rows move to one of the 32
/// clusters nearest to their own (cluster sizes unchanged), which undoes most mistakes of the
/// greedy top-down splits (see [`refine`]). `opts.iters` caps the 2-means iterations of each split; a split stops
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
    drop(perm);
    let sizes: Vec<usize> = leaves.iter().map(|l| l.size).collect();
    let objective = refine(&ctx, &mut labels, &sizes, threads)? / n as f64;
    Ok(Clustering { labels, n_clusters: k, objective })
}

/// Final refinement across the whole tree: capacitated spherical k-means where each row may
/// move to one of the `NEIGHBOURS` clusters nearest to its own (found once with the top-k
/// engine on the centroids). Each iteration scores every row against those clusters, assigns
/// greedily by descending score while clusters have room, considering for each row its own
/// cluster and the neighbours at least as similar (sizes never change; a row left without room
/// takes its most similar neighbour with room, else the lowest cluster id with room), and is
/// kept only if the objective improves by at least `tol`. Returns `sum_c |S_c|`.
fn refine(ctx: &Ctx<'_>, labels: &mut [i64], sizes: &[usize], threads: usize) -> Result<f64> {
    let (n, k, d) = (labels.len(), sizes.len(), ctx.x.dim());
    let mut sums = super::kmeans::cluster_sums(ctx.x, ctx.inv, labels, k, threads, ctx.isa);
    let total = |s: &[f64]| s.chunks_exact(d).map(norm).sum::<f64>();
    let mut best = total(&sums);
    let m = NEIGHBOURS.min(k);
    if k < 2 {
        return Ok(best);
    }
    let mut nbr: Vec<i64> = Vec::new();
    let mut next = vec![0i64; n];
    for it in 0..REFINE_ITERS {
        check_cancel(ctx.cancel)?;
        let mut cents = vec![0.0f32; k * d];
        for (c, s) in sums.chunks_exact(d).enumerate() {
            cents[c * d..(c + 1) * d].copy_from_slice(&normalized(s));
        }
        let cm = MatrixRef::new("centroids", &cents, k, d)?;
        if it == 0 {
            let so = SearchOptions { threads, cancel: ctx.cancel, isa: Some(ctx.isa), ..SearchOptions::new(m) };
            nbr = search(cm, cm, &so)?.ids;
        }
        // Candidate moves: (score, row, cluster) for each neighbour of the row's cluster that is
        // at least as similar as its own cluster (its own cluster included).
        let per = n.div_ceil(threads.max(1)).max(1);
        let parts: Vec<Vec<(f32, u32, u32)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n.div_ceil(per))
                .map(|t| {
                    let (nbr, cents, labels) = (&nbr, &cents, &*labels);
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(per + per / 4);
                        #[allow(clippy::needless_range_loop)] // i indexes rows, labels and norms alike
                        for i in t * per..((t + 1) * per).min(n) {
                            let r = ctx.x.row(i);
                            let l = labels[i] as usize;
                            let own = simd::dot(ctx.isa, r, &cents[l * d..(l + 1) * d]) * ctx.inv[i];
                            out.push((own, i as u32, l as u32));
                            for &c in &nbr[l * m..(l + 1) * m] {
                                let c = c as usize;
                                if c != l {
                                    let sc = simd::dot(ctx.isa, r, &cents[c * d..(c + 1) * d]) * ctx.inv[i];
                                    if sc >= own {
                                        out.push((sc, i as u32, c as u32));
                                    }
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        let mut pairs: Vec<(f32, u32, u32)> = parts.concat();
        pairs.sort_unstable_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)).then(p.2.cmp(&q.2)));
        let mut room = sizes.to_vec();
        next.iter_mut().for_each(|v| *v = -1);
        for &(_, i, c) in &pairs {
            if next[i as usize] < 0 && room[c as usize] > 0 {
                next[i as usize] = i64::from(c);
                room[c as usize] -= 1;
            }
        }
        drop(pairs);
        // Rows whose clusters filled up: the most similar neighbour cluster with room, else the
        // lowest cluster id with room.
        let mut c0 = 0;
        for i in 0..n {
            if next[i] >= 0 {
                continue;
            }
            let l = labels[i] as usize;
            let r = ctx.x.row(i);
            let mut pick: Option<(f32, usize)> = None;
            for &c in &nbr[l * m..(l + 1) * m] {
                let c = c as usize;
                if room[c] > 0 {
                    let sc = simd::dot(ctx.isa, r, &cents[c * d..(c + 1) * d]);
                    if pick.is_none_or(|(b, bc)| sc > b || (sc == b && c < bc)) {
                        pick = Some((sc, c));
                    }
                }
            }
            let c = match pick {
                Some((_, c)) => c,
                None => {
                    while room[c0] == 0 {
                        c0 += 1;
                    }
                    c0
                }
            };
            next[i] = c as i64;
            room[c] -= 1;
        }
        let cand = super::kmeans::cluster_sums(ctx.x, ctx.inv, &next, k, threads, ctx.isa);
        let obj = total(&cand);
        if obj - best < ctx.tol * n as f64 {
            break;
        }
        best = obj;
        sums = cand;
        labels.copy_from_slice(&next);
    }
    Ok(best)
}

/// Splits the rows `perm` (whose normalised sum is `sum`) into `leaves` clusters, appending
/// them to `out` in depth-first order. `path` names the node (root 1, children 2p and 2p+1).
fn solve(ctx: &Ctx<'_>, perm: &mut [u32], leaves: usize, path: u64, threads: usize, sum: Vec<f64>, out: &mut Vec<Leaf>) -> Result<()> {
    solve_tree(ctx, perm, leaves, path, threads, sum, out)
}

fn solve_tree(ctx: &Ctx<'_>, perm: &mut [u32], leaves: usize, path: u64, threads: usize, sum: Vec<f64>, out: &mut Vec<Leaf>) -> Result<()> {
    if leaves == 1 {
        drop(sum);
        out.push(Leaf { size: perm.len() });
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
    let mut w: Vec<f32> = c0.iter().zip(&c1).map(|(a, b)| a - b).collect();
    // The first split follows the principal direction of the centred rows (PDDP), found by a
    // few power iterations started from the difference of the two random rows: a much better
    // start than the two rows themselves.
    let mean_dir: Vec<f64> = sum.iter().map(|v| v / n as f64).collect();
    let mut weights = vec![0.0f32; n];
    for _ in 0..POWER_ITERS {
        check_cancel(ctx.cancel)?;
        score(ctx, perm, &w, &mut keyed, threads);
        let m: f64 = mean_dir.iter().zip(&w).map(|(a, &b)| a * f64::from(b)).sum();
        for (wt, &(s, _)) in weights.iter_mut().zip(&keyed) {
            *wt = (f64::from(s) - m) as f32;
        }
        let v = block_sum_weighted(ctx, perm, Some(&weights), threads);
        if norm(&v) == 0.0 {
            break;
        }
        w = normalized(&v);
    }
    let mut prev = f64::NEG_INFINITY;
    let mut result = (Vec::new(), Vec::new());
    for it in 0..ctx.iters {
        check_cancel(ctx.cancel)?;
        if it > 0 {
            for t in 0..d {
                w[t] = c0[t] - c1[t];
            }
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
    block_sum_weighted(ctx, perm, None, threads)
}

/// Sum of the normalised rows `perm`, each times `weights[j]` if given, block by block.
fn block_sum_weighted(ctx: &Ctx<'_>, perm: &[u32], weights: Option<&[f32]>, threads: usize) -> Vec<f64> {
    let d = ctx.x.dim();
    let one = |(bi, p): (usize, &[u32])| {
        let mut acc = vec![0.0f64; d];
        for (j, &i) in p.iter().enumerate() {
            let mut s = ctx.inv[i as usize];
            if let Some(w) = weights {
                s *= w[bi * SUM_BLOCK + j];
            }
            if s != 0.0 {
                simd::axpy(ctx.isa, &mut acc, ctx.x.row(i as usize), s);
            }
        }
        acc
    };
    let blocks: Vec<(usize, &[u32])> = perm.chunks(SUM_BLOCK).enumerate().collect();
    let partials: Vec<Vec<f64>> = if threads <= 1 || blocks.len() < 2 {
        blocks.iter().map(|&b| one(b)).collect()
    } else {
        let per = blocks.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks.chunks(per).map(|bs| s.spawn(move || bs.iter().map(|&b| one(b)).collect::<Vec<_>>())).collect();
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
