//! PC device models, one folder per device.
//!
//! A device is a pure register model: `read(offset)`/`write(offset, value)` on its own
//! register window, interrupt lines and backends as generic parameters, and time passed in
//! explicitly. No bus, thread or global lives inside a device; address decoding, width
//! splitting and wiring happen in `ferrite-machine`.

/// One interrupt wire from a device to an interrupt controller.
pub trait IrqLine {
    /// Drives the line: `true` asserted. Edge-triggered consumers see a rising edge when the
    /// level goes from low to high.
    fn set_level(&self, level: bool);
    /// Convenience for edge-style devices: a low-high-low pulse.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line connected to nothing (tests, disabled devices).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}

/// A device in port I/O space. `offset` is relative to the device's base port.
pub trait PioDevice {
    fn read(&mut self, offset: u16, size: u8) -> u32;
    fn write(&mut self, offset: u16, size: u8, value: u32);
}

/// A device in memory space. `offset` is relative to the device's base address.
pub trait MmioDevice {
    fn read(&mut self, offset: u64, size: u8) -> u64;
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// Guest time in nanoseconds, derived by the machine from the host's monotonic clock.
/// Devices take `now` as an argument instead of reading a clock, which keeps them testable.
pub type Nanos = u64;

pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;
pub mod i8042;
pub mod port92;
pub mod debug_exit;
pub mod post;
pub mod lapic;
pub mod ioapic;
pub mod pci;
pub mod acpi_pm;
pub mod fw_cfg;
pub mod edu;
pub mod ide;
pub mod net;
pub mod e1000;
pub mod virtio;

#[cfg(test)]
pub(crate) mod testing;
