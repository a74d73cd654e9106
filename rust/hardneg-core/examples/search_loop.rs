//! Runs one search shape in a loop, for profilers (`perf record`) and quick CPU-time checks.
//!
//!     cargo run --release -p hardneg-core --example search_loop -- N D Q K THREADS REPEATS [KC]

use hardneg_core::{search, MatrixRef, SearchOptions};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().expect("integer argument")).collect();
    let (n, d, nq, k, threads, repeats) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let kc = a.get(6).copied();
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
    let opts = SearchOptions { threads, dim_slice: kc, ..SearchOptions::new(k) };
    // Reference: one sequential pass over the corpus (a dot product with the first query).
    let mut bw = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        let mut acc = [0.0f32; 16];
        for row in c.chunks_exact(d) {
            for (i, x) in row.iter().enumerate() {
                acc[i & 15] += x * q[i];
            }
        }
        std::hint::black_box(acc);
        bw = bw.min(t.elapsed().as_secs_f64());
    }
    println!("sequential pass {:.1} ms, {:.1} GB/s", bw * 1e3, (n * d * 4) as f64 / bw / 1e9);
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(search(qm, cm, &opts).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("best {:.1} ms, {:.1} GFLOP/s, {:.1} GB/s", best * 1e3, 2.0 * (n * d * nq) as f64 / best / 1e9, (n * d * 4) as f64 / best / 1e9);
}
