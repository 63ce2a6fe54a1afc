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
//!
//! An inactive image (QEMU's BDRV_O_INACTIVE: the destination of a migration before it takes
//! over, the source after it has handed over) holds only consistent-read and shares
//! everything, whatever its role, so the active side may write meanwhile. Activating takes
//! the role's locks again, with the checks of an open.

use crate::OpenError;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

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

/// Whether an opener locks the files it opens, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locking {
    /// `file.locking=off`: no locks at all.
    Off,
    /// The locks of the opener's role.
    Active,
    /// What an inactive image holds, until it is activated.
    Inactive,
}

/// Permission bits an opener holds, and those it refuses to share with anyone else.
#[derive(Clone, Copy)]
struct Perms {
    held: &'static [u32],
    unshared: &'static [u32],
}

/// What an inactive image holds, whatever its role.
const INACTIVE: Perms = Perms { held: &[CONSISTENT_READ], unshared: &[] };

impl Perms {
    /// The bytes that express these permissions.
    fn bytes(self) -> Vec<i64> {
        let held = self.held.iter().map(|&p| PERM_LOCK_BASE + p as i64);
        held.chain(self.unshared.iter().map(|&p| SHARED_LOCK_BASE + p as i64)).collect()
    }
}

impl LockRole {
    fn perms(self) -> Perms {
        let unshared = &[WRITE, RESIZE];
        match self {
            LockRole::Reader => Perms { held: &[CONSISTENT_READ], unshared },
            LockRole::Writer { resize: false } => Perms { held: &[CONSISTENT_READ, WRITE], unshared },
            LockRole::Writer { resize: true } => Perms { held: &[CONSISTENT_READ, WRITE, RESIZE], unshared },
        }
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
    path: PathBuf,
    /// What the image is used for while active.
    role: LockRole,
    /// The bytes locked now.
    bytes: Vec<i64>,
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        for &b in &self.bytes {
            self.unlock(b);
        }
    }
}

/// Takes `role`'s locks on `file` (the image at `path`), or an inactive image's, or none
/// (`Locking::Off`); fails naming the conflict and leaves no lock behind.
pub(crate) fn lock_image(file: &File, path: &Path, role: LockRole, locking: Locking) -> Result<Option<ImageLock>, OpenError> {
    let perms = match locking {
        Locking::Off => return Ok(None),
        Locking::Active => role.perms(),
        Locking::Inactive => INACTIVE,
    };
    let dup = file.try_clone().map_err(|source| OpenError::Io { path: path.into(), source })?;
    let mut lock = ImageLock { file: dup, path: path.into(), role, bytes: Vec::new() };
    lock.switch_to(perms)?;
    Ok(Some(lock))
}

impl ImageLock {
    /// Keeps only what an inactive image holds (a subset of every role's locks, so nothing
    /// is taken and nothing can fail).
    pub(crate) fn inactivate(&mut self) {
        let keep = INACTIVE.bytes();
        for &b in self.bytes.iter().filter(|b| !keep.contains(b)) {
            self.unlock(b);
        }
        self.bytes.retain(|b| keep.contains(b));
    }

    /// Takes the role's locks again, with the checks of an open; on failure the image stays
    /// inactive.
    pub(crate) fn activate(&mut self) -> Result<(), OpenError> {
        self.switch_to(self.role.perms())
    }

    /// Takes the bytes `to` adds, checks that nobody conflicts with `to`, then releases the
    /// bytes `to` drops. On failure the bytes held before are held still, and no others.
    fn switch_to(&mut self, to: Perms) -> Result<(), OpenError> {
        let wanted = to.bytes();
        let added: Vec<i64> = wanted.iter().copied().filter(|b| !self.bytes.contains(b)).collect();
        let switched = added.iter().try_for_each(|&b| self.take(b)).and_then(|()| self.check(to));
        // On to `to`, or back to what was held (unlocking a byte not taken changes nothing).
        let release = match switched {
            Ok(()) => self.bytes.iter().copied().filter(|b| !wanted.contains(b)).collect(),
            Err(_) => added,
        };
        for b in release {
            self.unlock(b);
        }
        if switched.is_ok() {
            self.bytes = wanted;
        }
        switched
    }

    fn unlock(&self, byte: i64) {
        // Unlocking a byte this description holds does not fail.
        let _ = ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_UNLCK, byte);
    }

    fn take(&self, byte: i64) -> Result<(), OpenError> {
        ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_RDLCK, byte).map(drop).map_err(|e| {
            // Only an exclusive lock blocks a shared one; QEMU never takes those on these
            // bytes, but treat it as "in use" all the same.
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                let p = (byte % 100) as usize;
                OpenError::Locked { path: self.path.clone(), perm: PERM_NAMES[p], shared: byte >= SHARED_LOCK_BASE }
            } else {
                self.failed(e)
            }
        })
    }

    /// Nobody refuses to share what `perms` holds, and nobody holds what it refuses to share.
    fn check(&self, perms: Perms) -> Result<(), OpenError> {
        let conflicts = perms.held.iter().map(|&p| (p, false)).chain(perms.unshared.iter().map(|&p| (p, true)));
        for (p, shared) in conflicts {
            let byte = if shared { PERM_LOCK_BASE } else { SHARED_LOCK_BASE } + p as i64;
            if someone_locks(&self.file, byte).map_err(|e| self.failed(e))? {
                return Err(OpenError::Locked { path: self.path.clone(), perm: PERM_NAMES[p as usize], shared });
            }
        }
        Ok(())
    }

    fn failed(&self, source: io::Error) -> OpenError {
        OpenError::LockFailed { path: self.path.clone(), source }
    }
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
