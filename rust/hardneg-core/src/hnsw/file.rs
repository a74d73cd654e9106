//! The file of a saved [`HnswIndex`]: a header of ours, then usearch's own serialisation.
//!
//! usearch checks only its major version when loading, and minor versions have broken loading
//! before (usearch #423), so the header pins the exact usearch version and names what the file
//! is. A checksum covers the header and usearch's graph section (everything but the vector
//! matrix): a damaged graph would make usearch read out of bounds, a damaged vector only
//! changes scores. The usearch part starts on a page boundary so it can be viewed in place.
//!
//! Layout (little-endian): magic (16 bytes), format version u32, usearch version 3 x u16,
//! metric u8, storage u8, then u64 each: dim, rows, connectivity, expansion_add,
//! expansion_search, seed, orphans found, orphans remaining, blob offset, blob length,
//! checksum; zero padding to the blob offset.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::Mutex;

use usearch::Index;

use super::{check_corpus, default_search_slots, hnsw_err, HnswIndex, HnswParams, OrphanReport, Slots, Storage, READY};
use crate::index::{F32Rows, Metric};
use crate::matrix::MatrixRef;
use crate::error::{Error, Result};

const MAGIC: &[u8; 16] = b"hardneg HNSW v1\0";
/// Bumped whenever the layout above changes.
pub const FORMAT_VERSION: u32 = 1;
/// The usearch version this build writes and reads (the crate is pinned in Cargo.toml).
pub const USEARCH_VERSION: (u16, u16, u16) = (2, 26, 6);
const HEADER_LEN: usize = 16 + 4 + 6 + 2 + 8 * 11;
const CHECKSUM_AT: usize = HEADER_LEN - 8;
const BLOB_OFFSET: usize = 4096;

fn input_err(path: &Path, message: impl Into<String>) -> Error {
    Error::InputFile { path: path.display().to_string(), problem: message.into() }
}

/// A fast 64-bit checksum (four independent multiply-rotate lanes over 8-byte words).
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut lanes = [0x9E37_79B9_7F4A_7C15u64, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63];
    let mut total = 0u64;
    for part in parts {
        total = total.wrapping_add(part.len() as u64);
        let mut words = part.chunks_exact(32);
        for w in words.by_ref() {
            for (l, c) in lanes.iter_mut().zip(w.chunks_exact(8)) {
                let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                *l = (*l ^ x).wrapping_mul(0x9FB2_1C65_1E98_DF25).rotate_left(29);
            }
        }
        for (i, &b) in words.remainder().iter().enumerate() {
            lanes[i % 4] = (lanes[i % 4] ^ u64::from(b)).wrapping_mul(0x9FB2_1C65_1E98_DF25).rotate_left(29);
        }
    }
    lanes.iter().fold(total, |h, &l| crate::mine::rng::mix64(h ^ l))
}

/// The parts of a usearch blob the checksum covers: its 8-byte head and the graph after the
/// vector matrix (`[u32 rows, u32 bytes per vector]` head, then the matrix).
fn graph_parts(blob: &[u8]) -> Option<[&[u8]; 2]> {
    let head = blob.get(..8)?;
    let rows = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let bytes = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let graph_at = rows.checked_mul(bytes)?.checked_add(8)?;
    Some([head, blob.get(graph_at..)?])
}

pub(super) fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::InnerProduct => 1,
        Metric::Cosine => 2,
    }
}

pub(super) fn storage_code(s: Storage) -> u8 {
    match s {
        Storage::F32 => 1,
        Storage::Bf16 => 2,
        Storage::I8 => 3,
    }
}

struct Header {
    params: HnswParams,
    dim: usize,
    rows: usize,
    orphans: OrphanReport,
    blob_len: usize,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for v in [USEARCH_VERSION.0, USEARCH_VERSION.1, USEARCH_VERSION.2] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.push(metric_code(self.params.metric));
        h.push(storage_code(self.params.storage));
        let p = &self.params;
        for v in [self.dim, self.rows, p.connectivity, p.expansion_add, p.expansion_search, p.seed as usize, self.orphans.found, self.orphans.remaining, BLOB_OFFSET, self.blob_len, 0] {
            h.extend_from_slice(&(v as u64).to_le_bytes());
        }
        debug_assert_eq!(h.len(), HEADER_LEN);
        h
    }

    fn decode(path: &Path, h: &[u8]) -> Result<Self> {
        let not_ours = || input_err(path, "is not a hardneg HnswIndex file (no hardneg HNSW header); build the index with hardneg.HnswIndex and save it with .save(path)");
        if h.len() < HEADER_LEN || &h[..12] != b"hardneg HNSW" {
            return Err(not_ours());
        }
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        let u16_at = |at: usize| u16::from_le_bytes(h[at..at + 2].try_into().expect("2 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(h[28 + 8 * i..36 + 8 * i].try_into().expect("8 bytes")) as usize;
        let format = u32_at(16);
        if &h[..16] != MAGIC || format != FORMAT_VERSION {
            return Err(input_err(path, format!("was written in HnswIndex file format {format}; this hardneg reads format {FORMAT_VERSION}: rebuild the index with this version")));
        }
        let written = (u16_at(20), u16_at(22), u16_at(24));
        if written != USEARCH_VERSION {
            let (a, b, c) = written;
            let (x, y, z) = USEARCH_VERSION;
            return Err(input_err(path, format!("holds a usearch {a}.{b}.{c} graph; this hardneg reads usearch {x}.{y}.{z} graphs only: rebuild the index with this version")));
        }
        let metric = match h[26] {
            1 => Metric::InnerProduct,
            2 => Metric::Cosine,
            other => return Err(input_err(path, format!("has an unknown metric code {other}; the file is damaged"))),
        };
        let storage = match h[27] {
            1 => Storage::F32,
            2 => Storage::Bf16,
            3 => Storage::I8,
            other => return Err(input_err(path, format!("has an unknown storage code {other}; the file is damaged"))),
        };
        let params = HnswParams { metric, storage, connectivity: u64_at(2), expansion_add: u64_at(3), expansion_search: u64_at(4), seed: u64_at(5) as u64 };
        if u64_at(8) != BLOB_OFFSET {
            return Err(input_err(path, "has a damaged header (graph offset); rebuild the index"));
        }
        Ok(Header { params, dim: u64_at(0), rows: u64_at(1), orphans: OrphanReport { found: u64_at(6), remaining: u64_at(7) }, blob_len: u64_at(9) })
    }
}

impl<'a> HnswIndex<'a> {
    /// Writes the index to `path` (through a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check_ready()?;
        let write_err = |e: std::io::Error| Error::OutputFile { path: path.display().to_string(), problem: e.to_string() };
        let blob_len = self.index.serialized_length();
        let header = Header { params: self.params, dim: self.dim, rows: self.rows, orphans: self.orphan_report(), blob_len };
        let tmp = path.with_file_name(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("index"), std::process::id()));
        let result = (|| -> Result<()> {
            let file = File::options().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(write_err)?;
            file.set_len((BLOB_OFFSET + blob_len) as u64).map_err(write_err)?;
            // SAFETY: the file was just created by us and nothing else maps or resizes it.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(write_err)?;
            self.index.save_to_buffer(&mut map[BLOB_OFFSET..]).map_err(hnsw_err)?;
            let mut head = header.encode();
            let parts = graph_parts(&map[BLOB_OFFSET..]).ok_or_else(|| Error::Hnsw("usearch wrote a malformed file".into()))?;
            let sum = checksum(&[&head[..CHECKSUM_AT], parts[0], parts[1]]);
            head[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
            map[..HEADER_LEN].copy_from_slice(&head);
            map.flush().map_err(write_err)?;
            drop(map);
            file.sync_all().map_err(write_err)?;
            Ok(())
        })();
        match result {
            Ok(()) => std::fs::rename(&tmp, path).map_err(write_err),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Opens a file written by [`Self::save`]: memory-mapped and viewed in place (`mmap`; the
    /// index is then read-only and pages load on demand) or copied into memory. `corpus`, the
    /// float32 rows it was built from (checked here), enables exact rescoring of bfloat16/int8
    /// storage and scores bit-identical to [`crate::FlatIndex`]'s.
    pub fn load(path: &Path, mmap: bool, corpus: Option<Box<dyn F32Rows + 'a>>, threads: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| input_err(path, format!("cannot be opened ({e})")))?;
        let len = file.metadata().map_err(|e| input_err(path, e.to_string()))?.len() as usize;
        if len < HEADER_LEN {
            // Too short for our header: say what it is not, as Header::decode would.
            let mut head = vec![0u8; len];
            std::io::Read::read_exact(&mut &file, &mut head).map_err(|e| input_err(path, e.to_string()))?;
            Header::decode(path, &head)?;
        }
        // SAFETY: read-only map; a file changed underneath is outside what we can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| input_err(path, format!("cannot be mapped ({e})")))?;
        let header = Header::decode(path, &map[..HEADER_LEN])?;
        if BLOB_OFFSET.checked_add(header.blob_len) != Some(len) {
            return Err(input_err(path, format!("is {len} bytes but its header says {}: the file is truncated or damaged", BLOB_OFFSET + header.blob_len)));
        }
        let blob = &map[BLOB_OFFSET..];
        let parts = graph_parts(blob).ok_or_else(|| input_err(path, "has a damaged graph section"))?;
        let stored = u64::from_le_bytes(map[CHECKSUM_AT..HEADER_LEN].try_into().expect("8 bytes"));
        if checksum(&[&map[..CHECKSUM_AT], parts[0], parts[1]]) != stored {
            return Err(input_err(path, "fails its checksum: the file is damaged; save the index again"));
        }
        header.params.check().map_err(|e| input_err(path, format!("has invalid parameters ({e})")))?;
        let meta = Index::metadata_from_buffer(blob).map_err(|e| input_err(path, format!("has an unreadable usearch section ({})", e)))?;
        if meta.dimensions as usize != header.dim || meta.count_present as usize != header.rows || meta.count_deleted != 0 {
            return Err(input_err(path, "has a usearch section that disagrees with its header; the file is damaged"));
        }
        let inv_norms = match &corpus {
            Some(c) => check_corpus(MatrixRef::new("corpus", c.values(), header.rows, header.dim)?, header.rows, header.dim, &header.params, threads)?,
            None => None,
        };
        let mut index = Index::new(&header.params.options(header.dim)).map_err(hnsw_err)?;
        let map = if mmap {
            // SAFETY: the map is stored in the index and outlives the usearch view (field order).
            unsafe { index.view_from_buffer(blob) }.map_err(|e| input_err(path, format!("cannot be viewed ({})", e)))?;
            Some(map)
        } else {
            index.load_from_buffer(blob).map_err(|e| input_err(path, format!("cannot be loaded ({})", e)))?;
            None
        };
        // usearch restores its built-in metric from the file
        super::metric::install(&mut index, header.dim);
        let slots = default_search_slots();
        index.reserve_capacity_and_threads(header.rows, slots).map_err(hnsw_err)?;
        let loaded = HnswIndex {
            index,
            map,
            corpus,
            inv_norms,
            params: header.params,
            rows: header.rows,
            dim: header.dim,
            order: Vec::new(),
            added: AtomicUsize::new(header.rows),
            state: AtomicU8::new(READY),
            slots: Slots::new(slots),
            build_slots: slots,
            search_slots: slots,
            orphans: Mutex::new(header.orphans),
            graph: std::sync::OnceLock::new(),
        };
        loaded.export_graph(threads);
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sees_every_byte_and_the_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let base = checksum(&[&data]);
        for at in [0, 31, 32, 500, 999] {
            let mut d = data.clone();
            d[at] ^= 1;
            assert_ne!(checksum(&[&d]), base, "byte {at}");
        }
        assert_ne!(checksum(&[&data[..10], &data[10..]]), base);
    }

    #[test]
    fn header_round_trips_and_rejects_others() {
        let h = Header { params: HnswParams { seed: 7, ..HnswParams::default() }, dim: 3, rows: 10, orphans: OrphanReport { found: 2, remaining: 0 }, blob_len: 99 };
        let bytes = h.encode();
        let back = Header::decode(Path::new("x"), &bytes).unwrap();
        assert_eq!((back.params, back.dim, back.rows, back.orphans, back.blob_len), (h.params, 3, 10, h.orphans, 99));
        assert!(matches!(Header::decode(Path::new("x"), b"\x93NUMPY"), Err(Error::InputFile { .. })));
        let mut other = bytes.clone();
        other[16] = 2;
        let msg = Header::decode(Path::new("x"), &other).err().unwrap().to_string();
        assert!(msg.contains("format 2"), "{msg}");
        let mut old = bytes;
        old[22] = 25;
        let msg = Header::decode(Path::new("x"), &old).err().unwrap().to_string();
        assert!(msg.contains("usearch 2.25.6"), "{msg}");
    }
}
