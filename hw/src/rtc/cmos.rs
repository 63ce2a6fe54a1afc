//! CMOS RAM fields the machine fills in for the BIOS: memory sizes, CPU count, boot order.
//!
//! Layout: IBM PC/AT technical reference ("CMOS RAM address map": 0x10-0x2f, checksum at
//! 0x2e-0x2f, 0x30-0x31) and the extensions SeaBIOS reads (`src/fw/paravirt.c` conventions:
//! 0x34-0x35, 0x38, 0x3d, 0x5b-0x5d, 0x5f).

use super::Rtc;
use crate::IrqLine;

/// 0x15 (low byte) / 0x16 (high byte): base memory in KiB, normally 640.
pub const CMOS_BASE_MEM_LO: u8 = 0x15;
pub const CMOS_BASE_MEM_HI: u8 = 0x16;
/// 0x17/0x18: extended memory above 1 MiB in KiB, capped at 0xffff (PC/AT "expansion memory").
pub const CMOS_EXT_MEM_LO: u8 = 0x17;
pub const CMOS_EXT_MEM_HI: u8 = 0x18;
/// 0x2e (high byte) / 0x2f (low byte): checksum of bytes 0x10-0x2d.
pub const CMOS_CHECKSUM_HI: u8 = 0x2e;
pub const CMOS_CHECKSUM_LO: u8 = 0x2f;
/// 0x30/0x31: a copy of 0x17/0x18, as the POST reports it (same KiB value, same cap).
pub const CMOS_EXT_MEM2_LO: u8 = 0x30;
pub const CMOS_EXT_MEM2_HI: u8 = 0x31;
/// 0x34/0x35: memory between 16 MiB and the 4 GiB hole, in 64 KiB units, capped at 0xffff.
pub const CMOS_MEM_ABOVE_16M_LO: u8 = 0x34;
pub const CMOS_MEM_ABOVE_16M_HI: u8 = 0x35;
/// 0x38: bits 7-4 third boot device; bit 0 set disables the floppy boot-signature check.
pub const CMOS_BOOT_FLAG1: u8 = 0x38;
/// 0x3d: bits 3-0 first boot device, bits 7-4 second boot device.
pub const CMOS_BOOT_FLAG2: u8 = 0x3d;
/// 0x5b/0x5c/0x5d: memory above 4 GiB in 64 KiB units, 24 bits little-endian.
pub const CMOS_MEM_ABOVE_4G_0: u8 = 0x5b;
pub const CMOS_MEM_ABOVE_4G_1: u8 = 0x5c;
pub const CMOS_MEM_ABOVE_4G_2: u8 = 0x5d;
/// 0x5f: number of CPUs minus one.
pub const CMOS_CPU_COUNT_MINUS_ONE: u8 = 0x5f;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const UNIT_64K: u64 = 64 * KIB;
/// The base memory a PC reports below the EBDA/VGA hole.
const BASE_MEM_KIB: u64 = 640;

/// A boot device code in the boot-order nibbles (SeaBIOS numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BootDevice {
    Floppy = 1,
    HardDisk = 2,
    Cdrom = 3,
    Network = 4,
}

impl<I: IrqLine> Rtc<I> {
    fn put16(&mut self, lo: u8, value: u64) {
        let v = value.min(0xffff);
        self.cmos_write(lo, v as u8);
        self.cmos_write(lo + 1, (v >> 8) as u8);
    }

    /// Fills the memory-size fields from the RAM below the 4 GiB hole (`below_4g`, bytes,
    /// counted from address 0) and above 4 GiB (`above_4g`, bytes), then the checksum.
    pub fn set_memory(&mut self, below_4g: u64, above_4g: u64) {
        self.put16(CMOS_BASE_MEM_LO, (below_4g / KIB).min(BASE_MEM_KIB));
        let ext_kib = below_4g.saturating_sub(MIB) / KIB;
        self.put16(CMOS_EXT_MEM_LO, ext_kib);
        self.put16(CMOS_EXT_MEM2_LO, ext_kib);
        self.put16(
            CMOS_MEM_ABOVE_16M_LO,
            below_4g.saturating_sub(16 * MIB) / UNIT_64K,
        );
        let high = (above_4g / UNIT_64K).min(0xff_ffff);
        self.cmos_write(CMOS_MEM_ABOVE_4G_0, high as u8);
        self.cmos_write(CMOS_MEM_ABOVE_4G_1, (high >> 8) as u8);
        self.cmos_write(CMOS_MEM_ABOVE_4G_2, (high >> 16) as u8);
        self.update_checksum();
    }

    /// Sets the CPU count field (0x5f = count - 1, clamped to 1-256 CPUs).
    pub fn set_cpu_count(&mut self, cpus: u32) {
        self.cmos_write(
            CMOS_CPU_COUNT_MINUS_ONE,
            cpus.clamp(1, 256).wrapping_sub(1) as u8,
        );
    }

    /// Sets the boot order (up to three devices, the rest ignored) and whether the BIOS
    /// checks a floppy's boot signature.
    pub fn set_boot_order(&mut self, order: &[BootDevice], check_floppy_signature: bool) {
        let nib = |i: usize| order.get(i).map_or(0, |&d| d as u8);
        self.cmos_write(CMOS_BOOT_FLAG2, nib(0) | nib(1) << 4);
        self.cmos_write(
            CMOS_BOOT_FLAG1,
            nib(2) << 4 | (!check_floppy_signature) as u8,
        );
    }

    /// Recomputes the PC/AT checksum over 0x10-0x2d.
    pub fn update_checksum(&mut self) {
        let sum: u16 = (0x10..=0x2d).map(|i| self.cmos_read(i) as u16).sum();
        self.cmos_write(CMOS_CHECKSUM_HI, (sum >> 8) as u8);
        self.cmos_write(CMOS_CHECKSUM_LO, sum as u8);
    }
}
