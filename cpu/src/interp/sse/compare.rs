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

/// Evaluates CMPxx predicate `p`: 0-7 for the legacy forms (EQ, LT, LE, UNORD, NEQ, NLT,
/// NLE, ORD), 0-31 for VEX (SDM CMPPS, Table 3-1). Bits 2:0 pick the relation and whether an
/// unordered pair satisfies it, bit 3 the second set of eight (EQ_UQ, NGE, NGT, FALSE, NEQ_OQ,
/// GE, GT, TRUE), bit 4 flips whether a QNaN signals invalid.
#[inline(always)]
fn predicate<F: Fmt>(e: &mut Env, a: u64, b: u64, p: u8) -> bool {
    // For p & 15: the relation tested on ordered operands, the result for unordered ones,
    // whether a QNaN signals invalid, and whether the relation's result is negated.
    const EQ: u8 = 0;
    const LT: u8 = 1;
    const LE: u8 = 2;
    const NONE: u8 = 3;
    const TABLE: [(u8, bool, bool, bool); 16] = [
        (EQ, false, false, false),
        (LT, false, true, false),
        (LE, false, true, false),
        (NONE, true, false, false),
        (EQ, true, false, true),
        (LT, true, true, true),
        (LE, true, true, true),
        (NONE, false, false, true),
        (EQ, true, false, false),
        (LT, true, true, false),
        (LE, true, true, false),
        (NONE, false, false, false),
        (EQ, false, false, true),
        (LT, false, true, true),
        (LE, false, true, true),
        (NONE, true, false, true),
    ];
    let (rel, unordered, signaling, negate) = TABLE[(p & 15) as usize];
    let r = e.compare::<F>(a, b, signaling ^ (p & 16 != 0));
    match r {
        None => unordered,
        Some(o) => {
            let holds = match rel {
                EQ => o == Ordering::Equal,
                LT => o == Ordering::Less,
                LE => o != Ordering::Greater,
                _ => false,
            };
            holds ^ negate
        }
    }
}

fn cmp<F: Fmt, const PACKED: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8() & if is_vex(insn) { 31 } else { 7 };
    let n = if PACKED { 128 / F::BITS } else { 1 };
    fp_op(cpu, bus, insn, |e, a, b| lanes::<F>(e, a, b, n, |e, x, y| mask(predicate::<F>(e, x, y, imm))))
}

/// COMIS (signals on QNaN too) and UCOMIS: ZF/PF/CF = 111 unordered, 000 greater, 001 less,
/// 100 equal; OF, SF and AF cleared.
fn comi<F: Fmt, const SIGNALING: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
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

/// PTEST and VPTEST (all 256 bits of the YMM form): ZF = (dst AND src) == 0,
/// CF = (NOT dst AND src) == 0; AF, OF, PF, SF cleared.
fn ptest(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let (s_lo, s_hi) = read_src_wide(cpu, bus, insn, 1)?;
    let (d_lo, d_hi) = read_src_wide(cpu, bus, insn, 0)?;
    let and_zero = d_lo & s_lo == 0 && d_hi & s_hi == 0;
    let andn_zero = !d_lo & s_lo == 0 && !d_hi & s_hi == 0;
    let f = if and_zero { ZF } else { 0 } | if andn_zero { CF } else { 0 };
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}
