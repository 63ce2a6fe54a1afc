//! The PC's legacy BIOS window, 0xC0000-0xFFFFF: thirteen segments whose reads and writes the
//! i440FX's PAM registers send either to DRAM (shadow RAM) or to the PCI bus, where the
//! firmware ROM answers at 0xE0000-0xFFFFF (Intel 82441FX datasheet, 3.2.18).

use std::sync::atomic::{AtomicU8, Ordering};

pub const LEGACY_START: u64 = 0xC_0000;
pub const LEGACY_END: u64 = 0x10_0000;
/// Segment 0 is 0xF0000-0xFFFFF (64 KiB); 1-12 are the 16 KiB segments from 0xC0000 on, in the
/// order of the PAM register nibbles.
pub const LEGACY_SEGMENTS: usize = 13;

/// Where one segment's accesses go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyAttr {
    /// Reads come from DRAM (else from the PCI bus: the ROM, or nothing).
    pub read_ram: bool,
    /// Writes go to DRAM (else to the PCI bus, where the ROM ignores them).
    pub write_ram: bool,
}

impl LegacyAttr {
    pub const RAM: LegacyAttr = LegacyAttr { read_ram: true, write_ram: true };
    pub const PCI: LegacyAttr = LegacyAttr { read_ram: false, write_ram: false };

    fn bits(self) -> u8 {
        self.read_ram as u8 | (self.write_ram as u8) << 1
    }

    fn from_bits(b: u8) -> Self {
        LegacyAttr { read_ram: b & 1 != 0, write_ram: b & 2 != 0 }
    }
}

/// Segment index and its guest-physical range.
pub fn segment_of(gpa: u64) -> Option<usize> {
    match gpa {
        0xF_0000..LEGACY_END => Some(0),
        LEGACY_START..0xF_0000 => Some(1 + ((gpa - LEGACY_START) / 0x4000) as usize),
        _ => None,
    }
}

pub fn segment_range(index: usize) -> (u64, u64) {
    if index == 0 {
        (0xF_0000, 0x1_0000)
    } else {
        (LEGACY_START + (index as u64 - 1) * 0x4000, 0x4000)
    }
}

pub(crate) struct LegacyWindow {
    attrs: [AtomicU8; LEGACY_SEGMENTS],
}

impl LegacyWindow {
    pub fn new(attr: LegacyAttr) -> Self {
        LegacyWindow { attrs: std::array::from_fn(|_| AtomicU8::new(attr.bits())) }
    }

    pub fn get(&self, index: usize) -> LegacyAttr {
        LegacyAttr::from_bits(self.attrs[index].load(Ordering::Acquire))
    }

    /// Sets every segment; returns the ranges whose attributes changed.
    pub fn set(&self, attrs: &[LegacyAttr; LEGACY_SEGMENTS]) -> Vec<(u64, u64)> {
        let mut changed = Vec::new();
        for (i, a) in attrs.iter().enumerate() {
            if self.attrs[i].swap(a.bits(), Ordering::AcqRel) != a.bits() {
                changed.push(segment_range(i));
            }
        }
        changed
    }
}
