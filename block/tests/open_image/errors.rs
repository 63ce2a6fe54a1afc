//! Bad input: each case fails before the guest starts, names the file, changes nothing.

use crate::common::*;
use ferrite_block::{ImageFormat, OpenError};
use std::os::unix::fs::FileExt;
use std::path::Path;

#[test]
fn missing_file_and_directory() {
    let dir = TempDir::new();
    let missing = dir.file("nope.qcow2");
    let err = open_fails(&opts(&missing, |_| {}), &missing, &[]);
    assert!(matches!(err, OpenError::NotFound { .. }), "{err}");
    for read_only in [false, true] {
        let err = open_fails(&opts(dir.path(), |o| o.read_only = read_only), dir.path(), &[]);
        assert!(matches!(err, OpenError::IsDirectory { .. }), "{err}");
    }
}

#[test]
fn format_qcow2_on_a_raw_file() {
    let dir = TempDir::new();
    let path = dir.file("plain.raw");
    std::fs::write(&path, [0u8; 4096]).unwrap();
    let err = open_fails(&opts(&path, |o| o.format = Some(ImageFormat::Qcow2)), &path, &[&path]);
    assert!(matches!(err, OpenError::NotQcow2 { .. }), "{err}");
}

/// A qcow2 image of 1 MiB made by qemu-img, or None (skipped) without qemu-img.
fn small_qcow2(dir: &TempDir, name: &str, extra: &[&str]) -> Option<std::path::PathBuf> {
    if !have_qemu_img() {
        return None;
    }
    let path = dir.file(name);
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    args.extend_from_slice(extra);
    args.extend([s(&path), "1M"]);
    qemu_img(&args);
    Some(path)
}

#[test]
fn truncated_qcow2_header() {
    let dir = TempDir::new();
    let Some(full) = small_qcow2(&dir, "full.qcow2", &[]) else { return };
    let path = dir.file("truncated.qcow2");
    std::fs::write(&path, &std::fs::read(&full).unwrap()[..50]).unwrap();
    for format in [None, Some(ImageFormat::Qcow2)] {
        let err = open_fails(&opts(&path, |o| o.format = format), &path, &[&path]);
        assert!(matches!(err, OpenError::Truncated { len: 50, .. }), "{err}");
    }
}

#[test]
fn corrupt_header_leaves_the_image_unchanged() {
    let dir = TempDir::new();
    let Some(path) = small_qcow2(&dir, "corrupt.qcow2", &[]) else { return };
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // An unaligned L1 table offset.
    f.write_all_at(&0x30200u64.to_be_bytes(), 40).unwrap();
    drop(f);
    let err = open_fails(&opts(&path, |_| {}), &path, &[&path]);
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
}

#[test]
fn unsupported_features_are_named() {
    let dir = TempDir::new();
    let Some(l2) = small_qcow2(&dir, "extl2.qcow2", &["-o", "extended_l2=on"]) else { return };
    let err = open_fails(&opts(&l2, |_| {}), &l2, &[&l2]);
    assert!(matches!(&err, OpenError::Unsupported { what, .. } if what.contains("extended L2")), "{err}");
    // The dirty bit (incompatible feature 0).
    let Some(dirty) = small_qcow2(&dir, "dirty.qcow2", &[]) else { return };
    let f = std::fs::OpenOptions::new().write(true).open(&dirty).unwrap();
    f.write_all_at(&1u64.to_be_bytes(), 72).unwrap();
    drop(f);
    let err = open_fails(&opts(&dirty, |o| o.read_only = true), &dirty, &[&dirty]);
    assert!(matches!(&err, OpenError::Unsupported { what, .. } if what.contains("dirty")), "{err}");
}

#[test]
fn backing_loops_are_detected() {
    let dir = TempDir::new();
    let Some(a) = small_qcow2(&dir, "a.qcow2", &[]) else { return };
    let b = small_qcow2(&dir, "b.qcow2", &[]).unwrap();
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", s(&b), "-F", "qcow2", s(&a)]);
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", s(&a), "-F", "qcow2", s(&b)]);
    for read_only in [false, true] {
        let err = open_fails(&opts(&a, |o| o.read_only = read_only), &a, &[&a, &b]);
        assert!(matches!(err, OpenError::BackingLoop { .. }), "{err}");
        assert!(err.to_string().contains(s(&b)), "{err}");
    }
    // An image that is its own backing file.
    let c = small_qcow2(&dir, "c.qcow2", &[]).unwrap();
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", "c.qcow2", "-F", "qcow2", s(&c)]);
    let err = open_fails(&opts(&c, |_| {}), &c, &[&c]);
    assert!(matches!(err, OpenError::BackingLoop { .. }), "{err}");
}

#[test]
fn missing_backing_file() {
    let dir = TempDir::new();
    let Some(path) = small_qcow2(&dir, "orphan.qcow2", &[]) else { return };
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", "gone.raw", "-F", "raw", s(&path)]);
    // An autoclear bit, which imago's writable open clears before it opens the backing file:
    // the image must still be unchanged after the failed open.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&1u64.to_be_bytes(), 88).unwrap();
    drop(f);
    let err = open_fails(&opts(&path, |_| {}), &path, &[&path]);
    assert!(matches!(&err, OpenError::BackingMissing { backing, .. } if backing.ends_with("gone.raw")), "{err}");
}

/// Sets or clears the immutable attribute; false if this system won't (no chattr, no
/// CAP_LINUX_IMMUTABLE, a file system without it).
fn chattr(path: &Path, flag: &str) -> bool {
    std::process::Command::new("chattr").args([flag, s(path)]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn host_read_only_image_opened_writable() {
    // Root may write a file whatever its mode, so the file is made immutable instead, which
    // stops root too. ferrite follows the OS: if opening for writing works, it is writable.
    let dir = TempDir::new();
    let path = dir.file("immutable.raw");
    std::fs::write(&path, pattern(4096, 1)).unwrap();
    if !chattr(&path, "+i") {
        println!("SKIPPED: cannot make a file immutable here (chattr +i failed)");
        return;
    }
    let err = open_fails(&opts(&path, |o| o.format = Some(ImageFormat::Raw)), &path, &[&path]);
    let ro = open(&path, |o| o.read_only = true).map(|img| img.size);
    let snap = open(&path, |o| o.snapshot = true).map(|img| img.size);
    assert!(chattr(&path, "-i"));
    assert!(matches!(err, OpenError::HostReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("readonly=on"), "{err}");
    assert_eq!(ro.unwrap(), 4096);
    assert_eq!(snap.unwrap(), 4096);
}

#[test]
fn file_modes_are_followed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let path = dir.file("mode.raw");
    std::fs::write(&path, pattern(4096, 1)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        // root: the OS lets the file be written, and so does ferrite (as QEMU would).
        println!("SKIPPED: file modes do not stop this user (root); see host_read_only_image_opened_writable");
        return;
    }
    let err = open_fails(&opts(&path, |_| {}), &path, &[&path]);
    assert!(matches!(err, OpenError::HostReadOnly { .. }), "{err}");
    open(&path, |o| o.read_only = true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    for read_only in [false, true] {
        let err = open_fails(&opts(&path, |o| o.read_only = read_only), &path, &[]);
        assert!(matches!(err, OpenError::PermissionDenied { .. }), "{err}");
    }
}
