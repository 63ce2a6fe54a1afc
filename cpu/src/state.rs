//! `CpuState`: every architectural register of one x86-64 logical processor, in one
//! `#[repr(C)]` struct so generated code can address fields by offset and snapshots can
//! serialise it directly.

use serde::{Deserialize, Serialize};

/// Index of a general-purpose register in `CpuState::gpr` (hardware encoding order).
pub mod reg {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// Segment register index (hardware encoding order, as in the ModRM `reg` field of MOV Sreg).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl Seg {
    pub const ALL: [Seg; 6] = [Seg::Es, Seg::Cs, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs];
}

/// RFLAGS bits (SDM Vol. 1, 3.4.3).
pub mod flags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const IOPL_SHIFT: u32 = 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six status flags the arithmetic instructions write.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
    /// Bits software can ever set.
    pub const WRITABLE: u64 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;
}

/// Control register bits (SDM Vol. 3, 2.5).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
    /// Bits software can change. ET is fixed at 1; writes to the reserved bits of CR0[31:0]
    /// are ignored (bits 63:32 fault).
    pub const WRITABLE: u64 = PE | MP | EM | TS | NE | WP | AM | NW | CD | PG;
}

pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    /// Protection keys for user-mode pages (SDM Vol. 3, 4.6.2).
    pub const PKE: u64 = 1 << 22;
    /// Bits this CPU can let software set; a model without a feature makes its bit
    /// reserved too.
    pub const SUPPORTED: u64 = VME
        | PVI
        | TSD
        | DE
        | PSE
        | PAE
        | MCE
        | PGE
        | PCE
        | OSFXSR
        | OSXMMEXCPT
        | UMIP
        | FSGSBASE
        | PCIDE
        | OSXSAVE
        | SMEP
        | SMAP
        | PKE;
}

pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
    pub const WRITABLE: u64 = SCE | LME | NXE;
}

/// A segment register with its hidden descriptor cache (SDM Vol. 3, 3.4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[repr(C)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor attribute bits in VMX "access rights" layout: type(0-3) S(4) DPL(5-6) P(7)
    /// AVL(12) L(13) D/B(14) G(15). Bit 16 set means "unusable" (null selector loaded).
    pub attrs: u32,
    pub limit: u32,
    pub base: u64,
}

pub mod seg_attr {
    pub const TYPE_MASK: u32 = 0xf;
    /// Code or data (as opposed to system) descriptor.
    pub const S: u32 = 1 << 4;
    pub const DPL_SHIFT: u32 = 5;
    pub const DPL_MASK: u32 = 3 << 5;
    pub const P: u32 = 1 << 7;
    pub const AVL: u32 = 1 << 12;
    pub const L: u32 = 1 << 13;
    pub const DB: u32 = 1 << 14;
    pub const G: u32 = 1 << 15;
    pub const UNUSABLE: u32 = 1 << 16;
    /// Type bits of code/data segments.
    pub const TYPE_ACCESSED: u32 = 1;
    pub const TYPE_WRITABLE: u32 = 2; // data: writable; code: readable
    pub const TYPE_EXPAND_DOWN: u32 = 4; // data: expand-down; code: conforming
    pub const TYPE_CODE: u32 = 8;
}

impl Segment {
    /// A real-mode style segment: base = selector * 16, 64 KiB limit, read/write data.
    pub fn real_mode(selector: u16, attrs: u32) -> Self {
        Segment { selector, attrs, limit: 0xffff, base: (selector as u64) << 4 }
    }
    pub fn dpl(&self) -> u8 {
        ((self.attrs & seg_attr::DPL_MASK) >> seg_attr::DPL_SHIFT) as u8
    }
    pub fn is_code(&self) -> bool {
        self.attrs & seg_attr::TYPE_CODE != 0
    }
    pub fn unusable(&self) -> bool {
        self.attrs & seg_attr::UNUSABLE != 0
    }
    pub fn default_big(&self) -> bool {
        self.attrs & seg_attr::DB != 0
    }
    pub fn long(&self) -> bool {
        self.attrs & seg_attr::L != 0
    }
}

/// GDTR/IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[repr(C)]
pub struct TableReg {
    pub base: u64,
    pub limit: u16,
}

/// The model-specific registers Linux and BIOSes touch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[repr(C)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    /// Added to the host-derived time stamp counter; `WRMSR TSC` adjusts it.
    pub tsc_offset: u64,
    pub tsc_aux: u64,
    pub apic_base: u64,
    pub pat: u64,
    pub misc_enable: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [u64; 16],
    pub mcg_status: u64,
    pub tsc_deadline: u64,
    pub spec_ctrl: u64,
    /// IA32_XSS: the supervisor state components XSAVES/XRSTORS manage.
    pub xss: u64,
    /// IA32_TSC_ADJUST: moves with every write to the TSC (SDM Vol. 3, 17.17.3).
    pub tsc_adjust: u64,
}

/// x87, MMX and SSE state, laid out close to the FXSAVE image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct FpuState {
    /// Physical registers R0–R7 as 80-bit extended reals (low 8 bytes significand, then 2 bytes
    /// sign+exponent); MMX registers alias the significands.
    pub st: [[u8; 10]; 8],
    pub fcw: u16,
    pub fsw: u16,
    /// Full 16-bit tag word (2 bits per register: 0 valid, 1 zero, 2 special, 3 empty).
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fdp: u64,
    pub fcs: u16,
    pub fds: u16,
    pub mxcsr: u32,
    pub xmm: [u128; 16],
    /// Bits 255:128 of YMM0-15 (the AVX state, XSAVE component 2).
    pub ymm_hi: [u128; 16],
}

impl Default for FpuState {
    fn default() -> Self {
        FpuState {
            st: [[0; 10]; 8],
            fcw: 0x037f,
            fsw: 0,
            ftw: 0xffff,
            fop: 0,
            fip: 0,
            fdp: 0,
            fcs: 0,
            fds: 0,
            mxcsr: 0x1f80,
            xmm: [0; 16],
            ymm_hi: [0; 16],
        }
    }
}

/// The architectural state of one logical processor.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CpuState {
    pub gpr: [u64; 16],
    pub rip: u64,
    /// RFLAGS except that the six arithmetic flags may be stale: read them through
    /// `Cpu::rflags()`, which folds in the lazily evaluated condition codes.
    pub rflags: u64,
    /// Indexed by `Seg as usize`.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub xcr0: u64,
    /// Protection-key rights for user-mode pages: AD (bit 2i) and WD (bit 2i+1) of key i.
    pub pkru: u32,
    /// XINUSE bits that stay set after XRSTOR loaded a component from memory, until one
    /// initializes it (as the host processor tracks them); components whose registers differ
    /// from their initial values count as in use besides (see `x87::in_use`).
    pub xinuse: u64,
    pub dr: [u64; 8],
    pub msr: Msrs,
    pub fpu: FpuState,
}

impl Default for CpuState {
    fn default() -> Self {
        Self::reset()
    }
}

impl CpuState {
    /// The power-on/reset state (SDM Vol. 3, Table 9-1): real mode, CS:IP = F000:FFF0 with
    /// CS base FFFF0000 so the first fetch is at the reset vector.
    pub fn reset() -> Self {
        let data = seg_attr::P | seg_attr::S | seg_attr::TYPE_WRITABLE | seg_attr::TYPE_ACCESSED;
        let code = seg_attr::P | seg_attr::S | seg_attr::TYPE_CODE | seg_attr::TYPE_WRITABLE | seg_attr::TYPE_ACCESSED;
        let mut seg = [Segment::real_mode(0, data); 6];
        seg[Seg::Cs as usize] = Segment { selector: 0xf000, attrs: code, limit: 0xffff, base: 0xffff_0000 };
        let mut gpr = [0; 16];
        // EDX holds the processor signature after reset.
        gpr[reg::RDX] = 0x0006_06a5;
        CpuState {
            gpr,
            rip: 0xfff0,
            rflags: flags::FIXED1,
            seg,
            ldtr: Segment { selector: 0, attrs: seg_attr::P | 2, limit: 0xffff, base: 0 },
            tr: Segment { selector: 0, attrs: seg_attr::P | 11, limit: 0xffff, base: 0 },
            gdtr: TableReg { base: 0, limit: 0xffff },
            idtr: TableReg { base: 0, limit: 0xffff },
            cr0: cr0::ET | cr0::CD | cr0::NW,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            xcr0: 1,
            pkru: 0,
            xinuse: 0,
            dr: [0, 0, 0, 0, 0xffff0ff0, 0x400, 0xffff0ff0, 0x400],
            msr: Msrs { pat: 0x0007_0406_0007_0406, apic_base: 0xfee0_0900, misc_enable: 1, ..Msrs::default() },
            fpu: FpuState::default(),
        }
    }

    pub fn seg(&self, s: Seg) -> &Segment {
        &self.seg[s as usize]
    }
    pub fn seg_mut(&mut self, s: Seg) -> &mut Segment {
        &mut self.seg[s as usize]
    }

    /// Current privilege level: the DPL of the SS cache (SDM Vol. 3, 5.5), which stays right
    /// through real mode (0) and v86 (3) as long as segment loads keep it so.
    pub fn cpl(&self) -> u8 {
        self.seg[Seg::Ss as usize].dpl()
    }

    pub fn protected(&self) -> bool {
        self.cr0 & cr0::PE != 0
    }
    pub fn v86(&self) -> bool {
        self.rflags & flags::VM != 0
    }
    pub fn long_mode_active(&self) -> bool {
        self.efer & efer::LMA != 0
    }
    /// 64-bit mode proper (long mode with CS.L = 1), as opposed to compatibility mode.
    pub fn in_64bit(&self) -> bool {
        self.long_mode_active() && self.seg[Seg::Cs as usize].long()
    }
    pub fn paging(&self) -> bool {
        self.cr0 & cr0::PG != 0
    }

    /// Decoder bitness of the current code segment.
    pub fn code_bitness(&self) -> u32 {
        if self.in_64bit() {
            64
        } else if self.protected() && !self.v86() && self.seg[Seg::Cs as usize].default_big() {
            32
        } else {
            16
        }
    }

    /// Width of the stack pointer used by implicit stack accesses.
    pub fn stack_width(&self) -> u32 {
        if self.in_64bit() {
            64
        } else if self.seg[Seg::Ss as usize].default_big() {
            32
        } else {
            16
        }
    }
}
