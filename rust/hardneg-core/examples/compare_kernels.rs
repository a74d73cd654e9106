//! Compares the float32 kernel with the AMX scan on one search shape, alternating runs so they
//! see the same machine load; extra `ROWS:DIMS` arguments add AMX runs with those chunk rows and
//! dimension slices (0 = default).
//!
//!     cargo run --release -p hardneg-core --example compare_kernels -- N D Q K THREADS REPEATS [ROWS:DIMS...]

use hardneg_core::synthetic::uniform;
use hardneg_core::{search, Isa, Kernel, KernelCounter, MatrixRef, SearchOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<usize> = args[..6].iter().map(|x| x.parse().expect("integer argument")).collect();
    let (n, d, nq, k, threads, repeats) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let opt = |x: &str| x.parse::<usize>().ok().filter(|&v| v > 0);
    let mut variants: Vec<(Kernel, Option<usize>, Option<usize>)> = vec![(Kernel::F32(Isa::detect()), None, None), (Kernel::Amx, None, None)];
    if std::env::var("ONLY_AMX").is_ok() {
        variants.remove(0);
    }
    for v in &args[6..] {
        let (r, s) = v.split_once(':').expect("ROWS:DIMS");
        variants.push((Kernel::Amx, opt(r), opt(s)));
    }
    let c = uniform(n * d, 1);
    let q = uniform(nq * d, 2);
    let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
    let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
    let mut best = vec![f64::MAX; variants.len()];
    let counter = KernelCounter::new();
    for _ in 0..repeats {
        for (i, &(kernel, chunk_rows, dim_slice)) in variants.iter().enumerate() {
            let opts = SearchOptions { threads, kernel: Some(kernel), chunk_rows, dim_slice, counter: Some(&counter), ..SearchOptions::new(k) };
            let t = Instant::now();
            std::hint::black_box(search(qm, cm, &opts).unwrap());
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    for ((kernel, r, s), b) in variants.iter().zip(best) {
        println!("{:>7} rows {:>5} dims {:>5}: best {:.1} ms, {:.1} GFLOP/s", kernel.name(), r.unwrap_or(0), s.unwrap_or(0), b * 1e3, 2.0 * (n * d * nq) as f64 / b / 1e9);
    }
    println!("{:?}", counter.snapshot());
}
