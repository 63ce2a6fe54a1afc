//! qcow2 images made by qemu-img, written by ferrite, checked by qemu-img.

use crate::common::*;
use ferrite_block::{CacheMode, ImageFormat};

const MIB: usize = 1 << 20;

/// Writes that cross sector, cluster (64 KiB) and L2-table boundaries.
const WRITES: [(u64, usize, u8); 5] = [(0, 4096, 1), (65536 - 512, 1024, 2), (3 * MIB as u64 + 100, 200_000, 3), (33 * MIB as u64, 512, 4), (64 * MIB as u64 - 4096, 4096, 5)];

/// Applies WRITES through ferrite and to a model of the disk.
fn write_all(disk: &dyn ferrite_block::Disk, model: &mut [u8]) {
    for (off, len, seed) in WRITES {
        let data = pattern(len, seed);
        disk.write_at(off, &data).unwrap();
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
}

fn read_whole(disk: &dyn ferrite_block::Disk) -> Vec<u8> {
    let mut all = vec![0; disk.size() as usize];
    disk.read_at(0, &mut all).unwrap();
    all
}

#[test]
fn qcow2_made_by_qemu_img_written_by_ferrite() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let modes = [CacheMode::Writeback, CacheMode::None, CacheMode::Writethrough, CacheMode::Directsync, CacheMode::Unsafe];
    // Each cache mode on a qcow2 v3 image, and qcow2 v2 (compat=0.10) once.
    let cases = modes.iter().map(|&m| (m, "1.1")).chain([(CacheMode::Writeback, "0.10")]);
    for (cache, compat) in cases {
        let path = dir.file(&format!("{cache:?}-{compat}.qcow2"));
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", &format!("compat={compat}"), s(&path), "64M"]);
        let mut model = vec![0u8; 64 * MIB];
        let img = open(&path, |o| o.cache = cache).unwrap();
        assert_eq!((img.format, img.probed, img.size), (ImageFormat::Qcow2, true, 64 * MIB as u64));
        assert!(img.warnings.is_empty(), "{:?}", img.warnings);
        write_all(img.disk.as_ref(), &mut model);
        img.disk.flush().unwrap();
        drop(img);

        let img = open(&path, |o| o.format = Some(ImageFormat::Qcow2)).unwrap();
        assert!(read_whole(img.disk.as_ref()) == model, "{cache:?} v{compat}: read back after reopening");
        drop(img);
        check_clean(&path);
        assert!(convert_to_raw(&dir, &path) == model, "{cache:?} v{compat}: qemu-img convert disagrees");
    }
}

#[test]
fn qcow2_converted_by_qemu_img_plain_and_compressed() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let raw = dir.file("src.raw");
    let mut data = vec![0u8; 4 * MIB];
    data[..MIB].copy_from_slice(&pattern(MIB, 11));
    data[3 * MIB..3 * MIB + 5000].copy_from_slice(&[0x42; 5000]);
    std::fs::write(&raw, &data).unwrap();
    for compress in [false, true] {
        let path = dir.file(&format!("converted-{compress}.qcow2"));
        let mut args = vec!["convert", "-O", "qcow2"];
        if compress {
            args.push("-c");
        }
        args.extend([s(&raw), s(&path)]);
        qemu_img(&args);
        let img = open(&path, |o| o.read_only = true).unwrap();
        assert!(read_whole(img.disk.as_ref()) == data, "compressed={compress}");
        drop(img);
        // A write into a compressed cluster goes to a fresh cluster; the image stays clean.
        let img = open(&path, |_| {}).unwrap();
        img.disk.write_at(1000, b"fresh").unwrap();
        let mut back = [0u8; 5];
        img.disk.read_at(1000, &mut back).unwrap();
        assert_eq!(&back, b"fresh");
        drop(img);
        check_clean(&path);
        let mut expect = data.clone();
        expect[1000..1005].copy_from_slice(b"fresh");
        assert!(convert_to_raw(&dir, &path) == expect, "compressed={compress}");
    }
}

#[test]
fn qcow2_over_raw_backing_reads_through_and_writes_only_the_overlay() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let base = dir.file("base.raw");
    let base_data = pattern(4 * MIB, 21);
    std::fs::write(&base, &base_data).unwrap();
    let mid = dir.file("mid.qcow2");
    let top = dir.file("top.qcow2");
    // Relative backing names, resolved against the overlay's directory.
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", s(&mid)]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", s(&top)]);

    let mut model = base_data.clone();
    let img = open(&mid, |_| {}).unwrap();
    assert_eq!(img.backing_files, vec![base.clone()]);
    assert!(read_whole(img.disk.as_ref()) == model);
    img.disk.write_at(70_000, &[0x77; 3000]).unwrap();
    model[70_000..73_000].fill(0x77);
    drop(img);

    let img = open(&top, |_| {}).unwrap();
    assert_eq!(img.backing_files, vec![mid.clone(), base.clone()]);
    assert!(read_whole(img.disk.as_ref()) == model, "reads through two levels");
    img.disk.write_at(MIB as u64 + 10, b"top layer").unwrap();
    model[MIB + 10..MIB + 19].copy_from_slice(b"top layer");
    assert!(read_whole(img.disk.as_ref()) == model);
    let mid_before = std::fs::read(&mid).unwrap();
    drop(img);
    assert_eq!(std::fs::read(&base).unwrap(), base_data, "the base was written");
    assert_eq!(std::fs::read(&mid).unwrap(), mid_before, "the middle layer was written");
    check_clean(&mid);
    check_clean(&top);
    assert!(convert_to_raw(&dir, &top) == model);
}

#[test]
fn snapshot_on_qcow2_never_writes_the_file() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let path = dir.file("snap.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&path), "64M"]);
    let img = open(&path, |_| {}).unwrap();
    img.disk.write_at(0, &pattern(8192, 1)).unwrap();
    drop(img);
    let before = std::fs::read(&path).unwrap();
    let img = open(&path, |o| o.snapshot = true).unwrap();
    assert_eq!((img.format, img.size, img.read_only), (ImageFormat::Qcow2, 64 * MIB as u64, false));
    let mut model = vec![0u8; 64 * MIB];
    model[..8192].copy_from_slice(&pattern(8192, 1));
    write_all(img.disk.as_ref(), &mut model);
    img.disk.flush().unwrap();
    assert!(read_whole(img.disk.as_ref()) == model);
    drop(img);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn internal_snapshots_open_read_only_only() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let path = dir.file("snaps.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&path), "1M"]);
    let img = open(&path, |_| {}).unwrap();
    img.disk.write_at(0, b"before snapshot").unwrap();
    drop(img);
    qemu_img(&["snapshot", "-c", "s1", s(&path)]);
    let err = open_fails(&opts(&path, |_| {}), &path, &[&path]);
    assert!(matches!(err, ferrite_block::OpenError::InternalSnapshots { count: 1, .. }), "{err}");
    for snapshot in [false, true] {
        let img = open(&path, |o| {
            o.read_only = !snapshot;
            o.snapshot = snapshot;
        })
        .unwrap();
        let mut back = [0u8; 15];
        img.disk.read_at(0, &mut back).unwrap();
        assert_eq!(&back, b"before snapshot");
    }
}
