//! bfloat16 conversion and the packed tile layouts of the AMX scan.
//!
//! Conversion rounds to nearest, ties to even (what AMX and AVX512-BF16 do), computed with
//! integer operations so the scalar and AVX-512 versions give the same bits. Every conversion
//! from float32 also returns the per-row norm of the rounding residual `||x - bf16(x)||`, which
//! bounds the scan's score error (see `certify`).
//!
//! Layouts (one tile = 16 rows x 32 bf16 = 1 KiB; `steps = ceil(d / 32)`, zero padded):
//! * corpus chunk: blocks of 32 rows, `[block][step][half][16 rows][32 dims]`;
//! * queries: blocks of 32 queries, `[block][step][half][16 pair rows][16 queries][2]`, the
//!   VNNI pairs of the B operand.

use super::amx::{TILE_BYTES, TILE_K, TILE_ROWS};

/// bf16 elements of one tile.
pub(crate) const TILE_ELEMS: usize = TILE_BYTES / 2;
/// Corpus rows (and queries) per 2 x 2 block.
pub(crate) const PAIR: usize = 2 * TILE_ROWS;

/// Round-to-nearest-even bf16 of a finite float (overflow gives infinity, like the hardware).
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + (b >> 16 & 1)) >> 16) as u16
}

/// The float32 value of a bf16.
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// 32-dimension steps of a row of `d` dimensions.
#[inline]
pub(crate) fn steps(d: usize) -> usize {
    d.div_ceil(TILE_K)
}

/// The 64-byte aligned tile buffers: bf16 as `u16`, int8 through [`AlignedBuf::bytes`].
pub(crate) type TileBuf = super::kernel::AlignedBuf<u16>;

/// A stored bf16 copy of a corpus: row-major `[N, d]` bf16 bits and each row's residual norm
/// `||x - bf16(x)||` (from [`convert_rows`]).
#[derive(Clone, Copy, Debug)]
pub struct Bf16Rows<'a> {
    /// bf16 bits, row-major.
    pub data: &'a [u16],
    /// Residual norm per row.
    pub residual: &'a [f32],
}

/// Where the rows of a corpus chunk come from.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// float32 rows (converted here, residuals measured here).
    F32(&'a [f32]),
    /// bf16 rows with their stored residual norms.
    Bf16 { data: &'a [u16], residual: &'a [f32] },
}

/// Per-row quantities of a packed chunk that enter the error bound.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RowNorms {
    /// `||bf16(x)||`.
    pub(crate) rounded: f32,
    /// `||x - bf16(x)||`.
    pub(crate) residual: f32,
}



/// Offset (in bf16 elements) of corpus row `r`, dimension `t` in the chunk layout.
#[inline]
pub(crate) fn corpus_offset(steps: usize, r: usize, t: usize) -> usize {
    super::amx::tile_offset::<TILE_K>(steps, r, t)
}

/// Offset of query `q`, dimension `t` in the query layout.
#[inline]
pub(crate) fn query_offset(steps: usize, q: usize, t: usize) -> usize {
    super::amx::vnni_offset::<TILE_K>(steps, q, t)
}

/// Buffer length (bf16 elements) of a chunk of `rows` corpus rows.
#[inline]
pub(crate) fn chunk_len(rows: usize, d: usize) -> usize {
    rows.div_ceil(PAIR) * steps(d) * 2 * TILE_ELEMS
}

/// Packs rows `start..end` of `src` (`d` columns) into `out` (chunk layout; padding rows and
/// dimensions zero) and writes their norms to `norms[..end - start]`.
pub(crate) fn pack_chunk(src: Rows<'_>, d: usize, start: usize, end: usize, out: &mut [u16], norms: &mut [RowNorms]) {
    let rows = end - start;
    assert!(out.len() >= chunk_len(rows, d) && norms.len() >= rows);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: features checked; bounds checked above and in the row loop.
        unsafe { pack_chunk_avx512(src, d, start, end, out, norms) };
        return;
    }
    pack_chunk_scalar(src, d, start, end, out, norms);
}

/// The reference packing: plain loops.
pub(crate) fn pack_chunk_scalar(src: Rows<'_>, d: usize, start: usize, end: usize, out: &mut [u16], norms: &mut [RowNorms]) {
    let st = steps(d);
    let rows = end - start;
    out[..chunk_len(rows, d)].fill(0);
    for r in 0..rows {
        let row = start + r;
        let (mut n2, mut r2) = (0.0f32, 0.0f32);
        for t in 0..d {
            let (h, res) = match src {
                Rows::F32(c) => {
                    let x = c[row * d + t];
                    let h = to_bf16(x);
                    (h, x - from_bf16(h))
                }
                Rows::Bf16 { data, .. } => (data[row * d + t], 0.0),
            };
            let xh = from_bf16(h);
            n2 = xh.mul_add(xh, n2);
            r2 = res.mul_add(res, r2);
            out[corpus_offset(st, r, t)] = h;
        }
        let residual = match src {
            Rows::F32(_) => r2.sqrt(),
            Rows::Bf16 { residual, .. } => residual[row],
        };
        norms[r] = RowNorms { rounded: n2.sqrt(), residual };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_chunk_avx512(src: Rows<'_>, d: usize, start: usize, end: usize, out: &mut [u16], norms: &mut [RowNorms]) {
    use std::arch::x86_64::*;
    let st = steps(d);
    let rows = end - start;
    let blocks = rows.div_ceil(PAIR);
    let op = out.as_mut_ptr();
    // Padding rows of the last block are zero (the tile loads read whole tiles).
    for r in rows..blocks * PAIR {
        for s in 0..st {
            _mm512_store_si512(op.add(corpus_offset(st, r, s * TILE_K)).cast(), _mm512_setzero_si512());
        }
    }
    for r in 0..rows {
        let row = start + r;
        let mut n2 = _mm512_setzero_ps();
        let mut r2 = _mm512_setzero_ps();
        for s in 0..st {
            let t0 = s * TILE_K;
            let width = (d - t0).min(TILE_K);
            let dst = op.add(corpus_offset(st, r, t0));
            let packed = match src {
                Rows::F32(c) => {
                    assert!(c.len() >= (row + 1) * d);
                    let p = c.as_ptr().add(row * d + t0);
                    let m0: __mmask16 = if width >= 16 { 0xffff } else { (1u16 << width) - 1 };
                    let m1: __mmask16 = if width >= 32 { 0xffff } else if width > 16 { (1u16 << (width - 16)) - 1 } else { 0 };
                    let x0 = _mm512_maskz_loadu_ps(m0, p);
                    let x1 = _mm512_maskz_loadu_ps(m1, p.add(16));
                    let (h0, xh0) = round_bf16(x0);
                    let (h1, xh1) = round_bf16(x1);
                    let e0 = _mm512_sub_ps(x0, xh0);
                    let e1 = _mm512_sub_ps(x1, xh1);
                    n2 = _mm512_fmadd_ps(xh0, xh0, n2);
                    n2 = _mm512_fmadd_ps(xh1, xh1, n2);
                    r2 = _mm512_fmadd_ps(e0, e0, r2);
                    r2 = _mm512_fmadd_ps(e1, e1, r2);
                    // two 16 x u32 halves -> 32 x u16
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(h0)), _mm512_cvtepi32_epi16(h1))
                }
                Rows::Bf16 { data, .. } => {
                    assert!(data.len() >= (row + 1) * d);
                    let m: __mmask32 = if width >= 32 { u32::MAX } else { (1u32 << width) - 1 };
                    let h = _mm512_maskz_loadu_epi16(m, data.as_ptr().add(row * d + t0).cast());
                    let lo = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h))));
                    let hi = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(h))));
                    n2 = _mm512_fmadd_ps(lo, lo, n2);
                    n2 = _mm512_fmadd_ps(hi, hi, n2);
                    h
                }
            };
            _mm512_store_si512(dst.cast(), packed);
        }
        let residual = match src {
            Rows::F32(_) => _mm512_reduce_add_ps(r2).sqrt(),
            Rows::Bf16 { residual, .. } => residual[row],
        };
        *norms.get_unchecked_mut(r) = RowNorms { rounded: _mm512_reduce_add_ps(n2).sqrt(), residual };
    }
}

/// RNE bf16 of 16 floats: the bf16 bits (low half of each lane) and their float32 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn round_bf16(x: std::arch::x86_64::__m512) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let b = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    let h = _mm512_srli_epi32::<16>(rounded);
    (h, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)))
}

/// Packed queries and their norms (bf16), or their scales (int8).
pub(crate) struct PackedQueries {
    pub(crate) tiles: TileBuf,
    /// int8: each query's dequantisation scale, padded with zeros to whole blocks; bf16: empty.
    pub(crate) scale: Vec<f32>,
    /// `||q||` per query (f64).
    pub(crate) norm: Vec<f64>,
    /// `||q - bf16(q)||` per query.
    pub(crate) residual: Vec<f64>,
    /// `||bf16(q)||` per query.
    pub(crate) rounded: Vec<f64>,
}

/// Packs `rows` queries of `d` dimensions (row-major `q`) into VNNI B tiles.
pub(crate) fn pack_queries(q: &[f32], rows: usize, d: usize) -> PackedQueries {
    let st = steps(d);
    let mut tiles = TileBuf::zeroed(rows.div_ceil(PAIR) * st * 2 * TILE_ELEMS);
    let out = tiles.as_mut_slice();
    let (mut norm, mut residual, mut rounded) = (Vec::with_capacity(rows), Vec::with_capacity(rows), Vec::with_capacity(rows));
    for (i, row) in q.chunks_exact(d).enumerate().take(rows) {
        let (mut n2, mut r2, mut h2) = (0.0f64, 0.0f64, 0.0f64);
        for (t, &x) in row.iter().enumerate() {
            let h = to_bf16(x);
            let xh = f64::from(from_bf16(h));
            let x = f64::from(x);
            n2 += x * x;
            r2 += (x - xh) * (x - xh);
            h2 += xh * xh;
            out[query_offset(st, i, t)] = h;
        }
        norm.push(n2.sqrt());
        residual.push(r2.sqrt());
        rounded.push(h2.sqrt());
    }
    PackedQueries { tiles, scale: Vec::new(), norm, residual, rounded }
}

/// Converts row-major float32 rows to row-major bf16 (`out`, same shape) and returns each
/// row's residual norm `||x - bf16(x)||`.
pub fn convert_rows(src: &[f32], d: usize, out: &mut [u16]) -> Vec<f32> {
    assert_eq!(src.len(), out.len());
    src.chunks_exact(d)
        .zip(out.chunks_exact_mut(d))
        .map(|(x, o)| {
            let mut r2 = 0.0f64;
            for (&v, h) in x.iter().zip(o.iter_mut()) {
                *h = to_bf16(v);
                let e = f64::from(v) - f64::from(from_bf16(*h));
                r2 += e * e;
            }
            r2.sqrt() as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::lcg;


    #[test]
    fn rounding_is_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to the even mantissa (1.0)
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
        let mut s = 3;
        for _ in 0..10_000 {
            let x = lcg(&mut s) * 1000.0;
            let h = from_bf16(to_bf16(x));
            // relative error at most 2^-8 (8 significant bits)
            assert!((x - h).abs() <= x.abs() / 256.0, "{x} {h}");
        }
    }

    #[test]
    fn simd_pack_equals_scalar_pack_and_layout() {
        for &(n, d, start, end) in &[(70usize, 1usize, 0usize, 70usize), (130, 33, 3, 129), (64, 32, 0, 64), (40, 768, 5, 38), (17, 100, 0, 17)] {
            let mut seed = (n * d) as u64;
            let c: Vec<f32> = (0..n * d).map(|_| lcg(&mut seed) * 3.0).collect();
            let mut hb = vec![0u16; n * d];
            let resid = convert_rows(&c, d, &mut hb);
            let len = chunk_len(end - start, d);
            for src in [Rows::F32(&c), Rows::Bf16 { data: &hb, residual: &resid }] {
                let mut a = vec![7u16; len];
                let mut an = vec![RowNorms::default(); end - start];
                pack_chunk_scalar(src, d, start, end, &mut a, &mut an);
                let mut b = TileBuf::zeroed(len);
                b.as_mut_slice().fill(7);
                let mut bn = vec![RowNorms::default(); end - start];
                pack_chunk(src, d, start, end, b.as_mut_slice(), &mut bn);
                assert_eq!(a, b.as_slice(), "n={n} d={d}");
                for (x, y) in an.iter().zip(&bn) {
                    assert!((x.rounded - y.rounded).abs() <= 1e-5 * x.rounded.max(1e-30));
                    assert!((x.residual - y.residual).abs() <= 1e-4 * x.residual.max(1e-30));
                }
                for r in 0..end - start {
                    for t in 0..d {
                        assert_eq!(a[corpus_offset(steps(d), r, t)], hb[(start + r) * d + t]);
                    }
                    let want = resid[start + r];
                    assert!((an[r].residual - want).abs() <= 1e-4 * want.max(1e-30));
                }
                // padding is zero
                let nonzero = a.iter().filter(|&&h| h != 0).count();
                let real = (start..end).flat_map(|r| hb[r * d..(r + 1) * d].iter()).filter(|&&h| h != 0).count();
                assert_eq!(nonzero, real);
            }
        }
    }

    #[test]
    fn query_layout_is_vnni_pairs() {
        let (rows, d) = (35, 70);
        let mut s = 9;
        let q: Vec<f32> = (0..rows * d).map(|_| lcg(&mut s)).collect();
        let p = pack_queries(&q, rows, d);
        let st = steps(d);
        let buf = p.tiles.as_slice();
        for i in 0..rows {
            for t in 0..d {
                assert_eq!(buf[query_offset(st, i, t)], to_bf16(q[i * d + t]));
            }
            let n = q[i * d..(i + 1) * d].iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            assert!((p.norm[i] - n).abs() < 1e-12);
            assert!(p.residual[i] > 0.0 && p.residual[i] < n / 200.0);
        }
        // B tile row r holds dims 2r, 2r+1 of 16 consecutive queries: query 1, dim 3 is row 1, pair 1, second
        assert_eq!(query_offset(st, 1, 3), 32 + 2 + 1);
        // query 17 is in the second half; dim 32 starts step 1
        assert_eq!(query_offset(st, 17, 32), (2 + 1) * TILE_ELEMS + 2);
        assert_eq!(buf.len(), 2 * st * 2 * TILE_ELEMS);
    }
}
