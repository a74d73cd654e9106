//! Borrowing numpy arrays and parsing the small options every binding shares.

use hardneg_core::matrix::MatrixRef;
use hardneg_core::{Isa, Kernel};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{to_py, ParameterError, ShapeError};

/// Optional per-query id lists given as CSR arrays (`exclude_offsets`, `exclude_ids`): both or neither.
pub(crate) fn optional_csr<'a>(
    offsets: &'a Option<PyReadonlyArray1<'_, i64>>,
    ids: &'a Option<PyReadonlyArray1<'_, i64>>,
) -> PyResult<Option<(&'a [i64], &'a [i64])>> {
    match (offsets, ids) {
        (Some(o), Some(i)) => Ok(Some((o.as_slice()?, i.as_slice()?))),
        (None, None) => Ok(None),
        _ => Err(ParameterError::new_err("give both exclude_offsets and exclude_ids, or neither")),
    }
}

/// The data of a 2-D array, which must be C-contiguous (the Python layer makes it so).
pub(crate) fn contiguous<'a, T: numpy::Element>(what: &str, a: &'a PyReadonlyArray2<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| ShapeError::new_err(format!("{what} must be C-contiguous")))
}

/// A float32 `[rows, dim]` array as a core matrix view (no copy).
pub(crate) fn matrix_ref<'a>(what: &'static str, a: &'a PyReadonlyArray2<'_, f32>) -> PyResult<MatrixRef<'a>> {
    let (rows, dim) = (a.shape()[0], a.shape()[1]);
    MatrixRef::new(what, contiguous(what, a)?, rows, dim).map_err(to_py)
}

/// The `isa=` option of tests and benchmarks: `None` lets the core pick the best one.
pub(crate) fn parse_isa(isa: Option<&str>) -> PyResult<Option<Isa>> {
    isa.map(|name| {
        Isa::from_name(name).ok_or_else(|| ParameterError::new_err(format!("unknown isa {name:?}; use 'avx512', 'avx2' or 'scalar'")))
    })
    .transpose()
}

/// The `kernel=` option of tests and benchmarks: `None` lets the core pick (or `HARDNEG_KERNEL`).
pub(crate) fn parse_kernel(kernel: Option<&str>) -> PyResult<Option<Kernel>> {
    kernel
        .map(|name| Kernel::from_name(name).ok_or_else(|| ParameterError::new_err(format!("unknown kernel {name:?}; use 'amx', 'avx512', 'avx2' or 'scalar'"))))
        .transpose()
}
