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
//! * Search: `filtered_search` with the query's exclusions as predicate (excluded nodes are
//!   walked through but never fill a slot). With `rescore`, the candidates are scored again
//!   exactly with [`crate::topk::pair_scores`] against the float32 rows, so the scores are
//!   bit-identical to [`crate::search`]'s for the same pairs.
//! * Files: [`file`] wraps usearch's format in a header of ours (kind, versions, checksum).

mod file;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::exclude::Exclusions;
use crate::matrix::{self, MatrixRef};
use crate::topk::{pair_scores, resolve_threads, TopK};

/// Similarity of an [`HnswIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Inner product.
    Ip,
    /// Cosine similarity (rows are stored normalised).
    Cosine,
}

impl Metric {
    /// The name users pass (`"ip"`, `"cosine"`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Parses [`Metric::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "ip" => Ok(Metric::Ip),
            "cosine" => Ok(Metric::Cosine),
            other => Err(Error::param("metric", format!("metric must be 'ip' or 'cosine', got {other:?}"))),
        }
    }
}

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
        HnswParams { metric: Metric::Ip, storage: Storage::F32, connectivity: 16, expansion_add: 128, expansion_search: 128, seed: 0 }
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
#[derive(Clone, Copy, Debug)]
pub enum Vectors<'a> {
    /// The corpus the index was built from, with its inverse row norms for cosine (from
    /// [`HnswIndex::check_corpus`]): scores are bit-identical to [`crate::search`]'s.
    Corpus {
        /// `[rows, dim]`.
        rows: MatrixRef<'a>,
        /// Inverse row norms (cosine only).
        inv_norms: Option<&'a [f32]>,
    },
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

/// Options of [`HnswIndex::search`].
#[derive(Clone, Copy, Debug)]
pub struct HnswSearch<'a> {
    /// Results per query.
    pub k: usize,
    /// Ids never returned, per query.
    pub exclude: Option<&'a Exclusions>,
    /// Candidate list size; `None` uses the index's `expansion_search`. Must be at least `k`.
    pub expansion_search: Option<usize>,
    /// Score the candidates exactly against `vectors` (else `1 - distance` of the stored vectors).
    pub rescore: bool,
    /// Worker threads (0 means all available cores).
    pub threads: usize,
    /// Set to true from another thread to stop with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl HnswSearch<'_> {
    /// Options for `k` results with rescoring and every other setting at its default.
    pub fn new(k: usize) -> Self {
        HnswSearch { k, exclude: None, expansion_search: None, rescore: true, threads: 0, cancel: None }
    }
}

const BUILDING: u8 = 0;
const READY: u8 = 1;

/// An HNSW index over `rows x dim` float32 vectors whose keys are the row ids.
pub struct HnswIndex {
    // Declared before `map`: the index may view the mapped file and must be dropped first.
    index: Index,
    map: Option<memmap2::Mmap>,
    params: HnswParams,
    rows: usize,
    dim: usize,
    /// Insertion order of the build (empty once built or loaded).
    order: Vec<u32>,
    added: AtomicUsize,
    state: AtomicU8,
    slots: Slots,
    /// Slots reserved in usearch while building (1 for a deterministic build).
    build_slots: usize,
    /// Slots reserved in usearch once built (searches).
    search_slots: usize,
    orphans: Mutex<OrphanReport>,
}

fn hnsw_err(e: impl std::fmt::Display) -> Error {
    Error::Hnsw(e.to_string())
}

/// Thread slots a built or loaded index reserves: enough for every core twice, so that searches
/// from several Python threads only wait for a permit when they oversubscribe the machine.
fn default_search_slots() -> usize {
    2 * resolve_threads(0)
}

impl HnswIndex {
    /// An empty index for `rows x dim` vectors, ready for [`Self::add_rows`]. A deterministic
    /// build reserves one usearch slot and adds from one thread: same seed, same graph, same file.
    pub fn new_empty(params: HnswParams, rows: usize, dim: usize, threads: usize, deterministic: bool) -> Result<Self> {
        params.check()?;
        if rows == 0 || dim == 0 {
            return Err(Error::Empty { what: "corpus", rows, dim });
        }
        if rows > u32::MAX as usize {
            return Err(Error::param("corpus", format!("an HnswIndex holds at most {} rows, got {rows}; shard the corpus", u32::MAX)));
        }
        let build_slots = if deterministic { 1 } else { resolve_threads(threads) };
        let index = Index::new(&params.options(dim)).map_err(hnsw_err)?;
        index.reserve_capacity_and_threads(rows, build_slots).map_err(hnsw_err)?;
        let mut order: Vec<u32> = (0..rows as u32).collect();
        crate::cluster::rng::Rng::new(params.seed).shuffle(&mut order);
        Ok(HnswIndex {
            index,
            map: None,
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
        })
    }

    /// Builds the whole index in one call (see [`Self::new_empty`], [`Self::add_rows`],
    /// [`Self::finish_build`]); the corpus must pass [`Self::check_corpus`].
    pub fn build(corpus: MatrixRef<'_>, params: HnswParams, threads: usize, deterministic: bool) -> Result<Self> {
        let index = Self::new_empty(params, corpus.rows(), corpus.dim(), threads, deterministic)?;
        index.check_corpus(corpus, threads)?;
        index.add_rows(corpus, corpus.rows(), threads, None)?;
        index.finish_build(corpus, threads)?;
        Ok(index)
    }

    /// Checks that `corpus` is this index's corpus (shape, finite values; for int8 storage with
    /// `ip`, rows of one length) and returns its inverse row norms for cosine.
    pub fn check_corpus(&self, corpus: MatrixRef<'_>, threads: usize) -> Result<Option<Vec<f32>>> {
        if corpus.dim() != self.dim {
            return Err(Error::DimensionMismatch { what: "corpus", expected: self.dim, got: corpus.dim() });
        }
        if corpus.rows() != self.rows {
            return Err(Error::RowCountMismatch { what: "corpus", expected: self.rows, got: corpus.rows() });
        }
        let threads = resolve_threads(threads);
        if self.params.metric == Metric::Ip && self.params.storage != Storage::I8 {
            matrix::check_finite("corpus", corpus, threads)?;
            return Ok(None);
        }
        let inv = matrix::finite_inverse_norms("corpus", corpus, threads)?;
        if self.params.metric == Metric::Ip {
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

    /// Inserts the next `count` rows of the insertion order (fewer at the end) with `threads`
    /// threads; returns how many rows the index holds now. Call it in chunks to report progress.
    pub fn add_rows(&self, corpus: MatrixRef<'_>, count: usize, threads: usize, cancel: Option<&AtomicBool>) -> Result<usize> {
        if self.state.load(Ordering::Acquire) != BUILDING {
            return Err(Error::param("add_rows", "the index is already built; build a new one to add rows"));
        }
        if corpus.rows() != self.rows || corpus.dim() != self.dim {
            return Err(Error::DimensionMismatch { what: "corpus", expected: self.dim, got: corpus.dim() });
        }
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
    pub fn finish_build(&self, corpus: MatrixRef<'_>, threads: usize) -> Result<OrphanReport> {
        if self.state.load(Ordering::Acquire) != BUILDING {
            return Err(Error::param("finish_build", "the index is already built"));
        }
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
        self.make_ready()?;
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner()) = report;
        Ok(report)
    }

    fn make_ready(&self) -> Result<()> {
        self.index.reserve_capacity_and_threads(self.rows, self.search_slots).map_err(hnsw_err)?;
        self.slots.grow(self.search_slots.saturating_sub(self.build_slots));
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// Keys of level-0 nodes that no level-0 edge points to (a graph of one node has none).
    pub fn orphans_now(&self, threads: usize) -> Vec<u64> {
        let n = self.index.size();
        if n <= 1 {
            return Vec::new();
        }
        let threads = resolve_threads(threads).min(n).max(1);
        let per = n.div_ceil(threads);
        let conn0 = 2 * self.index.connectivity().max(1);
        let counts: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut indeg = vec![0u32; self.rows];
                        let mut nb = vec![0u64; conn0 + 1];
                        for key in (t * per)..((t + 1) * per).min(self.rows) {
                            let mut it = self.index.neighbors(key as u64, 0);
                            if it.total() > nb.len() {
                                nb.resize(it.total(), 0);
                            }
                            let got = it.drain_into(&mut nb);
                            for &to in &nb[..got] {
                                if (to as usize) < self.rows && to as usize != key {
                                    indeg[to as usize] += 1;
                                }
                            }
                        }
                        indeg
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        (0..self.rows).filter(|&i| self.index.contains(i as u64) && counts.iter().all(|c| c[i] == 0)).map(|i| i as u64).collect()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters it was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// The orphan audit of the build (zeros for a loaded index: its build reported it).
    pub fn orphan_report(&self) -> OrphanReport {
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes usearch holds for the graph and vectors (the mapped file's pages for a view).
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// Whether the index views a memory-mapped file.
    pub fn is_view(&self) -> bool {
        self.map.is_some()
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
        if self.params.metric == Metric::Ip {
            return Ok(std::borrow::Cow::Borrowed(queries.data()));
        }
        let mut owned = queries.data().to_vec();
        matrix::normalize_rows(&mut owned, self.dim);
        Ok(std::borrow::Cow::Owned(owned))
    }

    fn check_vectors(&self, vectors: &Vectors<'_>) -> Result<()> {
        match vectors {
            Vectors::Corpus { rows, inv_norms } => {
                if rows.rows() != self.rows || rows.dim() != self.dim {
                    return Err(Error::RowCountMismatch { what: "corpus", expected: self.rows, got: rows.rows() });
                }
                if self.params.metric == Metric::Cosine && inv_norms.is_none_or(|s| s.len() != self.rows) {
                    return Err(Error::param("corpus", "a cosine index rescores with the corpus's inverse row norms (check_corpus)"));
                }
                Ok(())
            }
            Vectors::Stored if self.params.storage == Storage::F32 => Ok(()),
            Vectors::Stored => Err(Error::param(
                "rescore",
                format!(
                    "this index stores {} vectors, so exact rescoring needs the float32 corpus: pass corpus= when loading it, or search with rescore=False",
                    self.params.storage.name()
                ),
            )),
        }
    }

    /// Top-k of every query, `[rows, k]`, padded with id -1 / score NaN when a query has fewer
    /// than `k` candidates left after its exclusions.
    pub fn search(&self, queries: MatrixRef<'_>, vectors: Vectors<'_>, opts: &HnswSearch<'_>) -> Result<TopK> {
        self.check_ready()?;
        let (nq, k) = (queries.rows(), opts.k);
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
        if let Some(ex) = opts.exclude {
            if ex.rows() != nq {
                return Err(Error::RowCountMismatch { what: "exclude", expected: nq, got: ex.rows() });
            }
            if let Some((row, &bad)) = (0..nq).flat_map(|q| ex.row(q).iter().map(move |id| (q, id))).find(|&(_, &id)| id as usize >= self.rows) {
                return Err(Error::IdOutOfRange { what: "exclude", row, id: bad as i64, n: self.rows });
            }
        }
        if opts.rescore {
            self.check_vectors(&vectors)?;
        }
        let q = self.prepare_queries(queries, opts.threads)?;
        let qm = MatrixRef::new("queries", &q, nq, self.dim)?;
        let fetch = if opts.rescore { (k * self.params.storage.overfetch()).min(ef).max(k) } else { k };
        let mut scores = vec![f32::NAN; nq * k];
        let mut ids = vec![-1i64; nq * k];
        let workers = resolve_threads(opts.threads).min(self.search_slots).min(nq).max(1);
        let per = nq.div_ceil(workers);
        std::thread::scope(|s| {
            let handles: Vec<_> = scores
                .chunks_mut(per * k)
                .zip(ids.chunks_mut(per * k))
                .enumerate()
                .map(|(t, (sc, id))| {
                    let vectors = &vectors;
                    s.spawn(move || -> Result<()> {
                        let mut scratch = Scratch::default();
                        for (j, (srow, irow)) in sc.chunks_mut(k).zip(id.chunks_mut(k)).enumerate() {
                            if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                                return Err(Error::Cancelled);
                            }
                            let qi = t * per + j;
                            let excluded = opts.exclude.map(|e| e.row(qi)).unwrap_or(&[]);
                            self.search_one(qm.row(qi), excluded, k, ef, fetch, opts.rescore, vectors, &mut scratch, srow, irow)?;
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
        k: usize,
        ef: usize,
        fetch: usize,
        rescore: bool,
        vectors: &Vectors<'_>,
        scratch: &mut Scratch,
        out_scores: &mut [f32],
        out_ids: &mut [i64],
    ) -> Result<()> {
        let available = self.rows - excluded.len();
        let mut wanted = ef;
        let matches = loop {
            let m = {
                let _permit = self.slots.acquire();
                self.index.filtered_search(q, wanted, |key| excluded.is_empty() || excluded.binary_search(&key).is_err()).map_err(hnsw_err)?
            };
            // Short of k although the corpus has enough rows left: the walk ran out of candidates
            // (many exclusions near the query). Widen it; at `wanted >= rows` it sees all it can reach.
            if m.keys.len() >= k.min(available) || wanted >= self.rows {
                break m;
            }
            wanted = (wanted * 2).min(self.rows);
        };
        let got = matches.keys.len().min(fetch);
        scratch.cands.clear();
        if rescore {
            self.exact_scores(q, &matches.keys[..got], vectors, scratch)?;
            scratch.cands.extend(scratch.scores.iter().zip(&matches.keys[..got]).map(|(&s, &id)| (s, id)));
        } else {
            scratch.cands.extend(matches.distances[..got].iter().zip(&matches.keys[..got]).map(|(&d, &id)| (1.0 - d, id)));
        }
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
                if let Some(inv) = inv_norms.filter(|_| self.params.metric == Metric::Cosine) {
                    scratch.scales.extend(keys.iter().map(|&key| inv[key as usize]));
                }
                let scales = (!scratch.scales.is_empty()).then_some(&scratch.scales[..]);
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

    /// Exact scores of given ids, `ids` row-major `[queries.rows(), width]` (-1 = none, scored
    /// NaN), as a rescoring [`Self::search`] scores them.
    pub fn score_ids(&self, queries: MatrixRef<'_>, vectors: Vectors<'_>, ids: &[i64], width: usize) -> Result<Vec<f32>> {
        self.check_vectors(&vectors)?;
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

    /// Tie-aware recall@k of a rescoring [`Self::search`] against exact search: the fraction of
    /// returned ids scoring at least the exact k-th score, over all queries.
    pub fn recall(&self, queries: MatrixRef<'_>, corpus: MatrixRef<'_>, inv_norms: Option<&[f32]>, opts: &HnswSearch<'_>) -> Result<f64> {
        let vectors = Vectors::Corpus { rows: corpus, inv_norms };
        let approx = self.search(queries, vectors, &HnswSearch { rescore: true, ..*opts })?;
        let q = self.prepare_queries(queries, opts.threads)?;
        let qm = MatrixRef::new("queries", &q, queries.rows(), self.dim)?;
        let row_scale = inv_norms.filter(|_| self.params.metric == Metric::Cosine);
        let exact_opts = crate::SearchOptions { exclude: opts.exclude, threads: opts.threads, cancel: opts.cancel, row_scale, ..crate::SearchOptions::new(opts.k) };
        let exact = crate::search(qm, corpus, &exact_opts)?;
        let k = opts.k;
        let mut hits = 0usize;
        for i in 0..queries.rows() {
            let kth = exact.scores[i * k + k - 1];
            hits += approx.scores[i * k..(i + 1) * k].iter().zip(&approx.ids[i * k..(i + 1) * k]).filter(|&(&s, &id)| id >= 0 && s >= kth).count();
        }
        Ok(hits as f64 / (queries.rows() * k) as f64)
    }
}

#[derive(Default)]
struct Scratch {
    cands: Vec<(f32, u64)>,
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

    fn exact(q: MatrixRef<'_>, c: MatrixRef<'_>, k: usize, ex: Option<&Exclusions>) -> TopK {
        crate::search(q, c, &crate::SearchOptions { exclude: ex, ..crate::SearchOptions::new(k) }).unwrap()
    }

    fn corpus(n: usize, d: usize) -> (Vec<f32>, usize, usize) {
        (clustered(n, d, 1), n, d)
    }

    #[test]
    fn rescored_search_matches_exact_scores_and_order() {
        let (c, n, d) = corpus(3000, 24);
        let q = clustered(50, 24, 9);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let qm = MatrixRef::new("queries", &q, 50, d).unwrap();
        let index = HnswIndex::build(cm, HnswParams::default(), 2, false).unwrap();
        assert_eq!(index.orphan_report().remaining, 0);
        let vectors = Vectors::Corpus { rows: cm, inv_norms: None };
        let got = index.search(qm, vectors, &HnswSearch::new(10)).unwrap();
        let want = exact(qm, cm, 10, None);
        // scores are the exact scores of the returned ids, rows sorted with ties by the lower id
        let again = crate::score_ids(qm, cm, None, &got.ids, 10).unwrap();
        assert_eq!(got.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), again.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        for i in 0..50 {
            let row: Vec<(f32, i64)> = (0..10).map(|j| (got.scores[i * 10 + j], got.ids[i * 10 + j])).collect();
            assert!(row.windows(2).all(|w| w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)), "{row:?}");
        }
        let hits = (0..50).map(|i| got.scores[i * 10..i * 10 + 10].iter().filter(|&&s| s >= want.scores[i * 10 + 9]).count()).sum::<usize>();
        assert!(hits as f64 / 500.0 >= 0.97, "recall {}", hits as f64 / 500.0);
        let r = index.recall(qm, cm, None, &HnswSearch::new(10)).unwrap();
        assert_eq!(r, hits as f64 / 500.0);
        // the stored float32 vectors rescore identically for ip
        assert_eq!(index.search(qm, Vectors::Stored, &HnswSearch::new(10)).unwrap(), got);
        // without rescoring the scores are 1 - distance, close to the exact ones
        let raw = index.search(qm, Vectors::Stored, &HnswSearch { rescore: false, ..HnswSearch::new(10) }).unwrap();
        let exact_raw = crate::score_ids(qm, cm, None, &raw.ids, 10).unwrap();
        assert!(raw.scores.iter().zip(&exact_raw).all(|(a, b)| (a - b).abs() < 1e-4));
    }

    #[test]
    fn exclusions_are_never_returned_and_rows_stay_full() {
        let (c, n, d) = corpus(1500, 16);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let qm = cm.slice_rows(0, 40);
        // each query excludes itself and its 30 exact nearest neighbours
        let near = exact(qm, cm, 30, None);
        let rows: Vec<Vec<i64>> = (0..40).map(|i| near.ids[i * 30..(i + 1) * 30].to_vec()).collect();
        let ex = Exclusions::from_rows("exclude", &rows, n).unwrap();
        for storage in [Storage::F32, Storage::Bf16, Storage::I8] {
            let params = HnswParams { storage, metric: Metric::Cosine, ..HnswParams::default() };
            let index = HnswIndex::build(cm, params, 2, false).unwrap();
            let inv = index.check_corpus(cm, 2).unwrap();
            let vectors = Vectors::Corpus { rows: cm, inv_norms: inv.as_deref() };
            let got = index.search(qm, vectors, &HnswSearch { exclude: Some(&ex), ..HnswSearch::new(20) }).unwrap();
            for i in 0..40 {
                for &id in &got.ids[i * 20..(i + 1) * 20] {
                    assert!(id >= 0 && !ex.contains(i, id as u64), "{storage:?} query {i} got {id}");
                }
            }
            let mut qn = qm.data().to_vec();
            crate::matrix::normalize_rows(&mut qn, d);
            let qnm = MatrixRef::new("queries", &qn, 40, d).unwrap();
            let want = crate::search(qnm, cm, &crate::SearchOptions { exclude: Some(&ex), row_scale: inv.as_deref(), ..crate::SearchOptions::new(20) }).unwrap();
            let hits = (0..40).map(|i| got.scores[i * 20..i * 20 + 20].iter().filter(|&&s| s >= want.scores[i * 20 + 19]).count()).sum::<usize>();
            assert!(hits as f64 / 800.0 >= 0.95, "{storage:?} recall {}", hits as f64 / 800.0);
        }
    }

    #[test]
    fn short_rows_are_padded_with_minus_one() {
        let (c, n, d) = corpus(12, 4);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(cm, HnswParams::default(), 1, true).unwrap();
        let ex = Exclusions::from_rows("exclude", &[(0..9).collect(), vec![]], n).unwrap();
        let got = index.search(cm.slice_rows(0, 2), Vectors::Stored, &HnswSearch { exclude: Some(&ex), ..HnswSearch::new(5) }).unwrap();
        let mut first: Vec<i64> = got.ids[..3].to_vec();
        first.sort();
        assert_eq!(first, vec![9, 10, 11]);
        assert_eq!(&got.ids[3..5], &[-1, -1]);
        assert!(got.scores[3].is_nan() && got.scores[4].is_nan() && got.scores[..3].iter().all(|s| s.is_finite()));
        assert!(got.ids[5..].iter().all(|&id| id >= 0));
    }

    #[test]
    fn deterministic_builds_write_identical_files_and_views_search_the_same() {
        let (c, n, d) = corpus(800, 8);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let dir = std::env::temp_dir().join(format!("hardneg-hnsw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let params = HnswParams { seed: 5, storage: Storage::Bf16, ..HnswParams::default() };
        let a = HnswIndex::build(cm, params, 2, true).unwrap();
        let b = HnswIndex::build(cm, params, 2, true).unwrap();
        let (pa, pb) = (dir.join("a.hnsw"), dir.join("b.hnsw"));
        a.save(&pa).unwrap();
        b.save(&pb).unwrap();
        let bytes = std::fs::read(&pa).unwrap();
        assert_eq!(bytes, std::fs::read(&pb).unwrap());
        let qm = cm.slice_rows(100, 130);
        let vectors = Vectors::Corpus { rows: cm, inv_norms: None };
        let want = a.search(qm, vectors, &HnswSearch::new(7)).unwrap();
        for mmap in [true, false] {
            let back = HnswIndex::load(&pa, mmap).unwrap();
            assert_eq!(back.params(), params);
            assert_eq!(back.is_view(), mmap);
            assert_eq!(back.search(qm, vectors, &HnswSearch::new(7)).unwrap(), want);
            assert!(matches!(back.search(qm, Vectors::Stored, &HnswSearch::new(7)), Err(Error::InvalidParameter { name: "rescore", .. })));
        }
        // damaged files: a graph byte, the length, the header; and files of another kind
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        std::fs::write(&pb, &bad).unwrap();
        assert!(matches!(HnswIndex::load(&pb, true), Err(Error::InputFile { .. })));
        std::fs::write(&pb, &bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(HnswIndex::load(&pb, true), Err(Error::InputFile { .. })));
        std::fs::write(&pb, b"\x93NUMPY").unwrap();
        assert!(matches!(HnswIndex::load(&pb, false), Err(Error::InputFile { .. })));
        assert!(matches!(HnswIndex::load(&dir.join("missing"), true), Err(Error::InputFile { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_searches_wait_for_slots_instead_of_failing() {
        let (c, n, d) = corpus(2000, 16);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(cm, HnswParams::default(), 2, false).unwrap();
        let qm = cm.slice_rows(0, 64);
        let want = index.search(qm, Vectors::Stored, &HnswSearch::new(5)).unwrap();
        // 6 callers x 4 workers each: far more than the slots reserved
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let got = index.search(qm, Vectors::Stored, &HnswSearch { threads: 4, ..HnswSearch::new(5) }).unwrap();
                    assert_eq!(got, want);
                });
            }
        });
    }

    #[test]
    fn bad_inputs_get_typed_errors() {
        let (c, n, d) = corpus(50, 4);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let index = HnswIndex::build(cm, HnswParams { expansion_search: 8, ..HnswParams::default() }, 1, false).unwrap();
        let v = Vectors::Stored;
        let q3 = vec![0.0f32; 6];
        let q3m = MatrixRef::new("queries", &q3, 2, 3).unwrap();
        assert!(matches!(index.search(q3m, v, &HnswSearch::new(1)), Err(Error::DimensionMismatch { .. })));
        let qm = cm.slice_rows(0, 2);
        assert!(matches!(index.search(qm, v, &HnswSearch::new(0)), Err(Error::InvalidParameter { name: "k", .. })));
        assert!(matches!(index.search(qm, v, &HnswSearch::new(9)), Err(Error::InvalidParameter { name: "expansion_search", .. })));
        assert!(index.search(qm, v, &HnswSearch { expansion_search: Some(9), ..HnswSearch::new(9) }).is_ok());
        let ex = Exclusions::from_rows("exclude", &[vec![1]], n).unwrap();
        assert!(matches!(index.search(qm, v, &HnswSearch { exclude: Some(&ex), ..HnswSearch::new(1) }), Err(Error::RowCountMismatch { .. })));
        let mut nan = c[..8].to_vec();
        nan[5] = f32::NAN;
        let nm = MatrixRef::new("queries", &nan, 2, 4).unwrap();
        assert_eq!(index.search(nm, v, &HnswSearch::new(1)), Err(Error::NonFinite { what: "queries", row: 1 }));
        assert!(matches!(index.score_ids(qm, v, &[0, 50], 1), Err(Error::IdOutOfRange { .. })));
        let cancel = AtomicBool::new(true);
        assert_eq!(index.search(qm, v, &HnswSearch { cancel: Some(&cancel), ..HnswSearch::new(1) }), Err(Error::Cancelled));
        assert!(matches!(HnswIndex::new_empty(HnswParams { connectivity: 1, ..HnswParams::default() }, 5, 4, 1, false), Err(Error::InvalidParameter { name: "connectivity", .. })));
        // int8 keeps directions only: ip over rows of different lengths is refused
        let mut scaled = c.clone();
        scaled[..4].iter_mut().for_each(|x| *x *= 3.0);
        assert!(HnswIndex::build(cm, HnswParams { storage: Storage::I8, ..HnswParams::default() }, 1, false).is_ok());
        let sm = MatrixRef::new("corpus", &scaled, n, d).unwrap();
        assert!(matches!(HnswIndex::build(sm, HnswParams { storage: Storage::I8, ..HnswParams::default() }, 1, false), Err(Error::InvalidParameter { name: "storage", .. })));
        let mut inf = c.clone();
        inf[9] = f32::INFINITY;
        let im = MatrixRef::new("corpus", &inf, n, d).unwrap();
        assert_eq!(HnswIndex::build(im, HnswParams::default(), 1, false).err(), Some(Error::NonFinite { what: "corpus", row: 2 }));
    }

    #[test]
    fn orphan_audit_counts_and_reinserts_unreached_nodes() {
        // Inner product over rows of very different lengths: long rows win every pruning
        // comparison and many short rows end without an incoming edge.
        let mut c = clustered(2000, 24, 3);
        let mut rng = Rng::new(4);
        for row in c.chunks_exact_mut(24) {
            let f = 0.2 + 2.0 * (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            row.iter_mut().for_each(|x| *x *= f);
        }
        let cm = MatrixRef::new("corpus", &c, 2000, 24).unwrap();
        let index = HnswIndex::new_empty(HnswParams::default(), 2000, 24, 1, true).unwrap();
        index.add_rows(cm, 2000, 1, None).unwrap();
        let before = index.orphans_now(2);
        let report = index.finish_build(cm, 2).unwrap();
        assert_eq!(report.found, before.len());
        assert!(report.found > 0 && report.remaining < report.found, "{report:?}");
        assert_eq!(index.orphans_now(1).len(), report.remaining);
        assert_eq!(index.orphan_report(), report);
        // re-inserted nodes are searchable under their own key
        let key = before[0] as usize;
        let got = index.search(cm.slice_rows(key, key + 1), Vectors::Stored, &HnswSearch::new(1)).unwrap();
        assert!(got.ids[0] >= 0);
        assert!(matches!(index.finish_build(cm, 1), Err(Error::InvalidParameter { .. })));
    }

    #[test]
    fn score_ids_agrees_with_flat_scores() {
        let (c, n, d) = corpus(300, 16);
        let cm = MatrixRef::new("corpus", &c, n, d).unwrap();
        let params = HnswParams { metric: Metric::Cosine, ..HnswParams::default() };
        let index = HnswIndex::build(cm, params, 2, false).unwrap();
        let inv = index.check_corpus(cm, 1).unwrap();
        let qm = cm.slice_rows(3, 8);
        let ids: Vec<i64> = (0..15).map(|i| if i % 4 == 3 { -1 } else { (i * 17) % 300 }).collect();
        let got = index.score_ids(qm, Vectors::Corpus { rows: cm, inv_norms: inv.as_deref() }, &ids, 3).unwrap();
        let mut qn = qm.data().to_vec();
        crate::matrix::normalize_rows(&mut qn, d);
        let want = crate::score_ids(MatrixRef::new("q", &qn, 5, d).unwrap(), cm, inv.as_deref(), &ids, 3).unwrap();
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
