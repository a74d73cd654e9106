//! Corrupted triples for knowledge-graph embedding training.
//!
//! For each input triple `(h, r, t)` and each of its `num_negatives` slots:
//!
//! 1. **Side.** Head or tail, fixed by the [`Mode`], or (mode `Both`) drawn per slot: the head
//!    with probability 1/2, or with the relation's Bernoulli probability `tph / (tph + hpt)`
//!    (Wang et al. 2014, TransH; [`TripleIndex::head_probability`]).
//! 2. **Entity.** Never the replaced entity itself and, when filtered, never one that makes a
//!    known triple. *Uniform*: the `j`-th free entity for `j` uniform in `0..free`, the excluded
//!    entities being the sorted known heads/tails of the triple plus its own ([`nth_free`]): exact,
//!    no rejection. *Cluster* (LEMON-style): uniform among the replaced entity's cluster-mates
//!    that are allowed (a few rejection tries, then the list of allowed mates); when the cluster
//!    has none, uniform over the allowed entities.
//!
//! When the drawn side has no allowed entity at all, mode `Both` uses the other side; a triple
//! with no allowed corruption on any side is an error naming it.
//!
//! **Hard corruptions** ([`Corruptor::hard`]): one side per triple (drawn as above), every
//! allowed entity scored by `query . entity` (the caller gives one query vector per triple and
//! side, e.g. `h * r` for DistMult's tails), candidates scoring above `true score - margin`
//! dropped as likely false negatives, and the best `num_negatives` kept: the exact search of
//! [`crate::search`] with the known entities excluded, widened until enough candidates pass.

use std::sync::atomic::AtomicBool;

use super::triples::{check_triples, Side, TripleIndex};
use super::{contains_sorted, nth_free, par_rows, zeroed_output, Streams};
use crate::error::{Error, Result};
use crate::exclude::Exclusions;
use crate::matrix::{check_finite, MatrixRef};
use crate::mine::rng::Rng;
use crate::topk::{pair_score, resolve_threads, search, Isa, Kernel, SearchOptions};

/// Which entities a corruption may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Always the head.
    Head,
    /// Always the tail.
    Tail,
    /// Head or tail, drawn per negative.
    Both,
}

/// How the side and the replacement entity are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Side 1/2 each, entity uniform.
    Uniform,
    /// Side by the relation's Bernoulli head probability, entity uniform.
    Bernoulli,
    /// Side 1/2 each, entity from the replaced entity's cluster.
    Cluster,
}

/// Entities grouped by cluster label.
#[derive(Clone, Debug)]
struct Clusters {
    label: Vec<u32>,
    offsets: Vec<usize>,
    members: Vec<u32>,
}

impl Clusters {
    fn new(labels: &[i64], num_entities: usize) -> Result<Self> {
        if labels.len() != num_entities {
            return Err(Error::param("clusters", format!("has {} labels but there are {num_entities} entities; give one label per entity", labels.len())));
        }
        if let Some(i) = labels.iter().position(|&l| l < 0 || l as u64 >= num_entities as u64) {
            return Err(Error::OutOfRange { what: "cluster label", position: i, id: labels[i], n: num_entities, fix: "use labels 0..num_entities (hardneg.cluster's output)" });
        }
        let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
        let (offsets, members) = crate::cluster::rows_by_cluster(labels, k);
        Ok(Clusters { label: labels.iter().map(|&l| l as u32).collect(), offsets, members })
    }

    /// The (sorted) entities of `e`'s cluster, `e` included.
    #[inline]
    fn mates(&self, e: u32) -> &[u32] {
        let c = self.label[e as usize] as usize;
        &self.members[self.offsets[c]..self.offsets[c + 1]]
    }
}

/// Options of [`Corruptor::corrupt`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CorruptOptions {
    /// Corruptions per triple (`>= 1`).
    pub num_negatives: usize,
    /// Seed, epoch and row offset of the random streams.
    pub streams: Streams,
    /// Worker threads (0 = every core).
    pub threads: usize,
}

/// Options of [`Corruptor::hard`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardCorruptOptions {
    /// Corruptions per triple (`>= 1`).
    pub num_negatives: usize,
    /// Drop candidates whose `score + margin` exceeds the true triple's score.
    pub margin: Option<f32>,
    /// Seed, epoch and row offset of the side draws.
    pub streams: Streams,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Force an instruction set for the search (tests); `None` picks the best.
    pub isa: Option<Isa>,
}

/// Per-row buffers: the excluded entities of each side (known ones plus the triple's own, sorted)
/// and, for the cluster strategy, the allowed cluster-mates.
#[derive(Default)]
struct Scratch {
    excluded: [Vec<u32>; 2],
    excluded_ready: [bool; 2],
    mates: [Vec<u32>; 2],
    mates_ready: [bool; 2],
}

#[inline]
fn slot(side: Side) -> usize {
    match side {
        Side::Head => 0,
        Side::Tail => 1,
    }
}

#[inline]
fn other(side: Side) -> Side {
    match side {
        Side::Head => Side::Tail,
        Side::Tail => Side::Head,
    }
}

/// Draws corrupted triples; see the module documentation.
#[derive(Clone, Debug)]
pub struct Corruptor {
    index: TripleIndex,
    mode: Mode,
    strategy: Strategy,
    filtered: bool,
    clusters: Option<Clusters>,
}

impl Corruptor {
    /// A corruptor over the known triples of `index`. `cluster_labels` (one per entity) is needed
    /// by, and only by, [`Strategy::Cluster`].
    pub fn new(index: TripleIndex, mode: Mode, strategy: Strategy, filtered: bool, cluster_labels: Option<&[i64]>) -> Result<Self> {
        if strategy == Strategy::Bernoulli && mode != Mode::Both {
            return Err(Error::param("strategy", "strategy='bernoulli' chooses between the head and the tail per relation; use it with mode='both'"));
        }
        let clusters = match (strategy, cluster_labels) {
            (Strategy::Cluster, Some(labels)) => Some(Clusters::new(labels, index.num_entities())?),
            (Strategy::Cluster, None) => return Err(Error::param("clusters", "strategy='cluster' needs a cluster label per entity")),
            (_, Some(_)) => return Err(Error::param("clusters", "cluster labels are only used by strategy='cluster'")),
            (_, None) => None,
        };
        Ok(Corruptor { index, mode, strategy, filtered, clusters })
    }

    /// The known triples.
    pub fn index(&self) -> &TripleIndex {
        &self.index
    }

    /// Range checks, and Bernoulli statistics for every relation used.
    fn check_input(&self, triples: &[i64]) -> Result<()> {
        check_triples(triples, self.index.num_entities(), self.index.num_relations())?;
        if self.strategy == Strategy::Bernoulli {
            let p = self.index.head_probability();
            if let Some((row, t)) = triples.chunks_exact(3).enumerate().find(|(_, t)| p[t[1] as usize].is_nan()) {
                return Err(Error::param(
                    "triples",
                    format!(
                        "triple {row} has relation {}, which has no known triple, so its Bernoulli head probability is undefined; \
                         add triples of relation {} to the corruptor's triples or use strategy='uniform'",
                        t[1], t[1]
                    ),
                ));
            }
        }
        Ok(())
    }

    #[inline]
    fn choose_side(&self, r: u32, rng: &mut Rng) -> Side {
        match self.mode {
            Mode::Head => Side::Head,
            Mode::Tail => Side::Tail,
            Mode::Both => {
                let p = if self.strategy == Strategy::Bernoulli { self.index.head_probability()[r as usize] } else { 0.5 };
                if rng.open01() < p {
                    Side::Head
                } else {
                    Side::Tail
                }
            }
        }
    }

    /// The sorted entities `side` of `(h, r, t)` must avoid: its own, and the known ones when filtered.
    fn fill_excluded(&self, h: u32, r: u32, t: u32, side: Side, out: &mut Vec<u32>) {
        out.clear();
        if self.filtered {
            out.extend_from_slice(self.index.known(h, r, t, side));
        }
        let own = if side == Side::Head { h } else { t };
        if let Err(at) = out.binary_search(&own) {
            out.insert(at, own);
        }
    }

    fn no_corruption(&self, row: usize, h: u32, r: u32, t: u32) -> Error {
        let (what, hint) = match self.mode {
            Mode::Head => ("head", ", or use mode='both'"),
            Mode::Tail => ("tail", ", or use mode='both'"),
            Mode::Both => ("head and a known tail", ""),
        };
        Error::param(
            "triples",
            format!("triple {row} ({h}, {r}, {t}) has no corruption: every entity is a known {what} of it, so any replacement is a known triple; drop that triple{hint}"),
        )
    }

    /// One allowed entity for `side` of `(h, r, t)`, or `None` when there is none.
    fn draw_entity(&self, h: u32, r: u32, t: u32, side: Side, rng: &mut Rng, s: &mut Scratch) -> Option<u32> {
        let i = slot(side);
        if !s.excluded_ready[i] {
            self.fill_excluded(h, r, t, side, &mut s.excluded[i]);
            s.excluded_ready[i] = true;
        }
        let excluded = &s.excluded[i];
        if let Some(c) = &self.clusters {
            let mates = c.mates(if side == Side::Head { h } else { t });
            if !s.mates_ready[i] {
                // Rejection first: most cluster-mates are allowed.
                for _ in 0..16 {
                    let e = mates[rng.below(mates.len() as u64) as usize];
                    if !contains_sorted(excluded, e) {
                        return Some(e);
                    }
                }
                s.mates[i].clear();
                s.mates[i].extend(mates.iter().copied().filter(|&e| !contains_sorted(excluded, e)));
                s.mates_ready[i] = true;
            }
            if !s.mates[i].is_empty() {
                return Some(s.mates[i][rng.below(s.mates[i].len() as u64) as usize]);
            }
        }
        let free = (self.index.num_entities() - excluded.len()) as u64;
        (free > 0).then(|| nth_free(excluded, rng.below(free)) as u32)
    }

    /// `num_negatives` corruptions per triple: row-major `[rows, num_negatives, 3]` `(h, r, t)`.
    pub fn corrupt(&self, triples: &[i64], opts: &CorruptOptions, cancel: Option<&AtomicBool>) -> Result<Vec<i64>> {
        let n = opts.num_negatives;
        if n < 1 {
            return Err(Error::param("num_negatives", "num_negatives must be at least 1"));
        }
        self.check_input(triples)?;
        let mut out = zeroed_output(triples.len() * n);
        par_rows(&mut out, 3 * n, opts.threads, cancel, |row, o: &mut [i64], s: &mut Scratch| {
            let (h, r, t) = (triples[3 * row] as u32, triples[3 * row + 1] as u32, triples[3 * row + 2] as u32);
            let mut rng = opts.streams.rng(row);
            s.excluded_ready = [false; 2];
            s.mates_ready = [false; 2];
            for o in o.chunks_exact_mut(3) {
                let first = self.choose_side(r, &mut rng);
                let drawn = match self.draw_entity(h, r, t, first, &mut rng, s) {
                    Some(e) => Some((first, e)),
                    None if self.mode == Mode::Both => self.draw_entity(h, r, t, other(first), &mut rng, s).map(|e| (other(first), e)),
                    None => None,
                };
                let Some((side, e)) = drawn else {
                    return Err(self.no_corruption(row, h, r, t));
                };
                let (ch, ct) = if side == Side::Head { (e, t) } else { (h, e) };
                o.copy_from_slice(&[i64::from(ch), i64::from(r), i64::from(ct)]);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The highest-scoring allowed corruptions: row-major `[rows, num_negatives, 3]`, each row by
    /// descending score. `head_queries` / `tail_queries` (`[rows, d]`) score candidate heads /
    /// tails as `query . entities[e]`; the ones the mode can use are required.
    pub fn hard(
        &self,
        triples: &[i64],
        entities: MatrixRef<'_>,
        head_queries: Option<MatrixRef<'_>>,
        tail_queries: Option<MatrixRef<'_>>,
        opts: &HardCorruptOptions,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<i64>> {
        let n = opts.num_negatives;
        if n < 1 {
            return Err(Error::param("num_negatives", "num_negatives must be at least 1"));
        }
        self.check_input(triples)?;
        let rows = triples.len() / 3;
        let num_entities = self.index.num_entities();
        if entities.rows() != num_entities {
            return Err(Error::param("entity_embeddings", format!("has {} rows but there are {num_entities} entities; give one row per entity", entities.rows())));
        }
        if let Some(m) = opts.margin {
            if !m.is_finite() {
                return Err(Error::param("false_negative_margin", format!("false_negative_margin must be a finite number, got {m}")));
            }
        }
        let threads = resolve_threads(opts.threads);
        check_finite("entity_embeddings", entities, threads)?;
        for (side, q, name) in [(Side::Head, head_queries, "head_queries"), (Side::Tail, tail_queries, "tail_queries")] {
            let used = matches!((self.mode, side), (Mode::Both, _) | (Mode::Head, Side::Head) | (Mode::Tail, Side::Tail));
            match q {
                None if used => {
                    let what = if side == Side::Head { "heads" } else { "tails" };
                    return Err(Error::param(name, format!("this corruptor replaces {what}, so {name} (one query vector per triple) is needed")));
                }
                Some(q) => {
                    if q.rows() != rows {
                        return Err(Error::RowCountMismatch { what: name, expected: rows, got: q.rows() });
                    }
                    if q.dim() != entities.dim() {
                        return Err(Error::DimensionMismatch { what: name, expected: entities.dim(), got: q.dim() });
                    }
                    check_finite(name, q, threads)?;
                }
                None => {}
            }
        }
        let sides: Vec<Side> = triples.chunks_exact(3).enumerate().map(|(row, t)| self.choose_side(t[1] as u32, &mut opts.streams.rng(row))).collect();
        let mut out = vec![0i64; rows * n * 3];
        for side in [Side::Head, Side::Tail] {
            let Some(queries) = (if side == Side::Head { head_queries } else { tail_queries }) else { continue };
            let picked: Vec<usize> = (0..rows).filter(|&row| sides[row] == side).collect();
            self.hard_side(triples, entities, queries, side, &picked, opts, threads, cancel, &mut out)?;
        }
        Ok(out)
    }

    /// [`Corruptor::hard`] for the triples `picked` whose corrupted side is `side`.
    #[allow(clippy::too_many_arguments)]
    fn hard_side(
        &self,
        triples: &[i64],
        entities: MatrixRef<'_>,
        queries: MatrixRef<'_>,
        side: Side,
        picked: &[usize],
        opts: &HardCorruptOptions,
        threads: usize,
        cancel: Option<&AtomicBool>,
        out: &mut [i64],
    ) -> Result<()> {
        let n = opts.num_negatives;
        let num_entities = self.index.num_entities();
        let triple = |row: usize| (triples[3 * row] as u32, triples[3 * row + 1] as u32, triples[3 * row + 2] as u32);
        let mut excluded: Vec<Vec<u32>> = Vec::with_capacity(picked.len());
        let mut true_score = Vec::with_capacity(picked.len());
        for &row in picked {
            let (h, r, t) = triple(row);
            let mut ex = Vec::new();
            self.fill_excluded(h, r, t, side, &mut ex);
            if num_entities - ex.len() < n {
                return Err(Error::param(
                    "num_negatives",
                    format!("num_negatives={n}, but triple {row} ({h}, {r}, {t}) has only {} allowed corruptions of its {side:?}; lower num_negatives", num_entities - ex.len()),
                ));
            }
            excluded.push(ex);
            let own = if side == Side::Head { h } else { t };
            true_score.push(pair_score(queries.row(row), entities.row(own as usize), None));
        }
        // Indices into `picked` still short of n candidates, and the search width of this round.
        let mut pending: Vec<usize> = (0..picked.len()).collect();
        let mut k = if opts.margin.is_some() { (2 * n).max(n + 16) } else { n };
        while !pending.is_empty() {
            let most = pending.iter().map(|&j| excluded[j].len()).max().unwrap_or(0);
            k = k.min(num_entities - most);
            let d = queries.dim();
            let mut qbuf = Vec::with_capacity(pending.len() * d);
            for &j in &pending {
                qbuf.extend_from_slice(queries.row(picked[j]));
            }
            let qm = MatrixRef::new("queries", &qbuf, pending.len(), d)?;
            let ex = Exclusions::from_sorted_rows(pending.iter().map(|&j| excluded[j].as_slice()));
            let top = search(qm, entities, &SearchOptions { exclude: Some(&ex), threads, cancel, kernel: opts.isa.map(Kernel::from), ..SearchOptions::new(k) })?;
            let mut still = Vec::new();
            for (i, &j) in pending.iter().enumerate() {
                let row = picked[j];
                let (h, r, t) = triple(row);
                let kept: Vec<u32> = (0..k)
                    .filter(|&c| opts.margin.is_none_or(|m| top.scores[i * k + c] + m <= true_score[j]))
                    .map(|c| top.ids[i * k + c] as u32)
                    .take(n)
                    .collect();
                if kept.len() == n {
                    for (o, &e) in out[row * n * 3..(row + 1) * n * 3].chunks_exact_mut(3).zip(&kept) {
                        let (ch, ct) = if side == Side::Head { (e, t) } else { (h, e) };
                        o.copy_from_slice(&[i64::from(ch), i64::from(r), i64::from(ct)]);
                    }
                } else if k >= num_entities - excluded[j].len() {
                    return Err(Error::param(
                        "false_negative_margin",
                        format!(
                            "triple {row} ({h}, {r}, {t}) has only {} allowed corruptions scoring at least false_negative_margin={} below it; \
                             lower false_negative_margin or num_negatives",
                            kept.len(),
                            opts.margin.unwrap_or(0.0)
                        ),
                    ));
                } else {
                    still.push(j);
                }
            }
            pending = still;
            k = k.saturating_mul(4);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 6 entities; relation 0 is 1-to-N (0 -> 1, 2, 3), relation 1 is N-to-1 (3, 4, 5 -> 0).
    fn index() -> TripleIndex {
        TripleIndex::new(&[0, 0, 1, 0, 0, 2, 0, 0, 3, 3, 1, 0, 4, 1, 0, 5, 1, 0], 6, 2).unwrap()
    }

    fn opts(n: usize, seed: u64) -> CorruptOptions {
        CorruptOptions { num_negatives: n, streams: Streams { seed, epoch: 0, offset: 0 }, threads: 1 }
    }

    #[test]
    fn filtered_corruptions_are_never_known_and_never_the_triple() {
        let ix = index();
        for mode in [Mode::Head, Mode::Tail, Mode::Both] {
            for strategy in [Strategy::Uniform, Strategy::Bernoulli, Strategy::Cluster] {
                if strategy == Strategy::Bernoulli && mode != Mode::Both {
                    continue;
                }
                let labels = [0i64, 0, 1, 1, 2, 2];
                let c = Corruptor::new(ix.clone(), mode, strategy, true, (strategy == Strategy::Cluster).then_some(&labels[..])).unwrap();
                let input = [0i64, 0, 1, 4, 1, 0, 2, 0, 5];
                for seed in 0..40 {
                    let out = c.corrupt(&input, &opts(8, seed), None).unwrap();
                    for (row, slots) in out.chunks_exact(24).enumerate() {
                        let t = &input[3 * row..3 * row + 3];
                        for x in slots.chunks_exact(3) {
                            assert!(!ix.contains(x[0] as u32, x[1] as u32, x[2] as u32), "{mode:?} {strategy:?} {x:?}");
                            assert_ne!(x, t);
                            assert_eq!(x[1], t[1]);
                            assert!(x[0] == t[0] || x[2] == t[2]);
                            match mode {
                                Mode::Head => assert_eq!(x[2], t[2]),
                                Mode::Tail => assert_eq!(x[0], t[0]),
                                Mode::Both => {}
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exhausted_sides_switch_or_fail() {
        // every entity is a known tail of (0, 0, ?): tail corruption is impossible.
        let t: Vec<i64> = (0..6).flat_map(|e| [0, 0, e]).collect();
        let ix = TripleIndex::new(&t, 6, 1).unwrap();
        let tail = Corruptor::new(ix.clone(), Mode::Tail, Strategy::Uniform, true, None).unwrap();
        let err = tail.corrupt(&[0, 0, 1], &opts(1, 0), None).unwrap_err();
        assert!(err.to_string().contains("triple 0 (0, 0, 1) has no corruption"), "{err}");
        let both = Corruptor::new(ix.clone(), Mode::Both, Strategy::Uniform, true, None).unwrap();
        let out = both.corrupt(&[0, 0, 1], &opts(50, 0), None).unwrap();
        assert!(out.chunks_exact(3).all(|x| x[2] == 1 && x[0] != 0));
        // unfiltered: any other entity
        let loose = Corruptor::new(ix, Mode::Tail, Strategy::Uniform, false, None).unwrap();
        assert!(loose.corrupt(&[0, 0, 1], &opts(50, 0), None).unwrap().chunks_exact(3).all(|x| x[2] != 1));
    }

    #[test]
    fn cluster_strategy_stays_in_the_cluster_when_it_can() {
        let ix = TripleIndex::new(&[0, 0, 1], 8, 1).unwrap();
        let labels = [0i64, 0, 0, 0, 1, 1, 1, 1];
        let c = Corruptor::new(ix, Mode::Tail, Strategy::Cluster, true, Some(&labels)).unwrap();
        // tail 5: mates 4, 6, 7 (5 itself excluded)
        let out = c.corrupt(&[0, 0, 5], &opts(200, 3), None).unwrap();
        let mut seen = [0u32; 8];
        out.chunks_exact(3).for_each(|x| seen[x[2] as usize] += 1);
        assert_eq!(seen.iter().enumerate().filter(|(_, &c)| c > 0).map(|(e, _)| e).collect::<Vec<_>>(), vec![4, 6, 7]);
        // tail 1 of (0, 0, ?): mates 0, 2, 3 (1 is known): all allowed
        let out = c.corrupt(&[0, 0, 1], &opts(100, 3), None).unwrap();
        assert!(out.chunks_exact(3).all(|x| [0, 2, 3].contains(&x[2])));
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let t: Vec<i64> = (0..3000i64).flat_map(|i| [i % 97, i % 5, (i * 31 + 7) % 97]).collect();
        let ix = TripleIndex::new(&t, 97, 5).unwrap();
        let c = Corruptor::new(ix, Mode::Both, Strategy::Bernoulli, true, None).unwrap();
        let one = c.corrupt(&t, &CorruptOptions { threads: 1, ..opts(16, 4) }, None).unwrap();
        let three = c.corrupt(&t, &CorruptOptions { threads: 3, ..opts(16, 4) }, None).unwrap();
        assert_eq!(one, three);
    }

    #[test]
    fn hard_takes_the_best_allowed_below_the_margin() {
        let ix = index();
        let c = Corruptor::new(ix, Mode::Tail, Strategy::Uniform, true, None).unwrap();
        let emb: Vec<f32> = (0..6).map(|e| e as f32).collect(); // 1-d entities: score = q * e
        let entities = MatrixRef::new("e", &emb, 6, 1).unwrap();
        let q = [1.0f32];
        let queries = MatrixRef::new("q", &q, 1, 1).unwrap();
        let ho = |margin| HardCorruptOptions { num_negatives: 2, margin, streams: Streams::default(), threads: 1, isa: None };
        // (0, 0, 1): known tails 1, 2, 3 -> allowed 0, 4, 5; best 5, 4
        assert_eq!(c.hard(&[0, 0, 1], entities, None, Some(queries), &ho(None), None).unwrap(), vec![0, 0, 5, 0, 0, 4]);
        // (2, 0, 4) with margin 0.5: true score 4; allowed tails 0..6 minus 4 scoring <= 3.5: 3, 2
        assert_eq!(c.hard(&[2, 0, 4], entities, None, Some(queries), &ho(Some(0.5)), None).unwrap(), vec![2, 0, 3, 2, 0, 2]);
        // margin too strict: an error naming the triple
        let err = c.hard(&[2, 0, 1], entities, None, Some(queries), &ho(Some(0.5)), None).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "false_negative_margin", .. }), "{err}");
        assert!(matches!(c.hard(&[0, 0, 1], entities, Some(queries), None, &ho(None), None), Err(Error::InvalidParameter { name: "tail_queries", .. })));
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let ix = index();
        assert!(Corruptor::new(ix.clone(), Mode::Tail, Strategy::Bernoulli, true, None).is_err());
        assert!(Corruptor::new(ix.clone(), Mode::Both, Strategy::Cluster, true, None).is_err());
        assert!(Corruptor::new(ix.clone(), Mode::Both, Strategy::Cluster, true, Some(&[0, 1])).is_err());
        let ix3 = TripleIndex::new(&[0, 0, 1], 6, 3).unwrap();
        let c = Corruptor::new(ix3, Mode::Both, Strategy::Bernoulli, true, None).unwrap();
        let err = c.corrupt(&[0, 2, 1], &opts(1, 0), None).unwrap_err();
        assert!(err.to_string().contains("relation 2, which has no known triple"), "{err}");
        let c = Corruptor::new(ix, Mode::Both, Strategy::Uniform, true, None).unwrap();
        assert!(matches!(c.corrupt(&[0, 0, 6], &opts(1, 0), None), Err(Error::OutOfRange { what: "tail entity of triples", .. })));
    }
}
