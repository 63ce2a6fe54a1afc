//! ACPI tables for the PC board (i440FX/PIIX3 with PIIX4-style power management).
//!
//! Tables: RSDP (revision 2), RSDT and XSDT, FADT (revision 6, with FACS and DSDT), MADT, and a
//! DSDT describing `\_SB.PCI0` (PNP0A03), its `_PRT`, the PCI interrupt link devices, the CPUs,
//! the legacy ISA devices and `\_S5`. [`AcpiTables::build`] produces two position-independent
//! blobs — the RSDP and everything else — plus the list of pointers and checksums that depend on
//! where they end up. From there:
//!
//! * [`AcpiTables::install`] places them for direct kernel boot: RSDP at 0xE0000 (inside the
//!   0xE0000–0xFFFFF area where the OS searches for it), the other tables right after it, below
//!   0xF0000. The e820 map of [`crate::e820`] marks 0xE0000–0xFFFFF reserved.
//! * [`AcpiTables::fw_cfg`] gives the fw_cfg files a BIOS (SeaBIOS) loads itself: `etc/acpi/rsdp`,
//!   `etc/acpi/tables` and `etc/table-loader` with ALLOCATE / ADD_POINTER / ADD_CHECKSUM commands
//!   (QEMU's documented linker/loader interface, see [`loader`]).
//!
//! The PM I/O ports come from the hw crate's PM device, so they are parameters of
//! [`AcpiConfig`], with QEMU-compatible defaults (PM base 0x600, GPE0 at 0xAFE0, SCI on IRQ 9).
//!
//! PCI interrupt routing. The `_PRT` maps every slot's INTA–INTD to one of four link devices
//! `\_SB.LNKA`–`LNKD` (PNP0C0F) with the PIIX3 swizzle `PIRQ = (slot + pin - 1) mod 4` (pin 0 =
//! INTA). Each link reports one fixed interrupt, [`AcpiConfig::pirq_irqs`] (default 10, 10, 11,
//! 11: what SeaBIOS programs into the PIIX3 PIRQ route registers), as `Interrupt (ResourceConsumer,
//! Level, ActiveHigh, Shared)` in both `_PRS` and `_CRS`; `_SRS` and `_DIS` accept and ignore
//! changes. This is what QEMU's pc board presents after SeaBIOS ran (level-triggered, active-high
//! ISA IRQs 10/11, with matching MADT interrupt source overrides), without the AML having to read
//! or write the PIIX3 registers. Fixed links rather than hard-wired GSIs in `_PRT` (ACPI 6.5
//! §6.2.13): with a hard-wired GSI the OS must assume active-low polarity, which the IOAPIC model
//! would then have to honour; links state the polarity explicitly. The machine must therefore
//! route PIRQ A–D to `pirq_irqs` (program PIIX3 registers 0x60–0x63 for a direct boot, as SeaBIOS
//! would) and treat those IRQs as level-triggered.
//!
//! Why hand-written fixed tables next to the `acpi_tables` crate: its AML encoder (used for the
//! DSDT) and its FADT/FACS layouts fit and are used, but its RSDP has no RSDT address (revision-2
//! RSDPs need both), and its MADT builder cannot set the PCAT_COMPAT flag nor emit interrupt source
//! overrides or local APIC NMI entries, which a PC with 8259s and an IOAPIC needs. Those tables,
//! plus RSDT/XSDT, are a few dozen bytes of fixed layout each and are written here directly.

mod dsdt;
pub mod loader;
mod tables;

use crate::e820::{MemoryLayout, BIOS_AREA_START};
use crate::le;
use ferrite_memory::{GuestMemory, MemoryError};
use thiserror::Error;

pub use loader::FwCfgAcpi;

/// OEM ID in every table header.
pub const OEM_ID: [u8; 6] = *b"FERRIT";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"FERRITPC";
/// OEM revision.
pub const OEM_REVISION: u32 = 1;
/// Creator ID.
pub const CREATOR_ID: [u8; 4] = *b"FRRT";
/// Creator revision.
pub const CREATOR_REVISION: u32 = 1;

/// Where [`AcpiTables::install`] puts the RSDP.
pub const RSDP_ADDR: u64 = BIOS_AREA_START;
/// Where [`AcpiTables::install`] puts the other tables (64-byte aligned for the FACS).
pub const TABLES_ADDR: u64 = BIOS_AREA_START + 0x40;
/// End of the area [`AcpiTables::install`] may use (the BIOS segment starts here).
pub const TABLES_END: u64 = 0xf_0000;

/// Most CPUs the tables describe (the DSDT names processor devices `C000`-`CFFF`).
pub const MAX_CPUS: usize = 4096;
/// The x2APIC broadcast ID, which no processor may have.
pub const X2APIC_BROADCAST: u32 = u32::MAX;

/// Board parameters the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// The APIC ID of each CPU. CPU `i` gets ACPI processor UID `i` (in the MADT and in its DSDT
    /// processor device) and is enabled; IDs below 255 are described with Processor Local APIC
    /// entries, the others with Processor Local x2APIC entries (ACPI 6.5 §5.2.12.12). The first
    /// one is the boot processor by convention. IDs must be distinct.
    pub apic_ids: Vec<u32>,
    /// RAM layout (the PCI hole starts at `layout.below_4g`).
    pub layout: MemoryLayout,
    /// PM I/O base: PM1a event block at +0 (4 bytes), PM1a control at +4 (2), PM timer at +8 (4).
    pub pm_base: u16,
    /// GPE0 block I/O base.
    pub gpe0_base: u16,
    /// GPE0 block length in bytes (status half + enable half).
    pub gpe0_len: u8,
    /// ISA IRQ (and GSI) of the SCI.
    pub sci_irq: u8,
    /// SMI command port written to switch ACPI mode on/off; 0 if the PM device starts in ACPI
    /// mode (SCI_EN set) and has no such port.
    pub smi_cmd: u16,
    /// Value written to `smi_cmd` to enable ACPI mode.
    pub acpi_enable: u8,
    /// Value written to `smi_cmd` to disable ACPI mode.
    pub acpi_disable: u8,
    /// Reset register I/O port.
    pub reset_port: u16,
    /// Value written to `reset_port` to reset the machine.
    pub reset_value: u8,
    /// SLP_TYP value for S5 (soft off) in PM1a_CNT. PIIX4 PM: 0 ("000 = soft off", PIIX4
    /// datasheet §11.7.3.3 PMCNTRL SUS_TYP), which is also what QEMU's PIIX4 PM implements.
    pub s5_slp_typ: u8,
    /// ISA IRQs that PIRQA–PIRQD are routed to.
    pub pirq_irqs: [u8; 4],
    /// IOAPIC ID.
    pub ioapic_id: u8,
    /// IOAPIC MMIO address.
    pub ioapic_addr: u32,
    /// Local APIC MMIO address.
    pub lapic_addr: u32,
    /// Describe the PC legacy devices (RTC, PS/2 keyboard and mouse, COM1) in the DSDT and
    /// announce the 8042 in the FADT.
    pub legacy_devices: bool,
}

impl AcpiConfig {
    /// QEMU-like defaults for CPUs with the given APIC IDs (e.g. `(0..cpus).collect()`) and
    /// `layout`.
    pub fn new(apic_ids: Vec<u32>, layout: MemoryLayout) -> Self {
        AcpiConfig {
            apic_ids,
            layout,
            pm_base: 0x600,
            gpe0_base: 0xafe0,
            gpe0_len: 4,
            sci_irq: 9,
            smi_cmd: 0xb2,
            acpi_enable: 0xf1,
            acpi_disable: 0xf0,
            reset_port: 0xcf9,
            reset_value: 0x06,
            s5_slp_typ: 0,
            pirq_irqs: [10, 10, 11, 11],
            ioapic_id: 0,
            ioapic_addr: 0xfec0_0000,
            lapic_addr: 0xfee0_0000,
            legacy_devices: true,
        }
    }

    /// Number of CPUs described.
    pub fn cpus(&self) -> u32 {
        self.apic_ids.len() as u32
    }
}

/// Errors from building or placing the ACPI tables.
#[derive(Debug, Error)]
pub enum AcpiError {
    /// No CPU, or more than [`MAX_CPUS`].
    #[error("cannot describe {cpus} CPUs: between 1 and 4096 are supported")]
    BadCpuCount {
        /// The count given.
        cpus: usize,
    },
    /// Two CPUs have the same APIC ID.
    #[error("APIC ID {id} is given to more than one CPU")]
    DuplicateApicId {
        /// The repeated ID.
        id: u32,
    },
    /// The x2APIC broadcast ID 0xFFFFFFFF cannot be a CPU's.
    #[error("APIC ID {id:#x} is the x2APIC broadcast ID, not a CPU's")]
    BadApicId {
        /// The ID given.
        id: u32,
    },
    /// An IRQ parameter is not an ISA IRQ.
    #[error("{what} IRQ {irq} is not a usable ISA IRQ (1 or 3-15)")]
    BadIrq {
        /// Which parameter.
        what: &'static str,
        /// The value.
        irq: u8,
    },
    /// The tables do not fit the direct-boot area.
    #[error("ACPI tables are {size} bytes but only {max} fit below 0xF0000")]
    TooLarge {
        /// Bytes needed.
        size: usize,
        /// Bytes available.
        max: usize,
    },
    /// Guest memory rejected the RSDP.
    #[error("cannot write the ACPI RSDP into guest memory")]
    WriteRsdp(#[source] MemoryError),
    /// Guest memory rejected the tables.
    #[error("cannot write the ACPI tables into guest memory")]
    WriteTables(#[source] MemoryError),
}

/// Which blob a pointer or checksum lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiFile {
    /// The RSDP (`etc/acpi/rsdp`).
    Rsdp,
    /// All other tables (`etc/acpi/tables`).
    Tables,
}

/// A `size`-byte little-endian field at `offset` in `dest` holding an offset into `src`; the
/// address of `src` must be added to it once `src` is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    /// Blob holding the field.
    pub dest: AcpiFile,
    /// Offset of the field in `dest`.
    pub offset: u32,
    /// Field size: 4 or 8.
    pub size: u8,
    /// Blob pointed into.
    pub src: AcpiFile,
}

/// A checksum byte at `offset` making bytes `start..start + len` of `file` sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// Blob holding it.
    pub file: AcpiFile,
    /// Offset of the checksum byte.
    pub offset: u32,
    /// First byte covered.
    pub start: u32,
    /// Bytes covered.
    pub len: u32,
}

/// Built tables, not yet placed: pointer fields hold offsets into their target blob, and every
/// checksum is valid for these unplaced bytes.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// The 36-byte RSDP.
    pub rsdp: Vec<u8>,
    /// FACS, DSDT, FADT, MADT, RSDT, XSDT, each 64-byte (FACS) or 16-byte aligned.
    pub tables: Vec<u8>,
    /// `(signature, offset, length)` of each table in `tables`.
    pub index: Vec<([u8; 4], u32, u32)>,
    /// Fields to relocate.
    pub pointers: Vec<Pointer>,
    /// Checksums to recompute after relocation, in order.
    pub checksums: Vec<Checksum>,
}

impl AcpiTables {
    /// Build every table for `config`.
    pub fn build(config: &AcpiConfig) -> Result<Self, AcpiError> {
        let ids = &config.apic_ids;
        if ids.is_empty() || ids.len() > MAX_CPUS {
            return Err(AcpiError::BadCpuCount { cpus: ids.len() });
        }
        if let Some(&id) = ids.iter().find(|&&id| id == X2APIC_BROADCAST) {
            return Err(AcpiError::BadApicId { id });
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(AcpiError::DuplicateApicId { id: w[0] });
        }
        // IRQ 0 (timer) and 2 (cascade) are never free for the SCI or PCI.
        let usable = |irq: u8| irq <= 15 && irq != 0 && irq != 2;
        if !usable(config.sci_irq) {
            return Err(AcpiError::BadIrq { what: "SCI", irq: config.sci_irq });
        }
        if let Some(&irq) = config.pirq_irqs.iter().find(|&&i| !usable(i)) {
            return Err(AcpiError::BadIrq { what: "PCI link", irq });
        }
        Ok(tables::build(config))
    }

    /// The blobs with pointers resolved for the RSDP at `rsdp_addr` and the tables at
    /// `tables_addr`, checksums updated: `(rsdp, tables)`.
    pub fn relocated(&self, rsdp_addr: u64, tables_addr: u64) -> (Vec<u8>, Vec<u8>) {
        let mut rsdp = self.rsdp.clone();
        let mut tables = self.tables.clone();
        for p in &self.pointers {
            let base = match p.src {
                AcpiFile::Rsdp => rsdp_addr,
                AcpiFile::Tables => tables_addr,
            };
            let blob = match p.dest {
                AcpiFile::Rsdp => &mut rsdp,
                AcpiFile::Tables => &mut tables,
            };
            let off = p.offset as usize;
            if p.size == 8 {
                let v = le::u64_at(blob, off).unwrap_or(0).wrapping_add(base);
                le::put_u64(blob, off, v);
            } else {
                let v = le::u32_at(blob, off).unwrap_or(0).wrapping_add(base as u32);
                le::put_u32(blob, off, v);
            }
        }
        for c in &self.checksums {
            let blob = match c.file {
                AcpiFile::Rsdp => &mut rsdp,
                AcpiFile::Tables => &mut tables,
            };
            fix_checksum(blob, c.offset as usize, c.start as usize, c.len as usize);
        }
        (rsdp, tables)
    }

    /// Place the tables for direct kernel boot (RSDP at [`RSDP_ADDR`], the rest at
    /// [`TABLES_ADDR`]) and return the RSDP address.
    pub fn install(&self, mem: &GuestMemory) -> Result<u64, AcpiError> {
        let max = (TABLES_END - TABLES_ADDR) as usize;
        if self.tables.len() > max {
            return Err(AcpiError::TooLarge { size: self.tables.len(), max });
        }
        let (rsdp, tables) = self.relocated(RSDP_ADDR, TABLES_ADDR);
        mem.write(TABLES_ADDR, &tables).map_err(AcpiError::WriteTables)?;
        mem.write(RSDP_ADDR, &rsdp).map_err(AcpiError::WriteRsdp)?;
        Ok(RSDP_ADDR)
    }

    /// The fw_cfg files for a BIOS that runs the table loader.
    pub fn fw_cfg(&self) -> FwCfgAcpi {
        loader::fw_cfg(self)
    }
}

/// Sum of `bytes` modulo 256.
pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Set the byte at `offset` so that `blob[start..start + len]` sums to zero.
pub(crate) fn fix_checksum(blob: &mut [u8], offset: usize, start: usize, len: usize) {
    let end = match start.checked_add(len) {
        Some(end) if end <= blob.len() && offset < blob.len() => end,
        _ => return,
    };
    blob[offset] = 0;
    let s = sum(&blob[start..end]);
    blob[offset] = s.wrapping_neg();
}

#[cfg(test)]
mod tests;
