//! The inner product usearch's graph walk calls, on hardneg's SIMD kernels.
//!
//! Built without its optional SIMD library, usearch compares vectors with a portable loop that
//! the C++ compiler cannot vectorise (a float sum may not be reordered): one dependent add per
//! dimension, about 25 times slower than an AVX-512 dot product at 384 dimensions, and the graph
//! walk is nearly all distance calls. [`install`] hands usearch this module's kernels instead.
//!
//! Every kernel sums in one fixed order, so a graph is the same on every CPU: 64 lane sums
//! (lane `l` takes dimensions `t` with `t % 64 == l`, in order, each with one fused multiply-add),
//! folded as `(s[l] + s[16 + l]) + (s[32 + l] + s[48 + l])`, then halved 16 → 8 → 4 → 2 → 1 by
//! `s[l] + s[l + w]`. AVX-512 holds the 64 lanes in 4 registers, AVX2 in 8, the fallback in an
//! array; bfloat16 rows are widened to float32 exactly before the same sums.

use usearch::{f16, Distance, Index, ScalarKind};

use crate::topk::Isa;

const LANES: usize = 64;

/// `1 - a·b` for float32 rows of `dim` values (what usearch's `ip` metric returns).
type F32Dot = unsafe fn(*const f32, *const f32, usize) -> f32;
/// The same for bfloat16 rows (raw 16-bit patterns).
type Bf16Dot = unsafe fn(*const u16, *const u16, usize) -> f32;

/// Replaces usearch's metric of a float32 or bfloat16 index by [`dot_f32`] / [`dot_bf16`] on the
/// best instruction set of this CPU. Other storages keep usearch's own. Call it again after a
/// load or view: usearch restores its built-in metric from the file.
pub(super) fn install(index: &mut Index, dim: usize) {
    match index.scalar_kind() {
        ScalarKind::F32 => {
            let dot = f32_kernel(Isa::detect());
            // SAFETY: usearch passes two rows of `dim` float32 values.
            index.change_metric::<f32>(Box::new(move |a: *const f32, b: *const f32| -> Distance { 1.0 - unsafe { dot(a, b, dim) } }));
        }
        ScalarKind::BF16 => {
            let dot = bf16_kernel(Isa::detect());
            // usearch's Rust API has no bfloat16 vector type; its metric hook hands over the stored
            // bytes whatever the type, so the f16 entry point carries bfloat16 rows here.
            // SAFETY: usearch passes two rows of `dim` bfloat16 values.
            index.change_metric::<f16>(Box::new(move |a: *const f16, b: *const f16| -> Distance { 1.0 - unsafe { dot(a.cast(), b.cast(), dim) } }));
        }
        _ => {}
    }
}

fn f32_kernel(isa: Isa) -> F32Dot {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => dot_f32_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => dot_f32_avx2,
        _ => dot_f32_scalar,
    }
}

fn bf16_kernel(isa: Isa) -> Bf16Dot {
    match isa {
        // The masked 16-bit loads need AVX-512 BW and VL as well (every AVX-512 CPU since Skylake).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vl") => dot_bf16_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => dot_bf16_avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => dot_bf16_avx2,
        _ => dot_bf16_scalar,
    }
}

/// `a·b` of two float32 rows with `isa`'s kernel (the order of the module docs).
///
/// # Panics
/// If the slices differ in length or this CPU cannot run `isa`.
#[cfg(test)]
pub(super) fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "rows of different lengths");
    assert!(isa.is_supported(), "this CPU cannot run {}", isa.name());
    // SAFETY: both rows hold a.len() values and the CPU runs the kernel (checked above).
    unsafe { f32_kernel(isa)(a.as_ptr(), b.as_ptr(), a.len()) }
}

/// `a·b` of two bfloat16 rows (raw 16-bit patterns) with `isa`'s kernel.
///
/// # Panics
/// If the slices differ in length or this CPU cannot run `isa`.
#[cfg(test)]
pub(super) fn dot_bf16(isa: Isa, a: &[u16], b: &[u16]) -> f32 {
    assert_eq!(a.len(), b.len(), "rows of different lengths");
    assert!(isa.is_supported(), "this CPU cannot run {}", isa.name());
    // SAFETY: both rows hold a.len() values and the CPU runs the kernel (checked above).
    unsafe { bf16_kernel(isa)(a.as_ptr(), b.as_ptr(), a.len()) }
}

/// The fixed fold of 64 lane sums.
fn fold(acc: &[f32; LANES]) -> f32 {
    let mut s = [0.0f32; 16];
    for l in 0..16 {
        s[l] = (acc[l] + acc[16 + l]) + (acc[32 + l] + acc[48 + l]);
    }
    let mut w = 8;
    while w >= 1 {
        for l in 0..w {
            s[l] += s[l + w];
        }
        w /= 2;
    }
    s[0]
}

unsafe fn dot_f32_scalar(a: *const f32, b: *const f32, dim: usize) -> f32 {
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, dim), std::slice::from_raw_parts(b, dim)) };
    let mut acc = [0.0f32; LANES];
    for (t, (&x, &y)) in a.iter().zip(b).enumerate() {
        acc[t % LANES] = x.mul_add(y, acc[t % LANES]);
    }
    fold(&acc)
}

fn bf16_to_f32(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

unsafe fn dot_bf16_scalar(a: *const u16, b: *const u16, dim: usize) -> f32 {
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, dim), std::slice::from_raw_parts(b, dim)) };
    let mut acc = [0.0f32; LANES];
    for (t, (&x, &y)) in a.iter().zip(b).enumerate() {
        acc[t % LANES] = bf16_to_f32(x).mul_add(bf16_to_f32(y), acc[t % LANES]);
    }
    fold(&acc)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Lanes `l..l + 16` of a 64-lane block that exist when `rem` values are left (all when a
    /// whole block is).
    #[inline(always)]
    fn mask16(rem: usize, l: usize) -> u16 {
        let n = rem.saturating_sub(l).min(16);
        ((1u32 << n) - 1) as u16
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fold512(a: [__m512; 4]) -> f32 {
        let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        let s8 = _mm256_add_ps(_mm512_castps512_ps256(s), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s))));
        fold256(s8)
    }

    /// Halves 8 lane sums to one in the module's order.
    #[target_feature(enable = "avx")]
    unsafe fn fold256(s8: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_f32_avx512(a: *const f32, b: *const f32, dim: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut t = 0;
        while t + 64 <= dim {
            for (r, acc) in acc.iter_mut().enumerate() {
                let (x, y) = unsafe { (_mm512_loadu_ps(a.add(t + 16 * r)), _mm512_loadu_ps(b.add(t + 16 * r))) };
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
            t += 64;
        }
        if t < dim {
            let rem = dim - t;
            for (r, acc) in acc.iter_mut().enumerate() {
                let m = mask16(rem, 16 * r);
                if m != 0 {
                    let (x, y) = unsafe { (_mm512_maskz_loadu_ps(m, a.add(t + 16 * r)), _mm512_maskz_loadu_ps(m, b.add(t + 16 * r))) };
                    *acc = _mm512_fmadd_ps(x, y, *acc);
                }
            }
        }
        unsafe { fold512(acc) }
    }

    /// 16 bfloat16 values widened exactly to float32 (masked lanes read as 0).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn widen16(m: u16, p: *const u16) -> __m512 {
        let h = unsafe { _mm256_maskz_loadu_epi16(m, p as *const i16) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn dot_bf16_avx512(a: *const u16, b: *const u16, dim: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut t = 0;
        while t < dim {
            let rem = dim - t;
            for (r, acc) in acc.iter_mut().enumerate() {
                let m = mask16(rem, 16 * r);
                if m != 0 {
                    let (x, y) = unsafe { (widen16(m, a.add(t + 16 * r)), widen16(m, b.add(t + 16 * r))) };
                    *acc = _mm512_fmadd_ps(x, y, *acc);
                }
            }
            t += 64;
        }
        unsafe { fold512(acc) }
    }

    /// Lanes `l..l + 8` of a 64-lane block as a maskload mask.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn mask8(rem: usize, l: usize) -> __m256i {
        let n = rem.saturating_sub(l).min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn fold_avx2(a: [__m256; 8]) -> f32 {
        // Register j holds lanes 8j..8j+8: the 16-wide registers of AVX-512 are pairs (2i, 2i+1).
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[4], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[3]), _mm256_add_ps(a[5], a[7]));
        unsafe { fold256(_mm256_add_ps(lo, hi)) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_f32_avx2(a: *const f32, b: *const f32, dim: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut t = 0;
        while t + 64 <= dim {
            for (r, acc) in acc.iter_mut().enumerate() {
                let (x, y) = unsafe { (_mm256_loadu_ps(a.add(t + 8 * r)), _mm256_loadu_ps(b.add(t + 8 * r))) };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            t += 64;
        }
        if t < dim {
            let rem = dim - t;
            for (r, acc) in acc.iter_mut().enumerate() {
                if rem > 8 * r {
                    let m = unsafe { mask8(rem, 8 * r) };
                    let (x, y) = unsafe { (_mm256_maskload_ps(a.add(t + 8 * r), m), _mm256_maskload_ps(b.add(t + 8 * r), m)) };
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
            }
        }
        unsafe { fold_avx2(acc) }
    }

    /// 8 bfloat16 values widened to float32; `n` of them exist (the rest read as 0).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen8(n: usize, p: *const u16) -> __m256 {
        let h = if n >= 8 {
            unsafe { _mm_loadu_si128(p as *const __m128i) }
        } else {
            let mut buf = [0u16; 8];
            unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
            unsafe { _mm_loadu_si128(buf.as_ptr() as *const __m128i) }
        };
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_bf16_avx2(a: *const u16, b: *const u16, dim: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut t = 0;
        while t < dim {
            let rem = dim - t;
            for (r, acc) in acc.iter_mut().enumerate() {
                let n = rem.saturating_sub(8 * r).min(8);
                if n > 0 {
                    let (x, y) = unsafe { (widen8(n, a.add(t + 8 * r)), widen8(n, b.add(t + 8 * r))) };
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
            }
            t += 64;
        }
        unsafe { fold_avx2(acc) }
    }
}

#[cfg(target_arch = "x86_64")]
use x86::{dot_bf16_avx2, dot_bf16_avx512, dot_f32_avx2, dot_f32_avx512};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rng::Rng;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect()
    }

    fn to_bf16(v: &[f32]) -> Vec<u16> {
        v.iter().map(|x| (x.to_bits() >> 16) as u16).collect()
    }

    #[test]
    fn every_kernel_gives_the_same_bits_as_the_scalar_order() {
        for dim in [1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 128, 383, 384, 385, 768, 1000] {
            let (a, b) = (values(dim, dim as u64), values(dim, 1000 + dim as u64));
            let (ha, hb) = (to_bf16(&a), to_bf16(&b));
            let want = dot_f32(Isa::Scalar, &a, &b);
            let want16 = dot_bf16(Isa::Scalar, &ha, &hb);
            for isa in Isa::available() {
                assert_eq!(dot_f32(isa, &a, &b).to_bits(), want.to_bits(), "f32 dim {dim} {}", isa.name());
                assert_eq!(dot_bf16(isa, &ha, &hb).to_bits(), want16.to_bits(), "bf16 dim {dim} {}", isa.name());
            }
        }
    }

    #[test]
    fn kernels_are_inner_products() {
        for dim in [1, 5, 64, 384, 999] {
            let (a, b) = (values(dim, 7), values(dim, 8));
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = dot_f32(Isa::detect(), &a, &b) as f64;
            assert!((got - exact).abs() <= 1e-5 * (1.0 + exact.abs()), "dim {dim}: {got} vs {exact}");
            let (ha, hb) = (to_bf16(&a), to_bf16(&b));
            let exact16: f64 = ha.iter().zip(&hb).map(|(&x, &y)| bf16_to_f32(x) as f64 * bf16_to_f32(y) as f64).sum();
            let got16 = dot_bf16(Isa::detect(), &ha, &hb) as f64;
            assert!((got16 - exact16).abs() <= 1e-5 * (1.0 + exact16.abs()), "bf16 dim {dim}: {got16} vs {exact16}");
        }
        assert_eq!(dot_f32(Isa::detect(), &[], &[]), 0.0);
    }
}
