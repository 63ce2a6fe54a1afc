//! Conversions: between singles and doubles, from integers (rounded per MXCSR), to integers
//! (rounded per MXCSR, or truncated by the CVTT forms; NaN and out-of-range give the integer
//! indefinite 0x80000000 / 0x8000000000000000), including the MMX-register forms.

use super::softfloat::{Fmt, Round, F32, F64};
use super::*;
use crate::operand::gpr_size;
use iced_x86::Code;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Code as C;
    Some(match insn.code() {
        C::Cvtsi2ss_xmm_rm32 | C::Cvtsi2ss_xmm_rm64 => int_to_scalar::<F32>,
        C::Cvtsi2sd_xmm_rm32 | C::Cvtsi2sd_xmm_rm64 => int_to_scalar::<F64>,
        C::Cvtss2si_r32_xmmm32 | C::Cvtss2si_r64_xmmm32 => scalar_to_int::<F32, false>,
        C::Cvttss2si_r32_xmmm32 | C::Cvttss2si_r64_xmmm32 => scalar_to_int::<F32, true>,
        C::Cvtsd2si_r32_xmmm64 | C::Cvtsd2si_r64_xmmm64 => scalar_to_int::<F64, false>,
        C::Cvttsd2si_r32_xmmm64 | C::Cvttsd2si_r64_xmmm64 => scalar_to_int::<F64, true>,
        C::Cvtss2sd_xmm_xmmm32 => |c, b, i| fp_op(c, b, i, |e, d, s| (d & !LOW64) | e.f32_to_f64(s as u32 as u64) as u128),
        C::Cvtsd2ss_xmm_xmmm64 => |c, b, i| fp_op(c, b, i, |e, d, s| (d & !LOW32) | e.f64_to_f32(s as u64) as u128),
        C::Cvtps2pd_xmm_xmmm64 => |c, b, i| {
            fp_op(c, b, i, |e, _, s| {
                let lo = e.f32_to_f64(s as u32 as u64);
                let hi = e.f32_to_f64((s >> 32) as u32 as u64);
                from_q64([lo, hi])
            })
        },
        C::Cvtpd2ps_xmm_xmmm128 => |c, b, i| {
            fp_op(c, b, i, |e, _, s| {
                let lo = e.f64_to_f32(s as u64);
                let hi = e.f64_to_f32((s >> 64) as u64);
                (lo | hi << 32) as u128
            })
        },
        C::Cvtdq2ps_xmm_xmmm128 => |c, b, i| fp_op(c, b, i, |e, _, s| zip32(s, 0, |x, _| e.int_to_float::<F32>(x as i32 as i64) as u32)),
        C::Cvtdq2pd_xmm_xmmm64 => |c, b, i| {
            fp_op(c, b, i, |e, _, s| from_q64([e.int_to_float::<F64>(s as i32 as i64), e.int_to_float::<F64>((s >> 32) as i32 as i64)]))
        },
        C::Cvtps2dq_xmm_xmmm128 => |c, b, i| fp_op(c, b, i, |e, _, s| singles_to_ints(e, s, 4, e.rc)),
        C::Cvttps2dq_xmm_xmmm128 => |c, b, i| fp_op(c, b, i, |e, _, s| singles_to_ints(e, s, 4, Round::Zero)),
        C::Cvtpd2dq_xmm_xmmm128 => |c, b, i| fp_op(c, b, i, |e, _, s| doubles_to_ints(e, s, e.rc)),
        C::Cvttpd2dq_xmm_xmmm128 => |c, b, i| fp_op(c, b, i, |e, _, s| doubles_to_ints(e, s, Round::Zero)),
        C::Cvtpi2ps_xmm_mmm64 => |c, b, i| {
            from_mm(c, b, i, |e, d, s| {
                let lo = e.int_to_float::<F32>(s as i32 as i64) as u128;
                let hi = e.int_to_float::<F32>((s >> 32) as i32 as i64) as u128;
                (d & !LOW64) | lo | hi << 32
            })
        },
        C::Cvtpi2pd_xmm_mmm64 => |c, b, i| {
            from_mm(c, b, i, |e, _, s| from_q64([e.int_to_float::<F64>(s as i32 as i64), e.int_to_float::<F64>((s >> 32) as i32 as i64)]))
        },
        C::Cvtps2pi_mm_xmmm64 => |c, b, i| to_mm(c, b, i, |e, s| singles_to_ints(e, s, 2, e.rc) as u64),
        C::Cvttps2pi_mm_xmmm64 => |c, b, i| to_mm(c, b, i, |e, s| singles_to_ints(e, s, 2, Round::Zero) as u64),
        C::Cvtpd2pi_mm_xmmm128 => |c, b, i| to_mm(c, b, i, |e, s| doubles_to_ints(e, s, e.rc) as u64),
        C::Cvttpd2pi_mm_xmmm128 => |c, b, i| to_mm(c, b, i, |e, s| doubles_to_ints(e, s, Round::Zero) as u64),
        _ => return None,
    })
}

const LOW32: u128 = u32::MAX as u128;
const LOW64: u128 = u64::MAX as u128;

/// The first `n` singles of `s` to 32-bit integers (upper result elements zero).
fn singles_to_ints(e: &mut Env, s: u128, n: usize, rc: Round) -> u128 {
    let s = d32(s);
    from_d32(core::array::from_fn(|k| if k < n { e.float_to_int::<F32>(s[k] as u64, 32, rc) as u32 } else { 0 }))
}

/// Both doubles of `s` to 32-bit integers in the low quadword (upper quadword zero).
fn doubles_to_ints(e: &mut Env, s: u128, rc: Round) -> u128 {
    let lo = e.float_to_int::<F64>(s as u64, 32, rc);
    let hi = e.float_to_int::<F64>((s >> 64) as u64, 32, rc);
    (lo | hi << 32) as u128
}

/// CVTSI2SS/SD: a signed 32- or 64-bit integer into the low element.
fn int_to_scalar<F: Fmt>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    // The integer is the last operand (after VEX.vvvv's register in the VEX form).
    let size = cpu.op_size(insn, insn.op_count() - 1);
    let mask = (1u128 << F::BITS) - 1;
    fp_op(cpu, bus, insn, |e, d, s| {
        let v = if size == 8 { s as u64 as i64 } else { s as u32 as i32 as i64 };
        (d & !mask) | e.int_to_float::<F>(v) as u128
    })
}

/// CVT(T)SS2SI/CVT(T)SD2SI: the low element to a 32- or 64-bit general register.
fn scalar_to_int<F: Fmt, const TRUNCATE: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let s = read_src(cpu, bus, insn, 1)?;
    let r = insn.op0_register();
    let bits = gpr_size(r) as u32 * 8;
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let rc = if TRUNCATE { Round::Zero } else { env.rc };
    let v = env.float_to_int::<F>((s & ((1u128 << F::BITS) - 1)) as u64, bits, rc);
    commit_fp(cpu, &env)?;
    cpu.set_reg(r, v);
    Ok(())
}

/// CVTPI2PS/CVTPI2PD: an MMX register or m64 source. Only a register source makes the x87 →
/// MMX transition (SDM CVTPI2PS/CVTPI2PD).
fn from_mm(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: impl FnOnce(&mut Env, u128, u64) -> u128) -> Result<()> {
    let reg_src = insn.op_kind(1) == OpKind::Register;
    if reg_src {
        check_sse_mmx(cpu)?;
    } else {
        check_sse(cpu)?;
    }
    let s = read_src(cpu, bus, insn, 1)? as u64;
    let d = insn.op0_register();
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let v = f(&mut env, xmm(cpu, d), s);
    commit_fp(cpu, &env)?;
    if reg_src {
        enter_mmx(cpu);
    }
    set_xmm(cpu, d, v);
    Ok(())
}

/// CVT(T)PS2PI/CVT(T)PD2PI: into an MMX register.
fn to_mm(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: impl FnOnce(&mut Env, u128) -> u64) -> Result<()> {
    check_sse_mmx(cpu)?;
    let s = read_src(cpu, bus, insn, 1)?;
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let v = f(&mut env, s);
    commit_fp(cpu, &env)?;
    enter_mmx(cpu);
    set_mm(cpu, mm_index(insn.op0_register()), v);
    Ok(())
}
