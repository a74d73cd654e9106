//! Compares the kernels on one search shape, alternating runs so they see the same load.
//!
//!     cargo run --release -p hardneg-core --example compare_kernels -- N D Q K THREADS REPEATS

use hardneg_core::{search, Isa, Kernel, KernelCounter, MatrixRef, SearchOptions};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().expect("integer argument")).collect();
    let (n, d, nq, k, threads, repeats) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let mut s = 1u64;
    let mut gen = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    let c = gen(n * d);
    let q = gen(nq * d);
    let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
    let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
    let kernels = [Kernel::F32(Isa::detect()), Kernel::Amx];
    let mut best = [f64::MAX; 2];
    let counter = KernelCounter::new();
    for _ in 0..repeats {
        for (i, &kernel) in kernels.iter().enumerate() {
            let opts = SearchOptions { threads, kernel: Some(kernel), counter: Some(&counter), ..SearchOptions::new(k) };
            let t = Instant::now();
            std::hint::black_box(search(qm, cm, &opts).unwrap());
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    for (kernel, b) in kernels.iter().zip(best) {
        println!("{:>7}: best {:.1} ms, {:.1} GFLOP/s", kernel.name(), b * 1e3, 2.0 * (n * d * nq) as f64 / b / 1e9);
    }
    println!("{:?}", counter.snapshot());
}
