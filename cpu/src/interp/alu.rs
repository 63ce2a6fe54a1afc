//! Integer arithmetic and logic: ADD ADC SUB SBB AND OR XOR CMP TEST INC DEC NEG NOT.
//! Flags are recorded lazily (see `flags.rs`).

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{size_mask, CcOp};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Add => |c, b, i| binary(c, b, i, Op::Add),
        Mnemonic::Adc => |c, b, i| binary(c, b, i, Op::Adc),
        Mnemonic::Sub => |c, b, i| binary(c, b, i, Op::Sub),
        Mnemonic::Sbb => |c, b, i| binary(c, b, i, Op::Sbb),
        Mnemonic::Cmp => |c, b, i| binary(c, b, i, Op::Cmp),
        Mnemonic::And => |c, b, i| binary(c, b, i, Op::And),
        Mnemonic::Or => |c, b, i| binary(c, b, i, Op::Or),
        Mnemonic::Xor => |c, b, i| binary(c, b, i, Op::Xor),
        Mnemonic::Test => |c, b, i| binary(c, b, i, Op::Test),
        Mnemonic::Inc => inc,
        Mnemonic::Dec => dec,
        Mnemonic::Neg => neg,
        Mnemonic::Not => not,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Adc,
    Sub,
    Sbb,
    Cmp,
    And,
    Or,
    Xor,
    Test,
}

#[inline(always)]
fn binary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, op: Op) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let mask = size_mask(size);
    let loc = cpu.loc(insn, 0);
    if !matches!(op, Op::Cmp | Op::Test) {
        // A read-modify-write faults as a write (e.g. #PF with W=1), as on hardware.
        cpu.check_writable(bus, loc, size)?;
    }
    let dst = cpu.read_loc(bus, loc, size)?;
    let src = cpu.read_op(bus, insn, 1)? & mask;
    let carry = matches!(op, Op::Adc | Op::Sbb) && cpu.cf();
    let (res, cc) = match op {
        Op::Add | Op::Adc => (dst.wrapping_add(src).wrapping_add(carry as u64), CcOp::Add),
        Op::Sub | Op::Sbb | Op::Cmp => (dst.wrapping_sub(src).wrapping_sub(carry as u64), CcOp::Sub),
        Op::And | Op::Test => (dst & src, CcOp::Logic),
        Op::Or => (dst | src, CcOp::Logic),
        Op::Xor => (dst ^ src, CcOp::Logic),
    };
    let res = res & mask;
    if !matches!(op, Op::Cmp | Op::Test) {
        cpu.write_loc(bus, loc, size, res)?;
    }
    cpu.set_cc(cc, size, dst, src, res, carry);
    Ok(())
}

fn inc(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    inc_dec(cpu, bus, insn, CcOp::Inc)
}

fn dec(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    inc_dec(cpu, bus, insn, CcOp::Dec)
}

#[inline(always)]
fn inc_dec(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, op: CcOp) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let res = if op == CcOp::Inc { dst.wrapping_add(1) } else { dst.wrapping_sub(1) } & size_mask(size);
    cpu.write_loc(bus, loc, size, res)?;
    let cf = cpu.cf();
    cpu.set_cc(op, size, dst, 1, res, cf);
    Ok(())
}

fn neg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let src = cpu.read_loc(bus, loc, size)?;
    let res = 0u64.wrapping_sub(src) & size_mask(size);
    cpu.write_loc(bus, loc, size, res)?;
    cpu.set_cc(CcOp::Sub, size, 0, src, res, false);
    Ok(())
}

fn not(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let v = cpu.read_loc(bus, loc, size)?;
    cpu.write_loc(bus, loc, size, !v & size_mask(size))
}
