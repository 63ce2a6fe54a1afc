//! FMA3: VFMADD, VFMSUB, VFNMADD, VFNMSUB, VFMADDSUB and VFMSUBADD in their 132, 213 and
//! 231 operand orders, packed (PS/PD, 128 or 256 bits) and scalar (SS/SD), each element
//! rounded once (`Env::fused`).
//!
//! The digits name which operands multiply and which adds: 132 is op1 × op3 + op2, 213 is
//! op2 × op1 + op3, 231 is op2 × op3 + op1 (op1 the destination). A NaN result is the first
//! NaN of the multiplicand, the multiplier and the addend, in that order (the order of the
//! SDM's a × b + c for the form, as the host CPU also takes them).

use super::super::sse::commit_fp;
use super::super::sse::softfloat::{Env, Fmt, F32, F64};
use super::{element, read, set_element, write};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::interp::sse::check_avx;
use crate::interp::Handler;
use crate::Cpu;
use iced_x86::Instruction;

/// Signs of the product and the addend per element parity (even, odd): (negate product,
/// negate addend).
type Signs = [(bool, bool); 2];
const MADD: Signs = [(false, false); 2];
const MSUB: Signs = [(false, true); 2];
const NMADD: Signs = [(true, false); 2];
const NMSUB: Signs = [(true, true); 2];
/// VFMADDSUB subtracts in even elements and adds in odd ones; VFMSUBADD the reverse.
const MADDSUB: Signs = [(false, true), (false, false)];
const MSUBADD: Signs = [(false, false), (false, true)];

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    let name = format!("{:?}", insn.mnemonic()).to_ascii_lowercase();
    let rest = name.strip_prefix("vf")?;
    let (signs, rest) = [("maddsub", 4), ("msubadd", 5), ("madd", 0), ("msub", 1), ("nmadd", 2), ("nmsub", 3)]
        .iter()
        .find_map(|&(p, k)| rest.strip_prefix(p).map(|r| (k, r)))?;
    let order = ["132", "213", "231"].iter().position(|o| rest.starts_with(o))?;
    let (packed, double) = match &rest[3..] {
        "ps" => (true, false),
        "pd" => (true, true),
        "ss" => (false, false),
        "sd" => (false, true),
        _ => return None,
    };
    Some(match (double, packed) {
        (false, false) => by_order::<F32, false>(order, signs),
        (false, true) => by_order::<F32, true>(order, signs),
        (true, false) => by_order::<F64, false>(order, signs),
        (true, true) => by_order::<F64, true>(order, signs),
    })
}

fn by_order<F: Fmt + 'static, const PACKED: bool>(order: usize, signs: usize) -> Handler {
    match order {
        0 => by_signs::<F, PACKED, 0>(signs),
        1 => by_signs::<F, PACKED, 1>(signs),
        _ => by_signs::<F, PACKED, 2>(signs),
    }
}

fn by_signs<F: Fmt + 'static, const PACKED: bool, const ORDER: usize>(signs: usize) -> Handler {
    match signs {
        0 => fma::<F, PACKED, ORDER, 0>,
        1 => fma::<F, PACKED, ORDER, 1>,
        2 => fma::<F, PACKED, ORDER, 2>,
        3 => fma::<F, PACKED, ORDER, 3>,
        4 => fma::<F, PACKED, ORDER, 4>,
        _ => fma::<F, PACKED, ORDER, 5>,
    }
}

fn fma<F: Fmt, const PACKED: bool, const ORDER: usize, const SIGNS: usize>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let ops = [read(cpu, bus, insn, 0)?, read(cpu, bus, insn, 1)?, read(cpu, bus, insn, 2)?];
    let signs = [MADD, MSUB, NMADD, NMSUB, MADDSUB, MSUBADD][SIGNS];
    // (multiplicand, multiplier, addend) as operand indices.
    let (m1, m2, add) = [(0, 2, 1), (1, 0, 2), (1, 2, 0)][ORDER];
    let n = if !PACKED {
        1
    } else if insn.op0_register().is_ymm() {
        256 / F::BITS
    } else {
        128 / F::BITS
    };
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let mut out = ops[0];
    for k in 0..n {
        let x = ops.map(|v| element(v, F::BITS, k));
        let (neg_product, neg_addend) = signs[(k & 1) as usize];
        let r = match env.fused_nan::<F>([x[m1], x[m2], x[add]]) {
            Some(nan) => nan,
            None => env.fused::<F>(x[m1], x[m2], x[add], neg_product, neg_addend),
        };
        set_element(&mut out, F::BITS, k, r);
    }
    commit_fp(cpu, &env)?;
    write(cpu, insn, out);
    Ok(())
}
