//! Disk images for end-to-end tests, made and checked by Debian's tools (mkfs.ext4, debugfs,
//! e2fsck, qemu-img), never by ferrite's own reading of them.

use super::tool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory removed at the end of the test.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ferrite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, insists it succeeds, returns its standard output.
pub fn check(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether every tool the image building needs is installed.
pub fn have_tools(names: &[&str]) -> bool {
    names.iter().all(|n| tool(n).is_some())
}

/// An ext4 disk image of 32 MiB holding `payload.bin` (made by mkfs.ext4 -d on the host).
pub fn data_disk(dir: &Scratch, name: &str, payload: &[u8]) -> PathBuf {
    let tree = dir.path(&format!("{name}.tree"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("payload.bin"), payload).unwrap();
    let img = dir.path(name);
    check(tool("mkfs.ext4").unwrap().args(["-q", "-F", "-d"]).arg(&tree).arg(&img).arg("32M"));
    img
}

/// A file of an ext4 image, read by e2fsprogs' debugfs.
pub fn debugfs_cat(img: &Path, file: &str) -> Vec<u8> {
    let out = tool("debugfs").unwrap().args(["-R", &format!("cat {file}")]).arg(img).output().unwrap();
    out.stdout
}

/// `e2fsck -fn`: whether the file system is clean, with e2fsck's report.
pub fn fsck_clean(img: &Path) -> (bool, String) {
    let out = tool("e2fsck").unwrap().arg("-fn").arg(img).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether QEMU's own lock check lets `qemu-io` open a raw image for writing (it only reads a
/// sector). Refused means the image is in use by a writer, as QEMU sees its lock bytes.
/// `None` without qemu-io.
pub fn qemu_may_write(img: &Path) -> Option<bool> {
    let out = tool("qemu-io")?.args(["-f", "raw", "-c", "read 0 512"]).arg(img).output().unwrap();
    let all = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let refused = all.contains("Failed to get") && all.contains("lock");
    assert!(refused || out.status.success() && all.contains("read 512/512"), "qemu-io: {all}");
    Some(!refused)
}

/// `qemu-io` holding a raw image open for writing, with QEMU's locks, until dropped.
pub struct QemuHolds(std::process::Child);

impl QemuHolds {
    /// `None` without qemu-io; panics if QEMU cannot take the image.
    pub fn start(img: &Path) -> Option<Self> {
        use std::io::{Read, Write};
        use std::process::Stdio;
        let mut child = tool("qemu-io")?.args(["-f", "raw"]).arg(img).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        // It has opened (and locked) the image once it answers a command.
        writeln!(child.stdin.as_mut().unwrap(), "read 0 512").unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8];
        while !String::from_utf8_lossy(&seen).contains("read 512/512") {
            let n = child.stdout.as_mut().unwrap().read(&mut byte).unwrap();
            assert_eq!(n, 1, "qemu-io could not take the image: {}", String::from_utf8_lossy(&seen));
            seen.push(byte[0]);
        }
        Some(QemuHolds(child))
    }
}

impl Drop for QemuHolds {
    fn drop(&mut self) {
        // It exits when its input ends.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}
