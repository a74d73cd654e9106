//! Integration tests of the selection step against an explicit-loop reference, and of the
//! search + selection chain against brute force.

use hardneg_core::mine::rng::Rng;
use hardneg_core::mine::{select, Candidates, MineOptions, Miner, PositiveMode, QueryChunk, Sampling, SelectOptions, SelectStats};
use hardneg_core::{search, Error, Exclusions, FlatIndex, IdRows, MatrixRef, Metric, SearchOptions};

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

/// Plain mining of one query: score every corpus row with the obvious loop, drop (Exclude) or
/// mask (Mask) positives, drop excluded ids, keep the `k` best by (score desc, id asc), pad, then
/// the reference selection against the lowest positive score.
#[allow(clippy::too_many_arguments)]
fn reference_mine_row(
    q: &[f32],
    c: MatrixRef<'_>,
    inv: Option<&[f32]>,
    positives: &[i64],
    exclude: &[i64],
    mode: PositiveMode,
    k: usize,
    global_q: u64,
    o: &SelectOptions,
) -> (Vec<i64>, Vec<f32>, Vec<f32>, SelectStats) {
    let score = |j: usize| hardneg_core::pair_score(q, c.row(j), inv.map(|s| s[j]));
    let is_pos = |j: usize| positives.contains(&(j as i64));
    let mut all: Vec<(f32, i64)> = (0..c.rows())
        .filter(|&j| !exclude.contains(&(j as i64)) && !(mode == PositiveMode::Exclude && is_pos(j)))
        .map(|j| (score(j), j as i64))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    let mut ids: Vec<i64> = all.iter().map(|&(_, j)| if mode == PositiveMode::Mask && is_pos(j as usize) { -1 } else { j }).collect();
    let mut scores: Vec<f32> = all.iter().map(|x| x.0).collect();
    ids.resize(k, -1);
    scores.resize(k, f32::NAN);
    let pos_scores: Vec<f32> = positives.iter().map(|&p| if p == -1 { f32::NAN } else { score(p as usize) }).collect();
    let pmin = pos_scores.iter().copied().filter(|s| !s.is_nan()).fold(f32::NAN, |m, s| if m.is_nan() || s < m { s } else { m });
    let (neg, neg_scores, st) = reference_row(&scores, &ids, pmin, global_q, o);
    (neg, neg_scores, pos_scores, st)
}

fn csr(rows: &[Vec<i64>]) -> (Vec<i64>, Vec<i64>) {
    let mut offsets = vec![0i64];
    let mut ids = vec![];
    for r in rows {
        ids.extend_from_slice(r);
        offsets.push(ids.len() as i64);
    }
    (offsets, ids)
}

#[test]
fn miner_equals_plain_mining_for_every_mode_metric_chunking_and_thread_count() {
    let mut g = Gen(11);
    for case in 0..150 {
        let (nq, n, d) = (1 + g.below(12) as usize, 3 + g.below(120) as usize, 1 + g.below(10) as usize);
        let steps = [3u64, 1000][g.below(2) as usize]; // coarse grid: many exact ties
        let q: Vec<f32> = (0..nq * d).map(|_| g.grid(steps)).collect();
        let c: Vec<f32> = (0..n * d).map(|_| g.grid(steps)).collect();
        // Positives with padding (-1) and duplicates; some queries without any.
        let mut positives: Vec<Vec<i64>> = (0..nq)
            .map(|_| (0..g.below(4)).map(|_| if g.below(5) == 0 { -1 } else { g.below(n as u64) as i64 }).collect())
            .collect();
        let exclude: Option<Vec<Vec<i64>>> =
            (g.below(2) == 0).then(|| (0..nq).map(|_| (0..g.below(2 + n as u64)).map(|_| g.below(n as u64) as i64).collect()).collect());
        let mode = [PositiveMode::Exclude, PositiveMode::Mask, PositiveMode::Keep][g.below(3) as usize];
        let metric = [Metric::InnerProduct, Metric::Cosine][g.below(2) as usize];
        let mut o = random_options(&mut g, 25);
        // Pools larger than some queries can fill (padding) happen often with these sizes.
        let range_max = o.range_max.unwrap_or(o.range_min + o.num_negatives + g.below(2 * n as u64) as usize);
        o.range_max = Some(range_max);
        let candidates = (g.below(3) == 0).then(|| range_max + g.below(4) as usize);
        let k = candidates.unwrap_or(range_max);
        if o.validate(Some(k)).is_err() {
            continue;
        }
        if o.needs_positive().is_some() {
            // Margins and SimANS measure from the lowest positive: every query needs one.
            for r in positives.iter_mut().filter(|r| r.iter().all(|&p| p == -1)) {
                r.push(g.below(n as u64) as i64);
            }
        }
        let width = positives.iter().map(Vec::len).max().unwrap_or(0) + g.below(2) as usize;
        let index = FlatIndex::new(c.as_slice(), n, d, metric, 1).unwrap();
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();

        let inv = (metric == Metric::Cosine).then(|| hardneg_core::matrix::inverse_norms(index.corpus(), 1));
        // With exclude_self, query i (global index offset + i) never gets corpus row offset + i.
        let exclude_self = nq <= n && g.below(3) == 0;
        let offset = if exclude_self { g.below((n - nq + 1) as u64) } else { g.below(1 << 30) };
        let mut want = (vec![], vec![], vec![f32::NAN; nq * width], SelectStats::default());
        for i in 0..nq {
            let mut qi = qm.row(i).to_vec();
            if metric == Metric::Cosine {
                hardneg_core::matrix::normalize_rows(&mut qi, d);
            }
            let mut ex = exclude.as_ref().map_or(vec![], |e| e[i].clone());
            if exclude_self {
                ex.push((offset + i as u64) as i64);
            }
            let (neg, s, ps, st) = reference_mine_row(&qi, index.corpus(), inv.as_deref(), &positives[i], &ex, mode, k, offset + i as u64, &o);
            want.0.extend(neg);
            want.1.extend(s);
            want.2[i * width..i * width + ps.len()].copy_from_slice(&ps);
            want.3.add(&st);
        }

        let (po, pi) = csr(&positives);
        let ex_csr = exclude.as_ref().map(|e| csr(e));
        for threads in [1, 2, 3] {
            let opts = MineOptions { select: o, candidates, positives: mode, exclude_self, positive_width: width, threads };
            let miner = Miner::new(&index, opts).unwrap();
            // Any cut into two chunks (offsets of the second one index the same id arrays).
            let cut = g.below(nq as u64 + 1) as usize;
            let mut got = (vec![], vec![], vec![], SelectStats::default());
            for (a, b) in [(0, cut), (cut, nq)] {
                if a == b {
                    continue;
                }
                let chunk = QueryChunk {
                    queries: MatrixRef::new("queries", &q[a * d..b * d], b - a, d).unwrap(),
                    positives: IdRows::new("positives", &po[a..=b], &pi).unwrap(),
                    exclude: ex_csr.as_ref().map(|(eo, ei)| IdRows::new("exclude", &eo[a..=b], ei).unwrap()),
                    query_offset: offset + a as u64,
                };
                let m = miner.mine(&chunk, None).unwrap();
                got.0.extend(m.negatives);
                got.1.extend(m.scores);
                got.2.extend(m.positive_scores);
                got.3.add(&m.stats);
                assert_eq!(m.positive_ids, IdRows::new("positives", &po[a..=b], &pi).unwrap().to_padded(width).unwrap());
            }
            assert_eq!(got.0, want.0, "case {case} threads {threads} cut {cut} {mode:?} {metric:?} self {exclude_self} {o:?}");
            assert!(same_f32(&got.1, &want.1), "case {case}");
            assert!(same_f32(&got.2, &want.2), "case {case}");
            assert_eq!(got.3, want.3, "case {case}");
        }
    }
}

#[test]
fn miner_rejects_bad_chunks_and_options_with_typed_errors() {
    let c = vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
    let index = FlatIndex::new(c, 3, 2, Metric::InnerProduct, 1).unwrap();
    let q = [1.0f32, 2.0];
    let qm = MatrixRef::new("queries", &q, 1, 2).unwrap();
    let none = MineOptions { select: SelectOptions { range_max: None, ..SelectOptions::new(1) }, ..MineOptions::new(1, 2, 1) };
    assert!(matches!(Miner::new(&index, none).err(), Some(Error::InvalidParameter { name: "range_max", .. })));
    assert!(matches!(Miner::new(&index, MineOptions::new(3, 2, 1)).err(), Some(Error::InvalidParameter { name: "num_negatives", .. })));
    let miner = Miner::new(&index, MineOptions::new(1, 2, 1)).unwrap();
    let (po, pi) = (vec![0i64, 1, 2], vec![0i64, 1]);
    let two_rows = QueryChunk { queries: qm, positives: IdRows::new("positives", &po, &pi).unwrap(), exclude: None, query_offset: 0 };
    assert!(matches!(miner.mine(&two_rows, None), Err(Error::RowCountMismatch { what: "positives", .. })));
    let bad_id = [7i64];
    let out_of_range = QueryChunk { positives: IdRows::new("positives", &po[..2], &bad_id).unwrap(), ..two_rows };
    assert!(matches!(miner.mine(&out_of_range, None), Err(Error::IdOutOfRange { what: "positives", id: 7, .. })));
    let wide = [0i64, 1];
    let too_wide = QueryChunk { positives: IdRows::new("positives", &[0, 2], &wide).unwrap(), ..two_rows };
    assert!(matches!(miner.mine(&too_wide, None), Err(Error::InvalidParameter { name: "positives", .. })));
    let ok = QueryChunk { positives: IdRows::new("positives", &po[..2], &pi).unwrap(), ..two_rows };
    let cancel = std::sync::atomic::AtomicBool::new(true);
    assert_eq!(miner.mine(&ok, Some(&cancel)), Err(Error::Cancelled));
    let got = miner.mine(&ok, None).unwrap();
    assert_eq!((got.negatives, got.positive_ids, got.positive_scores), (vec![2], vec![0], vec![1.0]));
}
