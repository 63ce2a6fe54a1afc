//! Guest-physical memory as the firmware sees it.
//!
//! The machine implements [`GuestMemory`] over its RAM mapping; the loaders in this crate only ever
//! go through this trait, so they never touch host pointers. [`VecMemory`] is a plain in-process
//! implementation (two zero-filled vectors laid out like the PC board's RAM) used by the tests and
//! usable by anyone who wants to inspect what a loader produced.

use crate::e820::{MemoryLayout, HIGH_RAM_START};
use thiserror::Error;

/// An access to guest-physical memory that does not fall entirely inside RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("guest-physical range {addr:#x}..{end:#x} is not backed by RAM", end = addr.saturating_add(*len))]
pub struct GuestMemoryError {
    /// First guest-physical address of the failed access.
    pub addr: u64,
    /// Length of the failed access in bytes.
    pub len: u64,
}

/// Guest-physical RAM, implemented by the machine over its memory mapping.
///
/// Addresses are guest-physical. RAM below 4 GiB is `[0, layout.below_4g)` and the rest is
/// `[4 GiB, 4 GiB + layout.above_4g)`, where `layout = MemoryLayout::new(ram_size())`. An access
/// that is not entirely inside one RAM region must fail with [`GuestMemoryError`] (never panic).
/// For direct kernel boot the firmware also writes ACPI tables at 0xE0000–0xEFFFF, so that range
/// must be writable RAM then (it is below `below_4g` like the rest of low memory).
pub trait GuestMemory {
    /// Total RAM in bytes (below and above 4 GiB together).
    fn ram_size(&self) -> u64;

    /// Copy `data` into guest memory at guest-physical `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError>;

    /// Fill `buf` from guest memory at guest-physical `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;

    /// The RAM layout (split around the PCI hole) derived from [`GuestMemory::ram_size`].
    fn layout(&self) -> MemoryLayout {
        MemoryLayout::new(self.ram_size())
    }

    /// Fill `len` bytes at `addr` with zeros.
    fn zero(&mut self, addr: u64, len: u64) -> Result<(), GuestMemoryError> {
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK.len() as u64);
            // n <= 4096, so the cast and the slice are in range.
            self.write(addr.wrapping_add(done), &CHUNK[..n as usize])
                .map_err(|_| GuestMemoryError { addr, len })?;
            done += n;
        }
        Ok(())
    }
}

/// RAM held in two host vectors, laid out like the PC board (see [`MemoryLayout`]).
///
/// The vectors are allocated zero-filled, which the host allocator maps lazily, so even a
/// multi-GiB `VecMemory` costs only the pages actually written.
#[derive(Debug, Clone)]
pub struct VecMemory {
    layout: MemoryLayout,
    low: Vec<u8>,
    high: Vec<u8>,
}

impl VecMemory {
    /// RAM of `ram_bytes` bytes, split like the machine splits it.
    pub fn new(ram_bytes: u64) -> Self {
        let layout = MemoryLayout::new(ram_bytes);
        VecMemory {
            layout,
            low: vec![0; layout.below_4g as usize],
            high: vec![0; layout.above_4g as usize],
        }
    }

    /// The region and offset backing `[addr, addr + len)`, if it is all RAM.
    fn locate(&self, addr: u64, len: usize) -> Result<(bool, usize), GuestMemoryError> {
        let err = GuestMemoryError { addr, len: len as u64 };
        let end = addr.checked_add(len as u64).ok_or(err)?;
        if end <= self.layout.below_4g {
            return Ok((false, addr as usize));
        }
        if addr >= HIGH_RAM_START && end - HIGH_RAM_START <= self.layout.above_4g {
            return Ok((true, (addr - HIGH_RAM_START) as usize));
        }
        Err(err)
    }

    /// Borrow `len` bytes at `addr` (test convenience); `None` outside RAM.
    pub fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (high, off) = self.locate(addr, len).ok()?;
        let region = if high { &self.high } else { &self.low };
        region.get(off..off + len)
    }
}

impl GuestMemory for VecMemory {
    fn ram_size(&self) -> u64 {
        self.layout.ram_size
    }

    fn layout(&self) -> MemoryLayout {
        self.layout
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let (high, off) = self.locate(addr, data.len())?;
        let region = if high { &mut self.high } else { &mut self.low };
        region[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let (high, off) = self.locate(addr, buf.len())?;
        let region = if high { &self.high } else { &self.low };
        buf.copy_from_slice(&region[off..off + buf.len()]);
        Ok(())
    }
}

/// Little-endian field helpers for building and parsing firmware structures in byte buffers.
/// Every accessor is bounds-checked: out-of-range reads give `None`, out-of-range writes are
/// ignored (the builders size their buffers up front, and the tests check the results).
pub(crate) mod le {
    pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
        b.get(off).copied()
    }
    pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
    }
    pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
    }
    pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
    }
    pub fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
        if let Some(dst) = off
            .checked_add(bytes.len())
            .and_then(|end| b.get_mut(off..end))
        {
            dst.copy_from_slice(bytes);
        }
    }
    pub fn put_u8(b: &mut [u8], off: usize, v: u8) {
        put(b, off, &[v]);
    }
    pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
        put(b, off, &v.to_le_bytes());
    }
    pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
        put(b, off, &v.to_le_bytes());
    }
    pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
        put(b, off, &v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_memory_round_trips_and_rejects_holes() {
        let mut m = VecMemory::new(16 << 20);
        m.write(0x1000, b"hello").unwrap();
        let mut buf = [0u8; 5];
        m.read(0x1000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(m.write((16 << 20) - 2, b"abc").is_err());
        assert!(m.read(u64::MAX - 1, &mut buf).is_err());
        let err = m.write(HIGH_RAM_START, b"x").unwrap_err();
        assert_eq!(err.addr, HIGH_RAM_START);
        assert!(err.to_string().contains("not backed by RAM"));
    }

    #[test]
    fn vec_memory_above_4g() {
        let mut m = VecMemory::new(0xe000_0000 + (1 << 20));
        assert_eq!(m.layout().below_4g, 0xc000_0000);
        m.write(HIGH_RAM_START + 0x10, &[7]).unwrap();
        assert_eq!(m.slice(HIGH_RAM_START + 0x10, 1), Some(&[7u8][..]));
        // The PCI hole is not RAM.
        assert!(m.write(0xd000_0000, &[1]).is_err());
        // Crossing from low RAM into the hole fails.
        assert!(m.write(0xc000_0000 - 1, &[1, 2]).is_err());
    }

    #[test]
    fn zero_fills() {
        let mut m = VecMemory::new(1 << 20);
        m.write(0x100, &[0xff; 10000]).unwrap();
        m.zero(0x200, 9000).unwrap();
        assert!(m.slice(0x200, 9000).unwrap().iter().all(|&b| b == 0));
        assert_eq!(m.slice(0x1ff, 1).unwrap()[0], 0xff);
        assert!(m.zero((1 << 20) - 10, 20).is_err());
    }
}
