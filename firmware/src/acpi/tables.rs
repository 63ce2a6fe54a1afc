//! The fixed-layout tables: RSDP, RSDT, XSDT, FADT, FACS, MADT (ACPI 6.5 chapter 5.2).

use super::{dsdt, AcpiConfig, AcpiFile, AcpiTables, Checksum, Pointer};
use super::{CREATOR_ID, CREATOR_REVISION, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::le;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;

/// Size of the common table header (ACPI 6.5 §5.2.6).
pub const HEADER_LEN: usize = 36;
/// Offset of the checksum byte in a table header.
pub const CHECKSUM_OFFSET: usize = 9;

/// FADT field offsets (ACPI 6.5 table 5.9) that hold pointers.
pub mod fadt_off {
    /// FIRMWARE_CTRL: 32-bit FACS address.
    pub const FIRMWARE_CTRL: usize = 36;
    /// DSDT: 32-bit DSDT address.
    pub const DSDT: usize = 40;
    /// X_DSDT: 64-bit DSDT address.
    pub const X_DSDT: usize = 140;
}

/// IAPC_BOOT_ARCH: LPC/ISA devices present (ACPI 6.5 table 5.11).
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// IAPC_BOOT_ARCH: an 8042 keyboard controller is present.
const IAPC_8042: u16 = 1 << 1;
/// CMOS RTC century register (MC146818 + PC convention).
const RTC_CENTURY: u8 = 0x32;

/// MADT flags: PCAT_COMPAT, the system also has dual 8259s (ACPI 6.5 table 5.20).
const MADT_PCAT_COMPAT: u32 = 1;
/// MADT interrupt structure types (ACPI 6.5 table 5.21).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INT_SRC_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
const MADT_LOCAL_X2APIC: u8 = 9;
const MADT_LOCAL_X2APIC_NMI: u8 = 0x0a;
/// Local APIC flags: Enabled (ACPI 6.5 table 5.23).
const MADT_LAPIC_ENABLED: u32 = 1;
/// Processor UID meaning "every processor" in the NMI entries.
const MADT_ALL_PROCESSORS_XAPIC: u8 = 0xff;
const MADT_ALL_PROCESSORS_X2APIC: u32 = u32::MAX;
/// The LINT input wired to NMI on a PC.
const LINT_NMI: u8 = 1;
/// MPS INTI flags: active high (01) + level triggered (11 << 2).
const MPS_INTI_LEVEL_HIGH: u16 = 0x000d;

/// A table header with length and checksum left zero.
fn header(signature: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(signature);
    h.extend_from_slice(&0u32.to_le_bytes()); // length, set by finish()
    h.push(revision);
    h.push(0); // checksum, set by finish()
    h.extend_from_slice(&OEM_ID);
    h.extend_from_slice(&OEM_TABLE_ID);
    h.extend_from_slice(&OEM_REVISION.to_le_bytes());
    h.extend_from_slice(&CREATOR_ID);
    h.extend_from_slice(&CREATOR_REVISION.to_le_bytes());
    h
}

/// Set the length field and the checksum of a complete table.
fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u32;
    le::put_u32(&mut t, 4, len);
    let len = t.len();
    super::fix_checksum(&mut t, CHECKSUM_OFFSET, 0, len);
    t
}

/// The DSDT (revision 2: 64-bit AML integers) around `aml`.
pub(super) fn finish_dsdt(aml: Vec<u8>) -> Vec<u8> {
    let mut t = header(b"DSDT", 2);
    t.extend_from_slice(&aml);
    finish(t)
}

/// Accumulates tables into the tables blob with their pointers and checksums.
struct Blob {
    out: AcpiTables,
}

impl Blob {
    /// Append `table` aligned to `align`, returning its offset. `checksummed` tables get a
    /// checksum entry covering the whole table.
    fn push(&mut self, table: Vec<u8>, align: usize, checksummed: bool) -> u32 {
        let t = &mut self.out.tables;
        t.resize(t.len().next_multiple_of(align), 0);
        let off = t.len() as u32;
        let mut sig = [0u8; 4];
        sig.copy_from_slice(&table[..4]);
        self.out.index.push((sig, off, table.len() as u32));
        if checksummed {
            self.out.checksums.push(Checksum {
                file: AcpiFile::Tables,
                offset: off + CHECKSUM_OFFSET as u32,
                start: off,
                len: table.len() as u32,
            });
        }
        t.extend_from_slice(&table);
        off
    }

    /// Record a `size`-byte pointer at `table_off + field` into the tables blob.
    fn pointer(&mut self, table_off: u32, field: usize, size: u8) {
        self.out.pointers.push(Pointer {
            dest: AcpiFile::Tables,
            offset: table_off + field as u32,
            size,
            src: AcpiFile::Tables,
        });
    }
}

/// Build all tables (config already validated).
pub(super) fn build(cfg: &AcpiConfig) -> AcpiTables {
    let mut b = Blob {
        out: AcpiTables {
            rsdp: Vec::new(),
            tables: Vec::new(),
            index: Vec::new(),
            pointers: Vec::new(),
            checksums: Vec::new(),
        },
    };
    let facs = b.push(facs(), 64, false);
    let dsdt = b.push(dsdt::build(cfg), 16, true);
    let fadt = b.push(fadt(cfg, facs, dsdt), 16, true);
    b.pointer(fadt, fadt_off::FIRMWARE_CTRL, 4);
    b.pointer(fadt, fadt_off::DSDT, 4);
    b.pointer(fadt, fadt_off::X_DSDT, 8);
    let madt = b.push(madt(cfg), 16, true);

    let entries = [fadt, madt];
    let mut rsdt = header(b"RSDT", 1);
    for e in entries {
        rsdt.extend_from_slice(&e.to_le_bytes());
    }
    let rsdt_off = b.push(finish(rsdt), 16, true);
    for i in 0..entries.len() {
        b.pointer(rsdt_off, HEADER_LEN + 4 * i, 4);
    }
    let mut xsdt = header(b"XSDT", 1);
    for e in entries {
        xsdt.extend_from_slice(&(e as u64).to_le_bytes());
    }
    let xsdt_off = b.push(finish(xsdt), 16, true);
    for i in 0..entries.len() {
        b.pointer(xsdt_off, HEADER_LEN + 8 * i, 8);
    }

    let mut out = b.out;
    out.rsdp = rsdp(rsdt_off, xsdt_off);
    for (offset, size) in [(16u32, 4u8), (24, 8)] {
        out.pointers.push(Pointer { dest: AcpiFile::Rsdp, offset, size, src: AcpiFile::Tables });
    }
    // The extended checksum covers the first one, so it comes second.
    out.checksums.push(Checksum { file: AcpiFile::Rsdp, offset: 8, start: 0, len: 20 });
    out.checksums.push(Checksum { file: AcpiFile::Rsdp, offset: 32, start: 0, len: 36 });
    out
}

/// RSDP revision 2 (ACPI 6.5 §5.2.5.3) with RSDT and XSDT offsets.
fn rsdp(rsdt: u32, xsdt: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum of the first 20 bytes
    r.extend_from_slice(&OEM_ID);
    r.push(2); // revision
    r.extend_from_slice(&rsdt.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&(xsdt as u64).to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    super::fix_checksum(&mut r, 8, 0, 20);
    super::fix_checksum(&mut r, 32, 0, 36);
    r
}

/// FACS (ACPI 6.5 §5.2.10): 64 bytes, no checksum.
fn facs() -> Vec<u8> {
    let mut v = Vec::new();
    acpi_tables::facs::FACS::new().to_aml_bytes(&mut v);
    v
}

fn io_gas(port: u16, bits: u8) -> GAS {
    GAS::new(AddressSpace::SystemIo, bits, 0, AccessSize::Undefined, port as u64)
}

/// FADT revision 6.5 (ACPI 6.5 §5.2.9) for PIIX4-style fixed hardware.
fn fadt(cfg: &AcpiConfig, facs: u32, dsdt: u32) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    f.creator_id = CREATOR_ID;
    f.creator_revision = CREATOR_REVISION.to_le_bytes();
    f.firmware_ctrl = facs.into();
    f.dsdt = dsdt.into();
    f.x_dsdt = (dsdt as u64).into();
    f.sci_int = (cfg.sci_irq as u16).into();
    f.smi_cmd = (cfg.smi_cmd as u32).into();
    if cfg.smi_cmd != 0 {
        f.acpi_enable = cfg.acpi_enable;
        f.acpi_disable = cfg.acpi_disable;
    }
    let pm = cfg.pm_base;
    let (evt, cnt, tmr) = (pm, pm + 4, pm + 8);
    f.pm1a_evt_blk = (evt as u32).into();
    f.pm1a_cnt_blk = (cnt as u32).into();
    f.pm_tmr_blk = (tmr as u32).into();
    f.gpe0_blk = (cfg.gpe0_base as u32).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    f.gpe0_blk_len = cfg.gpe0_len;
    f.x_pm1a_evt_blk = io_gas(evt, 32);
    f.x_pm1a_cnt_blk = io_gas(cnt, 16);
    f.x_pm_tmr_blk = io_gas(tmr, 32);
    f.x_gpe0_blk = io_gas(cfg.gpe0_base, cfg.gpe0_len.saturating_mul(8));
    // C2/C3 not supported (latencies above 100 / 1000 us).
    f.p_lvl2_lat = 0xfffu16.into();
    f.p_lvl3_lat = 0xffffu16.into();
    f.century = RTC_CENTURY;
    let mut boot_arch = 0;
    if cfg.legacy_devices {
        boot_arch |= IAPC_LEGACY_DEVICES | IAPC_8042;
    }
    f.iapc_boot_arch = boot_arch.into();
    let flags = Flags::Wbinvd as u32
        | Flags::ProcC1 as u32
        | Flags::SlpButton as u32
        | Flags::RtcS4 as u32
        | Flags::ResetRegSup as u32
        | Flags::UsePlatformClock as u32;
    f.flags = flags.into();
    f.reset_reg = io_gas(cfg.reset_port, 8);
    f.reset_value = cfg.reset_value;
    let mut v = Vec::new();
    f.finalize().to_aml_bytes(&mut v);
    // Recompute: the fields above changed after the builder's own checksum.
    let len = v.len();
    super::fix_checksum(&mut v, CHECKSUM_OFFSET, 0, len);
    v
}

/// Whether CPU `uid` with `apic_id` is described by a Processor Local APIC entry (8-bit ID and
/// UID, neither the 0xFF "all processors" value) rather than a Processor Local x2APIC one.
fn xapic_entry(uid: usize, apic_id: u32) -> bool {
    apic_id < 0xff && uid < 0xff
}

/// MADT (ACPI 6.5 §5.2.12).
fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    let any_x2apic = cfg.apic_ids.iter().enumerate().any(|(uid, &id)| !xapic_entry(uid, id));
    // Revision 3 (ACPI 4.0) introduced the x2APIC structures.
    let mut t = header(b"APIC", if any_x2apic { 3 } else { 1 });
    t.extend_from_slice(&cfg.lapic_addr.to_le_bytes());
    t.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for (uid, &id) in cfg.apic_ids.iter().enumerate() {
        if xapic_entry(uid, id) {
            // Processor Local APIC (§5.2.12.2): UID, APIC ID, flags.
            t.extend_from_slice(&[MADT_LOCAL_APIC, 8, uid as u8, id as u8]);
            t.extend_from_slice(&MADT_LAPIC_ENABLED.to_le_bytes());
        } else {
            // Processor Local x2APIC (§5.2.12.12): reserved, x2APIC ID, flags, UID.
            t.extend_from_slice(&[MADT_LOCAL_X2APIC, 16, 0, 0]);
            t.extend_from_slice(&id.to_le_bytes());
            t.extend_from_slice(&MADT_LAPIC_ENABLED.to_le_bytes());
            t.extend_from_slice(&(uid as u32).to_le_bytes());
        }
    }
    t.extend_from_slice(&[MADT_IO_APIC, 12, cfg.ioapic_id, 0]);
    t.extend_from_slice(&cfg.ioapic_addr.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    let iso = |t: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16| {
        t.extend_from_slice(&[MADT_INT_SRC_OVERRIDE, 10, 0, irq]);
        t.extend_from_slice(&gsi.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
    };
    // The PIT (IRQ0) is wired to IOAPIC pin 2; flags 0 = conforms to the ISA bus (edge, high).
    iso(&mut t, 0, 2, 0);
    let mut level = vec![cfg.sci_irq];
    for &irq in &cfg.pirq_irqs {
        if !level.contains(&irq) {
            level.push(irq);
        }
    }
    level.sort_unstable();
    for irq in level {
        iso(&mut t, irq, irq as u32, MPS_INTI_LEVEL_HIGH);
    }
    // LINT1 of every processor is the NMI input (flags 0: conforms to the bus).
    t.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, MADT_ALL_PROCESSORS_XAPIC, 0, 0, LINT_NMI]);
    if any_x2apic {
        // Local x2APIC NMI (§5.2.12.13): flags, UID, LINT, reserved.
        t.extend_from_slice(&[MADT_LOCAL_X2APIC_NMI, 12, 0, 0]);
        t.extend_from_slice(&MADT_ALL_PROCESSORS_X2APIC.to_le_bytes());
        t.extend_from_slice(&[LINT_NMI, 0, 0, 0]);
    }
    finish(t)
}
