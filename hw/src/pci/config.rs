//! A type 0 configuration header with write masks, for devices to embed (PCI Local Bus
//! Specification 3.0, chapter 6 "Configuration Space").
//!
//! Software-visible behaviour comes from two per-byte masks: `wmask` (bits the guest can
//! write) and `w1c` (bits a guest write of 1 clears). BAR sizing (PCI 3.0, 6.2.5.1) falls out
//! of the masks: only the address bits above the BAR's size are writable, so writing all
//! ones reads back `!(size - 1)` plus the read-only type bits.

use super::{BarKind, BarRegion, PciError};

/// Vendor ID, 16 bits (PCI 3.0, 6.2.1).
pub const PCI_VENDOR_ID: usize = 0x00;
/// Device ID, 16 bits.
pub const PCI_DEVICE_ID: usize = 0x02;
/// Command register, 16 bits (PCI 3.0, 6.2.2).
pub const PCI_COMMAND: usize = 0x04;
/// Status register, 16 bits (PCI 3.0, 6.2.3).
pub const PCI_STATUS: usize = 0x06;
/// Revision ID.
pub const PCI_REVISION_ID: usize = 0x08;
/// Class code: programming interface (0x09), subclass (0x0A), base class (0x0B).
pub const PCI_CLASS_PROG: usize = 0x09;
/// Cache line size.
pub const PCI_CACHE_LINE_SIZE: usize = 0x0C;
/// Latency timer.
pub const PCI_LATENCY_TIMER: usize = 0x0D;
/// Header type; bit 7 = multi-function device.
pub const PCI_HEADER_TYPE: usize = 0x0E;
/// Header type bit 7: the device has more than one function.
pub const PCI_HEADER_MULTI_FUNCTION: u8 = 0x80;
/// First base address register; BAR n at 0x10 + 4n (PCI 3.0, 6.2.5.1).
pub const PCI_BAR0: usize = 0x10;
/// Subsystem vendor ID.
pub const PCI_SUBSYSTEM_VENDOR_ID: usize = 0x2C;
/// Subsystem ID.
pub const PCI_SUBSYSTEM_ID: usize = 0x2E;
/// Expansion ROM base address (PCI 3.0, 6.2.5.2).
pub const PCI_ROM_ADDRESS: usize = 0x30;
/// Capabilities pointer (PCI 3.0, 6.7).
pub const PCI_CAPABILITY_LIST: usize = 0x34;
/// Interrupt line (written by firmware, read by drivers; no hardware effect).
pub const PCI_INTERRUPT_LINE: usize = 0x3C;
/// Interrupt pin: 0 none, 1-4 INTA#-INTD#.
pub const PCI_INTERRUPT_PIN: usize = 0x3D;

/// Command bit 0: respond to I/O space accesses.
pub const PCI_COMMAND_IO: u16 = 1 << 0;
/// Command bit 1: respond to memory space accesses.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command bit 2: bus master (DMA) enable.
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Command bit 10: INTx emulation disable.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Command bits a generic function implements (I/O, memory, master, MWI, parity, SERR,
/// INTx disable).
pub const PCI_COMMAND_WRITABLE: u16 = 0x0557;
/// Status bit 3: INTx asserted (read-only).
pub const PCI_STATUS_INTERRUPT: u16 = 1 << 3;
/// Status bit 4: capabilities list present (read-only).
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Status error bits cleared by writing 1 (bits 8, 11-15).
pub const PCI_STATUS_W1C: u16 = 0xF900;

/// BAR bit 0: I/O space indicator.
pub const PCI_BAR_IO: u32 = 1;
/// Memory BAR bits 2:1 = 0b10: 64-bit.
pub const PCI_BAR_MEM64: u32 = 0b100;
/// Memory BAR bit 3: prefetchable.
pub const PCI_BAR_PREFETCH: u32 = 0b1000;
/// Expansion ROM BAR bit 0: decode enable.
pub const PCI_ROM_ENABLE: u32 = 1;

/// Index of the expansion ROM in [`BarRegion::index`] and `PciDevice::bar`.
pub const PCI_ROM_SLOT: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BarDef {
    pub(super) kind: BarKind,
    pub(super) size: u64,
}

/// 256 bytes of configuration space plus the masks that define guest-visible behaviour.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    pub(super) data: [u8; 256],
    wmask: [u8; 256],
    w1c: [u8; 256],
    pub(super) bars: [Option<BarDef>; 6],
    rom_size: u32,
    /// Power-on contents, restored by [`ConfigSpace::reset`].
    reset_data: Option<Box<[u8; 256]>>,
    /// The MSI capability, if declared (see `msi.rs`).
    pub(super) msi: Option<super::msi::MsiCap>,
    /// Offset of the MSI-X capability, if declared.
    pub(super) msix_cap: Option<u8>,
    /// The INTx level last driven onto the line (see [`ConfigSpace::set_intx`]).
    pub(super) intx_out: bool,
}

impl ConfigSpace {
    /// A type 0 header: IDs, class code (`class` = base << 16 | sub << 8 | prog-if),
    /// revision; command, status errors, cache line size, latency timer and interrupt line
    /// writable.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = Self {
            data: [0; 256],
            wmask: [0; 256],
            w1c: [0; 256],
            bars: [None; 6],
            rom_size: 0,
            reset_data: None,
            msi: None,
            msix_cap: None,
            intx_out: false,
        };
        c.set_u16(PCI_VENDOR_ID, vendor);
        c.set_u16(PCI_DEVICE_ID, device);
        c.set_u8(PCI_REVISION_ID, revision);
        c.set_u8(PCI_CLASS_PROG, class as u8);
        c.set_u16(PCI_CLASS_PROG + 1, (class >> 8) as u16);
        c.set_writable(PCI_COMMAND, &PCI_COMMAND_WRITABLE.to_le_bytes());
        c.set_w1c(PCI_STATUS, &PCI_STATUS_W1C.to_le_bytes());
        c.set_writable(PCI_CACHE_LINE_SIZE, &[0xFF, 0xFF]);
        c.set_writable(PCI_INTERRUPT_LINE, &[0xFF]);
        c
    }

    /// Marks bits at `offset..offset+mask.len()` guest-writable.
    pub fn set_writable(&mut self, offset: usize, mask: &[u8]) {
        for (i, m) in mask.iter().enumerate() {
            if let Some(w) = self.wmask.get_mut(offset + i) {
                *w = *m;
            }
        }
    }

    /// Marks bits at `offset..` write-1-to-clear.
    pub fn set_w1c(&mut self, offset: usize, mask: &[u8]) {
        for (i, m) in mask.iter().enumerate() {
            if let Some(w) = self.w1c.get_mut(offset + i) {
                *w = *m;
            }
        }
    }

    /// Sets the header type byte (bit 7: multi-function).
    pub fn set_header_type(&mut self, header_type: u8) {
        self.set_u8(PCI_HEADER_TYPE, header_type);
    }

    /// Sets the subsystem vendor and device IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(PCI_SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(PCI_SUBSYSTEM_ID, id);
    }

    /// Sets the interrupt pin (1 = INTA# .. 4 = INTD#, 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(PCI_INTERRUPT_PIN, pin.min(4));
    }

    /// Reflects the device's INTx level in status bit 3 (without driving any line; see
    /// [`ConfigSpace::set_intx`] for that).
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let s = self.u16(PCI_STATUS) & !PCI_STATUS_INTERRUPT;
        self.set_u16(
            PCI_STATUS,
            s | if asserted { PCI_STATUS_INTERRUPT } else { 0 },
        );
    }

    /// Declares BAR `index` of `kind` and `size` bytes (a power of two; at least 16 for
    /// memory, 4 for I/O). A 64-bit BAR also takes `index + 1`.
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) -> Result<(), PciError> {
        let wide = matches!(kind, BarKind::Mem64 { .. });
        let min = if kind == BarKind::Io { 4 } else { 16 };
        let max = match kind {
            BarKind::Io => 1 << 16,
            BarKind::Mem32 { .. } => 1 << 31,
            BarKind::Mem64 { .. } => 1 << 63,
        };
        if index >= 6 || (wide && index >= 5) || !size.is_power_of_two() || size < min || size > max
        {
            return Err(PciError::InvalidBar { index, size });
        }
        let (flags, low_mask) = match kind {
            BarKind::Io => (PCI_BAR_IO, 0xFFFF_FFFC),
            BarKind::Mem32 { prefetchable } => (prefetch_bit(prefetchable), 0xFFFF_FFF0),
            BarKind::Mem64 { prefetchable } => {
                (PCI_BAR_MEM64 | prefetch_bit(prefetchable), 0xFFFF_FFF0)
            }
        };
        let addr_mask = !(size - 1);
        let off = PCI_BAR0 + 4 * index;
        self.set_u32(off, flags);
        self.set_writable(off, &((addr_mask as u32) & low_mask).to_le_bytes());
        if wide {
            self.set_u32(off + 4, 0);
            self.set_writable(off + 4, &((addr_mask >> 32) as u32).to_le_bytes());
            self.bars[index + 1] = None;
        }
        self.bars[index] = Some(BarDef { kind, size });
        Ok(())
    }

    /// Declares an expansion ROM of `size` bytes (power of two, at least 2 KiB).
    pub fn set_rom(&mut self, size: u32) -> Result<(), PciError> {
        if !size.is_power_of_two() || size < 0x800 {
            return Err(PciError::InvalidBar {
                index: PCI_ROM_SLOT,
                size: u64::from(size),
            });
        }
        self.rom_size = size;
        self.set_writable(
            PCI_ROM_ADDRESS,
            &((!(size - 1) & 0xFFFF_F800) | PCI_ROM_ENABLE).to_le_bytes(),
        );
        Ok(())
    }

    /// Links a capability with ID `id` at `offset` (>= 0x40, dword aligned) into the
    /// capability list; the device fills in the body after the two header bytes.
    pub fn add_capability(&mut self, offset: u8, id: u8) -> Result<(), PciError> {
        if offset < 0x40 || offset & 3 != 0 || offset > 0xFC {
            return Err(PciError::InvalidCapability { offset });
        }
        let next = self.u8(PCI_CAPABILITY_LIST);
        self.set_u8(usize::from(offset), id);
        self.set_u8(usize::from(offset) + 1, next);
        self.set_u8(PCI_CAPABILITY_LIST, offset);
        let s = self.u16(PCI_STATUS);
        self.set_u16(PCI_STATUS, s | PCI_STATUS_CAP_LIST);
        Ok(())
    }

    /// Records the current contents as the power-on state for [`Self::reset`]. Call once
    /// the device has finished building its header.
    pub fn freeze_reset_state(&mut self) {
        self.reset_data = Some(Box::new(self.data));
    }

    /// Restores the contents saved by [`Self::freeze_reset_state`].
    pub fn reset(&mut self) {
        if let Some(d) = &self.reset_data {
            self.data = **d;
        }
    }

    /// Guest read of `size` bytes (1, 2, 4) at `offset`; bytes past 0xFF read as 0xFF.
    pub fn read(&self, offset: u8, size: u8) -> u32 {
        let mut v = 0u32;
        for i in 0..usize::from(size.min(4)) {
            let b = self
                .data
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0xFF);
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    /// Guest write of `size` bytes at `offset`, through the write and W1C masks.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        for i in 0..usize::from(size.min(4)) {
            let o = usize::from(offset) + i;
            if o >= 256 {
                break;
            }
            let b = (value >> (8 * i)) as u8;
            let w = self.wmask[o];
            self.data[o] = (self.data[o] & !w) | (b & w);
            self.data[o] &= !(b & self.w1c[o]);
        }
    }

    pub fn u8(&self, offset: usize) -> u8 {
        self.data.get(offset).copied().unwrap_or(0)
    }

    pub fn u16(&self, offset: usize) -> u16 {
        u16::from(self.u8(offset)) | u16::from(self.u8(offset + 1)) << 8
    }

    pub fn u32(&self, offset: usize) -> u32 {
        u32::from(self.u16(offset)) | u32::from(self.u16(offset + 2)) << 16
    }

    /// Device-side store (ignores the masks).
    pub fn set_u8(&mut self, offset: usize, v: u8) {
        if let Some(b) = self.data.get_mut(offset) {
            *b = v;
        }
    }

    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.set_u8(offset, v as u8);
        self.set_u8(offset + 1, (v >> 8) as u8);
    }

    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.set_u16(offset, v as u16);
        self.set_u16(offset + 2, (v >> 16) as u16);
    }

    /// Command register.
    pub fn command(&self) -> u16 {
        self.u16(PCI_COMMAND)
    }

    /// Whether the function may master the bus (DMA).
    pub fn bus_master(&self) -> bool {
        self.command() & PCI_COMMAND_MASTER != 0
    }

    /// Whether INTx is disabled by the command register.
    pub fn intx_disabled(&self) -> bool {
        self.command() & PCI_COMMAND_INTX_DISABLE != 0
    }

    /// The region BAR `index` (0-5, or [`PCI_ROM_SLOT`]) decodes right now: `None` if not
    /// implemented, its space is disabled in the command register, the ROM enable bit is
    /// clear, or the address is 0 / does not fit its address space (as while sizing).
    pub fn bar_region(&self, index: usize) -> Option<BarRegion> {
        let cmd = self.command();
        if index == PCI_ROM_SLOT {
            let raw = self.u32(PCI_ROM_ADDRESS);
            if self.rom_size == 0 || raw & PCI_ROM_ENABLE == 0 || cmd & PCI_COMMAND_MEMORY == 0 {
                return None;
            }
            let address = u64::from(raw & 0xFFFF_F800);
            let size = u64::from(self.rom_size);
            return usable(address, size, 1 << 32).then_some(BarRegion {
                index,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
                address,
                size,
            });
        }
        let def = (*self.bars.get(index)?)?;
        let off = PCI_BAR0 + 4 * index;
        let (address, limit, enabled) = match def.kind {
            BarKind::Io => (
                u64::from(self.u32(off) & 0xFFFF_FFFC),
                1 << 16,
                cmd & PCI_COMMAND_IO,
            ),
            BarKind::Mem32 { .. } => (
                u64::from(self.u32(off) & 0xFFFF_FFF0),
                1 << 32,
                cmd & PCI_COMMAND_MEMORY,
            ),
            BarKind::Mem64 { .. } => {
                let a = u64::from(self.u32(off) & 0xFFFF_FFF0) | u64::from(self.u32(off + 4)) << 32;
                (a, u64::MAX, cmd & PCI_COMMAND_MEMORY)
            }
        };
        (enabled != 0 && usable(address, def.size, limit)).then_some(BarRegion {
            index,
            kind: def.kind,
            address,
            size: def.size,
        })
    }
}

fn prefetch_bit(prefetchable: bool) -> u32 {
    if prefetchable {
        PCI_BAR_PREFETCH
    } else {
        0
    }
}

/// A BAR at `address` is decoded if non-zero and its last byte lies below `limit - 1`
/// (an all-ones pattern left by sizing is not a placement).
fn usable(address: u64, size: u64, limit: u64) -> bool {
    address != 0
        && address
            .checked_add(size - 1)
            .is_some_and(|last| last < limit - 1 && last != u64::MAX)
}
