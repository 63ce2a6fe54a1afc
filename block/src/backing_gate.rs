//! The gate through which imago opens a qcow2 image's backing files (imago calls it for every
//! file it opens on its own). ferrite opens them itself so that each one is:
//! - opened read-only (never O_RDWR), with the drive's O_DIRECT choice,
//! - locked as a reader (QEMU locks backing files the same way),
//! - checked against the files already in the chain, by (device, inode), so a loop
//!   (A backs on B backs on A, or A on itself) is an error instead of endless recursion —
//!   imago itself does not detect loops.
//!
//! imago opens a chain depth-first, one image after another, so the file whose header named
//! the one being opened is always the last one recorded.

use crate::host_file::{file_id, open_host_file};
use crate::lock::{lock_image, ImageLock, LockRole, Locking};
use crate::OpenError;
use imago::file::File as ImagoFile;
use imago::format::gate::ImplicitOpenGate;
use imago::{FormatAccess, FormatDriverBuilder, StorageOpenOptions};
use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

struct ChainState {
    /// Files of the chain so far, top image first.
    files: Vec<((u64, u64), PathBuf)>,
    direct: bool,
    locking: Locking,
    /// The backing files' locks.
    locks: Vec<ImageLock>,
    /// The precise error behind the last refused open (imago only passes on an io::Error).
    failure: Option<OpenError>,
}

/// Shared by the nested opens of one chain (imago hands each level its own gate value).
#[derive(Clone)]
pub(crate) struct BackingGate(Rc<RefCell<ChainState>>);

impl BackingGate {
    /// A gate for the chain below `top` (already open as `top_id`).
    pub(crate) fn new(top: &Path, top_id: (u64, u64), direct: bool, locking: Locking) -> Self {
        BackingGate(Rc::new(RefCell::new(ChainState {
            files: vec![(top_id, top.to_path_buf())],
            direct,
            locking,
            locks: Vec::new(),
            failure: None,
        })))
    }

    /// The backing files opened, nearest first.
    pub(crate) fn backing_files(&self) -> Vec<PathBuf> {
        self.0.borrow().files.iter().skip(1).map(|(_, p)| p.clone()).collect()
    }

    /// The locks taken on backing files (held until dropped).
    pub(crate) fn take_locks(&self) -> Vec<ImageLock> {
        std::mem::take(&mut self.0.borrow_mut().locks)
    }

    /// The precise error, if the gate refused an open.
    pub(crate) fn take_failure(&self) -> Option<OpenError> {
        self.0.borrow_mut().failure.take()
    }

    fn open_backing(&self, path: &Path) -> Result<ImagoFile, OpenError> {
        let mut st = self.0.borrow_mut();
        let parent = st.files.last().map(|(_, p)| p.clone()).unwrap_or_default();
        let in_backing = |e: OpenError| match e {
            OpenError::NotFound { path: backing } => OpenError::BackingMissing { path: parent.clone(), backing },
            e => OpenError::Backing { path: parent.clone(), source: Box::new(e) },
        };
        let file = open_host_file(path, false, st.direct).map_err(in_backing)?;
        let id = file_id(&file).map_err(|source| in_backing(OpenError::Io { path: path.into(), source }))?;
        if st.files.iter().any(|(seen, _)| *seen == id) {
            let top = st.files[0].1.clone();
            return Err(OpenError::BackingLoop { path: top, image: parent, backing: path.into() });
        }
        let lock = lock_image(&file, path, LockRole::Reader, st.locking).map_err(in_backing)?;
        st.locks.extend(lock);
        st.files.push((id, path.to_path_buf()));
        let opts = StorageOpenOptions::new().filename(path).write(false).direct(st.direct);
        ImagoFile::from_open_file(file, opts).map_err(|source| in_backing(OpenError::Io { path: path.into(), source }))
    }
}

impl ImplicitOpenGate<ImagoFile> for BackingGate {
    fn open_format<F: FormatDriverBuilder<ImagoFile>>(&mut self, builder: F) -> io::Result<FormatAccess<ImagoFile>> {
        // Backing images are never written.
        Ok(FormatAccess::new(builder.write(false).open(self.clone())?))
    }

    fn open_storage(&mut self, opts: StorageOpenOptions) -> io::Result<ImagoFile> {
        let path = opts.get_filename().map(Path::to_path_buf).unwrap_or_default();
        let result = if opts.get_writable() {
            // Only an external data file is opened for writing; ferrite refuses those images
            // before imago sees them, so this is a safety net.
            Err(OpenError::Unsupported { path: path.clone(), what: "external data file".into() })
        } else {
            self.open_backing(&path)
        };
        result.map_err(|e| {
            let err = io::Error::other(e.to_string());
            self.0.borrow_mut().failure = Some(e);
            err
        })
    }
}
