//! Intel AMX tiles from stable Rust: detection, the Linux permission, tile configuration, and
//! the bf16 microkernels.
//!
//! The AMX intrinsics and the `amx-*` target features are unstable in Rust, so the tile
//! instructions are written with `asm!` (tile registers are clobber-only operands). Detection is
//! CPUID leaf 7 plus XCR0; on Linux the first tile instruction of a process also needs the
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)` permission, which is requested once, lazily, the
//! first time a search could use AMX (a refusal leaves the float32 kernels in charge).
//!
//! Operand layouts (one tile = 16 rows of 64 bytes = 1 KiB, 64-byte aligned):
//! * A, the corpus: 16 rows x 32 bf16 dimensions, plain row-major;
//! * B, the queries: "VNNI" pairs, tile row `r` holds `(q_n[2r], q_n[2r + 1])` for 16 queries `n`;
//! * C: 16 corpus rows x 16 queries of f32 scores.

use std::sync::OnceLock;

/// Whether AMX bf16 can run in this process, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmxStatus {
    /// Tiles are usable: the CPU has AMX-BF16, the OS enables the state, permission granted.
    Ready,
    /// The CPU or OS lacks AMX (the reason says which part).
    Unsupported(&'static str),
    /// The OS refused the permission request (the message has the error).
    Refused(String),
}

impl AmxStatus {
    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match self {
            AmxStatus::Ready => "ready".to_string(),
            AmxStatus::Unsupported(why) => format!("unsupported: {why}"),
            AmxStatus::Refused(why) => format!("permission refused: {why}"),
        }
    }
}

/// Environment variable that simulates a refused permission (`refuse`), for tests.
pub const PERMISSION_ENV: &str = "HARDNEG_AMX_PERMISSION";

/// The AMX status of this process. The first call requests the permission (once per process).
pub fn status() -> &'static AmxStatus {
    static STATUS: OnceLock<AmxStatus> = OnceLock::new();
    STATUS.get_or_init(|| {
        if let Err(why) = cpu_support() {
            return AmxStatus::Unsupported(why);
        }
        if std::env::var(PERMISSION_ENV).is_ok_and(|v| v == "refuse") {
            return AmxStatus::Refused(format!("simulated by {PERMISSION_ENV}=refuse"));
        }
        match request_permission() {
            Ok(()) => AmxStatus::Ready,
            Err(e) => AmxStatus::Refused(e),
        }
    })
}

/// Whether tiles are usable (see [`status`]).
pub fn ready() -> bool {
    *status() == AmxStatus::Ready
}

/// CPU and OS support, without asking for the permission.
pub fn cpu_support() -> Result<(), &'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
                let leaf7 = __cpuid_count(7, 0);
        let tile = leaf7.edx >> 24 & 1 == 1;
        let bf16 = leaf7.edx >> 22 & 1 == 1;
        if !(tile && bf16) {
            return Err("the CPU has no AMX-BF16 tiles");
        }
        // The bf16 conversion and the epilogue use AVX-512 (F, BW, BF16 comes with AMX parts).
        if !std::arch::is_x86_feature_detected!("avx512f") || !std::arch::is_x86_feature_detected!("avx512bw") {
            return Err("the CPU has AMX but no AVX-512F/BW");
        }
        let osxsave = __cpuid_count(1, 0).ecx >> 27 & 1 == 1;
        if !osxsave {
            return Err("the OS does not enable XSAVE");
        }
        // SAFETY: OSXSAVE is set, so XGETBV is enabled.
        let xcr0 = unsafe { xgetbv0() };
        // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA).
        if xcr0 & 0x60000 != 0x60000 {
            return Err("the OS does not enable the AMX tile state");
        }
        Ok(())
    }
    #[cfg(not(target_arch = "x86_64"))]
    Err("not an x86_64 CPU")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

/// Asks Linux for the tile data state (per process; inherited by every thread).
fn request_permission() -> Result<(), String> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const SYS_ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, 18) only changes this process's permitted
        // xstate features; it reads no memory. The syscall clobbers rcx and r11.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        match ret {
            0 => Ok(()),
            -22 => Err("arch_prctl: EINVAL (the kernel does not offer AMX)".to_string()),
            -28 => Err("arch_prctl: ENOSPC (a thread's signal stack is too small for the AMX state)".to_string()),
            e => Err(format!("arch_prctl failed with errno {}", -e)),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    Err("AMX permission is only requested on Linux".to_string())
}

/// Bytes of one tile (16 rows x 64 bytes).
pub(crate) const TILE_BYTES: usize = 1024;
/// bf16 dimensions per tile row (the K of one tile product).
pub(crate) const TILE_K: usize = 32;
/// Rows of a tile (corpus rows of an A tile, queries of a B tile).
pub(crate) const TILE_ROWS: usize = 16;

/// Offset, in elements of `K` per 64-byte tile row (32 bf16 or 64 int8), of row `r`, dimension
/// `t` in a packed corpus chunk: blocks of 32 rows, `[block][step][half][16 rows][K]`, `steps`
/// steps of `K` dimensions per block.
#[inline]
pub(crate) fn tile_offset<const K: usize>(steps: usize, r: usize, t: usize) -> usize {
    let (b, h, rr) = (r / (2 * TILE_ROWS), r % (2 * TILE_ROWS) / TILE_ROWS, r % TILE_ROWS);
    ((b * steps + t / K) * 2 + h) * TILE_ROWS * K + rr * K + t % K
}

/// The same for the queries, VNNI-packed: tile row `i` holds dimensions `i p .. (i + 1) p` of 16
/// queries side by side, `p = K / 16` (bf16 pairs or int8 quads).
#[inline]
pub(crate) fn vnni_offset<const K: usize>(steps: usize, q: usize, t: usize) -> usize {
    let p = K / TILE_ROWS;
    let (b, h, n) = (q / (2 * TILE_ROWS), q % (2 * TILE_ROWS) / TILE_ROWS, q % TILE_ROWS);
    let (s, k) = (t / K, t % K);
    ((b * steps + s) * 2 + h) * TILE_ROWS * K + (k / p) * K + n * p + k % p
}

/// The 64-byte LDTILECFG block: palette 1, all eight tiles 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const FULL: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64; // colsb, little-endian u16
            c[48 + t] = 16; // rows
            t += 1;
        }
        TileConfig(c)
    };
}

/// Tile state of one thread between [`TileSession::start`] and drop: configured on start,
/// released (TILERELEASE) on drop so the thread's 8 KiB tile state is not saved at every
/// context switch afterwards.
pub(crate) struct TileSession(std::marker::PhantomData<*const ()>);

impl TileSession {
    /// Configures the tiles of the calling thread; `None` unless [`ready`].
    pub(crate) fn start() -> Option<TileSession> {
        if !ready() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AMX is supported and permitted (checked above); the config is 64-byte aligned.
        unsafe {
            std::arch::asm!("ldtilecfg [{cfg}]", cfg = in(reg) &TileConfig::FULL as *const TileConfig, options(nostack, readonly));
        }
        Some(TileSession(std::marker::PhantomData))
    }
}

impl Drop for TileSession {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a session only exists when AMX is ready on this thread.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }
}

/// Two corpus tiles x two query tiles: `C[2 x 2]` for 32 corpus rows x 32 queries over
/// `steps` 64-byte steps (32 bf16 or 64 int8 dimensions).
///
/// `a`: `steps` x 2 A tiles (`[step][tile][16 rows][64 bytes]`); `b`: `steps` x 2 B tiles (same
/// shape, VNNI pairs or quads); `c`: four C tiles in the order C(a0,b0), C(a0,b1), C(a1,b0),
/// C(a1,b1), each `[16 corpus rows][16 queries]` f32 (bf16, TDPBF16PS) or i32 (int8,
/// TDPBSSD). With `ACC` the products are added to the C tiles read from `c` (partial sums of
/// earlier dimension slices), else they start from zero.
///
/// # Safety
/// The calling thread holds a [`TileSession`]; `a`, `b` hold `steps * 2048` bytes and `c`
/// 4096 bytes, all 64-byte aligned; `steps >= 1`.
#[inline]
pub(crate) unsafe fn kernel_2x2<const ACC: bool, const INT8: bool>(_s: &TileSession, a: *const u8, b: *const u8, steps: usize, c: *mut u8) {
    macro_rules! body {
        ($dp:literal, $($init:literal),*) => {
            #[cfg(target_arch = "x86_64")]
            std::arch::asm!(
                $($init,)*
                "2:",
                "tileloadd tmm0, [{a} + {s}*1]",
                "tileloadd tmm2, [{b} + {s}*1]",
                concat!($dp, " tmm4, tmm0, tmm2"),
                "tileloadd tmm3, [{b} + {s}*1 + 1024]",
                concat!($dp, " tmm5, tmm0, tmm3"),
                "tileloadd tmm1, [{a} + {s}*1 + 1024]",
                concat!($dp, " tmm6, tmm1, tmm2"),
                concat!($dp, " tmm7, tmm1, tmm3"),
                "add {a}, 2048",
                "add {b}, 2048",
                "dec {n}",
                "jnz 2b",
                "tilestored [{c} + {s}*1], tmm4",
                "tilestored [{c} + {s}*1 + 1024], tmm5",
                "tilestored [{c} + {s}*1 + 2048], tmm6",
                "tilestored [{c} + {s}*1 + 3072], tmm7",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                n = inout(reg) steps => _,
                c = in(reg) c,
                s = in(reg) 64usize,
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack),
            )
        };
    }
    macro_rules! init {
        ($dp:literal) => {
            if ACC {
                body!(
                    $dp,
                    "tileloadd tmm4, [{c} + {s}*1]",
                    "tileloadd tmm5, [{c} + {s}*1 + 1024]",
                    "tileloadd tmm6, [{c} + {s}*1 + 2048]",
                    "tileloadd tmm7, [{c} + {s}*1 + 3072]"
                );
            } else {
                body!($dp, "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7");
            }
        };
    }
    if INT8 {
        init!("tdpbssd");
    } else {
        init!("tdpbf16ps");
    }
}

/// Two corpus tiles x one query tile (the last 16 queries when their count is odd in 16s):
/// C(a0,b) and C(a1,b) at the positions [`kernel_2x2`] gives C(a0,b0) and C(a1,b0) (`c` and
/// `c + 2048` bytes). `b` has the same stride as in [`kernel_2x2`]; its second tiles are unused.
///
/// # Safety
/// As [`kernel_2x2`].
#[inline]
pub(crate) unsafe fn kernel_2x1<const ACC: bool, const INT8: bool>(_s: &TileSession, a: *const u8, b: *const u8, steps: usize, c: *mut u8) {
    macro_rules! body {
        ($dp:literal, $($init:literal),*) => {
            #[cfg(target_arch = "x86_64")]
            std::arch::asm!(
                $($init,)*
                "2:",
                "tileloadd tmm0, [{a} + {s}*1]",
                "tileloadd tmm2, [{b} + {s}*1]",
                concat!($dp, " tmm4, tmm0, tmm2"),
                "tileloadd tmm1, [{a} + {s}*1 + 1024]",
                concat!($dp, " tmm6, tmm1, tmm2"),
                "add {a}, 2048",
                "add {b}, 2048",
                "dec {n}",
                "jnz 2b",
                "tilestored [{c} + {s}*1], tmm4",
                "tilestored [{c} + {s}*1 + 2048], tmm6",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                n = inout(reg) steps => _,
                c = in(reg) c,
                s = in(reg) 64usize,
                out("tmm0") _, out("tmm1") _, out("tmm2") _,
                out("tmm4") _, out("tmm6") _,
                options(nostack),
            )
        };
    }
    macro_rules! init {
        ($dp:literal) => {
            if ACC {
                body!($dp, "tileloadd tmm4, [{c} + {s}*1]", "tileloadd tmm6, [{c} + {s}*1 + 2048]");
            } else {
                body!($dp, "tilezero tmm4", "tilezero tmm6");
            }
        };
    }
    if INT8 {
        init!("tdpbssd");
    } else {
        init!("tdpbf16ps");
    }
}

/// The tile unit's bf16 peak on the calling thread: repeated TDPBF16PS on four independent
/// accumulators with operands already in tile registers. Returns FLOP per second, or `None`
/// when AMX is not ready.
pub fn peak_flops(iters: u64) -> Option<f64> {
    let s = TileSession::start()?;
    let _ = &s;
    let t = std::time::Instant::now();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the session configured the tiles; tiles are zeroed, no memory is touched.
    unsafe {
        std::arch::asm!(
            "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
            "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7",
            "2:",
            "tdpbf16ps tmm4, tmm0, tmm2",
            "tdpbf16ps tmm5, tmm0, tmm3",
            "tdpbf16ps tmm6, tmm1, tmm2",
            "tdpbf16ps tmm7, tmm1, tmm3",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters.max(1) => _,
            out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
            out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
            options(nostack, nomem),
        );
    }
    let secs = t.elapsed().as_secs_f64();
    Some(iters.max(1) as f64 * 4.0 * (16.0 * 16.0 * 32.0 * 2.0) / secs)
}

/// The 2 x 2 microkernel's rate on the calling thread, alone: a packed chunk of `rows` corpus
/// rows against `queries` packed queries of `d` dimensions, every (query block, corpus block)
/// pair `repeats` times, no epilogue. Returns FLOP per second, or `None` when AMX is not ready.
pub fn microkernel_flops(rows: usize, d: usize, queries: usize, slice_steps: usize, repeats: usize) -> Option<f64> {
    use super::bf16::{chunk_len, pack_chunk, pack_queries, steps, RowNorms, Rows, TileBuf, PAIR, TILE_ELEMS};
    let s = TileSession::start()?;
    let (c, q) = (crate::synthetic::uniform(rows * d, 1), crate::synthetic::uniform(queries * d, 2));
    let mut chunk = TileBuf::zeroed(chunk_len(rows, d));
    let mut norms = vec![RowNorms::default(); rows];
    pack_chunk(Rows::F32(&c), d, 0, rows, chunk.as_mut_slice(), &mut norms);
    let qp = pack_queries(&q, queries, d);
    let st = steps(d);
    let block = st * 2 * TILE_ELEMS;
    let (cb, qb) = (rows.div_ceil(PAIR), queries.div_ceil(PAIR));
    let mut out = super::kernel::AlignedBuf::<f32>::zeroed(1024 * cb);
    let ks = slice_steps.clamp(1, st);
    let t = std::time::Instant::now();
    for _ in 0..repeats {
        for j in 0..qb {
            let mut s0 = 0;
            while s0 < st {
                let n = ks.min(st - s0);
                for i in 0..cb {
                    let (a, b) = (chunk.as_slice().as_ptr().cast::<u8>(), qp.tiles.as_slice().as_ptr().cast::<u8>());
                    let c = out.as_mut_slice()[i * 1024..].as_mut_ptr().cast::<u8>();
                    // SAFETY: the session is live; the buffers hold whole 64-byte aligned blocks.
                    unsafe {
                        let (a, b) = (a.add(2 * (i * block + s0 * 2 * TILE_ELEMS)), b.add(2 * (j * block + s0 * 2 * TILE_ELEMS)));
                        if s0 == 0 {
                            kernel_2x2::<false, false>(&s, a, b, n, c)
                        } else {
                            kernel_2x2::<true, false>(&s, a, b, n, c)
                        }
                    };
                }
                s0 += n;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(out.as_slice()[0]);
    Some((repeats * cb * qb) as f64 * (PAIR * PAIR * st * TILE_K * 2) as f64 / secs)
}
