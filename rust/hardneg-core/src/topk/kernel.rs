//! Packing and register-blocked tile kernels.
//!
//! Every kernel computes each (query, corpus row) score as the same sequential chain of fused
//! multiply-adds over the dimensions, starting from zero: `acc = fma(q[t], c[t], acc)` for
//! `t = 0..d`. Lanes hold corpus rows, so the AVX-512, AVX2 and scalar kernels produce bit-identical
//! scores, whatever the tile, the chunk or the thread a row falls in. That is what makes results
//! independent of the thread count and lets the tests compare kernels exactly.
//!
//! Layouts:
//! * a corpus *block* is `BLOCK` consecutive rows stored dimension-major: `[d][BLOCK]`;
//! * a query *group* is `GROUP` queries stored dimension-major: `[d][GROUP]` (zero padded).
//!
//! A tile is one block against one group: `4 x 16` rows times up to 6 queries, 24 zmm accumulators.
//! After the dimension loop each accumulator is compared against its query's running top-k
//! threshold while still in registers; only tiles with a hit write scores out.

/// Corpus rows per packed block (4 AVX-512 vectors).
pub(crate) const BLOCK: usize = 64;
/// Queries per packed group.
pub(crate) const GROUP: usize = 6;

/// Instruction set used by the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F kernels (16-wide).
    Avx512,
    /// AVX2 + FMA kernels (8-wide).
    Avx2,
    /// Portable scalar kernels.
    Scalar,
}

impl Isa {
    /// The best instruction set this CPU supports (detected once).
    pub fn detect() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return Isa::Avx2;
                }
            }
            Isa::Scalar
        })
    }

    /// Every instruction set this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        match Isa::detect() {
            Isa::Avx512 => vec![Isa::Avx512, Isa::Avx2, Isa::Scalar],
            Isa::Avx2 => vec![Isa::Avx2, Isa::Scalar],
            Isa::Scalar => vec![Isa::Scalar],
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        Isa::available().contains(&self)
    }

    /// The instruction set called `name` (see [`Isa::name`]), if any.
    pub fn from_name(name: &str) -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Scalar].into_iter().find(|isa| isa.name() == name)
    }

    /// Lower-case name (`"avx512"`, `"avx2"`, `"scalar"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }
}

/// Plain number types whose every bit pattern is a value (so zeroed or reinterpreted bytes are).
pub(crate) trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for u16 {}

/// A 64-byte aligned, zero-initialised buffer of `T` (f32 panels; u16 bf16 tiles, also seen
/// as bytes for int8 tiles).
pub(crate) struct AlignedBuf<T: Plain = f32> {
    raw: Vec<Align64>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl<T: Plain> AlignedBuf<T> {
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        AlignedBuf { raw: vec![Align64([0; 64]); bytes.div_ceil(64)], len, _t: std::marker::PhantomData }
    }
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the storage holds at least len * size_of::<T>() zero-initialised or written
        // bytes, 64-byte aligned (enough for T); T is plain data (any bits are a value).
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().cast::<T>(), self.len) }
    }
    #[inline(always)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().cast::<T>(), self.len) }
    }
    /// The same storage as bytes.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: any initialised storage is valid as bytes.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().cast::<u8>(), self.len * std::mem::size_of::<T>()) }
    }
    #[inline(always)]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold the only reference; every byte pattern is a valid T.
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().cast::<u8>(), self.len * std::mem::size_of::<T>()) }
    }
}

/// Packs all queries into groups of `GROUP`, dimension-major, zero padded.
pub(crate) fn pack_queries(q: &[f32], rows: usize, d: usize) -> AlignedBuf {
    let groups = rows.div_ceil(GROUP);
    let mut buf = AlignedBuf::zeroed(groups * d * GROUP);
    let out = buf.as_mut_slice();
    for (r, row) in q.chunks_exact(d).enumerate() {
        let (g, j) = (r / GROUP, r % GROUP);
        let base = g * d * GROUP + j;
        for (t, &x) in row.iter().enumerate() {
            out[base + t * GROUP] = x;
        }
    }
    buf
}

/// Packs corpus rows `start..end`, dimensions `t0..t1` (of a row-major corpus `c` with `d`
/// columns) into blocks of `BLOCK` rows, dimension-major: block `b` is `[t1 - t0][BLOCK]` at
/// `out[b * (t1 - t0) * BLOCK..]`. Rows past `end` are zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_corpus(isa: Isa, c: &[f32], d: usize, start: usize, end: usize, t0: usize, t1: usize, out: &mut [f32]) {
    let blocks = (end - start).div_ceil(BLOCK);
    assert!(t0 < t1 && t1 <= d && out.len() >= blocks * (t1 - t0) * BLOCK && c.len() >= end * d);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: the caller only selects Avx512 when the CPU supports it; bounds checked above.
        unsafe { pack_corpus_avx512(c, d, start, end, t0, t1, out) };
        return;
    }
    let _ = isa;
    pack_corpus_scalar(c, d, start, end, t0, t1, out);
}

pub(crate) fn pack_corpus_scalar(c: &[f32], d: usize, start: usize, end: usize, t0: usize, t1: usize, out: &mut [f32]) {
    let kc = t1 - t0;
    let blocks = (end - start).div_ceil(BLOCK);
    for b in 0..blocks {
        let dst = &mut out[b * kc * BLOCK..(b + 1) * kc * BLOCK];
        for r in 0..BLOCK {
            let row = start + b * BLOCK + r;
            if row < end {
                let src = &c[row * d + t0..row * d + t1];
                for (t, &x) in src.iter().enumerate() {
                    dst[t * BLOCK + r] = x;
                }
            } else {
                for t in 0..kc {
                    dst[t * BLOCK + r] = 0.0;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_corpus_avx512(c: &[f32], d: usize, start: usize, end: usize, t0: usize, t1: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let kc = t1 - t0;
    let blocks = (end - start).div_ceil(BLOCK);
    let cp = c.as_ptr();
    let op = out.as_mut_ptr();
    for b in 0..blocks {
        for h in 0..BLOCK / 16 {
            let row0 = start + b * BLOCK + h * 16;
            let live = end.saturating_sub(row0).min(16);
            let dst = op.add(b * kc * BLOCK + h * 16);
            let (src, stride) = (cp.add(row0 * d), d);
            let mut t = t0;
            while t < t1 {
                let width = (t1 - t).min(16);
                let lmask: __mmask16 = if width == 16 { 0xffff } else { (1u16 << width) - 1 };
                // Fetch what the next slice (same rows, `kc` further) or, after the last slice,
                // the next block (64 rows down, first slice) will read: the 16 strided streams
                // are more than the hardware prefetchers follow (measured: 12 % faster at Q=1).
                let (pr, pt) = if t + kc < d { (row0, t + kc) } else { (row0 + BLOCK, t - t0) };
                if (pr + 16) * d <= c.len() {
                    for i in 0..16 {
                        _mm_prefetch::<_MM_HINT_T0>(cp.add((pr + i) * d + pt).cast::<i8>());
                    }
                }
                let r: [__m512; 16] = if live == 16 {
                    // constant trip count: the rows stay in registers
                    std::array::from_fn(|i| _mm512_maskz_loadu_ps(lmask, src.add(i * stride + t)))
                } else {
                    std::array::from_fn(|i| if i < live { _mm512_maskz_loadu_ps(lmask, src.add(i * stride + t)) } else { _mm512_setzero_ps() })
                };
                let cols = transpose16(r);
                for (j, v) in cols.iter().enumerate().take(width) {
                    _mm512_storeu_ps(dst.add((t - t0 + j) * BLOCK), *v);
                }
                t += 16;
            }
        }
    }
}

/// Transposes a 16 x 16 tile held in 16 registers (row i in `r[i]`), returning the columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_ps(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // u[4g + m] holds, in 128-bit lane L, column 4L + m of rows 4g..4g+3.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a0, a1, b0, b1) = (
            _mm512_castps_pd(t[4 * g]),
            _mm512_castps_pd(t[4 * g + 1]),
            _mm512_castps_pd(t[4 * g + 2]),
            _mm512_castps_pd(t[4 * g + 3]),
        );
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let va = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let vb = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        out[m] = _mm512_shuffle_f32x4::<0x88>(va, vb);
        out[8 + m] = _mm512_shuffle_f32x4::<0xdd>(va, vb);
        let wa = _mm512_shuffle_f32x4::<0xdd>(u[m], u[4 + m]);
        let wb = _mm512_shuffle_f32x4::<0xdd>(u[8 + m], u[12 + m]);
        out[4 + m] = _mm512_shuffle_f32x4::<0x88>(wa, wb);
        out[12 + m] = _mm512_shuffle_f32x4::<0xdd>(wa, wb);
    }
    out
}

/// Per-row factors of one block, applied to the finished dot products (cosine over an
/// un-normalised corpus: the inverse row norms). A single IEEE multiply, identical in every kernel.
pub(crate) enum RowScale {
    /// Plain inner product.
    None,
    /// `score[r] = dot[r] * factors[r]`.
    Rows(Box<Aligned64<BLOCK>>),
}

/// A 64-byte aligned array.
#[repr(C, align(64))]
pub(crate) struct Aligned64<const N: usize>(pub(crate) [f32; N]);

/// Accumulators of one tile, `[GROUP][BLOCK]`: partial sums between dimension slices, and the
/// finished scores of the queries with a hit after the last slice.
#[repr(C, align(64))]
pub(crate) struct TileScores(pub(crate) [[f32; BLOCK]; GROUP]);

/// What the last dimension slice of a tile does with the finished dot products.
pub(crate) struct Epilogue<'a> {
    /// Row factors (cosine) or none.
    pub(crate) scale: &'a RowScale,
    /// Running top-k threshold of each query of the group.
    pub(crate) thr: &'a [f32],
    /// Bit mask of the block rows that exist.
    pub(crate) valid: u64,
}

/// Runs one dimension slice of a tile: block slice `cb` (`[kc][BLOCK]`) against the first `nq`
/// queries of group slice `qg` (`[kc][GROUP]`).
///
/// The accumulators start from zero when `first`, else from `acc`. Without an epilogue the
/// partial sums go back to `acc` and the masks are zero. With one, each query's scores are
/// scaled, compared against `thr[j]` while in registers, and the mask of rows in `valid` that
/// beat it is returned; the scores of queries with a non-zero mask are written to `acc`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn tile(isa: Isa, nq: usize, cb: &[f32], qg: &[f32], kc: usize, acc: &mut TileScores, first: bool, last: Option<&Epilogue<'_>>) -> [u64; GROUP] {
    debug_assert!(cb.len() >= kc * BLOCK && qg.len() >= kc * GROUP && (1..=GROUP).contains(&nq));
    debug_assert!(last.is_none_or(|e| e.thr.len() >= nq));
    macro_rules! dispatch {
        ($f:ident) => {
            match nq {
                1 => $f::<1>(cb, qg, kc, acc, first, last),
                2 => $f::<2>(cb, qg, kc, acc, first, last),
                3 => $f::<3>(cb, qg, kc, acc, first, last),
                4 => $f::<4>(cb, qg, kc, acc, first, last),
                5 => $f::<5>(cb, qg, kc, acc, first, last),
                _ => $f::<6>(cb, qg, kc, acc, first, last),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx512/Avx2 are only selected after runtime detection (see `Isa::is_supported`).
        Isa::Avx512 => unsafe { dispatch!(tile_avx512) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { dispatch!(tile_avx2) },
        _ => dispatch!(tile_scalar),
    }
}

/// The reference kernel: plain loops, `mul_add` (a fused multiply-add, like the SIMD kernels).
pub(crate) fn tile_scalar<const NQ: usize>(cb: &[f32], qg: &[f32], kc: usize, io: &mut TileScores, first: bool, last: Option<&Epilogue<'_>>) -> [u64; GROUP] {
    let mut masks = [0u64; GROUP];
    for j in 0..NQ {
        let mut acc = if first { [0.0f32; BLOCK] } else { io.0[j] };
        for t in 0..kc {
            let q = qg[t * GROUP + j];
            let c = &cb[t * BLOCK..(t + 1) * BLOCK];
            for r in 0..BLOCK {
                acc[r] = q.mul_add(c[r], acc[r]);
            }
        }
        let Some(e) = last else {
            io.0[j] = acc;
            continue;
        };
        if let RowScale::Rows(sc) = e.scale {
            for (a, &f) in acc.iter_mut().zip(&sc.0) {
                *a *= f;
            }
        }
        let mut m = 0u64;
        for (r, &s) in acc.iter().enumerate() {
            if s > e.thr[j] {
                m |= 1 << r;
            }
        }
        m &= e.valid;
        if m != 0 {
            io.0[j] = acc;
        }
        masks[j] = m;
    }
    masks
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const NQ: usize>(cb: &[f32], qg: &[f32], kc: usize, io: &mut TileScores, first: bool, last: Option<&Epilogue<'_>>) -> [u64; GROUP] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 4]; NQ];
    if !first {
        for (j, a) in acc.iter_mut().enumerate() {
            let p = io.0[j].as_ptr();
            *a = [_mm512_load_ps(p), _mm512_load_ps(p.add(16)), _mm512_load_ps(p.add(32)), _mm512_load_ps(p.add(48))];
        }
    }
    let mut c = cb.as_ptr();
    let mut q = qg.as_ptr();
    for _ in 0..kc {
        let c0 = _mm512_load_ps(c);
        let c1 = _mm512_load_ps(c.add(16));
        let c2 = _mm512_load_ps(c.add(32));
        let c3 = _mm512_load_ps(c.add(48));
        for (j, a) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(*q.add(j));
            a[0] = _mm512_fmadd_ps(c0, b, a[0]);
            a[1] = _mm512_fmadd_ps(c1, b, a[1]);
            a[2] = _mm512_fmadd_ps(c2, b, a[2]);
            a[3] = _mm512_fmadd_ps(c3, b, a[3]);
        }
        c = c.add(BLOCK);
        q = q.add(GROUP);
    }
    let mut masks = [0u64; GROUP];
    let Some(e) = last else {
        for (j, a) in acc.iter().enumerate() {
            let p = io.0[j].as_mut_ptr();
            _mm512_store_ps(p, a[0]);
            _mm512_store_ps(p.add(16), a[1]);
            _mm512_store_ps(p.add(32), a[2]);
            _mm512_store_ps(p.add(48), a[3]);
        }
        return masks;
    };
    if let RowScale::Rows(sc) = e.scale {
        let p = sc.0.as_ptr();
        let (s0, s1, s2, s3) = (_mm512_load_ps(p), _mm512_load_ps(p.add(16)), _mm512_load_ps(p.add(32)), _mm512_load_ps(p.add(48)));
        for a in acc.iter_mut() {
            a[0] = _mm512_mul_ps(a[0], s0);
            a[1] = _mm512_mul_ps(a[1], s1);
            a[2] = _mm512_mul_ps(a[2], s2);
            a[3] = _mm512_mul_ps(a[3], s3);
        }
    }
    for (j, a) in acc.iter().enumerate() {
        let t = _mm512_set1_ps(e.thr[j]);
        let m = u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a[0], t))
            | u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a[1], t)) << 16
            | u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a[2], t)) << 32
            | u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a[3], t)) << 48;
        let m = m & e.valid;
        if m != 0 {
            let o = io.0[j].as_mut_ptr();
            _mm512_store_ps(o, a[0]);
            _mm512_store_ps(o.add(16), a[1]);
            _mm512_store_ps(o.add(32), a[2]);
            _mm512_store_ps(o.add(48), a[3]);
        }
        masks[j] = m;
    }
    masks
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const NQ: usize>(cb: &[f32], qg: &[f32], kc: usize, io: &mut TileScores, first: bool, last: Option<&Epilogue<'_>>) -> [u64; GROUP] {
    use std::arch::x86_64::*;
    let mut masks = [0u64; GROUP];
    // Four 16-row quarters of the block, each 2 ymm x NQ queries (12 accumulators at most).
    for s in 0..BLOCK / 16 {
        let mut acc = [[_mm256_setzero_ps(); 2]; NQ];
        if !first {
            for (j, a) in acc.iter_mut().enumerate() {
                let p = io.0[j].as_ptr().add(16 * s);
                *a = [_mm256_load_ps(p), _mm256_load_ps(p.add(8))];
            }
        }
        let mut c = cb.as_ptr().add(16 * s);
        let mut q = qg.as_ptr();
        for _ in 0..kc {
            let c0 = _mm256_load_ps(c);
            let c1 = _mm256_load_ps(c.add(8));
            for (j, a) in acc.iter_mut().enumerate() {
                let b = _mm256_set1_ps(*q.add(j));
                a[0] = _mm256_fmadd_ps(c0, b, a[0]);
                a[1] = _mm256_fmadd_ps(c1, b, a[1]);
            }
            c = c.add(BLOCK);
            q = q.add(GROUP);
        }
        let Some(e) = last else {
            for (j, a) in acc.iter().enumerate() {
                let p = io.0[j].as_mut_ptr().add(16 * s);
                _mm256_store_ps(p, a[0]);
                _mm256_store_ps(p.add(8), a[1]);
            }
            continue;
        };
        if let RowScale::Rows(sc) = e.scale {
            let p = sc.0.as_ptr().add(16 * s);
            let (s0, s1) = (_mm256_load_ps(p), _mm256_load_ps(p.add(8)));
            for a in acc.iter_mut() {
                a[0] = _mm256_mul_ps(a[0], s0);
                a[1] = _mm256_mul_ps(a[1], s1);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            let t = _mm256_set1_ps(e.thr[j]);
            let m0 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a[0], t)) as u64;
            let m1 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a[1], t)) as u64;
            let m = ((m0 | m1 << 8) << (16 * s)) & e.valid;
            // Scores of every quarter go out (not only quarters with a hit) so the whole row of
            // a query with any hit is final, as in the other kernels.
            let o = io.0[j].as_mut_ptr().add(16 * s);
            _mm256_store_ps(o, a[0]);
            _mm256_store_ps(o.add(8), a[1]);
            masks[j] |= m;
        }
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::lcg;


    #[test]
    fn simd_pack_equals_scalar_pack() {
        for &(n, d, start, end) in &[(70usize, 1usize, 0usize, 70usize), (130, 17, 3, 129), (64, 16, 0, 64), (200, 33, 64, 200), (10, 768, 0, 10)] {
            let mut seed = 7;
            let c: Vec<f32> = (0..n * d).map(|_| lcg(&mut seed)).collect();
            let blocks: usize = (end - start).div_ceil(BLOCK);
            for (t0, t1) in [(0, d), (d / 3, d), (0, d.div_ceil(2))] {
                if t0 >= t1 {
                    continue;
                }
                let kc = t1 - t0;
                let mut a = vec![f32::NAN; blocks * kc * BLOCK];
                let mut b = vec![f32::NAN; blocks * kc * BLOCK];
                pack_corpus_scalar(&c, d, start, end, t0, t1, &mut a);
                for r in 0..(end - start) {
                    for t in t0..t1 {
                        assert_eq!(a[(r / BLOCK) * kc * BLOCK + (t - t0) * BLOCK + r % BLOCK], c[(start + r) * d + t]);
                    }
                }
                for isa in Isa::available() {
                    pack_corpus(isa, &c, d, start, end, t0, t1, &mut b);
                    assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{isa:?} n={n} d={d}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_is_bit_identical_to_scalar() {
        for &d in &[1usize, 3, 17, 64, 100] {
            let mut seed = d as u64;
            let cb: Vec<f32> = (0..d * BLOCK).map(|_| lcg(&mut seed)).collect();
            let mut cbuf = AlignedBuf::zeroed(d * BLOCK);
            cbuf.as_mut_slice().copy_from_slice(&cb);
            let mut qbuf = AlignedBuf::zeroed(d * GROUP);
            qbuf.as_mut_slice().iter_mut().for_each(|x| *x = lcg(&mut seed));
            let thr = [f32::NEG_INFINITY, 0.0, -0.1, 0.05, f32::NEG_INFINITY, 0.2];
            let valid = u64::MAX >> 3;
            for (si, scale) in [RowScale::None, RowScale::Rows(Box::new(Aligned64(std::array::from_fn(|r| 0.5 + r as f32 / 7.0))))].iter().enumerate() {
            for nq in 1..=GROUP {
                let e = Epilogue { scale, thr: &thr, valid };
                let mut want = TileScores([[0.0; BLOCK]; GROUP]);
                let wm = tile(Isa::Scalar, nq, cbuf.as_slice(), qbuf.as_slice(), d, &mut want, true, Some(&e));
                for isa in Isa::available() {
                    // in one slice, and split into dimension slices with partial sums in between
                    let mut got = TileScores([[0.0; BLOCK]; GROUP]);
                    let gm = tile(isa, nq, cbuf.as_slice(), qbuf.as_slice(), d, &mut got, true, Some(&e));
                    let mut split = TileScores([[f32::NAN; BLOCK]; GROUP]);
                    let h = d / 2;
                    if h > 0 {
                        tile(isa, nq, cbuf.as_slice(), qbuf.as_slice(), h, &mut split, true, None);
                        let sm = tile(isa, nq, &cbuf.as_slice()[h * BLOCK..], &qbuf.as_slice()[h * GROUP..], d - h, &mut split, false, Some(&e));
                        assert_eq!(sm, gm);
                        for j in 0..nq {
                            for r in (0..BLOCK).filter(|r| gm[j] >> r & 1 == 1) {
                                assert_eq!(split.0[j][r].to_bits(), got.0[j][r].to_bits());
                            }
                        }
                    }
                    assert_eq!(wm, gm, "{isa:?} d={d} nq={nq}");
                    for j in 0..nq {
                        for r in 0..BLOCK {
                            if wm[j] >> r & 1 == 1 {
                                assert_eq!(want.0[j][r].to_bits(), got.0[j][r].to_bits(), "{isa:?} d={d} j={j} r={r}");
                            }
                        }
                    }
                }
                // and the scalar kernel equals the obvious dot product chain
                for j in 0..nq {
                    if wm[j] == 0 {
                        continue;
                    }
                    for r in (0..BLOCK).filter(|r| wm[j] >> r & 1 == 1) {
                        let mut acc = 0.0f32;
                        for t in 0..d {
                            acc = qbuf.as_slice()[t * GROUP + j].mul_add(cb[t * BLOCK + r], acc);
                        }
                        if si == 1 {
                            acc *= 0.5 + r as f32 / 7.0;
                        }
                        assert_eq!(acc.to_bits(), want.0[j][r].to_bits());
                    }
                }
            }
            }
        }
    }
}
