//! Negative sampling for recommendation ([`recsys`]) and knowledge graphs ([`kg`]).
//!
//! * [`recsys::NegativeSampler`]: items a user never interacted with, drawn uniformly or by
//!   popularity^alpha ([`alias::AliasTable`]), with or without replacement; hard negatives as
//!   the best of a random pool (DNS) or the exact top-k through [`crate::search`].
//! * [`kg::Corruptor`]: corrupted triples that are never a known triple (the hashed index of
//!   [`triples::TripleIndex`]), head/tail chosen uniformly or by Bernoulli per relation, the
//!   replacement entity drawn uniformly or from the replaced entity's cluster; hard corruptions
//!   ranked by the model's scores with a false-negative margin.
//!
//! # Determinism
//!
//! Row `i` of a call draws only from its own SplitMix64 stream, seeded by
//! `(hash(seed, epoch), offset + i)` ([`Streams`]), so its output depends on its own input, the
//! options and its global position: never on the thread count or on how rows are chunked.
//!
//! # Excluded ids without rejection
//!
//! Uniform draws among the ids of `0..n` that are not in a sorted exclusion list `p` (a user's
//! items, an entity's known heads or tails) never reject: draw `j` in `0..n - p.len()` and map it
//! to the `j`-th free id with [`nth_free`] (a binary search over `p[i] - i`).

pub mod alias;
pub mod kg;
pub mod recsys;
pub mod triples;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cluster::rng::hash_words;
use crate::error::{Error, Result};
use crate::mine::rng::Rng;

/// Where the random streams of a call come from: row `i` uses
/// `Rng::for_query(hash(seed, epoch), offset + i)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    /// The user's seed.
    pub seed: u64,
    /// The epoch (a new epoch gives new draws for the same rows).
    pub epoch: u64,
    /// The global position of row 0 (pass a batch's start so that batches get different streams).
    pub offset: u64,
}

impl Streams {
    /// The generator of row `row` of the call.
    #[inline]
    pub fn rng(&self, row: usize) -> Rng {
        Rng::for_query(hash_words(&[self.seed, self.epoch]), self.offset.wrapping_add(row as u64))
    }
}

/// Lists up to this long are scanned linearly (vectorised, branch-free) instead of bisected.
const SCAN: usize = 64;

/// Number of entries of the sorted, strictly increasing `p` that lie below the `j`-th id absent
/// from `p`: the entries `i` with `p[i] - i <= j` (`p[i] - i` counts the free ids below `p[i]`
/// and never decreases). `j` is below `u32::MAX` since ids are `u32`.
#[inline]
fn excluded_before(p: &[u32], j: u64) -> usize {
    let j = j as u32;
    if p.len() <= SCAN {
        return p.iter().zip(0u32..).map(|(&x, i)| u32::from(x - i <= j)).sum::<u32>() as usize;
    }
    let (mut base, mut size) = (0usize, p.len());
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if p[mid] - mid as u32 <= j { mid } else { base };
        size -= half;
    }
    base + usize::from(p[base] - base as u32 <= j)
}

/// The `j`-th (0-based) id of `0..n` that is not in the sorted, strictly increasing `p`.
#[inline]
pub fn nth_free(p: &[u32], j: u64) -> u64 {
    j + excluded_before(p, j) as u64
}

/// Whether the sorted `p` holds `x`.
#[inline]
pub(crate) fn contains_sorted(p: &[u32], x: u32) -> bool {
    if p.len() <= SCAN {
        return contains_unsorted(p, x);
    }
    p.binary_search(&x).is_ok()
}

/// Runs `fill(row, out_row, scratch)` for rows `0..rows`, where `out_row` is the row's
/// `width`-wide slice of `out`. Rows are split into one contiguous block per thread; each thread
/// owns one scratch value. The error of the lowest failing row wins, so the error does not depend
/// on the thread count. `cancel` is polled every 1024 rows.
pub(crate) fn par_rows<T, S, F>(out: &mut [T], width: usize, threads: usize, cancel: Option<&AtomicBool>, fill: F) -> Result<()>
where
    T: Send,
    S: Default,
    F: Fn(usize, &mut [T], &mut S) -> Result<()> + Sync,
{
    let rows = out.len().checked_div(width).unwrap_or(0);
    if rows == 0 {
        return Ok(());
    }
    let threads = if out.len() < 1 << 14 { 1 } else { crate::topk::resolve_threads(threads).clamp(1, rows) };
    let per = rows.div_ceil(threads);
    let run = |start: usize, part: &mut [T]| -> std::result::Result<(), (usize, Error)> {
        let mut scratch = S::default();
        for (i, row_out) in part.chunks_mut(width).enumerate() {
            let row = start + i;
            if i % 1024 == 0 && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err((usize::MAX, Error::Cancelled));
            }
            fill(row, row_out, &mut scratch).map_err(|e| (row, e))?;
        }
        Ok(())
    };
    let first_error = if threads == 1 {
        run(0, out).err()
    } else {
        std::thread::scope(|s| {
            let run = &run;
            let handles: Vec<_> = out.chunks_mut(per * width).enumerate().map(|(t, part)| s.spawn(move || run(t * per, part))).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)).err())
                .min_by_key(|(row, _)| *row)
        })
    };
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// A zeroed `Vec<i64>` of `len` values for a sampler's output. Large buffers are advised to use
/// transparent huge pages on Linux (numpy does the same for its large arrays): with 4 KiB pages,
/// the first-touch page faults of the output cost about a third of the uniform sampling loop.
pub(crate) fn zeroed_output(len: usize) -> Vec<i64> {
    let bytes = len * std::mem::size_of::<i64>();
    if bytes < 1 << 22 {
        return vec![0; len];
    }
    let layout = std::alloc::Layout::array::<i64>(len).expect("the output size fits in memory");
    // SAFETY: the layout has a non-zero size; a null pointer is handled; the memory is zeroed (a
    // valid i64 array) and allocated by the global allocator with the layout Vec<i64> uses for
    // capacity `len`, so Vec::from_raw_parts may own it.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<i64>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        #[cfg(target_os = "linux")]
        {
            // madvise needs a page-aligned start: advise the whole pages inside the buffer.
            let start = (ptr as usize).next_multiple_of(4096);
            let end = (ptr as usize + bytes) & !4095;
            if end > start {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
        Vec::from_raw_parts(ptr, len, len)
    }
}

/// A small set of `u64` keys (open addressing, linear probing), cleared per row: the picks of a
/// draw without replacement.
#[derive(Default)]
pub(crate) struct SmallSet {
    slots: Vec<u64>,
    mask: usize,
}

impl SmallSet {
    const EMPTY: u64 = u64::MAX;

    /// Empties the set and sizes it for up to `capacity` keys (load <= 1/2).
    pub(crate) fn reset(&mut self, capacity: usize) {
        let size = (2 * capacity.max(1)).next_power_of_two();
        self.slots.clear();
        self.slots.resize(size, Self::EMPTY);
        self.mask = size - 1;
    }

    /// Inserts `key` (never `u64::MAX`); returns false when it was already there.
    #[inline]
    pub(crate) fn insert(&mut self, key: u64) -> bool {
        let mut i = crate::mine::rng::mix64(key) as usize & self.mask;
        loop {
            match self.slots[i] {
                Self::EMPTY => {
                    self.slots[i] = key;
                    return true;
                }
                k if k == key => return false,
                _ => i = (i + 1) & self.mask,
            }
        }
    }
}

/// Moves `m` distinct uniform draws from `0..a` (`m <= a <= u32::MAX`) into `out`, in uniformly
/// random order. While `m <= a / 2`: successive draws, a repeat drawn again (fewer than two tries
/// per pick on average); otherwise Floyd's subset sampling (exactly `m` draws) and a shuffle.
pub(crate) fn distinct_below(rng: &mut Rng, a: u64, m: usize, set: &mut SmallSet, out: &mut Vec<u32>) {
    debug_assert!(m as u64 <= a && a <= u64::from(u32::MAX));
    out.clear();
    let scan = m <= SCAN;
    if !scan {
        set.reset(m);
    }
    if 2 * m as u64 <= a {
        while out.len() < m {
            let t = rng.below(a) as u32;
            let fresh = if scan { !contains_unsorted(out, t) } else { set.insert(u64::from(t)) };
            if fresh {
                out.push(t);
            }
        }
        return;
    }
    set.reset(m);
    for j in a - m as u64..a {
        let t = rng.below(j + 1);
        // t is new: take it; t was taken before: take j, which no earlier step could draw
        let pick = if set.insert(t) {
            t
        } else {
            set.insert(j);
            j
        };
        out.push(pick as u32);
    }
    for i in (1..out.len()).rev() {
        let k = rng.below(i as u64 + 1) as usize;
        out.swap(i, k);
    }
}

/// Whether `v` holds `x` (a branch-free scan of a short list).
#[inline]
pub(crate) fn contains_unsorted(v: &[u32], x: u32) -> bool {
    v.iter().fold(false, |hit, &e| hit | (e == x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_ids(p: &[u32], n: u32) -> Vec<u64> {
        (0..n).filter(|x| !p.contains(x)).map(u64::from).collect()
    }

    #[test]
    fn nth_free_enumerates_the_complement() {
        let long: Vec<u32> = (0..150).map(|i| i * 2 + u32::from(i > 70)).collect();
        for p in [vec![], vec![0], vec![1, 3], vec![0, 1, 2], vec![2, 5, 6, 7, 11], vec![9], long] {
            let n = p.last().map_or(12, |&l| l + 5);
            let free = free_ids(&p, n);
            for (j, &want) in free.iter().enumerate() {
                assert_eq!(nth_free(&p, j as u64), want, "p={p:?} j={j}");
            }
            for x in 0..n {
                assert_eq!(contains_sorted(&p, x), p.contains(&x));
            }
        }
    }

    #[test]
    fn distinct_below_is_a_uniform_permutation_prefix() {
        let mut set = SmallSet::default();
        let mut out = Vec::new();
        // every ordered pair (x, y) of 0..a with x != y, by rejection (a = 4), Floyd (a = 3)
        for a in [4u64, 3] {
            let outcomes = (a * (a - 1)) as u32;
            let mut counts = [[0u32; 4]; 4];
            for row in 0..1000 * outcomes as usize {
                let mut rng = Streams { seed: 3, epoch: 0, offset: 0 }.rng(row);
                distinct_below(&mut rng, a, 2, &mut set, &mut out);
                assert_ne!(out[0], out[1]);
                counts[out[0] as usize][out[1] as usize] += 1;
            }
            for (x, row) in counts.iter().enumerate().take(a as usize) {
                for (y, &c) in row.iter().enumerate().take(a as usize) {
                    if x != y {
                        assert!((850..1150).contains(&c), "a={a} {counts:?}");
                    }
                }
            }
        }
        // the long-list (hash set) path
        let mut rng = Streams::default().rng(1);
        distinct_below(&mut rng, 1000, 200, &mut set, &mut out);
        let mut all = out.clone();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200);
        let mut rng = Streams::default().rng(0);
        distinct_below(&mut rng, 50, 50, &mut set, &mut out);
        let mut all = out.clone();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn small_set_inserts_once() {
        let mut s = SmallSet::default();
        s.reset(3);
        assert!(s.insert(5) && s.insert(7) && !s.insert(5) && !s.insert(7));
    }

    #[test]
    fn par_rows_reports_the_lowest_failing_row_for_any_thread_count() {
        for threads in [1, 2, 3] {
            let mut out = vec![0u64; 40_000];
            let err = par_rows(&mut out, 2, threads, None, |row, o: &mut [u64], _: &mut ()| {
                if row % 7_000 == 6_999 {
                    return Err(Error::param("row", format!("{row}")));
                }
                o.fill(row as u64);
                Ok(())
            })
            .unwrap_err();
            assert_eq!(err, Error::param("row", "6999"));
        }
        let mut out = vec![0u64; 40_000];
        par_rows(&mut out, 4, 2, None, |row, o: &mut [u64], _: &mut ()| {
            o.fill(row as u64);
            Ok(())
        })
        .unwrap();
        assert!(out.chunks(4).enumerate().all(|(r, c)| c.iter().all(|&x| x == r as u64)));
    }
}
