//! Guest RAM and ROM: anonymous host mappings (memmap2), reserved lazily so `-m 4096` costs
//! only the pages the guest touches. RAM below 4 GiB stops at the PCI hole; the rest of RAM is
//! mapped from 4 GiB up.

use memmap2::MmapMut;

const FOUR_GIB: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot reserve {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("guest-physical range {addr:#x}+{len:#x} is not RAM")]
    NotRam { addr: u64, len: u64 },
}

/// A read-only region (firmware image) at a guest-physical address.
struct Rom {
    base: u64,
    map: MmapMut,
}

pub struct GuestMemory {
    ram: MmapMut,
    below_4g: u64,
    above_4g: u64,
    roms: Vec<Rom>,
}

impl GuestMemory {
    /// `below_4g` bytes at 0 and `above_4g` bytes at 4 GiB, both multiples of 4 KiB.
    pub fn new(below_4g: u64, above_4g: u64) -> Result<Self, MemoryError> {
        let size = below_4g + above_4g;
        // No swap reservation: pages cost memory only when the guest touches them.
        let ram = memmap2::MmapOptions::new()
            .len(size as usize)
            .no_reserve_swap()
            .map_anon()
            .map_err(|source| MemoryError::Map { size, source })?;
        Ok(GuestMemory { ram, below_4g, above_4g, roms: Vec::new() })
    }

    pub fn ram_size(&self) -> u64 {
        self.below_4g + self.above_4g
    }
    pub fn below_4g(&self) -> u64 {
        self.below_4g
    }
    pub fn above_4g(&self) -> u64 {
        self.above_4g
    }

    /// Maps a read-only copy of `image` at `base` (firmware ROM). Later mappings win where they
    /// overlap RAM; ROM never overlaps ROM.
    pub fn add_rom(&mut self, base: u64, image: &[u8]) -> Result<(), MemoryError> {
        let len = image.len().div_ceil(4096) * 4096;
        let mut map = memmap2::MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|source| MemoryError::Map { size: len as u64, source })?;
        map[..image.len()].copy_from_slice(image);
        self.roms.push(Rom { base, map });
        Ok(())
    }

    /// Offset into the RAM mapping of a guest-physical address, if it is RAM.
    #[inline]
    fn ram_offset(&self, gpa: u64) -> Option<usize> {
        if gpa < self.below_4g {
            Some(gpa as usize)
        } else if gpa >= FOUR_GIB && gpa - FOUR_GIB < self.above_4g {
            Some((self.below_4g + gpa - FOUR_GIB) as usize)
        } else {
            None
        }
    }

    /// Host address of the 4 KiB page holding `gpa`: RAM (writable) or ROM (read-only).
    pub fn page(&mut self, gpa: u64) -> Option<(*mut u8, bool)> {
        let page = gpa & !0xfff;
        for rom in &mut self.roms {
            if page >= rom.base && page - rom.base < rom.map.len() as u64 {
                let off = (page - rom.base) as usize;
                // SAFETY: `off` is a page offset inside the ROM mapping.
                return Some((unsafe { rom.map.as_mut_ptr().add(off) }, false));
            }
        }
        let off = self.ram_offset(page)?;
        // SAFETY: `off` is the page's offset inside the RAM mapping (checked by ram_offset).
        Some((unsafe { self.ram.as_mut_ptr().add(off) }, true))
    }

    /// Copies `data` into RAM at `gpa` (loaders, DMA).
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let err = MemoryError::NotRam { addr: gpa, len: data.len() as u64 };
        let end = gpa.checked_add(data.len() as u64).ok_or(MemoryError::NotRam { addr: gpa, len: data.len() as u64 })?;
        // RAM is contiguous within each of the two windows; a range must not straddle them.
        let start = self.ram_offset(gpa).ok_or(MemoryError::NotRam { addr: gpa, len: data.len() as u64 })?;
        if !data.is_empty() && self.ram_offset(end - 1).map(|o| o + 1 - start) != Some(data.len()) {
            return Err(err);
        }
        self.ram[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Copies RAM at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let err = MemoryError::NotRam { addr: gpa, len: buf.len() as u64 };
        let end = gpa.checked_add(buf.len() as u64).ok_or(MemoryError::NotRam { addr: gpa, len: buf.len() as u64 })?;
        let start = self.ram_offset(gpa).ok_or(MemoryError::NotRam { addr: gpa, len: buf.len() as u64 })?;
        if !buf.is_empty() && self.ram_offset(end - 1).map(|o| o + 1 - start) != Some(buf.len()) {
            return Err(err);
        }
        buf.copy_from_slice(&self.ram[start..start + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_windows_and_rom() {
        let mut m = GuestMemory::new(0x10_0000, 0x2000).unwrap();
        m.write(0x1000, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(m.page(0x10_0000).is_none());
        assert!(m.page(FOUR_GIB + 0x1000).is_some());
        assert!(m.write(0x0f_fffe, b"abcd").is_err());
        m.add_rom(0xfffe_0000, &[0xea; 0x20000]).unwrap();
        let (p, writable) = m.page(0xffff_fff0).unwrap();
        assert!(!writable);
        // SAFETY: p points at a ROM page of 4096 bytes.
        assert_eq!(unsafe { *p.add(0xff0) }, 0xea);
    }

    #[test]
    fn large_memory_is_lazy() {
        // 64 GiB reserved without touching it must succeed on a 24 GiB machine.
        let m = GuestMemory::new(3 << 30, 61 << 30).unwrap();
        assert_eq!(m.ram_size(), 64 << 30);
    }
}
