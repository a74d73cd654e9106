//! The AMX scan with certified rescoring returns the float32 kernel's results bit for bit.
//!
//! On a machine without AMX tiles the forced AMX kernel must refuse with a typed error instead.

use hardneg_core::topk::amx;
use hardneg_core::topk::bf16::convert_rows;
use hardneg_core::topk::int8::quantize_rows;
use hardneg_core::topk::{Int8Rows, Stored};
use hardneg_core::{search, Bf16Rows, Error, Exclusions, Isa, Kernel, KernelCounter, MatrixRef, SearchOptions, TopK};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 2_000_001) as f32 / 1_000_000.0 - 1.0
    }
    fn normal(&mut self) -> f32 {
        // sum of uniforms: close enough to Gaussian for test data
        (0..4).map(|_| self.unit()).sum::<f32>() * 0.87
    }
}

/// Text-embedding-like rows: a shared mean direction, a few strong directions, outlier
/// dimensions, unit norm.
fn anisotropic(rng: &mut Lcg, n: usize, d: usize) -> Vec<f32> {
    let mean: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
    let dirs: Vec<Vec<f32>> = (0..8).map(|_| (0..d).map(|_| rng.normal()).collect()).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let w: Vec<f32> = (0..8).map(|i| rng.normal() / (1.0 + i as f32)).collect();
        let mut row: Vec<f32> = (0..d).map(|t| 0.8 * mean[t] + 0.3 * rng.normal() + (0..8).map(|i| w[i] * dirs[i][t]).sum::<f32>()).collect();
        row[0] *= 6.0;
        row[d / 2] *= 6.0;
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(row.iter().map(|x| x / norm));
    }
    out
}

fn f32_kernel(q: MatrixRef<'_>, c: MatrixRef<'_>, opts: &SearchOptions<'_>) -> TopK {
    search(q, c, &SearchOptions { kernel: Some(Isa::detect().into()), ..*opts }).unwrap()
}

fn assert_same(a: &TopK, b: &TopK, what: &str) {
    assert_eq!(a.ids, b.ids, "{what}: ids");
    let bits = |t: &TopK| t.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(a), bits(b), "{what}: scores");
}

#[test]
fn forced_amx_matches_the_f32_kernel_bit_for_bit() {
    if !amx::ready() {
        let v = vec![0.0f32; 4];
        let m = MatrixRef::new("q", &v, 1, 4).unwrap();
        let err = search(m, m, &SearchOptions { kernel: Some(Kernel::Amx), ..SearchOptions::new(1) }).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "kernel", .. }), "{err}");
        return;
    }
    let mut rng = Lcg(7);
    let counter = KernelCounter::new();
    // (queries, rows, dim, k): dimensions off 32, queries off 16, corpus tails off 32
    for &(nq, n, d, k) in &[(1, 1, 1, 1), (5, 70, 3, 4), (17, 333, 33, 10), (40, 1000, 100, 25), (33, 2049, 384, 100), (16, 600, 768, 7), (70, 3001, 65, 1)] {
        for aniso in [false, true] {
            let c: Vec<f32> = if aniso { anisotropic(&mut rng, n, d) } else { (0..n * d).map(|_| rng.unit()).collect() };
            let q: Vec<f32> = if aniso { anisotropic(&mut rng, nq, d) } else { (0..nq * d).map(|_| rng.unit()).collect() };
            let (qm, cm) = (MatrixRef::new("q", &q, nq, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
            let rows: Vec<Vec<i64>> = (0..nq).map(|i| (0..(i % 4)).map(|_| (rng.next() % n as u64) as i64).collect()).collect();
            let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
            let k = k.min(n - ex.max_row_len().0);
            let inv = hardneg_core::matrix::inverse_norms(cm, 2);
            let mut hb = vec![0u16; n * d];
            let resid = convert_rows(&c, d, &mut hb);
            let bf = Bf16Rows { data: &hb, residual: &resid };
            for (label, base) in [
                ("plain", SearchOptions::new(k)),
                ("exclude", SearchOptions { exclude: Some(&ex), ..SearchOptions::new(k) }),
                ("cosine", SearchOptions { row_scale: Some(&inv), exclude: Some(&ex), ..SearchOptions::new(k) }),
                ("bf16 stored", SearchOptions { stored: Some(Stored::Bf16(bf)), ..SearchOptions::new(k) }),
            ] {
                let want = f32_kernel(qm, cm, &base);
                for threads in [1, 2, 3] {
                    for (chunk, slice) in [(None, None), (Some(32), Some(32)), (Some(100), Some(70))] {
                        let o = SearchOptions { kernel: Some(Kernel::Amx), threads, chunk_rows: chunk, dim_slice: slice, counter: Some(&counter), ..base };
                        let got = search(qm, cm, &o).unwrap();
                        assert_same(&got, &want, &format!("{label} aniso={aniso} nq={nq} n={n} d={d} k={k} t={threads} chunk={chunk:?}"));
                    }
                }
            }
        }
    }
    // the certificates, not the fallbacks, produced (nearly) all of these results
    let s = counter.snapshot();
    eprintln!("{s:?}");
    assert!(s.amx_certified as f64 >= 0.95 * (s.amx_certified + s.amx_retried + s.amx_fallback) as f64, "{s:?}");
}

#[test]
fn ties_and_duplicate_rows_keep_the_lower_id() {
    if !amx::ready() {
        return;
    }
    let mut rng = Lcg(11);
    let (d, base_n) = (48, 150);
    // small integers: many exact ties; every row repeated three times
    let base: Vec<f32> = (0..base_n * d).map(|_| (rng.next() % 5) as f32 - 2.0).collect();
    let c: Vec<f32> = base.iter().chain(&base).chain(&base).copied().collect();
    let n = 3 * base_n;
    let q: Vec<f32> = (0..37 * d).map(|_| (rng.next() % 3) as f32 - 1.0).collect();
    let (qm, cm) = (MatrixRef::new("q", &q, 37, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
    for k in [1, 9, 60, n] {
        let want = f32_kernel(qm, cm, &SearchOptions::new(k));
        let got = search(qm, cm, &SearchOptions { kernel: Some(Kernel::Amx), ..SearchOptions::new(k) }).unwrap();
        assert_same(&got, &want, &format!("k={k}"));
    }
    // all rows identical: every score ties
    let same = vec![0.25f32; 500 * 8];
    let cm = MatrixRef::new("c", &same, 500, 8).unwrap();
    let q = vec![1.0f32; 40 * 8];
    let qm = MatrixRef::new("q", &q, 40, 8).unwrap();
    let got = search(qm, cm, &SearchOptions { kernel: Some(Kernel::Amx), ..SearchOptions::new(7) }).unwrap();
    assert!(got.ids.chunks(7).all(|r| r == [0, 1, 2, 3, 4, 5, 6]));
}

#[test]
fn failed_certificates_fall_back_to_the_same_results() {
    if !amx::ready() {
        return;
    }
    let mut rng = Lcg(5);
    let (nq, n, d, k) = (48, 4000, 64, 10);
    let c = anisotropic(&mut rng, n, d);
    let q = anisotropic(&mut rng, nq, d);
    let (qm, cm) = (MatrixRef::new("q", &q, nq, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
    let want = f32_kernel(qm, cm, &SearchOptions::new(k));
    // a bound a billion times too large: nothing certifies, both fallbacks run
    let counter = KernelCounter::new();
    let o = SearchOptions { kernel: Some(Kernel::Amx), bound_factor: 1e9, counter: Some(&counter), ..SearchOptions::new(k) };
    assert_same(&search(qm, cm, &o).unwrap(), &want, "bound x 1e9");
    let s = counter.snapshot();
    assert_eq!((s.amx_certified, s.amx_retried, s.amx_fallback), (0, 0, nq as u64), "{s:?}");
    // isotropic data (close scores), no over-fetch (k' = k) and an 8x bound, one thread: the
    // first pass certifies nothing, the retry with 4k candidates most, the float32 kernel the rest
    let d = 256;
    let c: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
    let q: Vec<f32> = (0..nq * d).map(|_| rng.normal()).collect();
    let (qm, cm) = (MatrixRef::new("q", &q, nq, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
    let want = f32_kernel(qm, cm, &SearchOptions::new(k));
    let counter = KernelCounter::new();
    let o = SearchOptions { kernel: Some(Kernel::Amx), overfetch: Some(k), threads: 1, counter: Some(&counter), bound_factor: 8.0, ..SearchOptions::new(k) };
    assert_same(&search(qm, cm, &o).unwrap(), &want, "overfetch = k");
    let s = counter.snapshot();
    assert!(s.amx_retried > 0 && s.amx_fallback > 0 && s.amx_certified + s.amx_retried + s.amx_fallback == nq as u64, "{s:?}");
    // values near the float32 limit: uncertifiable, answered by the float32 kernel
    let big: Vec<f32> = c.iter().map(|x| x * 1e19).collect();
    let bm = MatrixRef::new("c", &big, n, d).unwrap();
    let want = f32_kernel(qm, bm, &SearchOptions::new(k));
    let counter = KernelCounter::new();
    let got = search(qm, bm, &SearchOptions { kernel: Some(Kernel::Amx), counter: Some(&counter), ..SearchOptions::new(k) }).unwrap();
    assert_same(&got, &want, "huge values");
    assert_eq!(counter.snapshot().amx_fallback, nq as u64);
    assert!(matches!(
        search(qm, cm, &SearchOptions { kernel: Some(Kernel::Amx), bound_factor: 0.5, ..SearchOptions::new(k) }),
        Err(Error::InvalidParameter { name: "bound_factor", .. })
    ));
}

#[test]
fn short_rows_are_padded_like_the_f32_kernel() {
    if !amx::ready() {
        return;
    }
    let mut rng = Lcg(3);
    let (nq, n, d) = (40, 30, 20);
    let c: Vec<f32> = (0..n * d).map(|_| rng.unit()).collect();
    let q: Vec<f32> = (0..nq * d).map(|_| rng.unit()).collect();
    let (qm, cm) = (MatrixRef::new("q", &q, nq, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
    let rows: Vec<Vec<i64>> = (0..nq).map(|i| (0..(i % 7) as i64).collect()).collect();
    let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
    for k in [25, 30, 45] {
        let base = SearchOptions { exclude: Some(&ex), pad: true, ..SearchOptions::new(k) };
        let want = f32_kernel(qm, cm, &base);
        let got = search(qm, cm, &SearchOptions { kernel: Some(Kernel::Amx), ..base }).unwrap();
        assert_same(&got, &want, &format!("k={k}"));
        assert!(got.ids.contains(&-1));
    }
}

#[test]
fn int8_storage_is_approximate_with_exact_scores_and_high_recall() {
    if !amx::ready() {
        return;
    }
    let mut rng = Lcg(21);
    let (nq, n, d, k) = (50, 5000, 96, 10);
    let c = anisotropic(&mut rng, n, d);
    let q = anisotropic(&mut rng, nq, d);
    let (qm, cm) = (MatrixRef::new("q", &q, nq, d).unwrap(), MatrixRef::new("c", &c, n, d).unwrap());
    let mut c8 = vec![0i8; n * d];
    let scale = quantize_rows(&c, d, &mut c8);
    let want = f32_kernel(qm, cm, &SearchOptions::new(k));
    let counter = KernelCounter::new();
    for threads in [1, 2] {
        let o = SearchOptions { kernel: Some(Kernel::Amx), stored: Some(Stored::Int8(Int8Rows { data: &c8, scale: &scale })), threads, counter: Some(&counter), ..SearchOptions::new(k) };
        let got = search(qm, cm, &o).unwrap();
        // every returned score is the float32 kernels' score of that id, rows sorted
        let again = hardneg_core::score_ids(qm, cm, None, &got.ids, k).unwrap();
        assert_eq!(again.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), got.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let mut hits = 0;
        for i in 0..nq {
            let row = &want.ids[i * k..(i + 1) * k];
            hits += got.ids[i * k..(i + 1) * k].iter().filter(|id| row.contains(id)).count();
            assert!(got.scores[i * k..(i + 1) * k].windows(2).all(|w| w[0] >= w[1]));
        }
        let recall = hits as f64 / (nq * k) as f64;
        assert!(recall > 0.95, "int8 recall@{k} {recall}");
    }
    assert_eq!(counter.snapshot().approximate, 2 * nq as u64);
}
