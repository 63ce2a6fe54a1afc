//! The translator's SSE floating-point arithmetic, which runs on the host's SSE unit,
//! against the interpreter's soft-float: results, RFLAGS and every MXCSR exception flag
//! must match for NaNs (quiet and signalling), infinities, zeros of both signs, denormals
//! and values that round; under MXCSR controls other than the host's (a rounding mode,
//! FTZ, DAZ) compiled code leaves the instruction to the interpreter, and an unmasked
//! exception is raised at the same instruction.

mod int_harness;
mod jit_harness;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::JitMode;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;
use jit_harness::*;

/// Doubles: 1, 3, -0, 0, +inf, a QNaN, an SNaN, the smallest denormal, the largest finite,
/// the smallest normal, -2.5.
const DOUBLES: [u64; 11] = [
    0x3ff0_0000_0000_0000,
    0x4008_0000_0000_0000,
    0x8000_0000_0000_0000,
    0,
    0x7ff0_0000_0000_0000,
    0x7ff8_0000_0000_0001,
    0x7ff0_0000_0000_0001,
    1,
    0x7fef_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0xc004_0000_0000_0000,
];
/// The same for singles.
const SINGLES: [u64; 11] = [0x3f80_0000, 0x4040_0000, 0x8000_0000, 0, 0x7f80_0000, 0x7fc0_0001, 0x7f80_0001, 1, 0x7f7f_ffff, 0x0080_0000, 0xc020_0000];

/// Where the MXCSR each operation starts from is kept.
const MXCSR_AT: i32 = 0x7fc;
/// A copy of the second double and single, for the memory forms.
const SOURCE_AT: i32 = 0x800;

type Op = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// Every form the translator emits, on xmm0 (double) or xmm2 (single) and xmm1/xmm3 or
/// memory; RBX and ESI are the second operands as integers for the conversions.
const OPS: [Op; 31] = [
    |a| a.addsd(xmm0, xmm1),
    |a| a.subsd(xmm0, xmm1),
    |a| a.mulsd(xmm0, xmm1),
    |a| a.divsd(xmm0, xmm1),
    |a| a.sqrtsd(xmm0, xmm1),
    |a| a.comisd(xmm0, xmm1),
    |a| a.ucomisd(xmm0, xmm1),
    |a| a.addss(xmm2, xmm3),
    |a| a.subss(xmm2, xmm3),
    |a| a.mulss(xmm2, xmm3),
    |a| a.divss(xmm2, xmm3),
    |a| a.sqrtss(xmm2, xmm3),
    |a| a.comiss(xmm2, xmm3),
    |a| a.ucomiss(xmm2, xmm3),
    |a| a.cvtsd2ss(xmm2, xmm1),
    |a| a.cvtss2sd(xmm0, xmm3),
    |a| a.cvtsi2sd(xmm0, rbx),
    |a| a.cvtsi2sd(xmm0, esi),
    |a| a.cvtsi2ss(xmm2, rbx),
    |a| a.cvtsi2ss(xmm2, esi),
    |a| a.addsd(xmm0, qword_ptr(rdi + SOURCE_AT)),
    |a| a.divss(xmm2, dword_ptr(rdi + SOURCE_AT + 8)),
    |a| a.ucomisd(xmm0, qword_ptr(rdi + SOURCE_AT)),
    |a| a.comiss(xmm2, dword_ptr(rdi + SOURCE_AT + 8)),
    |a| a.cvtsi2sd(xmm0, qword_ptr(rdi + SOURCE_AT)),
    |a| a.cvtsi2ss(xmm2, dword_ptr(rdi + SOURCE_AT + 8)),
    |a| a.sqrtsd(xmm0, qword_ptr(rdi + SOURCE_AT)),
    // Constants Cranelift could fold: 2^63-1 and 2^24+1 round in a single (#P).
    |a| {
        a.mov(r9, 0x7fff_ffff_ffff_ffffu64)?;
        a.cvtsi2ss(xmm2, r9)
    },
    |a| {
        a.mov(r9d, 0x100_0001)?;
        a.cvtsi2ss(xmm2, r9d)
    },
    |a| {
        a.mov(r9, 0x20_0000_0000_0001u64)?;
        a.cvtsi2sd(xmm0, r9)
    },
    // Two operations in a row: the flags of both.
    |a| {
        a.divsd(xmm0, xmm1)?;
        a.mulss(xmm2, xmm3)
    },
];

/// Runs every operation on `x` and `y` (double, single) from MXCSR `mxcsr`, storing per
/// operation xmm0, xmm2, MXCSR and RFLAGS; returns the chained run's machine once all three
/// runs matched.
fn run_ops(x: (u64, u64), y: (u64, u64), mxcsr: u32) -> Vm {
    both(&[(RAX, x.0), (RBX, y.0), (RDX, x.1), (RSI, y.1), (RDI, DATA)], move |a| {
        enable_sse(a)?;
        a.mov(dword_ptr(rdi + MXCSR_AT), mxcsr)?;
        a.mov(qword_ptr(rdi + SOURCE_AT), rbx)?;
        a.mov(dword_ptr(rdi + SOURCE_AT + 8), esi)?;
        for (k, op) in OPS.iter().enumerate() {
            let at = k as i32 * 32;
            a.ldmxcsr(dword_ptr(rdi + MXCSR_AT))?;
            a.movq(xmm0, rax)?;
            a.movq(xmm1, rbx)?;
            a.movd(xmm2, edx)?;
            a.movd(xmm3, esi)?;
            op(a)?;
            a.movdqu(xmmword_ptr(rdi + at), xmm0)?;
            a.movd(dword_ptr(rdi + at + 16), xmm2)?;
            a.stmxcsr(dword_ptr(rdi + at + 20))?;
            a.pushfq()?;
            a.pop(r8)?;
            a.mov(qword_ptr(rdi + at + 24), r8)?;
        }
        Ok(())
    })
}

#[test]
fn sse_arithmetic_matches_the_interpreter_with_every_flag() {
    for (i, x) in DOUBLES.iter().zip(SINGLES).enumerate() {
        for (j, y) in DOUBLES.iter().zip(SINGLES).enumerate() {
            let on = run_ops((*x.0, x.1), (*y.0, y.1), 0x1f80);
            // The arithmetic ran compiled: no guard sent it back to the interpreter.
            let s = on.cpu.jit_stats();
            assert!(s.side_exits < 4, "values {i}, {j}: {s:?}");
        }
    }
}

#[test]
fn other_mxcsr_controls_are_left_to_the_interpreter() {
    // Round down, up and to zero, flush-to-zero, denormals-are-zero, and flags already set.
    for mxcsr in [0x3f80, 0x5f80, 0x7f80, 0x9f80, 0x1fc0, 0x1fbf] {
        for (x, y) in [(0, 1), (1, 0), (7, 9), (9, 7), (8, 1), (5, 6)] {
            let s = run_ops((DOUBLES[x], SINGLES[x]), (DOUBLES[y], SINGLES[y]), mxcsr).cpu.jit_stats();
            // Under other controls each operation's MXCSR check leaves for the interpreter;
            // flags already set change nothing.
            let leaves = s.side_exits >= OPS.len() as u64;
            assert_eq!(leaves, mxcsr & 0xffc0 != 0x1f80, "MXCSR {mxcsr:#x}: {s:?}");
        }
    }
}

#[test]
fn an_unmasked_exception_is_raised_at_the_same_instruction() {
    // Division by zero with ZM clear: #XM with CR4.OSXMMEXCPT, before RBX is written.
    let stops = [JitMode::Off, JitMode::Always].map(|mode| {
        let mut v = vm(mode);
        v.preset(&[(RDI, DATA), (RAX, DOUBLES[0]), (RBX, DOUBLES[3])], 0);
        v.code(|a| {
            enable_sse(a)?;
            a.or(rcx, 1 << 10)?;
            a.mov(cr4, rcx)?;
            a.mov(dword_ptr(rdi), 0x1d80)?;
            a.ldmxcsr(dword_ptr(rdi))?;
            a.movq(xmm0, rax)?;
            a.movq(xmm1, rbx)?;
            a.addsd(xmm0, xmm0)?;
            a.divsd(xmm0, xmm1)?;
            a.mov(ebx, 2)?;
            Ok(())
        });
        let stop = v.run();
        (stop, v.gpr(RBX), v.cpu.state.fpu.mxcsr, v.cpu.state.fpu.xmm[0])
    });
    assert_eq!(stops[0].0, Stop::Exception(19));
    assert_eq!(stops[0], stops[1]);
}
