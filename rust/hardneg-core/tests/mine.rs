//! Integration tests of the selection step against an explicit-loop reference, and of the
//! search + selection chain against brute force.

use hardneg_core::mine::rng::Rng;
use hardneg_core::mine::{select, Candidates, Sampling, SelectOptions, SelectStats};
use hardneg_core::{search, Exclusions, MatrixRef, SearchOptions};

/// Small deterministic generator for test data (not the sampler's stream).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn grid(&mut self, steps: u64) -> f32 {
        (self.below(2 * steps + 1) as f32 - steps as f32) / steps as f32
    }
}

/// One query, written as plainly as possible from the documented rules.
fn reference_row(scores: &[f32], ids: &[i64], p: f32, global_q: u64, o: &SelectOptions) -> (Vec<i64>, Vec<f32>, SelectStats) {
    let mut st = SelectStats { queries: 1, ..Default::default() };
    let mut cols: Vec<usize> = (0..ids.len()).filter(|&j| ids[j] != -1).collect();
    st.candidates = cols.len() as u64;
    // Insertion sort by (score desc, column asc): obviously stable.
    for i in 1..cols.len() {
        let mut j = i;
        while j > 0 && scores[cols[j - 1]] < scores[cols[j]] {
            cols.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut survivors = vec![];
    for &j in &cols {
        let s = scores[j];
        if o.absolute_margin.is_some_and(|m| s + m > p) {
            st.skipped_absolute_margin += 1;
        } else if o.relative_margin.is_some_and(|m| s > p - p.abs() * m) {
            st.skipped_relative_margin += 1;
        } else if o.max_score.is_some_and(|x| s > x) {
            st.skipped_max_score += 1;
        } else if o.min_score.is_some_and(|x| s < x) {
            st.skipped_min_score += 1;
        } else {
            survivors.push(j);
        }
    }
    let mut window = vec![];
    for (rank, &j) in survivors.iter().enumerate() {
        if rank < o.range_min {
            st.skipped_range_min += 1;
        } else if o.range_max.is_some_and(|hi| rank >= hi) {
            st.skipped_range_max += 1;
        } else {
            window.push(j);
        }
    }
    st.window = window.len() as u64;
    let (m, n) = (window.len(), o.num_negatives);
    let picks: Vec<usize> = if m <= n {
        (0..m).collect()
    } else {
        match o.sampling {
            Sampling::Top => (0..n).collect(),
            Sampling::Random => {
                let mut rng = Rng::for_query(o.seed, global_q);
                let mut pos: Vec<usize> = (0..m).collect();
                for i in 0..n {
                    let k = i + rng.below((m - i) as u64) as usize;
                    pos.swap(i, k);
                }
                let mut p = pos[..n].to_vec();
                p.sort();
                p
            }
            Sampling::Simans { a, b } => {
                let mut rng = Rng::for_query(o.seed, global_q);
                let mut keys: Vec<(f64, usize)> = window
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| {
                        let d = f64::from(scores[j]) - f64::from(p) - b;
                        (-a * d * d - (-rng.open01().ln()).ln(), i)
                    })
                    .collect();
                keys.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap().then(x.1.cmp(&y.1)));
                let mut p: Vec<usize> = keys[..n].iter().map(|k| k.1).collect();
                p.sort();
                p
            }
        }
    };
    let mut out_ids = vec![-1; n];
    let mut out_scores = vec![f32::NAN; n];
    for (slot, &i) in picks.iter().enumerate() {
        out_ids[slot] = ids[window[i]];
        out_scores[slot] = scores[window[i]];
    }
    if picks.len() < n {
        st.short_queries = 1;
        st.missing_negatives = (n - picks.len()) as u64;
        st.empty_queries = u64::from(picks.is_empty());
    }
    (out_ids, out_scores, st)
}

fn same_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn random_options(g: &mut Gen, width: usize) -> SelectOptions {
    let range_min = g.below(3) as usize;
    let range_max = if g.below(2) == 0 { None } else { Some(range_min + 1 + g.below(10) as usize) };
    let end = range_max.unwrap_or(usize::MAX).min(width);
    let (range_min, range_max, end) = if end <= range_min { (0, None, width) } else { (range_min, range_max, end) };
    let pick = |g: &mut Gen| if g.below(2) == 0 { None } else { Some([-0.25f32, 0.0, 0.05, 0.5][g.below(4) as usize]) };
    let (mut min_score, mut max_score) = (pick(g), pick(g));
    if let (Some(a), Some(b)) = (min_score, max_score) {
        if a > b {
            (min_score, max_score) = (Some(b), Some(a));
        }
    }
    SelectOptions {
        num_negatives: 1 + g.below((end - range_min) as u64) as usize,
        range_min,
        range_max,
        min_score,
        max_score,
        absolute_margin: pick(g),
        relative_margin: pick(g),
        sampling: match g.below(3) {
            0 => Sampling::Top,
            1 => Sampling::Random,
            _ => Sampling::Simans { a: [0.5, 4.0, 50.0][g.below(3) as usize], b: [0.0, -0.1, 0.2][g.below(3) as usize] },
        },
        seed: g.next() << 20 ^ g.next(),
    }
}

#[test]
fn select_matches_the_reference_for_every_mode_thread_count_and_split() {
    let mut g = Gen(42);
    for case in 0..400 {
        let rows = 1 + g.below(40) as usize;
        let width = 1 + g.below(25) as usize;
        let steps = [2u64, 8, 1000][g.below(3) as usize];
        let mut scores: Vec<f32> = (0..rows * width).map(|_| g.grid(steps)).collect();
        let ids: Vec<i64> = (0..rows * width).map(|i| if g.below(5) == 0 { -1 } else { i as i64 }).collect();
        if g.below(2) == 0 {
            for r in 0..rows {
                scores[r * width..(r + 1) * width].sort_by(|a, b| b.partial_cmp(a).unwrap());
            }
        }
        let pos: Vec<f32> = (0..rows).map(|_| g.grid(steps)).collect();
        let o = random_options(&mut g, width);
        let offset = g.below(1 << 40);
        let cands = Candidates::new(rows, width, &scores, &ids).unwrap();

        let mut want_ids = vec![];
        let mut want_scores = vec![];
        let mut want_stats = SelectStats::default();
        for r in 0..rows {
            let (i, s, st) = reference_row(&scores[r * width..(r + 1) * width], &ids[r * width..(r + 1) * width], pos[r], offset + r as u64, &o);
            want_ids.extend(i);
            want_scores.extend(s);
            want_stats.add(&st);
        }
        for threads in [1, 2, 3] {
            let got = select(cands, &pos, offset, &o, threads).unwrap();
            assert_eq!(got.ids, want_ids, "case {case} threads {threads} {o:?}");
            assert!(same_f32(&got.scores, &want_scores), "case {case}");
            assert_eq!(got.stats, want_stats, "case {case}");
        }
        // Any split into chunks, with the right offsets, gives the same rows.
        let cut = g.below(rows as u64 + 1) as usize;
        let a = select(Candidates::new(cut, width, &scores[..cut * width], &ids[..cut * width]).unwrap(), &pos[..cut], offset, &o, 1).unwrap();
        let b = select(Candidates::new(rows - cut, width, &scores[cut * width..], &ids[cut * width..]).unwrap(), &pos[cut..], offset + cut as u64, &o, 2)
            .unwrap();
        assert_eq!([a.ids, b.ids].concat(), want_ids, "case {case} split {cut}");
    }
}

#[test]
fn many_rows_use_threads_without_changing_the_result() {
    // Large enough to cross the threading threshold.
    let (rows, width) = (3000, 40);
    let mut g = Gen(7);
    let scores: Vec<f32> = (0..rows * width).map(|_| g.grid(50)).collect();
    let ids: Vec<i64> = (0..(rows * width) as i64).collect();
    let pos: Vec<f32> = (0..rows).map(|_| 0.3).collect();
    let o = SelectOptions { sampling: Sampling::Simans { a: 2.0, b: 0.0 }, relative_margin: Some(0.05), range_min: 2, seed: 99, ..SelectOptions::new(7) };
    let cands = Candidates::new(rows, width, &scores, &ids).unwrap();
    let one = select(cands, &pos, 0, &o, 1).unwrap();
    for t in [2, 4, 0] {
        assert_eq!(select(cands, &pos, 0, &o, t).unwrap(), one);
    }
    assert!(one.stats.window > 0 && one.stats.skipped_relative_margin > 0);
}

#[test]
fn search_then_select_equals_brute_force_mining() {
    let mut g = Gen(3);
    for case in 0..40 {
        let (nq, n, d) = (1 + g.below(9) as usize, 30 + g.below(150) as usize, 1 + g.below(12) as usize);
        let q: Vec<f32> = (0..nq * d).map(|_| g.grid(3)).collect(); // integer-like: many exact ties
        let c: Vec<f32> = (0..n * d).map(|_| g.grid(3)).collect();
        let positives: Vec<Vec<i64>> = (0..nq).map(|_| (0..1 + g.below(3)).map(|_| g.below(n as u64) as i64).collect()).collect();
        let ex = Exclusions::from_rows("exclude", &positives, n).unwrap();
        let mut o = random_options(&mut g, 25);
        let range_max = o.range_max.unwrap_or(o.range_min + o.num_negatives + 3);
        o.range_max = Some(range_max);
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let top = search(qm, cm, &SearchOptions { exclude: Some(&ex), ..SearchOptions::new(range_max) }).unwrap();
        let dot = |i: usize, j: usize| hardneg_core::pair_score(qm.row(i), cm.row(j), None);
        let pmin: Vec<f32> = positives.iter().enumerate().map(|(i, ps)| ps.iter().map(|&j| dot(i, j as usize)).fold(f32::INFINITY, f32::min)).collect();
        let got = select(Candidates::new(nq, range_max, &top.scores, &top.ids).unwrap(), &pmin, 0, &o, 2).unwrap();
        for i in 0..nq {
            // Brute force: every non-positive row, ranked by (score desc, id asc), first range_max.
            let mut all: Vec<(f32, i64)> = (0..n).filter(|j| !positives[i].contains(&(*j as i64))).map(|j| (dot(i, j), j as i64)).collect();
            all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
            all.truncate(range_max);
            let s: Vec<f32> = all.iter().map(|x| x.0).collect();
            let ids: Vec<i64> = all.iter().map(|x| x.1).collect();
            let (want, _, _) = reference_row(&s, &ids, pmin[i], i as u64, &o);
            let k = o.num_negatives;
            assert_eq!(&got.ids[i * k..(i + 1) * k], &want[..], "case {case} query {i}");
            for &id in &got.ids[i * k..(i + 1) * k] {
                assert!(id == -1 || !positives[i].contains(&id));
            }
        }
    }
}
