//! Why an image could not be opened. Every message starts with the file it is about, so the
//! user sees which `-drive` (or which backing file) is at fault before the guest starts.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("'{}': no such file", path.display())]
    NotFound { path: PathBuf },

    #[error("'{}': permission denied", path.display())]
    PermissionDenied { path: PathBuf },

    #[error("'{}' is a directory, not a disk image", path.display())]
    IsDirectory { path: PathBuf },

    /// Opening for writing failed although reading would work (file mode, immutable flag,
    /// read-only mount).
    #[error("'{}' is read-only on the host; use readonly=on (or snapshot=on)", path.display())]
    HostReadOnly { path: PathBuf },

    #[error("'{}': the host file system does not support O_DIRECT, which cache=none and cache=directsync need; use cache=writeback", path.display())]
    DirectIoUnsupported { path: PathBuf },

    /// Another open file description holds a conflicting lock (QEMU's lock protocol).
    /// `shared` says the conflict is a permission we refuse to share (someone else holds it),
    /// rather than a permission we want that someone else refuses to share.
    #[error("'{}': failed to get {}\"{perm}\" lock: the image is in use by another process or another drive (give readonly=on to every user to share it, or file.locking=off if you know it is safe)",
        path.display(), if *shared { "shared " } else { "" })]
    Locked { path: PathBuf, perm: &'static str, shared: bool },

    #[error("'{}': cannot lock the image ({source}); the file system may lack OFD locks: use file.locking=off", path.display())]
    LockFailed { path: PathBuf, source: io::Error },

    #[error("'{}' is not a qcow2 image (no qcow2 magic), but format=qcow2 was given", path.display())]
    NotQcow2 { path: PathBuf },

    #[error("'{}': truncated qcow2 header ({len} bytes; a qcow2 v{version} header needs {needed})", path.display())]
    Truncated { path: PathBuf, len: u64, version: u32, needed: u64 },

    #[error("'{}': corrupt or invalid qcow2 image: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("'{}': unsupported qcow2 feature: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },

    #[error("'{}' contains {count} internal snapshot(s); ferrite can open such an image only read-only (readonly=on or snapshot=on)", path.display())]
    InternalSnapshots { path: PathBuf, count: u32 },

    #[error("'{}': backing file '{}' does not exist", path.display(), backing.display())]
    BackingMissing { path: PathBuf, backing: PathBuf },

    /// `image` (in the chain of `path`) names `backing`, which is already in the chain.
    #[error("'{}': backing chain loops: '{}' names '{}' as its backing file, which is already in the chain", path.display(), image.display(), backing.display())]
    BackingLoop { path: PathBuf, image: PathBuf, backing: PathBuf },

    /// A backing file failed to open for a reason of its own (it names itself).
    #[error("'{}': cannot open its backing file: {source}", path.display())]
    Backing { path: PathBuf, source: Box<OpenError> },

    #[error("'{}': cannot create the temporary snapshot=on overlay in '{}': {source}", path.display(), dir.display())]
    Overlay { path: PathBuf, dir: PathBuf, source: io::Error },

    #[error("'{}': {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl OpenError {
    /// Maps an `open(2)`-style error on `path` to the clearest variant. `writing` says whether
    /// the file was being opened for writing (then EACCES/EPERM/EROFS mean read-only on the host).
    pub(crate) fn from_open(path: &std::path::Path, err: io::Error, writing: bool) -> Self {
        let path = path.to_path_buf();
        match err.raw_os_error() {
            Some(libc::ENOENT) => OpenError::NotFound { path },
            Some(libc::EISDIR) => OpenError::IsDirectory { path },
            Some(libc::EACCES | libc::EPERM | libc::EROFS) if writing => {
                OpenError::HostReadOnly { path }
            }
            Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied { path },
            _ => OpenError::Io { path, source: err },
        }
    }
}
