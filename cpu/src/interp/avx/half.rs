//! F16C: VCVTPH2PS (half to single, exact) and VCVTPS2PH (single to half, rounded by imm8
//! bits 1:0, or by MXCSR.RC when imm8 bit 2 is set).

use super::super::sse::commit_fp;
use super::super::sse::softfloat::{Env, Round};
use super::{element, read, set_element, write, Y};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::interp::sse::{check_avx, is_wide_operand, write_mem_op};
use crate::interp::Handler;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Vcvtph2ps => to_single,
        Mnemonic::Vcvtps2ph => to_half,
        _ => return None,
    })
}

fn to_single(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let src = read(cpu, bus, insn, 1)?[0];
    let n = if insn.op0_register().is_ymm() { 8 } else { 4 };
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let mut out: Y = [0; 2];
    for k in 0..n {
        let v = env.half_to_single((src >> (16 * k)) as u16);
        set_element(&mut out, 32, k, v as u64);
    }
    commit_fp(cpu, &env)?;
    write(cpu, insn, out);
    Ok(())
}

fn to_half(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let src = read(cpu, bus, insn, 1)?;
    let n = if is_wide_operand(insn, 1) { 8 } else { 4 };
    let imm = insn.immediate8();
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let rc = if imm & 4 != 0 { env.rc } else { Round::from_bits(imm as u32) };
    let halves = (0..n).fold(0u128, |acc, k| acc | (env.single_to_half(element(src, 32, k) as u32, rc) as u128) << (16 * k));
    commit_fp(cpu, &env)?;
    match insn.op_kind(0) {
        OpKind::Register => write(cpu, insn, [halves, 0]),
        _ => write_mem_op(cpu, bus, insn, (n * 2) as u8, halves)?,
    }
    Ok(())
}
