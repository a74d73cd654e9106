//! The one helper that runs core work without the GIL, with Ctrl-C and panics handled.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{internal, to_py};

/// Runs `work` on a helper thread while this thread waits without the GIL.
///
/// Every 50 ms the waiting thread re-attaches to run Python's signal handlers: on Ctrl-C it
/// raises the cancel flag that `work` polls, waits for it to stop, and returns the
/// `KeyboardInterrupt`. A panic inside `work` becomes a `HardnegError` instead of unwinding into
/// Python.
pub fn run_detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&AtomicBool) -> hardneg_core::Result<T> + Send,
{
    let cancel = AtomicBool::new(false);
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let out = catch_unwind(AssertUnwindSafe(|| work(&cancel)));
            *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            done.1.notify_all();
            out
        });
        loop {
            let finished = py.detach(|| {
                let guard = done.0.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = done.1.wait_timeout_while(guard, Duration::from_millis(50), |f| !*f).unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if finished {
                break;
            }
            if let Err(interrupt) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = py.detach(|| handle.join());
                return Err(interrupt);
            }
        }
        match py.detach(|| handle.join()) {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(to_py(e)),
            Ok(Err(_)) | Err(_) => Err(internal("a worker panicked")),
        }
    })
}
