//! Exact top-k similarity search: queries x corpus, inner product, with per-query exclusions.
//!
//! Two engines give the same results bit for bit ([`dispatch`] picks one): the float32 kernels
//! described below, and, when enough queries share a corpus pass on a CPU with AMX tiles, a
//! bf16 tile scan ([`scan`]) whose candidates are rescored in float32 and certified exact
//! ([`certify`]).
//!
//! The corpus is split into one contiguous slice per thread. Each thread packs its slice chunk
//! by chunk (a chunk fits in L2), runs every query group against the chunk with the fused tile
//! kernels of [`kernel`], and keeps its own per-query heaps; the heaps are merged at the end.
//! With few queries a chunk is a single block, so the corpus streams through once at memory
//! speed. Each score is computed the same way whatever the split (see [`kernel`]), and ties are
//! broken by the lower id, so results do not depend on the thread count.

pub mod amx;
pub mod bf16;
pub mod certify;
pub mod dispatch;
mod heap;
pub mod int8;
pub mod kernel;
mod reservoir;
mod scan;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::exclude::Exclusions;
use crate::matrix::MatrixRef;
use heap::Heaps;
pub use bf16::Bf16Rows;
pub use int8::Int8Rows;
pub use dispatch::{kernel_stats, Kernel, KernelCounter, KernelStats};
pub use kernel::Isa;
use kernel::{pack_corpus, pack_queries, tile, Aligned64, AlignedBuf, Epilogue, RowScale, TileScores, BLOCK, GROUP};

/// Options of [`search`].
#[derive(Clone, Copy, Debug)]
pub struct SearchOptions<'a> {
    /// Results per query.
    pub k: usize,
    /// Ids never returned, per query.
    pub exclude: Option<&'a Exclusions>,
    /// Worker threads (0 means all available cores).
    pub threads: usize,
    /// Set to true from another thread to stop the search with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Force a kernel (tests and benchmarks); `None` reads `HARDNEG_KERNEL`, else picks by the
    /// number of queries ([`Kernel::resolve`]).
    pub kernel: Option<Kernel>,
    /// Corpus rows per chunk (rounded to the block size); `None` picks one that fits in L2.
    pub chunk_rows: Option<usize>,
    /// Dimensions per slice (partial sums are kept between slices); `None` picks one that keeps
    /// a block's slice in L1.
    pub dim_slice: Option<usize>,
    /// One factor per corpus row multiplied into its scores (cosine over an un-normalised corpus
    /// passes the inverse row norms from [`crate::matrix::inverse_norms`]).
    pub row_scale: Option<&'a [f32]>,
    /// A query with fewer than `k` candidates (a small corpus, many exclusions) gets its row
    /// filled up with id -1 / score NaN; when false that is an [`Error::InvalidParameter`].
    pub pad: bool,
    /// A stored reduced-precision copy of the corpus for the AMX scan (otherwise chunks are
    /// converted to bf16 on the fly); the float32 corpus is still read to rescore candidates.
    pub stored: Option<Stored<'a>>,
    /// AMX scan: candidates kept per query (at least `k`); `None` means
    /// [`certify::default_overfetch`].
    pub overfetch: Option<usize>,
    /// AMX scan: multiplies the certificate's error bound (at least 1; tests raise it to force
    /// the fallbacks).
    pub bound_factor: f64,
    /// Counts the queries of this search by the path that answered them.
    pub counter: Option<&'a KernelCounter>,
}

impl<'a> SearchOptions<'a> {
    /// Options for `k` results with every other setting at its default.
    pub fn new(k: usize) -> Self {
        SearchOptions {
            k,
            exclude: None,
            threads: 0,
            cancel: None,
            kernel: None,
            chunk_rows: None,
            dim_slice: None,
            row_scale: None,
            pad: false,
            stored: None,
            overfetch: None,
            bound_factor: 1.0,
            counter: None,
        }
    }
}

/// A reduced-precision copy of the corpus the AMX scan reads instead of the float32 rows.
#[derive(Clone, Copy, Debug)]
pub enum Stored<'a> {
    /// bf16: the results stay exact (certified).
    Bf16(Bf16Rows<'a>),
    /// int8: approximate; the scan's candidates are rescored in float32, without a certificate.
    Int8(Int8Rows<'a>),
}

/// Results of a search: row-major `[rows, k]`, each row by descending score, ties by lower id;
/// padded rows end with id -1 / score NaN.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Number of queries.
    pub rows: usize,
    /// Results per query.
    pub k: usize,
    /// Scores, `rows * k`.
    pub scores: Vec<f32>,
    /// Corpus ids, `rows * k`.
    pub ids: Vec<i64>,
}

/// Resolves a thread count: 0 means every available core.
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        threads
    }
}

/// Exact top-k of every query against the corpus by inner product.
///
/// Queries are checked for NaN/Inf here; the corpus is assumed finite (check it once with
/// [`crate::matrix::check_finite`] when it is loaded).
pub fn search(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, opts: &SearchOptions<'_>) -> Result<TopK> {
    let (nq, n, d) = (queries.rows(), corpus.rows(), corpus.dim());
    if queries.dim() != d {
        return Err(Error::DimensionMismatch { what: "queries", expected: d, got: queries.dim() });
    }
    let k = opts.k;
    if k < 1 {
        return Err(Error::param("k", format!("k must be at least 1, got {k}")));
    }
    if let Some(ex) = opts.exclude {
        if ex.rows() != nq {
            return Err(Error::RowCountMismatch { what: "exclude", expected: nq, got: ex.rows() });
        }
        if let Some(&bad) = (0..nq).flat_map(|q| ex.row(q).iter()).find(|&&id| id as usize >= n) {
            return Err(Error::IdOutOfRange { what: "exclude", row: 0, id: bad as i64, n });
        }
        let (most, q) = ex.max_row_len();
        if k > n - most && !opts.pad {
            return Err(Error::param(
                "k",
                format!("k={k} but query {q} can get only {} results: the corpus has {n} rows and {most} are excluded for it; lower k", n - most),
            ));
        }
    } else if k > n && !opts.pad {
        return Err(Error::param("k", format!("k={k} is larger than the corpus ({n} rows); lower k to at most {n}")));
    }
    if let Some(sc) = opts.row_scale {
        if sc.len() != n {
            return Err(Error::RowCountMismatch { what: "row_scale", expected: n, got: sc.len() });
        }
    }
    match opts.stored {
        Some(Stored::Bf16(b)) if b.data.len() != n * d || b.residual.len() != n => {
            return Err(Error::BadLength { what: "bf16 corpus", len: b.data.len(), rows: n, dim: d });
        }
        Some(Stored::Int8(b)) if b.data.len() != n * d || b.scale.len() != n => {
            return Err(Error::BadLength { what: "int8 corpus", len: b.data.len(), rows: n, dim: d });
        }
        _ => {}
    }
    if opts.overfetch.is_some_and(|kp| kp < k) {
        return Err(Error::param("overfetch", format!("overfetch must be at least k={k}, got {}", opts.overfetch.unwrap_or(0))));
    }
    if opts.bound_factor.is_nan() || opts.bound_factor < 1.0 {
        return Err(Error::param("bound_factor", format!("bound_factor must be at least 1, got {}", opts.bound_factor)));
    }
    let threads = resolve_threads(opts.threads);
    crate::matrix::check_finite("queries", queries, threads)?;
    match Kernel::resolve(opts.kernel, nq)? {
        // Candidate ids are 32-bit in the scan.
        Kernel::Amx if n <= u32::MAX as usize => certify::search(queries, corpus, opts, threads),
        Kernel::Amx => search_f32(queries, corpus, opts, threads, Isa::detect()),
        Kernel::F32(isa) => {
            dispatch::count(opts.counter, dispatch::Counter::F32, nq);
            search_f32(queries, corpus, opts, threads, isa)
        }
    }
}

/// The float32 kernels on `isa`, inputs already validated.
pub(crate) fn search_f32(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, opts: &SearchOptions<'_>, threads: usize, isa: Isa) -> Result<TopK> {
    let (nq, n, d, k) = (queries.rows(), corpus.rows(), corpus.dim(), opts.k);
    let qpack = pack_queries(queries.data(), nq, d);
    let groups = nq.div_ceil(GROUP);
    let kc = dim_slice(opts.dim_slice, d, groups);
    let chunk = chunk_rows(opts.chunk_rows, kc, groups);
    let blocks = n.div_ceil(BLOCK);
    let threads = threads.min(blocks).max(1);
    // Contiguous slices of whole blocks, one per thread.
    let per = blocks.div_ceil(threads);
    // A heap never holds more than the corpus, whatever k (the rest of a row is padding).
    let job = Job { corpus, qpack: qpack.as_slice(), nq, d, k: k.min(n), exclude: opts.exclude, cancel: opts.cancel, isa, chunk, kc, row_scale: opts.row_scale };
    let parts: Vec<Heaps> = if threads == 1 {
        vec![job.run(0, n)?]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = (t * per * BLOCK).min(n);
                    let end = ((t + 1) * per * BLOCK).min(n);
                    let job = &job;
                    s.spawn(move || job.run(start, end))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Result<Vec<_>>>()
        })?
    };
    Ok(merge(&parts, nq, k))
}

/// The score of one (query, corpus row) pair exactly as [`search`] computes it: a chain of fused
/// multiply-adds over the dimensions from zero, times the row's factor when one is given.
#[inline]
pub fn pair_score(q: &[f32], c: &[f32], scale: Option<f32>) -> f32 {
    let mut acc = 0.0f32;
    for (&a, &b) in q.iter().zip(c) {
        acc = a.mul_add(b, acc);
    }
    match scale {
        Some(s) => acc * s,
        None => acc,
    }
}

/// [`pair_score`] of one query against several rows, bit-identical to it: with AVX-512, sixteen
/// rows at once, one per lane (blocks of 16 dimensions transposed in registers, so each lane
/// still runs its row's chain in order); with FMA, four chains side by side; else one `fmaf`
/// call per element.
pub fn pair_scores(q: &[f32], rows: &[&[f32]], scales: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512 {
        // SAFETY: the CPU runs AVX-512F (detected).
        unsafe { pair_scores_avx512(q, rows, out) };
        apply_scales(scales, out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA (checked just above).
        unsafe { pair_scores_fma(q, rows, out) };
        apply_scales(scales, out);
        return;
    }
    for (o, r) in out.iter_mut().zip(rows) {
        *o = pair_score(q, r, None);
    }
    apply_scales(scales, out);
}

fn apply_scales(scales: Option<&[f32]>, out: &mut [f32]) {
    if let Some(sc) = scales {
        out.iter_mut().zip(sc).for_each(|(o, &s)| *o *= s);
    }
}

/// Transposes 16 rows of 16 floats in place: afterwards `r[j]` holds element `j` of every row.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [std::arch::x86_64::__m512; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
    }
    for h in 0..2 {
        for i in 0..4 {
            t[8 * h + i] = _mm512_shuffle_f32x4::<0x88>(r[8 * h + i], r[8 * h + 4 + i]);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(r[8 * h + i], r[8 * h + 4 + i]);
        }
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pair_scores_avx512(q: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = q.len();
    for (group, out) in rows.chunks(16).zip(out.chunks_mut(16)) {
        // short groups repeat their first row in the unused lanes
        let ptrs: [*const f32; 16] = std::array::from_fn(|i| group.get(i).unwrap_or(&group[0])[..d].as_ptr());
        let mut acc = _mm512_setzero_ps();
        let mut t = 0;
        while t < d {
            let m = (d - t).min(16);
            let mask = ((1u32 << m) - 1) as u16;
            // SAFETY: every row holds d values; the mask covers dimensions t..t + m only.
            let mut r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_maskz_loadu_ps(mask, ptrs[i].add(t)) });
            transpose16(&mut r);
            for (j, col) in r.iter().enumerate().take(m) {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(q[t + j]), *col, acc);
            }
            t += 16;
        }
        let mut lanes = [0.0f32; 16];
        // SAFETY: 16 floats to a 16-float array.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc) };
        out.copy_from_slice(&lanes[..out.len()]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn pair_scores_fma(q: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    let mut quads = rows.chunks_exact(4);
    let mut o = 0;
    for quad in quads.by_ref() {
        let (r0, r1, r2, r3) = (&quad[0][..q.len()], &quad[1][..q.len()], &quad[2][..q.len()], &quad[3][..q.len()]);
        let (mut a0, mut a1, mut a2, mut a3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for t in 0..q.len() {
            let x = q[t];
            a0 = x.mul_add(r0[t], a0);
            a1 = x.mul_add(r1[t], a1);
            a2 = x.mul_add(r2[t], a2);
            a3 = x.mul_add(r3[t], a3);
        }
        out[o..o + 4].copy_from_slice(&[a0, a1, a2, a3]);
        o += 4;
    }
    for r in quads.remainder() {
        let mut acc = 0.0f32;
        for (&a, &b) in q.iter().zip(*r) {
            acc = a.mul_add(b, acc);
        }
        out[o] = acc;
        o += 1;
    }
}

/// Scores of given ids, `ids` row-major `[queries.rows(), width]` (-1 = none, scored NaN),
/// bit-identical to the scores [`search`] returns for the same pairs.
pub fn score_ids(queries: MatrixRef<'_>, corpus: MatrixRef<'_>, row_scale: Option<&[f32]>, ids: &[i64], width: usize) -> Result<Vec<f32>> {
    let (nq, n) = (queries.rows(), corpus.rows());
    if queries.dim() != corpus.dim() {
        return Err(Error::DimensionMismatch { what: "queries", expected: corpus.dim(), got: queries.dim() });
    }
    if ids.len() != nq * width {
        return Err(Error::RowCountMismatch { what: "ids", expected: nq, got: ids.len().checked_div(width).unwrap_or(0) });
    }
    if let Some(sc) = row_scale {
        if sc.len() != n {
            return Err(Error::RowCountMismatch { what: "row_scale", expected: n, got: sc.len() });
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let q = i / width.max(1);
        if id == -1 {
            out.push(f32::NAN);
            continue;
        }
        if id < 0 || id as u64 >= n as u64 {
            return Err(Error::IdOutOfRange { what: "ids", row: q, id, n });
        }
        let id = id as usize;
        out.push(pair_score(queries.row(q), corpus.row(id), row_scale.map(|s| s[id])));
    }
    Ok(out)
}

fn dim_slice(requested: Option<usize>, d: usize, groups: usize) -> usize {
    match requested {
        Some(kc) => kc.clamp(1, d),
        // Few queries (memory-bound): 64 dimensions x 64 rows = 16 KiB per packed block slice,
        // packed and consumed in L1 while the next slice is prefetched (measured best at Q <= 12).
        None if groups <= 2 => d.min(64),
        // 128 dimensions x 64 rows x 4 bytes = 32 KiB: a block's slice stays in L1 while every
        // query group runs over it. Small dimensions are not worth splitting.
        None if d <= 192 => d,
        None => 128,
    }
}

fn chunk_rows(requested: Option<usize>, kc: usize, groups: usize) -> usize {
    let rows = match requested {
        Some(r) => r,
        // Few queries: stream block by block, the corpus is read once at memory speed.
        // Otherwise a chunk slice of about 256 KiB stays in L2 while every group runs over it.
        None if groups <= 2 => BLOCK,
        None => (256 * 1024) / (kc * 4),
    };
    (rows.div_ceil(BLOCK) * BLOCK).clamp(BLOCK, 64 * BLOCK)
}

struct Job<'a> {
    corpus: MatrixRef<'a>,
    qpack: &'a [f32],
    nq: usize,
    d: usize,
    k: usize,
    exclude: Option<&'a Exclusions>,
    cancel: Option<&'a AtomicBool>,
    isa: Isa,
    chunk: usize,
    kc: usize,
    row_scale: Option<&'a [f32]>,
}

impl Job<'_> {
    /// Searches corpus rows `start..end` and returns this slice's per-query heaps.
    ///
    /// Loop order: chunk of rows -> dimension slice (packed once) -> block -> query group. A
    /// block's slice stays in L1 while every query group runs over it; partial sums of each
    /// (block, group) tile wait in `accs` between slices; the last slice runs the epilogue.
    fn run(&self, start: usize, end: usize) -> Result<Heaps> {
        let (d, nq, kc) = (self.d, self.nq, self.kc);
        let mut heaps = Heaps::new(nq, self.k);
        let groups = nq.div_ceil(GROUP);
        let slices = d.div_ceil(kc);
        let mut packed = AlignedBuf::zeroed(self.chunk * kc);
        let tiles = if slices > 1 { (self.chunk / BLOCK) * groups } else { 1 };
        let mut accs: Vec<TileScores> = (0..tiles).map(|_| TileScores([[0.0; BLOCK]; GROUP])).collect();
        let mut block_scales: Vec<RowScale> = Vec::new();
        let mut c0 = start;
        while c0 < end {
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let c1 = (c0 + self.chunk).min(end);
            let blocks = (c1 - c0).div_ceil(BLOCK);
            block_scales.clear();
            for b in 0..blocks {
                block_scales.push(match self.row_scale {
                    None => RowScale::None,
                    Some(sc) => {
                        let row0 = c0 + b * BLOCK;
                        let live = (c1 - row0).min(BLOCK);
                        let mut f = Box::new(Aligned64([0.0; BLOCK]));
                        f.0[..live].copy_from_slice(&sc[row0..row0 + live]);
                        RowScale::Rows(f)
                    }
                });
            }
            for s in 0..slices {
                let (t0, t1) = (s * kc, ((s + 1) * kc).min(d));
                let w = t1 - t0;
                let (first, last) = (s == 0, s + 1 == slices);
                pack_corpus(self.isa, self.corpus.data(), d, c0, c1, t0, t1, packed.as_mut_slice());
                for b in 0..blocks {
                    let cb = &packed.as_slice()[b * w * BLOCK..(b + 1) * w * BLOCK];
                    let row0 = c0 + b * BLOCK;
                    let live = (c1 - row0).min(BLOCK);
                    let valid = if live == BLOCK { u64::MAX } else { (1u64 << live) - 1 };
                    for g in 0..groups {
                        let q0 = g * GROUP;
                        let gq = (nq - q0).min(GROUP);
                        let qg = &self.qpack[g * d * GROUP + t0 * GROUP..g * d * GROUP + t1 * GROUP];
                        let acc = &mut accs[if slices > 1 { b * groups + g } else { 0 }];
                        if !last {
                            tile(self.isa, gq, cb, qg, w, acc, first, None);
                            continue;
                        }
                        let mut thr = [0.0f32; GROUP];
                        thr[..gq].copy_from_slice(&heaps.thresholds()[q0..q0 + gq]);
                        let e = Epilogue { scale: &block_scales[b], thr: &thr, valid };
                        let masks = tile(self.isa, gq, cb, qg, w, acc, first, Some(&e));
                        for (j, &m) in masks.iter().enumerate().take(gq) {
                            if m != 0 {
                                self.insert(&mut heaps, q0 + j, row0, m, &acc.0[j]);
                            }
                        }
                    }
                }
            }
            c0 = c1;
        }
        Ok(heaps)
    }

    #[inline(never)]
    fn insert(&self, heaps: &mut Heaps, q: usize, row0: usize, mut mask: u64, scores: &[f32; BLOCK]) {
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let s = scores[lane];
            // The threshold may have risen since the tile compared against it.
            if s <= heaps.thresholds()[q] {
                continue;
            }
            let id = (row0 + lane) as u64;
            if self.exclude.is_some_and(|e| e.contains(q, id)) {
                continue;
            }
            heaps.push(q, s, id);
        }
    }
}

fn merge(parts: &[Heaps], nq: usize, k: usize) -> TopK {
    let mut scores = Vec::with_capacity(nq * k);
    let mut ids = Vec::with_capacity(nq * k);
    let mut all: Vec<(f32, u64)> = Vec::new();
    for q in 0..nq {
        all.clear();
        for p in parts {
            all.extend(p.entries(q));
        }
        all.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(s, id) in all.iter().take(k) {
            scores.push(s);
            ids.push(id as i64);
        }
        for _ in all.len()..k {
            scores.push(f32::NAN);
            ids.push(-1);
        }
    }
    TopK { rows: nq, k, scores, ids }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(q: &[f32], c: &[f32], d: usize, k: usize, ex: Option<&Exclusions>) -> TopK {
        let (nq, n) = (q.len() / d, c.len() / d);
        let mut scores = vec![];
        let mut ids = vec![];
        for i in 0..nq {
            let mut all: Vec<(f32, i64)> = (0..n)
                .filter(|&j| !ex.is_some_and(|e| e.contains(i, j as u64)))
                .map(|j| {
                    let mut acc = 0.0f32;
                    for t in 0..d {
                        acc = q[i * d + t].mul_add(c[j * d + t], acc);
                    }
                    (acc, j as i64)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(s, j) in all.iter().take(k) {
                scores.push(s);
                ids.push(j);
            }
        }
        TopK { rows: nq, k, scores, ids }
    }

    fn data(n: usize, seed: u64, ints: bool) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let x = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if ints {
                    (x * 6.0).round()
                } else {
                    x
                }
            })
            .collect()
    }

    #[test]
    fn matches_reference_for_every_isa_thread_count_and_chunk() {
        for &(nq, n, d, k) in &[(1, 1, 1, 1), (7, 130, 3, 5), (13, 257, 17, 130), (2, 1000, 64, 1000), (6, 200, 9, 10)] {
            for ints in [false, true] {
                let q = data(nq * d, 1, ints);
                let c = data(n * d, 2, ints);
                let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
                let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
                let want = reference(&q, &c, d, k, None);
                for isa in Isa::available() {
                    for threads in [1, 2, 3] {
                        for (chunk, kc) in [(None, None), (Some(64), Some(2)), (Some(192), Some(5)), (None, Some(1))] {
                            let opts = SearchOptions { kernel: Some(isa.into()), threads, chunk_rows: chunk, dim_slice: kc, ..SearchOptions::new(k) };
                            assert_eq!(search(qm, cm, &opts).unwrap(), want, "{isa:?} t={threads} nq={nq} n={n} d={d} k={k} ints={ints}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn row_scale_and_score_ids_agree_with_search() {
        let (nq, n, d, k) = (9, 300, 13, 7);
        let q = data(nq * d, 5, false);
        let c = data(n * d, 6, false);
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let inv = crate::matrix::inverse_norms(cm, 2);
        for isa in Isa::available() {
            let top = search(qm, cm, &SearchOptions { row_scale: Some(&inv), kernel: Some(isa.into()), ..SearchOptions::new(k) }).unwrap();
            let again = score_ids(qm, cm, Some(&inv), &top.ids, k).unwrap();
            assert_eq!(top.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), again.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            // the ranking is the cosine ranking
            for i in 0..nq {
                let mut all: Vec<(f32, i64)> = (0..n).map(|j| (pair_score(qm.row(i), cm.row(j), Some(inv[j])), j as i64)).collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                assert_eq!(&top.ids[i * k..(i + 1) * k], &all[..k].iter().map(|x| x.1).collect::<Vec<_>>()[..]);
            }
        }
        assert!(score_ids(qm, cm, None, &[-1, 300], 2).is_err());
        assert!(score_ids(qm, cm, None, &[0; 18], 2).unwrap().iter().all(|x| x.is_finite()));
    }

    #[test]
    fn pair_scores_are_bit_identical_to_pair_score() {
        for (d, m) in [(1, 0), (3, 1), (17, 4), (384, 9), (5, 7), (16, 16), (33, 17), (384, 40), (1000, 3)] {
            let q = data(d, 11, false);
            let c = data(m * d, 12, false);
            let rows: Vec<&[f32]> = c.chunks_exact(d).collect();
            let scales: Vec<f32> = (0..m).map(|i| 0.5 + i as f32 / 7.0).collect();
            let mut out = vec![0.0; m];
            pair_scores(&q, &rows, Some(&scales), &mut out);
            let want: Vec<u32> = rows.iter().zip(&scales).map(|(r, &s)| pair_score(&q, r, Some(s)).to_bits()).collect();
            assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want, "d={d} m={m}");
            // the four-chain FMA kernel too (pair_scores takes AVX-512 where the CPU has it)
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports FMA (checked just above).
                unsafe { pair_scores_fma(&q, &rows, &mut out) };
                apply_scales(Some(&scales), &mut out);
                assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want, "fma d={d} m={m}");
            }
        }
    }

    #[test]
    fn exclusions_are_never_returned_and_rows_stay_full() {
        let (nq, n, d, k) = (5, 90, 4, 10);
        let q = data(nq * d, 3, true);
        let c = data(n * d, 4, true);
        let rows: Vec<Vec<i64>> = (0..nq as i64).map(|i| (0..20).map(|j| (i * 7 + j * 3) % n as i64).collect()).collect();
        let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let got = search(qm, cm, &SearchOptions { exclude: Some(&ex), ..SearchOptions::new(k) }).unwrap();
        assert_eq!(got, reference(&q, &c, d, k, Some(&ex)));
        for i in 0..nq {
            for &id in &got.ids[i * k..(i + 1) * k] {
                assert!(!ex.contains(i, id as u64));
            }
        }
    }

    #[test]
    fn bad_inputs_get_typed_errors() {
        let q = vec![0.0f32; 6];
        let c = vec![0.0f32; 12];
        let qm = MatrixRef::new("queries", &q, 2, 3).unwrap();
        let cm = MatrixRef::new("corpus", &c, 4, 3).unwrap();
        let c4 = MatrixRef::new("corpus", &c, 3, 4).unwrap();
        assert!(matches!(search(qm, c4, &SearchOptions::new(1)), Err(Error::DimensionMismatch { .. })));
        assert!(matches!(search(qm, cm, &SearchOptions::new(0)), Err(Error::InvalidParameter { name: "k", .. })));
        assert!(matches!(search(qm, cm, &SearchOptions::new(5)), Err(Error::InvalidParameter { name: "k", .. })));
        let ex = Exclusions::from_rows("exclude", &[vec![0], vec![1, 2]], 4).unwrap();
        let opts = SearchOptions { exclude: Some(&ex), ..SearchOptions::new(3) };
        assert!(matches!(search(qm, cm, &opts), Err(Error::InvalidParameter { name: "k", .. })));
        let ex1 = Exclusions::from_rows("exclude", &[vec![0]], 4).unwrap();
        let opts = SearchOptions { exclude: Some(&ex1), ..SearchOptions::new(1) };
        assert!(matches!(search(qm, cm, &opts), Err(Error::RowCountMismatch { .. })));
        let mut bad = q.clone();
        bad[4] = f32::NAN;
        let bm = MatrixRef::new("queries", &bad, 2, 3).unwrap();
        assert_eq!(search(bm, cm, &SearchOptions::new(1)), Err(Error::NonFinite { what: "queries", row: 1 }));
        let cancel = AtomicBool::new(true);
        let opts = SearchOptions { cancel: Some(&cancel), ..SearchOptions::new(1) };
        assert_eq!(search(qm, cm, &opts), Err(Error::Cancelled));
    }
}
