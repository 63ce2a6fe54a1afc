//! snapshot=on: the image is opened read-only and the guest's writes go to a temporary qcow2
//! overlay whose backing image is the (already open) image. The overlay lives in $TMPDIR and
//! is unlinked as soon as it exists, so it vanishes when ferrite exits, however it exits.

use crate::OpenError;
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatCreateBuilder, StorageOpenOptions};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A throw-away qcow2 overlay of `size` bytes over `base` (the image at `path`).
pub(crate) fn overlay(path: &Path, base: FormatAccess<ImagoFile>, size: u64) -> Result<FormatAccess<ImagoFile>, OpenError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let fail = |source| OpenError::Overlay { path: path.into(), dir: dir.clone(), source };
    let name = format!("ferrite-snapshot-{}-{}.qcow2", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(name);
    let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
    // Unlinked at once: the open descriptor keeps the data; nothing is left behind.
    std::fs::remove_file(&tmp).map_err(fail)?;
    let storage = ImagoFile::from_open_file(file, StorageOpenOptions::new().write(true)).map_err(fail)?;
    // The backing image is handed over open, not named in the header: nothing is opened by
    // name, so the gate may deny everything.
    let qcow2 = Qcow2::<ImagoFile>::create_builder(storage)
        .size(size)
        .create_open(DenyImplicitOpenGate::default(), |image| Ok(Qcow2::<ImagoFile>::builder(image).backing(Some(base))))
        .map_err(fail)?;
    Ok(FormatAccess::new(qcow2))
}
