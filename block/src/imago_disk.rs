//! A disk served by imago (qcow2 images and the snapshot=on overlay).

use crate::lock::ImageLock;
use crate::{check_range, CacheMode, Disk, DiskError};
use imago::file::File as ImagoFile;
use imago::FormatAccess;

pub(crate) struct ImagoDisk {
    image: FormatAccess<ImagoFile>,
    size: u64,
    read_only: bool,
    cache: CacheMode,
    /// The image's and its backing files' locks; released after `image` is closed.
    _locks: Vec<ImageLock>,
}

impl ImagoDisk {
    /// `size`: what the guest sees (the virtual size, rounded down to whole sectors).
    pub(crate) fn new(image: FormatAccess<ImagoFile>, size: u64, read_only: bool, cache: CacheMode, locks: Vec<ImageLock>) -> Self {
        ImagoDisk { image, size, read_only, cache, _locks: locks }
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
        self.image.read(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, buf.len() as u64, self.size)?;
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
