//! A disk served by imago (qcow2 images and the snapshot=on overlay).

use crate::activation::{ActiveGuard, Activation};
use crate::lock::Locking;
use crate::qcow2::open_qcow2;
use crate::{check_range, CacheMode, Disk, DiskError, OpenError};
use imago::file::File as ImagoFile;
use imago::FormatAccess;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Image = FormatAccess<ImagoFile>;

/// A qcow2 image as it was opened, to open its chain again on activation: while it was
/// inactive, the other side may have changed its metadata.
pub(crate) struct Qcow2File {
    pub path: PathBuf,
    /// A descriptor of the image file (its description holds the image's lock).
    pub file: File,
    pub writable: bool,
    pub direct: bool,
}

pub(crate) struct ImagoDisk {
    /// Reads and writes hold it shared; a discard, which may invalidate the data mappings
    /// imago uses while another request runs, and a reopen hold it exclusively.
    image: RwLock<Image>,
    size: u64,
    read_only: bool,
    cache: CacheMode,
    /// `discard=unmap`: discards free clusters.
    discard: bool,
    /// The image's and its backing files' locks; released after `image` is closed.
    activation: Activation,
    /// `None` for the snapshot=on overlay: it lives in this process only, over a read-only
    /// image, so nothing it caches goes stale.
    reopen: Option<Qcow2File>,
}

impl ImagoDisk {
    /// `size`: what the guest sees (the virtual size, rounded down to whole sectors).
    pub(crate) fn new(
        image: Image,
        size: u64,
        read_only: bool,
        cache: CacheMode,
        discard: bool,
        activation: Activation,
        reopen: Option<Qcow2File>,
    ) -> Self {
        ImagoDisk { image: RwLock::new(image), size, read_only, cache, discard, activation, reopen }
    }

    fn shared(&self) -> RwLockReadGuard<'_, Image> {
        self.image.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, Image> {
        self.image.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a modifying request; the guard holds the image active.
    fn check_write(&self, offset: u64, len: u64) -> Result<ActiveGuard<'_>, DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, len, self.size)?;
        self.activation.for_write()
    }

    /// Writes out imago's metadata caches and, if `sync`, makes the file durable.
    fn write_back(&self, sync: bool) -> Result<(), DiskError> {
        if !self.read_only {
            write_out(&self.shared(), sync)?;
        }
        Ok(())
    }

    /// Opens the chain again (for writing, if it is written), in place of the one in use.
    fn reload(&self) -> Result<(), OpenError> {
        let Some(q) = &self.reopen else { return Ok(()) };
        // The first open's descriptors hold the locks.
        let fresh = open_qcow2(&q.path, &q.file, q.writable, q.direct, Locking::Off)?;
        *self.exclusive() = fresh.image;
        Ok(())
    }
}

/// Writes `image`'s metadata caches to the file and, if `sync`, syncs it.
fn write_out(image: &Image, sync: bool) -> std::io::Result<()> {
    image.flush()?;
    if sync {
        image.sync()?;
    }
    Ok(())
}

impl Disk for ImagoDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.shared().read(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let _active = self.check_write(offset, buf.len() as u64)?;
        let image = self.shared();
        image.write(buf, offset)?;
        if self.cache.sync_every_write() {
            // The data and the metadata that maps it, or the write is not durable.
            write_out(&image, true)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        match self.activation.while_active() {
            Some(_active) if self.cache.flush_enabled() => self.write_back(true),
            _ => Ok(()),
        }
    }

    fn inactivate(&self) -> Result<(), DiskError> {
        // Even cache=unsafe writes its metadata out: the other side reads it from the file.
        self.activation.inactivate(|| self.write_back(self.cache.flush_enabled()))
    }

    fn activate(&self) -> Result<(), OpenError> {
        self.activation.activate(|| self.reload())
    }

    fn is_active(&self) -> bool {
        self.activation.is_active()
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        let _active = self.check_write(offset, len)?;
        if unmap && self.discard {
            let image = self.exclusive();
            // SAFETY: imago requires that no data mapping is in use concurrently; every other
            // access to the image holds `image` shared, and this holds it exclusively.
            unsafe { image.discard_to_zero_unsafe(offset, len)? };
        } else {
            self.shared().write_zeroes(offset, len)?;
        }
        if self.cache.sync_every_write() {
            self.write_back(true)?;
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let _active = self.check_write(offset, len)?;
        if !self.discard || len == 0 {
            return Ok(());
        }
        let image = self.exclusive();
        // SAFETY: as in `write_zeroes`: no other access runs while `image` is held
        // exclusively.
        match unsafe { image.discard_to_any_unsafe(offset, len) } {
            // Discards are advisory: an image that cannot free the range keeps its data.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(()),
            r => Ok(r?),
        }
    }
}

impl Drop for ImagoDisk {
    fn drop(&mut self) {
        // imago writes its metadata caches back when dropped; also sync, as QEMU does on close
        // (cache=unsafe skips only the sync; an inactive image was written back already).
        let _ = self.flush();
    }
}
