//! Floating-point arithmetic: ADD/SUB/MUL/DIV/MIN/MAX/SQRT in packed and scalar, single and
//! double forms, the SSE3 horizontal and alternating forms (HADD/HSUB/ADDSUB), RCP/RSQRT, the
//! dot products DPPS/DPPD and ROUNDPS/PD/SS/SD.

use super::softfloat::{rcp_f32, rsqrt_f32, Fmt, Round, F32, F64};
use super::*;

const ADD: u8 = 0;
const SUB: u8 = 1;
const MUL: u8 = 2;
const DIV: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match insn.mnemonic() {
        M::Addps => arith::<F32, ADD, true>,
        M::Addss => arith::<F32, ADD, false>,
        M::Addpd => arith::<F64, ADD, true>,
        M::Addsd => arith::<F64, ADD, false>,
        M::Subps => arith::<F32, SUB, true>,
        M::Subss => arith::<F32, SUB, false>,
        M::Subpd => arith::<F64, SUB, true>,
        M::Subsd => arith::<F64, SUB, false>,
        M::Mulps => arith::<F32, MUL, true>,
        M::Mulss => arith::<F32, MUL, false>,
        M::Mulpd => arith::<F64, MUL, true>,
        M::Mulsd => arith::<F64, MUL, false>,
        M::Divps => arith::<F32, DIV, true>,
        M::Divss => arith::<F32, DIV, false>,
        M::Divpd => arith::<F64, DIV, true>,
        M::Divsd => arith::<F64, DIV, false>,
        M::Minps => arith::<F32, MIN, true>,
        M::Minss => arith::<F32, MIN, false>,
        M::Minpd => arith::<F64, MIN, true>,
        M::Minsd => arith::<F64, MIN, false>,
        M::Maxps => arith::<F32, MAX, true>,
        M::Maxss => arith::<F32, MAX, false>,
        M::Maxpd => arith::<F64, MAX, true>,
        M::Maxsd => arith::<F64, MAX, false>,
        M::Sqrtps => sqrt::<F32, true>,
        M::Sqrtss => sqrt::<F32, false>,
        M::Sqrtpd => sqrt::<F64, true>,
        M::Sqrtsd => sqrt::<F64, false>,
        M::Haddps => |c, b, i| fp_op(c, b, i, |e, x, y| horizontal::<F32>(e, x, y, ADD)),
        M::Hsubps => |c, b, i| fp_op(c, b, i, |e, x, y| horizontal::<F32>(e, x, y, SUB)),
        M::Haddpd => |c, b, i| fp_op(c, b, i, |e, x, y| horizontal::<F64>(e, x, y, ADD)),
        M::Hsubpd => |c, b, i| fp_op(c, b, i, |e, x, y| horizontal::<F64>(e, x, y, SUB)),
        M::Addsubps => |c, b, i| fp_op(c, b, i, addsub::<F32>),
        M::Addsubpd => |c, b, i| fp_op(c, b, i, addsub::<F64>),
        M::Rcpps => |c, b, i| xmm_op(c, b, i, |_, s| zip32(s, 0, |x, _| rcp_f32(x))),
        M::Rcpss => |c, b, i| xmm_op(c, b, i, |d, s| (d & !LOW32) | rcp_f32(s as u32) as u128),
        M::Rsqrtps => |c, b, i| xmm_op(c, b, i, |_, s| zip32(s, 0, |x, _| rsqrt_f32(x))),
        M::Rsqrtss => |c, b, i| xmm_op(c, b, i, |d, s| (d & !LOW32) | rsqrt_f32(s as u32) as u128),
        M::Dpps => dpps,
        M::Dppd => dppd,
        M::Roundps => round::<F32, true>,
        M::Roundss => round::<F32, false>,
        M::Roundpd => round::<F64, true>,
        M::Roundsd => round::<F64, false>,
        _ => return None,
    })
}

const LOW32: u128 = u32::MAX as u128;

#[inline(always)]
fn apply<F: Fmt>(e: &mut Env, op: u8, a: u64, b: u64) -> u64 {
    match op {
        ADD => e.add::<F>(a, b),
        SUB => e.sub::<F>(a, b),
        MUL => e.mul::<F>(a, b),
        DIV => e.div::<F>(a, b),
        MIN => e.min_max::<F>(a, b, false),
        _ => e.min_max::<F>(a, b, true),
    }
}

#[inline(always)]
fn lane_mask<F: Fmt>() -> u128 {
    (1u128 << F::BITS) - 1
}

#[inline(always)]
fn lane<F: Fmt>(v: u128, k: u32) -> u64 {
    ((v >> (k * F::BITS)) & lane_mask::<F>()) as u64
}

/// Applies `f` to the first `n` element pairs; the other elements keep `a`'s.
#[inline(always)]
pub(super) fn lanes<F: Fmt>(e: &mut Env, a: u128, b: u128, n: u32, mut f: impl FnMut(&mut Env, u64, u64) -> u64) -> u128 {
    let mut r = a;
    for k in 0..n {
        let sh = k * F::BITS;
        r &= !(lane_mask::<F>() << sh);
        r |= (f(e, lane::<F>(a, k), lane::<F>(b, k)) as u128 & lane_mask::<F>()) << sh;
    }
    r
}

/// Element count of a packed (all) or scalar (one) form.
#[inline(always)]
fn count<F: Fmt>(packed: bool) -> u32 {
    if packed {
        128 / F::BITS
    } else {
        1
    }
}

fn arith<F: Fmt, const OP: u8, const PACKED: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    fp_op(cpu, bus, insn, |e, a, b| lanes::<F>(e, a, b, count::<F>(PACKED), |e, x, y| apply::<F>(e, OP, x, y)))
}

fn sqrt<F: Fmt, const PACKED: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    fp_op(cpu, bus, insn, |e, a, b| lanes::<F>(e, a, b, count::<F>(PACKED), |e, _, y| e.sqrt::<F>(y)))
}

/// HADD/HSUB: adjacent pairs of the destination, then of the source.
fn horizontal<F: Fmt>(e: &mut Env, a: u128, b: u128, op: u8) -> u128 {
    let n = 128 / F::BITS;
    let mut r = 0u128;
    for k in 0..n {
        let src = if k < n / 2 { a } else { b };
        let j = (k % (n / 2)) * 2;
        let v = apply::<F>(e, op, lane::<F>(src, j), lane::<F>(src, j + 1));
        r |= (v as u128 & lane_mask::<F>()) << (k * F::BITS);
    }
    r
}

/// ADDSUB: even elements subtract, odd elements add.
fn addsub<F: Fmt>(e: &mut Env, a: u128, b: u128) -> u128 {
    let mut k = 0;
    lanes::<F>(e, a, b, 128 / F::BITS, |e, x, y| {
        k += 1;
        if k % 2 == 1 {
            e.sub::<F>(x, y)
        } else {
            e.add::<F>(x, y)
        }
    })
}

/// DPPS (SDM pseudo-code): products selected by imm8[7:4] (others +0.0), summed pairwise with
/// rounding at each step, broadcast to the elements selected by imm8[3:0] (others +0.0).
fn dpps(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8();
    fp_op(cpu, bus, insn, |e, a, b| {
        let t: [u64; 4] = core::array::from_fn(|k| {
            if imm >> (4 + k) & 1 != 0 {
                e.mul::<F32>(lane::<F32>(a, k as u32), lane::<F32>(b, k as u32))
            } else {
                0
            }
        });
        let lo = e.add::<F32>(t[0], t[1]);
        let hi = e.add::<F32>(t[2], t[3]);
        let sum = e.add::<F32>(lo, hi) as u128;
        (0..4).filter(|k| imm >> k & 1 != 0).fold(0u128, |r, k| r | sum << (32 * k))
    })
}

fn dppd(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8();
    fp_op(cpu, bus, insn, |e, a, b| {
        let t: [u64; 2] = core::array::from_fn(|k| {
            if imm >> (4 + k) & 1 != 0 {
                e.mul::<F64>(lane::<F64>(a, k as u32), lane::<F64>(b, k as u32))
            } else {
                0
            }
        });
        let sum = e.add::<F64>(t[0], t[1]) as u128;
        (0..2).filter(|k| imm >> k & 1 != 0).fold(0u128, |r, k| r | sum << (64 * k))
    })
}

/// ROUNDxx: imm8[1:0] rounding mode unless imm8[2] selects MXCSR.RC; imm8[3] suppresses the
/// precision exception.
fn round<F: Fmt, const PACKED: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8() as u32;
    let quiet = imm & 8 != 0;
    fp_op(cpu, bus, insn, |e, a, b| {
        let rc = if imm & 4 != 0 { e.rc } else { Round::from_bits(imm) };
        lanes::<F>(e, a, b, count::<F>(PACKED), |e, _, y| e.round_int::<F>(y, rc, quiet))
    })
}
