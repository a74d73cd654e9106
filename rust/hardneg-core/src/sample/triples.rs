//! The known triples of a knowledge graph, hashed by (entity, relation) for filtered corruption.
//!
//! Two hash maps give, for a pair `(h, r)`, the sorted list of its known tails and, for `(r, t)`,
//! the sorted list of its known heads. A corruption loop looks its triple's two lists up once and
//! then tests (or skips) candidates inside those short, cache-resident lists; `(h, r, t)` is known
//! exactly when `t` is in the tail list of `(h, r)`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};
use crate::mine::rng::mix64;

/// Hashes packed integer keys with the SplitMix64 mixer (keys are ids, not adversarial input).
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(x);
    }
}

/// Which entity of a triple a corruption replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The head `h` of `(h, r, t)`.
    Head,
    /// The tail `t` of `(h, r, t)`.
    Tail,
}

/// Sorted id lists keyed by `(entity, relation)`.
#[derive(Clone, Debug, Default)]
struct Groups {
    map: HashMap<u64, u32, BuildHasherDefault<MixHasher>>,
    offsets: Vec<usize>,
    ids: Vec<u32>,
}

impl Groups {
    /// From unique `(a, r, b)` sorted by `(a, r, b)`: group `(a, r)` lists its `b`s. Also returns
    /// the number of groups of each relation.
    fn new(sorted: &[[u32; 3]], num_relations: usize) -> (Groups, Vec<u64>) {
        let mut g = Groups { offsets: vec![0], ..Groups::default() };
        let mut per_relation = vec![0u64; num_relations];
        for (i, &[a, r, b]) in sorted.iter().enumerate() {
            if i > 0 && (sorted[i - 1][0], sorted[i - 1][1]) != (a, r) {
                g.offsets.push(g.ids.len());
            }
            if i == 0 || (sorted[i - 1][0], sorted[i - 1][1]) != (a, r) {
                g.map.insert(key(a, r, num_relations), (g.offsets.len() - 1) as u32);
                per_relation[r as usize] += 1;
            }
            g.ids.push(b);
        }
        g.offsets.push(g.ids.len());
        (g, per_relation)
    }

    #[inline]
    fn get(&self, a: u32, r: u32, num_relations: usize) -> &[u32] {
        match self.map.get(&key(a, r, num_relations)) {
            Some(&g) => &self.ids[self.offsets[g as usize]..self.offsets[g as usize + 1]],
            None => &[],
        }
    }
}

#[inline]
fn key(a: u32, r: u32, num_relations: usize) -> u64 {
    u64::from(a) * num_relations as u64 + u64::from(r)
}

/// Checks that every `(h, r, t)` row of the flat `triples` lies in range.
pub fn check_triples(triples: &[i64], num_entities: usize, num_relations: usize) -> Result<()> {
    if !triples.len().is_multiple_of(3) {
        return Err(Error::param("triples", "triples must be rows of (head, relation, tail)"));
    }
    for (row, t) in triples.chunks_exact(3).enumerate() {
        for (id, n, what, fix) in [
            (t[0], num_entities, "head entity of triples", "raise num_entities or drop that triple"),
            (t[1], num_relations, "relation of triples", "raise num_relations or drop that triple"),
            (t[2], num_entities, "tail entity of triples", "raise num_entities or drop that triple"),
        ] {
            if id < 0 || id as u64 >= n as u64 {
                return Err(Error::OutOfRange { what, position: row, id, n, fix });
            }
        }
    }
    Ok(())
}

/// The known triples, indexed by `(h, r)` and by `(r, t)`, with per-relation Bernoulli statistics.
#[derive(Clone, Debug)]
pub struct TripleIndex {
    num_entities: usize,
    num_relations: usize,
    len: usize,
    tails: Groups,
    heads: Groups,
    head_probability: Vec<f64>,
}

impl TripleIndex {
    /// Indexes the flat `(h, r, t)` rows of `triples`; repeated triples count once.
    pub fn new(triples: &[i64], num_entities: usize, num_relations: usize) -> Result<Self> {
        if num_entities < 2 || num_entities > u32::MAX as usize {
            return Err(Error::param("num_entities", format!("num_entities must be between 2 and {}, got {num_entities}", u32::MAX)));
        }
        if num_relations < 1 || num_relations > u32::MAX as usize {
            return Err(Error::param("num_relations", format!("num_relations must be between 1 and {}, got {num_relations}", u32::MAX)));
        }
        check_triples(triples, num_entities, num_relations)?;
        let mut hrt: Vec<[u32; 3]> = triples.chunks_exact(3).map(|t| [t[0] as u32, t[1] as u32, t[2] as u32]).collect();
        hrt.sort_unstable();
        hrt.dedup();
        let (tails, hr_pairs) = Groups::new(&hrt, num_relations);
        let mut trh: Vec<[u32; 3]> = hrt.iter().map(|&[h, r, t]| [t, r, h]).collect();
        trh.sort_unstable();
        let (heads, rt_pairs) = Groups::new(&trh, num_relations);
        // TransH's Bernoulli trick: replace the head with probability tph / (tph + hpt), where
        // tph = triples / distinct (h, r) and hpt = triples / distinct (r, t); that is rt / (hr + rt).
        let head_probability = hr_pairs
            .iter()
            .zip(&rt_pairs)
            .map(|(&hr, &rt)| if hr == 0 { f64::NAN } else { rt as f64 / (hr + rt) as f64 })
            .collect();
        Ok(TripleIndex { num_entities, num_relations, len: hrt.len(), tails, heads, head_probability })
    }

    /// Number of entities.
    pub fn num_entities(&self) -> usize {
        self.num_entities
    }

    /// Number of relations.
    pub fn num_relations(&self) -> usize {
        self.num_relations
    }

    /// Number of distinct known triples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no triple is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sorted known tails of `(h, r, ?)`.
    #[inline]
    pub fn tails(&self, h: u32, r: u32) -> &[u32] {
        self.tails.get(h, r, self.num_relations)
    }

    /// The sorted known heads of `(?, r, t)`.
    #[inline]
    pub fn heads(&self, r: u32, t: u32) -> &[u32] {
        self.heads.get(t, r, self.num_relations)
    }

    /// The known entities that complete `(h, r, t)` on `side` (its own entity included when the
    /// triple is known).
    #[inline]
    pub fn known(&self, h: u32, r: u32, t: u32, side: Side) -> &[u32] {
        match side {
            Side::Head => self.heads(r, t),
            Side::Tail => self.tails(h, r),
        }
    }

    /// Whether `(h, r, t)` is a known triple.
    pub fn contains(&self, h: u32, r: u32, t: u32) -> bool {
        super::contains_sorted(self.tails(h, r), t)
    }

    /// Per relation, the probability of replacing the head under Bernoulli sampling
    /// (NaN for a relation without triples).
    pub fn head_probability(&self) -> &[f64] {
        &self.head_probability
    }

    /// For each `(h, r, t)` row, the known entities on `side`, as CSR `(offsets, ids)`: the
    /// candidates a filtered ranking evaluation must skip.
    pub fn known_csr(&self, triples: &[i64], side: Side) -> Result<(Vec<i64>, Vec<i64>)> {
        check_triples(triples, self.num_entities, self.num_relations)?;
        let mut offsets = Vec::with_capacity(triples.len() / 3 + 1);
        offsets.push(0i64);
        let mut ids = Vec::new();
        for t in triples.chunks_exact(3) {
            ids.extend(self.known(t[0] as u32, t[1] as u32, t[2] as u32, side).iter().map(|&e| i64::from(e)));
            offsets.push(ids.len() as i64);
        }
        Ok((offsets, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_known_heads_and_tails_and_bernoulli() {
        // relation 0: one head with three tails (1-to-N); relation 1: three heads of one tail (N-to-1)
        let t = [0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 1, 4, 1, 5, 6, 1, 5, 7, 1, 5];
        let ix = TripleIndex::new(&t, 8, 3).unwrap();
        assert_eq!(ix.len(), 6);
        assert_eq!(ix.tails(0, 0), &[1, 2, 3]);
        assert_eq!(ix.heads(0, 2), &[0]);
        assert_eq!(ix.heads(1, 5), &[4, 6, 7]);
        assert!(ix.tails(1, 0).is_empty());
        assert!(ix.contains(6, 1, 5) && !ix.contains(5, 1, 6));
        // relation 0: tph = 3, hpt = 1 -> replace the head with probability 3/4
        let p = ix.head_probability();
        assert!((p[0] - 0.75).abs() < 1e-12 && (p[1] - 0.25).abs() < 1e-12 && p[2].is_nan());
        let (off, ids) = ix.known_csr(&[0, 0, 1, 4, 1, 5], Side::Tail).unwrap();
        assert_eq!((off, ids), (vec![0, 3, 4], vec![1, 2, 3, 5]));
    }

    #[test]
    fn rejects_out_of_range_ids() {
        let err = TripleIndex::new(&[0, 0, 1, 2, 3, 1], 4, 3).unwrap_err();
        assert!(matches!(err, Error::OutOfRange { what: "relation of triples", position: 1, id: 3, n: 3, .. }), "{err}");
        assert!(TripleIndex::new(&[0, 0, 4], 4, 1).is_err());
        assert!(TripleIndex::new(&[0, 0], 4, 1).is_err());
    }
}
