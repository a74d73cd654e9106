//! Integration tests of the public clustering and batch-planning API against plain references.

use hardneg_core::batchplan::{dense_keys, n_batches, plan_epoch, Packing, PlanOptions};
use hardneg_core::cluster::rng::Rng;
use hardneg_core::cluster::{balanced, kmeans, n_clusters_for_size, objective, ClusterOptions};
use hardneg_core::{Error, Isa, MatrixRef};

fn data(n: usize, d: usize, groups: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let centers: Vec<f32> = (0..groups * d).map(|_| rng.below(2001) as f32 / 1000.0 - 1.0).collect();
    let mut v = Vec::with_capacity(n * d);
    for _ in 0..n {
        let g = rng.below(groups);
        for t in 0..d {
            v.push(centers[g * d + t] + (rng.below(1001) as f32 / 1000.0 - 0.5) * 0.6);
        }
    }
    v
}

#[test]
fn balanced_sizes_objective_and_thread_independence() {
    let (n, d) = (20_011, 12);
    let v = data(n, d, 97, 1);
    let x = MatrixRef::new("x", &v, n, d).unwrap();
    let k = n_clusters_for_size(n, 64).unwrap();
    assert_eq!(k, 313);
    let mut o = ClusterOptions::new(k);
    o.threads = 1;
    let a = balanced(x, &o).unwrap();
    let mut sizes = vec![0usize; k];
    a.labels.iter().for_each(|&l| sizes[l as usize] += 1);
    assert_eq!(*sizes.iter().min().unwrap(), n / k);
    assert!(*sizes.iter().max().unwrap() <= n / k + 1);
    assert!((objective(x, &a.labels, k).unwrap() - a.objective).abs() < 1e-6);
    for threads in [2, 4] {
        o.threads = threads;
        assert_eq!(balanced(x, &o).unwrap(), a);
    }
    for isa in Isa::available() {
        o.isa = Some(isa);
        let b = balanced(x, &o).unwrap();
        let mut s = vec![0usize; k];
        b.labels.iter().for_each(|&l| s[l as usize] += 1);
        assert!(s.iter().all(|&c| c == n / k || c == n / k + 1), "{isa:?}");
    }
}

#[test]
fn kmeans_is_a_lloyd_fixed_point() {
    let (n, d, k) = (4000, 8, 12);
    let v = data(n, d, 12, 2);
    let x = MatrixRef::new("x", &v, n, d).unwrap();
    let mut o = ClusterOptions::new(k);
    o.iters = 300;
    o.tol = 0.0;
    let c = kmeans(x, &o).unwrap();
    // Centroids of the final labels, then a plain reassignment: nothing may move.
    let unit: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let r = &v[i * d..(i + 1) * d];
            let nr = r.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt();
            r.iter().map(|&a| f64::from(a) / nr).collect()
        })
        .collect();
    let mut cents = vec![vec![0.0f64; d]; k];
    for (i, &l) in c.labels.iter().enumerate() {
        for t in 0..d {
            cents[l as usize][t] += unit[i][t];
        }
    }
    let present: Vec<usize> = (0..k).filter(|&j| cents[j].iter().any(|&a| a != 0.0)).collect();
    for (i, &l) in c.labels.iter().enumerate() {
        let best = present
            .iter()
            .map(|&j| {
                let nc = cents[j].iter().map(|a| a * a).sum::<f64>().sqrt();
                (unit[i].iter().zip(&cents[j]).map(|(a, b)| a * b).sum::<f64>() / nc, j)
            })
            .fold((f64::NEG_INFINITY, 0), |acc, s| if s.0 > acc.0 + 1e-9 { s } else { acc });
        assert_eq!(best.1 as i64, l, "row {i}");
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let v = vec![1.0f32, 0.0, f32::NAN, 1.0];
    let x = MatrixRef::new("x", &v, 2, 2).unwrap();
    assert!(matches!(balanced(x, &ClusterOptions::new(1)), Err(Error::NonFinite { row: 1, .. })));
    let v = vec![1.0f32; 8];
    let x = MatrixRef::new("x", &v, 4, 2).unwrap();
    assert!(matches!(balanced(x, &ClusterOptions::new(5)), Err(Error::InvalidParameter { name: "n_clusters", .. })));
    assert!(matches!(kmeans(x, &ClusterOptions::new(0)), Err(Error::InvalidParameter { .. })));
    assert!(n_clusters_for_size(4, 0).is_err());
}

#[test]
fn plans_cover_rows_and_respect_keys() {
    let n = 10_007;
    let labels: Vec<i64> = (0..n as i64).map(|i| (i * 37) % 157).collect();
    let raw: Vec<u64> = (0..n as u64).map(|i| i % 3001).collect();
    let (keys, nk) = dense_keys(&raw);
    assert_eq!(nk, 3001);
    for packing in [Packing::WholeClusters, Packing::Lanes(2)] {
        for drop_last in [false, true] {
            for use_keys in [false, true] {
                let opts = PlanOptions {
                    batch_size: 100,
                    random_fraction: 0.1,
                    packing,
                    keys: use_keys.then_some(&keys[..]),
                    drop_last,
                    seed: 3,
                    epoch: 1,
                };
                let p = plan_epoch(&labels, 157, &opts).unwrap();
                assert_eq!(p.offsets.len() - 1, n_batches(n, 100, drop_last));
                let mut seen = vec![false; n];
                for &r in &p.rows {
                    assert!(!std::mem::replace(&mut seen[r as usize], true));
                }
                if !drop_last {
                    assert_eq!(p.rows.len() + p.dropped, n);
                }
                if use_keys {
                    for w in p.offsets.windows(2) {
                        let mut ks: Vec<u32> = p.rows[w[0] as usize..w[1] as usize].iter().map(|&r| keys[r as usize]).collect();
                        let len = ks.len();
                        ks.sort_unstable();
                        ks.dedup();
                        assert_eq!(ks.len(), len);
                    }
                }
                assert_eq!(plan_epoch(&labels, 157, &opts).unwrap(), p);
            }
        }
    }
}

#[test]
fn balanced_objective_is_close_to_unconstrained_kmeans() {
    // Groups of ~50 rows with clusters of 64: balanced clusters must cut groups. The refinement
    // (balanced k-means with auction assignment) keeps the loss from the size constraint small.
    let (n, d) = (20_000, 24);
    let v = data(n, d, n / 50, 9);
    let x = MatrixRef::new("x", &v, n, d).unwrap();
    let k = n_clusters_for_size(n, 64).unwrap();
    let mut o = ClusterOptions::new(k);
    o.iters = 10;
    let b = balanced(x, &o).unwrap();
    let u = kmeans(x, &o).unwrap();
    assert!(b.objective > 0.95 * u.objective, "balanced {} vs k-means {}", b.objective, u.objective);
}
