//! [`FlatIndex`]: exact search over a float32 corpus with the fused kernels of [`crate::topk`].

use std::borrow::Cow;

use super::storage::{RowCopy, Storage};
use super::{Metric, SearchParams, Searcher};
use crate::error::{Error, Result};
use crate::matrix::{self, MatrixRef};
use crate::topk::{self, Kernel, SearchOptions, TopK};

/// Keeps a row-major float32 buffer alive for as long as an index reads it: a `Vec` or boxed
/// slice the index owns, a borrowed slice, or memory owned elsewhere (a numpy array held by the
/// Python binding, a memory map).
pub trait F32Rows: Send + Sync {
    /// The values, row-major.
    fn values(&self) -> &[f32];
}

impl F32Rows for Vec<f32> {
    fn values(&self) -> &[f32] {
        self
    }
}

impl F32Rows for Box<[f32]> {
    fn values(&self) -> &[f32] {
        self
    }
}

impl F32Rows for &[f32] {
    fn values(&self) -> &[f32] {
        self
    }
}

/// Kernel choices of one [`FlatIndex::search_with`] call (tests and benchmarks); the default
/// picks the best kernel and block sizes and pads short rows as [`Searcher::search`] does.
#[derive(Clone, Copy, Debug)]
pub struct KernelOptions {
    /// Force a kernel; `None` reads `HARDNEG_KERNEL`, else picks by the number of queries.
    pub kernel: Option<Kernel>,
    /// Corpus rows per chunk; `None` picks one that fits in L2.
    pub chunk_rows: Option<usize>,
    /// Dimensions per slice; `None` picks one that keeps a block's slice in L1.
    pub dim_slice: Option<usize>,
    /// Pad a query with fewer than `k` candidates with -1 / NaN; false makes it an error that
    /// says how far to lower `k` (the Python `FlatIndex.search`).
    pub pad: bool,
    /// AMX scan: candidates kept per query; `None` is the default over-fetch.
    pub overfetch: Option<usize>,
    /// AMX scan: factor on the certificate's error bound (tests force the fallbacks with it).
    pub bound_factor: f64,
    /// Require exact results: an index with int8 storage refuses to search unless this is false.
    pub exact: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions { kernel: None, chunk_rows: None, dim_slice: None, pad: true, overfetch: None, bound_factor: 1.0, exact: true }
    }
}

/// An exact similarity index over a float32 `[rows, dim]` corpus, checked once for NaN/Inf.
///
/// For cosine the corpus is not copied or normalised: its inverse row norms are computed once
/// and multiplied into the scores, and queries are normalised into a copy per call.
///
/// [`FlatIndex::with_storage`] adds a bf16 copy (exact results, half the bytes to scan) or an
/// int8 copy (approximate results, a quarter of the bytes); [`FlatIndex::save`] and
/// [`FlatIndex::load`] write and read (or memory-map) the whole index.
pub struct FlatIndex<'a> {
    corpus: Box<dyn F32Rows + 'a>,
    rows: usize,
    dim: usize,
    /// Inverse row norms (cosine); `None` for inner product.
    inv_norms: Option<Vec<f32>>,
    /// The reduced-precision copy, if the storage has one.
    copy: Option<RowCopy>,
}

impl std::fmt::Debug for FlatIndex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex").field("rows", &self.rows).field("dim", &self.dim).field("metric", &self.metric()).finish()
    }
}

impl<'a> FlatIndex<'a> {
    /// Indexes `corpus` (`rows x dim`, row-major), checking it for NaN/Inf with `threads` threads
    /// (0: every core); for cosine the same pass computes the inverse row norms.
    pub fn new(corpus: impl F32Rows + 'a, rows: usize, dim: usize, metric: Metric, threads: usize) -> Result<Self> {
        let corpus: Box<dyn F32Rows + 'a> = Box::new(corpus);
        let m = MatrixRef::new("corpus", corpus.values(), rows, dim)?;
        let threads = topk::resolve_threads(threads);
        let inv_norms = match metric {
            Metric::Cosine => Some(matrix::finite_inverse_norms("corpus", m, threads)?),
            Metric::InnerProduct => {
                matrix::check_finite("corpus", m, threads)?;
                None
            }
        };
        Ok(FlatIndex { corpus, rows, dim, inv_norms, copy: None })
    }

    /// An index of already checked parts (a loaded file).
    pub(crate) fn from_parts(corpus: Box<dyn F32Rows + 'a>, rows: usize, dim: usize, inv_norms: Option<Vec<f32>>, copy: Option<RowCopy>) -> Result<Self> {
        MatrixRef::new("corpus", corpus.values(), rows, dim)?;
        Ok(FlatIndex { corpus, rows, dim, inv_norms, copy })
    }

    /// Keeps the rows in `storage` too (see [`Storage`]), converting them with `threads`
    /// threads (0: every core); float32 drops a copy made earlier.
    pub fn with_storage(mut self, storage: Storage, threads: usize) -> Self {
        self.copy = RowCopy::build(storage, self.corpus(), topk::resolve_threads(threads));
        self
    }

    /// How the rows are stored for scanning.
    pub fn storage(&self) -> Storage {
        self.copy.as_ref().map_or(Storage::Float32, RowCopy::storage)
    }

    pub(crate) fn copy(&self) -> Option<&RowCopy> {
        self.copy.as_ref()
    }

    /// Writes the index to `path` in the format of [`super::file`] (version 1).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        super::file::save(self, path)
    }

    /// Reads an index written by [`FlatIndex::save`]. With `mmap` the rows are memory-mapped
    /// (the index opens at once, pages are read when searched); otherwise they are read into
    /// memory and checked against their checksums. `verify` checks a mapped file's rows too.
    /// A missing, truncated, corrupted or foreign file is an [`Error::InputFile`].
    pub fn load(path: &std::path::Path, mmap: bool, verify: bool) -> Result<FlatIndex<'static>> {
        super::file::load(path, mmap, verify)
    }

    /// The kernel a search of `queries` queries uses: forced by `kernel` or `HARDNEG_KERNEL`,
    /// else the AMX scan when it can run and at least [`Storage::amx_min_queries`] queries share
    /// a pass (fewer with a bf16 copy, which halves the bytes to scan; always with int8).
    pub fn kernel_for(&self, queries: usize, kernel: Option<Kernel>) -> Result<Kernel> {
        if let Some(k) = kernel {
            k.check()?;
            return Ok(k);
        }
        if let Some(k) = Kernel::from_env()? {
            return Ok(k);
        }
        Ok(Kernel::auto_from(queries, self.storage().amx_min_queries()))
    }

    /// The corpus as given (not normalised, even for cosine).
    pub fn corpus(&self) -> MatrixRef<'_> {
        // Checked in `new`; the buffer cannot change length behind a shared reference.
        MatrixRef::new("corpus", self.corpus.values(), self.rows, self.dim).expect("corpus shape checked at construction")
    }

    /// The inverse row norms multiplied into cosine scores (`None` for inner product).
    pub fn inverse_norms(&self) -> Option<&[f32]> {
        self.inv_norms.as_deref()
    }

    /// Queries as the kernels need them: normalised into a copy for cosine (after checking them
    /// for NaN/Inf with `threads` threads), borrowed otherwise.
    fn prepare<'q>(&self, queries: MatrixRef<'q>, threads: usize) -> Result<Cow<'q, [f32]>> {
        if queries.dim() != self.dim {
            return Err(Error::DimensionMismatch { what: "queries", expected: self.dim, got: queries.dim() });
        }
        if self.inv_norms.is_none() {
            return Ok(Cow::Borrowed(queries.data()));
        }
        matrix::check_finite("queries", queries, threads)?;
        let mut owned = queries.data().to_vec();
        matrix::normalize_rows(&mut owned, queries.dim());
        Ok(Cow::Owned(owned))
    }

    /// [`Searcher::search`] with explicit kernel choices.
    pub fn search_with(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>, kernel: &KernelOptions) -> Result<TopK> {
        if kernel.exact && self.storage() == Storage::Int8 {
            return Err(Error::param("exact", "this index stores int8 rows, whose results are approximate: FlatIndex.search accepts them with exact=False; for exact results (and for mining, which needs them) build the index with storage='bfloat16' (half the bytes, exact) or 'float32'"));
        }
        let chosen = self.kernel_for(queries.rows(), kernel.kernel)?;
        let q = self.prepare(queries, topk::resolve_threads(params.threads))?;
        let qm = MatrixRef::new("queries", &q, queries.rows(), queries.dim())?;
        let opts = SearchOptions {
            exclude: params.exclude,
            threads: params.threads,
            cancel: params.cancel,
            kernel: Some(chosen),
            chunk_rows: kernel.chunk_rows,
            dim_slice: kernel.dim_slice,
            row_scale: self.inv_norms.as_deref(),
            pad: kernel.pad,
            overfetch: kernel.overfetch,
            bound_factor: kernel.bound_factor,
            stored: self.copy.as_ref().map(RowCopy::stored),
            ..SearchOptions::new(params.k)
        };
        topk::search(qm, self.corpus(), &opts)
    }
}

impl Searcher for FlatIndex<'_> {
    fn len(&self) -> usize {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        if self.inv_norms.is_some() {
            Metric::Cosine
        } else {
            Metric::InnerProduct
        }
    }

    fn search(&self, queries: MatrixRef<'_>, params: &SearchParams<'_>) -> Result<TopK> {
        self.search_with(queries, params, &KernelOptions::default())
    }

    fn score(&self, queries: MatrixRef<'_>, ids: &[i64], width: usize) -> Result<Vec<f32>> {
        let q = self.prepare(queries, 1)?;
        let qm = MatrixRef::new("queries", &q, queries.rows(), queries.dim())?;
        topk::score_ids(qm, self.corpus(), self.inv_norms.as_deref(), ids, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exclude::Exclusions;
    use crate::topk::pair_score;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Every (score, id) of query `i` by descending score, ties by lower id, excluded ids left out.
    fn ranked(q: &[f32], c: MatrixRef<'_>, inv: Option<&[f32]>, ex: Option<(&Exclusions, usize)>) -> Vec<(f32, i64)> {
        let mut all: Vec<(f32, i64)> = (0..c.rows())
            .filter(|&j| !ex.is_some_and(|(e, i)| e.contains(i, j as u64)))
            .map(|j| (pair_score(q, c.row(j), inv.map(|s| s[j])), j as i64))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all
    }

    #[test]
    fn search_and_score_match_a_plain_reference_for_both_metrics() {
        let (nq, n, d, k) = (7, 150, 11, 9);
        let q = data(nq * d, 1);
        let c = data(n * d, 2);
        let qm = MatrixRef::new("queries", &q, nq, d).unwrap();
        for metric in [Metric::InnerProduct, Metric::Cosine] {
            let index = FlatIndex::new(c.as_slice(), n, d, metric, 2).unwrap();
            assert_eq!((index.len(), index.dim(), index.metric()), (n, d, metric));
            let top = index.search(qm, &SearchParams::new(k)).unwrap();
            let inv = crate::matrix::inverse_norms(index.corpus(), 1);
            for i in 0..nq {
                let mut qi = qm.row(i).to_vec();
                if metric == Metric::Cosine {
                    crate::matrix::normalize_rows(&mut qi, d);
                }
                let want = ranked(&qi, index.corpus(), (metric == Metric::Cosine).then_some(&inv[..]), None);
                let got: Vec<(f32, i64)> = (0..k).map(|j| (top.scores[i * k + j], top.ids[i * k + j])).collect();
                assert_eq!(got, want[..k]);
            }
            let again = index.score(qm, &top.ids, k).unwrap();
            assert_eq!(again.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), top.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn short_rows_are_padded_instead_of_refused() {
        let (n, d) = (5, 3);
        let c = data(n * d, 3);
        let q = data(2 * d, 4);
        let qm = MatrixRef::new("queries", &q, 2, d).unwrap();
        let index = FlatIndex::new(c, n, d, Metric::InnerProduct, 1).unwrap();
        let ex = Exclusions::from_rows("exclude", &[vec![0, 1, 2], vec![]], n).unwrap();
        let params = SearchParams { exclude: Some(&ex), ..SearchParams::new(7) };
        let top = index.search(qm, &params).unwrap();
        for (i, live) in [(0usize, 2usize), (1, 5)] {
            let want = ranked(qm.row(i), index.corpus(), None, Some((&ex, i)));
            assert_eq!(want.len(), live);
            let (scores, ids) = (&top.scores[i * 7..(i + 1) * 7], &top.ids[i * 7..(i + 1) * 7]);
            let got: Vec<(f32, i64)> = scores[..live].iter().copied().zip(ids[..live].iter().copied()).collect();
            assert_eq!(got, want);
            assert!(ids[live..].iter().all(|&id| id == -1) && scores[live..].iter().all(|s| s.is_nan()));
        }
        let strict = KernelOptions { pad: false, ..KernelOptions::default() };
        assert!(matches!(index.search_with(qm, &params, &strict), Err(Error::InvalidParameter { name: "k", .. })));
        let scores = index.score(qm, &top.ids, 7).unwrap();
        assert!(scores[5..7].iter().all(|s| s.is_nan()));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let c = vec![1.0f32, f32::NAN, 0.0, 0.0];
        assert_eq!(FlatIndex::new(c.clone(), 2, 2, Metric::Cosine, 1).unwrap_err(), Error::NonFinite { what: "corpus", row: 0 });
        assert_eq!(FlatIndex::new(c, 2, 2, Metric::InnerProduct, 1).unwrap_err(), Error::NonFinite { what: "corpus", row: 0 });
        assert!(matches!(FlatIndex::new(vec![0.0f32; 5], 2, 2, Metric::Cosine, 1), Err(Error::BadLength { .. })));
        let index = FlatIndex::new(vec![0.0f32; 6], 2, 3, Metric::Cosine, 1).unwrap();
        let q = [0.0f32; 4];
        let qm = MatrixRef::new("queries", &q, 2, 2).unwrap();
        assert!(matches!(index.search(qm, &SearchParams::new(1)), Err(Error::DimensionMismatch { .. })));
        assert!(matches!(index.score(qm, &[0, 1], 1), Err(Error::DimensionMismatch { .. })));
        let q3 = [f32::INFINITY, 0.0, 0.0];
        let q3m = MatrixRef::new("queries", &q3, 1, 3).unwrap();
        assert_eq!(index.search(q3m, &SearchParams::new(1)).unwrap_err(), Error::NonFinite { what: "queries", row: 0 });
        assert!(matches!(Metric::from_name("l2"), Err(Error::InvalidParameter { name: "metric", .. })));
    }
}
