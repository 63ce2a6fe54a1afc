//! 256-bit forms whose destination and source differ in width: VPMOVSX*/VPMOVZX* ymm and the
//! conversions VCVTDQ2PD/VCVTPS2PD ymm (widening) and VCVTPD2PS/VCVTPD2DQ/VCVTTPD2DQ from ymm
//! (narrowing). Their 128-bit forms are the SSE twins'.

use super::super::sse::softfloat::{Env, Round, F64};
use super::super::sse::{commit_fp, from_d32, q64, widen};
use super::{read, wide_operand, write};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::interp::sse::check_avx;
use crate::interp::Handler;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic as M};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if wide_operand(insn, 0) {
        return Some(match insn.mnemonic() {
            M::Vpmovsxbw => |c, b, i| extend(c, b, i, 8, 16, true),
            M::Vpmovsxbd => |c, b, i| extend(c, b, i, 8, 32, true),
            M::Vpmovsxbq => |c, b, i| extend(c, b, i, 8, 64, true),
            M::Vpmovsxwd => |c, b, i| extend(c, b, i, 16, 32, true),
            M::Vpmovsxwq => |c, b, i| extend(c, b, i, 16, 64, true),
            M::Vpmovsxdq => |c, b, i| extend(c, b, i, 32, 64, true),
            M::Vpmovzxbw => |c, b, i| extend(c, b, i, 8, 16, false),
            M::Vpmovzxbd => |c, b, i| extend(c, b, i, 8, 32, false),
            M::Vpmovzxbq => |c, b, i| extend(c, b, i, 8, 64, false),
            M::Vpmovzxwd => |c, b, i| extend(c, b, i, 16, 32, false),
            M::Vpmovzxwq => |c, b, i| extend(c, b, i, 16, 64, false),
            M::Vpmovzxdq => |c, b, i| extend(c, b, i, 32, 64, false),
            M::Vcvtdq2pd => |c, b, i| to_doubles(c, b, i, |e, x| e.int_to_float::<F64>(x as i32 as i64)),
            M::Vcvtps2pd => |c, b, i| to_doubles(c, b, i, |e, x| e.f32_to_f64(x as u64)),
            _ => return None,
        });
    }
    if !wide_operand(insn, 1) {
        return None;
    }
    Some(match insn.mnemonic() {
        M::Vcvtpd2ps => |c, b, i| from_doubles(c, b, i, |e, x| e.f64_to_f32(x) as u32),
        M::Vcvtpd2dq => |c, b, i| from_doubles(c, b, i, |e, x| e.float_to_int::<F64>(x, 32, e.rc) as u32),
        M::Vcvttpd2dq => |c, b, i| from_doubles(c, b, i, |e, x| e.float_to_int::<F64>(x, 32, Round::Zero) as u32),
        _ => return None,
    })
}

/// Sign or zero extension of the source's low 256/`to` elements into a ymm register.
fn extend(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, from: u32, to: u32, signed: bool) -> Result<()> {
    check_avx(cpu)?;
    let s = read(cpu, bus, insn, 1)?[0];
    let per_lane = 128 / to;
    write(cpu, insn, [widen(s, from, to, signed), widen(s >> (per_lane * from), from, to, signed)]);
    Ok(())
}

/// Four dwords/singles of an xmm/m128 source to four doubles in a ymm register.
fn to_doubles(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: fn(&mut Env, u32) -> u64) -> Result<()> {
    check_avx(cpu)?;
    let s = read(cpu, bus, insn, 1)?[0];
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let d: [u64; 4] = core::array::from_fn(|k| f(&mut env, (s >> (32 * k)) as u32));
    commit_fp(cpu, &env)?;
    write(cpu, insn, [d[0] as u128 | (d[1] as u128) << 64, d[2] as u128 | (d[3] as u128) << 64]);
    Ok(())
}

/// Four doubles of a ymm/m256 source to four dwords/singles in an xmm register (upper lane
/// zeroed).
fn from_doubles(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: fn(&mut Env, u64) -> u32) -> Result<()> {
    check_avx(cpu)?;
    let s = read(cpu, bus, insn, 1)?;
    let q = [q64(s[0]), q64(s[1])].concat();
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let d: [u32; 4] = core::array::from_fn(|k| f(&mut env, q[k]));
    commit_fp(cpu, &env)?;
    write(cpu, insn, [from_d32(d), 0]);
    Ok(())
}
