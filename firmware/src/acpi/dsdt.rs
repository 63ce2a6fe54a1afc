//! The DSDT, encoded with the `acpi_tables` crate's AML builders.
//!
//! In ASL terms (with the defaults of [`AcpiConfig`]):
//!
//! ```text
//! Name (\_S5, Package () { S5, S5, 0, 0 })          // S5 = s5_slp_typ
//! Scope (\_SB) {
//!   Device (PCI0) {
//!     Name (_HID, EisaId ("PNP0A03"))  Name (_CID, EisaId ("PNP0A03"))
//!     Name (_UID, 0)  Name (_BBN, 0)
//!     Name (_CRS, ResourceTemplate () {
//!       WordBusNumber 0-0xFF; IO 0xCF8 (8 bytes, the config ports);
//!       WordIO 0-0xCF7; WordIO 0xD00-0xFFFF;
//!       DWordMemory 0xA0000-0xBFFFF; DWordMemory <end of low RAM>-0xFEBFFFFF })
//!     Name (_PRT, Package () { Package () { 0xSSSSFFFF, pin, \_SB.LNKx, 0 }, ... })
//!     Device (ISA) { Name (_ADR, 0x00010000)   // PIIX3 function 0
//!       Device (RTC) PNP0B00; Device (KBD) PNP0303; Device (MOU) PNP0F13; Device (COM1) PNP0501 }
//!   }
//!   Device (LNKA) ... Device (LNKD)                 // PNP0C0F, fixed IRQ each
//!   Device (C000) ... one ACPI0007 processor device per CPU, _UID = MADT processor UID
//! }
//! ```
//!
//! Every name passed to the AML builders below is a constant or generated in a fixed format, so
//! their argument checks (which panic on malformed names) cannot fail.

use super::tables::finish_dsdt;
use super::AcpiConfig;
use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Method, Name, Package, Path,
    ResourceTemplate, Return, Scope, IO, ZERO,
};
use acpi_tables::{Aml, AmlSink};

/// Highest address of the 32-bit PCI MMIO window (just below the IOAPIC).
const PCI_HOLE_END: u32 = 0xfebf_ffff;
/// `_STA` value: present, enabled, functioning (ACPI 6.5 §6.3.7).
const STA_PRESENT: u8 = 0x0b;
/// Number of PCI device slots on bus 0.
const PCI_SLOTS: u32 = 32;

/// Small IRQ descriptor without flags (edge, active high, exclusive; ACPI 6.5 §6.4.2.1).
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(0x22);
        sink.word(1u16 << (self.0 & 15));
    }
}

/// A legacy ISA device with a fixed `_CRS`.
fn isa_device(name: &str, hid: &str, uid: Option<u8>, resources: Vec<&dyn Aml>) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new(hid));
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(resources));
    let uid_name = uid.map(|u| Name::new("_UID".into(), &u));
    let mut children: Vec<&dyn Aml> = vec![&hid];
    if let Some(u) = &uid_name {
        children.push(u);
    }
    children.push(&crs);
    let mut out = Vec::new();
    Device::new(Path::new(name), children).to_aml_bytes(&mut out);
    out
}

/// Raw AML bytes appended as they are.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// `Device (ISA)` with the PC legacy devices.
fn isa_bridge() -> Vec<u8> {
    let rtc = Raw(isa_device("RTC_", "PNP0B00", None, vec![&IO::new(0x70, 0x70, 1, 2), &IrqNoFlags(8)]));
    let kbd = Raw(isa_device(
        "KBD_",
        "PNP0303",
        None,
        vec![&IO::new(0x60, 0x60, 1, 1), &IO::new(0x64, 0x64, 1, 1), &IrqNoFlags(1)],
    ));
    let mou = Raw(isa_device("MOU_", "PNP0F13", None, vec![&IrqNoFlags(12)]));
    let com1 = Raw(isa_device("COM1", "PNP0501", Some(1), vec![&IO::new(0x3f8, 0x3f8, 1, 8), &IrqNoFlags(4)]));
    let adr = Name::new("_ADR".into(), &0x0001_0000u32);
    let mut out = Vec::new();
    Device::new("ISA_".into(), vec![&adr, &rtc, &kbd, &mou, &com1]).to_aml_bytes(&mut out);
    out
}

/// `Device (PCI0)`.
fn pci0(cfg: &AcpiConfig) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0A03"));
    let cid = Name::new("_CID".into(), &EISAName::new("PNP0A03"));
    // No _ADR: a host bridge device is identified by _HID (ACPI 6.5 §6.1.1: not both).
    let uid = Name::new("_UID".into(), &ZERO);
    let bbn = Name::new("_BBN".into(), &ZERO);

    let hole_start = cfg.layout.pci_hole_start().min(PCI_HOLE_END as u64) as u32;
    let bus = AddressSpace::new_bus_number(0u16, 0xffu16);
    let cfg_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::new_io(0u16, 0xcf7u16, None);
    let io_high = AddressSpace::new_io(0xd00u16, 0xffffu16, None);
    let vga = AddressSpace::new_memory(AddressSpaceCacheable::Cacheable, true, 0xa_0000u32, 0xb_ffffu32, None);
    let hole = AddressSpace::new_memory(AddressSpaceCacheable::NotCacheable, true, hole_start, PCI_HOLE_END, None);
    let crs_rt = ResourceTemplate::new(vec![&bus, &cfg_ports, &io_low, &io_high, &vga, &hole]);
    let crs = Name::new("_CRS".into(), &crs_rt);

    // _PRT: PIIX3 swizzle, PIRQ = (slot + pin - 1) mod 4.
    let links: Vec<Path> = (0..4).map(|i| Path::new(&format!("\\_SB_.LNK{}", (b'A' + i) as char))).collect();
    let entries: Vec<(u32, u8, usize)> = (0..PCI_SLOTS)
        .flat_map(|slot| (0..4u8).map(move |pin| ((slot << 16) | 0xffff, pin, ((slot + pin as u32 + 3) % 4) as usize)))
        .collect();
    let packages: Vec<Package> = entries
        .iter()
        .map(|(addr, pin, link)| Package::new(vec![addr, pin, &links[*link], &ZERO]))
        .collect();
    let prt_pkg = Package::new(packages.iter().map(|p| p as &dyn Aml).collect());
    let prt = Name::new("_PRT".into(), &prt_pkg);

    let isa = Raw(if cfg.legacy_devices { isa_bridge() } else { Vec::new() });
    let mut out = Vec::new();
    Device::new("PCI0".into(), vec![&hid, &cid, &uid, &bbn, &crs, &prt, &isa]).to_aml_bytes(&mut out);
    out
}

/// `Device (LNKx)`: a PCI interrupt link with one fixed, level-triggered, active-high IRQ.
fn link(index: u8, irq: u8) -> Vec<u8> {
    let name = format!("LNK{}", (b'A' + index) as char);
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0C0F"));
    let uid_val = index + 1;
    let uid = Name::new("_UID".into(), &uid_val);
    // consumer, level (not edge), active high, shared
    let int = Interrupt::new(true, false, false, true, irq as u32);
    let prs = Name::new("_PRS".into(), &ResourceTemplate::new(vec![&int]));
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&int]));
    let sta_ret = Return::new(&STA_PRESENT);
    let sta = Method::new("_STA".into(), 0, false, vec![&sta_ret]);
    let srs = Method::new("_SRS".into(), 1, false, vec![]);
    let dis = Method::new("_DIS".into(), 0, false, vec![]);
    let mut out = Vec::new();
    Device::new(Path::new(&name), vec![&hid, &uid, &prs, &crs, &sta, &srs, &dis]).to_aml_bytes(&mut out);
    out
}

/// `Device (Cnnn)`: processor `uid` (ACPI0007).
fn cpu(uid: u32) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &"ACPI0007");
    let uid_name = Name::new("_UID".into(), &uid);
    let mut out = Vec::new();
    Device::new(Path::new(&format!("C{:03X}", uid & 0xfff)), vec![&hid, &uid_name]).to_aml_bytes(&mut out);
    out
}

/// The complete DSDT (header included).
pub(super) fn build(cfg: &AcpiConfig) -> Vec<u8> {
    let mut body = Vec::new();
    let s5_pkg = Package::new(vec![&cfg.s5_slp_typ, &cfg.s5_slp_typ, &ZERO, &ZERO]);
    Name::new("\\_S5_".into(), &s5_pkg).to_aml_bytes(&mut body);

    let mut sb = vec![Raw(pci0(cfg))];
    for (i, &irq) in cfg.pirq_irqs.iter().enumerate() {
        sb.push(Raw(link(i as u8, irq)));
    }
    for uid in 0..cfg.cpus() {
        sb.push(Raw(cpu(uid)));
    }
    Scope::new("\\_SB_".into(), sb.iter().map(|r| r as &dyn Aml).collect()).to_aml_bytes(&mut body);

    finish_dsdt(body)
}
