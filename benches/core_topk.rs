//! Criterion benchmarks of the core top-k engine (pure Rust, no Python).
//!
//!     cargo bench -p hardneg-core
//!
//! Reports throughput in corpus-row x query pairs; GFLOP/s = 2 * d * pairs/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hardneg_core::{search, Isa, MatrixRef, SearchOptions};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench_search(c: &mut Criterion) {
    let (n, d) = (100_000, 384);
    let corpus = data(n * d, 1);
    let cm = MatrixRef::new("corpus", &corpus, n, d).unwrap();
    let mut g = c.benchmark_group("search_100k_x_384");
    g.sample_size(10);
    for &nq in &[1usize, 16, 64, 512] {
        let q = data(nq * d, 2);
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        g.throughput(Throughput::Elements((nq * n) as u64));
        for isa in Isa::available() {
            if isa == Isa::Scalar && nq > 16 {
                continue;
            }
            g.bench_with_input(BenchmarkId::new(isa.name(), nq), &nq, |b, _| {
                b.iter(|| search(qm, cm, &SearchOptions { kernel: Some(isa.into()), ..SearchOptions::new(10) }).unwrap())
            });
        }
    }
    g.finish();
}

fn bench_k(c: &mut Criterion) {
    let (n, d, nq) = (100_000, 128, 256);
    let corpus = data(n * d, 3);
    let q = data(nq * d, 4);
    let cm = MatrixRef::new("corpus", &corpus, n, d).unwrap();
    let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
    let mut g = c.benchmark_group("search_k_100k_x_128_q256");
    g.sample_size(10);
    g.throughput(Throughput::Elements((nq * n) as u64));
    for &k in &[1usize, 10, 100, 1000] {
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| b.iter(|| search(qm, cm, &SearchOptions::new(k)).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench_search, bench_k);
criterion_main!(benches);
