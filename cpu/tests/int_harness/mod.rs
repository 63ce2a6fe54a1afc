//! A small machine for the integer-family tests: flat RAM with a GDT, an IDT whose every
//! vector leads to its own `jmp $` stub, a TSS, identity page tables for long mode, and a way
//! to run a snippet until it reaches a `jmp $` (its end, or an exception stub).
#![allow(dead_code)]

use ferrite_cpu::segment::Descriptor;
use ferrite_cpu::state::{cr0, cr4, efer, reg, Seg, Segment, TableReg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::Cpu;
use iced_x86::code_asm::CodeAssembler;
use iced_x86::IcedError;

pub const RAM: usize = 4 << 20;
pub const GDT: u64 = 0x1000;
pub const IDT: u64 = 0x2000;
pub const TSS: u64 = 0x4000;
/// The TSS's I/O permission bitmap starts here (offset 0x68).
pub const IO_BITMAP: u64 = TSS + 0x68;
pub const PML4: u64 = 0x8000;
pub const PDPT: u64 = 0x9000;
pub const PD: u64 = 0xa000;
/// 4 KiB page table for the first 2 MiB (long mode), so tests can unmap pages.
pub const PT: u64 = 0xb000;
/// Exception stubs: vector v at STUBS + 16 * v.
pub const STUBS: u64 = 0x10000;
pub const CODE: u64 = 0x40000;
pub const STACK_TOP: u64 = 0x80000;
/// Scratch data for tests.
pub const DATA: u64 = 0x100000;
/// Scratch data reachable from real mode (DS = REAL_DATA >> 4).
pub const REAL_DATA: u64 = 0x20000;
/// The six status flags.
pub const STATUS: u64 = 0x8d5;

/// `jmp $`: where every snippet and stub ends.
const JMP_SELF: [u8; 2] = [0xeb, 0xfe];

pub const SEL_CODE64: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
pub const SEL_CODE32: u16 = 0x18;
pub const SEL_CODE64_USER: u16 = 0x2b;
pub const SEL_DATA_USER: u16 = 0x33;
pub const SEL_CODE32_USER: u16 = 0x3b;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    Protected32,
    Long,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Reached the `jmp $` after the snippet.
    Done,
    /// Reached the stub of this exception vector.
    Exception(u8),
}

pub struct Vm {
    pub cpu: Cpu,
    pub bus: FlatBus,
    pub mode: Mode,
    user: bool,
    code_end: u64,
    /// Instructions per `Cpu::run` call: a block's worth by default, so compiled blocks run
    /// one at a time; more lets them chain (the `jmp $` at the end then spins for the rest).
    pub budget: u64,
}

fn seg_desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let (b, l) = (base as u64, limit as u64);
    (l & 0xffff)
        | ((b & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((l >> 16) & 0xf) << 48)
        | (((flags & 0xf) as u64) << 52)
        | ((b >> 24) << 56)
}

fn gate(offset: u64, sel: u16) -> u64 {
    // Present, DPL 3, interrupt gate (32-bit in legacy mode, 64-bit in long mode).
    (offset & 0xffff) | ((sel as u64) << 16) | (0xeeu64 << 40) | (((offset >> 16) & 0xffff) << 48)
}

impl Vm {
    pub fn new(mode: Mode) -> Vm {
        Self::with_user(mode, false)
    }

    /// A machine running at CPL 3 (IOPL 0); exceptions are delivered to DPL 3 handlers so no
    /// stack switch is involved.
    pub fn user(mode: Mode) -> Vm {
        Self::with_user(mode, true)
    }

    fn with_user(mode: Mode, user: bool) -> Vm {
        let mut bus = FlatBus::new(RAM);
        let mut cpu = Cpu::default();
        for v in 0..256u64 {
            bus.load(STUBS + 16 * v, &JMP_SELF);
        }
        let gdt = [
            0,
            seg_desc(0, 0xfffff, 0x9b, 0xa),
            seg_desc(0, 0xfffff, 0x93, 0xc),
            seg_desc(0, 0xfffff, 0x9b, 0xc),
            0,
            seg_desc(0, 0xfffff, 0xfb, 0xa),
            seg_desc(0, 0xfffff, 0xf3, 0xc),
            seg_desc(0, 0xfffff, 0xfb, 0xc),
        ];
        for (i, d) in gdt.iter().enumerate() {
            bus.load(GDT + 8 * i as u64, &d.to_le_bytes());
        }
        let st = &mut cpu.state;
        st.gpr[reg::RDX] = 0;
        st.gpr[reg::RSP] = STACK_TOP;
        st.rip = CODE;
        match mode {
            Mode::Real => {
                for v in 0..256u64 {
                    let entry = ((STUBS >> 4) << 16) | (16 * v);
                    bus.load(4 * v, &(entry as u32).to_le_bytes());
                }
                // CS:IP = (CODE >> 4):0, SS:SP just below STACK_TOP; DS = ES = 0.
                let cs = st.seg_mut(Seg::Cs);
                cs.selector = (CODE >> 4) as u16;
                cs.base = CODE;
                st.rip = 0;
                st.gpr[reg::RSP] = 0xfff0;
                let ss = st.seg_mut(Seg::Ss);
                ss.selector = ((STACK_TOP >> 4) - 0x1000) as u16;
                ss.base = (ss.selector as u64) << 4;
            }
            Mode::Protected32 | Mode::Long => {
                let long = mode == Mode::Long;
                let (code_sel, data_sel) = match (long, user) {
                    (true, false) => (SEL_CODE64, SEL_DATA),
                    (true, true) => (SEL_CODE64_USER, SEL_DATA_USER),
                    (false, false) => (SEL_CODE32, SEL_DATA),
                    (false, true) => (SEL_CODE32_USER, SEL_DATA_USER),
                };
                let entry = |sel: u16| gdt[(sel >> 3) as usize];
                let load = |sel: u16| {
                    let mut s = Descriptor(entry(sel)).to_segment(sel);
                    s.attrs |= 1; // accessed
                    s
                };
                for v in 0..256u64 {
                    let g = gate(STUBS + 16 * v, code_sel);
                    if long {
                        bus.load(IDT + 16 * v, &g.to_le_bytes());
                        bus.load(IDT + 16 * v + 8, &((STUBS + 16 * v) >> 32).to_le_bytes());
                    } else {
                        bus.load(IDT + 8 * v, &g.to_le_bytes());
                    }
                }
                st.gdtr = TableReg { base: GDT, limit: (gdt.len() * 8 - 1) as u16 };
                st.idtr = TableReg { base: IDT, limit: if long { 0xfff } else { 0x7ff } };
                st.seg[Seg::Cs as usize] = load(code_sel);
                for s in [Seg::Ss, Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs] {
                    st.seg[s as usize] = load(data_sel);
                }
                // A busy 32/64-bit TSS whose I/O map follows the 0x68-byte header, with
                // 8 KiB of map plus the trailing 0xff byte.
                st.tr = Segment { selector: 0x40, attrs: 0x8b, limit: 0x68 + 0x2000, base: TSS };
                bus.load(TSS + 0x66, &0x68u16.to_le_bytes());
                bus.load(IO_BITMAP + 0x2000, &[0xff]);
                st.cr0 = cr0::PE | cr0::ET | cr0::NE;
                if long {
                    bus.load(PML4, &(PDPT | 7).to_le_bytes());
                    bus.load(PDPT, &(PD | 7).to_le_bytes());
                    bus.load(PD, &(PT | 7).to_le_bytes());
                    bus.load(PD + 8, &((2 << 20) | 0x87u64).to_le_bytes());
                    for p in 0..512u64 {
                        bus.load(PT + 8 * p, &((p << 12) | 7).to_le_bytes());
                    }
                    st.cr3 = PML4;
                    st.cr4 = cr4::PAE;
                    st.efer = efer::LME | efer::LMA;
                    st.cr0 |= cr0::PG;
                }
            }
        }
        let mut vm = Vm { cpu, bus, mode, user, code_end: 0, budget: 64 };
        vm.set_code(&[]);
        vm
    }

    pub fn bitness(&self) -> u32 {
        match self.mode {
            Mode::Real => 16,
            Mode::Protected32 => 32,
            Mode::Long => 64,
        }
    }

    /// Loads raw code bytes (followed by `jmp $`) at CODE and points RIP at them.
    pub fn set_code(&mut self, bytes: &[u8]) {
        self.bus.load(CODE, bytes);
        self.bus.load(CODE + bytes.len() as u64, &JMP_SELF);
        self.code_end = CODE + bytes.len() as u64;
        self.cpu.state.rip = if self.mode == Mode::Real { 0 } else { CODE };
    }

    /// Assembles a snippet at CODE.
    pub fn code(&mut self, build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) {
        let mut a = CodeAssembler::new(self.bitness()).unwrap();
        build(&mut a).unwrap();
        let ip = if self.mode == Mode::Real { 0 } else { CODE };
        let bytes = a.assemble(ip).unwrap();
        self.set_code(&bytes);
    }

    /// Linear address of the current instruction.
    pub fn linear_rip(&self) -> u64 {
        self.cpu.state.seg(Seg::Cs).base + self.cpu.state.rip
    }

    /// Runs until execution parks at a `jmp $`.
    pub fn run(&mut self) -> Stop {
        for _ in 0..10_000 {
            let lin = self.linear_rip();
            if self.bus.ram[lin as usize..lin as usize + 2] == JMP_SELF {
                if lin == self.code_end {
                    return Stop::Done;
                }
                if (STUBS..STUBS + 16 * 256).contains(&lin) {
                    return Stop::Exception(((lin - STUBS) / 16) as u8);
                }
            }
            // Several instructions per call, so compiled blocks run whole (`jmp $` spins harmlessly).
            self.cpu.run(&mut self.bus, self.budget);
        }
        panic!("snippet did not finish; rip={:#x}", self.cpu.state.rip);
    }

    /// Runs and expects the snippet to finish without exceptions.
    pub fn finish(&mut self) {
        assert_eq!(self.run(), Stop::Done, "rip={:#x}", self.cpu.state.rip);
    }

    /// The `i`th stack slot of the exception frame (error code first, if any).
    pub fn frame(&self, i: u64) -> u64 {
        let width = match self.mode {
            Mode::Real => 2,
            Mode::Protected32 => 4,
            Mode::Long => 8,
        };
        let sp =
            self.cpu.state.seg(Seg::Ss).base + (self.cpu.state.gpr[reg::RSP] & if width == 2 { 0xffff } else { !0 });
        let at = (sp + i * width) as usize;
        let mut b = [0u8; 8];
        b[..width as usize].copy_from_slice(&self.bus.ram[at..at + width as usize]);
        u64::from_le_bytes(b)
    }

    /// Address of the first instruction of the snippet as RIP sees it.
    pub fn code_ip(&self) -> u64 {
        if self.mode == Mode::Real {
            0
        } else {
            CODE
        }
    }

    /// Sets general registers and the status flags.
    pub fn preset(&mut self, regs: &[(usize, u64)], status: u64) {
        for &(r, v) in regs {
            self.cpu.state.gpr[r] = v;
        }
        let f = self.cpu.rflags();
        self.cpu.set_rflags((f & !STATUS) | status);
    }

    /// The six status flags.
    pub fn status(&self) -> u64 {
        self.cpu.rflags() & STATUS
    }

    pub fn is_user(&self) -> bool {
        self.user
    }

    pub fn gpr(&self, r: usize) -> u64 {
        self.cpu.state.gpr[r]
    }

    pub fn flags(&self) -> u64 {
        self.cpu.rflags()
    }

    pub fn read(&self, addr: u64, len: usize) -> &[u8] {
        &self.bus.ram[addr as usize..addr as usize + len]
    }

    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        self.bus.load(addr, bytes);
    }

    /// Makes the 4 KiB page at `addr` (below 2 MiB) read-only in long mode.
    pub fn write_protect(&mut self, addr: u64) {
        assert!(addr < 2 << 20 && self.mode == Mode::Long);
        self.bus.load(PT + 8 * (addr >> 12), &((addr & !0xfff) | 5).to_le_bytes());
        self.cpu.flush_tlb(false);
    }

    /// Marks the 4 KiB page at `addr` (below 2 MiB) not present in long mode.
    pub fn unmap(&mut self, addr: u64) {
        assert!(addr < 2 << 20 && self.mode == Mode::Long);
        self.bus.load(PT + 8 * (addr >> 12), &0u64.to_le_bytes());
        self.cpu.flush_tlb(false);
    }
}
