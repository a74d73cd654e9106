//! Epoch plans of cluster-balanced mini-batches (the engine of `hardneg.ClusterBatchSampler`).
//!
//! A plan is a list of batches of row ids that covers every row once (minus the rows dropped by
//! `drop_last` or by an impossible `group_keys` constraint). It is a pure function of
//! (labels, keys, options, seed, epoch), built in O(N):
//!
//! 1. Clusters are put in a random order and the rows of each cluster shuffled.
//! 2. A uniformly random pool of `round(random_fraction * N)` rows is taken out of the clusters;
//!    every batch gets its proportional share of these random rows.
//! 3. The remaining rows fill the cluster part of each batch:
//!    * [`Packing::WholeClusters`] (NGAME): each batch takes whole clusters from the front of the
//!      cluster order while they fit; the gap left when the next cluster does not fit is filled
//!      with rows taken from the cluster at the *back* of the order. Only the clusters used as
//!      filler are split, and each filler comes from one or two clusters.
//!    * [`Packing::Lanes`] (TAS-B, `clusters_per_batch = k`): clusters are dealt into `k` lanes of
//!      nearly equal length; each batch takes an equal share from the front of every lane, so a
//!      batch holds rows of about `k` clusters (more where a cluster ends mid-batch).
//! 4. With `keys`, a linear pass re-chunks the batches so that no two rows of a batch share a
//!    key: a row whose key is already in its batch is deferred (first in, first out per key) to
//!    the next batch that can take it, and deferred rows are placed before new rows. Rows still
//!    deferred after the last batch are dropped and counted.
//!
//! The number of batches depends only on `N`, `batch_size` and `drop_last`:
//! `ceil(N / batch_size)`, or `floor(N / batch_size)` with `drop_last`.

use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::cluster::rng::Rng;
use crate::error::{Error, Result};

/// How the cluster rows of a batch are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// Whole clusters per batch (NGAME).
    WholeClusters,
    /// Rows of about this many clusters per batch, clusters split across batches (TAS-B).
    Lanes(usize),
}

/// Options of [`plan_epoch`].
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions<'a> {
    /// Rows per batch.
    pub batch_size: usize,
    /// Share of each batch drawn uniformly at random from all rows (0..=1).
    pub random_fraction: f64,
    /// Cluster packing rule.
    pub packing: Packing,
    /// Dense key id per row (`0..n_keys`); no two rows of a batch share one.
    pub keys: Option<&'a [u32]>,
    /// Drop the last, partial batch.
    pub drop_last: bool,
    /// Seed; the plan of epoch `e` is drawn from `seed + e`.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
}

/// A plan: batch `b` is `rows[offsets[b]..offsets[b+1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Row ids, batch after batch.
    pub rows: Vec<i64>,
    /// Batch boundaries (`batches + 1` entries).
    pub offsets: Vec<i64>,
    /// Rows left out because their key could not be placed (not counting `drop_last`).
    pub dropped: usize,
}

/// Number of batches of a plan.
pub fn n_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// Maps arbitrary 64-bit keys to dense ids `0..n_keys` in order of first appearance.
pub fn dense_keys(keys: &[u64]) -> (Vec<u32>, usize) {
    let mut map: HashMap<u64, u32, MixState> = HashMap::with_capacity_and_hasher(keys.len().min(1 << 24), MixState);
    let ids = keys
        .iter()
        .map(|&k| {
            let next = map.len() as u32;
            *map.entry(k).or_insert(next)
        })
        .collect();
    (ids, map.len())
}

/// A fast, fixed (not per-process random) hasher for 64-bit keys: one splitmix64 round.
#[derive(Clone, Copy, Default)]
struct MixState;

#[derive(Default)]
struct MixHasher(u64);

impl std::hash::BuildHasher for MixState {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(0)
    }
}

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        crate::cluster::rng::splitmix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

/// Builds the plan of one epoch. `labels[i]` is the cluster of row `i` in `0..n_clusters`.
pub fn plan_epoch(labels: &[i64], n_clusters: usize, opts: &PlanOptions<'_>) -> Result<Plan> {
    let n = labels.len();
    let b = opts.batch_size;
    if b < 1 {
        return Err(Error::param("batch_size", format!("batch_size must be at least 1, got {b}")));
    }
    if n == 0 {
        return Err(Error::param("embeddings", "there are no rows to batch"));
    }
    if n > u32::MAX as usize {
        return Err(Error::param("embeddings", format!("at most {} rows, got {n}", u32::MAX)));
    }
    if !(0.0..=1.0).contains(&opts.random_fraction) {
        return Err(Error::param("random_fraction", format!("random_fraction must be in [0, 1], got {}", opts.random_fraction)));
    }
    if let Packing::Lanes(0) = opts.packing {
        return Err(Error::param("clusters_per_batch", "clusters_per_batch must be at least 1"));
    }
    if let Some(k) = opts.keys {
        if k.len() != n {
            return Err(Error::RowCountMismatch { what: "group_keys", expected: n, got: k.len() });
        }
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= n_clusters) {
        return Err(Error::IdOutOfRange { what: "labels", row: i, id: l, n: n_clusters });
    }
    let (offsets, members) = crate::cluster::rows_by_cluster(labels, n_clusters);

    let mut rng = Rng::for_words(&[opts.seed.wrapping_add(opts.epoch), 0x706c_616e]);
    // Random pool: a partial Fisher-Yates over all rows.
    let pool_size = ((opts.random_fraction * n as f64).round() as usize).min(n);
    let mut in_pool = vec![false; if pool_size > 0 { n } else { 0 }];
    let mut pool: Vec<u32> = Vec::with_capacity(pool_size);
    if pool_size > 0 {
        let mut all: Vec<u32> = (0..n as u32).collect();
        rng.partial_shuffle(&mut all, pool_size);
        for &r in &all[..pool_size] {
            in_pool[r as usize] = true;
        }
        all.truncate(pool_size);
        pool = all;
    }
    // Clusters in random order, rows shuffled inside, pool rows removed.
    let mut order: Vec<u32> = (0..n_clusters as u32).collect();
    rng.shuffle(&mut order);
    let mut flat: Vec<u32> = Vec::with_capacity(n - pool_size);
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(n_clusters);
    for &c in &order {
        let s = flat.len();
        let m = &members[offsets[c as usize]..offsets[c as usize + 1]];
        if pool_size > 0 {
            flat.extend(m.iter().filter(|&&r| !in_pool[r as usize]));
        } else {
            flat.extend_from_slice(m);
        }
        rng.shuffle(&mut flat[s..]);
        if flat.len() > s {
            ranges.push((s, flat.len()));
        }
    }
    drop(members);

    // Batch sizes and their random shares (proportional, exact totals).
    let total_batches = n.div_ceil(b);
    let sizes: Vec<usize> = (0..total_batches).map(|i| b.min(n - i * b)).collect();
    let mut rows: Vec<u32> = Vec::with_capacity(n);
    let mut bounds = Vec::with_capacity(total_batches + 1);
    bounds.push(0usize);
    let mut pool_pos = 0;
    let mut packer = Packer::new(opts.packing, &flat, ranges);
    for (i, &t) in sizes.iter().enumerate() {
        let before = i * b;
        let r_i = pool_size * (before + t) / n - pool_size * before / n;
        packer.take(t - r_i, &mut rows);
        rows.extend_from_slice(&pool[pool_pos..pool_pos + r_i]);
        pool_pos += r_i;
        bounds.push(rows.len());
    }
    debug_assert_eq!(rows.len(), n);

    let keep = n_batches(n, b, opts.drop_last);
    let (rows, bounds, dropped) = match opts.keys {
        None => (rows, bounds, 0),
        Some(keys) => dedup(&rows, &sizes, keys, total_batches),
    };
    let end = bounds[keep];
    Ok(Plan {
        rows: rows[..end].iter().map(|&r| i64::from(r)).collect(),
        offsets: bounds[..=keep].iter().map(|&o| o as i64).collect(),
        dropped,
    })
}

/// Hands out the cluster rows of consecutive batches.
enum Packer<'a> {
    Whole { flat: &'a [u32], ranges: Vec<(usize, usize)>, front: usize, back: usize },
    Lanes { lanes: Vec<Vec<u32>>, pos: Vec<usize> },
}

impl<'a> Packer<'a> {
    fn new(packing: Packing, flat: &'a [u32], ranges: Vec<(usize, usize)>) -> Self {
        match packing {
            Packing::WholeClusters => {
                let back = ranges.len();
                Packer::Whole { flat, ranges, front: 0, back }
            }
            Packing::Lanes(k) => {
                // Deal clusters to the shortest lane (ties: lower lane).
                let mut lanes: Vec<Vec<u32>> = vec![Vec::new(); k];
                let mut heap: BinaryHeap<std::cmp::Reverse<(usize, usize)>> = (0..k).map(|j| std::cmp::Reverse((0, j))).collect();
                for &(s, e) in &ranges {
                    let std::cmp::Reverse((len, j)) = heap.pop().expect("k >= 1");
                    lanes[j].extend_from_slice(&flat[s..e]);
                    heap.push(std::cmp::Reverse((len + e - s, j)));
                }
                Packer::Lanes { pos: vec![0; k], lanes }
            }
        }
    }

    fn take(&mut self, mut need: usize, out: &mut Vec<u32>) {
        match self {
            Packer::Whole { flat, ranges, front, back } => {
                while *front < *back && ranges[*front].1 - ranges[*front].0 <= need {
                    let (s, e) = ranges[*front];
                    out.extend_from_slice(&flat[s..e]);
                    need -= e - s;
                    *front += 1;
                }
                while need > 0 && *front < *back {
                    let r = &mut ranges[*back - 1];
                    let take = need.min(r.1 - r.0);
                    out.extend_from_slice(&flat[r.1 - take..r.1]);
                    r.1 -= take;
                    need -= take;
                    if r.1 == r.0 {
                        *back -= 1;
                    }
                }
            }
            Packer::Lanes { lanes, pos } => {
                let k = lanes.len();
                let mut short = 0;
                for j in 0..k {
                    let want = need / k + usize::from(j < need % k);
                    let got = want.min(lanes[j].len() - pos[j]);
                    out.extend_from_slice(&lanes[j][pos[j]..pos[j] + got]);
                    pos[j] += got;
                    short += want - got;
                }
                while short > 0 {
                    // The lane with the most rows left (ties: lower lane).
                    let Some(j) = (0..k).filter(|&j| lanes[j].len() > pos[j]).max_by_key(|&j| (lanes[j].len() - pos[j], std::cmp::Reverse(j))) else {
                        break;
                    };
                    let got = short.min(lanes[j].len() - pos[j]);
                    out.extend_from_slice(&lanes[j][pos[j]..pos[j] + got]);
                    pos[j] += got;
                    short -= got;
                }
                need = short;
            }
        }
        debug_assert_eq!(need, 0);
    }
}

/// Re-chunks `rows` into `batches` batches of `sizes` with no repeated key inside a batch.
fn dedup(rows: &[u32], sizes: &[usize], keys: &[u32], batches: usize) -> (Vec<u32>, Vec<usize>, usize) {
    const NONE: u32 = u32::MAX;
    let n_keys = keys.iter().map(|&k| k as usize + 1).max().unwrap_or(0);
    let mut stamp = vec![0u32; n_keys];
    let mut head = vec![NONE; n_keys];
    let mut tail = vec![NONE; n_keys];
    let mut next = vec![NONE; keys.len()];
    let mut queue: VecDeque<u32> = VecDeque::new();
    let mut pending = 0usize;
    let mut out = Vec::with_capacity(rows.len());
    let mut bounds = Vec::with_capacity(batches + 1);
    bounds.push(0);
    let mut cursor = 0;
    let mut requeue = Vec::new();
    for (bi, &target) in sizes.iter().enumerate().take(batches) {
        let mark = bi as u32 + 1;
        let start = out.len();
        // Deferred rows first, one per key, keys in the order they were deferred.
        let m = queue.len();
        for _ in 0..m {
            if out.len() - start == target {
                break;
            }
            let key = queue.pop_front().expect("queue length");
            let r = head[key as usize];
            head[key as usize] = next[r as usize];
            if head[key as usize] == NONE {
                tail[key as usize] = NONE;
            } else {
                requeue.push(key);
            }
            pending -= 1;
            out.push(r);
            stamp[key as usize] = mark;
        }
        queue.extend(requeue.drain(..));
        while out.len() - start < target && cursor < rows.len() {
            let r = rows[cursor];
            cursor += 1;
            let key = keys[r as usize];
            if stamp[key as usize] == mark {
                next[r as usize] = NONE;
                if tail[key as usize] == NONE {
                    head[key as usize] = r;
                    queue.push_back(key);
                } else {
                    next[tail[key as usize] as usize] = r;
                }
                tail[key as usize] = r;
                pending += 1;
            } else {
                stamp[key as usize] = mark;
                out.push(r);
            }
        }
        bounds.push(out.len());
    }
    let dropped = pending + (rows.len() - cursor);
    (out, bounds, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(b: usize) -> PlanOptions<'static> {
        PlanOptions { batch_size: b, random_fraction: 0.0, packing: Packing::WholeClusters, keys: None, drop_last: false, seed: 0, epoch: 0 }
    }

    fn check_cover(p: &Plan, n: usize) {
        let mut seen = vec![false; n];
        for &r in &p.rows {
            assert!(!seen[r as usize]);
            seen[r as usize] = true;
        }
    }

    #[test]
    fn whole_clusters_stay_whole_except_fillers() {
        let n = 1000;
        let labels: Vec<i64> = (0..n as i64).map(|i| i / 10).collect();
        let p = plan_epoch(&labels, 100, &opts(40)).unwrap();
        assert_eq!(p.offsets.len(), 26);
        check_cover(&p, n);
        assert_eq!(p.rows.len(), n);
        // 40 = 4 clusters of 10: every batch is exactly 4 whole clusters.
        for w in p.offsets.windows(2) {
            let mut ls: Vec<i64> = p.rows[w[0] as usize..w[1] as usize].iter().map(|&r| labels[r as usize]).collect();
            ls.sort();
            ls.dedup();
            assert_eq!(ls.len(), 4);
        }
    }

    #[test]
    fn lanes_and_random_pool_cover_every_row() {
        let n = 1037;
        let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7) % 53).collect();
        for packing in [Packing::WholeClusters, Packing::Lanes(1), Packing::Lanes(3)] {
            let mut o = opts(32);
            o.packing = packing;
            o.random_fraction = 0.25;
            let p = plan_epoch(&labels, 53, &o).unwrap();
            check_cover(&p, n);
            assert_eq!(p.rows.len(), n);
            o.drop_last = true;
            let p = plan_epoch(&labels, 53, &o).unwrap();
            assert_eq!(p.rows.len(), n / 32 * 32);
            check_cover(&p, n);
        }
    }

    #[test]
    fn keys_are_unique_per_batch() {
        let n = 500;
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 25).collect();
        let raw: Vec<u64> = (0..n as u64).map(|i| (i * 31) % 97).collect();
        let (keys, _) = dense_keys(&raw);
        let mut o = opts(16);
        o.keys = Some(&keys);
        let p = plan_epoch(&labels, 25, &o).unwrap();
        check_cover(&p, n);
        assert_eq!(p.rows.len() + p.dropped, n);
        for w in p.offsets.windows(2) {
            let mut ks: Vec<u32> = p.rows[w[0] as usize..w[1] as usize].iter().map(|&r| keys[r as usize]).collect();
            let len = ks.len();
            ks.sort();
            ks.dedup();
            assert_eq!(ks.len(), len);
        }
    }
}
