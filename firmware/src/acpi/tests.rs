//! Tests for the ACPI tables: checksums, key fields parsed back, placement and the fw_cfg loader.

use super::loader::*;
use super::*;
use crate::test_mem::{self, Slice};
use ferrite_memory::GuestMemory;

const MIB: u64 = 1 << 20;

fn u16_at(b: &[u8], o: usize) -> u16 {
    le::u16_at(b, o).unwrap()
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    le::u32_at(b, o).unwrap()
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    le::u64_at(b, o).unwrap()
}

fn config() -> AcpiConfig {
    AcpiConfig::new((0..4).collect(), MemoryLayout::new(512 * MIB))
}

/// A placed table set, read back through physical addresses like an OS does (from a snapshot
/// of the guest-physical ranges that hold it).
struct Placed {
    regions: Vec<(u64, Vec<u8>)>,
    rsdp: u64,
}

impl Placed {
    fn new(mem: &GuestMemory, rsdp: u64, ranges: &[(u64, usize)]) -> Self {
        let regions = ranges.iter().map(|&(a, n)| (a, mem.slice(a, n).unwrap())).collect();
        Placed { regions, rsdp }
    }
    fn bytes(&self, addr: u64, len: usize) -> &[u8] {
        let (base, data) = self
            .regions
            .iter()
            .find(|(a, d)| addr >= *a && addr + len as u64 <= a + d.len() as u64)
            .unwrap_or_else(|| panic!("{addr:#x}+{len:#x} not in a snapshot region"));
        let off = (addr - base) as usize;
        &data[off..off + len]
    }
    fn table(&self, addr: u64) -> &[u8] {
        let len = u32_at(self.bytes(addr, 8), 4) as usize;
        let t = self.bytes(addr, len);
        assert_eq!(sum(t), 0, "checksum of {}", String::from_utf8_lossy(&t[..4]));
        t
    }
    /// Tables listed by the RSDT and, checked equal, by the XSDT.
    fn listed(&self) -> Vec<u64> {
        let r = self.bytes(self.rsdp, 36);
        let rsdt = self.table(u32_at(r, 16) as u64);
        let xsdt = self.table(u64_at(r, 24));
        let from_rsdt: Vec<u64> = rsdt[36..].chunks(4).map(|c| u32_at(c, 0) as u64).collect();
        let from_xsdt: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
        assert_eq!(from_rsdt, from_xsdt);
        from_rsdt
    }
    fn find(&self, sig: &[u8; 4]) -> &[u8] {
        let addr = self.listed().into_iter().find(|&a| self.bytes(a, 4) == sig).unwrap();
        self.table(addr)
    }
}

fn install(cfg: &AcpiConfig) -> Placed {
    let mem = test_mem::ram(cfg.layout.ram_size);
    let rsdp = AcpiTables::build(cfg).unwrap().install(&mem).unwrap();
    Placed::new(&mem, rsdp, &[(0xe_0000, 0x2_0000)])
}

#[test]
fn unplaced_tables_have_valid_checksums() {
    let t = AcpiTables::build(&config()).unwrap();
    assert_eq!(sum(&t.rsdp[..20]), 0);
    assert_eq!(sum(&t.rsdp), 0);
    let sigs: Vec<&[u8; 4]> = t.index.iter().map(|(s, _, _)| s).collect();
    assert_eq!(sigs, [b"FACS", b"DSDT", b"FACP", b"APIC", b"RSDT", b"XSDT"]);
    for &(sig, off, len) in &t.index {
        let table = &t.tables[off as usize..(off + len) as usize];
        assert_eq!(u32_at(table, 4), len, "{sig:?} length");
        if &sig != b"FACS" {
            assert_eq!(sum(table), 0, "{sig:?}");
            assert_eq!(&table[10..16], b"FERRIT");
        }
    }
    assert_eq!(t.index[0].1 % 64, 0, "FACS is 64-byte aligned");
}

#[test]
fn rsdp_is_found_by_scanning_the_bios_area() {
    let p = install(&config());
    // Linux scans 0xE0000-0xFFFFF on 16-byte boundaries for the signature.
    let found = (0xe_0000u64..0x10_0000)
        .step_by(16)
        .find(|&a| p.bytes(a, 8) == b"RSD PTR ")
        .unwrap();
    assert_eq!(found, p.rsdp);
    let r = p.bytes(p.rsdp, 36);
    assert_eq!(r[15], 2, "revision");
    assert_eq!(u32_at(r, 20), 36);
    assert_eq!(sum(&r[..20]), 0);
    assert_eq!(sum(r), 0);
    let listed = p.listed();
    let sigs: Vec<&[u8]> = listed.iter().map(|&a| p.bytes(a, 4)).collect();
    assert_eq!(sigs, [b"FACP", b"APIC"]);
    assert!(listed.iter().all(|&a| (0xe_0000..0xf_0000).contains(&a)));
}

#[test]
fn fadt_fields() {
    let p = install(&config());
    let f = p.find(b"FACP");
    assert_eq!(f.len(), 276);
    assert!(f[8] >= 3, "revision");
    assert_eq!(u16_at(f, 46), 9, "SCI_INT");
    assert_eq!(u32_at(f, 48), 0xb2, "SMI_CMD");
    assert_eq!((f[52], f[53]), (0xf1, 0xf0), "ACPI_ENABLE/DISABLE");
    assert_eq!(u32_at(f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(u32_at(f, 80), 0xafe0, "GPE0_BLK");
    assert_eq!((f[88], f[89], f[91], f[92]), (4, 2, 4, 4), "block lengths");
    assert_eq!(u16_at(f, 109), 3, "IAPC_BOOT_ARCH: legacy devices + 8042");
    let flags = u32_at(f, 112);
    for bit in [0, 2, 5, 10] {
        assert!(flags & (1 << bit) != 0, "flag bit {bit}");
    }
    assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED");
    // RESET_REG: system I/O, 8 bits, port 0xCF9; RESET_VALUE 6.
    assert_eq!((f[116], f[117]), (1, 8));
    assert_eq!(u64_at(f, 120), 0xcf9);
    assert_eq!(f[128], 6);
    // X_ blocks match the legacy ones.
    assert_eq!((f[148], f[149], u64_at(f, 152)), (1, 32, 0x600));
    assert_eq!((f[172], f[173], u64_at(f, 176)), (1, 16, 0x604));
    assert_eq!((f[208], f[209], u64_at(f, 212)), (1, 32, 0x608));
    assert_eq!((f[220], f[221], u64_at(f, 224)), (1, 32, 0xafe0));
    // DSDT and X_DSDT agree; FACS is 64-byte aligned.
    let dsdt = u32_at(f, 40) as u64;
    assert_eq!(u64_at(f, 140), dsdt);
    assert_eq!(p.bytes(dsdt, 4), b"DSDT");
    p.table(dsdt);
    let facs = u32_at(f, 36) as u64;
    assert_eq!(facs % 64, 0);
    assert_eq!(p.bytes(facs, 4), b"FACS");
    assert_eq!(u32_at(p.bytes(facs, 8), 4), 64);
}

/// The MADT's interrupt controller structures, by kind.
#[derive(Default, Debug)]
struct Madt {
    /// (UID, APIC ID, flags)
    lapics: Vec<(u32, u32, u32)>,
    /// (UID, x2APIC ID, flags)
    x2apics: Vec<(u32, u32, u32)>,
    ioapics: Vec<(u8, u32, u32)>,
    isos: Vec<(u8, u32, u16)>,
    /// (UID, LINT) of Local APIC NMI and Local x2APIC NMI entries.
    nmis: Vec<(u32, u8)>,
    x2nmis: Vec<(u32, u8)>,
}

fn parse_madt(m: &[u8]) -> Madt {
    let mut out = Madt::default();
    let mut off = 44;
    while off < m.len() {
        let (ty, len) = (m[off], m[off + 1] as usize);
        let e = &m[off..off + len];
        match (ty, len) {
            (0, 8) => out.lapics.push((e[2] as u32, e[3] as u32, u32_at(e, 4))),
            (1, 12) => out.ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8))),
            (2, 10) => out.isos.push((e[3], u32_at(e, 4), u16_at(e, 8))),
            (4, 6) => out.nmis.push((e[2] as u32, e[5])),
            (9, 16) => out.x2apics.push((u32_at(e, 12), u32_at(e, 4), u32_at(e, 8))),
            (10, 12) => out.x2nmis.push((u32_at(e, 4), e[8])),
            _ => panic!("unexpected MADT entry {ty} of {len} bytes"),
        }
        off += len;
    }
    assert_eq!(off, m.len());
    out
}

#[test]
fn madt_entries() {
    let p = install(&config());
    let m = p.find(b"APIC");
    assert_eq!(m[8], 1, "revision");
    assert_eq!(u32_at(m, 36), 0xfee0_0000);
    assert_eq!(u32_at(m, 40) & 1, 1, "PCAT_COMPAT");
    let madt = parse_madt(m);
    assert_eq!(madt.lapics, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
    assert!(madt.x2apics.is_empty());
    assert_eq!(madt.ioapics, vec![(0, 0xfec0_0000, 0)]);
    assert_eq!(madt.isos, vec![(0, 2, 0), (9, 9, 0xd), (10, 10, 0xd), (11, 11, 0xd)]);
    assert_eq!(madt.nmis, vec![(0xff, 1)]);
    assert!(madt.x2nmis.is_empty());
}

#[test]
fn madt_and_dsdt_follow_apic_ids() {
    // Sparse IDs (as with several threads per core), one of them too large for xAPIC.
    let cfg = AcpiConfig::new(vec![0, 2, 4, 6, 300], MemoryLayout::new(512 * MIB));
    assert_eq!(cfg.cpus(), 5);
    let p = install(&cfg);
    let m = p.find(b"APIC");
    assert_eq!(m[8], 3, "revision with x2APIC structures");
    let madt = parse_madt(m);
    assert_eq!(madt.lapics, vec![(0, 0, 1), (1, 2, 1), (2, 4, 1), (3, 6, 1)]);
    assert_eq!(madt.x2apics, vec![(4, 300, 1)]);
    assert_eq!(madt.nmis, vec![(0xff, 1)]);
    assert_eq!(madt.x2nmis, vec![(u32::MAX, 1)]);

    // One ACPI0007 device per CPU, with the MADT's UID.
    let d = p.table(u32_at(p.find(b"FACP"), 40) as u64);
    for uid in 0..5u8 {
        // Device (Cnnn) { Name (_HID, "ACPI0007") Name (_UID, uid) }, uid as Zero, One or
        // BytePrefix n.
        let mut dev = format!("C{uid:03X}").into_bytes();
        dev.extend_from_slice(b"\x08_HID\x0dACPI0007\x00\x08_UID");
        dev.extend_from_slice(&match uid {
            0 => vec![0x00],
            1 => vec![0x01],
            n => vec![0x0a, n],
        });
        assert!(contains(d, &dev), "processor device {uid}");
    }
    assert!(!contains(d, b"C005"));

    // 255 CPUs with IDs 0..=254: UID 255 does not exist, every entry is xAPIC.
    let cfg = AcpiConfig::new((0..255).collect(), MemoryLayout::new(512 * MIB));
    let madt = parse_madt(install(&cfg).find(b"APIC"));
    assert_eq!(madt.lapics.len(), 255);
    assert!(madt.x2apics.is_empty());
    // From the 256th CPU on (APIC ID 255 and up, UID 255 and up) x2APIC entries take over.
    let cfg = AcpiConfig::new((0..288).collect(), MemoryLayout::new(512 * MIB));
    let madt = parse_madt(install(&cfg).find(b"APIC"));
    assert_eq!(madt.lapics.len(), 255);
    assert_eq!(madt.x2apics.len(), 33);
    assert_eq!(madt.x2apics[0], (255, 255, 1));
    assert_eq!(madt.x2apics[32], (287, 287, 1));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn dsdt_contents() {
    let cfg = config();
    let p = install(&cfg);
    let f = p.find(b"FACP");
    let d = p.table(u32_at(f, 40) as u64);
    assert_eq!(d[8], 2, "DSDT revision 2: 64-bit integers");
    // Name (\_S5, Package (4) { 0, 0, 0, 0 })
    assert!(contains(d, &[0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]));
    // EisaId ("PNP0A03") and ("PNP0C0F") as DWord constants.
    assert!(contains(d, &[0x0c, 0x41, 0xd0, 0x0a, 0x03]));
    assert!(contains(d, &[0x0c, 0x41, 0xd0, 0x0c, 0x0f]));
    for name in [&b"PCI0"[..], b"_PRT", b"_CRS", b"LNKA", b"LNKD", b"C003", b"ISA_", b"COM1"] {
        assert!(contains(d, name), "{}", String::from_utf8_lossy(name));
    }
    assert!(!contains(d, b"C004"));
    // The PCI hole descriptor: DWordMemory from 512 MiB to 0xFEBFFFFF.
    let mut hole = Vec::new();
    hole.extend_from_slice(&0x2000_0000u32.to_le_bytes());
    hole.extend_from_slice(&0xfebf_ffffu32.to_le_bytes());
    assert!(contains(d, &hole));
    // Slot 1 INTA routes to LNKA (PIIX3 swizzle): Package { 0x0001FFFF, Zero, \_SB.LNKA, Zero }.
    let mut e = vec![0x0c];
    e.extend_from_slice(&0x0001_ffffu32.to_le_bytes());
    e.extend_from_slice(&[0x00, b'\\', 0x2e]);
    e.extend_from_slice(b"_SB_LNKA");
    assert!(contains(d, &e));
    // Link IRQs: Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) { 10 }.
    assert!(contains(d, &[0x89, 6, 0, 0x09, 1, 10, 0, 0, 0]));
    assert!(contains(d, &[0x89, 6, 0, 0x09, 1, 11, 0, 0, 0]));

    let mut plain = cfg.clone();
    plain.legacy_devices = false;
    plain.s5_slp_typ = 5;
    let p = install(&plain);
    let d = p.table(u32_at(p.find(b"FACP"), 40) as u64);
    assert!(!contains(d, b"COM1"));
    assert!(contains(d, &[0x12, 0x08, 0x04, 0x0a, 5, 0x0a, 5, 0, 0]));
    assert_eq!(u16_at(p.find(b"FACP"), 109), 0);
}

#[test]
fn relocation_is_position_independent() {
    let t = AcpiTables::build(&config()).unwrap();
    let (r1, t1) = t.relocated(0xe0000, 0xe0040);
    let (r2, t2) = t.relocated(0xf5a40, 0x7ffe_0000);
    assert_eq!(sum(&r1), 0);
    assert_eq!(sum(&r2), 0);
    for &(_, off, len) in t.index.iter().skip(1) {
        let (a, b) = (off as usize, (off + len) as usize);
        assert_eq!(sum(&t1[a..b]), 0);
        assert_eq!(sum(&t2[a..b]), 0);
    }
    assert_eq!(u64_at(&r2, 24), 0x7ffe_0000 + t.index[5].1 as u64);
    assert_ne!(t1, t2);
}

/// Runs `etc/table-loader` like SeaBIOS's romfile_loader does.
fn run_loader(fw: &FwCfgAcpi, fseg: u64, high: u64) -> (GuestMemory, u64, u64) {
    let mem = test_mem::ram(512 * MIB);
    let mut files: Vec<(String, Vec<u8>, u64)> = Vec::new();
    let name = |b: &[u8]| String::from_utf8(b.iter().take_while(|&&c| c != 0).copied().collect()).unwrap();
    let blob_of = |n: &str| match n {
        RSDP_FILE => fw.rsdp.clone(),
        TABLES_FILE => fw.tables.clone(),
        _ => panic!("unknown file {n}"),
    };
    assert_eq!(fw.table_loader.len() % COMMAND_SIZE, 0);
    for c in fw.table_loader.chunks(COMMAND_SIZE) {
        let idx = |files: &Vec<(String, Vec<u8>, u64)>, n: &str| files.iter().position(|f| f.0 == n).unwrap();
        match u32_at(c, 0) {
            CMD_ALLOCATE => {
                let n = name(&c[4..60]);
                let align = u32_at(c, 60) as u64;
                let base = if c[64] == ZONE_FSEG { fseg } else { high };
                assert_eq!(base % align, 0);
                files.push((n.clone(), blob_of(&n), base));
            }
            CMD_ADD_POINTER => {
                let (d, s) = (idx(&files, &name(&c[4..60])), idx(&files, &name(&c[60..116])));
                let (off, size) = (u32_at(c, 116) as usize, c[120]);
                let src_addr = files[s].2;
                let blob = &mut files[d].1;
                if size == 8 {
                    let v = u64_at(blob, off) + src_addr;
                    blob[off..off + 8].copy_from_slice(&v.to_le_bytes());
                } else {
                    let v = u32_at(blob, off) + src_addr as u32;
                    blob[off..off + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            CMD_ADD_CHECKSUM => {
                let f = idx(&files, &name(&c[4..60]));
                let (off, start, len) = (u32_at(c, 60) as usize, u32_at(c, 64) as usize, u32_at(c, 68) as usize);
                let blob = &mut files[f].1;
                let s = sum(&blob[start..start + len]);
                blob[off] = blob[off].wrapping_sub(s);
            }
            other => panic!("unknown loader command {other}"),
        }
    }
    let mut rsdp = 0;
    let mut tables = 0;
    for (n, data, addr) in &files {
        mem.write(*addr, data).unwrap();
        match n.as_str() {
            RSDP_FILE => rsdp = *addr,
            _ => tables = *addr,
        }
    }
    (mem, rsdp, tables)
}

#[test]
fn fw_cfg_loader_produces_the_same_tables() {
    let t = AcpiTables::build(&config()).unwrap();
    let fw = t.fw_cfg();
    assert_eq!(fw.files().map(|f| f.0), [RSDP_FILE, TABLES_FILE, LOADER_FILE]);
    // Checksum fields are zero in the blobs, as QEMU leaves them.
    assert_eq!(fw.rsdp[8], 0);
    assert_eq!(fw.tables[t.index[1].1 as usize + 9], 0);
    let (mem, rsdp, tables) = run_loader(&fw, 0xf_5a40, 0x1ff0_0000);
    let (want_rsdp, want_tables) = t.relocated(rsdp, tables);
    assert_eq!(mem.slice(rsdp, 36).unwrap(), &want_rsdp[..]);
    assert_eq!(mem.slice(tables, want_tables.len()).unwrap(), &want_tables[..]);
    let p = Placed::new(&mem, rsdp, &[(rsdp, 36), (tables, want_tables.len())]);
    assert_eq!(p.listed().len(), 2);
    p.find(b"APIC");
}

#[test]
fn rejects_bad_configs() {
    let mut c = config();
    c.apic_ids.clear();
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::BadCpuCount { cpus: 0 })));
    c.apic_ids = (0..4097).collect();
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::BadCpuCount { cpus: 4097 })));
    c.apic_ids = vec![0, 1, 2, 1];
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::DuplicateApicId { id: 1 })));
    c.apic_ids = vec![0, u32::MAX];
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::BadApicId { id: u32::MAX })));
    c.apic_ids = (0..288).collect();
    let t = AcpiTables::build(&c).unwrap();
    let mem = test_mem::ram(64 * MIB);
    t.install(&mem).unwrap();
    let mut c = config();
    c.sci_irq = 16;
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::BadIrq { irq: 16, .. })));
    let mut c = config();
    c.pirq_irqs[2] = 2;
    assert!(matches!(AcpiTables::build(&c), Err(AcpiError::BadIrq { irq: 2, .. })));
    // Guest memory too small to hold the BIOS area.
    let tiny = test_mem::ram(0x8_0000);
    let err = AcpiTables::build(&config()).unwrap().install(&tiny).unwrap_err();
    assert!(matches!(err, AcpiError::WriteTables(_)));
}

#[test]
fn large_memory_hole() {
    let cfg = AcpiConfig::new(vec![0], MemoryLayout::new(8 << 30));
    let p = install(&cfg);
    let d = p.table(u32_at(p.find(b"FACP"), 40) as u64);
    let mut hole = Vec::new();
    hole.extend_from_slice(&0xc000_0000u32.to_le_bytes());
    hole.extend_from_slice(&0xfebf_ffffu32.to_le_bytes());
    assert!(contains(d, &hole));
}

/// With FERRITE_DUMP_ACPI=DIR set, writes each table to DIR/<sig>.dat (for `iasl -d`).
#[test]
fn dump_tables_when_asked() {
    let Some(dir) = std::env::var_os("FERRITE_DUMP_ACPI") else {
        return;
    };
    let t = AcpiTables::build(&config()).unwrap();
    let (rsdp, tables) = t.relocated(RSDP_ADDR, TABLES_ADDR);
    let dir = std::path::PathBuf::from(dir);
    std::fs::write(dir.join("rsdp.dat"), rsdp).unwrap();
    for &(sig, off, len) in &t.index {
        let name = String::from_utf8_lossy(&sig).to_lowercase();
        std::fs::write(dir.join(format!("{name}.dat")), &tables[off as usize..(off + len) as usize]).unwrap();
    }
    // The fw_cfg files, e.g. for `qemu -machine acpi=off -fw_cfg name=etc/acpi/rsdp,file=...`.
    for (name, data) in t.fw_cfg().files() {
        std::fs::write(dir.join(name.replace('/', "_")), data).unwrap();
    }
}
