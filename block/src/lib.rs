//! Disk images behind the emulated storage devices (IDE, ATAPI, later virtio-blk).
//!
//! A device sees a [`Disk`]: positional, synchronous reads and writes of bytes, a flush that
//! reaches stable storage, and the size. Devices never call it on a vCPU thread: they hand
//! the work to an [`IoThread`] and complete the guest's command when the job has run, so a
//! slow host disk stalls only that device's queue, never the CPU.

mod io_thread;
mod mem_disk;

pub use io_thread::IoThread;
pub use mem_disk::MemDisk;

/// What can go wrong with a disk access at run time. (Opening images has its own errors.)
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The request reaches past the end of the disk.
    #[error("access at {offset:#x}+{len:#x} is beyond the end of the disk ({size:#x} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// A write to a read-only disk.
    #[error("the disk is read-only")]
    ReadOnly,
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
    fn flush(&self) -> Result<(), DiskError>;
}

/// Checks that `offset..offset+len` lies within a disk of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), DiskError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfRange { offset, len, size }),
    }
}
