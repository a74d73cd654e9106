//! The saved-index file of [`FlatIndex::save`] and [`FlatIndex::load`], format version 1.
//!
//! All integers are little-endian. The file starts with a header whose length is a multiple of
//! 64 bytes:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `HNGFLAT\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | header length `H` in bytes (a multiple of 64, checksum included) |
//! | 16 | 1 | storage: 0 float32, 1 bfloat16, 2 int8 |
//! | 17 | 1 | metric: 0 inner product, 1 cosine |
//! | 18 | 2 | number of sections `S` |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | rows `N` |
//! | 32 | 8 | dimension `d` |
//! | 40 | 32 S | section table: kind (u32), reserved (u32), offset (u64), length in bytes (u64), checksum of the section's bytes (u64) |
//! | H - 8 | 8 | checksum of bytes `0..H-8` |
//!
//! Sections start at 64-byte aligned offsets after the header (zero padding in between), so a
//! memory map of the file gives aligned rows. Kinds: 1 float32 rows (`4 N d` bytes, always
//! present), 2 bf16 rows (`2 N d`), 3 bf16 residual norms `||x - bf16(x)||` (`4 N`, float32),
//! 4 int8 rows (`N d`), 5 int8 row scales (`4 N`, float32), 6 inverse row norms for cosine
//! (`4 N`, float32). The checksum is FNV-1a over 64-bit little-endian words: start from
//! `0xcbf29ce484222325`, for each word `h = (h ^ word) * 0x100000001b3` (mod 2^64), the last
//! partial word zero-padded, then `h ^ length_in_bytes`.
//!
//! Loading checks everything but the bulk rows at once (magic, version, header checksum,
//! section bounds against the file size, the small per-row sections and their checksums);
//! the bulk rows are checked against their checksums when read into memory, and on request
//! when memory-mapped (a map opens at once whatever the size).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use super::storage::{Buf, RowCopy, Storage};
use super::{F32Rows, FlatIndex, Metric, Searcher};
use crate::error::{Error, Result};

/// First bytes of a saved [`FlatIndex`].
pub const MAGIC: [u8; 8] = *b"HNGFLAT\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

const TABLE: usize = 40;
const ENTRY: usize = 32;
const ALIGN: u64 = 64;
/// A header longer than this is not one we wrote.
const MAX_HEADER: u64 = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    F32Rows = 1,
    Bf16Rows = 2,
    Bf16Residual = 3,
    Int8Rows = 4,
    Int8Scale = 5,
    InvNorms = 6,
}

impl Kind {
    fn from_code(c: u32) -> Option<Kind> {
        [Kind::F32Rows, Kind::Bf16Rows, Kind::Bf16Residual, Kind::Int8Rows, Kind::Int8Scale, Kind::InvNorms].into_iter().find(|k| *k as u32 == c)
    }
    fn name(self) -> &'static str {
        match self {
            Kind::F32Rows => "float32 rows",
            Kind::Bf16Rows => "bf16 rows",
            Kind::Bf16Residual => "bf16 residual norms",
            Kind::Int8Rows => "int8 rows",
            Kind::Int8Scale => "int8 scales",
            Kind::InvNorms => "inverse row norms",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: Kind,
    offset: u64,
    len: u64,
    checksum: u64,
}

/// FNV-1a over little-endian 64-bit words (see the module documentation).
pub fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x100000001b3;
    let mut h = 0xcbf29ce484222325u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(PRIME);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
    }
    h ^ bytes.len() as u64
}

/// The bytes of a slice of plain numbers (this format is little-endian, like every target
/// this crate builds the kernels for).
fn bytes_of<T: std::marker::Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type (f32, u16, i8): every byte is initialised.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Writes `index` to `path` (through a temporary file renamed into place, so a crash never
/// leaves a half-written index under the final name).
pub(crate) fn save(index: &FlatIndex<'_>, path: &Path) -> Result<()> {
    if cfg!(target_endian = "big") {
        return Err(Error::param("path", "saving indexes needs a little-endian machine"));
    }
    let io = |e: std::io::Error| Error::OutputFile { path: path.display().to_string(), problem: e.to_string() };
    let mut sections: Vec<(Kind, &[u8])> = vec![(Kind::F32Rows, bytes_of(index.corpus().data()))];
    match index.copy() {
        Some(RowCopy::Bf16 { rows, residual }) => {
            sections.push((Kind::Bf16Rows, bytes_of(rows.as_slice())));
            sections.push((Kind::Bf16Residual, bytes_of(residual)));
        }
        Some(RowCopy::Int8 { rows, scale }) => {
            sections.push((Kind::Int8Rows, bytes_of(rows.as_slice())));
            sections.push((Kind::Int8Scale, bytes_of(scale)));
        }
        None => {}
    }
    if let Some(inv) = index.inverse_norms() {
        sections.push((Kind::InvNorms, bytes_of(inv)));
    }
    let header_len = align_up((TABLE + ENTRY * sections.len() + 8) as u64);
    let mut header = vec![0u8; header_len as usize];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(header_len as u32).to_le_bytes());
    header[16] = match index.storage() {
        Storage::Float32 => 0,
        Storage::Bfloat16 => 1,
        Storage::Int8 => 2,
    };
    header[17] = match index.metric() {
        Metric::InnerProduct => 0,
        Metric::Cosine => 1,
    };
    header[18..20].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    header[24..32].copy_from_slice(&(index.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(index.dim() as u64).to_le_bytes());
    let mut offset = header_len;
    let mut offsets = Vec::with_capacity(sections.len());
    for (i, (kind, data)) in sections.iter().enumerate() {
        let e = &mut header[TABLE + ENTRY * i..TABLE + ENTRY * (i + 1)];
        e[0..4].copy_from_slice(&(*kind as u32).to_le_bytes());
        e[8..16].copy_from_slice(&offset.to_le_bytes());
        e[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
        e[24..32].copy_from_slice(&checksum(data).to_le_bytes());
        offsets.push(offset);
        offset = align_up(offset + data.len() as u64);
    }
    let sum = checksum(&header[..header_len as usize - 8]);
    header[header_len as usize - 8..].copy_from_slice(&sum.to_le_bytes());
    let tmp = path.with_extension(format!("{}.partial", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        f.write_all(&header)?;
        let mut at = header_len;
        for ((_, data), &off) in sections.iter().zip(&offsets) {
            f.write_all(&vec![0u8; (off - at) as usize])?;
            f.write_all(data)?;
            at = off + data.len() as u64;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reads an index written by [`save`]: memory-mapped rows when `mmap`, else read into memory;
/// bulk rows are checked against their checksums when `verify` (always when read into memory).
pub(crate) fn load(path: &Path, mmap: bool, verify: bool) -> Result<FlatIndex<'static>> {
    let bad = |problem: String| Error::InputFile { path: path.display().to_string(), problem };
    if cfg!(target_endian = "big") {
        return Err(bad("loading indexes needs a little-endian machine".into()));
    }
    let mut file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut head = [0u8; 16];
    if size < 16 {
        return Err(bad(format!("the file has {size} bytes, too short for a hardneg index (truncated, or not an index)")));
    }
    file.read_exact(&mut head).map_err(|e| bad(e.to_string()))?;
    if head[0..8] != MAGIC {
        return Err(bad("not a hardneg FlatIndex file (wrong magic bytes); load it with the library that wrote it".into()));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(format!("format version {version}, but this hardneg reads version {VERSION}; upgrade hardneg or re-save the index")));
    }
    let header_len = u64::from(u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")));
    if header_len < (TABLE + 8) as u64 || !header_len.is_multiple_of(ALIGN) || header_len > MAX_HEADER {
        return Err(bad(format!("corrupted header (header length {header_len})")));
    }
    if header_len > size {
        return Err(bad(format!("truncated: the header needs {header_len} bytes but the file has {size}")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(0)).map_err(|e| bad(e.to_string()))?;
    file.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let stored_sum = u64::from_le_bytes(header[header.len() - 8..].try_into().expect("8 bytes"));
    if checksum(&header[..header.len() - 8]) != stored_sum {
        return Err(bad("corrupted header (checksum mismatch)".into()));
    }
    let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().expect("8 bytes"));
    let storage = match header[16] {
        0 => Storage::Float32,
        1 => Storage::Bfloat16,
        2 => Storage::Int8,
        s => return Err(bad(format!("unknown storage code {s}"))),
    };
    let metric = match header[17] {
        0 => Metric::InnerProduct,
        1 => Metric::Cosine,
        m => return Err(bad(format!("unknown metric code {m}"))),
    };
    let count = usize::from(u16::from_le_bytes([header[18], header[19]]));
    let (rows, dim) = (u64_at(24), u64_at(32));
    if TABLE + ENTRY * count + 8 > header.len() {
        return Err(bad(format!("corrupted header ({count} sections do not fit in it)")));
    }
    let cells = rows.checked_mul(dim).filter(|&c| rows > 0 && dim > 0 && c.checked_mul(4).is_some_and(|b| b <= size));
    let Some(cells) = cells else {
        return Err(bad(format!("truncated or corrupted: {rows} rows x {dim} dimensions of float32 cannot fit in {size} bytes")));
    };
    let (n, d) = (rows as usize, dim as usize);
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    for i in 0..count {
        let e = TABLE + ENTRY * i;
        let code = u32::from_le_bytes(header[e..e + 4].try_into().expect("4 bytes"));
        let kind = Kind::from_code(code).ok_or_else(|| bad(format!("unknown section kind {code}")))?;
        if entries.iter().any(|x| x.kind == kind) {
            return Err(bad(format!("two {} sections", kind.name())));
        }
        let entry = Entry { kind, offset: u64_at(e + 8), len: u64_at(e + 16), checksum: u64_at(e + 24) };
        if !entry.offset.is_multiple_of(ALIGN) || entry.offset < header_len {
            return Err(bad(format!("corrupted section table ({} at offset {})", kind.name(), entry.offset)));
        }
        match entry.offset.checked_add(entry.len) {
            Some(end) if end <= size => {}
            _ => return Err(bad(format!("truncated: the {} end at byte {} but the file has {size} bytes", kind.name(), entry.offset.saturating_add(entry.len)))),
        }
        entries.push(entry);
    }
    let find = |kind: Kind, len: u64| -> Result<Entry> {
        let e = entries.iter().find(|e| e.kind == kind).copied().ok_or_else(|| bad(format!("the {} section is missing", kind.name())))?;
        if e.len != len {
            return Err(bad(format!("the {} section has {} bytes, expected {len}", kind.name(), e.len)));
        }
        Ok(e)
    };
    let map = if mmap {
        // SAFETY: the map is read-only; a file changed by another process while mapped can
        // change the values read, as with numpy's memmap (the documentation says so).
        Some(Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))?))
    } else {
        None
    };
    // Small per-row sections are always read and checked; bulk rows are mapped or read.
    let mut small = |e: Entry| -> Result<Vec<f32>> {
        let v: Vec<f32> = read_vec(&mut file, e, n).map_err(|x| bad(x.to_string()))?;
        if checksum(bytes_of(&v)) != e.checksum {
            return Err(bad(format!("the {} section is corrupted (checksum mismatch)", e.kind.name())));
        }
        if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(bad(format!("the {} section is corrupted (row {i} holds {})", e.kind.name(), v[i])));
        }
        Ok(v)
    };
    let inv_norms = match metric {
        Metric::Cosine => Some(small(find(Kind::InvNorms, 4 * rows)?)?),
        Metric::InnerProduct => None,
    };
    let per_row = match storage {
        Storage::Float32 => None,
        Storage::Bfloat16 => Some(small(find(Kind::Bf16Residual, 4 * rows)?)?),
        Storage::Int8 => Some(small(find(Kind::Int8Scale, 4 * rows)?)?),
    };
    let check = |e: Entry, bytes: &[u8]| -> Result<()> {
        if checksum(bytes) != e.checksum {
            return Err(bad(format!("the {} section is corrupted (checksum mismatch)", e.kind.name())));
        }
        Ok(())
    };
    macro_rules! bulk {
        ($t:ty, $e:expr, $len:expr) => {{
            let e: Entry = $e;
            let buf: Buf<$t> = match &map {
                Some(m) => Buf::mapped(m.clone(), e.offset as usize, $len),
                None => Buf::Owned(read_vec(&mut file, e, $len).map_err(|x| bad(x.to_string()))?),
            };
            if verify || map.is_none() {
                check(e, bytes_of(buf.as_slice()))?;
            }
            buf
        }};
    }
    let f32_rows: Buf<f32> = bulk!(f32, find(Kind::F32Rows, 4 * cells)?, n * d);
    let copy = match (storage, per_row) {
        (Storage::Bfloat16, Some(residual)) => Some(RowCopy::Bf16 { rows: bulk!(u16, find(Kind::Bf16Rows, 2 * cells)?, n * d), residual }),
        (Storage::Int8, Some(scale)) => Some(RowCopy::Int8 { rows: bulk!(i8, find(Kind::Int8Rows, cells)?, n * d), scale }),
        _ => None,
    };
    let corpus: Box<dyn F32Rows> = Box::new(f32_rows);
    FlatIndex::from_parts(corpus, n, d, inv_norms, copy)
}

/// Reads section `e` (`len` values of T) into memory.
fn read_vec<T: std::marker::Copy + Default>(file: &mut File, e: Entry, len: usize) -> std::io::Result<Vec<T>> {
    let mut v = vec![T::default(); len];
    // SAFETY: T is a plain number type; the bytes written are its values.
    let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])) };
    file.seek(SeekFrom::Start(e.offset))?;
    file.read_exact(bytes)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a_over_words() {
        assert_eq!(checksum(b""), 0xcbf29ce484222325);
        let w = 0x0807060504030201u64;
        let want = ((0xcbf29ce484222325u64 ^ w).wrapping_mul(0x100000001b3)) ^ 8;
        assert_eq!(checksum(&[1, 2, 3, 4, 5, 6, 7, 8]), want);
        assert_ne!(checksum(&[1, 2, 3]), checksum(&[1, 2, 3, 0]));
    }
}
