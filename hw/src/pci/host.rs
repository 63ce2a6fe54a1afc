//! Configuration mechanism #1 (PCI 3.0, 3.2.2.3.2) at ports 0xCF8-0xCFF, plus the PIIX3
//! reset control register that shares the block at 0xCF9 (82371SB PIIX3 datasheet, "RC -
//! Reset Control Register").

use super::{DevFn, PciBus};
use crate::PioDevice;

/// CONFIG_ADDRESS port (32-bit accesses only).
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xCF8;
/// CONFIG_DATA ports 0xCFC-0xCFF (any width at any offset within the dword).
pub const PCI_CONFIG_DATA_PORT: u16 = 0xCFC;
/// Reset control register port (byte accesses; PIIX3 "RC", I/O 0CF9h).
pub const PCI_RESET_CONTROL_PORT: u16 = 0xCF9;
/// Number of ports the [`PciHost`] decodes, from 0xCF8.
pub const PCI_HOST_PORTS: u16 = 8;

/// CONFIG_ADDRESS bit 31: configuration space enable.
pub const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// CONFIG_ADDRESS bits that hold state: enable, bus (23:16), device (15:11), function
/// (10:8), register (7:2). Reserved bits 30:24 and 1:0 read as zero.
pub const CONFIG_ADDRESS_MASK: u32 = 0x80FF_FFFC;

/// Reset control bit 1: system reset (hard reset) when RCPU fires.
pub const RC_SYSTEM_RESET: u8 = 1 << 1;
/// Reset control bit 2: reset CPU (writing 1 resets at once).
pub const RC_RESET_CPU: u8 = 1 << 2;
/// Reset control bit 3: full reset (PIIX4 FULL_RST; stored only).
pub const RC_FULL_RESET: u8 = 1 << 3;

/// The host side of configuration mechanism #1, owning bus 0.
pub struct PciHost {
    pub bus: PciBus,
    pub(super) address: u32,
    pub(super) reset_control: u8,
    pub(super) reset_requested: bool,
}

impl PciHost {
    pub fn new(bus: PciBus) -> Self {
        Self {
            bus,
            address: 0,
            reset_control: 0,
            reset_requested: false,
        }
    }

    /// Platform reset: CONFIG_ADDRESS, reset control and every function on the bus.
    pub fn reset(&mut self) {
        self.address = 0;
        self.reset_control = 0;
        self.reset_requested = false;
        self.bus.reset();
    }

    /// CONFIG_ADDRESS as last written.
    pub fn config_address(&self) -> u32 {
        self.address
    }

    /// True once after the guest wrote RCPU (port 0xCF9, e.g. `outb 0x06, 0xCF9`): the
    /// machine resets the system.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_requested)
    }

    /// Target of a CONFIG_DATA access at byte `lane` (0-3): bus 0 function and register
    /// offset, or `None` (disabled, or another bus: nothing answers).
    fn target(&self, lane: u16) -> Option<(DevFn, u8)> {
        let a = self.address;
        if a & CONFIG_ADDRESS_ENABLE == 0 || (a >> 16) & 0xFF != 0 {
            return None;
        }
        Some((DevFn((a >> 8) as u8), (a as u8 & 0xFC) + lane as u8))
    }
}

/// Clips an access of `size` bytes at byte `lane` of a dword to that dword.
fn clip(lane: u16, size: u8) -> u8 {
    let size = match size {
        1 | 2 | 4 => size,
        _ => 4,
    };
    size.min(4 - lane as u8)
}

impl PioDevice for PciHost {
    /// `offset` is relative to 0xCF8.
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        match (offset, size) {
            (0, 4) => self.address,
            (1, 1) => u32::from(self.reset_control),
            (4..=7, _) => {
                let lane = offset - 4;
                let size = clip(lane, size);
                match self.target(lane) {
                    Some((devfn, reg)) => self.bus.config_read(devfn, reg, size),
                    None => u32::MAX >> (32 - 8 * u32::from(size)),
                }
            }
            _ => u32::MAX,
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        match (offset, size) {
            (0, 4) => self.address = value & CONFIG_ADDRESS_MASK,
            (1, 1) => {
                let v = value as u8;
                if v & RC_RESET_CPU != 0 {
                    self.reset_requested = true;
                }
                // The reset happens at once, so RCPU never reads back as set.
                self.reset_control = v & (RC_SYSTEM_RESET | RC_FULL_RESET);
            }
            (4..=7, _) => {
                let lane = offset - 4;
                let size = clip(lane, size);
                if let Some((devfn, reg)) = self.target(lane) {
                    self.bus.config_write(devfn, reg, size, value);
                }
            }
            _ => {}
        }
    }
}
