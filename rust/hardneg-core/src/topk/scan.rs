//! The AMX scan: proposes each query's `kp` best corpus rows by an approximate score.
//!
//! A thread takes a contiguous slice of the corpus and walks it in L2-sized chunks. Each chunk
//! is converted to bf16 (or copied from a stored bf16 or int8 copy) into 64-byte aligned tiles; then
//! every block of 32 queries runs over it with the 2 x 2 tile microkernel, dimension slice by
//! dimension slice (partial sums wait in a small C buffer, so the query slice stays in L1).
//! After the last slice the four result tiles of a block are compared against the queries'
//! running thresholds, 16 queries per vector compare; only rows with a hit touch the per-query
//! reservoirs. The score of a row is `bf16(q) . bf16(x)` accumulated in float32 (or the int8
//! dot product times both scales), times the row factor for cosine; [`super::certify`] turns
//! the candidates into results.

use std::sync::atomic::{AtomicBool, Ordering};

use super::amx::{kernel_2x1, kernel_2x2, TileSession, TILE_BYTES, TILE_ROWS};
use super::bf16::{self, chunk_len, pack_chunk, PackedQueries, RowNorms, Rows, TileBuf, PAIR};
use super::int8::{self, Int8Rows};
use super::reservoir::Reservoirs;
use super::kernel::AlignedBuf;
use crate::error::{Error, Result};
use crate::exclude::Exclusions;

/// f32 values of one 2 x 2 block of C tiles.
const C_BLOCK: usize = 4 * TILE_ROWS * TILE_ROWS;

/// Largest scaled norms of the rows a scan read (they bound the approximation error).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct NormMax {
    /// max of `s * ||x - bf16(x)||`, `s` the row factor (1 for inner product).
    pub(crate) residual: f64,
    /// max of `s * ||bf16(x)||`.
    pub(crate) rounded: f64,
    /// max of `s`.
    pub(crate) scale: f64,
    /// max of `||bf16(x)|| + ||x - bf16(x)||` (unscaled: guards against float32 overflow).
    pub(crate) raw: f64,
}

impl NormMax {
    fn add(&mut self, n: RowNorms, s: f32) {
        // A non-finite value (overflowing rows) must not vanish in `max`: make it infinite.
        let fin = |x: f64| if x.is_finite() { x } else { f64::INFINITY };
        let s = f64::from(s);
        self.residual = self.residual.max(fin(s * f64::from(n.residual)));
        self.rounded = self.rounded.max(fin(s * f64::from(n.rounded)));
        self.scale = self.scale.max(fin(s));
        self.raw = self.raw.max(fin(f64::from(n.rounded) + f64::from(n.residual)));
    }

    pub(crate) fn merge(self, o: NormMax) -> NormMax {
        NormMax { residual: self.residual.max(o.residual), rounded: self.rounded.max(o.rounded), scale: self.scale.max(o.scale), raw: self.raw.max(o.raw) }
    }
}

/// The corpus rows a scan reads.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// float32 or bf16 rows on bf16 tiles.
    Bf16(Rows<'a>),
    /// Quantised rows on int8 tiles.
    Int8(Int8Rows<'a>),
}

impl Source<'_> {
    /// The bytes of rows `start..end` (contiguous in every source), for prefetching.
    fn row_bytes(&self, d: usize, start: usize, end: usize) -> (*const u8, usize) {
        let (base, size): (*const u8, usize) = match self {
            Source::Bf16(Rows::F32(c)) => (c.as_ptr().cast(), 4),
            Source::Bf16(Rows::Bf16 { data, .. }) => (data.as_ptr().cast(), 2),
            Source::Int8(r) => (r.data.as_ptr().cast(), 1),
        };
        // SAFETY (of the pointer arithmetic): start <= end <= rows, inside the source buffer.
        (base.wrapping_add(start * d * size), (end - start) * d * size)
    }
}

/// Prefetches a byte range into L2 a few cache lines at a time, spread over the kernel calls of
/// one chunk, so the next chunk streams in from memory while the tile unit works on this one.
struct Prefetch {
    at: *const u8,
    end: *const u8,
    lines_per_call: usize,
}

impl Prefetch {
    fn new((at, len): (*const u8, usize), calls: usize) -> Self {
        Prefetch { at, end: at.wrapping_add(len), lines_per_call: len.div_ceil(64).div_ceil(calls.max(1)) }
    }

    #[inline(always)]
    fn step(&mut self) {
        for _ in 0..self.lines_per_call {
            if self.at >= self.end {
                return;
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch never faults; the address lies in the corpus buffer anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(self.at.cast());
            }
            self.at = self.at.wrapping_add(64);
        }
    }
}

/// The C buffer of a chunk whose last dimension slice is done, for one query block.
struct Finished<'a> {
    /// C tiles of every 32-row block, `C_BLOCK` values each.
    c: &'a [f32],
    /// Per-row factors of the chunk.
    scales: &'a [f32],
    /// Rows in the chunk.
    rows: usize,
    /// First corpus row of the chunk.
    row0: usize,
    /// First query of the block.
    q0: usize,
    /// 16-query halves in the block.
    halves: usize,
}

/// One scan's inputs.
pub(crate) struct Scan<'a> {
    pub(crate) corpus: Source<'a>,
    pub(crate) d: usize,
    pub(crate) queries: &'a PackedQueries,
    pub(crate) nq: usize,
    /// Candidates kept per query.
    pub(crate) kp: usize,
    pub(crate) exclude: Option<&'a Exclusions>,
    pub(crate) row_scale: Option<&'a [f32]>,
    pub(crate) cancel: Option<&'a AtomicBool>,
    /// Corpus rows per chunk (a multiple of 32).
    pub(crate) chunk_rows: usize,
    /// 64-byte steps per slice.
    pub(crate) slice_steps: usize,
}

/// What a thread's scan of its corpus slice leaves: the candidates (with the final admission
/// thresholds) and the norms of the rows it read.
pub(crate) struct ScanPart {
    pub(crate) cands: Reservoirs,
    pub(crate) norms: NormMax,
}

impl Scan<'_> {
    /// Scans corpus rows `start..end`.
    pub(crate) fn run(&self, start: usize, end: usize) -> Result<ScanPart> {
        let session = TileSession::start().ok_or_else(|| Error::param("kernel", format!("the amx kernel cannot run here ({})", super::amx::status().describe())))?;
        let (d, nq) = (self.d, self.nq);
        let int8 = matches!(self.corpus, Source::Int8(_));
        let st = if int8 { int8::steps(d) } else { bf16::steps(d) };
        let ks = self.slice_steps.clamp(1, st);
        let qblocks = nq.div_ceil(PAIR);
        let mut cands = Reservoirs::new(nq, self.kp);
        // Thresholds padded to whole query blocks; padding queries never take a row.
        let mut thr = AlignedBuf::zeroed(qblocks * PAIR);
        thr.as_mut_slice().fill(f32::INFINITY);
        thr.as_mut_slice()[..nq].fill(f32::NEG_INFINITY);
        let chunk_cap = self.chunk_rows.max(PAIR);
        // Both layouts take 2 KiB per step of 32 rows.
        let mut chunk = TileBuf::zeroed(chunk_len(chunk_cap, st * 32));
        let mut row_norms = vec![RowNorms::default(); chunk_cap];
        let mut scales = AlignedBuf::zeroed(chunk_cap.div_ceil(PAIR) * PAIR);
        let mut cbuf = AlignedBuf::<f32>::zeroed(chunk_cap.div_ceil(PAIR) * C_BLOCK);
        let mut norms = NormMax::default();
        // Bytes of one 32-row block (corpus) or 32-query block (queries).
        let block = st * 2 * TILE_BYTES;
        let mut c0 = start;
        while c0 < end {
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let c1 = (c0 + chunk_cap).min(end);
            let rows = c1 - c0;
            let cblocks = rows.div_ceil(PAIR);
            let sc = scales.as_mut_slice();
            sc.fill(0.0);
            match self.corpus {
                Source::Bf16(src) => {
                    pack_chunk(src, d, c0, c1, chunk.as_mut_slice(), &mut row_norms);
                    for r in 0..rows {
                        sc[r] = self.row_scale.map_or(1.0, |s| s[c0 + r]);
                        norms.add(row_norms[r], sc[r]);
                    }
                }
                Source::Int8(src) => {
                    int8::pack_chunk(src.data, d, c0, c1, chunk.bytes_mut());
                    for r in 0..rows {
                        sc[r] = src.scale[c0 + r] * self.row_scale.map_or(1.0, |s| s[c0 + r]);
                    }
                }
            }
            let slices = st.div_ceil(ks);
            let mut prefetch = Prefetch::new(self.corpus.row_bytes(d, c1, (c1 + chunk_cap).min(end)), qblocks * slices * cblocks);
            for qb in 0..qblocks {
                let halves = (nq - qb * PAIR).div_ceil(TILE_ROWS).min(2);
                let mut s0 = 0;
                while s0 < st {
                    let n = ks.min(st - s0);
                    let last = s0 + n == st;
                    for cb in 0..cblocks {
                        let off = s0 * 2 * TILE_BYTES;
                        let a = chunk.bytes()[cb * block + off..].as_ptr();
                        let b = self.queries.tiles.bytes()[qb * block + off..].as_ptr();
                        let c = cbuf.as_mut_slice()[cb * C_BLOCK..].as_mut_ptr().cast::<u8>();
                        // SAFETY: the session is live on this thread; a and b point at whole
                        // 64-byte aligned tiles (`n` steps of 2 tiles each remain in both
                        // buffers) and c at 4 KiB of the aligned C buffer.
                        unsafe {
                            match (halves, s0 == 0, int8) {
                                (2, true, false) => kernel_2x2::<false, false>(&session, a, b, n, c),
                                (2, false, false) => kernel_2x2::<true, false>(&session, a, b, n, c),
                                (_, true, false) => kernel_2x1::<false, false>(&session, a, b, n, c),
                                (_, false, false) => kernel_2x1::<true, false>(&session, a, b, n, c),
                                (2, true, true) => kernel_2x2::<false, true>(&session, a, b, n, c),
                                (2, false, true) => kernel_2x2::<true, true>(&session, a, b, n, c),
                                (_, true, true) => kernel_2x1::<false, true>(&session, a, b, n, c),
                                (_, false, true) => kernel_2x1::<true, true>(&session, a, b, n, c),
                            }
                        }
                        prefetch.step();
                        // The epilogue of the previous block runs while this block's tile
                        // products are still in flight.
                        if last && cb > 0 {
                            let block = Finished { c: cbuf.as_slice(), scales: scales.as_slice(), rows, row0: c0, q0: qb * PAIR, halves };
                            self.epilogue(&block, cb - 1, &mut cands, thr.as_mut_slice());
                        }
                    }
                    if last {
                        let block = Finished { c: cbuf.as_slice(), scales: scales.as_slice(), rows, row0: c0, q0: qb * PAIR, halves };
                        self.epilogue(&block, cblocks - 1, &mut cands, thr.as_mut_slice());
                    }
                    s0 += n;
                }
            }
            c0 = c1;
        }
        drop(session);
        Ok(ScanPart { cands, norms })
    }

    /// Compares finished block `e` of a chunk (32 rows, 32 queries) against the thresholds and
    /// offers the rows that beat them to the reservoirs.
    #[inline]
    fn epilogue(&self, f: &Finished<'_>, e: usize, cands: &mut Reservoirs, thr: &mut [f32]) {
        let c = &f.c[e * C_BLOCK..(e + 1) * C_BLOCK];
        let scales = &f.scales[e * PAIR..(e + 1) * PAIR];
        let live = (f.rows - e * PAIR).min(PAIR);
        debug_assert!(thr.len() >= f.q0 + PAIR);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the scan only runs where AMX is ready, which implies AVX-512F (amx::cpu_support).
        unsafe {
            self.epilogue_avx512(c, scales, live, f.row0 + e * PAIR, f.q0, f.halves, cands, thr)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AMX exists only on x86_64")
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn epilogue_avx512(&self, c: &[f32], scales: &[f32], live: usize, row0: usize, q0: usize, halves: usize, cands: &mut Reservoirs, thr: &mut [f32]) {
        use std::arch::x86_64::*;
        let int8 = matches!(self.corpus, Source::Int8(_));
        let scaled = self.row_scale.is_some() || int8;
        let mut qscale = _mm512_set1_ps(1.0);
        // Row m of the block, query half j: tile (m / 16, j), row m % 16; int8 sums are
        // converted and multiplied by the query and row scales.
        let row = |m: usize, j: usize, qscale: __m512| -> __m512 {
            let p = c.as_ptr().add(((m / TILE_ROWS) * 2 + j) * TILE_ROWS * TILE_ROWS + (m % TILE_ROWS) * TILE_ROWS);
            let v = if int8 { _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(p.cast())), qscale) } else { _mm512_load_ps(p) };
            if scaled {
                _mm512_mul_ps(v, _mm512_set1_ps(*scales.get_unchecked(m)))
            } else {
                v
            }
        };
        for j in 0..halves {
            let qh = q0 + j * TILE_ROWS;
            if int8 {
                qscale = _mm512_loadu_ps(self.queries.scale.as_ptr().add(qh));
            }
            let mut t = _mm512_loadu_ps(thr.as_ptr().add(qh));
            let mut mx = row(0, j, qscale);
            for m in 1..PAIR {
                mx = _mm512_max_ps(mx, row(m, j, qscale));
            }
            if _mm512_cmp_ps_mask::<_CMP_GT_OQ>(mx, t) == 0 {
                continue;
            }
            for m in 0..live {
                let v = row(m, j, qscale);
                let mut mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, t);
                if mask == 0 {
                    continue;
                }
                let mut vals = [0.0f32; TILE_ROWS];
                _mm512_storeu_ps(vals.as_mut_ptr(), v);
                let id = (row0 + m) as u32;
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let q = qh + lane;
                    let s = vals[lane];
                    // The threshold may have risen since the compare.
                    if s <= thr[q] || self.exclude.is_some_and(|e| e.contains(q, u64::from(id))) {
                        continue;
                    }
                    cands.push(q, s, id);
                    thr[q] = cands.thresholds()[q];
                }
                t = _mm512_loadu_ps(thr.as_ptr().add(qh));
            }
        }
    }
}
