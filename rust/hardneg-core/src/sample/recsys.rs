//! Negative items for implicit-feedback recommendation: items a user never interacted with.
//!
//! [`Interactions`] holds each user's items sorted and unique (CSR, `u32` ids).
//! [`NegativeSampler`] draws, for each requested user, items outside that user's list:
//!
//! * **uniform**: the `j`-th free item for `j` uniform in `0..num_items - |P_u|` ([`nth_free`]):
//!   exact, one random number per negative, never a rejection whatever the user's activity.
//! * **popularity**: item `i` with probability proportional to `count_i^alpha` (`count_i` = users
//!   who interacted with `i`; items nobody interacted with are never drawn) among the user's free
//!   items. While the excluded mass (the user's items, plus the picks so far without replacement)
//!   is at most half the total, draws come from an alias table and excluded items are redrawn
//!   (at most two tries expected); beyond that the draw inverts the cumulative weights of the free
//!   items directly (a binary search over the items with the excluded mass subtracted), so a heavy
//!   user never loops. Both give exactly the target distribution.
//! * **without replacement**: uniform by Floyd's subset sampling (then shuffled); popularity by
//!   successive weighted draws (each pick removed from the remaining mass), which is what
//!   `numpy.random.Generator.choice(..., replace=False, p=...)` draws.
//!
//! Hard negatives ([`NegativeSampler::hard`]): with a pool, the `pool` items drawn as above
//! without replacement are scored against the user's embedding and the best `num_negatives` kept
//! (dynamic negative sampling, Zhang et al. 2013); without a pool, the exact top-k over every item
//! the user never interacted with ([`crate::search`] with the user's items excluded).

use std::sync::atomic::AtomicBool;

use super::alias::{AliasTable, BATCH};
use super::{contains_sorted, distinct_below, nth_free, par_rows, zeroed_output, SmallSet, Streams};
use crate::error::{Error, Result};
use crate::exclude::{dedup_sorted, Exclusions};
use crate::matrix::{check_finite, finite_inverse_norms, normalize_rows, MatrixRef};
use crate::mine::rng::Rng;
use crate::topk::{pair_score, resolve_threads, search, Isa, Kernel, SearchOptions};

/// Each user's items, sorted and unique.
#[derive(Clone, Debug)]
pub struct Interactions {
    num_items: usize,
    offsets: Vec<usize>,
    items: Vec<u32>,
}

impl Interactions {
    /// From `(users[i], items[i])` pairs; repeated pairs count once.
    pub fn from_pairs(users: &[i64], items: &[i64], num_users: usize, num_items: usize, threads: usize) -> Result<Self> {
        check_counts(num_users, num_items)?;
        if users.len() != items.len() {
            return Err(Error::param("interactions", format!("{} users but {} items; give one item per user", users.len(), items.len())));
        }
        for (i, (&u, &it)) in users.iter().zip(items).enumerate() {
            if u < 0 || u as u64 >= num_users as u64 {
                return Err(Error::OutOfRange { what: "user id of interactions", position: i, id: u, n: num_users, fix: "raise num_users or drop that pair" });
            }
            if it < 0 || it as u64 >= num_items as u64 {
                return Err(Error::OutOfRange { what: "item id of interactions", position: i, id: it, n: num_items, fix: "raise num_items or drop that pair" });
            }
        }
        if items.len() > u32::MAX as usize {
            return Err(Error::param("interactions", format!("at most {} pairs at once, got {}; pass a CSR matrix", u32::MAX, items.len())));
        }
        // Pairs grouped by user (a counting sort, as clusters group rows).
        let (offsets, order) = crate::cluster::rows_by_cluster(users, num_users);
        let grouped = order.iter().map(|&i| items[i as usize] as u32).collect();
        Ok(sorted_rows(num_items, offsets, grouped, threads))
    }

    /// From CSR arrays: user `u` owns `items[offsets[u]..offsets[u + 1]]`; repeats count once.
    pub fn from_csr(offsets: &[i64], items: &[i64], num_items: usize, threads: usize) -> Result<Self> {
        if offsets.first() != Some(&0) || *offsets.last().unwrap_or(&0) as u64 != items.len() as u64 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::param("interactions", "CSR offsets (indptr) must start at 0, never decrease and end at the number of items"));
        }
        check_counts(offsets.len() - 1, num_items)?;
        if let Some(i) = items.iter().position(|&it| it < 0 || it as u64 >= num_items as u64) {
            return Err(Error::OutOfRange { what: "item id of interactions", position: i, id: items[i], n: num_items, fix: "raise num_items or drop that entry" });
        }
        let offsets = offsets.iter().map(|&o| o as usize).collect();
        Ok(sorted_rows(num_items, offsets, items.iter().map(|&it| it as u32).collect(), threads))
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.num_items
    }

    /// Number of distinct (user, item) pairs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no user has an item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The sorted, unique items of `user`.
    #[inline]
    pub fn items_of(&self, user: usize) -> &[u32] {
        &self.items[self.offsets[user]..self.offsets[user + 1]]
    }

    /// The CSR arrays `(offsets, items)`.
    pub fn csr(&self) -> (&[usize], &[u32]) {
        (&self.offsets, &self.items)
    }

    /// Number of users who interacted with each item.
    pub fn item_counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.num_items];
        for &it in &self.items {
            c[it as usize] += 1;
        }
        c
    }
}

fn check_counts(num_users: usize, num_items: usize) -> Result<()> {
    if num_users < 1 {
        return Err(Error::param("num_users", "there must be at least one user"));
    }
    if num_items < 1 || num_items > u32::MAX as usize {
        return Err(Error::param("num_items", format!("num_items must be between 1 and {}, got {num_items}", u32::MAX)));
    }
    Ok(())
}

/// Sorts and de-duplicates every row (rows split over threads), then compacts the rows.
fn sorted_rows(num_items: usize, offsets: Vec<usize>, mut items: Vec<u32>, threads: usize) -> Interactions {
    let users = offsets.len() - 1;
    let mut lens = vec![0usize; users];
    let threads = if items.len() < 1 << 16 { 1 } else { resolve_threads(threads).clamp(1, users) };
    let per = users.div_ceil(threads);
    std::thread::scope(|s| {
        let (mut rest_items, mut rest_lens) = (&mut items[..], &mut lens[..]);
        for u0 in (0..users).step_by(per) {
            let u1 = (u0 + per).min(users);
            let (mine, r) = std::mem::take(&mut rest_items).split_at_mut(offsets[u1] - offsets[u0]);
            rest_items = r;
            let (my_lens, rl) = std::mem::take(&mut rest_lens).split_at_mut(u1 - u0);
            rest_lens = rl;
            let offsets = &offsets;
            s.spawn(move || {
                for (k, u) in (u0..u1).enumerate() {
                    let row = &mut mine[offsets[u] - offsets[u0]..offsets[u + 1] - offsets[u0]];
                    row.sort_unstable();
                    my_lens[k] = dedup_sorted(row);
                }
            });
        }
    });
    let mut new_offsets = Vec::with_capacity(users + 1);
    new_offsets.push(0);
    let mut w = 0;
    for u in 0..users {
        items.copy_within(offsets[u]..offsets[u] + lens[u], w);
        w += lens[u];
        new_offsets.push(w);
    }
    items.truncate(w);
    items.shrink_to_fit();
    Interactions { num_items, offsets: new_offsets, items }
}

/// How negatives are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// Every free item equally likely.
    Uniform,
    /// Free item `i` with probability proportional to `count_i^alpha`.
    Popularity {
        /// The exponent (`>= 0`; word2vec's 0.75 is the usual choice).
        alpha: f64,
    },
}

/// Popularity weights and the structures that draw from them.
#[derive(Clone, Debug)]
struct Popularity {
    alias: AliasTable,
    weights: Vec<f64>,
    /// `prefix[i]` = sum of `weights[..i]`.
    prefix: Vec<f64>,
    /// Sum of each user's own item weights (the mass its exclusions remove).
    user_mass: Vec<f64>,
    /// Items of positive weight.
    drawable: usize,
}

impl Popularity {
    fn new(inter: &Interactions, alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::param("alpha", format!("alpha must be a finite number >= 0 (0.75 is usual), got {alpha}")));
        }
        if inter.is_empty() {
            return Err(Error::param("strategy", "popularity sampling needs interactions to count; there are none (use strategy='uniform')"));
        }
        let weights: Vec<f64> = inter.item_counts().into_iter().map(|c| if c == 0 { 0.0 } else { (c as f64).powf(alpha) }).collect();
        let mut prefix = Vec::with_capacity(weights.len() + 1);
        prefix.push(0.0);
        let mut acc = 0.0;
        for &w in &weights {
            acc += w;
            prefix.push(acc);
        }
        let user_mass = (0..inter.num_users()).map(|u| inter.items_of(u).iter().map(|&i| weights[i as usize]).sum()).collect();
        let drawable = weights.iter().filter(|&&w| w > 0.0).count();
        Ok(Popularity { alias: AliasTable::new(&weights)?, weights, prefix, user_mass, drawable })
    }

    fn total(&self) -> f64 {
        self.prefix[self.weights.len()]
    }

    /// One draw with probability `w[x] / (sum of w over items not in ex)`, by inverting the
    /// cumulative weight of the free items. `ex` is sorted; `ex_prefix[i]` = sum of `w[ex[..i]]`.
    fn draw_excluding(&self, ex: &[u32], ex_prefix: &[f64], rng: &mut Rng) -> u32 {
        let n = self.weights.len();
        let free_mass = |y: usize| self.prefix[y] - ex_prefix[ex.partition_point(|&e| (e as usize) < y)];
        let avail = free_mass(n);
        loop {
            let u = rng.open01() * avail;
            // the smallest y with free_mass(y) > u; the item is y - 1
            let (mut lo, mut hi) = (1usize, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if free_mass(mid) > u {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let x = (lo - 1) as u32;
            // Only rounding at the very top of the range can land on an excluded item: draw again.
            if self.weights[x as usize] > 0.0 && !contains_sorted(ex, x) {
                return x;
            }
        }
    }
}

/// Options of [`NegativeSampler::sample`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Negatives per user (`>= 1`).
    pub num_negatives: usize,
    /// Draw with replacement (a row may repeat an item) or not.
    pub replace: bool,
    /// Seed, epoch and row offset of the random streams.
    pub streams: Streams,
    /// Worker threads (0 = every core).
    pub threads: usize,
}

/// Options of [`NegativeSampler::hard`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardOptions {
    /// Negatives per user (`>= 1`).
    pub num_negatives: usize,
    /// `Some(p)`: the best of `p` drawn candidates (DNS); `None`: the exact top-k over all free items.
    pub pool: Option<usize>,
    /// Score by cosine instead of inner product.
    pub cosine: bool,
    /// Seed, epoch and row offset of the random streams (used with a pool).
    pub streams: Streams,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Force an instruction set for the search (tests); `None` picks the best.
    pub isa: Option<Isa>,
}

/// Per-thread buffers of the row loops.
#[derive(Default)]
struct Scratch {
    set: SmallSet,
    positions: Vec<u32>,
    drawn: Vec<u32>,
    ex: Vec<u32>,
    ex_prefix: Vec<f64>,
    scored: Vec<(f32, u32)>,
}

/// Draws negative items for users; see the module documentation.
#[derive(Clone, Debug)]
pub struct NegativeSampler {
    inter: Interactions,
    pop: Option<Popularity>,
}

impl NegativeSampler {
    /// A sampler over `inter` with the given strategy.
    pub fn new(inter: Interactions, strategy: Strategy) -> Result<Self> {
        let pop = match strategy {
            Strategy::Uniform => None,
            Strategy::Popularity { alpha } => Some(Popularity::new(&inter, alpha)?),
        };
        Ok(NegativeSampler { inter, pop })
    }

    /// The interactions the sampler excludes.
    pub fn interactions(&self) -> &Interactions {
        &self.inter
    }

    /// The probability of each item in one draw before a user's own items are excluded
    /// (uniform: `1 / num_items`; popularity: `count^alpha / sum`).
    pub fn probabilities(&self) -> Vec<f64> {
        match &self.pop {
            None => vec![1.0 / self.inter.num_items as f64; self.inter.num_items],
            Some(p) => p.weights.iter().map(|w| w / p.total()).collect(),
        }
    }

    /// Items `user` can be given as negatives.
    fn available(&self, user: usize) -> usize {
        let drawable = self.pop.as_ref().map_or(self.inter.num_items, |p| p.drawable);
        // every item of a user has a count >= 1, hence a positive weight
        drawable - self.inter.items_of(user).len()
    }

    /// Checks every user id, and that each user has at least one negative, or `need` distinct
    /// ones when `distinct` (`name` is the parameter that asks for them).
    fn check_users(&self, users: &[i64], need: usize, distinct: bool, name: &'static str) -> Result<()> {
        let n = self.inter.num_users();
        let why = if self.pop.is_some() { " (popularity sampling only draws items that someone interacted with)" } else { "" };
        for (row, &u) in users.iter().enumerate() {
            if u < 0 || u as u64 >= n as u64 {
                return Err(Error::OutOfRange { what: "user id", position: row, id: u, n, fix: "pass users the sampler was built with" });
            }
            let avail = self.available(u as usize);
            if avail == 0 {
                return Err(Error::param(
                    "users",
                    format!("user {u} (position {row}) has interacted with every item it could be given{why}, so it has no negative; drop it from users"),
                ));
            }
            if distinct && avail < need {
                return Err(Error::param(
                    name,
                    format!(
                        "{name}={need} without replacement, but user {u} (position {row}) has only {avail} items it never interacted with{why}; \
                         lower {name}, sample with replace=True, or drop that user"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `num_negatives` items per user (row-major `[users.len(), num_negatives]`), none of them
    /// an item of that user.
    pub fn sample(&self, users: &[i64], opts: &SampleOptions, cancel: Option<&AtomicBool>) -> Result<Vec<i64>> {
        let m = opts.num_negatives;
        if m < 1 {
            return Err(Error::param("num_negatives", "num_negatives must be at least 1"));
        }
        self.check_users(users, m, !opts.replace, "num_negatives")?;
        let mut out = zeroed_output(users.len() * m);
        par_rows(&mut out, m, opts.threads, cancel, |row, o: &mut [i64], s: &mut Scratch| {
            let mut rng = opts.streams.rng(row);
            if opts.replace && self.pop.is_none() {
                uniform_with_replacement(self.inter.items_of(users[row] as usize), self.inter.num_items, &mut rng, o);
                return Ok(());
            }
            self.draw_row(users[row] as usize, &mut rng, m, opts.replace, s);
            for (o, &x) in o.iter_mut().zip(&s.drawn) {
                *o = i64::from(x);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// `m` negatives of `user` into `s.drawn`.
    fn draw_row(&self, user: usize, rng: &mut Rng, m: usize, replace: bool, s: &mut Scratch) {
        let p = self.inter.items_of(user);
        s.drawn.clear();
        let Some(pop) = &self.pop else {
            let free = (self.inter.num_items - p.len()) as u64;
            if replace {
                s.drawn.extend((0..m).map(|_| nth_free(p, rng.below(free)) as u32));
            } else {
                distinct_below(rng, free, m, &mut s.set, &mut s.positions);
                s.drawn.extend(s.positions.iter().map(|&j| nth_free(p, u64::from(j)) as u32));
            }
            return;
        };
        if !replace {
            s.set.reset(m);
        }
        let half = 0.5 * pop.total();
        let mut excluded_mass = pop.user_mass[user];
        let mut batch = [0u32; BATCH];
        while s.drawn.len() < m {
            if excluded_mass <= half {
                // Rejection from the alias table, a batch of candidates at a time.
                pop.alias.draw_into(rng, &mut batch);
                for &x in &batch {
                    if s.drawn.len() == m {
                        break;
                    }
                    if contains_sorted(p, x) || (!replace && !s.set.insert(u64::from(x))) {
                        continue;
                    }
                    s.drawn.push(x);
                    if !replace {
                        excluded_mass += pop.weights[x as usize];
                    }
                }
                continue;
            }
            // Most of the mass is excluded: invert the free items' cumulative weights instead.
            s.ex.clear();
            s.ex.extend_from_slice(p);
            if !replace {
                s.ex.extend_from_slice(&s.drawn);
                s.ex.sort_unstable();
            }
            exclusion_prefix(&pop.weights, &s.ex, &mut s.ex_prefix);
            while s.drawn.len() < m {
                let x = pop.draw_excluding(&s.ex, &s.ex_prefix, rng);
                s.drawn.push(x);
                if !replace {
                    let at = s.ex.partition_point(|&e| e < x);
                    s.ex.insert(at, x);
                    exclusion_prefix(&pop.weights, &s.ex, &mut s.ex_prefix);
                }
            }
        }
    }

    /// Hard negatives: row-major `[users.len(), num_negatives]` items, each row by descending score
    /// (ties: lower id), scored as `user_embeddings[row] . item_embeddings[item]` (or cosine).
    pub fn hard(&self, users: &[i64], queries: MatrixRef<'_>, items: MatrixRef<'_>, opts: &HardOptions, cancel: Option<&AtomicBool>) -> Result<Vec<i64>> {
        let m = opts.num_negatives;
        if m < 1 {
            return Err(Error::param("num_negatives", "num_negatives must be at least 1"));
        }
        if queries.rows() != users.len() {
            return Err(Error::RowCountMismatch { what: "user_embeddings", expected: users.len(), got: queries.rows() });
        }
        if items.rows() != self.inter.num_items {
            return Err(Error::param("item_embeddings", format!("has {} rows but there are {} items; give one row per item", items.rows(), self.inter.num_items)));
        }
        if queries.dim() != items.dim() {
            return Err(Error::DimensionMismatch { what: "user_embeddings", expected: items.dim(), got: queries.dim() });
        }
        let (need, name) = match opts.pool {
            Some(pool) if pool < m => return Err(Error::param("pool", format!("pool={pool} is smaller than num_negatives={m}; draw a pool at least that large"))),
            Some(pool) => (pool, "pool"),
            None => (m, "num_negatives"),
        };
        self.check_users(users, need, true, name)?;
        let threads = resolve_threads(opts.threads);
        let scale = if opts.cosine {
            Some(finite_inverse_norms("item_embeddings", items, threads)?)
        } else {
            check_finite("item_embeddings", items, threads)?;
            None
        };
        check_finite("user_embeddings", queries, threads)?;
        let normalized;
        let queries = if opts.cosine {
            let mut q = queries.data().to_vec();
            normalize_rows(&mut q, queries.dim());
            normalized = q;
            MatrixRef::new("user_embeddings", &normalized, queries.rows(), queries.dim())?
        } else {
            queries
        };
        let Some(pool) = opts.pool else {
            let ex = Exclusions::from_sorted_rows(users.iter().map(|&u| self.inter.items_of(u as usize)));
            let search_opts = SearchOptions { exclude: Some(&ex), threads, cancel, kernel: opts.isa.map(Kernel::from), row_scale: scale.as_deref(), ..SearchOptions::new(m) };
            return Ok(search(queries, items, &search_opts)?.ids);
        };
        let mut out = zeroed_output(users.len() * m);
        par_rows(&mut out, m, threads, cancel, |row, o: &mut [i64], s: &mut Scratch| {
            let mut rng = opts.streams.rng(row);
            self.draw_row(users[row] as usize, &mut rng, pool, false, s);
            let q = queries.row(row);
            s.scored.clear();
            s.scored.extend(s.drawn.iter().map(|&x| (pair_score(q, items.row(x as usize), scale.as_ref().map(|sc| sc[x as usize])), x)));
            s.scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (o, &(_, x)) in o.iter_mut().zip(&s.scored) {
                *o = i64::from(x);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Uniform draws with replacement among the ids of `0..n` outside the sorted `p` (the hot loop of
/// BPR-style sampling): the same values as `nth_free(p, below(free))` per slot. A short `p` is
/// turned once into `p[i] - i` padded to a fixed width, so each draw's count is a fully unrolled
/// comparison the compiler vectorises, without a remainder loop.
fn uniform_with_replacement(p: &[u32], n: usize, rng: &mut Rng, out: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { uniform_with_replacement_avx2(p, n, rng, out) };
    }
    uniform_with_replacement_portable(p, n, rng, out)
}

/// [`uniform_with_replacement_portable`] compiled for AVX2 (8-lane compares, hardware popcount).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,bmi2")]
unsafe fn uniform_with_replacement_avx2(p: &[u32], n: usize, rng: &mut Rng, out: &mut [i64]) {
    uniform_with_replacement_portable(p, n, rng, out)
}

#[inline(always)]
fn uniform_with_replacement_portable(p: &[u32], n: usize, rng: &mut Rng, out: &mut [i64]) {
    let free = (n - p.len()) as u64;
    match p.len() {
        0 => out.iter_mut().for_each(|o| *o = rng.below(free) as i64),
        1..=8 => padded_counts::<8>(p, free, rng, out),
        9..=16 => padded_counts::<16>(p, free, rng, out),
        17..=32 => padded_counts::<32>(p, free, rng, out),
        33..=64 => padded_counts::<64>(p, free, rng, out),
        65..=128 => padded_counts::<128>(p, free, rng, out),
        _ => out.iter_mut().for_each(|o| *o = nth_free(p, rng.below(free)) as i64),
    }
}

#[inline(always)]
fn padded_counts<const W: usize>(p: &[u32], free: u64, rng: &mut Rng, out: &mut [i64]) {
    // padding u32::MAX never counts: draws are below free <= u32::MAX
    let mut shifted = [u32::MAX; W];
    for (i, (s, &x)) in shifted.iter_mut().zip(p).enumerate() {
        *s = x - i as u32;
    }
    for o in out {
        let j = rng.below(free) as u32;
        let below: u32 = shifted.iter().map(|&s| u32::from(s <= j)).sum();
        *o = i64::from(j) + i64::from(below);
    }
}

/// `prefix[i]` = sum of `weights[ex[..i]]`.
fn exclusion_prefix(weights: &[f64], ex: &[u32], prefix: &mut Vec<f64>) {
    prefix.clear();
    prefix.push(0.0);
    let mut acc = 0.0;
    for &e in ex {
        acc += weights[e as usize];
        prefix.push(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Interactions {
        // user 0: {1, 3}; user 1: {0..5} minus {4}; user 2: {}; user 3: {2}
        let pairs = [(0, 3), (0, 1), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (1, 5), (3, 2)];
        let (u, i): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        Interactions::from_pairs(&u, &i, 4, 6, 2).unwrap()
    }

    fn opts(m: usize, replace: bool, seed: u64) -> SampleOptions {
        SampleOptions { num_negatives: m, replace, streams: Streams { seed, epoch: 0, offset: 0 }, threads: 1 }
    }

    #[test]
    fn the_uniform_fast_path_equals_nth_free_for_every_width() {
        for len in [0usize, 1, 5, 8, 9, 16, 17, 40, 64, 65, 100, 128, 129, 300] {
            let p: Vec<u32> = (0..len as u32).map(|i| i * 3 + (i % 2)).collect();
            let n = 3 * len + 10;
            let mut fast = vec![0i64; 500];
            let mut portable = vec![0i64; 500];
            uniform_with_replacement(&p, n, &mut Rng::for_query(1, len as u64), &mut fast);
            uniform_with_replacement_portable(&p, n, &mut Rng::for_query(1, len as u64), &mut portable);
            let mut rng = Rng::for_query(1, len as u64);
            let free = (n - len) as u64;
            let want: Vec<i64> = (0..500).map(|_| nth_free(&p, rng.below(free)) as i64).collect();
            assert_eq!(fast, want, "len {len}");
            assert_eq!(portable, want, "len {len}");
        }
    }

    #[test]
    fn pairs_and_csr_build_the_same_sorted_rows() {
        let a = toy();
        assert_eq!(a.items_of(0), &[1, 3]);
        assert_eq!(a.items_of(1), &[0, 1, 2, 3, 5]);
        assert!(a.items_of(2).is_empty());
        assert_eq!(a.len(), 8);
        let b = Interactions::from_csr(&[0, 3, 8, 8, 9], &[3, 1, 3, 5, 3, 2, 1, 0, 2], 6, 1).unwrap();
        assert_eq!(a.csr(), b.csr());
        assert_eq!(a.item_counts(), vec![1, 2, 2, 2, 0, 1]);
    }

    #[test]
    fn never_returns_a_positive_for_any_strategy_or_mode() {
        for strategy in [Strategy::Uniform, Strategy::Popularity { alpha: 0.75 }, Strategy::Popularity { alpha: 3.0 }] {
            let s = NegativeSampler::new(toy(), strategy).unwrap();
            for seed in 0..50 {
                // user 1's only free item (4) has no interaction, so popularity cannot serve it
                let users = if s.pop.is_some() { [0i64, 2, 3, 0, 3] } else { [0i64, 1, 3, 0, 2] };
                let m = if s.pop.is_some() { 2 } else { 1 };
                for replace in [true, false] {
                    let out = s.sample(&users, &opts(m, replace, seed), None).unwrap();
                    for (row, &u) in users.iter().enumerate() {
                        let got = &out[row * m..(row + 1) * m];
                        for &x in got {
                            assert!(!s.inter.items_of(u as usize).contains(&(x as u32)), "{strategy:?} user {u} got {x}");
                            if s.pop.is_some() {
                                assert_ne!(x, 4, "item 4 has no interaction");
                            }
                        }
                        if !replace && m == 2 {
                            assert_ne!(got[0], got[1]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn heavy_users_use_the_exact_path_and_follow_the_weights() {
        // user 0 holds the two heaviest items (most of the mass): the inversion path draws.
        let mut users = vec![0i64, 0];
        let mut items = vec![0i64, 1];
        for u in 1..40 {
            users.extend([u, u]);
            items.extend([0, 1]);
            if u < 10 {
                users.push(u);
                items.push(2 + (u % 3));
            }
        }
        let inter = Interactions::from_pairs(&users, &items, 40, 5, 1).unwrap();
        let s = NegativeSampler::new(inter, Strategy::Popularity { alpha: 1.0 }).unwrap();
        let pop = s.pop.as_ref().unwrap();
        assert!(pop.user_mass[0] > 0.5 * pop.total());
        // counts: item 0: 40, 1: 40, 2: 3, 3: 3, 4: 3 -> user 0 draws 2, 3, 4 equally
        let rows = vec![0i64; 30_000];
        let out = s.sample(&rows, &opts(1, true, 9), None).unwrap();
        let mut c = [0u32; 5];
        for &x in &out {
            c[x as usize] += 1;
        }
        assert_eq!((c[0], c[1]), (0, 0));
        for &k in &c[2..] {
            assert!((9_400..10_600).contains(&k), "{c:?}");
        }
        // without replacement all three free items come out, each once
        let out = s.sample(&[0], &opts(3, false, 1), None).unwrap();
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 3, 4]);
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let n_users = 3000;
        let users: Vec<i64> = (0..60_000).map(|i| (i * 7919) % n_users).collect();
        let items: Vec<i64> = (0..60_000).map(|i| (i * i + 3 * i) % 997).collect();
        let inter = Interactions::from_pairs(&users, &items, n_users as usize, 1000, 3).unwrap();
        for strategy in [Strategy::Uniform, Strategy::Popularity { alpha: 0.5 }] {
            let s = NegativeSampler::new(inter.clone(), strategy).unwrap();
            let batch: Vec<i64> = (0..n_users).collect();
            for replace in [true, false] {
                let one = s.sample(&batch, &SampleOptions { threads: 1, ..opts(20, replace, 5) }, None).unwrap();
                let three = s.sample(&batch, &SampleOptions { threads: 3, ..opts(20, replace, 5) }, None).unwrap();
                assert_eq!(one, three);
                // a chunk with the right offset draws the same rows
                let tail = SampleOptions { streams: Streams { seed: 5, epoch: 0, offset: 1000 }, ..opts(20, replace, 5) };
                assert_eq!(s.sample(&batch[1000..], &tail, None).unwrap(), one[1000 * 20..]);
            }
        }
    }

    #[test]
    fn hard_pool_is_the_best_of_the_sampled_pool_and_topk_is_exact() {
        let s = NegativeSampler::new(toy(), Strategy::Uniform).unwrap();
        let item_emb: Vec<f32> = (0..6).map(|i| i as f32).collect(); // 1-d: score = q * i
        let items = MatrixRef::new("items", &item_emb, 6, 1).unwrap();
        let q = [1.0f32, -1.0];
        let queries = MatrixRef::new("q", &q, 2, 1).unwrap();
        let users = [0i64, 3];
        let hard = |pool| HardOptions { num_negatives: 2, pool, cosine: false, streams: Streams::default(), threads: 1, isa: None };
        assert_eq!(s.hard(&users, queries, items, &hard(None), None).unwrap(), vec![5, 4, 0, 1]);
        let pooled = s.hard(&users, queries, items, &hard(Some(3)), None).unwrap();
        let drawn = s.sample(&users, &opts(3, false, 0), None).unwrap();
        for (row, sign) in [(0usize, 1i64), (1, -1)] {
            let mut pool: Vec<i64> = drawn[row * 3..row * 3 + 3].to_vec();
            pool.sort_by_key(|&x| -sign * x);
            assert_eq!(&pooled[row * 2..row * 2 + 2], &pool[..2]);
        }
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let s = NegativeSampler::new(toy(), Strategy::Uniform).unwrap();
        assert!(matches!(s.sample(&[4], &opts(1, true, 0), None), Err(Error::OutOfRange { what: "user id", id: 4, .. })));
        // user 1 has one free item (4)
        assert!(s.sample(&[1], &opts(3, true, 0), None).is_ok());
        assert!(matches!(s.sample(&[1], &opts(2, false, 0), None), Err(Error::InvalidParameter { name: "num_negatives", .. })));
        assert!(matches!(Interactions::from_pairs(&[0], &[6], 1, 6, 1), Err(Error::OutOfRange { id: 6, .. })));
        assert!(matches!(Interactions::from_pairs(&[-1], &[0], 1, 6, 1), Err(Error::OutOfRange { id: -1, .. })));
        let full = Interactions::from_pairs(&[0, 0], &[0, 1], 1, 2, 1).unwrap();
        let s = NegativeSampler::new(full, Strategy::Uniform).unwrap();
        assert!(matches!(s.sample(&[0], &opts(1, true, 0), None), Err(Error::InvalidParameter { name: "users", .. })));
        assert!(matches!(NegativeSampler::new(toy(), Strategy::Popularity { alpha: f64::NAN }), Err(Error::InvalidParameter { name: "alpha", .. })));
    }
}
