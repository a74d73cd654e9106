//! Runs one search shape in a loop, for profilers (`perf record`) and quick CPU-time checks.
//!
//!     cargo run --release -p hardneg-core --example search_loop -- N D Q K THREADS REPEATS [KC...]
//!
//! With several dimension-slice sizes KC (0 = the default), runs alternate between them so
//! the comparison sees the same machine load.

use hardneg_core::{search, MatrixRef, SearchOptions};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().expect("integer argument")).collect();
    let (n, d, nq, k, threads, repeats) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let kcs: Vec<Option<usize>> = if a.len() > 6 { a[6..].iter().map(|&x| (x > 0).then_some(x)).collect() } else { vec![None] };
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
    let mut best = vec![f64::MAX; kcs.len()];
    for _ in 0..repeats {
        for (i, &kc) in kcs.iter().enumerate() {
            let opts = SearchOptions { threads, dim_slice: kc, ..SearchOptions::new(k) };
            let t = Instant::now();
            std::hint::black_box(search(qm, cm, &opts).unwrap());
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    for (kc, b) in kcs.iter().zip(best) {
        println!("kc {:>5}: best {:.1} ms, {:.1} GFLOP/s, {:.1} GB/s", kc.map_or("auto".to_string(), |x| x.to_string()), b * 1e3, 2.0 * (n * d * nq) as f64 / b / 1e9, (n * d * 4) as f64 / b / 1e9);
    }
}
