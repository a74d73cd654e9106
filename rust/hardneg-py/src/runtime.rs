//! What the extension uses on this machine, for `hardneg info`.

use pyo3::prelude::*;

/// Worker threads used when a call leaves `threads` unset: every core this process may run on.
#[pyfunction]
pub fn default_threads() -> usize {
    hardneg_core::topk::resolve_threads(0)
}
