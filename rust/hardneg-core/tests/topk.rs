//! Integration tests of the public top-k API against a brute-force scalar reference.

use hardneg_core::{pair_score, score_ids, search, Error, Exclusions, Isa, MatrixRef, SearchOptions};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 2001) as f32 / 1000.0 - 1.0
    }
}

fn brute(q: MatrixRef<'_>, c: MatrixRef<'_>, k: usize, ex: Option<&Exclusions>) -> (Vec<f32>, Vec<i64>) {
    let (mut s, mut ids) = (vec![], vec![]);
    for i in 0..q.rows() {
        let mut all: Vec<(f32, i64)> = (0..c.rows())
            .filter(|&j| !ex.is_some_and(|e| e.contains(i, j as u64)))
            .map(|j| (pair_score(q.row(i), c.row(j), None), j as i64))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        s.extend(all[..k].iter().map(|x| x.0));
        ids.extend(all[..k].iter().map(|x| x.1));
    }
    (s, ids)
}

#[test]
fn random_shapes_match_brute_force_for_every_kernel_and_thread_count() {
    let mut rng = Lcg(42);
    for case in 0..40 {
        let nq = 1 + (rng.next() % 30) as usize;
        let n = 1 + (rng.next() % 700) as usize;
        let d = 1 + (rng.next() % 90) as usize;
        let q: Vec<f32> = (0..nq * d).map(|_| rng.f32()).collect();
        let c: Vec<f32> = (0..n * d).map(|_| rng.f32()).collect();
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let rows: Vec<Vec<i64>> = (0..nq).map(|_| (0..rng.next() % 5).map(|_| (rng.next() % n as u64) as i64).collect()).collect();
        let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
        let k = 1 + (rng.next() as usize % (n - ex.max_row_len().0).max(1));
        if k > n - ex.max_row_len().0 {
            continue;
        }
        let (ws, wi) = brute(qm, cm, k, Some(&ex));
        for isa in Isa::available() {
            for threads in [1, 2, 4] {
                let top = search(qm, cm, &SearchOptions { exclude: Some(&ex), kernel: Some(isa.into()), threads, ..SearchOptions::new(k) }).unwrap();
                assert_eq!(top.ids, wi, "case {case} {isa:?} threads {threads}");
                assert_eq!(top.scores, ws, "case {case} {isa:?} threads {threads}");
            }
        }
        let again = score_ids(qm, cm, None, &wi, k).unwrap();
        assert_eq!(again, ws);
    }
}

#[test]
fn errors_do_not_panic() {
    let c = vec![1.0f32; 8];
    let cm = MatrixRef::new("corpus", &c, 4, 2).unwrap();
    let q = vec![f32::INFINITY, 0.0];
    let qm = MatrixRef::new("queries", &q, 1, 2).unwrap();
    assert_eq!(search(qm, cm, &SearchOptions::new(1)).unwrap_err(), Error::NonFinite { what: "queries", row: 0 });
    let ok = vec![1.0f32, 0.0];
    let om = MatrixRef::new("queries", &ok, 1, 2).unwrap();
    let scale = vec![1.0f32; 3];
    let opts = SearchOptions { row_scale: Some(&scale), ..SearchOptions::new(1) };
    assert!(matches!(search(om, cm, &opts), Err(Error::RowCountMismatch { what: "row_scale", .. })));
    assert!(matches!(Exclusions::from_csr("exclude", &[0, 2], &[0], 4), Err(Error::InvalidParameter { .. })));
}
