//! Harness of the x87 differential tests: random operands, running generated code natively
//! (an executable page entered with inline asm) and in the interpreter, and comparing.

use ferrite_cpu::state::{cr0, cr4, efer, reg, seg_attr, Seg, Segment};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use iced_x86::{BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, Register};

// ---------------------------------------------------------------------------------------
// Random numbers

pub struct Rng(pub u64);

impl Rng {
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("X87_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        println!("{test}: X87_SEED={seed}");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A significand with interesting bit patterns: random, sparse, or runs of ones.
    pub fn sig(&mut self) -> u64 {
        match self.below(4) {
            0 => self.next(),
            1 => (1 << 63) | (self.next() & self.next() & self.next()),
            2 => (1 << 63) | (u64::MAX >> self.below(64)),
            _ => (1 << 63) | (self.next() & !((1u64 << self.below(64)) - 1)),
        }
    }
    /// An 80-bit operand: mostly normal numbers near 1, plus every special class.
    pub fn f80(&mut self) -> [u8; 10] {
        let sign = (self.below(2) as u16) << 15;
        let (sig, exp): (u64, u16) = match self.below(40) {
            0 => (0, 0),
            1 => (1 << 63, 0x7fff),
            2 => ((3 << 62) | (self.next() >> 2), 0x7fff),
            3 => ((1 << 63) | (self.next() >> 2) | 1, 0x7fff),
            4 | 5 => (self.next() >> (1 + self.below(63)), 0),
            6 => ((1 << 63) | self.next(), 0),
            7 => (self.next() >> 1, 1 + self.below(0x7ffe) as u16),
            8 | 9 => (self.sig() | 1 << 63, 0x7ffe - self.below(70) as u16),
            10 | 11 => (self.sig() | 1 << 63, 1 + self.below(70) as u16),
            12 | 13 => {
                let v = self.below(1 << 20) + 1;
                (v << v.leading_zeros(), 0x3fff + 63 - v.leading_zeros() as u16)
            }
            14 => (self.sig() | 1 << 63, 1 + self.below(0x7ffe) as u16),
            _ => (self.sig() | 1 << 63, 0x3fff - 40 + self.below(80) as u16),
        };
        f80_bytes(sig, exp | sign)
    }
    /// A second operand, often close in magnitude to the first (cancellation, ties).
    pub fn f80_near(&mut self, a: &[u8; 10]) -> [u8; 10] {
        if self.below(2) == 0 {
            return self.f80();
        }
        let se = u16::from_le_bytes([a[8], a[9]]);
        let exp = (se & 0x7fff).clamp(1, 0x7ffe);
        let e = (exp as i32 + self.below(130) as i32 - 65).clamp(1, 0x7ffe) as u16;
        let sig = if self.below(4) == 0 {
            u64::from_le_bytes(a[..8].try_into().unwrap()) ^ self.below(16)
        } else {
            self.sig()
        };
        f80_bytes(sig | 1 << 63, e | (self.below(2) as u16) << 15)
    }
}

pub fn f80_bytes(sig: u64, se: u16) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&sig.to_le_bytes());
    b[8..].copy_from_slice(&se.to_le_bytes());
    b
}

// ---------------------------------------------------------------------------------------
// Running code natively and in the interpreter

/// Data block layout (offsets from RDI).
pub const D_CW: i64 = 0;
pub const D_A: i64 = 16;
pub const D_B: i64 = 32;
pub const D_MEM: i64 = 48;
pub const D_SAVE: i64 = 64; // 108-byte FNSAVE image
pub const D_FLAGS: i64 = 200; // SETB, SETE, SETP, SETO, SETS results
pub const D_AUX: i64 = 256; // 512-byte FXSAVE area (64-byte aligned)
pub const DATA_LEN: usize = 1024;

pub const GUEST_CODE: u64 = 0x1000;
pub const GUEST_DATA: u64 = 0x10000;

#[repr(C, align(64))]
pub struct Data(pub [u8; DATA_LEN]);

pub fn m(disp: i64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RDI, disp)
}

/// Assembles a 64-bit routine (without the final RET, which `Native` appends).
pub fn assemble(insns: &[Instruction]) -> Vec<u8> {
    let block = InstructionBlock::new(insns, GUEST_CODE);
    BlockEncoder::encode(64, block, BlockEncoderOptions::NONE).expect("encodable test code").code_buffer
}

pub struct Native {
    page: *mut u8,
}

impl Native {
    pub fn new() -> Native {
        // SAFETY: an anonymous private mapping with no preconditions; the result is checked.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of an executable page failed");
        Native { page: p as *mut u8 }
    }

    /// Runs `code` + RET natively with RDI = `data`.
    pub fn run(&self, code: &[u8], data: &mut Data) {
        assert!(code.len() < 4000);
        // SAFETY: `page` is a private RWX mapping of 4096 bytes owned by `self`; the copy
        // fits (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), self.page, code.len());
            *self.page.add(code.len()) = 0xc3; // RET
        }
        // SAFETY: the page holds straight-line x87/SETcc/FXSAVE code that touches memory only
        // through RDI (pointing at `data`, 1024 bytes, 64-byte aligned, offsets < 1024), ends
        // in RET, leaves the x87 stack empty with the default control word (it ends with
        // FNSAVE, which reinitializes the FPU) and clobbers only caller-saved registers.
        unsafe {
            core::arch::asm!(
                "call {f}",
                f = in(reg) self.page,
                in("rdi") data.0.as_mut_ptr(),
                clobber_abi("C"),
            );
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `new`, no longer used.
        unsafe {
            libc::munmap(self.page as *mut libc::c_void, 4096);
        }
    }
}

pub struct Emu {
    pub cpu: Cpu,
    pub bus: FlatBus,
}

impl Emu {
    /// A CPU in 64-bit mode (flat segments, paging off for the test) with CR0.NE set.
    pub fn new() -> Emu {
        let mut cpu = Cpu::default();
        let s = &mut cpu.state;
        s.cr0 = cr0::PE | cr0::ET | cr0::NE;
        s.cr4 = cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
        s.efer = efer::LME | efer::LMA;
        s.xcr0 = 3;
        let code = seg_attr::P | seg_attr::S | seg_attr::TYPE_CODE | seg_attr::TYPE_WRITABLE | seg_attr::L;
        let data = seg_attr::P | seg_attr::S | seg_attr::TYPE_WRITABLE | seg_attr::DB;
        for sg in Seg::ALL {
            *s.seg_mut(sg) = Segment { selector: 0, attrs: data, limit: 0xffff_ffff, base: 0 };
        }
        *s.seg_mut(Seg::Cs) = Segment { selector: 0x08, attrs: code, limit: 0xffff_ffff, base: 0 };
        s.gpr[reg::RSP] = 0x8000;
        Emu { cpu, bus: FlatBus::new(1 << 20) }
    }

    /// Loads `code` once (call `run` with the instruction count afterwards).
    pub fn load(&mut self, code: &[u8]) {
        self.bus.load(GUEST_CODE, code);
        self.cpu.invalidate_code(GUEST_CODE, 4096);
    }

    pub fn run(&mut self, count: u64, data: &mut Data) {
        self.bus.load(GUEST_DATA, &data.0);
        self.cpu.state.rip = GUEST_CODE;
        self.cpu.state.gpr[reg::RDI] = GUEST_DATA;
        let exit = self.cpu.run(&mut self.bus, count);
        assert_eq!(exit, RunExit::Budget);
        data.0.copy_from_slice(&self.bus.ram[GUEST_DATA as usize..GUEST_DATA as usize + DATA_LEN]);
    }
}

/// Runs one routine both ways and returns (native data, emulated data).
pub struct Pair {
    native: Native,
    emu: Emu,
    count: u64,
    code: Vec<u8>,
}

impl Pair {
    pub fn new(insns: &[Instruction]) -> Pair {
        let code = assemble(insns);
        let mut emu = Emu::new();
        emu.load(&code);
        Pair { native: Native::new(), emu, count: insns.len() as u64, code }
    }
    pub fn run(&mut self, data: &Data) -> (Data, Data) {
        let mut n = Data(data.0);
        let mut e = Data(data.0);
        self.native.run(&self.code, &mut n);
        self.emu.run(self.count, &mut e);
        (n, e)
    }
}

/// The instruction wrapper every case uses: FNINIT, load operands, FLDCW, the instruction(s)
/// under test, EFLAGS snapshot, FNSAVE.
pub fn routine(nargs: usize, body: &[Instruction]) -> Vec<Instruction> {
    // Empty registers keep old contents, which FNSAVE stores: zero them all first. The XOR gives
    // EFLAGS a known value on both sides (x87 arithmetic leaves EFLAGS alone, and the host's
    // flags at the call depend on the compiler's code around it).
    let mut v = vec![Instruction::with2(Code::Xor_r32_rm32, Register::EAX, Register::EAX).unwrap(), Instruction::with(Code::Fninit)];
    v.extend([Instruction::with(Code::Fldz); 8]);
    v.push(Instruction::with(Code::Fninit));
    if nargs >= 2 {
        v.push(Instruction::with1(Code::Fld_m80fp, m(D_B)).unwrap());
    }
    if nargs >= 1 {
        v.push(Instruction::with1(Code::Fld_m80fp, m(D_A)).unwrap());
    }
    v.push(Instruction::with1(Code::Fldcw_m2byte, m(D_CW)).unwrap());
    v.extend_from_slice(body);
    for (i, code) in
        [Code::Setb_rm8, Code::Sete_rm8, Code::Setp_rm8, Code::Seto_rm8, Code::Sets_rm8].into_iter().enumerate()
    {
        v.push(Instruction::with1(code, m(D_FLAGS + i as i64)).unwrap());
    }
    v.push(Instruction::with1(Code::Fnsave_m108byte, m(D_SAVE)).unwrap());
    v
}

/// The bytes of the FNSAVE image worth comparing: everything but FIP/FCS/FDP/FDS, which hold
/// addresses that differ between host and guest. FOP (same code bytes) is compared.
pub fn saved_state(d: &Data) -> Vec<u8> {
    let s = &d.0[D_SAVE as usize..D_SAVE as usize + 108];
    let mut v = s[0..12].to_vec();
    v.extend_from_slice(&s[18..20]); // FOP
    v.extend_from_slice(&s[28..108]);
    v
}

/// FOP as saved; the host (AMD) leaves it 0 after FABS/FCHS of an unnormal, a quirk not
/// modelled, so a native 0 is not compared.
pub fn same_fop(n: &Data, e: &Data) -> bool {
    let at = D_SAVE as usize + 18;
    let fop = |d: &Data| u16::from_le_bytes([d.0[at], d.0[at + 1]]);
    fop(n) == 0 || fop(n) == fop(e)
}

/// Some AMD processors (this project's CI machines among them) raise an unmasked underflow
/// when FPREM, FPREM1 or FSCALE hands a denormal ST(0) back unchanged (a divisor of infinity,
/// a scale of zero): they store it with the exponent biased by 6000H and set UE and ES.
/// ferrite follows the SDM's tables for these instructions, which return ST(0) with only
/// the denormal-operand flag, as Intel's processors do; the SDM wins over the oracle here.
fn amd_underflow_of_a_passed_through_denormal(name: &str, cw: u16, a: &[u8; 10], native: &Data, emulated: &Data) -> bool {
    const UM: u16 = 1 << 4;
    const UE: u16 = 1 << 4;
    let fsw = |d: &Data| u16::from_le_bytes([d.0[D_SAVE as usize + 4], d.0[D_SAVE as usize + 5]]);
    let denormal = u16::from_le_bytes([a[8], a[9]]) & 0x7fff == 0 && a[..8].iter().any(|&b| b != 0);
    crate::native::host_is_amd()
        && matches!(name, "fprem" | "fprem1" | "fscale")
        && cw & UM == 0
        && denormal
        && fsw(native) & UE != 0
        && fsw(emulated) & UE == 0
}

pub fn without_fop(d: &Data) -> Vec<u8> {
    let mut v = saved_state(d);
    v[12] = 0;
    v[13] = 0;
    v
}

pub fn describe(d: &Data) -> String {
    let s = &d.0[D_SAVE as usize..];
    let mut out = format!(
        "fcw {:04x} fsw {:04x} ftw {:04x} fop {:03x} flags {:?} mem {:02x?}\n",
        u16::from_le_bytes([s[0], s[1]]),
        u16::from_le_bytes([s[4], s[5]]),
        u16::from_le_bytes([s[8], s[9]]),
        u16::from_le_bytes([s[18], s[19]]),
        &d.0[D_FLAGS as usize..D_FLAGS as usize + 5],
        &d.0[D_MEM as usize..D_MEM as usize + 10],
    );
    for i in 0..8 {
        let r = &s[28 + 10 * i..38 + 10 * i];
        out += &format!(
            "  st{i} {:04x}:{:016x}\n",
            u16::from_le_bytes([r[8], r[9]]),
            u64::from_le_bytes(r[..8].try_into().unwrap())
        );
    }
    out
}

/// Control words to test: every rounding mode × precision control, all exceptions masked,
/// plus a few with random unmasked exceptions.
pub fn control_words(rng: &mut Rng) -> Vec<u16> {
    let mut v = Vec::new();
    for rc in 0..4u16 {
        for pc in [0u16, 2, 3] {
            v.push(0x3f | pc << 8 | rc << 10);
        }
    }
    for _ in 0..4 {
        v.push((rng.below(64) as u16) | (([0u16, 2, 3][rng.below(3) as usize]) << 8) | (rng.below(4) as u16) << 10);
    }
    v
}

/// Compares native and emulated runs of `body` over random operands.
pub fn differential(name: &str, nargs: usize, body: &[Instruction], mem_kind: MemKind, cases: usize) {
    let mut rng = Rng::from_env(name);
    let mut pair = Pair::new(&routine(nargs, body));
    let mut cws = control_words(&mut rng);
    if body.len() > 1 {
        // A pending unmasked exception would fault (#MF) at the next waiting instruction.
        cws.retain(|cw| cw & 0x3f == 0x3f);
    }
    let mut failures = 0;
    for &cw in &cws {
        for _ in 0..cases {
            let mut d = Data([0; DATA_LEN]);
            d.0[0..2].copy_from_slice(&cw.to_le_bytes());
            let a = rng.f80();
            let b = rng.f80_near(&a);
            d.0[D_A as usize..D_A as usize + 10].copy_from_slice(&a);
            d.0[D_B as usize..D_B as usize + 10].copy_from_slice(&b);
            let mv = mem_kind.random(&mut rng, &a);
            d.0[D_MEM as usize..D_MEM as usize + 10].copy_from_slice(&mv);
            let (n, e) = pair.run(&d);
            let same = without_fop(&n) == without_fop(&e)
                && same_fop(&n, &e)
                && n.0[D_MEM as usize..D_MEM as usize + 16] == e.0[D_MEM as usize..D_MEM as usize + 16]
                && n.0[D_FLAGS as usize..D_FLAGS as usize + 5] == e.0[D_FLAGS as usize..D_FLAGS as usize + 5];
            if !same && amd_underflow_of_a_passed_through_denormal(name, cw, &a, &n, &e) {
                continue;
            }
            if !same {
                failures += 1;
                if failures <= 8 {
                    println!(
                        "{name} mismatch: cw {cw:04x} a {:02x?} b {:02x?} mem {:02x?}\nnative:   {}emulated: {}",
                        a,
                        b,
                        mv,
                        describe(&n),
                        describe(&e)
                    );
                }
            }
        }
    }
    if failures > 0 {
        println!("{name}: {failures} mismatches out of {}", cws.len() * cases);
        FAILED.with(|f| f.borrow_mut().push(name.to_string()));
    }
}

thread_local! {
    static FAILED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fails the test if any `differential` run in it found mismatches.
pub fn verdict() {
    let failed = FAILED.with(|f| std::mem::take(&mut *f.borrow_mut()));
    assert!(failed.is_empty(), "mismatches in: {failed:?}");
}

/// What to put in the memory operand slot.
#[derive(Clone, Copy)]
pub enum MemKind {
    None,
    F32,
    F64,
    I16,
    I32,
    I64,
    Bcd,
}

impl MemKind {
    pub fn random(self, rng: &mut Rng, a: &[u8; 10]) -> [u8; 10] {
        let mut out = [0u8; 10];
        match self {
            MemKind::None => {}
            MemKind::F32 => {
                let se = u16::from_le_bytes([a[8], a[9]]);
                let near = ((se & 0x7fff) as i32 - 0x3fff + 127).clamp(0, 255) as u32;
                let exp = match rng.below(6) {
                    0 => 0,
                    1 => 255,
                    2 => rng.below(256) as u32,
                    _ => (near as i32 + rng.below(50) as i32 - 25).clamp(0, 255) as u32,
                };
                let v = (rng.below(2) as u32) << 31 | exp << 23 | (rng.sig() >> 41) as u32;
                out[..4].copy_from_slice(&v.to_le_bytes());
            }
            MemKind::F64 => {
                let se = u16::from_le_bytes([a[8], a[9]]);
                let near = ((se & 0x7fff) as i32 - 0x3fff + 1023).clamp(0, 2047) as u64;
                let exp = match rng.below(6) {
                    0 => 0,
                    1 => 2047,
                    2 => rng.below(2048),
                    _ => (near as i64 + rng.below(140) as i64 - 70).clamp(0, 2047) as u64,
                };
                let v = rng.below(2) << 63 | exp << 52 | rng.sig() >> 12;
                out[..8].copy_from_slice(&v.to_le_bytes());
            }
            MemKind::I16 => out[..2].copy_from_slice(&(rng.next() as u16 >> rng.below(16)).to_le_bytes()),
            MemKind::I32 => out[..4].copy_from_slice(&((rng.next() as i32) >> rng.below(32)).to_le_bytes()),
            MemKind::I64 => out[..8].copy_from_slice(&((rng.next() as i64) >> rng.below(64)).to_le_bytes()),
            MemKind::Bcd => {
                for b in out.iter_mut().take(9) {
                    *b = (rng.below(10) as u8) << 4 | rng.below(10) as u8;
                }
                out[9] = (rng.below(2) as u8) << 7;
            }
        }
        out
    }
}

pub fn st(i: u32) -> Register {
    Register::try_from(Register::ST0 as usize + i as usize).unwrap()
}

pub fn cases() -> usize {
    std::env::var("X87_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(600)
}
