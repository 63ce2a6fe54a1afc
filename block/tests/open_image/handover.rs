//! Handing an image over between two openers, as a migration's source and destination do:
//! the destination opens it inactive while the source writes, the source inactivates, the
//! destination activates. OFD locks belong to open file descriptions, so two openers in one
//! process exclude each other as two processes do.

use crate::common::*;
use ferrite_block::{open_image_inactive, DiskError, ImageFormat, OpenError, OpenedImage};
use std::path::Path;

fn locked(r: Result<(), OpenError>) -> bool {
    matches!(r, Err(OpenError::Locked { .. }))
}

fn have_qemu_io() -> bool {
    let ok = std::process::Command::new("qemu-io").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED (in part): qemu-io not installed");
    }
    ok
}

/// Whether QEMU's lock check lets `qemu-io` open the raw image for writing.
fn qemu_may_write(path: &Path) -> bool {
    let out = run("qemu-io", &["-f", "raw", "-c", "read 0 512", s(path)]);
    let all = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let refused = all.contains("Failed to get") && all.contains("lock");
    assert!(refused || out.status.success() && all.contains("read 512/512"), "qemu-io: {all}");
    !refused
}

fn read(img: &OpenedImage, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    img.disk.read_at(offset, &mut buf).unwrap();
    buf
}

#[test]
fn a_raw_image_moves_to_an_inactive_opener_and_back() {
    let dir = TempDir::new();
    let path = dir.file("moving.raw");
    std::fs::write(&path, [0u8; 1 << 16]).unwrap();
    let raw = |o: &mut ferrite_block::DriveOptions| o.format = Some(ImageFormat::Raw);
    let source = open(&path, raw).unwrap();
    // The destination opens while the source writes, and may not write itself.
    let dest = open_image_inactive(&opts(&path, raw)).unwrap();
    assert!(source.disk.is_active() && !dest.disk.is_active());
    assert!(matches!(dest.disk.write_at(0, &[1]), Err(DiskError::Inactive)));
    assert!(matches!(dest.disk.write_zeroes(0, 512, false), Err(DiskError::Inactive)));
    dest.disk.flush().unwrap();
    // It cannot take the image while the source has it, and stays inactive.
    assert!(locked(dest.disk.activate()));
    assert!(!dest.disk.is_active());

    source.disk.write_at(4096, &pattern(512, 1)).unwrap();
    source.disk.inactivate().unwrap();
    assert!(matches!(source.disk.write_at(0, &[1]), Err(DiskError::Inactive)));
    // Both inactive: they hold only QEMU's shared consistent-read lock, so QEMU may write.
    let qemu = have_qemu_io();
    if qemu {
        assert!(qemu_may_write(&path), "qemu-io was refused while both openers were inactive");
    }
    dest.disk.activate().unwrap();
    assert_eq!(read(&dest, 4096, 512), pattern(512, 1));
    dest.disk.write_at(8192, &pattern(512, 2)).unwrap();
    // Now the destination writes: the source cannot take the image back, nor can QEMU.
    assert!(locked(source.disk.activate()));
    if qemu {
        assert!(!qemu_may_write(&path), "qemu-io opened the image while the destination writes it");
    }

    dest.disk.inactivate().unwrap();
    source.disk.activate().unwrap();
    assert_eq!(read(&source, 8192, 512), pattern(512, 2));
    source.disk.write_at(0, &pattern(512, 3)).unwrap();
    drop((source, dest));
    let file = std::fs::read(&path).unwrap();
    assert_eq!((&file[..512], &file[4096..4608], &file[8192..8704]), (&pattern(512, 3)[..], &pattern(512, 1)[..], &pattern(512, 2)[..]));
}

/// qcow2 caches metadata (L1/L2 tables, refcounts): what one side allocated while the other
/// was inactive must be seen by the other once it activates, or it would read stale mappings
/// and allocate clusters twice.
#[test]
fn a_qcow2_image_changed_while_inactive_is_read_afresh() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let base = dir.file("base.raw");
    std::fs::write(&base, pattern(1 << 20, 9)).unwrap();
    let top = dir.file("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", s(&base), "-F", "raw", s(&top), "16M"]);
    let pristine = std::fs::read(&top).unwrap();
    // An inactive open writes nothing, not even qcow2's header, and neither does its close.
    drop(open_image_inactive(&opts(&top, |_| {})).unwrap());
    assert_eq!(std::fs::read(&top).unwrap(), pristine, "an inactive open changed the image");

    let mut model = pattern(1 << 20, 9);
    model.resize(16 << 20, 0);
    let mut write = |img: &OpenedImage, offset: usize, seed: u8| {
        let data = pattern(64 << 10, seed);
        img.disk.write_at(offset as u64, &data).unwrap();
        model[offset..offset + data.len()].copy_from_slice(&data);
    };
    let dest = open_image_inactive(&opts(&top, |_| {})).unwrap();
    let source = open(&top, |_| {}).unwrap();
    // The destination read the image before the source allocated anything.
    assert_eq!(read(&dest, 3 << 20, 16), vec![0; 16]);
    write(&source, 3 << 20, 1);
    write(&source, 512 << 10, 2);
    source.disk.inactivate().unwrap();
    dest.disk.activate().unwrap();
    // The backing file is locked for reading again: nobody may write it.
    assert!(matches!(open(&base, |o| o.format = Some(ImageFormat::Raw)), Err(OpenError::Locked { .. })));
    write(&dest, 5 << 20, 3);
    write(&dest, (3 << 20) + 4096, 4);
    dest.disk.inactivate().unwrap();
    source.disk.activate().unwrap();
    write(&source, 7 << 20, 5);
    let whole = read(&source, 0, 16 << 20);
    assert!(whole == model, "the source does not see what the destination wrote");
    drop((source, dest));
    // Nothing allocated twice or leaked, and every byte where it belongs.
    check_clean(&top);
    assert!(convert_to_raw(&dir, &top) == model, "the image's contents differ from what was written");
}
