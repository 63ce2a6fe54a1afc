//! The CPU state a loader hands to the machine, and the structures in guest memory it relies on
//! (GDT, identity page tables).
//!
//! The firmware crate does not depend on the cpu crate: [`BootSetup`] is plain data that the
//! machine translates into its CPU state. Segments carry both the raw 8-byte GDT descriptor and
//! its decoded fields (in the shape of KVM's `kvm_segment`), so either form can be used.
//!
//! Low-memory addresses used by the loaders (all below the 1 MiB kernel load address and above
//! the real-mode IVT and BIOS data area at 0–0x4FF):
//!
//! | address            | what                                                |
//! |--------------------|-----------------------------------------------------|
//! | 0x0500 – 0x051F    | GDT (4 descriptors)                                 |
//! | 0x7000 – 0x7FFF    | Linux zero page (`struct boot_params`)              |
//! | 0x8000 – 0x8FFF    | initial stack (top at 0x8FF0)                       |
//! | 0x9000 – 0xEFFF    | identity page tables: PML4, PDPT, 4 page directories|
//! | 0x8000 – 0xFFFF    | multiboot information (multiboot boots only)        |
//! | 0x20000 – …        | kernel command line                                 |

use ferrite_memory::{GuestMemory, MemoryError};

/// Where the GDT is written.
pub const GDT_ADDR: u64 = 0x500;
/// Where the Linux zero page is written.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for direct kernel boots.
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Where the PML4 of the identity page tables is written.
pub const PML4_ADDR: u64 = 0x9000;
/// Where the PDPT of the identity page tables is written.
pub const PDPT_ADDR: u64 = 0xa000;
/// Where the first of the four page directories is written.
pub const PD_ADDR: u64 = 0xb000;
/// End of the page-table area.
pub const PAGE_TABLES_END: u64 = PD_ADDR + 4 * 0x1000;
/// Where the kernel command line is written.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Bytes of address space the identity map covers (4 GiB with 2 MiB pages).
pub const IDENTITY_MAP_SIZE: u64 = 1 << 32;

/// Kernel code selector of the boot GDT (`__BOOT_CS` in Linux's boot.rst).
pub const BOOT_CS: u16 = 0x10;
/// Kernel data selector of the boot GDT (`__BOOT_DS` in Linux's boot.rst).
pub const BOOT_DS: u16 = 0x18;

/// CR0.PE: protected mode enable (SDM vol. 3 §2.5).
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET: extension type, hard-wired to 1 on every CPU since the i486.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG: paging enable.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension, required for long mode.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME: long mode enable (SDM vol. 3 §2.2.1).
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
pub const RFLAGS_RESERVED: u64 = 1 << 1;

/// Page-table entry bits (SDM vol. 3 §4.5): present, writable, 2 MiB page.
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_PAGE_SIZE: u64 = 1 << 7;

/// Flat descriptors (base 0, limit 4 GiB, G=1), SDM vol. 3 §3.4.5.
/// 64-bit code: P=1, DPL 0, S=1, type 0xB (execute/read, accessed), L=1, D=0.
pub const DESC_CODE64: u64 = 0x00af_9b00_0000_ffff;
/// 32-bit code: P=1, DPL 0, S=1, type 0xB, D=1.
pub const DESC_CODE32: u64 = 0x00cf_9b00_0000_ffff;
/// Data: P=1, DPL 0, S=1, type 0x3 (read/write, accessed), B=1.
pub const DESC_DATA: u64 = 0x00cf_9300_0000_ffff;

/// The processor mode the guest starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// 32-bit protected mode, paging off.
    Protected32,
    /// 64-bit long mode with the identity page tables at `cr3`.
    Long64,
}

/// A segment register's hidden state plus its selector, in the shape of `kvm_segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Selector value loaded in the visible part of the register.
    pub selector: u16,
    /// The raw 8-byte descriptor in the GDT at `selector`.
    pub descriptor: u64,
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (already scaled by the granularity bit), e.g. 0xFFFF_FFFF.
    pub limit: u32,
    /// Descriptor type field (bits 40–43), e.g. 0xB for execute/read/accessed code.
    pub type_: u8,
    /// S: 1 for code/data segments.
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// P: present.
    pub present: bool,
    /// AVL: available to software.
    pub avl: bool,
    /// L: 64-bit code segment.
    pub l: bool,
    /// D/B: default operation size 32 bits.
    pub db: bool,
    /// G: limit counted in 4 KiB units.
    pub g: bool,
}

impl Segment {
    /// Decode `descriptor` as loaded through `selector`.
    pub fn from_descriptor(selector: u16, descriptor: u64) -> Self {
        let d = descriptor;
        let base = ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24);
        let raw_limit = ((d & 0xffff) | (((d >> 48) & 0xf) << 16)) as u32;
        let g = d & (1 << 55) != 0;
        let limit = if g { (raw_limit << 12) | 0xfff } else { raw_limit };
        Segment {
            selector,
            descriptor,
            base,
            limit,
            type_: ((d >> 40) & 0xf) as u8,
            s: d & (1 << 44) != 0,
            dpl: ((d >> 45) & 3) as u8,
            present: d & (1 << 47) != 0,
            avl: d & (1 << 52) != 0,
            l: d & (1 << 53) != 0,
            db: d & (1 << 54) != 0,
            g,
        }
    }
}

/// Base and limit of a descriptor table register (GDTR/IDTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit (size in bytes minus one).
    pub limit: u16,
}

/// The initial register state a loader asks for. Registers not listed start at zero.
///
/// The machine must: load every field below into the boot vCPU (the segment registers with the
/// hidden parts given here, not by reading the GDT), leave interrupts disabled (`rflags` has IF
/// clear), keep the A20 gate enabled, and start executing at `rip`. The GDT and, for long mode,
/// the page tables at `cr3` are already in guest memory. Application processors stay in the
/// reset state waiting for INIT/SIPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetup {
    /// Mode implied by `cr0`/`cr4`/`efer`, for convenience.
    pub mode: CpuMode,
    /// Entry point.
    pub rip: u64,
    /// Initial stack pointer.
    pub rsp: u64,
    /// RAX (multiboot: the magic 0x2BADB002).
    pub rax: u64,
    /// RBX (multiboot: the information structure address).
    pub rbx: u64,
    /// RSI (Linux: the zero page address).
    pub rsi: u64,
    /// RFLAGS (only the reserved bit 1 set).
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3 (page-table root; 0 with paging off).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// GDTR.
    pub gdt: DescriptorTable,
    /// IDTR (empty: the guest installs its own before enabling interrupts).
    pub idt: DescriptorTable,
    /// CS.
    pub cs: Segment,
    /// DS.
    pub ds: Segment,
    /// ES.
    pub es: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// SS.
    pub ss: Segment,
}

impl BootSetup {
    /// Flat segments through the boot GDT (CS = [`BOOT_CS`], data = [`BOOT_DS`]) in `mode`,
    /// entry `rip`; all other registers zero except `rflags` and the control registers.
    pub fn flat(mode: CpuMode, rip: u64) -> Self {
        let (code, cr0, cr3, cr4, efer) = match mode {
            CpuMode::Protected32 => (DESC_CODE32, CR0_PE | CR0_ET, 0, 0, 0),
            CpuMode::Long64 => (
                DESC_CODE64,
                CR0_PE | CR0_ET | CR0_PG,
                PML4_ADDR,
                CR4_PAE,
                EFER_LME | EFER_LMA,
            ),
        };
        let data = Segment::from_descriptor(BOOT_DS, DESC_DATA);
        BootSetup {
            mode,
            rip,
            rsp: 0,
            rax: 0,
            rbx: 0,
            rsi: 0,
            rflags: RFLAGS_RESERVED,
            cr0,
            cr3,
            cr4,
            efer,
            gdt: DescriptorTable { base: GDT_ADDR, limit: (gdt_entries(mode).len() * 8 - 1) as u16 },
            idt: DescriptorTable::default(),
            cs: Segment::from_descriptor(BOOT_CS, code),
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
        }
    }
}

/// The boot GDT for `mode`: null, null, code at 0x10, data at 0x18 (Linux's boot.rst layout).
pub fn gdt_entries(mode: CpuMode) -> [u64; 4] {
    let code = match mode {
        CpuMode::Protected32 => DESC_CODE32,
        CpuMode::Long64 => DESC_CODE64,
    };
    [0, 0, code, DESC_DATA]
}

/// Write the boot GDT for `mode` at [`GDT_ADDR`].
pub fn write_gdt(mem: &GuestMemory, mode: CpuMode) -> Result<(), MemoryError> {
    let mut bytes = [0u8; 32];
    for (i, d) in gdt_entries(mode).iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_ADDR, &bytes)
}

/// Write page tables identity-mapping the first 4 GiB with 2 MiB pages: a PML4 at
/// [`PML4_ADDR`] whose entry 0 points to a PDPT at [`PDPT_ADDR`], whose four entries point to
/// page directories at [`PD_ADDR`] + n × 4 KiB. Returns the value for CR3.
pub fn write_identity_page_tables(mem: &GuestMemory) -> Result<u64, MemoryError> {
    let mut pml4 = [0u8; 4096];
    pml4[0..8].copy_from_slice(&(PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE).to_le_bytes());
    mem.write(PML4_ADDR, &pml4)?;

    let mut pdpt = [0u8; 4096];
    for i in 0..4u64 {
        let pd = PD_ADDR + i * 0x1000;
        let off = i as usize * 8;
        pdpt[off..off + 8].copy_from_slice(&(pd | PTE_PRESENT | PTE_WRITABLE).to_le_bytes());
    }
    mem.write(PDPT_ADDR, &pdpt)?;

    for i in 0..4u64 {
        let mut pd = [0u8; 4096];
        for j in 0..512u64 {
            let phys = (i << 30) | (j << 21);
            let off = j as usize * 8;
            pd[off..off + 8]
                .copy_from_slice(&(phys | PTE_PRESENT | PTE_WRITABLE | PTE_PAGE_SIZE).to_le_bytes());
        }
        mem.write(PD_ADDR + i * 0x1000, &pd)?;
    }
    Ok(PML4_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_mem::{self, u64_at as read_u64};

    /// Walk the identity tables like the MMU would for a 2 MiB page.
    fn translate(m: &GuestMemory, cr3: u64, va: u64) -> Option<u64> {
        let pml4e = read_u64(m, cr3 + ((va >> 39) & 0x1ff) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = read_u64(m, (pml4e & !0xfff) + ((va >> 30) & 0x1ff) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = read_u64(m, (pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8);
        if pde & 1 == 0 || pde & PTE_PAGE_SIZE == 0 {
            return None;
        }
        Some((pde & !0x1f_ffff & ((1 << 52) - 1)) | (va & 0x1f_ffff))
    }

    #[test]
    fn identity_map_covers_4g() {
        let m = test_mem::ram(1 << 20);
        let cr3 = write_identity_page_tables(&m).unwrap();
        for va in [0u64, 0x1234, 0x10_0000, 0x1234_5678, 0xfee0_0000, 0xffff_ffff] {
            assert_eq!(translate(&m, cr3, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&m, cr3, 1 << 32), None);
        assert!(PAGE_TABLES_END <= CMDLINE_ADDR);
    }

    #[test]
    fn descriptors_decode_flat() {
        let cs = Segment::from_descriptor(BOOT_CS, DESC_CODE64);
        assert_eq!((cs.base, cs.limit, cs.type_), (0, 0xffff_ffff, 0xb));
        assert!(cs.l && !cs.db && cs.s && cs.present && cs.g && cs.dpl == 0);
        let cs32 = Segment::from_descriptor(BOOT_CS, DESC_CODE32);
        assert!(!cs32.l && cs32.db);
        let ds = Segment::from_descriptor(BOOT_DS, DESC_DATA);
        assert_eq!((ds.base, ds.limit, ds.type_), (0, 0xffff_ffff, 0x3));
        assert!(ds.db && ds.present);
        let odd = Segment::from_descriptor(8, 0x1240_9a56_789a_0005);
        assert_eq!(odd.base, 0x1256_789a);
        assert_eq!(odd.limit, 0x0_0005);
        assert!(!odd.g);
    }

    #[test]
    fn gdt_is_written() {
        let m = test_mem::ram(1 << 20);
        write_gdt(&m, CpuMode::Long64).unwrap();
        assert_eq!(read_u64(&m, GDT_ADDR + BOOT_CS as u64), DESC_CODE64);
        assert_eq!(read_u64(&m, GDT_ADDR + BOOT_DS as u64), DESC_DATA);
        let s = BootSetup::flat(CpuMode::Long64, 0x100200);
        assert_eq!(s.gdt, DescriptorTable { base: GDT_ADDR, limit: 31 });
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(s.cr4, CR4_PAE);
        assert_eq!(s.cs.selector, BOOT_CS);
        assert_eq!(s.ss.selector, BOOT_DS);
        let p = BootSetup::flat(CpuMode::Protected32, 0x100000);
        assert_eq!((p.cr0, p.cr3, p.cr4, p.efer), (CR0_PE | CR0_ET, 0, 0, 0));
    }
}
