//! Heap buffers aligned for O_DIRECT, which wants buffer address, file offset and length all
//! multiples of the device's logical block size. 4096 covers every common host disk.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment used for O_DIRECT buffers, offsets and lengths.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// A zeroed byte buffer whose start is `DIRECT_ALIGN`-aligned.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8]; mutation needs &mut self.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (`len` > 0).
    pub(crate) fn new(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (checked in `layout`).
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        assert!(len > 0, "empty aligned buffer");
        Layout::from_size_align(len, DIRECT_ALIGN).expect("aligned buffer too large")
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

/// `x` rounded down to a multiple of `DIRECT_ALIGN`.
pub(crate) fn align_down(x: u64) -> u64 {
    x & !(DIRECT_ALIGN as u64 - 1)
}

/// `x` rounded up to a multiple of `DIRECT_ALIGN`.
pub(crate) fn align_up(x: u64) -> u64 {
    align_down(x + DIRECT_ALIGN as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut b = AlignedBuf::new(10000);
        assert_eq!(b.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[9999] = 1;
        assert_eq!(b.len(), 10000);
        assert_eq!((align_down(4097), align_up(4097), align_up(4096)), (4096, 8192, 4096));
    }
}
