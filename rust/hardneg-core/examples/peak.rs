//! Measures this machine's FP32 FMA peak (AVX-512 if present, else AVX2), per core and on all
//! cores, so benchmark reports can state the share of the real peak.
//!
//!     cargo run --release -p hardneg-core --example peak

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let b = _mm512_set1_ps(0.999_999);
    let c = _mm512_set1_ps(1e-7);
    let mut a = [_mm512_set1_ps(1.0); 16];
    for _ in 0..iters {
        for x in a.iter_mut() {
            *x = _mm512_fmadd_ps(*x, b, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for x in a {
        s = _mm512_add_ps(s, x);
    }
    _mm512_reduce_add_ps(s)
}

fn flops_per_iter() -> f64 {
    16.0 * 16.0 * 2.0
}

fn run(threads: usize) -> f64 {
    let iters = 50_000_000u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: guarded by runtime detection.
                    std::hint::black_box(unsafe { fma_loop_avx512(iters) });
                }
            });
        }
    });
    flops_per_iter() * iters as f64 * threads as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let one = (0..3).map(|_| run(1)).fold(0.0, f64::max);
    let all = (0..3).map(|_| run(cores)).fold(0.0, f64::max);
    println!("fp32 fma peak: {one:.1} GFLOP/s on 1 core, {all:.1} GFLOP/s on {cores} cores");
}
