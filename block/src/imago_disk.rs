//! A disk served by imago (qcow2 images and the snapshot=on overlay).

use crate::lock::ImageLock;
use crate::{check_range, CacheMode, Disk, DiskError};
use imago::file::File as ImagoFile;
use imago::FormatAccess;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) struct ImagoDisk {
    image: FormatAccess<ImagoFile>,
    size: u64,
    read_only: bool,
    cache: CacheMode,
    /// `discard=unmap`: discards free clusters.
    discard: bool,
    /// Reads and writes hold it shared; a discard, which may invalidate the data mappings
    /// imago uses while another request runs, holds it exclusively.
    mappings: RwLock<()>,
    /// The image's and its backing files' locks; released after `image` is closed.
    _locks: Vec<ImageLock>,
}

impl ImagoDisk {
    /// `size`: what the guest sees (the virtual size, rounded down to whole sectors).
    pub(crate) fn new(
        image: FormatAccess<ImagoFile>,
        size: u64,
        read_only: bool,
        cache: CacheMode,
        discard: bool,
        locks: Vec<ImageLock>,
    ) -> Self {
        ImagoDisk { image, size, read_only, cache, discard, mappings: RwLock::new(()), _locks: locks }
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.mappings.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.mappings.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a modifying request.
    fn check_write(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, len, self.size)
    }

    /// Writes imago's metadata caches to the file and syncs it.
    fn write_back(&self) -> std::io::Result<()> {
        self.image.flush()?;
        self.image.sync()
    }
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
        let _shared = self.shared();
        self.image.read(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.check_write(offset, buf.len() as u64)?;
        let _shared = self.shared();
        self.image.write(buf, offset)?;
        if self.cache.sync_every_write() {
            // The data and the metadata that maps it, or the write is not durable.
            self.write_back()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        if !self.read_only && self.cache.flush_enabled() {
            self.write_back()?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        self.check_write(offset, len)?;
        if unmap && self.discard {
            let _exclusive = self.exclusive();
            // SAFETY: imago requires that no data mapping is in use concurrently; every other
            // access to the image holds `mappings` shared, and this holds it exclusively.
            unsafe { self.image.discard_to_zero_unsafe(offset, len)? };
        } else {
            let _shared = self.shared();
            self.image.write_zeroes(offset, len)?;
        }
        if self.cache.sync_every_write() {
            self.write_back()?;
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.check_write(offset, len)?;
        if !self.discard || len == 0 {
            return Ok(());
        }
        let _exclusive = self.exclusive();
        // SAFETY: as in `write_zeroes`: no other access runs while `mappings` is held
        // exclusively.
        match unsafe { self.image.discard_to_any_unsafe(offset, len) } {
            // Discards are advisory: an image that cannot free the range keeps its data.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(()),
            r => Ok(r?),
        }
    }
}

impl Drop for ImagoDisk {
    fn drop(&mut self) {
        // imago writes its metadata caches back when dropped; also sync, as QEMU does on close
        // (cache=unsafe skips only the sync).
        if !self.read_only && self.cache.flush_enabled() {
            let _ = self.write_back();
        }
    }
}
