//! Capacitated assignment by auction: each row goes to one of its candidate clusters, each
//! cluster receives exactly its capacity, and the total score is within `rows * eps` of the best
//! such assignment.
//!
//! This is Bertsekas' auction algorithm for the transportation problem (a cluster of capacity
//! `c` is `c` identical slots), run Gauss-Seidel style in a fixed order so the result depends
//! only on the input. A free row bids for the candidate of highest value `score - price`,
//! raising that cluster's price by its margin over the second best candidate plus `eps`; a full
//! cluster evicts its lowest bid, and its price becomes the lowest bid it still holds.
//! Greedy assignment by descending score, by contrast, lets rows that are similar to everything
//! take the places that other rows need most.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A bid held by a cluster. Ordered by amount, then by row (lower row ranks higher), so
/// evictions are deterministic.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Held {
    bid: f64,
    row: u32,
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bid.total_cmp(&other.bid).then(other.row.cmp(&self.row))
    }
}

/// First slack of the epsilon-scaling phases.
const FIRST_EPS: f64 = 0.2;
/// Slack divisor from one phase to the next.
const EPS_STEP: f64 = 4.0;

/// Assigns `n = caps.iter().sum()` rows to clusters.
///
/// `cand` and `score` hold `width` candidates per row (row-major); a candidate id of `-1` is
/// unused. The candidate lists must admit an assignment that fills every cluster exactly (the
/// caller includes each row's current cluster, which is one). Returns the cluster of every row,
/// or `None` if more than `max_bids` bids were needed in total (the caller then keeps its
/// current assignment).
///
/// Runs in phases of decreasing slack (epsilon scaling), ending at `eps`: each phase starts
/// from the prices the previous one left, so rows with near-equal options settle in a few large
/// steps instead of many `eps`-sized ones.
pub(super) fn auction(cand: &[i64], score: &[f32], width: usize, caps: &[usize], eps: f64, max_bids: usize) -> Option<Vec<u32>> {
    let n = caps.iter().sum::<usize>();
    debug_assert_eq!(cand.len(), n * width);
    debug_assert_eq!(score.len(), n * width);
    // Every slot of a cluster starts a phase at the cluster's floor price.
    let mut floor = vec![0.0f64; caps.len()];
    let mut held: Vec<BinaryHeap<Reverse<Held>>> = caps.iter().map(|&c| BinaryHeap::with_capacity(c)).collect();
    let mut owner = vec![u32::MAX; n];
    let mut bids = 0usize;
    let mut phase_eps = FIRST_EPS.max(eps);
    loop {
        for h in &mut held {
            h.clear();
        }
        bids += phase(cand, score, width, caps, phase_eps, max_bids.saturating_sub(bids), &mut floor, &mut held, &mut owner)?;
        if phase_eps <= eps {
            break;
        }
        phase_eps = (phase_eps / EPS_STEP).max(eps);
    }
    Some(owner)
}

/// One auction phase from every row free; returns the number of bids, or `None` past `max_bids`.
#[allow(clippy::too_many_arguments)]
fn phase(
    cand: &[i64],
    score: &[f32],
    width: usize,
    caps: &[usize],
    eps: f64,
    max_bids: usize,
    price: &mut [f64],
    held: &mut [BinaryHeap<Reverse<Held>>],
    owner: &mut [u32],
) -> Option<usize> {
    let n = owner.len();
    // Rows bid in ascending order; an evicted row bids again next.
    let mut free: Vec<u32> = (0..n as u32).rev().collect();
    let mut bids = 0usize;
    while let Some(i) = free.pop() {
        bids += 1;
        if bids > max_bids {
            return None;
        }
        let (ids, scores) = (&cand[i as usize * width..][..width], &score[i as usize * width..][..width]);
        let (mut best, mut v1, mut v2) = (usize::MAX, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (&c, &s) in ids.iter().zip(scores) {
            if c < 0 || caps[c as usize] == 0 {
                continue;
            }
            let v = f64::from(s) - price[c as usize];
            if v > v1 {
                (v2, v1, best) = (v1, v, c as usize);
            } else if v > v2 {
                v2 = v;
            }
        }
        if best == usize::MAX {
            return None; // no usable candidate: the lists were not feasible
        }
        // With a single usable candidate any raise keeps eps-complementary slackness; a raise
        // of 1 (the width of a cosine's useful range) settles contests quickly.
        let gap = if v2.is_finite() { v1 - v2 } else { 1.0 };
        let bid = price[best] + gap + eps;
        let heap = &mut held[best];
        if heap.len() == caps[best] {
            if let Some(Reverse(out)) = heap.pop() {
                owner[out.row as usize] = u32::MAX;
                free.push(out.row);
            }
        }
        heap.push(Reverse(Held { bid, row: i }));
        owner[i as usize] = best as u32;
        if heap.len() == caps[best] {
            price[best] = heap.peek().map_or(price[best], |r| r.0.bid);
        }
    }
    Some(bids)
}

#[cfg(test)]
mod tests {
    use super::auction;
    use crate::cluster::rng::Rng;

    /// Best total score over every assignment that fills each cluster exactly (explicit search).
    fn best_total(cand: &[i64], score: &[f32], width: usize, caps: &[usize]) -> Option<f64> {
        fn go(i: usize, n: usize, cand: &[i64], score: &[f32], w: usize, room: &mut [usize]) -> Option<f64> {
            if i == n {
                return Some(0.0);
            }
            let mut best: Option<f64> = None;
            for j in 0..w {
                let c = cand[i * w + j];
                if c < 0 || room[c as usize] == 0 {
                    continue;
                }
                room[c as usize] -= 1;
                if let Some(rest) = go(i + 1, n, cand, score, w, room) {
                    let t = rest + f64::from(score[i * w + j]);
                    best = Some(best.map_or(t, |b: f64| b.max(t)));
                }
                room[c as usize] += 1;
            }
            best
        }
        let n = caps.iter().sum();
        go(0, n, cand, score, width, &mut caps.to_vec())
    }

    #[test]
    fn near_optimal_and_exact_capacities_on_random_instances() {
        let mut rng = Rng::new(7);
        for case in 0..300 {
            let k = 1 + rng.below(4);
            let caps: Vec<usize> = (0..k).map(|_| 1 + rng.below(3)).collect();
            let n: usize = caps.iter().sum();
            let width = 1 + rng.below(k);
            // A feasible start: row r's first candidate is a cluster with room in a fixed filling.
            let fill: Vec<i64> = caps.iter().enumerate().flat_map(|(c, &m)| std::iter::repeat_n(c as i64, m)).collect();
            let mut cand = vec![-1i64; n * width];
            let mut score = vec![0.0f32; n * width];
            for i in 0..n {
                let mut ids: Vec<i64> = vec![fill[i]];
                while ids.len() < width {
                    let c = rng.below(k) as i64;
                    if !ids.contains(&c) {
                        ids.push(c);
                    }
                }
                rng.shuffle(&mut ids);
                for (j, &c) in ids.iter().enumerate() {
                    cand[i * width + j] = c;
                    // Coarse scores make ties common.
                    score[i * width + j] = (rng.below(9) as f32 - 4.0) / 4.0;
                }
                if width > 1 && rng.below(4) == 0 {
                    // An unused slot (never the feasible one).
                    let j = (0..width).find(|&j| cand[i * width + j] != fill[i]).unwrap();
                    cand[i * width + j] = -1;
                }
            }
            let eps = 1e-3;
            let got = auction(&cand, &score, width, &caps, eps, 1_000_000).expect("feasible instance");
            let mut used = vec![0usize; k];
            let mut total = 0.0f64;
            for (i, &c) in got.iter().enumerate() {
                let j = (0..width).find(|&j| cand[i * width + j] == i64::from(c)).expect("a candidate");
                total += f64::from(score[i * width + j]);
                used[c as usize] += 1;
            }
            assert_eq!(used, caps, "case {case}");
            let best = best_total(&cand, &score, width, &caps).unwrap();
            assert!(total >= best - n as f64 * eps - 1e-9, "case {case}: {total} < {best}");
        }
    }

    #[test]
    fn beats_greedy_where_greedy_blocks_a_row() {
        // Row 0 likes both clusters almost equally; row 1 only likes cluster 0. Greedy by
        // score gives row 0 cluster 0 (0.9) and row 1 cluster 1 (0.0): 0.9. The best is 1.7.
        let cand = [0, 1, 0, 1];
        let score = [0.9, 0.85, 0.85, 0.0];
        let got = auction(&cand, &score, 2, &[1, 1], 1e-3, 100).unwrap();
        assert_eq!(got, vec![1, 0]);
    }

    #[test]
    fn gives_up_past_the_bid_budget() {
        let cand = [0, 1, 0, 1];
        let score = [0.9, 0.85, 0.85, 0.0];
        assert_eq!(auction(&cand, &score, 2, &[1, 1], 1e-3, 2), None);
    }
}
