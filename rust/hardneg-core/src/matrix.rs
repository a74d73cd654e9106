//! Borrowed row-major `f32` matrices and their checks.

use crate::error::{Error, Result};

/// A borrowed, C-contiguous `rows x dim` matrix of `f32`.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a> {
    data: &'a [f32],
    rows: usize,
    dim: usize,
}

impl<'a> MatrixRef<'a> {
    /// Wraps `data` as `rows x dim`. `what` names the input in error messages.
    pub fn new(what: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Result<Self> {
        if rows == 0 || dim == 0 {
            return Err(Error::Empty { what, rows, dim });
        }
        if rows.checked_mul(dim) != Some(data.len()) {
            return Err(Error::BadLength { what, len: data.len(), rows, dim });
        }
        Ok(Self { data, rows, dim })
    }

    /// Number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (the embedding dimension).
    #[inline]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The whole buffer, row-major.
    #[inline]
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Rows `start..end` as a matrix view.
    pub fn slice_rows(&self, start: usize, end: usize) -> MatrixRef<'a> {
        MatrixRef { data: &self.data[start * self.dim..end * self.dim], rows: end - start, dim: self.dim }
    }
}

/// Returns the first row holding a NaN or an infinity, scanning with `threads` threads.
pub fn first_non_finite_row(m: MatrixRef<'_>, threads: usize) -> Option<usize> {
    let threads = threads.max(1).min(m.rows());
    if threads == 1 || m.rows() * m.dim() < 1 << 20 {
        return scan_rows(m, 0);
    }
    let per = m.rows().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = (t * per).min(m.rows());
                let end = ((t + 1) * per).min(m.rows());
                s.spawn(move || scan_rows(m.slice_rows(start, end), start))
            })
            .collect();
        // The lowest offending row wins so the message does not depend on the thread count.
        handles.into_iter().filter_map(|h| h.join().expect("finite scan thread")).min()
    })
}

fn scan_rows(m: MatrixRef<'_>, offset: usize) -> Option<usize> {
    // A NaN or an infinity has every exponent bit set. Counting them is an integer sum, which
    // has no order to keep (unlike a float sum, which the compiler may not reorder): it vectorises.
    const EXP: u32 = 0x7f80_0000;
    m.data()
        .chunks_exact(m.dim())
        .position(|row| row.iter().map(|&x| (x.to_bits() & EXP == EXP) as u32).sum::<u32>() != 0)
        .map(|r| r + offset)
}

/// Errors with [`Error::NonFinite`] if `m` holds a NaN or an infinity.
pub fn check_finite(what: &'static str, m: MatrixRef<'_>, threads: usize) -> Result<()> {
    match first_non_finite_row(m, threads) {
        Some(row) => Err(Error::NonFinite { what, row }),
        None => Ok(()),
    }
}

/// The inverse L2 norm of every row (0 for a zero row), computed with `threads` threads.
/// Cosine search multiplies these into the scores instead of copying a normalised corpus.
pub fn inverse_norms(m: MatrixRef<'_>, threads: usize) -> Vec<f32> {
    norms_pass(m, threads).0
}

/// [`inverse_norms`] and [`check_finite`] in one pass over the rows (a large or memory-mapped
/// matrix is read once): errors with [`Error::NonFinite`] naming the lowest offending row.
pub fn finite_inverse_norms(what: &'static str, m: MatrixRef<'_>, threads: usize) -> Result<Vec<f32>> {
    match norms_pass(m, threads) {
        (_, Some(row)) => Err(Error::NonFinite { what, row }),
        (inv, None) => Ok(inv),
    }
}

/// Inverse norms and the first row whose sum of squares is not finite. A float32 squared is
/// at most ~1.2e77 in f64, so the sum is finite exactly when the row holds no NaN or infinity.
fn norms_pass(m: MatrixRef<'_>, threads: usize) -> (Vec<f32>, Option<usize>) {
    let mut out = vec![0.0f32; m.rows()];
    let threads = threads.clamp(1, m.rows().max(1));
    let per = m.rows().div_ceil(threads).max(1);
    let bad = std::thread::scope(|s| {
        let handles: Vec<_> = out
            .chunks_mut(per)
            .enumerate()
            .map(|(t, part)| {
                let rows = m.slice_rows(t * per, t * per + part.len());
                s.spawn(move || {
                    let mut first = None;
                    for (j, (o, row)) in part.iter_mut().zip(rows.data().chunks_exact(rows.dim())).enumerate() {
                        let sq = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
                        if !sq.is_finite() {
                            first = first.or(Some(t * per + j));
                        }
                        *o = inverse_of(sq.sqrt());
                    }
                    first
                })
            })
            .collect();
        // The lowest offending row wins so the message does not depend on the thread count.
        handles.into_iter().filter_map(|h| h.join().expect("norm thread")).min()
    });
    (out, bad)
}

#[inline]
fn inverse_of(norm: f64) -> f32 {
    if norm > 0.0 && norm.is_finite() {
        (1.0 / norm) as f32
    } else {
        0.0
    }
}

#[inline]
fn inverse_norm(row: &[f32]) -> f32 {
    inverse_of(row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt())
}

/// L2-normalises every row in place; rows of norm zero stay zero (their cosine is 0 to everything).
pub fn normalize_rows(data: &mut [f32], dim: usize) {
    for row in data.chunks_exact_mut(dim) {
        let inv = inverse_norm(row);
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        let v = vec![0.0f32; 6];
        assert!(matches!(MatrixRef::new("q", &v, 0, 3), Err(Error::Empty { .. })));
        assert!(matches!(MatrixRef::new("q", &v, 2, 0), Err(Error::Empty { .. })));
        assert!(matches!(MatrixRef::new("q", &v, 4, 2), Err(Error::BadLength { .. })));
        assert!(MatrixRef::new("q", &v, 2, 3).is_ok());
    }

    #[test]
    fn finds_first_non_finite_row() {
        let mut v = vec![1.0f32; 5000 * 300];
        let m = MatrixRef::new("c", &v, 5000, 300).unwrap();
        assert_eq!(first_non_finite_row(m, 2), None);
        v[4000 * 300 + 7] = f32::INFINITY;
        v[3999 * 300 + 299] = f32::NAN;
        let m = MatrixRef::new("c", &v, 5000, 300).unwrap();
        assert_eq!(first_non_finite_row(m, 1), Some(3999));
        assert_eq!(first_non_finite_row(m, 2), Some(3999));
        assert_eq!(check_finite("c", m, 2), Err(Error::NonFinite { what: "c", row: 3999 }));
    }

    #[test]
    fn inverse_norms_match_rows() {
        let v = vec![3.0f32, 4.0, 0.0, 0.0, 1.0, 0.0];
        let m = MatrixRef::new("c", &v, 3, 2).unwrap();
        assert_eq!(inverse_norms(m, 2), vec![0.2, 0.0, 1.0]);
    }

    #[test]
    fn normalises_rows_and_keeps_zero_rows() {
        let mut v = vec![3.0, 4.0, 0.0, 0.0];
        normalize_rows(&mut v, 2);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
