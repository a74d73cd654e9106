//! Recursive balanced spherical 2-means with any number of clusters.

use std::sync::atomic::AtomicBool;

use super::auction::auction;
use super::rng::Rng;
use super::{check_cancel, norm, normalize_into, normalized, simd, validate, ClusterOptions, Clustering};
use crate::error::Result;
use crate::matrix::MatrixRef;
use crate::topk::{search, Isa, SearchOptions};

/// Rows per block of a parallel sum; sums are taken block by block in this fixed order.
const SUM_BLOCK: usize = 8192;
/// Nodes smaller than this split on one thread.
const PAR_MIN: usize = 32 * 1024;
/// Power iterations for the principal direction that starts each split.
const POWER_ITERS: usize = 3;
/// Most similar clusters a row may move to in each refinement iteration (besides its own).
const CANDIDATES: usize = 8;
/// Slack of the refinement's auction: the total score of its assignment is within
/// `rows * AUCTION_EPS` of the best one (cosines, so 1e-3 is 0.1 % of their range's half).
const AUCTION_EPS: f64 = 1e-3;
/// Refinement iterations whose candidates come from an exact search over all centroids; later
/// ones look only at the `NEIGHBOURS` centroids nearest to the row's own cluster.
const FULL_SEARCH_ITERS: usize = 2;
/// Centroids near a cluster's own that its rows consider after the first iterations.
const NEIGHBOURS: usize = 32;
/// Bids per row one auction may take before it gives up (it needs about two).
const MAX_BIDS_PER_ROW: usize = 100000;

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
/// mostly siblings in the tree. The tree is then refined by balanced k-means (`refine`),
/// which undoes the mistakes of greedy top-down splits: on groups of ~50 rows cut into
/// clusters of 64 it raises the objective from ~80 % to ~97 % of unconstrained k-means'.
/// `opts.iters` caps the 2-means iterations of each split and the refinement iterations; each
/// stops early when its objective improves by less than `opts.tol` (per row).
pub fn balanced(x: MatrixRef<'_>, opts: &ClusterOptions<'_>) -> Result<Clustering> {
    let (threads, isa, inv) = validate(x, opts)?;
    let (n, k) = (x.rows(), opts.n_clusters);
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

/// Final refinement across the whole tree: balanced spherical k-means. Each iteration finds
/// every row's `CANDIDATES` most similar centroids with the top-k engine (the same exact
/// search as a k-means assignment step), adds the row's current cluster to its candidates,
/// and solves the capacitated assignment (every cluster keeps its size) by auction, which is
/// within `AUCTION_EPS` per row of the best assignment over those candidates; the centroids
/// then move to the means of their new rows. An iteration is kept only if it raises the
/// objective; refinement stops after `ctx.iters` iterations or once the objective improves by
/// less than `tol` per row. Returns `sum_c |S_c|`.
fn refine(ctx: &Ctx<'_>, labels: &mut [i64], sizes: &[usize], threads: usize) -> Result<f64> {
    let (n, k, d) = (labels.len(), sizes.len(), ctx.x.dim());
    let mut sums = super::kmeans::cluster_sums(ctx.x, ctx.inv, labels, k, threads, ctx.isa);
    let total = |s: &[f64]| s.chunks_exact(d).map(norm).sum::<f64>();
    let mut best = total(&sums);
    if k < 2 {
        return Ok(best);
    }
    let m = CANDIDATES.min(k);
    let w = m + 1;
    let (mut ids, mut scores) = (vec![0i64; n * m], vec![0.0f32; n * m]);
    let (mut cand, mut cand_scores) = (vec![-1i64; n * w], vec![0.0f32; n * w]);
    let mut cents = vec![0.0f32; k * d];
    for it in 0..ctx.iters {
        check_cancel(ctx.cancel)?;
        for (c, s) in sums.chunks_exact(d).enumerate() {
            normalize_into(s, &mut cents[c * d..(c + 1) * d]);
        }
        if it < FULL_SEARCH_ITERS || k <= NEIGHBOURS {
            super::kmeans::nearest(ctx.x, ctx.inv, &cents, k, m, threads, ctx.isa, ctx.cancel, &mut ids, &mut scores)?;
        } else {
            local_candidates(ctx, labels, &cents, k, m, threads, &mut ids, &mut scores)?;
        }
        for i in 0..n {
            let (c_ids, c_sc) = (&mut cand[i * w..(i + 1) * w], &mut cand_scores[i * w..(i + 1) * w]);
            c_ids[..m].copy_from_slice(&ids[i * m..(i + 1) * m]);
            c_sc[..m].copy_from_slice(&scores[i * m..(i + 1) * m]);
            // The current cluster is always a candidate, so the current labels are a feasible
            // assignment and the auction always finds one.
            let own = labels[i];
            if c_ids[..m].contains(&own) {
                c_ids[m] = -1;
            } else {
                let o = own as usize;
                c_ids[m] = own;
                c_sc[m] = simd::dot(ctx.isa, ctx.x.row(i), &cents[o * d..(o + 1) * d]) * ctx.inv[i];
            }
        }
        let Some(next) = auction(&cand, &cand_scores, w, sizes, AUCTION_EPS, MAX_BIDS_PER_ROW.saturating_mul(n)) else {
            break;
        };
        let next: Vec<i64> = next.into_iter().map(i64::from).collect();
        let cand_sums = super::kmeans::cluster_sums(ctx.x, ctx.inv, &next, k, threads, ctx.isa);
        let obj = total(&cand_sums);
        if obj <= best {
            break;
        }
        let gain = obj - best;
        best = obj;
        sums = cand_sums;
        labels.copy_from_slice(&next);
        if gain < ctx.tol * n as f64 {
            break;
        }
    }
    Ok(best)
}

/// The `m` most similar centroids of every row among the `NEIGHBOURS` centroids nearest to its
/// own cluster's centroid (found with the top-k engine), as `nearest` writes them: scores are
/// cosines, ties to the lower id. Rows are visited cluster by cluster so the neighbour
/// centroids stay in cache; each row's result depends only on its own data.
#[allow(clippy::too_many_arguments)]
fn local_candidates(ctx: &Ctx<'_>, labels: &[i64], cents: &[f32], k: usize, m: usize, threads: usize, ids: &mut [i64], scores: &mut [f32]) -> Result<()> {
    let (n, d) = (labels.len(), ctx.x.dim());
    let nb = NEIGHBOURS.min(k);
    let cm = MatrixRef::new("centroids", cents, k, d)?;
    let so = SearchOptions { threads, cancel: ctx.cancel, kernel: super::search_kernel(ctx.isa), ..SearchOptions::new(nb) };
    let nbr = search(cm, cm, &so)?.ids;
    let (offsets, order) = super::rows_by_cluster(labels, k);
    // Results by position in `order`; each thread takes a contiguous range of clusters, which
    // is a contiguous range of positions.
    let (mut top_ids, mut top_sc) = (vec![-1i64; n * m], vec![0.0f32; n * m]);
    let per = k.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let (mut rest_ids, mut rest_sc) = (top_ids.as_mut_slice(), top_sc.as_mut_slice());
        for c0 in (0..k).step_by(per) {
            let c1 = (c0 + per).min(k);
            let len = (offsets[c1] - offsets[c0]) * m;
            let (part_ids, r_ids) = std::mem::take(&mut rest_ids).split_at_mut(len);
            let (part_sc, r_sc) = std::mem::take(&mut rest_sc).split_at_mut(len);
            (rest_ids, rest_sc) = (r_ids, r_sc);
            let (nbr, offsets, order) = (&nbr, &offsets, &order);
            s.spawn(move || {
                let base = offsets[c0];
                for c in c0..c1 {
                    for p in offsets[c]..offsets[c + 1] {
                        let i = order[p] as usize;
                        let r = ctx.x.row(i);
                        let (ti, ts) = (&mut part_ids[(p - base) * m..][..m], &mut part_sc[(p - base) * m..][..m]);
                        let mut len = 0;
                        for &j in &nbr[c * nb..(c + 1) * nb] {
                            let sc = simd::dot(ctx.isa, r, &cents[j as usize * d..(j as usize + 1) * d]) * ctx.inv[i];
                            // Insert into the sorted top list (score desc, id asc).
                            let mut pos = len;
                            while pos > 0 && (sc > ts[pos - 1] || (sc == ts[pos - 1] && j < ti[pos - 1])) {
                                pos -= 1;
                            }
                            if pos == m {
                                continue;
                            }
                            let end = len.min(m - 1);
                            ti.copy_within(pos..end, pos + 1);
                            ts.copy_within(pos..end, pos + 1);
                            (ti[pos], ts[pos]) = (j, sc);
                            len = (len + 1).min(m);
                        }
                    }
                }
            });
        }
    });
    for (p, &i) in order.iter().enumerate() {
        let i = i as usize;
        ids[i * m..(i + 1) * m].copy_from_slice(&top_ids[p * m..(p + 1) * m]);
        scores[i * m..(i + 1) * m].copy_from_slice(&top_sc[p * m..(p + 1) * m]);
    }
    Ok(())
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
