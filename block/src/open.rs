//! `open_image`: from a drive's options to a [`Disk`], with every problem reported before the
//! guest starts.

use crate::host_file::{clear_direct, open_host_file, read_prefix};
use crate::activation::Activation;
use crate::imago_disk::{ImagoDisk, Qcow2File};
use crate::lock::{lock_image, LockRole, Locking};
use crate::qcow2::{imago_error, open_qcow2};
use crate::qcow2_header::Qcow2Header;
use crate::raw::RawDisk;
use crate::{aligned::DIRECT_ALIGN, snapshot, CacheMode, Disk, DriveOptions, ImageFormat, OpenError, QCOW2_MAGIC};
use imago::file::File as ImagoFile;
use imago::raw::Raw;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, StorageOpenOptions};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SECTOR: u64 = 512;

/// An opened drive image.
pub struct OpenedImage {
    pub disk: Arc<dyn Disk>,
    /// The format of the image file (with snapshot=on: of the image under the overlay).
    pub format: ImageFormat,
    /// Whether the format was probed rather than given.
    pub probed: bool,
    /// The size the guest sees, in bytes (whole sectors).
    pub size: u64,
    /// Whether guest writes are refused (readonly=on; with snapshot=on alone they go to the overlay).
    pub read_only: bool,
    /// The qcow2 backing files in use, nearest first.
    pub backing_files: Vec<PathBuf>,
    /// Things the user should know (printed by the front end), e.g. that raw was probed.
    pub warnings: Vec<String>,
}

/// Opens the image `opts` describes. See the crate documentation for the rules.
pub fn open_image(opts: &DriveOptions) -> Result<OpenedImage, OpenError> {
    open(opts, true)
}

/// Opens the image inactive, as the destination of a migration does while the source still
/// runs: it holds only a shared consistent-read lock, reads what the image holds but writes
/// nothing (not even qcow2's header), and refuses writes until [`Disk::activate`] takes it.
pub fn open_image_inactive(opts: &DriveOptions) -> Result<OpenedImage, OpenError> {
    open(opts, false)
}

fn open(opts: &DriveOptions, active: bool) -> Result<OpenedImage, OpenError> {
    let path = opts.path.as_path();
    let io_err = |source| OpenError::Io { path: path.into(), source };
    // snapshot=on with readonly=on needs no overlay: nothing is ever written.
    let overlay = opts.snapshot && !opts.read_only;
    let writable = !opts.read_only && !opts.snapshot;
    let mut direct = opts.cache.direct();
    let file = open_host_file(path, writable, direct)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let prefix = read_prefix(&file).map_err(io_err)?;
    let (format, probed) = match opts.format {
        Some(f) => (f, false),
        None if prefix.starts_with(&QCOW2_MAGIC) => (ImageFormat::Qcow2, true),
        None => (ImageFormat::Raw, true),
    };
    if format == ImageFormat::Qcow2 {
        let header = Qcow2Header::parse(path, &prefix, file_len)?;
        if header.nb_snapshots > 0 && writable {
            return Err(OpenError::InternalSnapshots { path: path.into(), count: header.nb_snapshots });
        }
    }
    let role = if writable { LockRole::Writer { resize: format == ImageFormat::Qcow2 } } else { LockRole::Reader };
    let locking = match (opts.locking, active) {
        (false, _) => Locking::Off,
        (true, true) => Locking::Active,
        (true, false) => Locking::Inactive,
    };
    let mut locks: Vec<_> = lock_image(&file, path, role, locking)?.into_iter().collect();

    let mut warnings = Vec::new();
    if format == ImageFormat::Raw && direct && file_len % DIRECT_ALIGN as u64 != 0 {
        clear_direct(&file).map_err(io_err)?;
        direct = false;
        warnings.push(format!(
            "'{}': its length is not a multiple of {DIRECT_ALIGN} bytes, so O_DIRECT cannot be used for it; using the host page cache (cache={} otherwise applies)",
            path.display(),
            opts.cache
        ));
    }
    let guard_sector0 = format == ImageFormat::Raw && probed && writable;
    if guard_sector0 {
        warnings.push(format!(
            "'{}': no format was given and it was probed as raw; probing raw images is risky, so guest writes that would make sector 0 look like another image format are refused. Give format=raw to lift the restriction.",
            path.display()
        ));
    }

    let mut backing_files = Vec::new();
    let disk: Arc<dyn Disk> = if overlay {
        let base = match format {
            ImageFormat::Raw => open_raw_base(path, file, direct)?,
            ImageFormat::Qcow2 => {
                let q = open_qcow2(path, &file, false, direct, locking)?;
                backing_files = q.backing_files;
                locks.extend(q.locks);
                q.image
            }
        };
        let size = guest_size(path, base.size(), &mut warnings);
        let overlay = snapshot::overlay(path, base, size)?;
        // The overlay is discarded at exit: making it durable would be wasted work.
        let activation = Activation::new(locks, active);
        Arc::new(ImagoDisk::new(overlay, size, false, CacheMode::Unsafe, opts.discard, activation, None))
    } else {
        match format {
            ImageFormat::Raw => {
                let size = guest_size(path, file_len, &mut warnings);
                let activation = Activation::new(locks, active);
                Arc::new(RawDisk::new(file, size, !writable, opts.cache, direct, guard_sector0, opts.discard, activation))
            }
            ImageFormat::Qcow2 => {
                // Inactive, nothing may be written: imago's writable open updates the header.
                let q = open_qcow2(path, &file, writable && active, direct, locking)?;
                backing_files = q.backing_files;
                locks.extend(q.locks);
                let size = guest_size(path, q.image.size(), &mut warnings);
                let activation = Activation::new(locks, active);
                let reopen = Qcow2File { path: path.into(), file, writable, direct };
                Arc::new(ImagoDisk::new(q.image, size, !writable, opts.cache, opts.discard, activation, Some(reopen)))
            }
        }
    };
    Ok(OpenedImage { size: disk.size(), disk, format, probed, read_only: opts.read_only, backing_files, warnings })
}

/// A raw image as imago's read-only raw format (the backing image of a snapshot overlay).
fn open_raw_base(path: &Path, file: File, direct: bool) -> Result<FormatAccess<ImagoFile>, OpenError> {
    let opts = StorageOpenOptions::new().filename(path).write(false).direct(direct);
    let storage = ImagoFile::from_open_file(file, opts).map_err(|e| imago_error(path, e))?;
    let raw = Raw::builder(storage).write(false).open(DenyImplicitOpenGate::default()).map_err(|e| imago_error(path, e))?;
    Ok(FormatAccess::new(raw))
}

/// The guest-visible size: whole sectors, warning about a dropped tail.
fn guest_size(path: &Path, bytes: u64, warnings: &mut Vec<String>) -> u64 {
    let tail = bytes % SECTOR;
    if tail != 0 {
        warnings.push(format!(
            "'{}': its size ({bytes} bytes) is not a multiple of {SECTOR}; the last {tail} bytes are not visible to the guest",
            path.display()
        ));
    }
    bytes - tail
}
