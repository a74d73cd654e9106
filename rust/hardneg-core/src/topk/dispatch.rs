//! Which kernel runs a search: the AMX bf16 scan with certified float32 rescoring, or one of the
//! float32 kernels; the `HARDNEG_KERNEL` override; counters of what ran.

use std::sync::atomic::{AtomicU64, Ordering};

use super::amx;
use super::kernel::Isa;
use crate::error::{Error, Result};

/// Environment variable that forces a kernel: `amx`, `avx512`, `avx2` or `scalar`.
pub const KERNEL_ENV: &str = "HARDNEG_KERNEL";

/// Queries that must share a corpus pass before the AMX scan, converting float32 chunks to bf16
/// on the fly, beats the float32 kernel (measured crossover: 32 at d = 384, 32-48 at d = 768;
/// `benches/bench_topk.py --crossover`, README).
pub const AMX_MIN_QUERIES: usize = 32;

/// The same crossover when the scan reads a stored bf16 copy (half the bytes, no conversion):
/// 16 at d = 384 and 768. Below it the float32 kernel is faster even though it reads twice the
/// bytes (the tile scan computes 16 query columns whatever the batch).
pub const AMX_MIN_QUERIES_BF16: usize = 16;

/// A search kernel. Every kernel returns the same results, bit for bit: the float32 kernels
/// compute each score as one fused multiply-add chain, and the AMX scan only proposes
/// candidates that are then rescored with that chain and certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// AMX bf16 tile scan, top-k candidates rescored in float32 and certified exact.
    Amx,
    /// The float32 kernels on one instruction set.
    F32(Isa),
}

impl From<Isa> for Kernel {
    fn from(isa: Isa) -> Self {
        Kernel::F32(isa)
    }
}

impl Kernel {
    /// Lower-case name: `"amx"`, or the instruction set's name (`"avx512"`, `"avx2"`, `"scalar"`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "amx",
            Kernel::F32(isa) => isa.name(),
        }
    }

    /// The kernel called `name` (see [`Kernel::name`]), if any.
    pub fn from_name(name: &str) -> Option<Kernel> {
        if name == "amx" {
            return Some(Kernel::Amx);
        }
        Isa::from_name(name).map(Kernel::F32)
    }

    /// Every kernel this process can run, best first.
    pub fn available() -> Vec<Kernel> {
        let mut out: Vec<Kernel> = if amx::ready() { vec![Kernel::Amx] } else { vec![] };
        out.extend(Isa::available().into_iter().map(Kernel::F32));
        out
    }

    /// Whether this process can run `self`, and if not, why.
    pub fn check(self) -> Result<()> {
        match self {
            Kernel::Amx => match amx::status() {
                amx::AmxStatus::Ready => Ok(()),
                other => Err(Error::param("kernel", format!("the amx kernel cannot run here ({}); use one of: {}", other.describe(), names(&Kernel::available())))),
            },
            Kernel::F32(isa) if isa.is_supported() => Ok(()),
            Kernel::F32(isa) => Err(Error::param("kernel", format!("this CPU cannot run the {} kernel; use one of: {}", isa.name(), names(&Kernel::available())))),
        }
    }

    /// The kernel forced by `HARDNEG_KERNEL`, if set (read at every search, so tests can change
    /// it). An unknown name or a kernel this process cannot run is an error.
    pub fn from_env() -> Result<Option<Kernel>> {
        let Ok(value) = std::env::var(KERNEL_ENV) else { return Ok(None) };
        let value = value.trim().to_ascii_lowercase();
        if value.is_empty() || value == "auto" {
            return Ok(None);
        }
        let kernel = Kernel::from_name(&value).ok_or_else(|| Error::param("kernel", format!("{KERNEL_ENV}={value:?} is not a kernel; use auto, amx, avx512, avx2 or scalar")))?;
        kernel.check().map_err(|e| match e {
            Error::InvalidParameter { message, .. } => Error::param("kernel", format!("{KERNEL_ENV}={value}: {message}")),
            other => other,
        })?;
        Ok(Some(kernel))
    }

    /// The kernel a search of `queries` queries over float32 rows uses when nothing is forced.
    pub fn auto(queries: usize) -> Kernel {
        Kernel::auto_from(queries, AMX_MIN_QUERIES)
    }

    /// The AMX scan from `min_queries` queries on (when it can run), else the best float32 kernel.
    pub fn auto_from(queries: usize, min_queries: usize) -> Kernel {
        if queries >= min_queries && amx::ready() {
            Kernel::Amx
        } else {
            Kernel::F32(Isa::detect())
        }
    }

    /// Resolves the kernel of one search: `forced` (an option), else `HARDNEG_KERNEL`, else
    /// [`Kernel::auto`]. A forced kernel runs whatever the number of queries.
    pub fn resolve(forced: Option<Kernel>, queries: usize) -> Result<Kernel> {
        if let Some(k) = forced {
            k.check()?;
            return Ok(k);
        }
        Ok(Kernel::from_env()?.unwrap_or_else(|| Kernel::auto(queries)))
    }
}

fn names(kernels: &[Kernel]) -> String {
    kernels.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Process-wide counts of queries by the path that produced their results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Queries answered by the float32 kernels directly.
    pub f32_queries: u64,
    /// Queries answered by the AMX scan and certified on its first pass.
    pub amx_certified: u64,
    /// Queries whose first certificate failed and that were certified by a second AMX pass
    /// with a larger over-fetch.
    pub amx_retried: u64,
    /// Queries whose certificates failed twice and that were re-run on the float32 kernel.
    pub amx_fallback: u64,
    /// Queries answered approximately (int8 storage, float32 scores of the scan's candidates).
    pub approximate: u64,
}

/// Counters of [`KernelStats`], shared by the threads of a search (or of a process).
#[derive(Debug, Default)]
pub struct KernelCounter([AtomicU64; 5]);

impl KernelCounter {
    /// Zero counts.
    pub const fn new() -> Self {
        KernelCounter([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
    }

    /// The counts so far.
    pub fn snapshot(&self) -> KernelStats {
        let g = |i: usize| self.0[i].load(Ordering::Relaxed);
        KernelStats { f32_queries: g(0), amx_certified: g(1), amx_retried: g(2), amx_fallback: g(3), approximate: g(4) }
    }

    pub(crate) fn add(&self, c: Counter, n: usize) {
        self.0[c as usize].fetch_add(n as u64, Ordering::Relaxed);
    }
}

static PROCESS: KernelCounter = KernelCounter::new();

#[derive(Clone, Copy)]
pub(crate) enum Counter {
    F32 = 0,
    Certified = 1,
    Retried = 2,
    Fallback = 3,
    Approximate = 4,
}

/// Counts `n` queries for the process and for the search's own counter, if any.
pub(crate) fn count(own: Option<&KernelCounter>, c: Counter, n: usize) {
    PROCESS.add(c, n);
    if let Some(o) = own {
        o.add(c, n);
    }
}

/// The counts of this process since it started (take a difference around a call).
pub fn kernel_stats() -> KernelStats {
    PROCESS.snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_forced_kernels_are_checked() {
        for k in [Kernel::Amx, Kernel::F32(Isa::Avx512), Kernel::F32(Isa::Avx2), Kernel::F32(Isa::Scalar)] {
            assert_eq!(Kernel::from_name(k.name()), Some(k));
        }
        assert_eq!(Kernel::from_name("sse"), None);
        assert_eq!(Kernel::resolve(Some(Kernel::F32(Isa::Scalar)), 1000).unwrap(), Kernel::F32(Isa::Scalar));
        assert_eq!(Kernel::resolve(Some(Kernel::Amx), 1).is_ok(), amx::ready());
        assert!(Kernel::available().contains(&Kernel::F32(Isa::Scalar)));
        if amx::ready() {
            assert_eq!(Kernel::auto(AMX_MIN_QUERIES), Kernel::Amx);
            assert_eq!(Kernel::auto(AMX_MIN_QUERIES - 1), Kernel::F32(Isa::detect()));
        }
    }
}
