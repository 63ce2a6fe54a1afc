//! Helpers: scratch directories, qemu-img, byte patterns, "file unchanged" checks.

use ferrite_block::{open_image, DriveOptions, OpenError, OpenedImage};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("ferrite-block-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether qemu-img can be run; prints the skip notice if not.
pub fn have_qemu_img() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: qemu-img not installed");
    }
    ok
}

/// Runs qemu-img (or qemu-io etc. via `tool`) and returns its output, whatever the status.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// Runs qemu-img and insists it succeeds.
pub fn qemu_img(args: &[&str]) -> Output {
    let out = run("qemu-img", args);
    assert!(out.status.success(), "qemu-img {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `qemu-img check`: the image's metadata is consistent (nothing leaked or used twice).
pub fn check_clean(path: &Path) {
    qemu_img(&["check", s(path)]);
}

/// The guest-visible contents of an image, as qemu-img reads them.
pub fn convert_to_raw(dir: &TempDir, path: &Path) -> Vec<u8> {
    let out = dir.file("converted.raw");
    qemu_img(&["convert", "-O", "raw", s(path), s(&out)]);
    std::fs::read(out).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic non-zero-ish bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

pub fn opts(path: &Path, edit: impl FnOnce(&mut DriveOptions)) -> DriveOptions {
    let mut o = DriveOptions::new(path);
    edit(&mut o);
    o
}

pub fn open(path: &Path, edit: impl FnOnce(&mut DriveOptions)) -> Result<OpenedImage, OpenError> {
    open_image(&opts(path, edit))
}

/// Opening must fail with an error naming `named`, and leave every file in `files` (and
/// `named`, if it exists) byte-for-byte as it was. Returns the error.
pub fn open_fails(o: &DriveOptions, named: &Path, files: &[&Path]) -> OpenError {
    let snapshot = |fs: &[&Path]| fs.iter().map(|f| std::fs::read(f).ok()).collect::<Vec<_>>();
    let before = snapshot(files);
    let err = match open_image(o) {
        Ok(_) => panic!("opening {} succeeded", o.path.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    println!("expected error: {msg}");
    assert!(msg.contains(&named.display().to_string()), "error does not name {}: {msg}", named.display());
    assert_eq!(before, snapshot(files), "a file changed although opening failed ({msg})");
    err
}
