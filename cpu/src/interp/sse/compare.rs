//! Comparisons: CMPPS/SS/PD/SD with the eight legacy predicates, COMISS/COMISD/UCOMISS/
//! UCOMISD (to EFLAGS), the integer PCMPEQ*/PCMPGT* and PTEST.

use super::float::lanes;
use super::softfloat::{Fmt, F32, F64};
use super::*;
use crate::state::flags::{ARITH, CF, PF, ZF};
use core::cmp::Ordering;
use iced_x86::Code;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match insn.mnemonic() {
        M::Cmpps => cmp::<F32, true>,
        M::Cmpss => cmp::<F32, false>,
        M::Cmppd => cmp::<F64, true>,
        M::Cmpsd if insn.code() == Code::Cmpsd_xmm_xmmm64_imm8 => cmp::<F64, false>,
        M::Comiss => comi::<F32, true>,
        M::Ucomiss => comi::<F32, false>,
        M::Comisd => comi::<F64, true>,
        M::Ucomisd => comi::<F64, false>,
        M::Pcmpeqb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| mask(x == y) as u8)),
        M::Pcmpeqw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| mask(x == y) as u16)),
        M::Pcmpeqd => mmx_or_xmm!(insn, |a, b| zip32(a, b, |x, y| mask(x == y) as u32)),
        M::Pcmpeqq => mmx_or_xmm!(insn, |a, b| zip64(a, b, |x, y| mask(x == y))),
        M::Pcmpgtb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| mask(x as i8 > y as i8) as u8)),
        M::Pcmpgtw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| mask(x as i16 > y as i16) as u16)),
        M::Pcmpgtd => mmx_or_xmm!(insn, |a, b| zip32(a, b, |x, y| mask(x as i32 > y as i32) as u32)),
        M::Pcmpgtq => mmx_or_xmm!(insn, |a, b| zip64(a, b, |x, y| mask(x as i64 > y as i64))),
        M::Ptest => ptest,
        _ => return None,
    })
}

#[inline(always)]
fn mask(b: bool) -> u64 {
    if b {
        u64::MAX
    } else {
        0
    }
}

/// Evaluates CMPxx predicate `imm & 7` (EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD). LT/LE/NLT/NLE
/// signal invalid on any NaN; the others only on SNaN.
#[inline(always)]
fn predicate<F: Fmt>(e: &mut Env, a: u64, b: u64, imm: u8) -> bool {
    let p = imm & 7;
    let signaling = matches!(p, 1 | 2 | 5 | 6);
    let r = e.compare::<F>(a, b, signaling);
    let holds = match (p & 3, r) {
        (0, Some(o)) => o == Ordering::Equal,
        (1, Some(o)) => o == Ordering::Less,
        (2, Some(o)) => o != Ordering::Greater,
        (3, None) => true,
        _ => false,
    };
    // Predicates 4..7 are the negations of 0..3.
    holds ^ (p >= 4)
}

fn cmp<F: Fmt, const PACKED: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8();
    let n = if PACKED { 128 / F::BITS } else { 1 };
    fp_op(cpu, bus, insn, |e, a, b| lanes::<F>(e, a, b, n, |e, x, y| mask(predicate::<F>(e, x, y, imm))))
}

/// COMIS (signals on QNaN too) and UCOMIS: ZF/PF/CF = 111 unordered, 000 greater, 001 less,
/// 100 equal; OF, SF and AF cleared.
fn comi<F: Fmt, const SIGNALING: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_sse(cpu)?;
    let b = read_src(cpu, bus, insn, 1)?;
    let a = xmm(cpu, insn.op0_register());
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let mask = (1u128 << F::BITS) - 1;
    let f = match env.compare::<F>((a & mask) as u64, (b & mask) as u64, SIGNALING) {
        None => ZF | PF | CF,
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => CF,
        Some(Ordering::Equal) => ZF,
    };
    commit_fp(cpu, &env)?;
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}

/// PTEST: ZF = (dst AND src) == 0, CF = (NOT dst AND src) == 0; AF, OF, PF, SF cleared.
fn ptest(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_sse(cpu)?;
    let s = read_src(cpu, bus, insn, 1)?;
    let d = xmm(cpu, insn.op0_register());
    let f = if d & s == 0 { ZF } else { 0 } | if !d & s == 0 { CF } else { 0 };
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}
