//! The one trait through which the CPU reaches the world. `machine` implements it; tests
//! implement it over a plain byte vector.

/// What lives at a guest-physical page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysPage {
    /// Guest RAM: the host address of the start of the 4 KiB page.
    Ram(*mut u8),
    /// Read-only memory: reads come from the host page, writes are dropped.
    Rom(*mut u8),
    /// Device memory or nothing: every access goes through `mmio_read`/`mmio_write`.
    Mmio,
}

pub trait CpuBus {
    /// Where the 4 KiB guest-physical page containing `paddr` lives. The returned pointer must
    /// stay valid (and keep pointing at that page) until `CpuBus::memory_map_generation`
    /// changes: the CPU caches it in its TLB.
    fn phys_page(&mut self, paddr: u64) -> PhysPage;
    /// Changes whenever a `phys_page` answer may have changed (RAM remapped, ROM shadowing
    /// toggled); the CPU then flushes its TLB.
    fn memory_map_generation(&self) -> u64 {
        0
    }
    /// A device-memory read of 1, 2, 4 or 8 bytes.
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64;
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64);
    /// Port input of 1, 2 or 4 bytes.
    fn io_read(&mut self, port: u16, size: u8) -> u32;
    fn io_write(&mut self, port: u16, size: u8, value: u32);
    /// The address mask the A20 gate applies (`!0` when the gate is open, `!(1 << 20)` when
    /// closed). Checked after every port write, so devices behind ports may toggle it.
    fn a20_mask(&self) -> u64 {
        !0
    }
    /// Whether the INTR line (from the PIC or local APIC) is asserted.
    fn interrupt_pending(&mut self) -> bool {
        false
    }
    /// Whether `interrupt_pending` is the CPU's `Attention::intr` (or never becomes true):
    /// compiled code then watches that flag to run on from block to block without returning
    /// to the run loop. `false` (the default) sends compiled code back to the run loop after
    /// every block.
    fn intr_in_attention(&self) -> bool {
        false
    }
    /// Interrupt acknowledge cycle: the vector of the highest-priority pending interrupt.
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        None
    }
    /// Nanoseconds of guest time since the machine was created; the TSC derives from it.
    fn now_ns(&mut self) -> u64 {
        0
    }
    /// The guest wrote the local APIC's TPR through CR8 (bits 3:0 = TPR[7:4]).
    fn set_tpr(&mut self, _cr8: u8) {}
    /// Reads/writes of MSRs that belong to devices (x2APIC, TSC deadline): `None` means
    /// "not mine", and the CPU then raises #GP for unknown MSRs.
    fn read_device_msr(&mut self, _msr: u32) -> Option<u64> {
        None
    }
    fn write_device_msr(&mut self, _msr: u32, _value: u64) -> Option<()> {
        None
    }
}
