//! QEMU's `edu` educational PCI device, following its documented register interface (QEMU
//! `docs/specs/edu.rst`): a small, well-known target for PCI enumeration, BAR mapping, INTx,
//! MSI and DMA tests and for guest driver exercises.
//!
//! PCI: vendor 0x1234, device 0x11e8, BAR0 a 1 MiB 32-bit memory BAR, INTx on pin A, and a
//! single-vector 64-bit MSI capability. BAR0 registers (edu.rst "MMIO area spec"): below 0x80
//! only 4-byte accesses, from 0x80 on 4- or 8-byte accesses; other accesses read all ones and
//! are ignored on write.
//!
//! | offset | register                                                                    |
//! |--------|-----------------------------------------------------------------------------|
//! | 0x00   | identification, RO: 0x010000ed (version 1.0)                                |
//! | 0x04   | liveness: reads the bitwise inversion of the value last written             |
//! | 0x08   | factorial: a write computes the factorial of the value into it              |
//! | 0x20   | status: 0x01 computing (RO), 0x80 raise interrupt 0x001 after a factorial   |
//! | 0x24   | interrupt status, RO                                                        |
//! | 0x60   | interrupt raise, WO: ORed into the interrupt status                         |
//! | 0x64   | interrupt acknowledge, WO: cleared from the interrupt status                |
//! | 0x80   | DMA source address                                                          |
//! | 0x88   | DMA destination address                                                     |
//! | 0x90   | DMA transfer count                                                          |
//! | 0x98   | DMA command: 0x01 start, 0x02 direction (0: RAM to edu, 1: edu to RAM),     |
//! |        | 0x04 raise interrupt 0x100 when done                                        |
//!
//! The 4 KiB DMA buffer is addressed by DMA as 0x40000-0x40FFF (the device side of a
//! transfer); it is also readable and writable through BAR0 at the same offsets, with any
//! access size, which lets a guest check a transfer without a second one.
//!
//! Both the factorial and DMA run synchronously, inside the register write that starts them:
//! the "computing" status bit and the DMA start bit are therefore never seen set, which is
//! what a driver polling them expects to see eventually anyway. A 4-byte access to a 64-bit
//! DMA register at 0x80/0x88/0x90/0x98 sets or reads the whole register (zero-extended); at
//! +4 it reaches the high half.
//!
//! DMA goes through the function's [`PciLink::dma`] and needs Bus Master Enable. A transfer
//! that is refused (bus mastering off, a buffer range outside 0x40000-0x40FFF, RAM addresses
//! outside guest RAM) moves nothing, but still completes: the start bit clears and the
//! interrupt is raised if asked, so a driver never waits forever.
//!
//! Interrupts: the interrupt status is ORed by raises; while MSI is enabled every raise sends
//! the MSI message, otherwise INTx is held asserted (level) while the status is non-zero and
//! deasserted once it is acknowledged to zero.

mod state;
pub use state::{EduState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;

use crate::pci::{BarKind, BarRegion, ConfigSpace, PciDevice, PciLink};

/// PCI vendor ID (edu.rst "PCI specs").
pub const EDU_VENDOR_ID: u16 = 0x1234;
/// PCI device ID.
pub const EDU_DEVICE_ID: u16 = 0x11e8;
/// Class code: base class 0xFF (device does not fit a defined class).
pub const EDU_CLASS: u32 = 0xFF_00_00;
/// Revision ID.
pub const EDU_REVISION: u8 = 0x10;
/// BAR0 size: 1 MiB.
pub const EDU_BAR0_SIZE: u64 = 1 << 20;
/// Offset of the MSI capability in configuration space.
pub const EDU_MSI_CAP: u8 = 0x40;

/// Register offsets in BAR0 (edu.rst "MMIO area spec").
pub const EDU_REG_ID: u64 = 0x00;
pub const EDU_REG_LIVENESS: u64 = 0x04;
pub const EDU_REG_FACTORIAL: u64 = 0x08;
pub const EDU_REG_STATUS: u64 = 0x20;
pub const EDU_REG_IRQ_STATUS: u64 = 0x24;
pub const EDU_REG_IRQ_RAISE: u64 = 0x60;
pub const EDU_REG_IRQ_ACK: u64 = 0x64;
pub const EDU_REG_DMA_SRC: u64 = 0x80;
pub const EDU_REG_DMA_DST: u64 = 0x88;
pub const EDU_REG_DMA_COUNT: u64 = 0x90;
pub const EDU_REG_DMA_CMD: u64 = 0x98;

/// Identification register value: major 1, minor 0, then 0xed.
pub const EDU_ID: u32 = 0x0100_00ed;
/// Status: a factorial is being computed (read-only).
pub const EDU_STATUS_COMPUTING: u32 = 0x01;
/// Status: raise an interrupt when the factorial is done.
pub const EDU_STATUS_IRQ_FACT: u32 = 0x80;
/// Interrupt status value raised by a finished factorial.
pub const EDU_IRQ_FACT: u32 = 0x001;
/// Interrupt status value raised by a finished DMA.
pub const EDU_IRQ_DMA: u32 = 0x100;
/// DMA command: start the transfer.
pub const EDU_DMA_START: u64 = 0x01;
/// DMA command: direction, set for edu buffer to RAM.
pub const EDU_DMA_TO_RAM: u64 = 0x02;
/// DMA command: raise [`EDU_IRQ_DMA`] when done.
pub const EDU_DMA_IRQ: u64 = 0x04;
/// Device-side address of the DMA buffer, and its offset in BAR0.
pub const EDU_DMA_BUFFER: u64 = 0x40000;
/// DMA buffer size.
pub const EDU_DMA_BUFFER_SIZE: usize = 4096;

/// The edu function.
pub struct Edu {
    cfg: ConfigSpace,
    link: Option<PciLink>,
    /// Inverted value last written to the liveness register.
    liveness: u32,
    factorial: u32,
    status: u32,
    irq_status: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_count: u64,
    dma_cmd: u64,
    buffer: Box<[u8; EDU_DMA_BUFFER_SIZE]>,
}

impl Default for Edu {
    fn default() -> Self {
        Self::new()
    }
}

/// `n!` modulo 2^32 (the register is 32 bits wide). From 34! on the product holds at least
/// 32 factors of two, so the result is 0: no need to loop up to 4 billion times.
pub fn factorial_u32(n: u32) -> u32 {
    if n >= 34 {
        return 0;
    }
    (1..=n).fold(1u32, |acc, i| acc.wrapping_mul(i))
}

impl Edu {
    pub fn new() -> Self {
        let mut cfg = ConfigSpace::new(EDU_VENDOR_ID, EDU_DEVICE_ID, EDU_CLASS, EDU_REVISION);
        cfg.add_bar(0, BarKind::Mem32 { prefetchable: false }, EDU_BAR0_SIZE)
            .expect("a 1 MiB memory BAR is valid");
        cfg.set_interrupt_pin(1);
        cfg.add_msi_capability(EDU_MSI_CAP, 0, true, false)
            .expect("the MSI capability fits at 0x40");
        cfg.freeze_reset_state();
        Edu {
            cfg,
            link: None,
            liveness: 0,
            factorial: 0,
            status: 0,
            irq_status: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_count: 0,
            dma_cmd: 0,
            buffer: Box::new([0; EDU_DMA_BUFFER_SIZE]),
        }
    }

    /// The configuration header (tests, inspection).
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    /// Current interrupt status register.
    pub fn irq_status(&self) -> u32 {
        self.irq_status
    }

    /// The DMA buffer.
    pub fn buffer(&self) -> &[u8; EDU_DMA_BUFFER_SIZE] {
        &self.buffer
    }

    /// ORs `value` into the interrupt status and signals it: one MSI message when MSI is
    /// enabled, else INTx held while the status is non-zero.
    fn raise(&mut self, value: u32) {
        self.irq_status |= value;
        if self.irq_status == 0 {
            return;
        }
        if self.cfg.msi_enabled() {
            if let Some(link) = &self.link {
                self.cfg.msi_notify(0, &*link.msi);
            }
        }
        self.update_intx();
    }

    fn acknowledge(&mut self, value: u32) {
        self.irq_status &= !value;
        self.update_intx();
    }

    /// Drives INTx from the interrupt status (level), unless MSI is in use.
    fn update_intx(&mut self) {
        let level = self.irq_status != 0 && !self.cfg.msi_enabled();
        match &self.link {
            Some(link) => self.cfg.set_intx(level, &*link.intx),
            None => self.cfg.set_interrupt_status(level),
        }
    }

    fn compute_factorial(&mut self, n: u32) {
        // Synchronous: the "computing" bit would be set and cleared within this call.
        self.factorial = factorial_u32(n);
        if self.status & EDU_STATUS_IRQ_FACT != 0 {
            self.raise(EDU_IRQ_FACT);
        }
    }

    /// The buffer range a transfer of `count` bytes at device address `addr` covers.
    fn buffer_range(addr: u64, count: u64) -> Option<std::ops::Range<usize>> {
        let start = addr.checked_sub(EDU_DMA_BUFFER)?;
        let end = start.checked_add(count)?;
        (end <= EDU_DMA_BUFFER_SIZE as u64).then_some(start as usize..end as usize)
    }

    /// Runs the transfer the command register describes, synchronously; see the module docs
    /// for what happens when it cannot be done.
    fn run_dma(&mut self) {
        let to_ram = self.dma_cmd & EDU_DMA_TO_RAM != 0;
        let (edu_addr, ram_addr) = if to_ram { (self.dma_src, self.dma_dst) } else { (self.dma_dst, self.dma_src) };
        if let (Some(range), Some(link), true) =
            (Self::buffer_range(edu_addr, self.dma_count), &self.link, self.cfg.bus_master())
        {
            // A failed DMA leaves RAM or the buffer untouched (`Dma` checks the whole range
            // before copying) and has no error register to report to.
            let _ = if to_ram {
                link.dma.write(ram_addr, &self.buffer[range])
            } else {
                link.dma.read(ram_addr, &mut self.buffer[range])
            };
        }
        self.dma_cmd &= !EDU_DMA_START;
        if self.dma_cmd & EDU_DMA_IRQ != 0 {
            self.raise(EDU_IRQ_DMA);
        }
    }

    /// A 64-bit DMA register at `base` accessed at `offset` (base or base + 4) with `size`.
    fn dma_reg_read(reg: u64, base: u64, offset: u64, size: usize) -> Option<u64> {
        match (offset - base, size) {
            (0, 8) => Some(reg),
            (0, 4) => Some(reg & 0xFFFF_FFFF),
            (4, 4) => Some(reg >> 32),
            _ => None,
        }
    }

    fn dma_reg_write(reg: &mut u64, base: u64, offset: u64, size: usize, value: u64) -> bool {
        match (offset - base, size) {
            (0, 8) => *reg = value,
            (0, 4) => *reg = value & 0xFFFF_FFFF,
            (4, 4) => *reg = (*reg & 0xFFFF_FFFF) | value << 32,
            _ => return false,
        }
        true
    }

    /// Register read; `None` for offsets and sizes that are not a register access.
    fn reg_read(&self, offset: u64, size: usize) -> Option<u64> {
        if offset < 0x80 {
            if size != 4 {
                return None;
            }
            let v = match offset {
                EDU_REG_ID => EDU_ID,
                EDU_REG_LIVENESS => self.liveness,
                EDU_REG_FACTORIAL => self.factorial,
                EDU_REG_STATUS => self.status,
                EDU_REG_IRQ_STATUS => self.irq_status,
                _ => return None,
            };
            return Some(u64::from(v));
        }
        let base = offset & !7;
        let reg = match base {
            EDU_REG_DMA_SRC => self.dma_src,
            EDU_REG_DMA_DST => self.dma_dst,
            EDU_REG_DMA_COUNT => self.dma_count,
            EDU_REG_DMA_CMD => self.dma_cmd,
            _ => return None,
        };
        Self::dma_reg_read(reg, base, offset, size)
    }

    fn reg_write(&mut self, offset: u64, size: usize, value: u64) {
        if offset < 0x80 {
            if size != 4 {
                return;
            }
            let v = value as u32;
            match offset {
                EDU_REG_LIVENESS => self.liveness = !v,
                EDU_REG_FACTORIAL if self.status & EDU_STATUS_COMPUTING == 0 => self.compute_factorial(v),
                EDU_REG_STATUS => self.status = (self.status & EDU_STATUS_COMPUTING) | (v & EDU_STATUS_IRQ_FACT),
                EDU_REG_IRQ_RAISE => self.raise(v),
                EDU_REG_IRQ_ACK => self.acknowledge(v),
                _ => {}
            }
            return;
        }
        let base = offset & !7;
        let written = match base {
            EDU_REG_DMA_SRC => Self::dma_reg_write(&mut self.dma_src, base, offset, size, value),
            EDU_REG_DMA_DST => Self::dma_reg_write(&mut self.dma_dst, base, offset, size, value),
            EDU_REG_DMA_COUNT => Self::dma_reg_write(&mut self.dma_count, base, offset, size, value),
            EDU_REG_DMA_CMD => Self::dma_reg_write(&mut self.dma_cmd, base, offset, size, value),
            _ => false,
        };
        if written && base == EDU_REG_DMA_CMD && self.dma_cmd & EDU_DMA_START != 0 {
            self.run_dma();
        }
    }
}

impl PciDevice for Edu {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        // The command register (Interrupt Disable) or MSI Enable may have changed.
        self.update_intx();
        if let Some(link) = &self.link {
            self.cfg.msi_flush_pending(&*link.msi);
        }
    }

    fn bar(&self, index: usize) -> Option<BarRegion> {
        self.cfg.bar_region(index)
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if index != 0 {
            return;
        }
        if let Some(range) = Self::buffer_range(offset, data.len() as u64) {
            data.copy_from_slice(&self.buffer[range]);
        } else if let Some(v) = self.reg_read(offset, data.len()) {
            data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index != 0 {
            return;
        }
        if let Some(range) = Self::buffer_range(offset, data.len() as u64) {
            self.buffer[range].copy_from_slice(data);
        } else if matches!(data.len(), 4 | 8) {
            let mut v = [0u8; 8];
            v[..data.len()].copy_from_slice(data);
            self.reg_write(offset, data.len(), u64::from_le_bytes(v));
        }
    }

    fn attach(&mut self, link: PciLink) {
        self.link = Some(link);
        self.update_intx();
    }

    fn reset(&mut self) {
        self.cfg.reset();
        self.liveness = 0;
        self.factorial = 0;
        self.status = 0;
        self.irq_status = 0;
        self.dma_src = 0;
        self.dma_dst = 0;
        self.dma_count = 0;
        self.dma_cmd = 0;
        self.buffer.fill(0);
        self.update_intx();
    }
}
