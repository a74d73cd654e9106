//! The int8 copy of the corpus that hardneg's graph walk scores against.
//!
//! A walk reads a few thousand rows per query in no order the caches can follow, so its time goes
//! into loading rows and multiplying them. One byte per value loads a quarter of float32's bytes
//! and VNNI (`vpdpbusd`) multiplies 64 bytes per instruction. Only the walk's ordering comes from
//! these codes: the walk's best candidates are rescored exactly in float32 before anything is
//! returned, so scores and margins stay [`crate::FlatIndex`]'s.
//!
//! Quantisation, per dimension: `c_d = max_i |x_id|` over the (cosine: normalised) corpus, row
//! codes `round(127 x_id / c_d) + 128` as unsigned bytes (ties to even). A query absorbs the
//! scales: `q'_d = q_d c_d`, quantised symmetrically to `round(127 q'_d / max|q'|)` as signed
//! bytes, so up to rounding `x·q` is one positive factor (the same for every row) times
//! `Σ_d code_d q_d - 128 Σ_d q_d`: the walk ranks by that integer. Integer sums are exact, so
//! every instruction set gives the same walk.

use crate::matrix::MatrixRef;
use crate::topk::Isa;

/// Bytes per line: rows and queries are padded to whole lines (padding codes 128, query 0).
const LINE: usize = 64;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Line([u8; LINE]);

/// `Σ q·code` of a query (signed) and four rows (unsigned), over `lines` lines.
type Dot4 = unsafe fn(*const u8, [*const u8; 4], usize) -> [i32; 4];
type Dot = unsafe fn(*const u8, *const u8, usize) -> i32;

/// A corpus as int8 codes, one row per `per_row` lines.
pub(super) struct Codes {
    lines: Vec<Line>,
    per_row: usize,
    /// max |x_d| of each dimension.
    col_max: Vec<f32>,
    dot: Dot,
    dot4: Dot4,
}

/// A query prepared for [`Codes`]: its codes and the constant its sums carry.
#[derive(Default)]
pub(super) struct CodeQuery {
    lines: Vec<Line>,
    offset: i32,
}

impl Codes {
    /// Quantises `rows` (scaled by `inv_norms` when given) on `threads` threads.
    pub(super) fn new(rows: MatrixRef<'_>, inv_norms: Option<&[f32]>, threads: usize) -> Codes {
        Codes::with_isa(rows, inv_norms, threads, Isa::detect())
    }

    pub(super) fn with_isa(
        rows: MatrixRef<'_>,
        inv_norms: Option<&[f32]>,
        threads: usize,
        isa: Isa,
    ) -> Codes {
        let (n, dim) = (rows.rows(), rows.dim());
        let per_row = dim.div_ceil(LINE).max(1);
        // 0 means every core, as everywhere in the crate (a clamp alone would make it one thread)
        let threads = crate::topk::resolve_threads(threads).clamp(1, n.max(1));
        let per = n.div_ceil(threads).max(1);
        let scale = |i: usize| inv_norms.map_or(1.0, |inv| inv[i]);
        // column maxima: per-thread, then combined (max is order-free)
        let parts: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .step_by(per)
                .map(|start| {
                    s.spawn(move || {
                        let mut m = vec![0.0f32; dim];
                        for i in start..(start + per).min(n) {
                            let sc = scale(i);
                            for (m, &x) in m.iter_mut().zip(rows.row(i)) {
                                *m = m.max((x * sc).abs());
                            }
                        }
                        m
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut col_max = vec![0.0f32; dim];
        for p in &parts {
            for (m, &x) in col_max.iter_mut().zip(p) {
                *m = m.max(x);
            }
        }
        let inv_col: Vec<f32> = col_max
            .iter()
            .map(|&c| if c > 0.0 { 127.0 / c } else { 0.0 })
            .collect();
        let mut lines = vec![Line([128; LINE]); n * per_row];
        std::thread::scope(|s| {
            for (c, chunk) in lines.chunks_mut(per * per_row).enumerate() {
                let inv_col = &inv_col;
                s.spawn(move || {
                    for (j, row) in chunk.chunks_mut(per_row).enumerate() {
                        let i = c * per + j;
                        let sc = scale(i);
                        for (t, (&x, &ic)) in rows.row(i).iter().zip(inv_col).enumerate() {
                            let v = round_even((x * sc * ic).clamp(-127.0, 127.0)) as i32;
                            row[t / LINE].0[t % LINE] = (v + 128) as u8;
                        }
                    }
                });
            }
        });
        let (dot, dot4) = kernels(isa);
        Codes {
            lines,
            per_row,
            col_max,
            dot,
            dot4,
        }
    }

    /// Rows coded.
    pub(super) fn rows(&self) -> usize {
        self.lines.len() / self.per_row
    }

    /// Bytes held by the codes.
    pub(super) fn bytes(&self) -> usize {
        self.lines.len() * LINE + self.col_max.len() * 4
    }

    /// Prepares the (cosine: normalised) float32 query `q` into `out`.
    pub(super) fn prepare(&self, q: &[f32], out: &mut CodeQuery) {
        out.lines.clear();
        out.lines.resize(self.per_row, Line([0; LINE]));
        let max = q
            .iter()
            .zip(&self.col_max)
            .fold(0.0f32, |m, (&x, &c)| m.max((x * c).abs()));
        let mut sum = 0i32;
        if max > 0.0 {
            let inv = 127.0 / max;
            for (t, (&x, &c)) in q.iter().zip(&self.col_max).enumerate() {
                let v = round_even((x * c * inv).clamp(-127.0, 127.0)) as i8;
                out.lines[t / LINE].0[t % LINE] = v as u8;
                sum += v as i32;
            }
        }
        out.offset = 128 * sum;
    }

    #[inline]
    fn row(&self, id: u32) -> *const u8 {
        self.lines[id as usize * self.per_row..].as_ptr().cast()
    }

    /// The walk's score of row `id`: a positive multiple of its inner product with the query.
    #[inline]
    pub(super) fn score(&self, q: &CodeQuery, id: u32) -> f32 {
        // SAFETY: the query and the row hold per_row lines; the kernel runs on this CPU.
        (unsafe { (self.dot)(q.lines.as_ptr().cast(), self.row(id), self.per_row) } - q.offset)
            as f32
    }

    /// [`Codes::score`] of four rows, their loads overlapping.
    #[inline]
    pub(super) fn score4(&self, q: &CodeQuery, ids: [u32; 4]) -> [f32; 4] {
        // SAFETY: the query and every row hold per_row lines; the kernel runs on this CPU.
        let s = unsafe {
            (self.dot4)(
                q.lines.as_ptr().cast(),
                ids.map(|id| self.row(id)),
                self.per_row,
            )
        };
        s.map(|s| (s - q.offset) as f32)
    }

    /// Asks for the first `lines` lines of row `id` ahead of its scoring.
    #[inline]
    pub(super) fn prefetch(&self, id: u32, lines: usize) {
        #[cfg(target_arch = "x86_64")]
        for l in 0..self.per_row.min(lines) {
            // SAFETY: prefetching reads nothing; the address lies inside the row.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    self.row(id).add(l * LINE).cast(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (id, lines);
    }
}

/// `x` rounded to the nearest integer, ties to even, for |x| <= 2^22: adding and removing
/// 1.5 * 2^23 leaves no fraction bits (`f32::round` is a library call per value without SSE4.1).
#[inline]
fn round_even(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x + SHIFT) - SHIFT
}

fn kernels(isa: Isa) -> (Dot, Dot4) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512vnni") => {
            (x86::dot_vnni, x86::dot4_vnni)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => (x86::dot_avx2, x86::dot4_avx2),
        _ => (dot_scalar, dot4_scalar),
    }
}

unsafe fn dot_scalar(q: *const u8, r: *const u8, lines: usize) -> i32 {
    // SAFETY: both hold `lines` lines (the caller's contract).
    let (q, r) = unsafe {
        (
            std::slice::from_raw_parts(q, lines * LINE),
            std::slice::from_raw_parts(r, lines * LINE),
        )
    };
    q.iter()
        .zip(r)
        .map(|(&a, &b)| a as i8 as i32 * b as i32)
        .sum()
}

unsafe fn dot4_scalar(q: *const u8, rows: [*const u8; 4], lines: usize) -> [i32; 4] {
    // SAFETY: forwarded contract.
    rows.map(|r| unsafe { dot_scalar(q, r, lines) })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LINE;

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn dot_vnni(q: *const u8, r: *const u8, lines: usize) -> i32 {
        let mut acc = _mm512_setzero_si512();
        for l in 0..lines {
            // SAFETY: both hold `lines` 64-byte aligned lines.
            let (x, y) = unsafe {
                (
                    _mm512_load_si512(q.add(l * LINE).cast()),
                    _mm512_load_si512(r.add(l * LINE).cast()),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, y, x);
        }
        _mm512_reduce_add_epi32(acc)
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn dot4_vnni(q: *const u8, rows: [*const u8; 4], lines: usize) -> [i32; 4] {
        let mut acc = [_mm512_setzero_si512(); 4];
        for l in 0..lines {
            // SAFETY: the query and the rows hold `lines` 64-byte aligned lines.
            let x = unsafe { _mm512_load_si512(q.add(l * LINE).cast()) };
            for (a, r) in acc.iter_mut().zip(&rows) {
                let y = unsafe { _mm512_load_si512(r.add(l * LINE).cast()) };
                *a = _mm512_dpbusd_epi32(*a, y, x);
            }
        }
        acc.map(|a| _mm512_reduce_add_epi32(a))
    }

    /// Widens to 16 bits and multiplies pairs (`vpmaddwd`): exact, unlike `vpmaddubsw`'s
    /// saturating 16-bit sums.
    #[target_feature(enable = "avx2")]
    unsafe fn line_avx2(acc: __m256i, q: *const u8, r: *const u8) -> __m256i {
        let mut acc = acc;
        for h in 0..4 {
            // SAFETY: 16 bytes at offsets 0, 16, 32, 48 of a line.
            let (x, y) = unsafe {
                (
                    _mm_loadu_si128(q.add(16 * h).cast()),
                    _mm_loadu_si128(r.add(16 * h).cast()),
                )
            };
            acc = _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepu8_epi16(y)),
            );
        }
        acc
    }

    #[target_feature(enable = "avx2")]
    unsafe fn hsum256(a: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(q: *const u8, r: *const u8, lines: usize) -> i32 {
        let mut acc = _mm256_setzero_si256();
        for l in 0..lines {
            // SAFETY: both hold `lines` lines.
            acc = unsafe { line_avx2(acc, q.add(l * LINE), r.add(l * LINE)) };
        }
        unsafe { hsum256(acc) }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot4_avx2(q: *const u8, rows: [*const u8; 4], lines: usize) -> [i32; 4] {
        // SAFETY: forwarded contract.
        rows.map(|r| unsafe { dot_avx2(q, r, lines) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::cluster::rng::Rng::new(seed);
        (0..n * d).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect()
    }

    /// The integer sum recomputed from the definitions with plain loops.
    fn reference(c: &[f32], q: &[f32], d: usize, id: usize) -> i64 {
        let n = c.len() / d;
        let col: Vec<f32> = (0..d)
            .map(|t| (0..n).map(|i| c[i * d + t].abs()).fold(0.0, f32::max))
            .collect();
        let code = |t: usize| {
            if col[t] > 0.0 {
                (c[id * d + t] * (127.0 / col[t]))
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i64
            } else {
                0
            }
        };
        let qmax = (0..d).map(|t| (q[t] * col[t]).abs()).fold(0.0, f32::max);
        let qc = |t: usize| {
            if qmax > 0.0 {
                (q[t] * col[t] * (127.0 / qmax))
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i64
            } else {
                0
            }
        };
        (0..d).map(|t| code(t) * qc(t)).sum()
    }

    #[test]
    fn every_instruction_set_gives_the_reference_sums() {
        for d in [1, 5, 63, 64, 65, 128, 384, 777] {
            let n = 37;
            let c = data(n, d, d as u64);
            let q = data(1, d, 99 + d as u64);
            let m = MatrixRef::new("c", &c, n, d).unwrap();
            for isa in Isa::available() {
                let codes = Codes::with_isa(m, None, 3, isa);
                let mut cq = CodeQuery::default();
                codes.prepare(&q, &mut cq);
                for id in 0..n as u32 {
                    let want = reference(&c, &q, d, id as usize) as f32;
                    assert_eq!(codes.score(&cq, id), want, "d {d} {} row {id}", isa.name());
                }
                for ids in [[0, 1, 2, 3], [36, 5, 5, 17]] {
                    assert_eq!(codes.score4(&cq, ids), ids.map(|id| codes.score(&cq, id)));
                }
            }
        }
    }

    #[test]
    fn rounding_ties_go_to_even() {
        for x in [-127.0f32, -2.5, -1.5, -0.5, -0.49999997, 0.0, 0.5, 0.50000006, 1.5, 2.5, 3.7, 126.5, 127.0] {
            assert_eq!(round_even(x) as i32, x.round_ties_even() as i32, "{x}");
        }
    }

    #[test]
    fn codes_rank_like_the_inner_product() {
        let (n, d) = (500, 96);
        let c = data(n, d, 1);
        let q = data(1, d, 2);
        let m = MatrixRef::new("c", &c, n, d).unwrap();
        let codes = Codes::new(m, None, 2);
        let mut cq = CodeQuery::default();
        codes.prepare(&q, &mut cq);
        let exact: Vec<f32> = (0..n)
            .map(|i| (0..d).map(|t| c[i * d + t] * q[t]).sum())
            .collect();
        let approx: Vec<f32> = (0..n as u32).map(|i| codes.score(&cq, i)).collect();
        // the best exact row is among the ten best by code, and the scale is one for all rows
        let best = (0..n)
            .max_by(|&a, &b| exact[a].total_cmp(&exact[b]))
            .unwrap();
        let better = approx.iter().filter(|&&s| s > approx[best]).count();
        assert!(better < 10, "{better} rows rank above the best");
        let ratio: Vec<f32> = (0..n)
            .filter(|&i| exact[i].abs() > 0.5)
            .map(|i| approx[i] / exact[i])
            .collect();
        let (lo, hi) = ratio
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        assert!(
            lo > 0.0 && hi / lo < 1.1,
            "one scale for all rows: {lo}..{hi}"
        );
    }

    #[test]
    fn cosine_rows_are_normalised_before_quantising() {
        let (n, d) = (20, 16);
        let c = data(n, d, 3);
        let m = MatrixRef::new("c", &c, n, d).unwrap();
        let inv: Vec<f32> = (0..n)
            .map(|i| {
                1.0 / c[i * d..(i + 1) * d]
                    .iter()
                    .map(|x| x * x)
                    .sum::<f32>()
                    .sqrt()
            })
            .collect();
        let scaled: Vec<f32> = (0..n * d).map(|j| c[j] * inv[j / d]).collect();
        let a = Codes::new(m, Some(&inv), 1);
        let b = Codes::new(MatrixRef::new("c", &scaled, n, d).unwrap(), None, 4);
        assert_eq!(a.col_max, b.col_max);
        assert!(a.lines.iter().zip(&b.lines).all(|(x, y)| x.0 == y.0));
    }
}
