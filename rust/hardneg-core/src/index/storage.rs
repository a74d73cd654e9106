//! The reduced-precision copies a [`super::FlatIndex`] can keep next to its float32 rows.
//!
//! * `bfloat16`: half the bytes of float32 and each row's rounding residual norm; the AMX scan
//!   reads it instead of converting float32 chunk by chunk, and the results stay exact
//!   (candidates are rescored from the float32 rows and certified).
//! * `int8`: a quarter of the bytes, per-row symmetric scales; approximate results only.
//!
//! A copy is built from the float32 rows, or read from a saved index (owned or memory-mapped).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;
use crate::topk::bf16::convert_rows;
use crate::topk::int8::quantize_rows;
use crate::topk::{dispatch, Bf16Rows, Int8Rows, Stored};

/// How an index stores its rows for scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Storage {
    /// The float32 rows only.
    Float32,
    /// Plus a bf16 copy (exact results).
    Bfloat16,
    /// Plus an int8 copy (approximate results).
    Int8,
}

impl Storage {
    /// `"float32"`, `"bfloat16"` or `"int8"`, the names the Python API uses.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Float32 => "float32",
            Storage::Bfloat16 => "bfloat16",
            Storage::Int8 => "int8",
        }
    }

    /// Queries per search from which the AMX scan runs (when it can): the measured crossovers of
    /// [`crate::topk::dispatch`] for float32 and bfloat16; int8 always scans its copy (the only
    /// approximate path).
    pub fn amx_min_queries(self) -> usize {
        match self {
            Storage::Float32 => dispatch::AMX_MIN_QUERIES,
            Storage::Bfloat16 => dispatch::AMX_MIN_QUERIES_BF16,
            Storage::Int8 => 1,
        }
    }

    /// The storage called `name` (see [`Storage::name`]).
    pub fn from_name(name: &str) -> Result<Storage> {
        [Storage::Float32, Storage::Bfloat16, Storage::Int8]
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| Error::param("storage", format!("storage must be 'float32', 'bfloat16' or 'int8', got {name:?}")))
    }
}

/// Row-major values owned in memory or read from a memory-mapped file.
pub(crate) enum Buf<T: 'static> {
    Owned(Vec<T>),
    Mapped { map: Arc<memmap2::Mmap>, offset: usize, len: usize, _t: std::marker::PhantomData<T> },
}

impl<T: Copy> Buf<T> {
    /// Values `offset..offset + len * size_of::<T>()` bytes of `map`; the caller checked the
    /// range and its alignment.
    pub(crate) fn mapped(map: Arc<memmap2::Mmap>, offset: usize, len: usize) -> Self {
        assert!(offset.is_multiple_of(std::mem::align_of::<T>()) && offset + len * std::mem::size_of::<T>() <= map.len());
        Buf::Mapped { map, offset, len, _t: std::marker::PhantomData }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            // SAFETY: the range lies inside the mapping (checked in `mapped`), is aligned for T,
            // the mapping lives as long as self, and T is a plain number type (any bits valid).
            Buf::Mapped { map, offset, len, .. } => unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset).cast::<T>(), *len) },
        }
    }
}

// The mapped buffers hold float32 rows too.
impl super::F32Rows for Buf<f32> {
    fn values(&self) -> &[f32] {
        self.as_slice()
    }
}

/// A copy of the rows in a reduced precision, with its per-row numbers.
pub(crate) enum RowCopy {
    /// bf16 bits and residual norms `||x - bf16(x)||`.
    Bf16 { rows: Buf<u16>, residual: Vec<f32> },
    /// Quantised rows and their scales.
    Int8 { rows: Buf<i8>, scale: Vec<f32> },
}

impl RowCopy {
    /// Builds the copy `storage` asks for from the float32 rows (`None` for float32), with
    /// `threads` threads.
    pub(crate) fn build(storage: Storage, corpus: MatrixRef<'_>, threads: usize) -> Option<RowCopy> {
        match storage {
            Storage::Float32 => None,
            Storage::Bfloat16 => {
                let mut rows = vec![0u16; corpus.data().len()];
                let residual = by_row_ranges(corpus, &mut rows, threads, convert_rows);
                Some(RowCopy::Bf16 { rows: Buf::Owned(rows), residual })
            }
            Storage::Int8 => {
                let mut rows = vec![0i8; corpus.data().len()];
                let scale = by_row_ranges(corpus, &mut rows, threads, quantize_rows);
                Some(RowCopy::Int8 { rows: Buf::Owned(rows), scale })
            }
        }
    }

    pub(crate) fn storage(&self) -> Storage {
        match self {
            RowCopy::Bf16 { .. } => Storage::Bfloat16,
            RowCopy::Int8 { .. } => Storage::Int8,
        }
    }

    /// The copy as the search options take it.
    pub(crate) fn stored(&self) -> Stored<'_> {
        match self {
            RowCopy::Bf16 { rows, residual } => Stored::Bf16(Bf16Rows { data: rows.as_slice(), residual }),
            RowCopy::Int8 { rows, scale } => Stored::Int8(Int8Rows { data: rows.as_slice(), scale }),
        }
    }
}

/// Runs `convert(rows, d, out)` over contiguous row ranges in parallel; returns the per-row
/// numbers in row order.
fn by_row_ranges<T: Send>(corpus: MatrixRef<'_>, out: &mut [T], threads: usize, convert: impl Fn(&[f32], usize, &mut [T]) -> Vec<f32> + Sync) -> Vec<f32> {
    let (n, d) = (corpus.rows(), corpus.dim());
    let per = n.div_ceil(threads.clamp(1, n)).max(1);
    let convert = &convert;
    std::thread::scope(|s| {
        let handles: Vec<_> = out
            .chunks_mut(per * d)
            .enumerate()
            .map(|(t, o)| {
                let rows = corpus.slice_rows(t * per, t * per + o.len() / d);
                s.spawn(move || convert(rows.data(), d, o))
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("conversion thread")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_copies_match_the_rows() {
        for s in [Storage::Float32, Storage::Bfloat16, Storage::Int8] {
            assert_eq!(Storage::from_name(s.name()).unwrap(), s);
        }
        assert!(matches!(Storage::from_name("fp16"), Err(Error::InvalidParameter { name: "storage", .. })));
        let (n, d) = (37, 10);
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let m = MatrixRef::new("c", &x, n, d).unwrap();
        let Some(RowCopy::Bf16 { rows, residual }) = RowCopy::build(Storage::Bfloat16, m, 3) else { panic!() };
        let mut want = vec![0u16; n * d];
        assert_eq!(convert_rows(&x, d, &mut want), residual);
        assert_eq!(rows.as_slice(), &want[..]);
        let Some(RowCopy::Int8 { rows, scale }) = RowCopy::build(Storage::Int8, m, 4) else { panic!() };
        let mut want = vec![0i8; n * d];
        assert_eq!(quantize_rows(&x, d, &mut want), scale);
        assert_eq!(rows.as_slice(), &want[..]);
        assert!(RowCopy::build(Storage::Float32, m, 1).is_none());
    }
}
