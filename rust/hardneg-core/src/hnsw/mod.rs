//! Approximate top-k on an HNSW graph (the usearch library) with [`crate::search`]'s output:
//! scores (not distances), rows by descending score with ties by the lower id, per-query
//! exclusions that never occupy a result slot, and `-1` padding (score NaN) instead of usearch's
//! key 0.
//!
//! * Build: rows are added in a seeded random order by hardneg's own threads. usearch gives every
//!   concurrent call a *thread slot* and fails (instead of waiting) when none is free, so every
//!   call here first takes a permit of [`Slots`], sized like the slots reserved in usearch.
//!   Parallel adds can leave nodes that no edge points to (usearch issue #735), and pruning can
//!   too; [`HnswIndex::finish_build`] finds level-0 nodes of in-degree 0 and re-inserts them.
//! * Graph distances: usearch's portable kernels are replaced by hardneg's SIMD inner products
//!   ([`metric`], float32 and bfloat16 storage), summed in one order on every CPU.
//! * Search: a float32 index with its corpus searches with hardneg's own walk over the graph
//!   usearch built ([`walk`]: batched, prefetched row loads), ranking rows by an int8 copy of
//!   the corpus ([`codes`]: a quarter of the bytes, VNNI products) and rescoring the best `2k`
//!   of its `ef` candidates in float32; others call usearch's
//!   `filtered_search` with the query's exclusions as predicate. Either way excluded nodes are
//!   walked through but never fill a slot. With `rescore`, the candidates are scored again
//!   exactly with [`crate::topk::pair_scores`] against the float32 rows, so the scores are
//!   bit-identical to [`crate::search`]'s for the same pairs.
//! * Files: [`file`] wraps usearch's format in a header of ours (kind, versions, checksum).

mod codes;
mod file;
mod metric;
mod walk;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::index::{F32Rows, Metric, SearchParams, Searcher};
use crate::matrix::{self, MatrixRef};
use crate::topk::{pair_scores, resolve_threads, TopK};

/// How an [`HnswIndex`] stores its vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// 4 bytes per value: exact.
    F32,
    /// 2 bytes per value.
    Bf16,
    /// 1 byte per value; usearch keeps each row's direction only (rows are scaled to unit length).
    I8,
}

impl Storage {
    /// The name users pass (`"float32"`, `"bfloat16"`, `"int8"`).
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "float32",
            Storage::Bf16 => "bfloat16",
            Storage::I8 => "int8",
        }
    }

    /// Parses [`Storage::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Storage::F32),
            "bfloat16" => Ok(Storage::Bf16),
            "int8" => Ok(Storage::I8),
            other => Err(Error::param("storage", format!("storage must be 'float32', 'bfloat16' or 'int8', got {other:?}"))),
        }
    }

    fn scalar(self) -> ScalarKind {
        match self {
            Storage::F32 => ScalarKind::F32,
            Storage::Bf16 => ScalarKind::BF16,
            Storage::I8 => ScalarKind::I8,
        }
    }

    /// How many candidates per result a rescoring search takes from the graph: int8 misorders
    /// near neighbours more, so it over-fetches more (measured: 4x brings i8 to f32's recall).
    /// float32 indexes walk by int8 codes too, but with one scale per dimension fitted to the
    /// corpus and the query quantised after absorbing them; there 2x reached the recall of 3x,
    /// 4x and 5x on real and clustered embeddings.
    fn overfetch(self) -> usize {
        match self {
            Storage::I8 => 4,
            _ => 2,
        }
    }
}

/// Parameters of an [`HnswIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Similarity.
    pub metric: Metric,
    /// Vector storage.
    pub storage: Storage,
    /// Edges per node on the upper levels (twice that on level 0).
    pub connectivity: usize,
    /// Candidate list size while inserting (higher: better graph, slower build).
    pub expansion_add: usize,
    /// Default candidate list size while searching (at least `k`; higher: better recall).
    pub expansion_search: usize,
    /// Seed of the insertion order.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { metric: Metric::InnerProduct, storage: Storage::F32, connectivity: 16, expansion_add: 128, expansion_search: 128, seed: 0 }
    }
}

impl HnswParams {
    fn check(&self) -> Result<()> {
        if !(2..=1024).contains(&self.connectivity) {
            return Err(Error::param("connectivity", format!("connectivity must be in 2..=1024, got {}", self.connectivity)));
        }
        if self.expansion_add < 1 {
            return Err(Error::param("expansion_add", "expansion_add must be at least 1"));
        }
        if self.expansion_search < 1 {
            return Err(Error::param("expansion_search", "expansion_search must be at least 1"));
        }
        Ok(())
    }

    fn options(&self, dim: usize) -> IndexOptions {
        IndexOptions {
            dimensions: dim,
            // Cosine rows are stored normalised, so the inner product is their cosine. int8 rows
            // are scaled to unit length by usearch, so their inner product is a cosine as well;
            // usearch's cosine kernel returns it on the usual scale (not in raw integer units).
            metric: if self.storage == Storage::I8 { MetricKind::Cos } else { MetricKind::IP },
            quantization: self.storage.scalar(),
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            // Every search passes its own expansion as the wanted count (usearch searches with
            // max(config, wanted)), so the expansion is a per-call setting and calls stay
            // independent of each other.
            expansion_search: 1,
            multi: false,
        }
    }
}

/// Counting semaphore in front of usearch's thread slots: a call waits for a permit instead of
/// failing with "Reserve capacity ahead of searches!".
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Self {
        Slots { free: Mutex::new(n), freed: Condvar::new() }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }

    /// Adds permits (only while no call runs).
    fn grow(&self, by: usize) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The float32 rows candidates are rescored against.
#[derive(Clone, Copy)]
enum Vectors<'v> {
    /// The corpus the index was built from (with its inverse row norms for cosine): scores are
    /// bit-identical to [`crate::search`]'s.
    Corpus { rows: MatrixRef<'v>, inv_norms: Option<&'v [f32]> },
    /// The vectors stored in the index (float32 storage only): identical to the corpus for
    /// `ip`, its normalised rows for `cosine` (equal to within rounding).
    Stored,
}

/// What the orphan audit after a build found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Level-0 nodes with no incoming edge after the inserts.
    pub found: usize,
    /// Of those, still without an incoming edge after re-insertion (0 unless the graph is tiny).
    pub remaining: usize,
}

/// Per-call choices of [`HnswIndex::search_with`] beyond [`SearchParams`].
#[derive(Clone, Copy, Debug)]
pub struct HnswOptions {
    /// Candidate list size; `None` uses the index's `expansion_search`. Must be at least `k`.
    pub expansion_search: Option<usize>,
    /// Score the candidates exactly in float32 (else `1 - distance` of the stored vectors).
    pub rescore: bool,
}

impl Default for HnswOptions {
    fn default() -> Self {
        HnswOptions { expansion_search: None, rescore: true }
    }
}

const BUILDING: u8 = 0;
const READY: u8 = 1;

/// An HNSW index over `rows x dim` float32 vectors whose keys are the row ids.
///
/// It keeps the float32 corpus it was built from (owned or borrowed, as [`crate::FlatIndex`]
/// does) for exact rescoring; a loaded index may have it or not (see [`HnswIndex::load`]).
pub struct HnswIndex<'a> {
    // Declared before `map`: the index may view the mapped file and must be dropped first.
    index: Index,
    map: Option<memmap2::Mmap>,
    corpus: Option<Box<dyn F32Rows + 'a>>,
    /// Inverse row norms of the corpus (cosine only).
    inv_norms: Option<Vec<f32>>,
    params: HnswParams,
    rows: usize,
    dim: usize,
    /// Insertion order of the build (empty once loaded).
    order: Vec<u32>,
    added: AtomicUsize,
    state: AtomicU8,
    slots: Slots,
    /// Slots reserved in usearch while building (1 for a deterministic build).
    build_slots: usize,
    /// Slots reserved in usearch once built (searches).
    search_slots: usize,
    orphans: Mutex<OrphanReport>,
    /// The graph copied out for [`walk`] and the int8 codes of the corpus it ranks by (float32
    /// storage with the corpus attached), set once built.
    graph: std::sync::OnceLock<(walk::Graph, codes::Codes)>,
}

impl std::fmt::Debug for HnswIndex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("rows", &self.rows).field("dim", &self.dim).field("params", &self.params).finish()
    }
}

fn hnsw_err(e: impl std::fmt::Display) -> Error {
    Error::Hnsw(e.to_string())
}

/// Thread slots a built or loaded index reserves: enough for every core twice, so that searches
/// from several Python threads only wait for a permit when they oversubscribe the machine.
fn default_search_slots() -> usize {
    2 * resolve_threads(0)
}

/// Checks that `corpus` fits an index of `rows x dim` with `params` (finite values; for int8
/// storage with `ip`, rows of one length) and returns its inverse row norms for cosine.
fn check_corpus(corpus: MatrixRef<'_>, rows: usize, dim: usize, params: &HnswParams, threads: usize) -> Result<Option<Vec<f32>>> {
    if corpus.dim() != dim {
        return Err(Error::DimensionMismatch { what: "corpus", expected: dim, got: corpus.dim() });
    }
    if corpus.rows() != rows {
        return Err(Error::RowCountMismatch { what: "corpus", expected: rows, got: corpus.rows() });
    }
    let threads = resolve_threads(threads);
    if params.metric == Metric::InnerProduct && params.storage != Storage::I8 {
        matrix::check_finite("corpus", corpus, threads)?;
        return Ok(None);
    }
    let inv = matrix::finite_inverse_norms("corpus", corpus, threads)?;
    if params.metric == Metric::InnerProduct {
        // int8 keeps directions only: with `ip` over rows of different lengths the graph
        // would rank by cosine while the scores rank by inner product.
        let (lo, hi) = inv.iter().filter(|&&x| x > 0.0).fold((f32::MAX, 0.0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if hi > 0.0 && hi / lo > 1.01 {
            return Err(Error::param(
                "storage",
                format!(
                    "int8 storage keeps only the direction of each row, but metric='ip' over rows of lengths {:.3}..{:.3} also ranks by length; use metric='cosine', storage='bfloat16', or normalise the rows",
                    1.0 / hi,
                    1.0 / lo
                ),
            ));
        }
        return Ok(None);
    }
    Ok(Some(inv))
}

/// The corpus as a matrix (shape checked when it was attached).
fn rows_of<'c>(corpus: &'c (dyn F32Rows + '_), rows: usize, dim: usize) -> MatrixRef<'c> {
    MatrixRef::new("corpus", corpus.values(), rows, dim).expect("corpus shape checked when attached")
}

impl<'a> HnswIndex<'a> {
    /// An empty index over `corpus` (`rows x dim`, row-major; checked here), ready for
    /// [`Self::add_rows`]. A deterministic build reserves one usearch slot and adds from one
    /// thread: same seed, same graph, same file.
    pub fn new_empty(corpus: impl F32Rows + 'a, rows: usize, dim: usize, params: HnswParams, threads: usize, deterministic: bool) -> Result<Self> {
        params.check()?;
        let corpus: Box<dyn F32Rows + 'a> = Box::new(corpus);
        let m = MatrixRef::new("corpus", corpus.values(), rows, dim)?;
        if rows > u32::MAX as usize {
            return Err(Error::param("corpus", format!("an HnswIndex holds at most {} rows, got {rows}; shard the corpus", u32::MAX)));
        }
        let inv_norms = check_corpus(m, rows, dim, &params, threads)?;
        let build_slots = if deterministic { 1 } else { resolve_threads(threads) };
        let mut index = Index::new(&params.options(dim)).map_err(hnsw_err)?;
        metric::install(&mut index, dim);
        index.reserve_capacity_and_threads(rows, build_slots).map_err(hnsw_err)?;
        let mut order: Vec<u32> = (0..rows as u32).collect();
        crate::cluster::rng::Rng::new(params.seed).shuffle(&mut order);
        Ok(HnswIndex {
            index,
            map: None,
            corpus: Some(corpus),
            inv_norms,
            params,
            rows,
            dim,
            order,
            added: AtomicUsize::new(0),
            state: AtomicU8::new(BUILDING),
            slots: Slots::new(build_slots),
            build_slots,
            search_slots: default_search_slots().max(build_slots),
            orphans: Mutex::new(OrphanReport::default()),
            graph: std::sync::OnceLock::new(),
        })
    }

    /// Builds the whole index in one call ([`Self::new_empty`], [`Self::add_rows`],
    /// [`Self::finish_build`]).
    pub fn build(corpus: impl F32Rows + 'a, rows: usize, dim: usize, params: HnswParams, threads: usize, deterministic: bool) -> Result<Self> {
        let index = Self::new_empty(corpus, rows, dim, params, threads, deterministic)?;
        index.add_rows(rows, threads, None)?;
        index.finish_build(threads)?;
        Ok(index)
    }

    fn corpus(&self) -> Option<MatrixRef<'_>> {
        self.corpus.as_deref().map(|c| rows_of(c, self.rows, self.dim))
    }

    fn building_corpus(&self, what: &'static str) -> Result<MatrixRef<'_>> {
        if self.state.load(Ordering::Acquire) != BUILDING {
            return Err(Error::param(what, "the index is already built; build a new one to add rows"));
        }
        Ok(self.corpus().expect("an index being built has its corpus"))
    }

    /// Inserts the next `count` rows of the insertion order (fewer at the end) with `threads`
    /// threads; returns how many rows the index holds now. Call it in chunks to report progress.
    pub fn add_rows(&self, count: usize, threads: usize, cancel: Option<&AtomicBool>) -> Result<usize> {
        let corpus = self.building_corpus("add_rows")?;
        let start = self.added.load(Ordering::Acquire);
        let end = (start + count).min(self.rows);
        let order = &self.order[start..end];
        let workers = resolve_threads(threads).min(self.build_slots).min(order.len()).max(1);
        let next = AtomicUsize::new(0);
        let work = || -> Result<()> {
            let mut buf = vec![0.0f32; self.dim];
            loop {
                let a = next.fetch_add(64, Ordering::Relaxed);
                if a >= order.len() {
                    return Ok(());
                }
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(Error::Cancelled);
                }
                for &key in &order[a..(a + 64).min(order.len())] {
                    self.insert(key as u64, self.stored_form(corpus.row(key as usize), &mut buf))?;
                }
            }
        };
        run_workers(workers, &work)?;
        self.added.store(end, Ordering::Release);
        Ok(end)
    }

    /// The row as usearch stores it: normalised for cosine, as given otherwise.
    fn stored_form<'b>(&self, row: &'b [f32], buf: &'b mut [f32]) -> &'b [f32] {
        if self.params.metric == Metric::Cosine {
            buf.copy_from_slice(row);
            matrix::normalize_rows(buf, self.dim);
            buf
        } else {
            row
        }
    }

    fn insert(&self, key: u64, v: &[f32]) -> Result<()> {
        let _permit = self.slots.acquire();
        self.index.add(key, v).map_err(hnsw_err)
    }

    /// Ends the build: audits level 0 for nodes without an incoming edge and re-inserts them
    /// (up to three rounds), then reserves the search slots. Returns the audit's report.
    pub fn finish_build(&self, threads: usize) -> Result<OrphanReport> {
        let corpus = self.building_corpus("finish_build")?;
        if self.added.load(Ordering::Acquire) != self.rows {
            return Err(Error::param("finish_build", "add every row (add_rows) before finishing the build"));
        }
        let mut report = OrphanReport::default();
        let mut orphans = self.orphans_now(threads);
        report.found = orphans.len();
        let mut buf = vec![0.0f32; self.dim];
        for _round in 0..3 {
            if orphans.is_empty() {
                break;
            }
            // One at a time, in key order: a re-insert from a single thread cannot race.
            for &key in &orphans {
                self.index.remove(key).map_err(hnsw_err)?;
                self.insert(key, self.stored_form(corpus.row(key as usize), &mut buf))?;
            }
            orphans = self.orphans_now(threads);
        }
        report.remaining = orphans.len();
        self.index.reserve_capacity_and_threads(self.rows, self.search_slots).map_err(hnsw_err)?;
        self.slots.grow(self.search_slots.saturating_sub(self.build_slots));
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner()) = report;
        self.export_graph(threads);
        self.state.store(READY, Ordering::Release);
        Ok(report)
    }

    /// Copies the graph out for hardneg's own walk when it can serve the searches: float32
    /// storage with the float32 corpus attached (the walk scores against the corpus).
    fn export_graph(&self, threads: usize) {
        if self.params.storage == Storage::F32 && self.corpus.is_some() && self.graph.get().is_none() {
            let stride = 2 * self.index.connectivity().max(1) + 1;
            let parts = self.scan_level0(threads, || (Vec::new(), Vec::new()), |(adj, tall): &mut walk::Level0Part, key, edges| {
                walk::Graph::push_level0(adj, stride, edges);
                let level = self.index.level_of_key(key as u64);
                if level > 0 {
                    tall.push((key as u32, level));
                }
            });
            let graph = walk::Graph::new(&self.index, self.rows, stride, parts);
            let corpus = self.corpus().expect("checked above");
            let _ = self.graph.set((graph, codes::Codes::new(corpus, self.inv_norms.as_deref(), threads)));
        }
    }

    /// Bytes of the graph copy and the int8 codes hardneg's walk reads (0 when searches go
    /// through usearch).
    pub fn walk_memory(&self) -> usize {
        self.graph.get().map_or(0, |(g, c)| g.bytes() + c.bytes())
    }

    /// Keys of level-0 nodes that no level-0 edge points to (a graph of one node has none).
    pub fn orphans_now(&self, threads: usize) -> Vec<u64> {
        if self.index.size() <= 1 {
            return Vec::new();
        }
        let counts = self.scan_level0(threads, || vec![0u32; self.rows], |indeg, key, edges| {
            for &to in edges {
                if (to as usize) < self.rows && to as usize != key {
                    indeg[to as usize] += 1;
                }
            }
        });
        (0..self.rows).filter(|&i| self.index.contains(i as u64) && counts.iter().all(|c| c[i] == 0)).map(|i| i as u64).collect()
    }

    /// A 64-bit digest of the graph: the parameters and every node's level-0 edges. The same for
    /// an index in memory and its saved file, whatever `threads`; two builds that interleaved
    /// differently (parallel) get different digests. Mining jobs record it to refuse resuming
    /// over another graph.
    pub fn graph_digest(&self, threads: usize) -> Result<u64> {
        self.check_ready()?;
        let parts = self.scan_level0(threads, || 0u64, |sum, key, edges| {
            let node = edges.iter().fold(crate::mine::rng::mix64(key as u64 ^ 0xA076_1D64_78BD_642F), |h, &e| crate::mine::rng::mix64(h ^ e));
            *sum = sum.wrapping_add(node); // order-free: the split into threads does not matter
        });
        let p = &self.params;
        let head = [self.rows as u64, self.dim as u64, p.connectivity as u64, p.expansion_add as u64, p.expansion_search as u64, p.seed, file::metric_code(p.metric) as u64, file::storage_code(p.storage) as u64];
        let edges = parts.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        Ok(head.iter().chain([&edges]).fold(0u64, |h, &x| crate::mine::rng::mix64(h ^ x)))
    }

    /// Calls `visit(acc, key, level-0 edges)` for every node, the keys split into contiguous
    /// ranges over `threads` workers; returns each worker's accumulator.
    fn scan_level0<T: Send>(&self, threads: usize, make: impl Fn() -> T + Sync, visit: impl Fn(&mut T, usize, &[u64]) + Sync) -> Vec<T> {
        let threads = resolve_threads(threads).min(self.rows).max(1);
        let per = self.rows.div_ceil(threads);
        let conn0 = 2 * self.index.connectivity().max(1);
        let (make, visit) = (&make, &visit);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut acc = make();
                        let mut nb = vec![0u64; conn0 + 1];
                        for key in (t * per)..((t + 1) * per).min(self.rows) {
                            let mut it = self.index.neighbors(key as u64, 0);
                            if it.total() > nb.len() {
                                nb.resize(it.total(), 0);
                            }
                            let got = it.drain_into(&mut nb);
                            visit(&mut acc, key, &nb[..got]);
                        }
                        acc
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    }

    /// The parameters it was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// The orphan audit of the build (a loaded index reports its build's).
    pub fn orphan_report(&self) -> OrphanReport {
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes usearch holds for the graph and vectors (the mapped file's pages for a view), plus
    /// [`HnswIndex::walk_memory`]. The float32 corpus is not counted (the caller's, or mapped).
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage() + self.walk_memory()
    }

    /// Whether the index views a memory-mapped file.
    pub fn is_view(&self) -> bool {
        self.map.is_some()
    }

    /// Whether the float32 corpus is attached (built here, or loaded with one).
    pub fn has_corpus(&self) -> bool {
        self.corpus.is_some()
    }

    fn check_ready(&self) -> Result<()> {
        if self.state.load(Ordering::Acquire) != READY {
            return Err(Error::param("index", "the index is still being built; call finish_build first"));
        }
        Ok(())
    }

    /// Queries as the graph and the exact scores need them: normalised for cosine.
    fn prepare_queries<'q>(&self, queries: MatrixRef<'q>, threads: usize) -> Result<std::borrow::Cow<'q, [f32]>> {
        if queries.dim() != self.dim {
            return Err(Error::DimensionMismatch { what: "queries", expected: self.dim, got: queries.dim() });
        }
        matrix::check_finite("queries", queries, resolve_threads(threads))?;
        if self.params.metric == Metric::InnerProduct {
            return Ok(std::borrow::Cow::Borrowed(queries.data()));
        }
        let mut owned = queries.data().to_vec();
        matrix::normalize_rows(&mut owned, self.dim);
        Ok(std::borrow::Cow::Owned(owned))
    }

    /// What rescoring reads: the corpus when attached, else the stored float32 vectors.
    fn vectors(&self) -> Result<Vectors<'_>> {
        if let Some(rows) = self.corpus() {
            return Ok(Vectors::Corpus { rows, inv_norms: self.inv_norms.as_deref() });
        }
        if self.params.storage == Storage::F32 {
            return Ok(Vectors::Stored);
        }
        Err(Error::param(
            "rescore",
            format!(
                "this index stores {} vectors, so exact scores need the float32 corpus: pass corpus= when loading it, or search with rescore=False",
                self.params.storage.name()
            ),
        ))
    }

    /// [`Searcher::search`] with per-call choices: a candidate list size and whether to rescore.
    pub fn search_with(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>, opts: &HnswOptions) -> Result<TopK> {
        self.check_ready()?;
        let (nq, k) = (queries.rows(), params.k);
        if k < 1 {
            return Err(Error::param("k", format!("k must be at least 1, got {k}")));
        }
        let ef = opts.expansion_search.unwrap_or(self.params.expansion_search);
        if ef < k {
            return Err(Error::param(
                "expansion_search",
                format!("expansion_search={ef} is below k={k}; raise expansion_search to at least k (2 to 5 times k reaches recall 0.99 on sentence embeddings)"),
            ));
        }
        if let Some(ex) = params.exclude {
            if ex.rows() != nq {
                return Err(Error::RowCountMismatch { what: "exclude", expected: nq, got: ex.rows() });
            }
            if let Some((row, &bad)) = (0..nq).flat_map(|q| ex.row(q).iter().map(move |id| (q, id))).find(|&(_, &id)| id as usize >= self.rows) {
                return Err(Error::IdOutOfRange { what: "exclude", row, id: bad as i64, n: self.rows });
            }
        }
        let vectors = if opts.rescore { Some(self.vectors()?) } else { None };
        let q = self.prepare_queries(queries, params.threads)?;
        let qm = MatrixRef::new("queries", &q, nq, self.dim)?;
        let fetch = if opts.rescore { (k * self.params.storage.overfetch()).min(ef).max(k) } else { k };
        let mut scores = vec![f32::NAN; nq * k];
        let mut ids = vec![-1i64; nq * k];
        let workers = resolve_threads(params.threads).min(self.search_slots).min(nq).max(1);
        let per = nq.div_ceil(workers);
        std::thread::scope(|s| {
            let handles: Vec<_> = scores
                .chunks_mut(per * k)
                .zip(ids.chunks_mut(per * k))
                .enumerate()
                .map(|(t, (sc, id))| {
                    let vectors = vectors.as_ref();
                    s.spawn(move || -> Result<()> {
                        let mut scratch = Scratch::default();
                        for (j, (srow, irow)) in sc.chunks_mut(k).zip(id.chunks_mut(k)).enumerate() {
                            if params.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                                return Err(Error::Cancelled);
                            }
                            let qi = t * per + j;
                            let excluded = params.exclude.map(|e| e.row(qi)).unwrap_or(&[]);
                            let want = Want { k, ef, fetch };
                            self.search_one(qm.row(qi), excluded, want, vectors, &mut scratch, srow, irow)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        Ok(TopK { rows: nq, k, scores, ids })
    }

    #[allow(clippy::too_many_arguments)]
    fn search_one(
        &self,
        q: &[f32],
        excluded: &[u64],
        want: Want,
        vectors: Option<&Vectors<'_>>,
        scratch: &mut Scratch,
        out_scores: &mut [f32],
        out_ids: &mut [i64],
    ) -> Result<()> {
        let Want { k, ef, fetch } = want;
        let available = self.rows - excluded.len();
        let mut wanted = ef;
        // hardneg's walk when it has the graph and the corpus, else usearch's search
        let walk = match (self.graph.get(), vectors) {
            (Some((g, c)), Some(Vectors::Corpus { .. })) => Some((g, c)),
            _ => None,
        };
        let usearch_matches;
        let mut keys_buf = std::mem::take(&mut scratch.keys);
        let (keys, dists): (&[u64], Option<&[f32]>) = loop {
            let found = match &walk {
                Some((g, c)) => {
                    c.prepare(q, &mut scratch.code_query);
                    g.search(c, &scratch.code_query, wanted, excluded, &mut scratch.walk);
                    scratch.walk.out.len()
                }
                None => {
                    let _permit = self.slots.acquire();
                    // the predicate costs a call per visited node: plain search when nothing is excluded
                    let m = if excluded.is_empty() {
                        self.index.search(q, wanted)
                    } else {
                        self.index.filtered_search(q, wanted, |key| excluded.binary_search(&key).is_err())
                    }
                    .map_err(hnsw_err)?;
                    scratch.matches = Some(m);
                    scratch.matches.as_ref().map_or(0, |m| m.keys.len())
                }
            };
            // Short of k although the corpus has enough rows left: the walk ran out of candidates
            // (many exclusions near the query). Widen it; at `wanted >= rows` it sees all it can reach.
            if found >= k.min(available) || wanted >= self.rows {
                break match &walk {
                    Some(_) => {
                        keys_buf.clear();
                        keys_buf.extend(scratch.walk.out.iter().map(|&(_, id)| id));
                        (&keys_buf[..], None)
                    }
                    None => {
                        usearch_matches = scratch.matches.take().expect("a usearch search ran");
                        (&usearch_matches.keys[..], Some(&usearch_matches.distances[..]))
                    }
                };
            }
            wanted = (wanted * 2).min(self.rows);
        };
        let got = keys.len().min(fetch);
        let mut cands = std::mem::take(&mut scratch.cands);
        cands.clear();
        match vectors {
            Some(v) => {
                self.exact_scores(q, &keys[..got], v, scratch)?;
                cands.extend(scratch.scores.iter().zip(&keys[..got]).map(|(&s, &id)| (s, id)));
            }
            None => cands.extend(dists.expect("usearch distances")[..got].iter().zip(&keys[..got]).map(|(&d, &id)| (1.0 - d, id))),
        }
        scratch.cands = cands;
        scratch.keys = keys_buf;
        scratch.cands.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (j, &(s, id)) in scratch.cands.iter().take(k).enumerate() {
            out_scores[j] = s;
            out_ids[j] = id as i64;
        }
        Ok(())
    }

    /// Exact float32 scores of `keys` for the prepared query `q` into `scratch.scores`.
    fn exact_scores(&self, q: &[f32], keys: &[u64], vectors: &Vectors<'_>, scratch: &mut Scratch) -> Result<()> {
        scratch.scores.clear();
        scratch.scores.resize(keys.len(), 0.0);
        match *vectors {
            Vectors::Corpus { rows, inv_norms } => {
                let rs: Vec<&[f32]> = keys.iter().map(|&key| rows.row(key as usize)).collect();
                scratch.scales.clear();
                if let Some(inv) = inv_norms {
                    scratch.scales.extend(keys.iter().map(|&key| inv[key as usize]));
                }
                let scales = inv_norms.map(|_| &scratch.scales[..]);
                pair_scores(q, &rs, scales, &mut scratch.scores);
            }
            Vectors::Stored => {
                scratch.rows.resize(keys.len() * self.dim, 0.0);
                for (j, &key) in keys.iter().enumerate() {
                    self.index.get(key, &mut scratch.rows[j * self.dim..(j + 1) * self.dim]).map_err(hnsw_err)?;
                }
                let rs: Vec<&[f32]> = scratch.rows.chunks_exact(self.dim).collect();
                pair_scores(q, &rs, None, &mut scratch.scores);
            }
        }
        Ok(())
    }

    /// Tie-aware recall@k of a rescoring search against exact search over the attached corpus:
    /// the fraction of returned ids scoring at least the exact k-th score, over all queries.
    pub fn recall(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>, expansion_search: Option<usize>) -> Result<f64> {
        let corpus = self.corpus().ok_or_else(|| {
            Error::param("recall", "recall compares against exact search over the float32 corpus: pass corpus= when loading the index")
        })?;
        let approx = self.search_with(queries, params, &HnswOptions { expansion_search, rescore: true })?;
        let q = self.prepare_queries(queries, params.threads)?;
        let qm = MatrixRef::new("queries", &q, queries.rows(), self.dim)?;
        let exact_opts = crate::SearchOptions { exclude: params.exclude, threads: params.threads, cancel: params.cancel, row_scale: self.inv_norms.as_deref(), ..crate::SearchOptions::new(params.k) };
        let exact = crate::search(qm, corpus, &exact_opts)?;
        let k = params.k;
        let mut hits = 0usize;
        let mut total = 0usize;
        for i in 0..queries.rows() {
            let exact_row = &exact.ids[i * k..(i + 1) * k];
            // a query with fewer than k candidates counts only the ones it has
            let have = exact_row.iter().filter(|&&id| id >= 0).count();
            if have == 0 {
                continue;
            }
            let kth = exact.scores[i * k + have - 1];
            total += have;
            hits += approx.scores[i * k..(i + 1) * k].iter().zip(&approx.ids[i * k..(i + 1) * k]).filter(|&(&s, &id)| id >= 0 && s >= kth).count().min(have);
        }
        Ok(if total == 0 { 1.0 } else { hits as f64 / total as f64 })
    }
}

impl Searcher for HnswIndex<'_> {
    fn len(&self) -> usize {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.params.metric
    }

    /// Rescoring search at the index's `expansion_search`.
    fn search(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>) -> Result<TopK> {
        self.search_with(queries, params, &HnswOptions::default())
    }

    /// Exact scores of given ids, as a rescoring search scores them.
    fn score(&self, queries: MatrixRef<'_>, ids: &[i64], width: usize) -> Result<Vec<f32>> {
        self.check_ready()?;
        let vectors = self.vectors()?;
        let nq = queries.rows();
        if ids.len() != nq * width {
            return Err(Error::RowCountMismatch { what: "ids", expected: nq, got: ids.len().checked_div(width).unwrap_or(0) });
        }
        for (i, &id) in ids.iter().enumerate() {
            if id < -1 || id >= self.rows as i64 {
                return Err(Error::IdOutOfRange { what: "ids", row: i / width.max(1), id, n: self.rows });
            }
        }
        let q = self.prepare_queries(queries, 1)?;
        let mut out = vec![f32::NAN; ids.len()];
        let mut scratch = Scratch::default();
        for (r, (orow, irow)) in out.chunks_mut(width.max(1)).zip(ids.chunks(width.max(1))).enumerate() {
            let keys: Vec<u64> = irow.iter().filter(|&&id| id >= 0).map(|&id| id as u64).collect();
            self.exact_scores(&q[r * self.dim..(r + 1) * self.dim], &keys, &vectors, &mut scratch)?;
            let mut s = scratch.scores.iter();
            for (o, &id) in orow.iter_mut().zip(irow) {
                if id >= 0 {
                    *o = *s.next().expect("one score per id");
                }
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct Want {
    k: usize,
    ef: usize,
    fetch: usize,
}

#[derive(Default)]
struct Scratch {
    cands: Vec<(f32, u64)>,
    keys: Vec<u64>,
    matches: Option<usearch::ffi::Matches>,
    walk: walk::WalkScratch,
    code_query: codes::CodeQuery,
    scores: Vec<f32>,
    scales: Vec<f32>,
    rows: Vec<f32>,
}

/// Runs `work` on `workers` scoped threads (inline for one) and returns the first error.
fn run_workers(workers: usize, work: &(dyn Fn() -> Result<()> + Sync)) -> Result<()> {
    if workers <= 1 {
        return work();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rng::Rng;
    use crate::Exclusions;

    /// Unit-length clustered rows (random centres plus noise), like sentence embeddings: HNSW
    /// recall on pure noise says little, and inner-product graphs over rows of very different
    /// lengths leave short rows without incoming edges (the long ones win every comparison).
    fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut u = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let centres: Vec<f32> = (0..20 * d).map(|_| u()).collect();
        let mut rows: Vec<f32> = (0..n).flat_map(|i| (0..d).map(move |t| (i % 20, t)).collect::<Vec<_>>()).map(|(c, t)| centres[c * d + t] + 0.3 * u()).collect();
        crate::matrix::normalize_rows(&mut rows, d);
        rows
    }

    fn exact(q: MatrixRef<'_>, c: MatrixRef<'_>, k: usize, ex: Option<&Exclusions>, inv: Option<&[f32]>) -> TopK {
        crate::search(q, c, &crate::SearchOptions { exclude: ex, row_scale: inv, ..crate::SearchOptions::new(k) }).unwrap()
    }

    fn tie_recall(got: &TopK, want: &TopK) -> f64 {
        let k = got.k;
        let hits: usize = (0..got.rows).map(|i| got.scores[i * k..(i + 1) * k].iter().filter(|&&s| s >= want.scores[i * k + k - 1]).count()).sum();
        hits as f64 / (got.rows * k) as f64
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hardneg-hnsw-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_walk_copies_usearchs_graph() {
        let (n, d) = (2500, 16);
        let c = clustered(n, d, 4);
        let index = HnswIndex::build(c.as_slice(), n, d, HnswParams { connectivity: 8, ..HnswParams::default() }, 2, false).unwrap();
        let (g, codes) = index.graph.get().expect("float32 with its corpus walks");
        assert_eq!(codes.rows(), n);
        let mut nb = vec![0u64; 64];
        for key in 0..n as u64 {
            let got = index.index.neighbors(key, 0).drain_into(&mut nb);
            let want: Vec<u32> = nb[..got].iter().map(|&x| x as u32).collect();
            assert_eq!(g.level0_of(key as u32), &want[..], "node {key}");
        }
        let (top, entries) = g.top();
        assert!(top >= 1, "2,500 nodes reach level 1");
        let want: Vec<u32> = (0..n as u32).filter(|&k| index.index.level_of_key(k as u64) == top).collect();
        assert_eq!(entries, &want[..]);
        assert!((0..n as u64).all(|k| index.index.level_of_key(k) <= top));
        // level-0 lists (1 + 16 ids) and a 64-byte line of codes per row
        assert!(index.walk_memory() >= n * (17 * 4 + 64));
    }

    #[test]
    fn the_walk_finds_at_least_what_usearchs_search_finds() {
        let (n, d, nq, k) = (4000, 32, 200, 10);
        let c = clustered(n, d, 5);
        let q = clustered(nq, d, 6);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        // every 13th row, shifted per query: many exclusions near every query
        let ids: Vec<Vec<i64>> = (0..nq).map(|i| (0..n as i64).filter(|&j| (i as i64 * 7 + j) % 13 == 0).collect()).collect();
        let ex = Exclusions::from_rows("exclude", &ids, n).unwrap();
        for exclude in [None, Some(&ex)] {
            // one-thread build: the same graph on every machine, so the comparison cannot flake
            let mut index = HnswIndex::build(c.as_slice(), n, d, HnswParams { connectivity: 8, ..HnswParams::default() }, 1, true).unwrap();
            let want = exact(qm, cm, k, exclude, None);
            for ef in [16, 64] {
                let opts = HnswOptions { expansion_search: Some(ef), rescore: true };
                let p = SearchParams { exclude, ..SearchParams::new(k) };
                let walked = index.search_with(qm, &p, &opts).unwrap();
                let graph = index.graph.take().expect("walk");
                let usearched = index.search_with(qm, &p, &opts).unwrap();
                index.graph.set(graph).ok().expect("empty again");
                let (rw, ru) = (tie_recall(&walked, &want), tie_recall(&usearched, &want));
                assert!(rw >= ru - 0.01, "ef {ef} exclude {}: walk {rw} usearch {ru}", exclude.is_some());
                if let Some(e) = exclude {
                    for i in 0..nq {
                        assert!(walked.ids[i * k..(i + 1) * k].iter().all(|&id| id >= 0 && e.row(i).binary_search(&(id as u64)).is_err()));
                    }
                }
            }
        }
    }

    #[test]
    fn rescored_search_matches_exact_scores_and_order() {
        let (n, d) = (3000, 24);
        let c = clustered(n, d, 1);
        let q = clustered(50, d, 9);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let qm = MatrixRef::new("queries", &q, 50, d).unwrap();
        // one-thread build: the same graph on every machine, so the recall bound cannot flake
        let index = HnswIndex::build(c.as_slice(), n, d, HnswParams::default(), 1, true).unwrap();
        assert_eq!(index.orphan_report().remaining, 0);
        assert_eq!((index.len(), index.dim(), index.metric()), (n, d, Metric::InnerProduct));
        let got = index.search(qm, &SearchParams::new(10)).unwrap();
        // scores are the exact scores of the returned ids, rows sorted with ties by the lower id
        assert_eq!(bits(&got.scores), bits(&crate::score_ids(qm, cm, None, &got.ids, 10).unwrap()));
        assert_eq!(bits(&got.scores), bits(&index.score(qm, &got.ids, 10).unwrap()));
        for i in 0..50 {
            let row: Vec<(f32, i64)> = (0..10).map(|j| (got.scores[i * 10 + j], got.ids[i * 10 + j])).collect();
            assert!(row.windows(2).all(|w| w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)), "{row:?}");
        }
        let r = tie_recall(&got, &exact(qm, cm, 10, None, None));
        assert!(r >= 0.97, "recall {r}");
        assert_eq!(index.recall(qm, &SearchParams::new(10), None).unwrap(), r);
        // without rescoring the scores are 1 - distance, close to the exact ones
        let raw = index.search_with(qm, &SearchParams::new(10), &HnswOptions { rescore: false, ..HnswOptions::default() }).unwrap();
        let exact_raw = crate::score_ids(qm, cm, None, &raw.ids, 10).unwrap();
        assert!(raw.scores.iter().zip(&exact_raw).all(|(a, b)| (a - b).abs() < 1e-4));
        // the results do not depend on the thread count
        assert_eq!(index.search(qm, &SearchParams { threads: 1, ..SearchParams::new(10) }).unwrap(), got);
    }

    #[test]
    fn exclusions_are_never_returned_and_rows_stay_full() {
        let (n, d) = (1500, 16);
        let c = clustered(n, d, 1);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let qm = cm.slice_rows(0, 40);
        // each query excludes itself and its 30 exact nearest neighbours
        let near = exact(qm, cm, 30, None, None);
        let rows: Vec<Vec<i64>> = (0..40).map(|i| near.ids[i * 30..(i + 1) * 30].to_vec()).collect();
        let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
        for storage in [Storage::F32, Storage::Bf16, Storage::I8] {
            let params = HnswParams { storage, metric: Metric::Cosine, ..HnswParams::default() };
            // one-thread builds: the same graphs on every machine, so the recall bound cannot flake
            let index = HnswIndex::build(c.as_slice(), n, d, params, 1, true).unwrap();
            let got = index.search(qm, &SearchParams { exclude: Some(&ex), ..SearchParams::new(20) }).unwrap();
            for i in 0..40 {
                for &id in &got.ids[i * 20..(i + 1) * 20] {
                    assert!(id >= 0 && !ex.contains(i, id as u64), "{storage:?} query {i} got {id}");
                }
            }
            let flat = crate::FlatIndex::new(c.as_slice(), n, d, Metric::Cosine, 1).unwrap();
            let want = flat.search(qm, &SearchParams { exclude: Some(&ex), ..SearchParams::new(20) }).unwrap();
            let r = tie_recall(&got, &want);
            assert!(r >= 0.95, "{storage:?} recall {r}");
            // rescored cosine scores are FlatIndex's, bit for bit
            assert_eq!(bits(&got.scores), bits(&flat.score(qm, &got.ids, 20).unwrap()));
        }
    }

    #[test]
    fn short_rows_are_padded_with_minus_one() {
        let (n, d) = (12, 4);
        let c = clustered(n, d, 1);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(c.as_slice(), n, d, HnswParams::default(), 1, true).unwrap();
        let ex = Exclusions::from_rows("exclude", &[(0..9).collect(), vec![]], n).unwrap();
        let got = index.search(cm.slice_rows(0, 2), &SearchParams { exclude: Some(&ex), ..SearchParams::new(5) }).unwrap();
        let mut first: Vec<i64> = got.ids[..3].to_vec();
        first.sort();
        assert_eq!(first, vec![9, 10, 11]);
        assert_eq!(&got.ids[3..5], &[-1, -1]);
        assert!(got.scores[3].is_nan() && got.scores[4].is_nan() && got.scores[..3].iter().all(|s| s.is_finite()));
        assert!(got.ids[5..].iter().all(|&id| id >= 0));
    }

    #[test]
    fn deterministic_builds_write_identical_files_and_loads_search_the_same() {
        let (n, d) = (800, 8);
        let c = clustered(n, d, 1);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let dir = temp_dir("det");
        let (pa, pb) = (dir.join("a.hnsw"), dir.join("b.hnsw"));
        let qm = cm.slice_rows(100, 130);
        for storage in [Storage::F32, Storage::Bf16] {
            let params = HnswParams { seed: 5, storage, ..HnswParams::default() };
            let a = HnswIndex::build(c.as_slice(), n, d, params, 2, true).unwrap();
            let b = HnswIndex::build(c.as_slice(), n, d, params, 2, true).unwrap();
            a.save(&pa).unwrap();
            b.save(&pb).unwrap();
            assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
            // the graph digest: the same for equal graphs, in memory or loaded, for any thread count
            let digest = a.graph_digest(1).unwrap();
            assert_eq!((a.graph_digest(3).unwrap(), b.graph_digest(2).unwrap()), (digest, digest));
            let other = HnswIndex::build(c.as_slice(), n, d, HnswParams { seed: 6, ..params }, 2, true).unwrap();
            assert_ne!(other.graph_digest(1).unwrap(), digest);
            let want = a.search(qm, &SearchParams::new(7)).unwrap();
            for mmap in [true, false] {
                let back = HnswIndex::load(&pa, mmap, Some(Box::new(c.as_slice())), 1).unwrap();
                assert_eq!((back.params(), back.is_view(), back.has_corpus()), (params, mmap, true));
                assert_eq!(back.graph_digest(2).unwrap(), digest);
                assert_eq!(back.search(qm, &SearchParams::new(7)).unwrap(), want);
                let bare = HnswIndex::load(&pa, mmap, None, 1).unwrap();
                match storage {
                    // float32 rescoring reads the stored vectors: the same scores for ip
                    Storage::F32 => assert_eq!(bare.search(qm, &SearchParams::new(7)).unwrap(), want),
                    _ => assert!(matches!(bare.search(qm, &SearchParams::new(7)), Err(Error::InvalidParameter { name: "rescore", .. }))),
                }
                let raw = HnswOptions { rescore: false, ..HnswOptions::default() };
                assert_eq!(bare.search_with(qm, &SearchParams::new(7), &raw).unwrap(), a.search_with(qm, &SearchParams::new(7), &raw).unwrap());
            }
        }
        // a corpus of another shape is refused
        let wrong = HnswIndex::load(&pa, true, Some(Box::new(&c[..d * (n - 1)])), 1);
        assert!(matches!(wrong, Err(Error::BadLength { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_and_foreign_files_get_input_file_errors() {
        let (n, d) = (300, 8);
        let c = clustered(n, d, 2);
        let dir = temp_dir("bad");
        let path = dir.join("x.hnsw");
        HnswIndex::build(c.as_slice(), n, d, HnswParams::default(), 1, true).unwrap().save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.hnsw");
        let load = |b: &[u8]| {
            std::fs::write(&bad, b).unwrap();
            HnswIndex::load(&bad, true, None, 1)
        };
        let mut graph = bytes.clone();
        let last = graph.len() - 3;
        graph[last] ^= 0x40;
        assert!(matches!(load(&graph), Err(Error::InputFile { problem: message, .. }) if message.contains("checksum")));
        assert!(matches!(load(&bytes[..bytes.len() - 100]), Err(Error::InputFile { problem: message, .. }) if message.contains("truncated")));
        assert!(matches!(load(b"\x93NUMPY"), Err(Error::InputFile { problem: message, .. }) if message.contains("not a hardneg HnswIndex")));
        assert!(matches!(load(&bytes[4096..]), Err(Error::InputFile { problem: message, .. }) if message.contains("not a hardneg HnswIndex")));
        let mut other = bytes.clone();
        other[16] = 9;
        assert!(matches!(load(&other), Err(Error::InputFile { problem: message, .. }) if message.contains("format 9")));
        assert!(matches!(HnswIndex::load(&dir.join("missing"), true, None, 1), Err(Error::InputFile { .. })));
        assert!(matches!(HnswIndex::build(c.as_slice(), n, d, HnswParams::default(), 1, true).unwrap().save(&dir.join("no/such/dir")), Err(Error::OutputFile { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_searches_wait_for_slots_instead_of_failing() {
        let (n, d) = (2000, 16);
        let c = clustered(n, d, 1);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(c.as_slice(), n, d, HnswParams::default(), 2, false).unwrap();
        let qm = cm.slice_rows(0, 64);
        let want = index.search(qm, &SearchParams::new(5)).unwrap();
        // 6 callers x 4 workers each: far more than the slots reserved
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| assert_eq!(index.search(qm, &SearchParams { threads: 4, ..SearchParams::new(5) }).unwrap(), want));
            }
        });
    }

    #[test]
    fn bad_inputs_get_typed_errors() {
        let (n, d) = (50, 4);
        let c = clustered(n, d, 1);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(c.as_slice(), n, d, HnswParams { expansion_search: 8, ..HnswParams::default() }, 1, false).unwrap();
        let q3 = vec![0.0f32; 6];
        let q3m = MatrixRef::new("queries", &q3, 2, 3).unwrap();
        assert!(matches!(index.search(q3m, &SearchParams::new(1)), Err(Error::DimensionMismatch { .. })));
        let qm = cm.slice_rows(0, 2);
        assert!(matches!(index.search(qm, &SearchParams::new(0)), Err(Error::InvalidParameter { name: "k", .. })));
        assert!(matches!(index.search(qm, &SearchParams::new(9)), Err(Error::InvalidParameter { name: "expansion_search", .. })));
        assert!(index.search_with(qm, &SearchParams::new(9), &HnswOptions { expansion_search: Some(9), rescore: true }).is_ok());
        let ex = Exclusions::from_rows("exclude", &[vec![1]], n).unwrap();
        assert!(matches!(index.search(qm, &SearchParams { exclude: Some(&ex), ..SearchParams::new(1) }), Err(Error::RowCountMismatch { .. })));
        let mut nan = c[..8].to_vec();
        nan[5] = f32::NAN;
        let nm = MatrixRef::new("queries", &nan, 2, 4).unwrap();
        assert_eq!(index.search(nm, &SearchParams::new(1)), Err(Error::NonFinite { what: "queries", row: 1 }));
        assert!(matches!(index.score(qm, &[0, 50], 1), Err(Error::IdOutOfRange { .. })));
        let cancel = AtomicBool::new(true);
        assert_eq!(index.search(qm, &SearchParams { cancel: Some(&cancel), ..SearchParams::new(1) }), Err(Error::Cancelled));
        let bad_m = HnswParams { connectivity: 1, ..HnswParams::default() };
        assert!(matches!(HnswIndex::new_empty(c.as_slice(), n, d, bad_m, 1, false), Err(Error::InvalidParameter { name: "connectivity", .. })));
        assert!(matches!(index.add_rows(1, 1, None), Err(Error::InvalidParameter { .. })));
        // int8 keeps directions only: ip over rows of different lengths is refused
        let i8p = HnswParams { storage: Storage::I8, ..HnswParams::default() };
        assert!(HnswIndex::new_empty(c.as_slice(), n, d, i8p, 1, false).is_ok());
        let mut scaled = c.clone();
        scaled[..4].iter_mut().for_each(|x| *x *= 3.0);
        assert!(matches!(HnswIndex::new_empty(scaled.as_slice(), n, d, i8p, 1, false), Err(Error::InvalidParameter { name: "storage", .. })));
        let mut inf = c.clone();
        inf[9] = f32::INFINITY;
        assert_eq!(HnswIndex::new_empty(inf.as_slice(), n, d, HnswParams::default(), 1, false).err(), Some(Error::NonFinite { what: "corpus", row: 2 }));
        // searching before the build is finished
        let building = HnswIndex::new_empty(c.as_slice(), n, d, HnswParams::default(), 1, false).unwrap();
        assert!(matches!(building.search(qm, &SearchParams::new(1)), Err(Error::InvalidParameter { name: "index", .. })));
        assert!(matches!(building.finish_build(1), Err(Error::InvalidParameter { name: "finish_build", .. })));
    }

    #[test]
    fn orphan_audit_counts_and_reinserts_unreached_nodes() {
        // Inner product over rows of very different lengths: long rows win every pruning
        // comparison and many short rows end without an incoming edge.
        let (n, d) = (2000, 24);
        let mut c = clustered(n, d, 3);
        let mut rng = Rng::new(4);
        for row in c.chunks_exact_mut(d) {
            let f = 0.2 + 2.0 * (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            row.iter_mut().for_each(|x| *x *= f);
        }
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::new_empty(c.as_slice(), n, d, HnswParams::default(), 1, true).unwrap();
        assert_eq!(index.add_rows(1500, 1, None).unwrap(), 1500);
        assert_eq!(index.add_rows(1500, 1, None).unwrap(), n);
        let before = index.orphans_now(2);
        let report = index.finish_build(2).unwrap();
        assert_eq!(report.found, before.len());
        assert!(report.found > 0 && report.remaining < report.found, "{report:?}");
        assert_eq!(index.orphans_now(1).len(), report.remaining);
        assert_eq!(index.orphan_report(), report);
        // a re-inserted node is found under its own key
        let key = before[0] as usize;
        let got = index.search(cm.slice_rows(key, key + 1), &SearchParams::new(1)).unwrap();
        assert!(got.ids[0] >= 0);
        assert!(matches!(index.finish_build(1), Err(Error::InvalidParameter { .. })));
    }

    #[test]
    fn score_matches_flat_index_for_both_metrics() {
        let (n, d) = (300, 16);
        let mut c = clustered(n, d, 5);
        c.iter_mut().enumerate().for_each(|(i, x)| *x *= 1.0 + (i / d % 3) as f32);
        let qm_data = clustered(5, d, 6);
        let qm = MatrixRef::new("q", &qm_data, 5, d).unwrap();
        let ids: Vec<i64> = (0..15).map(|i| if i % 4 == 3 { -1 } else { (i * 17) % 300 }).collect();
        for metric in [Metric::InnerProduct, Metric::Cosine] {
            let index = HnswIndex::build(c.as_slice(), n, d, HnswParams { metric, ..HnswParams::default() }, 2, false).unwrap();
            let flat = crate::FlatIndex::new(c.as_slice(), n, d, metric, 1).unwrap();
            assert_eq!(bits(&index.score(qm, &ids, 3).unwrap()), bits(&flat.score(qm, &ids, 3).unwrap()), "{metric:?}");
        }
    }
}
