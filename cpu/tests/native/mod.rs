//! The native-comparison harness: an instruction runs natively with inline assembly on
//! random operands, then the very same bytes (read back from the test's own code) run in the
//! interpreter in 64-bit mode, and every register the instruction can touch must match bit for
//! bit. Shared by the SSE, BMI/ADX and crypto tests.
//!
//! The seed is printed; set SSE_SEED to replay a run and SSE_ITERS to change the iteration
//! count per form.
#![allow(dead_code, unused_macros)]


use ferrite_cpu::state::{cr0, cr4, efer, reg, Seg, Segment};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::Cpu;

/// Everything an instruction under test may read or write.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct St {
    pub xmm: [u128; 3],
    pub mm: [u64; 2],
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rflags: u64,
    pub mxcsr: u32,
    pub pad: [u32; 3],
    /// Bits 255:128 of ymm0-2.
    pub ymm_hi: [u128; 3],
    /// Memory operands are addressed through rdi, which points here.
    pub mem: [u128; 2],
}

// 32-byte operands at [rdi] are aligned as VMOVDQA ymm needs.
const _: () = assert!(core::mem::offset_of!(St, mem) % 32 == 0);

/// Runs the instruction natively on `St`, returning its encoding.
pub type Native = fn(&mut St) -> Vec<u8>;

/// Executes one instruction natively: loads the harness registers, MXCSR and flags from the
/// `St`, runs the instruction, stores them back, and returns the instruction's bytes (the
/// code between the two local labels).
macro_rules! native {
    ($insn:expr) => {
        |st: &mut $crate::native::St| -> Vec<u8> {
            let start: usize;
            let end: usize;
            let mut host_mxcsr = 0u32;
            let mem = st.mem.as_mut_ptr();
            // SAFETY: `st` is a valid exclusive reference for the whole block and `mem` points
            // at its 32-byte buffer, the only memory the instructions under test address. All
            // registers the block writes are declared (rax/rcx/rdx/rdi, xmm0-2 and every x87/
            // MMX register); flags are restored by the compiler's default assumption that asm
            // clobbers them. The host MXCSR is saved and restored around the instruction and
            // EMMS empties the x87 tags the MMX loads set, so Rust code after the block sees
            // the state it expects. The stack is used for PUSHF/POPF only (no `nostack`).
            unsafe {
                ::core::arch::asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{st} + {o_mxcsr}]",
                    "movdqu xmm0, [{st} + {o_xmm}]",
                    "movdqu xmm1, [{st} + {o_xmm} + 16]",
                    "movdqu xmm2, [{st} + {o_xmm} + 32]",
                    "vinsertf128 ymm0, ymm0, [{st} + {o_hi}], 1",
                    "vinsertf128 ymm1, ymm1, [{st} + {o_hi} + 16], 1",
                    "vinsertf128 ymm2, ymm2, [{st} + {o_hi} + 32], 1",
                    "movq mm0, [{st} + {o_mm}]",
                    "movq mm1, [{st} + {o_mm} + 8]",
                    "mov rax, [{st} + {o_rax}]",
                    "mov rcx, [{st} + {o_rcx}]",
                    "mov rdx, [{st} + {o_rdx}]",
                    "push qword ptr [{st} + {o_rflags}]",
                    "popfq",
                    "2:",
                    $insn,
                    "3:",
                    "pushfq",
                    "pop qword ptr [{st} + {o_rflags}]",
                    "stmxcsr [{st} + {o_mxcsr}]",
                    "ldmxcsr [{save}]",
                    "movdqu [{st} + {o_xmm}], xmm0",
                    "movdqu [{st} + {o_xmm} + 16], xmm1",
                    "movdqu [{st} + {o_xmm} + 32], xmm2",
                    "vextractf128 [{st} + {o_hi}], ymm0, 1",
                    "vextractf128 [{st} + {o_hi} + 16], ymm1, 1",
                    "vextractf128 [{st} + {o_hi} + 32], ymm2, 1",
                    "vzeroupper",
                    "movq [{st} + {o_mm}], mm0",
                    "movq [{st} + {o_mm} + 8], mm1",
                    "emms",
                    "mov [{st} + {o_rax}], rax",
                    "mov [{st} + {o_rcx}], rcx",
                    "mov [{st} + {o_rdx}], rdx",
                    "lea {start}, [rip + 2b]",
                    "lea {end}, [rip + 3b]",
                    st = in(reg) st as *mut $crate::native::St,
                    save = in(reg) &mut host_mxcsr as *mut u32,
                    o_xmm = const ::core::mem::offset_of!($crate::native::St, xmm),
                    o_mm = const ::core::mem::offset_of!($crate::native::St, mm),
                    o_rax = const ::core::mem::offset_of!($crate::native::St, rax),
                    o_rcx = const ::core::mem::offset_of!($crate::native::St, rcx),
                    o_rdx = const ::core::mem::offset_of!($crate::native::St, rdx),
                    o_rflags = const ::core::mem::offset_of!($crate::native::St, rflags),
                    o_mxcsr = const ::core::mem::offset_of!($crate::native::St, mxcsr),
                    o_hi = const ::core::mem::offset_of!($crate::native::St, ymm_hi),
                    start = out(reg) start,
                    end = out(reg) end,
                    inout("rdi") mem => _,
                    out("rax") _,
                    out("rcx") _,
                    out("rdx") _,
                    out("xmm0") _,
                    out("xmm1") _,
                    out("xmm2") _,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            // SAFETY: both labels are inside the asm block above, in this function's machine
            // code, which is mapped readable; `start <= end`.
            unsafe { core::slice::from_raw_parts(start as *const u8, end - start).to_vec() }
        }
    };
}

/// How to draw operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gen {
    /// Random bytes with a bias to 0x00/0x7f/0x80/0xff.
    Bytes,
    /// Like `Bytes`, with small shift counts in xmm1/mm1.
    Shift,
    /// Single/double lanes with special values, denormals, near-overflow and -underflow.
    F32,
    F64,
    /// Lanes next to the rounding thresholds: mantissas near all-ones or near zero at 1.0,
    /// at the smallest normal and at the largest finite exponent, and the largest denormals.
    Edge32,
    Edge64,
    /// Integers of interesting magnitudes (for int → float conversions).
    Int,
    /// Short strings over a small alphabet with NULs, and lengths in rax/rdx.
    Str,
    /// General-purpose operands: integers of interesting magnitudes in rax/rcx/rdx and memory,
    /// with small bit indices and BEXTR start/length pairs in the low bytes half the time.
    Gpr,
    /// Random bytes, with xmm1/ymm1 holding small gather indices (8..=24 in every dword and
    /// qword), so that every element address stays inside the memory buffer.
    Gather,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Exact,
    /// RCP/RSQRT: the hardware approximation is implementation-specific; allow Intel's
    /// documented relative error (1.5 × 2^-12) on each single of xmm0.
    Approx,
    /// Exact, except for the RFLAGS bits given: flags the SDM leaves undefined, where the host
    /// CPU (AMD) and ferrite (Intel's behaviour, or a documented choice) may differ.
    Masked(u64),
    /// DPPS/DPPD (elements of the given bytes): exact, except which NaN a lane of ymm0 holds
    /// when both results hold one. The SDM adds the products in one order,
    /// (p0 + p1) + (p2 + p3), and broadcasts that one sum, which ferrite follows; Intel cores
    /// (a Xeon here) add per destination lane in other orders, so with several NaN products
    /// the lanes keep different NaNs (SSE keeps the first operand's). The SDM wins.
    DotProduct(u32),
}

pub struct Case {
    pub name: &'static str,
    pub run: Native,
    pub gen: Gen,
    pub cmp: Cmp,
}

macro_rules! case {
    ($gen:ident, $cmp:ident $(($mask:expr))?, $insn:literal) => {
        $crate::native::Case {
            name: $insn,
            run: native!($insn),
            gen: $crate::native::Gen::$gen,
            cmp: $crate::native::Cmp::$cmp $(($mask))?,
        }
    };
}


/// xorshift64* — a small deterministic generator.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn byte(&mut self) -> u8 {
        match self.below(8) {
            0 => [0x00, 0x7f, 0x80, 0xff, 0x01, 0xfe][self.below(6) as usize],
            _ => self.next() as u8,
        }
    }
    pub fn bytes128(&mut self) -> u128 {
        u128::from_le_bytes(core::array::from_fn(|_| self.byte()))
    }
    /// A float of `frac`/`exp` bits: specials, random bit patterns, ordinary values,
    /// values near the denormal and overflow thresholds.
    pub fn float(&mut self, frac: u32, exp: u32) -> u64 {
        let emax = (1u64 << exp) - 1;
        let bias = emax >> 1;
        let sign = (self.next() & 1) << (frac + exp);
        let f = self.next() & ((1u64 << frac) - 1);
        let q = 1u64 << (frac - 1);
        let pack = |e: u64, f: u64| sign | (e << frac) | f;
        match self.below(18) {
            0 => sign,                                             // ±0
            1 => pack(emax, 0),                                    // ±inf
            2 => pack(emax, q | (f & (q - 1) & self.next())),      // QNaN
            3 => pack(emax, (f & (q - 1)).max(1)),                 // SNaN
            4 => pack(0, f.max(1)),                                // denormal
            5 => pack(self.below(3), f),                           // near min normal
            6 => pack(emax - 1 - self.below(3), f),                // near max
            7 => self.next() >> (63 - frac - exp),                  // any bit pattern
            8 => pack(bias + self.below(30), f & !((1u64 << (frac / 2)) - 1)), // short mantissas
            9 => pack(bias, 0),                                    // ±1
            10 => pack(bias + frac as u64 + self.below(3) - 1, f), // integral/half-integral
            // Mantissas next to a power of two, at 1 and at the smallest normal: their products
            // and quotients land within an ulp of the underflow threshold, where tininess
            // after rounding differs from before rounding.
            11 => pack(bias - self.below(2), ((1u64 << frac) - 1 - self.below(4)) * self.below(2)),
            12 => pack(1 + self.below(2), self.below(4)),
            _ => pack(bias - 20 + self.below(40), f),
        }
    }
    pub fn edge(&mut self, frac: u32, exp: u32) -> u64 {
        let emax = (1u64 << exp) - 1;
        let bias = emax >> 1;
        let sign = (self.next() & 1) << (frac + exp);
        let ones = (1u64 << frac) - 1;
        let m = if self.below(2) == 0 { ones - self.below(8) } else { self.below(8) };
        let e = match self.below(5) {
            0 => bias - 1 + self.below(3),
            1 => 1 + self.below(2),
            2 => 0,
            3 => emax - 1 - self.below(2),
            _ => bias - 30 + self.below(60),
        };
        sign | (e << frac) | m
    }
    pub fn edge_lanes(&mut self, frac: u32, exp: u32) -> u128 {
        let bits = 1 + frac + exp;
        (0..128 / bits).fold(0u128, |v, k| v | (self.edge(frac, exp) as u128) << (k * bits))
    }
    pub fn lanes(&mut self, frac: u32, exp: u32) -> u128 {
        let bits = 1 + frac + exp;
        (0..128 / bits).fold(0u128, |v, k| v | (self.float(frac, exp) as u128) << (k * bits))
    }
    pub fn int(&mut self) -> u64 {
        match self.below(8) {
            0 => [0, 1, u64::MAX, 1 << 31, (1 << 31) - 1, 1 << 63, (1 << 63) - 1, (1 << 24) + 1][self.below(8) as usize],
            1 => self.below(1000),
            2 => (self.next() as i32 >> self.below(31)) as i64 as u64,
            3 => (self.next() as i64 >> self.below(63)) as u64,
            _ => self.next(),
        }
    }
    pub fn gpr(&mut self) -> u64 {
        match self.below(4) {
            0 => (self.int() & !0xffff) | self.below(70) | self.below(70) << 8,
            1 => (self.int() & !0xff) | self.below(70),
            _ => self.int(),
        }
    }
    pub fn str128(&mut self) -> u128 {
        const ALPHABET: [u8; 8] = [0, b'a', b'b', b'c', b'z', 0x80, 0xff, 0x01];
        let nul_at = self.below(24) as usize;
        u128::from_le_bytes(core::array::from_fn(|i| {
            let b = ALPHABET[self.below(8) as usize];
            if i == nul_at {
                0
            } else if b == 0 && self.below(3) != 0 {
                b'a'
            } else {
                b
            }
        }))
    }
    pub fn length(&mut self) -> u64 {
        match self.below(8) {
            0 => [1 << 31, u64::MAX, 1 << 63, 0x1_0000_0005, 0xffff_fff0][self.below(5) as usize],
            _ => (self.below(41) as i64 - 20) as u64,
        }
    }
}

pub fn random_state(rng: &mut Rng, gen: Gen) -> St {
    let mut st = St::default();
    let v = |rng: &mut Rng| match gen {
        Gen::Bytes | Gen::Shift | Gen::Gather => rng.bytes128(),
        Gen::F32 => rng.lanes(23, 8),
        Gen::F64 => rng.lanes(52, 11),
        Gen::Edge32 => rng.edge_lanes(23, 8),
        Gen::Edge64 => rng.edge_lanes(52, 11),
        Gen::Int => rng.int() as u128 | (rng.int() as u128) << 64,
        Gen::Str => rng.str128(),
        Gen::Gpr => rng.gpr() as u128 | (rng.gpr() as u128) << 64,
    };
    for x in st.xmm.iter_mut().chain(st.ymm_hi.iter_mut()) {
        *x = v(rng);
    }
    st.mm = [v(rng) as u64, v(rng) as u64];
    st.mem = [v(rng), v(rng)];
    st.rax = rng.int();
    st.rcx = rng.int();
    st.rdx = rng.int();
    if gen == Gen::Shift && rng.below(4) != 0 {
        let c = rng.below(70) as u128;
        st.xmm[1] = (st.xmm[1] & !(u64::MAX as u128)) | c;
        st.mm[1] = c as u64;
        st.mem[0] = (st.mem[0] & !(u64::MAX as u128)) | c;
    }
    if gen == Gen::Gather {
        let mut indices = || (8 + rng.below(17)) as u128 | ((8 + rng.below(17)) as u128) << 64;
        st.xmm[1] = indices();
        st.ymm_hi[1] = indices();
    }
    if gen == Gen::Gpr {
        st.rax = rng.gpr();
        st.rcx = rng.gpr();
        st.rdx = rng.gpr();
    }
    if gen == Gen::Str {
        st.rax = rng.length();
        st.rdx = rng.length();
    }
    // Arithmetic flags random; IF set, TF/DF clear.
    st.rflags = 0x202 | (rng.next() & 0x8d5);
    // All exceptions masked; random rounding, FTZ, DAZ, and sometimes stale flags.
    let mut mx = 0x1f80 | (rng.below(4) as u32) << 13;
    if rng.below(2) == 0 {
        mx |= 1 << 15;
    }
    if rng.below(2) == 0 {
        mx |= 1 << 6;
    }
    if rng.below(4) == 0 {
        mx |= rng.next() as u32 & 0x3f;
    }
    st.mxcsr = mx;
    st
}

pub const CODE: u64 = 0x10000;
pub const DATA: u64 = 0x20000;
pub const HANDLERS: u64 = 0x5000;
pub const IDT: u64 = 0x4000;
pub const GDT: u64 = 0x800;

/// A CPU in 64-bit mode at CPL 0 with identity paging of the first 4 MiB and an IDT whose
/// vector v handler sits at HANDLERS + 16·v (so a fault shows as RIP).
pub fn long_mode_machine() -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(4 << 20);
    let w = |bus: &mut FlatBus, a: u64, v: u64| bus.load(a, &v.to_le_bytes());
    w(&mut bus, 0x1000, 0x2000 | 3);
    w(&mut bus, 0x2000, 0x3000 | 3);
    w(&mut bus, 0x3000, 0x83);
    w(&mut bus, 0x3008, 0x20_0000 | 0x83);
    w(&mut bus, GDT + 8, 0x00af_9b00_0000_ffff);
    w(&mut bus, GDT + 16, 0x00cf_9300_0000_ffff);
    for v in 0..32u64 {
        let off = HANDLERS + 16 * v;
        let lo = (off & 0xffff) | 8 << 16 | 0x8e00 << 32 | ((off >> 16) & 0xffff) << 48;
        w(&mut bus, IDT + 16 * v, lo);
    }
    let mut cpu = Cpu::default();
    let s = &mut cpu.state;
    s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::PG;
    s.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
    // x87, SSE and AVX state enabled, as an AVX-aware OS sets XCR0.
    s.xcr0 = 0b111;
    s.cr3 = 0x1000;
    s.efer = efer::LME | efer::LMA;
    s.gdtr.base = GDT;
    s.gdtr.limit = 23;
    s.idtr.base = IDT;
    s.idtr.limit = 32 * 16 - 1;
    let data = Segment { selector: 0x10, attrs: 0xc093, limit: 0xffff_ffff, base: 0 };
    for seg in Seg::ALL {
        *s.seg_mut(seg) = data;
    }
    *s.seg_mut(Seg::Cs) = Segment { selector: 8, attrs: 0x209b, limit: 0xffff_ffff, base: 0 };
    (cpu, bus)
}

/// Runs one instruction at CODE; `Err(vector)` if it faulted.
pub fn step(cpu: &mut Cpu, bus: &mut FlatBus, len: usize) -> Result<(), u8> {
    cpu.state.rip = CODE;
    cpu.state.gpr[reg::RSP] = 0x9000;
    cpu.step(bus);
    let rip = cpu.state.rip;
    if rip == CODE + len as u64 {
        Ok(())
    } else if (HANDLERS..HANDLERS + 32 * 16).contains(&rip) {
        Err(((rip - HANDLERS) / 16) as u8)
    } else {
        panic!("unexpected RIP {rip:#x} after step");
    }
}

pub fn interpret(cpu: &mut Cpu, bus: &mut FlatBus, code: &[u8], st: &St) -> Result<St, u8> {
    bus.load(DATA, &st.mem[0].to_le_bytes());
    bus.load(DATA + 16, &st.mem[1].to_le_bytes());
    let s = &mut cpu.state;
    s.fpu.xmm[..3].copy_from_slice(&st.xmm);
    s.fpu.ymm_hi[..3].copy_from_slice(&st.ymm_hi);
    for (i, m) in st.mm.iter().enumerate() {
        s.fpu.st[i][..8].copy_from_slice(&m.to_le_bytes());
    }
    s.gpr[reg::RAX] = st.rax;
    s.gpr[reg::RCX] = st.rcx;
    s.gpr[reg::RDX] = st.rdx;
    s.gpr[reg::RDI] = DATA;
    s.fpu.mxcsr = st.mxcsr;
    cpu.set_rflags(st.rflags);
    step(cpu, bus, code.len())?;
    let s = &cpu.state;
    let rd = |a: u64| u128::from_le_bytes(bus.ram[a as usize..a as usize + 16].try_into().unwrap());
    Ok(St {
        xmm: [s.fpu.xmm[0], s.fpu.xmm[1], s.fpu.xmm[2]],
        mm: [0, 1].map(|i| u64::from_le_bytes(s.fpu.st[i][..8].try_into().unwrap())),
        rax: s.gpr[reg::RAX],
        rcx: s.gpr[reg::RCX],
        rdx: s.gpr[reg::RDX],
        rflags: cpu.rflags(),
        mxcsr: s.fpu.mxcsr,
        pad: [0; 3],
        ymm_hi: [s.fpu.ymm_hi[0], s.fpu.ymm_hi[1], s.fpu.ymm_hi[2]],
        mem: [rd(DATA), rd(DATA + 16)],
    })
}

/// Whether two single-precision RCP/RSQRT results agree within the documented accuracy.
pub fn approx_f32(native: u32, ours: u32, input: u32) -> bool {
    if native == ours {
        return true;
    }
    let (n, o) = (f32::from_bits(native), f32::from_bits(ours));
    if n.is_nan() || o.is_nan() || n.is_infinite() || o.is_infinite() || (n == 0.0) != (o == 0.0) {
        // Tiny results near the flush threshold may or may not flush (SDM RCPSS).
        return f32::from_bits(input).abs() > 2f32.powi(125) && n.abs() < 1e-37 && o.abs() < 1e-37;
    }
    ((n as f64 - o as f64) / n as f64).abs() <= 1.5 * 2f64.powi(-12) + 2f64.powi(-23)
}

/// `native` and `ours` equal, or both NaNs, in every `size`-byte element of the 256 bits.
fn same_or_both_nan(native: [u128; 2], ours: [u128; 2], size: u32) -> bool {
    let bits = size * 8;
    let elements = |v: [u128; 2]| (0..256 / bits).map(move |k| (v[(k * bits / 128) as usize] >> (k * bits % 128)) as u64 & (u64::MAX >> (64 - bits)));
    let nan = |e: u64| match size {
        4 => f32::from_bits(e as u32).is_nan(),
        _ => f64::from_bits(e).is_nan(),
    };
    elements(native).zip(elements(ours)).all(|(n, o)| n == o || (nan(n) && nan(o)))
}

pub fn matches(case: &Case, input: &St, native: &St, ours: &St) -> bool {
    match case.cmp {
        Cmp::Exact => native == ours,
        Cmp::DotProduct(size) => {
            let (mut n, mut o) = (*native, *ours);
            let ok = same_or_both_nan([n.xmm[0], n.ymm_hi[0]], [o.xmm[0], o.ymm_hi[0]], size);
            (n.xmm[0], n.ymm_hi[0], o.xmm[0], o.ymm_hi[0]) = (0, 0, 0, 0);
            ok && n == o
        }
        Cmp::Masked(undefined) => {
            let (mut n, mut o) = (*native, *ours);
            n.rflags &= !undefined;
            o.rflags &= !undefined;
            n == o
        }
        Cmp::Approx => {
            let mut n = *native;
            let mut o = *ours;
            // All eight singles of ymm0 (the upper four are zero for 128-bit forms).
            let ok = (0..8).all(|k| {
                let lane = |lo: u128, hi: u128| ((if k < 4 { lo } else { hi }) >> (32 * (k % 4))) as u32;
                approx_f32(lane(n.xmm[0], n.ymm_hi[0]), lane(o.xmm[0], o.ymm_hi[0]), lane(input.xmm[1], input.ymm_hi[1]))
            });
            n.xmm[0] = 0;
            o.xmm[0] = 0;
            n.ymm_hi[0] = 0;
            o.ymm_hi[0] = 0;
            ok && n == o
        }
    }
}

/// Whether this host's CPU is AMD's, for the few places where AMD and Intel processors
/// differ within what the SDM allows (the tests say where).
pub fn host_is_amd() -> bool {
    let id = std::arch::x86_64::__cpuid(0);
    [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).eq(*b"AuthenticAMD")
}

/// The host's XCR0 (XGETBV with ECX = 0), or 0 where the OS has not enabled XSAVE.
pub fn host_xcr0() -> u64 {
    if !is_x86_feature_detected!("xsave") {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is valid once CPUID reports OSXSAVE (which the detection
    // above checks); it only writes EDX:EAX.
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

pub fn seed() -> u64 {
    let s = std::env::var("SSE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x05ee_d0f5_5e42_u64);
    println!("SSE_SEED={s}");
    s
}

pub fn iterations(default: usize) -> usize {
    std::env::var("SSE_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs every case `iters` times, printing the first mismatches of each; fails if any.
pub fn run_cases(cases: Vec<Case>, iters: usize) {
    if !(is_x86_feature_detected!("sse4.2") && is_x86_feature_detected!("ssse3")) {
        println!("host CPU lacks SSE4.2/SSSE3: native comparison skipped");
        return;
    }
    let base = seed();
    let mut failed = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let mut rng = Rng(base ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (mut cpu, mut bus) = long_mode_machine();
        let mut shown = 0;
        let mut code = Vec::new();
        for _ in 0..iters {
            let input = random_state(&mut rng, case.gen);
            let mut native = input;
            let bytes = (case.run)(&mut native);
            if code.is_empty() {
                bus.load(CODE, &bytes);
                code = bytes;
            }
            let ours = interpret(&mut cpu, &mut bus, &code, &input);
            let ok = match &ours {
                Ok(o) => matches(case, &input, &native, o),
                Err(_) => false,
            };
            if !ok {
                if shown < 3 {
                    println!("MISMATCH {} ({:02x?})\n  input  {input:x?}\n  native {native:x?}\n  ours   {ours:x?}", case.name, code);
                }
                shown += 1;
            }
        }
        if shown > 0 {
            failed.push(format!("{} ({shown}/{iters})", case.name));
        }
    }
    assert!(failed.is_empty(), "{} forms differ from the host CPU: {failed:#?}", failed.len());
}

