//! A flat-memory bus for tests and tools: RAM from address 0, port I/O recorded, no devices.

use crate::bus::{CpuBus, PhysPage};
use crate::Attention;
use std::sync::atomic::Ordering;

pub struct FlatBus {
    pub ram: Vec<u8>,
    /// Every port write, in order: (port, size, value).
    pub io_writes: Vec<(u16, u8, u32)>,
    /// Value returned by port reads.
    pub io_read_value: u32,
    /// Guest time returned by `now_ns`.
    pub now: u64,
}

impl FlatBus {
    /// `size` bytes of RAM, rounded up to whole pages.
    pub fn new(size: usize) -> Self {
        FlatBus { ram: vec![0; size.div_ceil(4096) * 4096], io_writes: Vec::new(), io_read_value: !0, now: 0 }
    }

    pub fn load(&mut self, addr: u64, bytes: &[u8]) {
        self.ram[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
    }

    pub fn read_u64(&self, addr: u64) -> u64 {
        u64::from_le_bytes(self.ram[addr as usize..addr as usize + 8].try_into().unwrap())
    }
}

impl CpuBus for FlatBus {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        let page = (paddr & !0xfff) as usize;
        if page + 4096 <= self.ram.len() {
            // SAFETY: in bounds of the Vec, which is never resized after creation.
            PhysPage::Ram(unsafe { self.ram.as_mut_ptr().add(page) })
        } else {
            PhysPage::Mmio
        }
    }
    fn mmio_read(&mut self, _paddr: u64, _size: u8) -> u64 {
        !0
    }
    fn mmio_write(&mut self, _paddr: u64, _size: u8, _value: u64) {}
    fn io_read(&mut self, _port: u16, _size: u8) -> u32 {
        self.io_read_value
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.io_writes.push((port, size, value));
    }
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn intr_in_attention(&self) -> bool {
        // No interrupt controller: a line that never rises.
        true
    }
}

/// A [`FlatBus`] with an INTR line, the CPU's `Attention::intr` (`Cpu::attention`), which
/// another thread may raise: acknowledging it lowers the line and answers `vector`.
pub struct LineBus<'a> {
    pub ram: &'a mut FlatBus,
    pub attention: &'a Attention,
    pub vector: u8,
}

impl CpuBus for LineBus<'_> {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        self.ram.phys_page(paddr)
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.ram.mmio_read(paddr, size)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.ram.mmio_write(paddr, size, value)
    }
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        self.ram.io_read(port, size)
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.ram.io_write(port, size, value)
    }
    fn now_ns(&mut self) -> u64 {
        self.ram.now_ns()
    }
    fn interrupt_pending(&mut self) -> bool {
        self.attention.intr.load(Ordering::Acquire)
    }
    fn intr_in_attention(&self) -> bool {
        true
    }
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.attention.intr.swap(false, Ordering::AcqRel).then_some(self.vector)
    }
}

/// The CPU's layout for compiled code, for tools that drive the translator on their own
/// (the compile-time benchmark).
pub fn jit_layout() -> ferrite_jit::Layout {
    crate::tier::layout()
}
