//! Exact results from the AMX scan: float32 rescoring and a certificate per query.
//!
//! The scan ([`super::scan`]) keeps each query's `k'` best rows by an approximate score `A`
//! (bf16 inputs, float32 accumulation). Every row it did not keep has `A <= theta`, the final
//! admission threshold. The float32 kernels' score `K` of any row satisfies `|A - K| <= B(q)`,
//! with (all norms of the row scaled by its factor `s`, 1 for inner product)
//!
//! `B = ||q|| max s||x - bf16(x)|| + ||q - bf16(q)|| max s||bf16(x)|| + accumulation terms`,
//!
//! the first two terms from `q.x - q^.x^ = q.(x - x^) + (q - q^).x^`, the rest bounding the
//! rounding of both float32 sums (`gamma_d = d u / (1 - d u)` of their absolute sums, the final
//! multiply by `s`, bf16 denormals that AMX flushes). Candidates are rescored in descending `A`
//! with the kernels' own fused multiply-add chain, so the scores are the float32 kernels' bit
//! for bit; once the k-th best exact score `tau` satisfies `next + B < tau` (`next` the largest
//! `A` not rescored yet, or `theta`), no other row can reach the top k, ties included, and the
//! query is certified. Queries whose certificate fails are searched again with four times the
//! over-fetch (when enough of them share a pass) and then with the float32 kernel.

use super::amx::TILE_ROWS;
use super::bf16::{pack_queries, Rows, PAIR};
use super::dispatch::{count, Counter, AMX_MIN_QUERIES};
use super::scan::{NormMax, Scan, ScanPart, Source};
use super::{SearchOptions, Stored, TopK};
use crate::error::Result;
use crate::exclude::Exclusions;
use crate::matrix::MatrixRef;

/// Dimensions per slice of the scan when not set: 8 steps of 32 keep a 32-query slice (16 KiB)
/// in L1 while the corpus block streams from L2.
const SLICE_STEPS: usize = 8;
/// Bytes of packed bf16 corpus per chunk when not set (fits L2 with the C buffer and queries).
const CHUNK_BYTES: usize = 512 * 1024;

/// The default over-fetch: candidates kept per query for `k` results.
pub fn default_overfetch(k: usize) -> usize {
    2 * k + 16
}

/// Exact top-k through the AMX scan, certified per query, with the fallbacks; `opts` already
/// validated by [`super::search`].
pub(crate) fn search(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, opts: &SearchOptions<'_>, threads: usize) -> Result<TopK> {
    let k = opts.k;
    let kp = opts.overfetch.unwrap_or_else(|| default_overfetch(k)).max(k);
    let (mut top, failed) = pass(queries, corpus, opts, threads, kp)?;
    if matches!(opts.stored, Some(Stored::Int8(_))) {
        count(opts.counter, Counter::Approximate, queries.rows());
        return Ok(top);
    }
    count(opts.counter, Counter::Certified, queries.rows() - failed.len());
    if failed.is_empty() {
        return Ok(top);
    }
    let mut rest = failed;
    if rest.len() >= AMX_MIN_QUERIES {
        let (sub, ex) = select(queries, opts.exclude, &rest);
        let qm = MatrixRef::new("queries", &sub, rest.len(), queries.dim())?;
        let o = SearchOptions { exclude: ex.as_ref(), ..*opts };
        let (again, still) = pass(qm, corpus, &o, threads, kp.saturating_mul(4))?;
        copy_rows(&mut top, &again, &rest, &still);
        count(opts.counter, Counter::Retried, rest.len() - still.len());
        rest = still.into_iter().map(|i| rest[i]).collect();
    }
    if !rest.is_empty() {
        let (sub, ex) = select(queries, opts.exclude, &rest);
        let qm = MatrixRef::new("queries", &sub, rest.len(), queries.dim())?;
        let o = SearchOptions { exclude: ex.as_ref(), ..*opts };
        let exact = super::search_f32(qm, corpus, &o, threads, super::Isa::detect())?;
        copy_rows(&mut top, &exact, &rest, &[]);
        count(opts.counter, Counter::Fallback, rest.len());
    }
    Ok(top)
}

/// Copies row `i` of `from` to row `rows[i]` of `to`, except the rows listed in `skip`.
fn copy_rows(to: &mut TopK, from: &TopK, rows: &[usize], skip: &[usize]) {
    let k = to.k;
    for (i, &r) in rows.iter().enumerate() {
        if skip.binary_search(&i).is_err() {
            to.scores[r * k..(r + 1) * k].copy_from_slice(&from.scores[i * k..(i + 1) * k]);
            to.ids[r * k..(r + 1) * k].copy_from_slice(&from.ids[i * k..(i + 1) * k]);
        }
    }
}

/// The query rows `rows` (a copy) and their exclusions.
fn select(queries: MatrixRef<'_>, exclude: Option<&Exclusions>, rows: &[usize]) -> (Vec<f32>, Option<Exclusions>) {
    let mut sub = Vec::with_capacity(rows.len() * queries.dim());
    for &r in rows {
        sub.extend_from_slice(queries.row(r));
    }
    (sub, exclude.map(|e| e.select(rows)))
}

/// One scan with `kp` candidates per query, then rescoring and certification. Returns the
/// results (rows of failed queries are left unset) and the failed queries, ascending.
fn pass(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, opts: &SearchOptions<'_>, threads: usize, kp: usize) -> Result<(TopK, Vec<usize>)> {
    let (nq, n, d) = (queries.rows(), corpus.rows(), corpus.dim());
    // Keeping more candidates than rows is pointless (and k may exceed n when rows are padded).
    let kp = kp.min(n).max(1);
    let (source, packed, dims_per_step) = match opts.stored {
        Some(Stored::Int8(b)) => {
            let (tiles, scale) = super::int8::pack_queries(queries.data(), nq, d);
            let packed = super::bf16::PackedQueries { tiles, scale, norm: vec![], residual: vec![], rounded: vec![] };
            (Source::Int8(b), packed, super::int8::TILE_K8)
        }
        Some(Stored::Bf16(b)) => (Source::Bf16(Rows::Bf16 { data: b.data, residual: b.residual }), pack_queries(queries.data(), nq, d), 32),
        None => (Source::Bf16(Rows::F32(corpus.data())), pack_queries(queries.data(), nq, d), 32),
    };
    let steps = d.div_ceil(dims_per_step);
    let chunk_rows = opts.chunk_rows.unwrap_or(CHUNK_BYTES / (steps * 64)).div_ceil(PAIR).max(1) * PAIR;
    let slice_steps = opts.dim_slice.map_or(SLICE_STEPS, |s| s.div_ceil(dims_per_step));
    let scan = Scan { corpus: source, d, queries: &packed, nq, kp, exclude: opts.exclude, row_scale: opts.row_scale, cancel: opts.cancel, chunk_rows, slice_steps };
    let blocks = n.div_ceil(PAIR);
    let workers = threads.min(blocks).max(1);
    let per = blocks.div_ceil(workers) * PAIR;
    let parts: Vec<ScanPart> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|t| {
                let (start, end) = ((t * per).min(n), ((t + 1) * per).min(n));
                let scan = &scan;
                s.spawn(move || scan.run(start, end))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Result<Vec<_>>>()
    })?;
    let norms = parts.iter().fold(NormMax::default(), |m, p| m.merge(p.norms));
    let k = opts.k;
    let mut top = TopK { rows: nq, k, scores: vec![0.0; nq * k], ids: vec![-1; nq * k] };
    let approximate = matches!(source, Source::Int8(_));
    let cert = Certifier { queries, corpus, packed_norms: (&packed.norm, &packed.residual, &packed.rounded), parts: &parts, norms, k, kp, row_scale: opts.row_scale, bound_factor: opts.bound_factor, approximate };
    let per_q = nq.div_ceil(threads.max(1)).max(1);
    let failed: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = top
            .scores
            .chunks_mut(per_q * k)
            .zip(top.ids.chunks_mut(per_q * k))
            .enumerate()
            .map(|(t, (sc, ids))| {
                let cert = &cert;
                s.spawn(move || {
                    let mut failed = Vec::new();
                    let mut work = Work::default();
                    for (j, (sc, ids)) in sc.chunks_mut(k).zip(ids.chunks_mut(k)).enumerate() {
                        let q = t * per_q + j;
                        if !cert.query(q, &mut work, sc, ids) {
                            failed.push(q);
                        }
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    Ok((top, failed))
}

/// Buffers reused across the queries of one thread.
#[derive(Default)]
struct Work {
    cands: Vec<(f32, u64)>,
    best: Vec<(f32, u64)>,
    scores: Vec<f32>,
}

struct Certifier<'a> {
    queries: MatrixRef<'a>,
    corpus: MatrixRef<'a>,
    /// `||q||`, `||q - bf16(q)||`, `||bf16(q)||` per query.
    packed_norms: (&'a [f64], &'a [f64], &'a [f64]),
    parts: &'a [ScanPart],
    norms: NormMax,
    k: usize,
    kp: usize,
    row_scale: Option<&'a [f32]>,
    bound_factor: f64,
    /// int8: rescore the `kp` best candidates and keep the best `k`, without a certificate.
    approximate: bool,
}

impl Certifier<'_> {
    /// Rescores query `q`'s candidates until its top k is certified; writes it and returns
    /// true, or returns false when the certificate fails.
    fn query(&self, q: usize, w: &mut Work, out_s: &mut [f32], out_i: &mut [i64]) -> bool {
        let k = self.k;
        let bound = if self.approximate {
            f64::INFINITY
        } else {
            let Some(b) = self.bound(q) else { return false };
            b
        };
        w.cands.clear();
        let mut theta = f32::NEG_INFINITY;
        for p in self.parts {
            w.cands.extend(p.cands.entries(q));
            theta = theta.max(p.cands.thresholds()[q]);
        }
        w.cands.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        w.best.clear();
        let qrow = self.queries.row(q);
        let mut i = 0;
        let mut batch = k.div_ceil(TILE_ROWS) * TILE_ROWS;
        let certified = loop {
            let j = (i + batch).min(w.cands.len());
            let ids: Vec<u64> = w.cands[i..j].iter().map(|c| c.1).collect();
            w.scores.resize(ids.len(), 0.0);
            rescore(qrow, self.corpus, &ids, self.row_scale, &mut w.scores);
            for (&s, &id) in w.scores.iter().zip(&ids) {
                insert_best(&mut w.best, k, s, id);
            }
            i = j;
            batch = TILE_ROWS;
            let all = i == w.cands.len();
            if self.approximate && (all || i >= self.kp) {
                break true;
            }
            // Every row was a candidate (no reservoir ever shrank): the result is complete, and
            // shorter than k when exclusions leave fewer rows (then padded).
            if all && theta == f32::NEG_INFINITY {
                break true;
            }
            if w.best.len() == k {
                let next = if all { theta } else { w.cands[i].0.max(theta) };
                let tau = w.best[k - 1].0;
                let (next, tau) = (f64::from(next), f64::from(tau));
                // The margin covers the rounding of this f64 sum.
                if next + bound + (next.abs() + tau.abs()) * f64::EPSILON * 4.0 < tau {
                    break true;
                }
            }
            if all {
                break false;
            }
        };
        if certified {
            let padding = std::iter::repeat((f32::NAN, -1i64));
            for ((os, oi), (s, id)) in out_s.iter_mut().zip(out_i.iter_mut()).zip(w.best.iter().map(|&(s, id)| (s, id as i64)).chain(padding)) {
                *os = s;
                *oi = id;
            }
        }
        certified
    }

    /// `B(q)`, or `None` when the sizes of the inputs could overflow float32 (uncertifiable).
    fn bound(&self, q: usize) -> Option<f64> {
        let d = self.queries.dim() as f64;
        let (qn, qr, qh) = (self.packed_norms.0[q], self.packed_norms.1[q], self.packed_norms.2[q]);
        let bound = error_bound(d, qn, qr, qh, self.norms)?;
        Some(bound * self.bound_factor)
    }
}

/// The bound of the module documentation for a query of norm `qn`, residual norm `qr` and
/// rounded norm `qh` against rows whose largest scaled norms are `m`; `None` when a partial
/// sum of either float32 computation could overflow.
pub(crate) fn error_bound(d: f64, qn: f64, qr: f64, qh: f64, m: NormMax) -> Option<f64> {
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    const TINY: f64 = 1.0 / (1u128 << 126) as f64;
    // Row norms were summed in float32: a relative 1e-4 more covers their rounding.
    let grow = 1.0 + 1e-4;
    let (rho, nu, scale, raw) = (m.residual * grow, m.rounded * grow, m.scale, m.raw * grow);
    let mu = nu + rho;
    let limit = f64::from(f32::MAX) / 4.0;
    let q = qn.max(qh);
    if !(q * raw < limit && q * (nu + mu) < limit && q.is_finite()) {
        return None;
    }
    let gamma = d * U / (1.0 - d * U);
    // Twice the textbook accumulation terms: no assumption on how the tile unit orders or
    // fuses its additions.
    let acc = 2.0 * (gamma + U) * (1.0 + gamma) * (qh * nu + qn * mu);
    let denormal = TINY * (2.0 * d * scale + d.sqrt() * (qh * scale + nu));
    let b = qn * rho + qr * nu + acc + denormal;
    b.is_finite().then_some(b * (1.0 + 1e-6))
}

/// Keeps `best` the `k` best (score desc, id asc) of what was offered.
fn insert_best(best: &mut Vec<(f32, u64)>, k: usize, s: f32, id: u64) {
    let pos = best.partition_point(|&(bs, bi)| bs > s || (bs == s && bi < id));
    if pos < k {
        best.insert(pos, (s, id));
        best.truncate(k);
    }
}

/// The float32 kernels' score of each id against `q`: the fused multiply-add chain over the
/// dimensions from zero, times the row factor ([`super::pair_score`], bit for bit).
pub(crate) fn rescore(q: &[f32], corpus: MatrixRef<'_>, ids: &[u64], scale: Option<&[f32]>, out: &mut [f32]) {
    debug_assert_eq!(ids.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for (g, o) in ids.chunks(TILE_ROWS).zip(out.chunks_mut(TILE_ROWS)) {
            // SAFETY: AVX-512F detected; ids index rows of `corpus` (they come from the scan).
            unsafe { rescore16_avx512(q, corpus, g, o) };
            if let Some(s) = scale {
                for (x, &id) in o.iter_mut().zip(g) {
                    *x *= s[id as usize];
                }
            }
        }
        return;
    }
    for (o, &id) in out.iter_mut().zip(ids) {
        *o = super::pair_score(q, corpus.row(id as usize), scale.map(|s| s[id as usize]));
    }
}

/// Up to 16 rows in the lanes: 16 x 16 blocks are loaded and transposed so dimension `t` of
/// every row sits in one register, then one FMA per dimension, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rescore16_avx512(q: &[f32], corpus: MatrixRef<'_>, ids: &[u64], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = corpus.dim();
    assert!(q.len() == d && !ids.is_empty() && ids.len() <= 16 && out.len() == ids.len());
    let rows: [*const f32; 16] = std::array::from_fn(|i| corpus.row(ids[i.min(ids.len() - 1)] as usize).as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut t = 0;
    while t < d {
        let width = (d - t).min(16);
        let m: __mmask16 = if width == 16 { 0xffff } else { (1u16 << width) - 1 };
        let r: [__m512; 16] = std::array::from_fn(|i| _mm512_maskz_loadu_ps(m, rows[i].add(t)));
        let cols = super::kernel::transpose16(r);
        // Only the real dimensions: an extra fma(0, 0, acc) would turn a -0.0 into +0.0.
        for (j, col) in cols.iter().enumerate().take(width) {
            acc = _mm512_fmadd_ps(*col, _mm512_set1_ps(*q.get_unchecked(t + j)), acc);
        }
        t += 16;
    }
    let mut lanes = [0.0f32; 16];
    _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
    out.copy_from_slice(&lanes[..ids.len()]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::lcg;


    #[test]
    fn rescoring_is_the_kernels_chain_bit_for_bit() {
        for &(n, d) in &[(40usize, 1usize), (50, 17), (33, 384), (20, 100)] {
            let mut s = d as u64;
            let c: Vec<f32> = (0..n * d).map(|_| lcg(&mut s)).collect();
            let q: Vec<f32> = (0..d).map(|_| lcg(&mut s)).collect();
            let cm = MatrixRef::new("c", &c, n, d).unwrap();
            let ids: Vec<u64> = (0..n as u64).rev().chain([3, 3, 0]).collect();
            let scale: Vec<f32> = (0..n).map(|i| 0.3 + i as f32 / 9.0).collect();
            for sc in [None, Some(&scale[..])] {
                let mut got = vec![0.0; ids.len()];
                rescore(&q, cm, &ids, sc, &mut got);
                for (g, &id) in got.iter().zip(&ids) {
                    assert_eq!(g.to_bits(), super::super::pair_score(&q, cm.row(id as usize), sc.map(|s| s[id as usize])).to_bits());
                }
            }
        }
        // the sign of a zero score survives (no padding FMAs)
        let c = vec![-1.0f32, 0.0, 0.0];
        let cm = MatrixRef::new("c", &c, 1, 3).unwrap();
        let mut got = [1.0f32];
        rescore(&[0.0, 5.0, 5.0], cm, &[0], None, &mut got);
        assert_eq!(got[0].to_bits(), super::super::pair_score(&[0.0, 5.0, 5.0], &c, None).to_bits());
    }

    #[test]
    fn best_list_keeps_score_then_lower_id_order() {
        let mut b = vec![];
        for &(s, id) in &[(1.0, 5u64), (2.0, 9), (1.0, 2), (3.0, 1), (1.0, 7), (2.0, 3)] {
            insert_best(&mut b, 4, s, id);
        }
        assert_eq!(b, vec![(3.0, 1), (2.0, 3), (2.0, 9), (1.0, 2)]);
    }

    #[test]
    fn bound_covers_measured_errors_and_refuses_overflow() {
        let m = NormMax { residual: 2e-3, rounded: 1.0, scale: 1.0, raw: 1.002 };
        let b = error_bound(768.0, 1.0, 2e-3, 1.0, m).unwrap();
        assert!(b > 4e-3 && b < 4.5e-3, "{b}");
        let huge = NormMax { residual: 1e30, rounded: 1e36, scale: 1.0, raw: 1e36 };
        assert_eq!(error_bound(768.0, 1e10, 0.0, 1e10, huge), None);
        let inf = NormMax { residual: f64::INFINITY, ..m };
        assert_eq!(error_bound(8.0, 1.0, 0.0, 1.0, inf), None);
    }
}
