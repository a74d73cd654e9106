//! Saved indexes: round trips for every storage and metric, memory-mapped or read, and a typed
//! error (never a panic) for every kind of damaged file.

use hardneg_core::index::{FlatIndex, KernelOptions, Metric, SearchParams, Searcher, Storage};
use hardneg_core::synthetic::uniform as data;
use hardneg_core::{Error, MatrixRef};
use std::path::PathBuf;

/// The scratch directory of this test process and test (`test`), created if needed.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hardneg-index-file-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file in [`scratch_dir`].
fn scratch(test: &str, name: &str) -> PathBuf {
    assert!(!name.is_empty());
    scratch_dir(test).join(name)
}

fn approx(storage: Storage) -> KernelOptions {
    KernelOptions { exact: storage != Storage::Int8, ..KernelOptions::default() }
}

#[test]
fn round_trips_give_the_same_index_and_results() {
    let (n, d, nq, k) = (300, 37, 40, 12);
    let c = data(n * d, 1);
    let q = data(nq * d, 2);
    let qm = MatrixRef::new("q", &q, nq, d).unwrap();
    for metric in [Metric::InnerProduct, Metric::Cosine] {
        for storage in [Storage::Float32, Storage::Bfloat16, Storage::Int8] {
            let index = FlatIndex::new(c.as_slice(), n, d, metric, 2).unwrap().with_storage(storage, 2);
            let want = index.search_with(qm, &SearchParams::new(k), &approx(storage)).unwrap();
            let path = scratch("round", &format!("{}-{}.hnidx", metric.name(), storage.name()));
            index.save(&path).unwrap();
            for (mmap, verify) in [(true, false), (true, true), (false, false)] {
                let back = FlatIndex::load(&path, mmap, verify).unwrap();
                assert_eq!((back.len(), back.dim(), back.metric(), back.storage()), (n, d, metric, storage));
                assert_eq!(back.corpus().data(), &c[..]);
                assert_eq!(back.inverse_norms(), index.inverse_norms());
                let got = back.search_with(qm, &SearchParams::new(k), &approx(storage)).unwrap();
                assert_eq!(got, want, "{metric:?} {storage:?} mmap={mmap}");
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
    std::fs::remove_dir_all(scratch_dir("round")).unwrap();
}

#[test]
fn damaged_files_are_input_file_errors() {
    let (n, d) = (50, 20);
    let c = data(n * d, 3);
    let index = FlatIndex::new(c.as_slice(), n, d, Metric::Cosine, 1).unwrap().with_storage(Storage::Bfloat16, 1);
    let path = scratch("damaged", "good.hnidx");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let header_len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    let expect = |bytes: &[u8], name: &str, needle: &str, modes: &[(bool, bool)]| {
        let p = scratch("damaged", name);
        std::fs::write(&p, bytes).unwrap();
        for &(mmap, verify) in modes {
            match FlatIndex::load(&p, mmap, verify) {
                Err(Error::InputFile { problem, .. }) => assert!(problem.contains(needle), "{name}: {problem:?} lacks {needle:?}"),
                other => panic!("{name} mmap={mmap}: expected an InputFile error, got {other:?}"),
            }
        }
    };
    let all = [(true, false), (true, true), (false, false)];
    // truncated anywhere: in the header, in the table, in the rows, one byte short
    for cut in [0, 7, 15, 40, header_len - 1, header_len + 100, good.len() / 2, good.len() - 1] {
        expect(&good[..cut], &format!("cut{cut}.hnidx"), "", &all);
    }
    expect(&good[..good.len() - 1], "short.hnidx", "truncated", &all);
    // a foreign file
    let mut npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (50, 20), }".to_vec();
    npy.resize(4096, b' ');
    expect(&npy, "foreign.npy", "not a hardneg FlatIndex file", &all);
    // another version
    let mut v2 = good.clone();
    v2[8] = 2;
    expect(&v2, "v2.hnidx", "version 2", &all);
    // any flipped byte of the header
    for at in [16, 17, 24, 33, 40, 48, 64, header_len - 9] {
        let mut b = good.clone();
        b[at] ^= 0x5a;
        expect(&b, &format!("hdr{at}.hnidx"), "checksum", &all);
    }
    // flipped bytes in the per-row sections (always checked) and in the bulk rows (checked
    // when read, or mapped with verify)
    let mut b = good.clone();
    let last = b.len() - 3;
    b[last] ^= 1; // inverse norms: the last section
    expect(&b, "small.hnidx", "corrupted", &all);
    let mut b = good.clone();
    b[header_len + 5] ^= 1; // the float32 rows
    expect(&b, "rows.hnidx", "corrupted", &[(true, true), (false, false)]);
    assert!(FlatIndex::load(&scratch("damaged", "rows.hnidx"), true, false).is_ok(), "a mapped index opens without reading its rows");
    // missing file, directory
    assert!(matches!(FlatIndex::load(&scratch("damaged", "missing.hnidx"), true, false), Err(Error::InputFile { .. })));
    assert!(matches!(FlatIndex::load(&std::env::temp_dir(), false, false), Err(Error::InputFile { .. })));
    // an unwritable destination
    assert!(matches!(index.save(&scratch("damaged", "no/such/dir/x.hnidx")), Err(Error::OutputFile { .. })));
    std::fs::remove_dir_all(scratch_dir("damaged")).unwrap();
}

#[test]
fn int8_storage_needs_exact_false() {
    let (n, d) = (64, 8);
    let c = data(n * d, 4);
    let index = FlatIndex::new(c.as_slice(), n, d, Metric::InnerProduct, 1).unwrap().with_storage(Storage::Int8, 1);
    let qm = MatrixRef::new("q", &c[..d], 1, d).unwrap();
    let err = index.search(qm, &SearchParams::new(3)).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "exact", .. }), "{err}");
}
