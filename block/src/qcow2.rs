//! qcow2 images through the `imago` crate (0.2.6, synchronous build).
//!
//! What imago gives: qcow2 v2/v3 read and write, cluster allocation with refcounts kept
//! up to date (no lazy refcounts, so no dirty bit), copy-on-write from backing files of any
//! depth (opened implicitly through our [`BackingGate`]), reading zlib-compressed clusters
//! (a guest write to one allocates a fresh cluster), metadata caches written back by `flush`
//! and on drop, and O_DIRECT alignment handled internally with bounce buffers.
//!
//! What it does not do, and how ferrite copes:
//! - No loop detection in backing chains: the gate detects loops by (device, inode).
//! - Incompatible features (dirty, corrupt, external data file, zstd, extended L2) are
//!   refused by imago with a generic message; `qcow2_header` names them first.
//! - Internal snapshots are neither listed nor updated. Reading the active layer is correct,
//!   but writing could leave the snapshot table inconsistent, so ferrite opens images with
//!   internal snapshots read-only only (readonly=on or snapshot=on); a writable open is
//!   refused with [`OpenError::InternalSnapshots`].
//! - A writable open clears the header's autoclear feature bits (as the qcow2 spec asks of
//!   programs that don't know them) *before* it has validated the rest of the image, so a
//!   failing writable open could have changed the file. ferrite therefore first opens the
//!   whole chain read-only, which writes nothing, and only after that succeeded opens it for
//!   writing. (What remains: a refcount table imago cannot load is only noticed by the
//!   writable open, after that header update.)

use crate::backing_gate::BackingGate;
use crate::host_file::file_id;
use crate::lock::{ImageLock, Locking};
use crate::OpenError;
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatDriverBuilder, StorageOpenOptions};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An open qcow2 chain and the backing files it uses (nearest first).
pub(crate) struct OpenQcow2 {
    pub image: FormatAccess<ImagoFile>,
    pub backing_files: Vec<PathBuf>,
    /// The backing files' locks.
    pub locks: Vec<ImageLock>,
}

/// Opens the qcow2 image in `file` (already opened and locked by the caller) with its backing
/// chain, locking the backing files as `locking` says. On error nothing in any file of the
/// chain has been written.
pub(crate) fn open_qcow2(path: &Path, file: &File, writable: bool, direct: bool, locking: Locking) -> Result<OpenQcow2, OpenError> {
    let checked = open_once(path, file, false, direct, locking)?;
    if !writable {
        return Ok(checked);
    }
    drop(checked);
    open_once(path, file, true, direct, locking)
}

fn open_once(path: &Path, file: &File, writable: bool, direct: bool, locking: Locking) -> Result<OpenQcow2, OpenError> {
    let io_err = |source: io::Error| OpenError::Io { path: path.into(), source };
    // A second descriptor of the same open file description: it shares our locks.
    let fd = file.try_clone().map_err(io_err)?;
    let gate = BackingGate::new(path, file_id(file).map_err(io_err)?, direct, locking);
    let opts = StorageOpenOptions::new().filename(path).write(writable).direct(direct);
    let storage = ImagoFile::from_open_file(fd, opts).map_err(io_err)?;
    let opened = Qcow2::<ImagoFile>::builder(storage)
        .write(writable)
        .storage_open_options(StorageOpenOptions::new().direct(direct))
        .data_file(None)
        .open(gate.clone());
    match opened {
        Ok(q) => Ok(OpenQcow2 { image: FormatAccess::new(q), backing_files: gate.backing_files(), locks: gate.take_locks() }),
        Err(e) => Err(gate.take_failure().unwrap_or_else(|| imago_error(path, e))),
    }
}

/// An error imago reported for the image at `path` (its messages name backing files).
pub(crate) fn imago_error(path: &Path, e: io::Error) -> OpenError {
    let path = path.to_path_buf();
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => OpenError::Corrupt { path, reason: e.to_string() },
        io::ErrorKind::Unsupported => OpenError::Unsupported { path, what: e.to_string() },
        _ => OpenError::Io { path, source: e },
    }
}
