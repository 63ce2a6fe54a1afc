//! The test machine both sides run: one guest-physical memory image per CPU mode, with
//! descriptor tables, exception handlers that halt, page tables, a stack and a data area.
//!
//! Layout (guest-physical):
//! - 0x0000  real-mode IVT (vector v → 0300:v*16)
//! - 0x0500  GDT
//! - 0x1000  IDT (protected/long mode), 256 gates
//! - 0x3000  handlers: vector v at 0x3000 + v*16, each a HLT
//! - 0x4000  long-mode page tables (PML4, PDPT, PD: 0–4 MiB mapped with 2 MiB pages; the rest
//!           of the address space is not present, so accesses there raise #PF)
//! - 0x8000..0x10000 stack (rSP starts at STACK_TOP)
//! - 0x10000..0x20000 data area (base register points at DATA_BASE, its middle)
//! - 0x20000 code under test

use ferrite_cpu::state::{cr0, cr4, efer, flags, reg, seg_attr::*, CpuState, Seg, Segment, TableReg};

pub const MEM_SIZE: usize = 4 << 20;
pub const GDT: u64 = 0x500;
pub const IDT: u64 = 0x1000;
pub const HANDLERS: u64 = 0x3000;
pub const PML4: u64 = 0x4000;
pub const STACK_TOP: u64 = 0xf000;
pub const DATA_LO: u64 = 0x10000;
pub const DATA_BASE: u64 = 0x18000;
pub const CODE: u64 = 0x20000;

/// Selectors in the GDT.
pub const CODE32: u16 = 0x08;
pub const DATA32: u16 = 0x10;
pub const CODE64: u16 = 0x18;
pub const CODE16: u16 = 0x28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    Protected32,
    Long64,
}

impl Mode {
    pub fn bitness(self) -> u32 {
        match self {
            Mode::Real => 16,
            Mode::Protected32 => 32,
            Mode::Long64 => 64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Real => "real",
            Mode::Protected32 => "prot32",
            Mode::Long64 => "long64",
        }
    }
}

/// Builds a code/data descriptor (SDM Vol. 3, 3.4.5).
fn descriptor(base: u32, limit: u32, attrs: u32) -> u64 {
    let (limit, g) = if limit > 0xfffff { (limit >> 12, G) } else { (limit, 0) };
    let attrs = attrs | g;
    (limit as u64 & 0xffff)
        | ((base as u64 & 0xff_ffff) << 16)
        | (((attrs & 0xff) as u64) << 40)
        | (((limit >> 16) as u64 & 0xf) << 48)
        | ((((attrs >> 12) & 0xf) as u64) << 52)
        | (((base >> 24) as u64) << 56)
}

const CODE_ATTRS: u32 = P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED;
const DATA_ATTRS: u32 = P | S | TYPE_WRITABLE | TYPE_ACCESSED;

fn put(mem: &mut [u8], addr: u64, bytes: &[u8]) {
    mem[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
}

/// The memory image for `mode`, without the code under test.
pub fn memory(mode: Mode) -> Vec<u8> {
    let mut m = vec![0u8; MEM_SIZE];
    // Handlers: HLT (0xF4) padded with HLTs.
    for v in 0..256u64 {
        put(&mut m, HANDLERS + v * 16, &[0xf4; 16]);
        // Real-mode IVT: segment 0x300, offset v*16.
        let ivt = ((0x300u32) << 16) | (v as u32 * 16);
        put(&mut m, v * 4, &ivt.to_le_bytes());
    }
    let gdt = [
        0,
        descriptor(0, 0xffff_ffff, CODE_ATTRS | DB),
        descriptor(0, 0xffff_ffff, DATA_ATTRS | DB),
        descriptor(0, 0xfffff, CODE_ATTRS | L) | (1 << 55),
        descriptor(0, 0xffff_ffff, DATA_ATTRS | DB),
        // 16-bit code based at the code area, so far transfers to it land on the planted HLT.
        descriptor(CODE as u32, 0xffff, CODE_ATTRS),
        descriptor(0, 0xffff, DATA_ATTRS),
    ];
    for (i, d) in gdt.iter().enumerate() {
        put(&mut m, GDT + i as u64 * 8, &d.to_le_bytes());
    }
    for v in 0..256u64 {
        let h = HANDLERS + v * 16;
        match mode {
            Mode::Real => {}
            Mode::Protected32 => {
                // 32-bit interrupt gate, DPL 3 so INT n from any level reaches it.
                let gate = (h & 0xffff) | ((CODE32 as u64) << 16) | (0xeeu64 << 40) | ((h >> 16) << 48);
                put(&mut m, IDT + v * 8, &gate.to_le_bytes());
            }
            Mode::Long64 => {
                let lo = (h & 0xffff) | ((CODE64 as u64) << 16) | (0xeeu64 << 40) | (((h >> 16) & 0xffff) << 48);
                put(&mut m, IDT + v * 16, &lo.to_le_bytes());
                put(&mut m, IDT + v * 16 + 8, &(h >> 32).to_le_bytes());
            }
        }
    }
    if mode == Mode::Long64 {
        let pdpt = PML4 + 0x1000;
        let pd = PML4 + 0x2000;
        put(&mut m, PML4, &(pdpt | 3).to_le_bytes());
        put(&mut m, pdpt, &(pd | 3).to_le_bytes());
        put(&mut m, pd, &(0x83u64).to_le_bytes());
        put(&mut m, pd + 8, &((2 << 20) | 0x83u64).to_le_bytes());
    }
    m
}

fn seg(selector: u16, base: u64, limit: u32, attrs: u32) -> Segment {
    Segment { selector, base, limit, attrs }
}

/// Initial architectural state for `mode` (registers other than RIP/RSP/RFLAGS are the
/// generator's business).
pub fn state(mode: Mode) -> CpuState {
    let mut st = CpuState::reset();
    st.gpr = [0; 16];
    st.rflags = flags::FIXED1;
    st.cr0 = cr0::ET | cr0::NE;
    match mode {
        Mode::Real => {
            st.seg[Seg::Cs as usize] = seg(0x2000, 0x20000, 0xffff, CODE_ATTRS);
            st.seg[Seg::Ss as usize] = seg(0, 0, 0xffff, DATA_ATTRS);
            for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs] {
                st.seg[s as usize] = seg(0x1000, 0x10000, 0xffff, DATA_ATTRS);
            }
            st.rip = 0;
            st.idtr = TableReg { base: 0, limit: 0x3ff };
        }
        Mode::Protected32 | Mode::Long64 => {
            st.cr0 |= cr0::PE;
            st.gdtr = TableReg { base: GDT, limit: 7 * 8 - 1 };
            let data = seg(DATA32, 0, 0xffff_ffff, DATA_ATTRS | DB | G);
            for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs, Seg::Ss] {
                st.seg[s as usize] = data;
            }
            st.rip = CODE;
            if mode == Mode::Protected32 {
                st.seg[Seg::Cs as usize] = seg(CODE32, 0, 0xffff_ffff, CODE_ATTRS | DB | G);
                st.idtr = TableReg { base: IDT, limit: 256 * 8 - 1 };
            } else {
                st.seg[Seg::Cs as usize] = seg(CODE64, 0, 0xffff_ffff, CODE_ATTRS | L | G);
                st.idtr = TableReg { base: IDT, limit: 256 * 16 - 1 };
                st.cr0 |= cr0::PG | cr0::WP;
                st.cr3 = PML4;
                st.cr4 = cr4::PAE;
                st.efer = efer::LME | efer::LMA | efer::SCE | efer::NXE;
            }
        }
    }
    // TR and LDTR as the CPU leaves them after reset are fine for these tests; KVM wants a
    // usable busy TSS type in TR for protected mode.
    st.tr = seg(0, 0, 0xffff, P | 11);
    st.ldtr = seg(0, 0, 0xffff, P | 2);
    st.gpr[reg::RSP] = STACK_TOP;
    st
}
