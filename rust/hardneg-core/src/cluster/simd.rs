//! Row kernels of the clustering: a dot product and a scaled row accumulation.
//!
//! Each function computes every result with the same instruction sequence whatever the thread or
//! block a row falls in, so clustering results depend only on the data and the seed (and on the
//! instruction set, which is fixed on a given machine).

use crate::topk::Isa;

/// `a . b`.
#[inline]
pub(crate) fn dot(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            // SAFETY: the caller only passes an Isa the CPU supports (Isa::detect).
            Isa::Avx512 => return unsafe { dot_avx512(a, b) },
            Isa::Avx2 => return unsafe { dot_avx2(a, b) },
            Isa::Scalar => {}
        }
    }
    let _ = isa;
    dot_scalar(a, b)
}

pub(crate) fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)), acc1);
        i += 32;
    }
    while i + 16 <= n {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
        i += 16;
    }
    if i < n {
        let m: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)), acc1);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
        i += 16;
    }
    let v = _mm256_add_ps(acc0, acc1);
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    while i < n {
        s = a[i].mul_add(b[i], s);
        i += 1;
    }
    s
}

/// `acc += s * x` with `acc` in f64.
#[inline]
pub(crate) fn axpy(isa: Isa, acc: &mut [f64], x: &[f32], s: f32) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: Avx512 and Avx2 both imply AVX2 support.
        unsafe { axpy_avx2(acc, x, s) };
        return;
    }
    let _ = isa;
    axpy_generic(acc, x, s);
}

#[inline(always)]
fn axpy_generic(acc: &mut [f64], x: &[f32], s: f32) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += f64::from(v * s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(acc: &mut [f64], x: &[f32], s: f32) {
    axpy_generic(acc, x, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_scalar() {
        for d in [1usize, 7, 16, 31, 33, 384] {
            let a: Vec<f32> = (0..d).map(|i| ((i * 7 % 11) as f32) / 11.0 - 0.4).collect();
            let b: Vec<f32> = (0..d).map(|i| ((i * 5 % 13) as f32) / 13.0 - 0.6).collect();
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            for isa in Isa::available() {
                let got = dot(isa, &a, &b);
                assert!((f64::from(got) - exact).abs() < 1e-4, "{isa:?} d={d}: {got} vs {exact}");
                let mut acc = vec![1.0f64; d];
                axpy(isa, &mut acc, &a, 2.0);
                for t in 0..d {
                    assert_eq!(acc[t], 1.0 + f64::from(a[t] * 2.0));
                }
            }
        }
    }
}
