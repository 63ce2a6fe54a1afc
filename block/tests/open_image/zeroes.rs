//! WRITE ZEROES and DISCARD on raw and qcow2 images: the data reads back as zeros, space is
//! freed only with `discard=unmap`, and qemu-img still finds the qcow2 image clean.

use crate::common::*;
use ferrite_block::{Disk, ImageFormat};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Bytes the file really occupies on the host.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn fill(disk: &dyn Disk, len: u64) {
    disk.write_at(0, &pattern(len as usize, 7)).unwrap();
    disk.flush().unwrap();
}

fn reads_zero(disk: &dyn Disk, offset: u64, len: u64) -> bool {
    let mut buf = vec![1u8; len as usize];
    disk.read_at(offset, &mut buf).unwrap();
    buf.iter().all(|&b| b == 0)
}

#[test]
fn raw_write_zeroes_and_discard() {
    let dir = TempDir::new();
    let path = dir.file("disk.raw");
    std::fs::write(&path, vec![0u8; 8 * MIB as usize]).unwrap();
    for unmap in [false, true] {
        let opened = open(&path, |o| {
            o.format = Some(ImageFormat::Raw);
            o.discard = unmap;
        })
        .unwrap();
        let disk = opened.disk;
        fill(&*disk, 8 * MIB);
        let full = allocated(&path);
        // Unaligned edges are zeroed too; neighbours keep their bytes.
        disk.write_zeroes(MIB + 100, 2 * MIB, true).unwrap();
        assert!(reads_zero(&*disk, MIB + 100, 2 * MIB));
        let mut edge = [0u8; 100];
        disk.read_at(MIB, &mut edge).unwrap();
        assert_eq!(&edge[..], &pattern(8 * MIB as usize, 7)[MIB as usize..MIB as usize + 100]);
        disk.discard(4 * MIB, 4 * MIB).unwrap();
        disk.flush().unwrap();
        if unmap {
            assert!(allocated(&path) + 5 * MIB <= full, "discard=unmap frees space: {} -> {}", full, allocated(&path));
            assert!(reads_zero(&*disk, 4 * MIB, 4 * MIB), "punched holes read as zeros");
        } else {
            assert!(allocated(&path) + MIB > full, "discard=ignore keeps the space");
            let mut tail = vec![0u8; MIB as usize];
            disk.read_at(7 * MIB, &mut tail).unwrap();
            assert_eq!(tail, pattern(8 * MIB as usize, 7)[7 * MIB as usize..]);
        }
        assert!(disk.write_zeroes(8 * MIB - 512, 1024, false).is_err(), "beyond the end");
        assert!(disk.discard(u64::MAX - 10, 20).is_err(), "wrapping range");
    }
}

#[test]
fn qcow2_write_zeroes_and_discard() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let path = dir.file("disk.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&path), "16M"]);
    {
        let disk = open(&path, |o| o.discard = true).unwrap().disk;
        fill(&*disk, 16 * MIB);
        disk.write_zeroes(100, 3 * MIB, false).unwrap();
        disk.write_zeroes(5 * MIB, 2 * MIB, true).unwrap();
        disk.discard(8 * MIB, 8 * MIB).unwrap();
        assert!(reads_zero(&*disk, 100, 3 * MIB));
        assert!(reads_zero(&*disk, 5 * MIB, 2 * MIB));
        disk.flush().unwrap();
    }
    qemu_img(&["check", s(&path)]);
    let map = String::from_utf8(qemu_img(&["map", "--output=json", s(&path)]).stdout).unwrap();
    // The discarded half no longer holds data clusters.
    assert!(map.contains(&format!("\"start\": {}", 8 * MIB)) || map.contains("\"data\": false"), "{map}");
    let raw = {
        let out = dir.file("out.raw");
        qemu_img(&["convert", "-O", "raw", s(&path), s(&out)]);
        std::fs::read(out).unwrap()
    };
    let want = pattern(16 * MIB as usize, 7);
    assert!(raw[100..100 + 3 * MIB as usize].iter().all(|&b| b == 0));
    assert!(raw[5 * MIB as usize..7 * MIB as usize].iter().all(|&b| b == 0));
    assert_eq!(raw[3 * MIB as usize + 100..5 * MIB as usize], want[3 * MIB as usize + 100..5 * MIB as usize]);
}

#[test]
fn read_only_refuses_zeroes_and_discard() {
    let dir = TempDir::new();
    let path = dir.file("ro.raw");
    std::fs::write(&path, vec![5u8; MIB as usize]).unwrap();
    let disk = open(&path, |o| o.read_only = true).unwrap().disk;
    assert!(disk.write_zeroes(0, 512, false).is_err());
    assert!(disk.discard(0, 512).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), vec![5u8; MIB as usize]);
}
