//! Disk images behind the emulated storage devices (IDE, ATAPI, later virtio-blk).
//!
//! A device sees a [`Disk`]: positional, synchronous reads and writes of bytes, a flush that
//! reaches stable storage, and the size. Devices never call it on a vCPU thread: they hand
//! the work to an [`IoThread`] and complete the guest's command when the job has run, so a
//! slow host disk stalls only that device's queue, never the CPU.
//!
//! [`open_image`] turns a drive's [`DriveOptions`] (QEMU's `-drive` options) into a `Disk`:
//! - format: given, or probed (qcow2 magic → qcow2, anything else → raw, with QEMU's rule
//!   that a guest may not write the qcow2 magic into sector 0 of a probed raw image);
//! - raw files with positional I/O, qcow2 (with backing chains) through the `imago` crate;
//! - [`CacheMode`]s as QEMU defines them; snapshot=on with a throw-away overlay;
//! - QEMU-compatible image locking, so QEMU, qemu-img and ferrite exclude each other, and
//!   QEMU's handover of images across a migration ([`open_image_inactive`],
//!   [`Disk::inactivate`], [`Disk::activate`]);
//! - every failure is an [`OpenError`] naming the file, and leaves the files unchanged.

mod activation;
mod aligned;
mod backing_gate;
mod error;
mod host_file;
mod imago_disk;
mod io_thread;
mod lock;
mod mem_disk;
mod open;
mod options;
mod qcow2;
mod qcow2_header;
mod raw;
mod snapshot;

pub use error::OpenError;
pub use io_thread::IoThread;
pub use mem_disk::MemDisk;
pub use open::{open_image, open_image_inactive, OpenedImage};
pub use options::{CacheMode, DriveOptions, ImageFormat, OptionError};

/// The first four bytes of every qcow2 image.
pub(crate) const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// What can go wrong with a disk access at run time. (Opening images has its own errors.)
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The request reaches past the end of the disk.
    #[error("access at {offset:#x}+{len:#x} is beyond the end of the disk ({size:#x} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// A write to a read-only disk.
    #[error("the disk is read-only")]
    ReadOnly,
    /// A write that would make a raw image whose format was probed look like a qcow2 image
    /// (QEMU refuses such writes too: the next probe would trust a guest-written header).
    #[error("write to sector 0 refused: it would turn the probed raw image into a qcow2 image (give format=raw to allow it)")]
    ProbedFormatChange,
    /// A write to an inactive image (handed over to, or not yet taken from, another process).
    #[error("the image is inactive: another process (a migration's other side) may be using it")]
    Inactive,
    /// The host failed the I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A disk as a device model uses it. Implementations are shared between threads and
/// serialise internally where their format needs it.
pub trait Disk: Send + Sync {
    /// Size in bytes (a multiple of 512 for images ferrite opens).
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes at `offset`; the range must lie within the disk.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `buf` at `offset`; the range must lie within the disk.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError>;
    /// Makes every completed write durable (the guest's FLUSH CACHE), as the cache mode says.
    /// Nothing to do on an inactive image.
    fn flush(&self) -> Result<(), DiskError>;

    /// Hands the image over to another process (the source of a migration, once it is
    /// complete): writes out what the image caches and makes it durable, then keeps only an
    /// inactive image's lock (shared consistent read), so the other side can take it. Writes
    /// are refused until [`Disk::activate`]. Disks without a file have nothing to hand over.
    fn inactivate(&self) -> Result<(), DiskError> {
        Ok(())
    }

    /// Takes the image (back): its locks as when it was opened, with the same checks (an
    /// [`OpenError::Locked`] names the conflict), and what it caches re-read from the file.
    fn activate(&self) -> Result<(), OpenError> {
        Ok(())
    }

    /// Whether the image is active (see [`Disk::inactivate`]).
    fn is_active(&self) -> bool {
        true
    }

    /// Makes `offset..offset+len` read as zeros (virtio-blk WRITE ZEROES). `unmap`: the guest
    /// allows the space to be deallocated, which the image does only if the drive was opened
    /// with `discard=unmap`. The default writes zero-filled buffers.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        let _ = unmap;
        write_zero_buffers(self, offset, len)
    }

    /// The guest no longer needs `offset..offset+len` (TRIM, virtio-blk DISCARD): the image
    /// deallocates it if the drive was opened with `discard=unmap` and does nothing otherwise
    /// (QEMU's default, `discard=ignore`). What the range reads afterwards is unspecified.
    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        if self.read_only() {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, len, self.size())
    }
}

/// Chunk size of [`write_zero_buffers`].
const ZERO_CHUNK: u64 = 1 << 20;

/// Zeroes a range with ordinary writes (formats and hosts without a cheaper way).
pub(crate) fn write_zero_buffers<D: Disk + ?Sized>(disk: &D, offset: u64, len: u64) -> Result<(), DiskError> {
    if disk.read_only() {
        return Err(DiskError::ReadOnly);
    }
    check_range(offset, len, disk.size())?;
    let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK);
        disk.write_at(offset + done, &zeros[..n as usize])?;
        done += n;
    }
    Ok(())
}

/// Checks that `offset..offset+len` lies within a disk of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), DiskError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfRange { offset, len, size }),
    }
}
