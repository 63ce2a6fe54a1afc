//! Raw images: the file's bytes are the disk's bytes, accessed with positional I/O.
//!
//! Size: the file's length rounded down to whole 512-byte sectors (a tail shorter than a
//! sector is invisible to the guest; `open_image` warns about it).
//!
//! O_DIRECT (cache=none/directsync) wants 4096-aligned buffers, offsets and lengths: every
//! request goes through an aligned bounce buffer covering the aligned window around it; a
//! write that covers a block only partly reads that block first (read-modify-write, under a
//! lock so two such writes cannot lose each other's bytes). If the file length itself is not
//! a multiple of 4096, the last block could not be written without growing the file, so such
//! files use the host cache after all (with a warning).

use crate::activation::{ActiveGuard, Activation};
use crate::aligned::{align_down, align_up, AlignedBuf, DIRECT_ALIGN};
use crate::{check_range, CacheMode, Disk, DiskError, OpenError, QCOW2_MAGIC};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, PoisonError};

pub(crate) struct RawDisk {
    file: File,
    size: u64,
    read_only: bool,
    cache: CacheMode,
    /// Whether the descriptor really is O_DIRECT (see the module comment).
    direct: bool,
    /// The format was probed: refuse writes that would make the file look like qcow2.
    probed: bool,
    /// Serialises O_DIRECT writes (their read-modify-write of partial blocks).
    direct_writes: Mutex<()>,
    /// `discard=unmap`: discards punch holes into the file.
    discard: bool,
    /// Whether the image may be written, and its locks.
    activation: Activation,
}

impl RawDisk {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        file: File,
        size: u64,
        read_only: bool,
        cache: CacheMode,
        direct: bool,
        probed: bool,
        discard: bool,
        activation: Activation,
    ) -> Self {
        RawDisk { file, size, read_only, cache, direct, probed, direct_writes: Mutex::new(()), discard, activation }
    }

    /// Makes completed writes durable, as the cache mode says.
    fn sync(&self) -> Result<(), DiskError> {
        if !self.read_only && self.cache.flush_enabled() {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Refuses a modifying request the disk cannot take; the guard holds the image active.
    fn check_write(&self, offset: u64, len: u64) -> Result<ActiveGuard<'_>, DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, len, self.size)?;
        self.activation.for_write()
    }

    /// `fallocate(2)` on the image: `Ok(false)` when the host file system cannot do `mode`.
    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> std::io::Result<bool> {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Ok(false);
        };
        // SAFETY: fallocate only takes the descriptor and integers; the file stays open for the
        // call because `self` owns it.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, n) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::ENODEV) => Ok(false),
            _ => Err(e),
        }
    }

    /// Refuses a write that would put the qcow2 magic at the start of a probed raw image:
    /// next time it would be probed as qcow2, and a qcow2 header can name any host file as
    /// its backing file. (QEMU refuses any sector-0 write that changes the probed format.)
    fn check_sector0(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let magic_len = QCOW2_MAGIC.len() as u64;
        if !self.probed || offset >= magic_len || self.size < magic_len || buf.is_empty() {
            return Ok(());
        }
        let mut head = [0u8; QCOW2_MAGIC.len()];
        self.read_at(0, &mut head)?;
        let n = buf.len().min(head.len() - offset as usize);
        head[offset as usize..offset as usize + n].copy_from_slice(&buf[..n]);
        if head == QCOW2_MAGIC {
            return Err(DiskError::ProbedFormatChange);
        }
        Ok(())
    }

    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = align_down(offset);
        let mut bounce = AlignedBuf::new((align_up(offset + buf.len() as u64) - start) as usize);
        self.file.read_exact_at(&mut bounce, start)?;
        let at = (offset - start) as usize;
        buf.copy_from_slice(&bounce[at..at + buf.len()]);
        Ok(())
    }

    fn write_direct(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let _serial = self.direct_writes.lock().unwrap_or_else(PoisonError::into_inner);
        let start = align_down(offset);
        let end = align_up(offset + buf.len() as u64);
        let mut bounce = AlignedBuf::new((end - start) as usize);
        let block = DIRECT_ALIGN;
        // Partly covered first and last blocks keep their other bytes.
        if offset != start {
            self.file.read_exact_at(&mut bounce[..block], start)?;
        }
        let tail = bounce.len() - block;
        if offset + buf.len() as u64 != end && (tail > 0 || offset == start) {
            self.file.read_exact_at(&mut bounce[tail..], end - block as u64)?;
        }
        let at = (offset - start) as usize;
        bounce[at..at + buf.len()].copy_from_slice(buf);
        self.file.write_all_at(&bounce, start)
    }
}

impl Disk for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_range(offset, buf.len() as u64, self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        if self.direct {
            self.read_direct(offset, buf)?;
        } else {
            self.file.read_exact_at(buf, offset)?;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let _active = self.check_write(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.check_sector0(offset, buf)?;
        if self.direct {
            self.write_direct(offset, buf)?;
        } else {
            self.file.write_all_at(buf, offset)?;
        }
        if self.cache.sync_every_write() {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        match self.activation.while_active() {
            Some(_active) => self.sync(),
            None => Ok(()),
        }
    }

    fn inactivate(&self) -> Result<(), DiskError> {
        self.activation.inactivate(|| self.sync())
    }

    fn activate(&self) -> Result<(), OpenError> {
        // Nothing cached: the host's page cache is coherent with the other side's writes.
        self.activation.activate(|| Ok(()))
    }

    fn is_active(&self) -> bool {
        self.activation.is_active()
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        let active = self.check_write(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // A punched hole reads as zeros too, and frees the space.
        let mode = if unmap && self.discard {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        };
        if !self.fallocate(mode, offset, len)? {
            // Its writes take the guard themselves.
            drop(active);
            return crate::write_zero_buffers(self, offset, len);
        }
        if self.cache.sync_every_write() {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let _active = self.check_write(offset, len)?;
        if self.discard && len > 0 {
            // Advisory: a file system without hole punching keeps the data, which is allowed.
            self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)?;
        }
        Ok(())
    }
}

impl Drop for RawDisk {
    fn drop(&mut self) {
        // Like QEMU closing an image: what the guest wrote is on disk once ferrite is gone.
        let _ = self.flush();
    }
}
