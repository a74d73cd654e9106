//! The one place where core errors become Python exceptions (classes live in `hardneg.errors`).

use hardneg_core::Error;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::PyErr;

pyo3::import_exception!(hardneg.errors, HardnegError);
pyo3::import_exception!(hardneg.errors, ShapeError);
pyo3::import_exception!(hardneg.errors, NonFiniteError);
pyo3::import_exception!(hardneg.errors, IdOutOfRangeError);
pyo3::import_exception!(hardneg.errors, ParameterError);
pyo3::import_exception!(hardneg.errors, InputFileError);
pyo3::import_exception!(hardneg.errors, OutputDirError);

/// Maps a core error to the matching `hardneg.errors` class, keeping the core's message.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::DimensionMismatch { .. } | Error::Empty { .. } | Error::BadLength { .. } | Error::RowCountMismatch { .. } => {
            ShapeError::new_err(msg)
        }
        Error::NonFinite { .. } => NonFiniteError::new_err(msg),
        Error::IdOutOfRange { .. } | Error::NegativeId { .. } | Error::OutOfRange { .. } => IdOutOfRangeError::new_err(msg),
        Error::InvalidParameter { .. } => ParameterError::new_err(msg),
        Error::InputFile { .. } => InputFileError::new_err(msg),
        // Saving into a directory that is missing or not writable.
        Error::OutputFile { .. } => OutputDirError::new_err(msg),
        Error::Hnsw(_) => HardnegError::new_err(msg),
        Error::Cancelled => PyKeyboardInterrupt::new_err("search cancelled"),
    }
}

/// An error for a Rust panic, which must never unwind into Python.
pub fn internal(what: &str) -> PyErr {
    HardnegError::new_err(format!("internal error in hardneg ({what}); please report it with the inputs that caused it"))
}
