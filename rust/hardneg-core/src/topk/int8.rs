//! int8 quantisation and the packed tile layouts of the approximate AMX-int8 scan.
//!
//! Per-row symmetric quantisation: `x ~ scale * q` with `scale = max|x| / 127` and
//! `q = round(x / scale)` in `-127..=127`; queries are quantised the same way at search time and
//! TDPBSSD multiplies signed by signed into int32. Unlike bf16 the rounding is too coarse to
//! certify at a sensible over-fetch (see the notes in `certify`), so int8 results are
//! approximate: the scan's candidates are rescored in float32 and the best `k` returned.
//!
//! Layouts (one tile = 16 rows x 64 bytes; `steps = ceil(d / 64)`, zero padded):
//! * corpus chunk: blocks of 32 rows, `[block][step][half][16 rows][64 dims]`;
//! * queries: blocks of 32 queries, `[block][step][half][16 quad rows][16 queries][4]`.

use super::amx::TILE_BYTES;
use super::bf16::{TileBuf, PAIR};

/// A stored int8 copy of a corpus: row-major `[N, d]` quantised rows and each row's scale
/// (from [`quantize_rows`]).
#[derive(Clone, Copy, Debug)]
pub struct Int8Rows<'a> {
    /// Quantised values, row-major.
    pub data: &'a [i8],
    /// Scale per row.
    pub scale: &'a [f32],
}

/// int8 dimensions per tile row.
pub(crate) const TILE_K8: usize = 64;

/// 64-dimension steps of a row of `d` dimensions.
#[inline]
pub(crate) fn steps(d: usize) -> usize {
    d.div_ceil(TILE_K8)
}

/// Quantises row-major float32 rows into `out` (same shape) and returns each row's scale.
pub fn quantize_rows(src: &[f32], d: usize, out: &mut [i8]) -> Vec<f32> {
    assert_eq!(src.len(), out.len());
    src.chunks_exact(d).zip(out.chunks_exact_mut(d)).map(|(x, o)| quantize_row(x, o)).collect()
}

/// Quantises one row; returns its scale (0 for a zero row).
#[inline]
pub(crate) fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// Byte offset of corpus row `r`, dimension `t` in the chunk layout.
#[inline]
pub(crate) fn corpus_offset(steps: usize, r: usize, t: usize) -> usize {
    super::amx::tile_offset::<TILE_K8>(steps, r, t)
}

/// Byte offset of query `q`, dimension `t` in the query layout.
#[inline]
pub(crate) fn query_offset(steps: usize, q: usize, t: usize) -> usize {
    super::amx::vnni_offset::<TILE_K8>(steps, q, t)
}


/// Bytes of a packed chunk of `rows` corpus rows.
#[inline]
pub(crate) fn chunk_bytes(rows: usize, d: usize) -> usize {
    rows.div_ceil(PAIR) * steps(d) * 2 * TILE_BYTES
}

/// Packs rows `start..end` of the quantised corpus `data` (`d` columns) into `out`, padding
/// with zeros.
pub(crate) fn pack_chunk(data: &[i8], d: usize, start: usize, end: usize, out: &mut [u8]) {
    let st = steps(d);
    let rows = end - start;
    let len = chunk_bytes(rows, d);
    assert!(out.len() >= len && data.len() >= end * d);
    // Whole tile rows are copied (64 dims each); only the last step of a row and the padding
    // rows need zeros.
    for r in rows..rows.div_ceil(PAIR) * PAIR {
        for s in 0..st {
            let o = corpus_offset(st, r, s * TILE_K8);
            out[o..o + TILE_K8].fill(0);
        }
    }
    for r in 0..rows {
        let row = &data[(start + r) * d..(start + r + 1) * d];
        for s in 0..st {
            let t0 = s * TILE_K8;
            let w = (d - t0).min(TILE_K8);
            let o = corpus_offset(st, r, t0);
            let dst = &mut out[o..o + TILE_K8];
            for (x, &v) in dst[..w].iter_mut().zip(&row[t0..t0 + w]) {
                *x = v as u8;
            }
            dst[w..].fill(0);
        }
    }
}

/// Quantises and packs `rows` queries (row-major `q`, `d` columns) into VNNI quads; returns
/// the tiles and each query's scale (0 past the last query).
pub(crate) fn pack_queries(q: &[f32], rows: usize, d: usize) -> (TileBuf, Vec<f32>) {
    let st = steps(d);
    let blocks = rows.div_ceil(PAIR);
    let mut tiles = TileBuf::zeroed(blocks * st * 2 * TILE_BYTES / 2);
    let out = tiles.bytes_mut();
    let mut scales = vec![0.0f32; blocks * PAIR];
    let mut row_q = vec![0i8; d];
    for (i, row) in q.chunks_exact(d).enumerate().take(rows) {
        scales[i] = quantize_row(row, &mut row_q);
        for (t, &v) in row_q.iter().enumerate() {
            out[query_offset(st, i, t)] = v as u8;
        }
    }
    (tiles, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_is_symmetric_and_bounded() {
        let x = [0.5f32, -1.0, 0.25, 0.0];
        let mut q = [0i8; 4];
        let s = quantize_row(&x, &mut q);
        assert_eq!(q, [64, -127, 32, 0]);
        assert!((s - 1.0 / 127.0).abs() < 1e-9);
        assert_eq!(quantize_row(&[0.0, 0.0], &mut q[..2]), 0.0);
        let x = crate::synthetic::uniform(300, 1);
        let mut q = vec![0i8; 300];
        let s = quantize_row(&x, &mut q);
        for (&v, &qi) in x.iter().zip(&q) {
            assert!((v - s * f32::from(qi)).abs() <= s / 2.0 + 1e-7);
        }
    }

    #[test]
    fn layouts_put_each_value_where_the_tiles_read_it() {
        let (n, d) = (37, 100);
        let data: Vec<i8> = (0..n * d).map(|i| (i % 251) as i8).collect();
        let mut out = vec![0xAAu8; chunk_bytes(n - 3, d)];
        pack_chunk(&data, d, 3, n, &mut out);
        let st = steps(d);
        for r in 0..n - 3 {
            for t in 0..d {
                assert_eq!(out[corpus_offset(st, r, t)] as i8, data[(3 + r) * d + t]);
            }
        }
        // padding dimensions and rows are zero: the bytes equal the data's
        let nonzero = out.iter().filter(|&&b| b != 0).count();
        assert_eq!(nonzero, data[3 * d..].iter().filter(|&&v| v != 0).count());
        // B tile row r holds dims 4r..4r+4 of 16 consecutive queries
        assert_eq!(query_offset(st, 1, 5), 64 + 4 + 1);
        assert_eq!(query_offset(st, 16, 64), (2 + 1) * TILE_BYTES);
    }
}
