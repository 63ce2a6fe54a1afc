//! Image locking compatible with QEMU's `file.locking` (block/file-posix.c), so a running QEMU,
//! `qemu-img` and ferrite keep out of each other's way, and so does one image given twice.
//!
//! QEMU expresses what an opener does with the image as permission bits and takes shared
//! open-file-description (OFD) locks on single bytes of the file:
//! - byte 100 + i while it holds permission i,
//! - byte 200 + i while it refuses to share permission i with anyone else.
//!
//! An opener first takes its locks, then tests (F_OFD_GETLK with an exclusive type, which
//! only reports locks of *other* open file descriptions) that nobody refuses to share what it
//! holds (byte 200 + i) and that nobody holds what it refuses to share (byte 100 + i).
//! Taking before testing means two racing openers cannot both miss each other.
//!
//! ferrite's roles, matching what QEMU takes for a guest disk and for `qemu-img`:
//! - writer: holds consistent-read and write (and resize for qcow2, whose file grows);
//!   refuses to share write and resize;
//! - reader (readonly=on, snapshot=on, backing files): holds consistent-read; refuses to
//!   share write and resize.
//!
//! So two writers conflict, a reader and a writer conflict, readers coexist. The locks live
//! as long as the open file description, i.e. until the last descriptor of it is closed.

use crate::OpenError;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// QEMU's permission bits (BLK_PERM_*), in bit order.
const PERM_NAMES: [&str; 5] = ["consistent read", "write", "write unchanged", "resize", "change children"];
const CONSISTENT_READ: u32 = 0;
const WRITE: u32 = 1;
const RESIZE: u32 = 3;
const PERM_LOCK_BASE: i64 = 100;
const SHARED_LOCK_BASE: i64 = 200;

/// How ferrite uses an image, as far as other openers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockRole {
    Reader,
    Writer { resize: bool },
}

impl LockRole {
    /// Permission bits held.
    fn held(self) -> Vec<u32> {
        match self {
            LockRole::Reader => vec![CONSISTENT_READ],
            LockRole::Writer { resize: false } => vec![CONSISTENT_READ, WRITE],
            LockRole::Writer { resize: true } => vec![CONSISTENT_READ, WRITE, RESIZE],
        }
    }

    /// Permission bits nobody else may hold.
    fn unshared(self) -> Vec<u32> {
        vec![WRITE, RESIZE]
    }
}

/// Locks held on an image; released when dropped.
///
/// Released explicitly rather than left to the close of the descriptor: a child process that
/// is being spawned meanwhile briefly holds a copy of every descriptor, which would keep the
/// open file description, and so the locks, alive a little past our close.
#[derive(Debug)]
pub(crate) struct ImageLock {
    /// A descriptor of the locked open file description.
    file: File,
    bytes: Vec<i64>,
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        for &b in &self.bytes {
            let _ = ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_UNLCK, b);
        }
    }
}

/// Takes `role`'s locks on `file` (the image at `path`), or fails naming the conflict and
/// leaves no lock behind.
pub(crate) fn lock_image(file: &File, path: &Path, role: LockRole) -> Result<ImageLock, OpenError> {
    let mut bytes: Vec<i64> = role.held().iter().map(|&p| PERM_LOCK_BASE + p as i64).collect();
    bytes.extend(role.unshared().iter().map(|&p| SHARED_LOCK_BASE + p as i64));
    let dup = file.try_clone().map_err(|source| OpenError::Io { path: path.into(), source })?;
    // On failure, dropping `lock` undoes whatever was taken.
    let lock = ImageLock { file: dup, bytes };
    take_and_check(&lock.file, path, role, &lock.bytes)?;
    Ok(lock)
}

fn take_and_check(file: &File, path: &Path, role: LockRole, bytes: &[i64]) -> Result<(), OpenError> {
    let failed = |source: io::Error| OpenError::LockFailed { path: path.into(), source };
    for &b in bytes {
        ofd_lock(file, libc::F_OFD_SETLK, libc::F_RDLCK, b).map_err(|e| {
            // Only an exclusive lock blocks a shared one; QEMU never takes those on these
            // bytes, but treat it as "in use" all the same.
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                let p = (b % 100) as u32;
                OpenError::Locked { path: path.into(), perm: PERM_NAMES[p as usize], shared: b >= SHARED_LOCK_BASE }
            } else {
                failed(e)
            }
        })?;
    }
    for p in role.held() {
        if someone_locks(file, SHARED_LOCK_BASE + p as i64).map_err(failed)? {
            return Err(OpenError::Locked { path: path.into(), perm: PERM_NAMES[p as usize], shared: false });
        }
    }
    for p in role.unshared() {
        if someone_locks(file, PERM_LOCK_BASE + p as i64).map_err(failed)? {
            return Err(OpenError::Locked { path: path.into(), perm: PERM_NAMES[p as usize], shared: true });
        }
    }
    Ok(())
}

/// Whether another open file description holds a lock on `byte`.
fn someone_locks(file: &File, byte: i64) -> io::Result<bool> {
    Ok(ofd_lock(file, libc::F_OFD_GETLK, libc::F_WRLCK, byte)? != libc::F_UNLCK as i16)
}

/// One OFD lock call on a single byte; returns the resulting `l_type` (for F_OFD_GETLK: the
/// conflicting lock's type, or F_UNLCK if none).
fn ofd_lock(file: &File, cmd: libc::c_int, ty: libc::c_int, byte: i64) -> io::Result<i16> {
    // SAFETY: flock is plain data; all-zero is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: `fl` is a valid flock the kernel reads (and, for GETLK, writes) during the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type)
}

#[cfg(test)]
mod tests;
