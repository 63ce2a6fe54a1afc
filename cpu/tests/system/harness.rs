//! A small machine for system-instruction tests: flat RAM with a GDT, an IDT whose every
//! vector leads to a `hlt` stub (so the vector taken is read back from RIP), a TSS, and
//! identity-mapped 2 MiB pages for long mode.

use ferrite_cpu::exception::pushes_error_code;
use ferrite_cpu::segment::Descriptor;
use ferrite_cpu::state::{cr0, cr4, efer, reg, seg_attr, Seg, Segment, TableReg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::BlockEncoderOptions;

pub const GDT: u64 = 0x1000;
pub const GDT_LIMIT: u16 = 32 * 8 - 1;
pub const IDT: u64 = 0x2000;
pub const TSS: u64 = 0x4000;
pub const LDT: u64 = 0x5000;
/// Ring-0 stack top (TSS RSP0/ESP0).
pub const KSTACK: u64 = 0x7ff0;
/// Vector v's handler is a `hlt` at HANDLERS + 16 * v.
pub const HANDLERS: u64 = 0x8000;
/// Real-mode code goes below 64 KiB; everything else at 1 MiB.
pub const REAL_CODE: u64 = 0xa000;
pub const CODE: u64 = 0x10_0000;
/// A second code area (SYSCALL/SYSENTER targets).
pub const KCODE: u64 = 0x11_0000;
pub const DATA: u64 = 0x2_0000;
pub const USTACK: u64 = 0x3_fff0;
pub const PML4: u64 = 0x1_0000;
pub const PD: u64 = 0x1_2000;
pub const RAM: usize = 8 << 20;

/// GDT selectors. User selectors carry RPL 3. The layout suits SYSCALL/SYSRET with
/// STAR[47:32] = KCODE64 and STAR[63:48] = UCODE32 & !3.
pub mod sel {
    pub const KCODE32: u16 = 0x08;
    pub const KDATA: u16 = 0x10;
    pub const KCODE64: u16 = 0x18;
    pub const KDATA64: u16 = 0x20;
    pub const UCODE32: u16 = 0x2b;
    pub const UDATA: u16 = 0x33;
    pub const UCODE64: u16 = 0x3b;
    pub const TSS: u16 = 0x40;
    pub const LDT: u16 = 0x50;
    // GDT indices from 12 (selector 0x60) on are free for tests.
}

/// Access bytes (P, DPL, S, type) and flag nibbles (G, D/B, L) for `desc`.
pub mod acc {
    pub const CODE0: u8 = 0x9b;
    pub const DATA0: u8 = 0x93;
    pub const CODE3: u8 = 0xfb;
    pub const DATA3: u8 = 0xf3;
    pub const TSS_AVAIL: u8 = 0x89;
    pub const LDT: u8 = 0x82;
    pub const FLAGS32: u8 = 0xc;
    pub const FLAGS64: u8 = 0xa;
}

/// An 8-byte segment descriptor.
pub fn desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let (b, l) = (base as u64, limit as u64);
    (l & 0xffff)
        | ((b & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((l >> 16) & 0xf) << 48)
        | (((flags & 0xf) as u64) << 52)
        | ((b >> 24) << 56)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    Prot32,
    Long64,
}

/// An exception delivered to one of the `hlt` stubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub vector: u8,
    pub error: Option<u64>,
    /// The return address the event pushed.
    pub rip: u64,
}

pub struct Machine {
    pub cpu: Cpu,
    pub bus: FlatBus,
    pub mode: Mode,
    /// Address of the instruction the test code marked (`mark` label), if any.
    pub mark: u64,
}

pub fn segment(selector: u16, d: u64) -> Segment {
    Descriptor(d).to_segment(selector)
}

impl Machine {
    /// A CPU in `mode` at privilege `cpl` (0 or 3; real mode is always 0).
    pub fn new(mode: Mode, cpl: u8) -> Self {
        let mut m = Machine { cpu: Cpu::default(), bus: FlatBus::new(RAM), mode, mark: 0 };
        m.bus.ram[HANDLERS as usize..HANDLERS as usize + 0x1000].fill(0xf4);
        let long = mode == Mode::Long64;
        let gdt = [
            0,
            desc(0, 0xfffff, acc::CODE0, acc::FLAGS32),
            desc(0, 0xfffff, acc::DATA0, acc::FLAGS32),
            desc(0, 0xfffff, acc::CODE0, acc::FLAGS64),
            desc(0, 0xfffff, acc::DATA0, acc::FLAGS32),
            desc(0, 0xfffff, acc::CODE3, acc::FLAGS32),
            desc(0, 0xfffff, acc::DATA3, acc::FLAGS32),
            desc(0, 0xfffff, acc::CODE3, acc::FLAGS64),
            desc(TSS as u32, 0x67, acc::TSS_AVAIL, 0),
            0,
            desc(LDT as u32, 0x1f, acc::LDT, 0),
            0,
        ];
        for (i, d) in gdt.iter().enumerate() {
            m.write_gdt(i, *d);
        }
        let st = &mut m.cpu.state;
        st.gdtr = TableReg { base: GDT, limit: GDT_LIMIT };
        st.gpr[reg::RDX] = 0;
        if mode == Mode::Real {
            for v in 0..256u64 {
                let off = (HANDLERS + 16 * v) as u32;
                m.bus.load(v * 4, &off.to_le_bytes());
            }
            for s in Seg::ALL {
                let attrs = st.seg(s).attrs;
                *st.seg_mut(s) = Segment::real_mode(0, attrs);
            }
            st.idtr = TableReg { base: 0, limit: 0x3ff };
            st.gpr[reg::RSP] = 0x7000;
            st.rip = REAL_CODE;
            return m;
        }
        // IDT: interrupt gates to the stubs, through the ring-0 code segment of the mode. DPL 3
        // lets INT3 from ring 3 end a test.
        let code_sel = if long { sel::KCODE64 } else { sel::KCODE32 };
        for v in 0..256u64 {
            let off = HANDLERS + 16 * v;
            let lo = (off & 0xffff) | ((code_sel as u64) << 16) | (0xee << 40) | ((off >> 16) << 48);
            if long {
                m.bus.load(IDT + v * 16, &lo.to_le_bytes());
                m.bus.load(IDT + v * 16 + 8, &(off >> 32).to_le_bytes());
            } else {
                m.bus.load(IDT + v * 8, &lo.to_le_bytes());
            }
        }
        // Ring-0 stack in the TSS (ESP0/SS0, or RSP0).
        if long {
            m.bus.load(TSS + 4, &KSTACK.to_le_bytes());
        } else {
            m.bus.load(TSS + 4, &(KSTACK as u32).to_le_bytes());
            m.bus.load(TSS + 8, &(sel::KDATA as u32).to_le_bytes());
        }
        // Identity map of the first 8 MiB with user-accessible 2 MiB pages.
        m.bus.load(PML4, &((PML4 + 0x1000) | 7).to_le_bytes());
        m.bus.load(PML4 + 0x1000, &(PD | 7).to_le_bytes());
        for i in 0..4u64 {
            m.bus.load(PD + i * 8, &((i << 21) | 0x87).to_le_bytes());
        }
        let st = &mut m.cpu.state;
        st.idtr = TableReg { base: IDT, limit: if long { 0xfff } else { 0x7ff } };
        st.tr = Segment { selector: sel::TSS, attrs: seg_attr::P | 11, limit: 0x67, base: TSS };
        st.cr0 = cr0::PE | cr0::ET | cr0::NE;
        if long {
            st.cr0 |= cr0::PG;
            st.cr4 = cr4::PAE;
            st.cr3 = PML4;
            st.efer = efer::LME | efer::LMA | efer::SCE;
        }
        let (cs, ss) = match (long, cpl) {
            (false, 0) => (sel::KCODE32, sel::KDATA),
            (true, 0) => (sel::KCODE64, sel::KDATA64),
            (false, _) => (sel::UCODE32, sel::UDATA),
            (true, _) => (sel::UCODE64, sel::UDATA),
        };
        m.set_seg(Seg::Cs, cs);
        for s in [Seg::Ss, Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs] {
            m.set_seg(s, ss);
        }
        m.cpu.state.gpr[reg::RSP] = if cpl == 0 { KSTACK - 0x100 } else { USTACK };
        m.cpu.state.rip = CODE;
        m
    }

    /// A protected-mode CPU switched to virtual-8086 mode: every segment is selector 0x1000
    /// with base `base` (CPL 3, 64 KiB), RIP 0 and SP 0x8000; code goes at `base` with
    /// [`Machine::code_bits`] (16-bit).
    pub fn v86(base: u64) -> Self {
        use seg_attr::{DPL_SHIFT, P, S, TYPE_ACCESSED, TYPE_WRITABLE};
        let mut m = Machine::new(Mode::Prot32, 0);
        let st = &mut m.cpu.state;
        st.rflags |= ferrite_cpu::state::flags::VM;
        for s in Seg::ALL {
            let attrs = P | S | TYPE_WRITABLE | TYPE_ACCESSED | (3 << DPL_SHIFT);
            *st.seg_mut(s) = Segment { selector: 0x1000, attrs, limit: 0xffff, base };
        }
        st.rip = 0;
        st.gpr[reg::RSP] = 0x8000;
        m
    }

    /// Loads a segment register's cache from the GDT entry `selector` names.
    pub fn set_seg(&mut self, s: Seg, selector: u16) {
        let d = self.read_gdt((selector >> 3) as usize);
        self.cpu.state.seg[s as usize] = segment(selector, d);
    }

    pub fn write_gdt(&mut self, index: usize, d: u64) {
        self.bus.load(GDT + index as u64 * 8, &d.to_le_bytes());
    }

    pub fn read_gdt(&self, index: usize) -> u64 {
        self.bus.read_u64(GDT + index as u64 * 8)
    }

    pub fn bits(&self) -> u32 {
        match self.mode {
            Mode::Real => 16,
            Mode::Prot32 => 32,
            Mode::Long64 => 64,
        }
    }

    /// Assembles code for the current mode at RIP (the label handed to `f` may mark an
    /// instruction; its address lands in `mark`) and loads it.
    pub fn code(&mut self, f: impl FnOnce(&mut CodeAssembler, &mut CodeLabel)) -> &mut Self {
        let ip = self.cpu.state.seg(Seg::Cs).base + self.cpu.state.rip;
        self.code_at(ip, f)
    }

    pub fn code_at(&mut self, ip: u64, f: impl FnOnce(&mut CodeAssembler, &mut CodeLabel)) -> &mut Self {
        self.code_bits(ip, self.bits(), f)
    }

    pub fn code_bits(&mut self, ip: u64, bits: u32, f: impl FnOnce(&mut CodeAssembler, &mut CodeLabel)) -> &mut Self {
        let mut a = CodeAssembler::new(bits).unwrap();
        let mut mark = a.create_label();
        f(&mut a, &mut mark);
        let r = a.assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        if let Ok(addr) = r.label_ip(&mark) {
            self.mark = addr;
        }
        self.bus.load(ip, &r.inner.code_buffer);
        self
    }

    pub fn run(&mut self) -> RunExit {
        self.cpu.run(&mut self.bus, 10_000)
    }

    /// Runs to HLT and returns the exception whose stub halted the CPU, if any.
    pub fn run_to_halt(&mut self) -> Option<Taken> {
        assert_eq!(self.run(), RunExit::Halted, "did not halt");
        self.taken()
    }

    pub fn taken(&self) -> Option<Taken> {
        let st = &self.cpu.state;
        let lin = st.seg(Seg::Cs).base + st.rip - 1;
        if !(HANDLERS..HANDLERS + 0x1000).contains(&lin) {
            return None;
        }
        let vector = ((lin - HANDLERS) / 16) as u8;
        let (width, mask) = match self.mode {
            Mode::Real => (2, 0xffff),
            Mode::Prot32 => (4, 0xffff_ffff),
            Mode::Long64 => (8, u64::MAX),
        };
        let sp = st.seg(Seg::Ss).base + (st.gpr[reg::RSP] & mask);
        let slot = |i: u64| self.bus.read_u64(sp + i * width) & mask;
        let has_error = self.mode != Mode::Real && pushes_error_code(vector);
        let (error, rip) = if has_error { (Some(slot(0)), slot(1)) } else { (None, slot(0)) };
        Some(Taken { vector, error, rip })
    }

    /// Asserts the code faulted at the marked instruction with `vector` and `error`.
    pub fn expect_fault(&mut self, vector: u8, error: Option<u64>) {
        let t = self.run_to_halt().expect("no exception taken");
        assert_eq!(t, Taken { vector, error, rip: self.mark }, "unexpected event");
    }

    /// Asserts the code ran to its own `hlt` without an exception.
    pub fn expect_halt(&mut self) {
        let t = self.run_to_halt();
        assert_eq!(t, None, "unexpected exception");
    }

    pub fn gpr(&self, r: usize) -> u64 {
        self.cpu.state.gpr[r]
    }

    pub fn read(&self, addr: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&self.bus.ram[addr as usize..addr as usize + size]);
        u64::from_le_bytes(b)
    }
}

pub const GP: u8 = 13;
pub const UD: u8 = 6;
pub const NP: u8 = 11;
pub const DB: u8 = 1;
