//! Locking: ferrite against itself and against QEMU's tools.

use crate::common::*;
use ferrite_block::{ImageFormat, OpenError};
use std::io::Write;
use std::process::{Command, Stdio};

fn locked(err: &OpenError) -> bool {
    matches!(err, OpenError::Locked { .. }) || matches!(err, OpenError::Backing { source, .. } if locked(source))
}

#[test]
fn same_image_twice_in_one_process() {
    let dir = TempDir::new();
    let path = dir.file("shared.raw");
    std::fs::write(&path, [0u8; 8192]).unwrap();
    let raw = |edit: fn(&mut ferrite_block::DriveOptions)| {
        opts(&path, |o| {
            o.format = Some(ImageFormat::Raw);
            edit(o)
        })
    };
    let writer = ferrite_block::open_image(&raw(|_| {})).unwrap();
    let err = open_fails(&raw(|_| {}), &path, &[&path]);
    assert!(matches!(err, OpenError::Locked { perm: "write", shared: false, .. }), "{err}");
    let err = open_fails(&raw(|o| o.read_only = true), &path, &[&path]);
    assert!(matches!(err, OpenError::Locked { perm: "write", shared: true, .. }), "{err}");
    // snapshot=on only reads the image, but still must not see it change under it.
    let err = open_fails(&raw(|o| o.snapshot = true), &path, &[&path]);
    assert!(locked(&err), "{err}");
    // locking=off opts out.
    ferrite_block::open_image(&raw(|o| o.locking = false)).unwrap();
    drop(writer);
    // Readers share.
    let r1 = ferrite_block::open_image(&raw(|o| o.read_only = true)).unwrap();
    let r2 = ferrite_block::open_image(&raw(|o| o.snapshot = true)).unwrap();
    assert!(locked(&open_fails(&raw(|_| {}), &path, &[&path])));
    drop((r1, r2));
    ferrite_block::open_image(&raw(|_| {})).unwrap();
}

#[test]
fn backing_files_are_locked_as_readers() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let base = dir.file("base.raw");
    std::fs::write(&base, [0u8; 1 << 20]).unwrap();
    let top = dir.file("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", s(&base), "-F", "raw", s(&top)]);
    let img = open(&top, |_| {}).unwrap();
    // The base may be read by others, not written.
    open(&base, |o| o.read_only = true).unwrap();
    let err = open_fails(&opts(&base, |o| o.format = Some(ImageFormat::Raw)), &base, &[&base]);
    assert!(locked(&err), "{err}");
    drop(img);
    // And the other way round: a base in use for writing cannot back a running overlay.
    let writer = open(&base, |o| o.format = Some(ImageFormat::Raw)).unwrap();
    let err = open_fails(&opts(&top, |_| {}), &top, &[&top, &base]);
    assert!(matches!(&err, OpenError::Backing { source, .. } if locked(source)), "{err}");
    drop(writer);
}

#[test]
fn qemu_img_respects_ferrite_locks() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new();
    let path = dir.file("busy.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&path), "16M"]);
    let img = open(&path, |_| {}).unwrap();
    for cmd in ["check", "info"] {
        let out = run("qemu-img", &[cmd, s(&path)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("lock"), "qemu-img {cmd} while ferrite writes: {stderr}");
    }
    // -U (force share) bypasses, as in QEMU.
    qemu_img(&["info", "-U", s(&path)]);
    drop(img);
    // A reading ferrite and a reading qemu-img share.
    let img = open(&path, |o| o.read_only = true).unwrap();
    qemu_img(&["check", s(&path)]);
    drop(img);
}

#[test]
fn ferrite_respects_qemu_locks() {
    if !have_qemu_img() || Command::new("qemu-io").arg("--version").output().is_err() {
        println!("SKIPPED: qemu-io not installed");
        return;
    }
    let dir = TempDir::new();
    let path = dir.file("qemu-owned.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&path), "16M"]);
    // qemu-io holds the image open for writing until its stdin closes.
    let mut qemu = Command::new("qemu-io")
        .args(["-f", "qcow2", s(&path)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for it to have opened (and locked) the image: it answers a command.
    let mut stdin = qemu.stdin.take().unwrap();
    writeln!(stdin, "read 0 512").unwrap();
    let mut stdout = qemu.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while !String::from_utf8_lossy(&seen).contains("read 512/512") {
        use std::io::Read;
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "qemu-io ended: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    let writable = open_fails(&opts(&path, |_| {}), &path, &[]);
    let read_only = open_fails(&opts(&path, |o| o.read_only = true), &path, &[]);
    drop(stdin);
    qemu.wait().unwrap();
    assert!(matches!(writable, OpenError::Locked { .. }), "{writable}");
    assert!(matches!(read_only, OpenError::Locked { .. }), "{read_only}");
    // Once QEMU has gone, ferrite gets the image.
    open(&path, |_| {}).unwrap();
}
