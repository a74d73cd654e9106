//! hardneg's own search over the graph usearch built, for float32 indexes with their corpus.
//!
//! usearch's search computes one distance at a time and waits for each vector to arrive from
//! memory, and keeps the visited nodes in a hash set; profiles put 70 % of a search in the loads
//! of the distance kernel. This walk reads the same graph (copied out once: level 0 as a fixed
//! stride array, the sparse upper levels in maps), marks visited nodes in a per-thread epoch
//! array, collects a node's unvisited neighbours first and prefetches their rows before scoring
//! them four at a time, so the loads of several rows overlap. Rows are ranked by their int8
//! codes ([`super::codes`]): a quarter of float32's bytes per hop. The algorithm is HNSW's:
//! greedy descent through the upper levels from the top node, then a best-first beam of width
//! `ef` on level 0, walking through excluded nodes without letting them take a result slot.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use usearch::Index;

use super::codes::{CodeQuery, Codes};

/// One thread's share of level 0, in key order: [`Graph::push_level0`] lists, and the nodes
/// above level 0 with their levels.
pub(super) type Level0Part = (Vec<u32>, Vec<(u32, usize)>);

/// The graph of an index: keys are row ids.
pub(super) struct Graph {
    /// Level-0 neighbours: row `i` at `[i * stride]` holds the count, then the ids.
    level0: Vec<u32>,
    stride: usize,
    /// Levels 1.. : node → neighbours.
    upper: Vec<HashMap<u32, Box<[u32]>>>,
    /// The nodes of the highest level, ascending: a walk starts from the best of them.
    entries: Vec<u32>,
}

impl Graph {
    /// Appends one node's level-0 list to a part of [`Graph::level0`]: the count, the ids, padding.
    pub(super) fn push_level0(part: &mut Vec<u32>, stride: usize, edges: &[u64]) {
        let got = edges.len().min(stride - 1);
        part.push(got as u32);
        part.extend(edges[..got].iter().map(|&n| n as u32));
        part.resize(part.len() + stride - 1 - got, 0);
    }

    /// The graph from level 0 read in key order (the parts of [`Graph::push_level0`] calls, and
    /// the nodes above level 0 with their levels), the upper levels read here from `index`.
    pub(super) fn new(index: &Index, rows: usize, stride: usize, parts: Vec<Level0Part>) -> Graph {
        let mut level0 = Vec::with_capacity(rows * stride);
        let mut tall = Vec::new();
        for (adj, t) in parts {
            level0.extend_from_slice(&adj);
            tall.push(t);
        }
        debug_assert_eq!(level0.len(), rows * stride);
        let top = tall.iter().flatten().map(|&(_, l)| l).max().unwrap_or(0);
        let mut upper: Vec<HashMap<u32, Box<[u32]>>> = (0..top).map(|_| HashMap::new()).collect();
        let mut nb = vec![0u64; index.connectivity().max(1) + 1];
        let mut entries: Vec<u32> = if top == 0 { (0..rows.min(1) as u32).collect() } else { Vec::new() };
        for &(id, level) in tall.iter().flatten() {
            for (l, map) in upper.iter_mut().enumerate().take(level) {
                let mut it = index.neighbors(id as u64, l + 1);
                if it.total() > nb.len() {
                    nb.resize(it.total(), 0);
                }
                let got = it.drain_into(&mut nb);
                map.insert(id, nb[..got].iter().map(|&n| n as u32).collect());
            }
            if level == top && top > 0 {
                entries.push(id);
            }
        }
        entries.sort_unstable();
        Graph { level0, stride, upper, entries }
    }

    /// Bytes held by the copy.
    pub(super) fn bytes(&self) -> usize {
        self.level0.len() * 4 + self.upper.iter().map(|m| m.values().map(|v| v.len() * 4 + 48).sum::<usize>()).sum::<usize>()
    }

    /// The top level and its nodes.
    #[cfg(test)]
    pub(super) fn top(&self) -> (usize, &[u32]) {
        (self.upper.len(), &self.entries)
    }

    #[cfg(test)]
    pub(super) fn level0_of(&self, node: u32) -> &[u32] {
        self.level0(node)
    }

    fn level0(&self, node: u32) -> &[u32] {
        let s = &self.level0[node as usize * self.stride..(node as usize + 1) * self.stride];
        &s[1..=s[0] as usize]
    }
}

/// Per-thread search state, reused across queries.
#[derive(Default)]
pub(super) struct WalkScratch {
    /// `visited[i] == epoch` marks row `i` seen by the current query.
    visited: Vec<u32>,
    epoch: u32,
    batch: Vec<u32>,
    cands: BinaryHeap<Best>,
    results: BinaryHeap<Worst>,
    /// The results, best first.
    pub(super) out: Vec<(f32, u64)>,
}

/// Higher score first, then lower id.
#[derive(Clone, Copy, PartialEq)]
struct Best(f32, u32);
impl Eq for Best {}
impl Ord for Best {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}
impl PartialOrd for Best {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The reverse: the worst result on top.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Worst(Best);
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.cmp(&self.0)
    }
}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Graph {
    /// The `ef` best non-excluded rows the walk finds for the prepared query `q` into
    /// `scratch.out` (best first, fewer when the walk runs out). `excluded` is sorted.
    pub(super) fn search(&self, codes: &Codes, q: &CodeQuery, ef: usize, excluded: &[u64], scratch: &mut WalkScratch) {
        scratch.out.clear();
        let n = codes.rows();
        if n == 0 || ef == 0 {
            return;
        }
        if scratch.visited.len() != n {
            scratch.visited = vec![0; n];
            scratch.epoch = 0;
        }
        scratch.epoch = scratch.epoch.wrapping_add(1);
        if scratch.epoch == 0 {
            scratch.visited.iter_mut().for_each(|v| *v = 0);
            scratch.epoch = 1;
        }
        let epoch = scratch.epoch;
        let is_excluded = |id: u32| !excluded.is_empty() && excluded.binary_search(&(id as u64)).is_ok();

        // Greedy descent through the upper levels, from the best node of the top one (usearch
        // starts from the first node that reached it; the best of them is no worse a start).
        let (mut cur, mut cur_s) = (self.entries[0], f32::NEG_INFINITY);
        for &e in &self.entries {
            let s = codes.score(q, e);
            if Best(s, e) > Best(cur_s, cur) {
                (cur, cur_s) = (e, s);
            }
        }
        for map in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                if let Some(nbrs) = map.get(&cur) {
                    for &nb in nbrs.iter() {
                        let s = codes.score(q, nb);
                        if Best(s, nb) > Best(cur_s, cur) {
                            (cur, cur_s, moved) = (nb, s, true);
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        // Beam search on level 0.
        let WalkScratch { visited, batch, cands, results, out, .. } = scratch;
        cands.clear();
        results.clear();
        visited[cur as usize] = epoch;
        cands.push(Best(cur_s, cur));
        if !is_excluded(cur) {
            results.push(Worst(Best(cur_s, cur)));
        }
        while let Some(c) = cands.pop() {
            if results.len() >= ef && c < results.peek().expect("ef results").0 {
                break;
            }
            batch.clear();
            for &nb in self.level0(c.1) {
                if visited[nb as usize] != epoch {
                    visited[nb as usize] = epoch;
                    batch.push(nb);
                    codes.prefetch(nb, 2);
                }
            }
            // Score four rows at a time: their loads overlap (the rest one by one).
            let mut j = 0;
            while j < batch.len() {
                let take = (batch.len() - j).min(4);
                let mut ids = [batch[j]; 4];
                ids[..take].copy_from_slice(&batch[j..j + take]);
                for &next in batch.get(j + 4..(j + 8).min(batch.len())).unwrap_or(&[]) {
                    codes.prefetch(next, usize::MAX);
                }
                let scores = codes.score4(q, ids);
                for (&nb, &s) in ids[..take].iter().zip(&scores) {
                    let b = Best(s, nb);
                    if results.len() < ef || b > results.peek().expect("ef results").0 {
                        cands.push(b);
                        if !is_excluded(nb) {
                            results.push(Worst(b));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
                j += take;
            }
        }
        out.extend(results.drain().map(|w| (w.0 .0, w.0 .1 as u64)));
        out.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    }
}
