//! Measures this machine's FP32 FMA peak (AVX-512 if present) and, where AMX tiles can run,
//! the bf16 tile peak (TDPBF16PS on four accumulators, operands in tile registers), per core and
//! on all cores, so benchmark reports can state the share of the real peak; and the AMX scan's
//! microkernel alone, on a chunk in L2.
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

/// AMX bf16 GFLOP/s on `threads` threads, or `None` where the tiles cannot run.
fn run_amx(threads: usize) -> Option<f64> {
    let iters = 2_000_000u64;
    let rates: Vec<Option<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| hardneg_core::topk::amx::peak_flops(iters))).collect();
        handles.into_iter().map(|h| h.join().expect("peak thread")).collect()
    });
    rates.into_iter().sum::<Option<f64>>().map(|f| f / 1e9)
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let one = (0..3).map(|_| run(1)).fold(0.0, f64::max);
    let all = (0..3).map(|_| run(cores)).fold(0.0, f64::max);
    println!("fp32 fma peak: {one:.1} GFLOP/s on 1 core, {all:.1} GFLOP/s on {cores} cores");
    match (0..3).map(|_| run_amx(1)).collect::<Option<Vec<f64>>>() {
        Some(v) => {
            let one = v.into_iter().fold(0.0, f64::max);
            let all = (0..3).filter_map(|_| run_amx(cores)).fold(0.0, f64::max);
            println!("amx bf16 peak: {one:.1} GFLOP/s on 1 core, {all:.1} GFLOP/s on {cores} cores");
            // The scan's 2 x 2 microkernel alone on one core: a 512-row chunk (L2) against 256
            // queries, d = 768 in slices of 256 dimensions, no epilogue.
            let micro = (0..3).filter_map(|_| hardneg_core::topk::amx::microkernel_flops(512, 768, 256, 8, 20)).fold(0.0, f64::max) / 1e9;
            println!("amx 2x2 microkernel (512 x 768 chunk in L2, 256 queries): {micro:.1} GFLOP/s on 1 core");
        }
        None => println!("amx bf16 peak: not available ({})", hardneg_core::topk::amx::status().describe()),
    }
}
