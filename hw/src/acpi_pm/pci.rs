//! The PIIX4 power management PCI function, 8086:7113 (82371AB datasheet 290562, 7.1
//! "Power Management Configuration Registers"): where the PM I/O block is decoded.

use super::ACPI_PM_BASE;
use crate::pci::{ConfigSpace, PciDevice, PciEvent};

pub const PIIX4_PM_VENDOR_ID: u16 = 0x8086;
pub const PIIX4_PM_DEVICE_ID: u16 = 0x7113;
/// Class 06/80/00: other bridge.
pub const PIIX4_PM_CLASS: u32 = 0x06_80_00;
/// Revision 03 (PIIX4E), as QEMU reports.
pub const PIIX4_PM_REVISION: u8 = 0x03;

/// PMBA, PM I/O base (datasheet 7.1.10): bits 15:6 base, bit 0 hardwired 1 (I/O space).
pub const PIIX4_PMBA: usize = 0x40;
/// PMBA bits software can write (64-byte aligned base).
pub const PIIX4_PMBA_MASK: u32 = 0xFFC0;
/// DEVACTB, device activity B (datasheet 7.1.16); bit 25 APMC_EN gates SMI on 0xB2.
pub const PIIX4_DEVACTB: usize = 0x58;
/// PMREGMISC (datasheet 7.1.20): bit 0 PMIOSE, PM I/O space enable.
pub const PIIX4_PMREGMISC: usize = 0x80;
pub const PMREGMISC_PMIOSE: u8 = 1 << 0;
/// SMBBA, SMBus I/O base (datasheet 7.1.22; the SMBus controller is not modelled).
pub const PIIX4_SMBBA: usize = 0x90;
/// SMBHSTCFG, SMBus host configuration (datasheet 7.1.24).
pub const PIIX4_SMBHSTCFG: usize = 0xD2;

/// PIIX4 function 3 (the machine picks the device/function; 01.3 on QEMU's PC).
///
/// It resets with PMBA = [`ACPI_PM_BASE`] and PMIOSE set, i.e. as firmware would leave it,
/// so that a guest booted without a BIOS finds the PM block where the FADT says. Firmware
/// that reprograms PMBA/PMREGMISC produces [`PciEvent::PmIoBase`].
#[derive(Clone, Debug)]
pub struct Piix4Pm {
    pub(super) cfg: ConfigSpace,
    pub(super) reported: Option<u16>,
    pub(super) pending: Vec<PciEvent>,
}

impl Default for Piix4Pm {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix4Pm {
    pub fn new() -> Self {
        let mut cfg = ConfigSpace::new(
            PIIX4_PM_VENDOR_ID,
            PIIX4_PM_DEVICE_ID,
            PIIX4_PM_CLASS,
            PIIX4_PM_REVISION,
        );
        cfg.set_interrupt_pin(1);
        cfg.set_u16(crate::pci::PCI_STATUS, 0x0280);
        // Chipset registers 0x40-0xFF are plain storage except the base registers.
        cfg.set_writable(PIIX4_PMBA, &[0xFF; 0x100 - PIIX4_PMBA]);
        cfg.set_writable(PIIX4_PMBA, &PIIX4_PMBA_MASK.to_le_bytes());
        cfg.set_writable(PIIX4_SMBBA, &0xFFF0u32.to_le_bytes());
        cfg.set_u32(PIIX4_PMBA, u32::from(ACPI_PM_BASE) | 1);
        cfg.set_u8(PIIX4_PMREGMISC, PMREGMISC_PMIOSE);
        cfg.set_u32(PIIX4_SMBBA, 1);
        cfg.freeze_reset_state();
        let mut pm = Self {
            cfg,
            reported: None,
            pending: Vec::new(),
        };
        pm.refresh();
        pm
    }

    /// The decoded PM I/O base, or `None` when PMIOSE is clear or the base is 0.
    pub fn pm_base(&self) -> Option<u16> {
        let base = (self.cfg.u32(PIIX4_PMBA) & PIIX4_PMBA_MASK) as u16;
        (self.cfg.u8(PIIX4_PMREGMISC) & PMREGMISC_PMIOSE != 0 && base != 0).then_some(base)
    }

    fn refresh(&mut self) {
        let base = self.pm_base();
        if base != self.reported {
            self.reported = base;
            self.pending.push(PciEvent::PmIoBase { base });
        }
    }
}

impl PciDevice for Piix4Pm {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        self.refresh();
    }

    fn take_events(&mut self, out: &mut Vec<PciEvent>) {
        out.append(&mut self.pending);
    }

    fn reset(&mut self) {
        self.cfg.reset();
        self.refresh();
    }
}
