//! Integer arithmetic and logic: ADD ADC SUB SBB AND OR XOR CMP TEST INC DEC NEG NOT.
//! Flags are recorded lazily (see `flags.rs`). LOCK-prefixed forms update memory with host
//! atomics (see `atomic.rs`).

use super::atomic::split_lock;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{size_mask, CcOp};
use crate::Cpu;
use crate::mmu::atomic::{atomic_rmw, fetch_add};
use crate::mmu::Access;
use crate::operand::{gpr_size, is_ea64};
use iced_x86::{Instruction, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if insn.has_lock_prefix() {
        // Decoded only with a memory destination (see `atomic.rs`); CMP and TEST never.
        return Some(match insn.mnemonic() {
            Mnemonic::Add => locked_binary::<ADD>,
            Mnemonic::Adc => locked_binary::<ADC>,
            Mnemonic::Sub => locked_binary::<SUB>,
            Mnemonic::Sbb => locked_binary::<SBB>,
            Mnemonic::And => locked_binary::<AND>,
            Mnemonic::Or => locked_binary::<OR>,
            Mnemonic::Xor => locked_binary::<XOR>,
            Mnemonic::Inc => locked_inc_dec::<true>,
            Mnemonic::Dec => locked_inc_dec::<false>,
            Mnemonic::Neg => locked_neg,
            Mnemonic::Not => locked_not,
            _ => return None,
        });
    }
    Some(match insn.mnemonic() {
        Mnemonic::Add => pick_binary::<ADD>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Add)),
        Mnemonic::Adc => pick_binary::<ADC>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Adc)),
        Mnemonic::Sub => pick_binary::<SUB>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Sub)),
        Mnemonic::Sbb => pick_binary::<SBB>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Sbb)),
        Mnemonic::Cmp => pick_binary::<CMP>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Cmp)),
        Mnemonic::And => pick_binary::<AND>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::And)),
        Mnemonic::Or => pick_binary::<OR>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Or)),
        Mnemonic::Xor => pick_binary::<XOR>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Xor)),
        Mnemonic::Test => pick_binary::<TEST>(insn).unwrap_or(|c, b, i| binary(c, b, i, Op::Test)),
        Mnemonic::Inc => pick_inc_dec::<true>(insn).unwrap_or(inc),
        Mnemonic::Dec => pick_inc_dec::<false>(insn).unwrap_or(dec),
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

// `Op` as const-generic parameters of the specialised handlers.
const ADD: u8 = 0;
const ADC: u8 = 1;
const SUB: u8 = 2;
const SBB: u8 = 3;
const CMP: u8 = 4;
const AND: u8 = 5;
const OR: u8 = 6;
const XOR: u8 = 7;
const TEST: u8 = 8;

impl Op {
    #[inline(always)]
    const fn from_u8(op: u8) -> Op {
        match op {
            ADD => Op::Add,
            ADC => Op::Adc,
            SUB => Op::Sub,
            SBB => Op::Sbb,
            CMP => Op::Cmp,
            AND => Op::And,
            OR => Op::Or,
            XOR => Op::Xor,
            _ => Op::Test,
        }
    }
}

/// A handler specialised for `reg, reg` or `reg, imm` with the width fixed at decode time,
/// so the common forms skip operand-kind dispatch; `None` for the other forms.
fn pick_binary<const OP: u8>(insn: &Instruction) -> Option<Handler> {
    if insn.op0_kind() == OpKind::Memory && is_ea64(insn) {
        let w = insn.memory_size().size();
        let src = match imm_kind(insn.op1_kind()) {
            Some(k) => k,
            None if insn.op1_kind() == OpKind::Register && gpr_size(insn.op1_register()) as usize == w => SRC_REG,
            None => return None,
        };
        return Some(match (w, src) {
            (1, SRC_REG) => binary_m::<OP, 1, SRC_REG>,
            (2, SRC_REG) => binary_m::<OP, 2, SRC_REG>,
            (4, SRC_REG) => binary_m::<OP, 4, SRC_REG>,
            (8, SRC_REG) => binary_m::<OP, 8, SRC_REG>,
            (1, SRC_IMM8) => binary_m::<OP, 1, SRC_IMM8>,
            (2, SRC_IMM8) => binary_m::<OP, 2, SRC_IMM8>,
            (4, SRC_IMM8) => binary_m::<OP, 4, SRC_IMM8>,
            (8, SRC_IMM8) => binary_m::<OP, 8, SRC_IMM8>,
            (1, _) => binary_m::<OP, 1, SRC_IMM32>,
            (2, _) => binary_m::<OP, 2, SRC_IMM32>,
            (4, _) => binary_m::<OP, 4, SRC_IMM32>,
            (8, _) => binary_m::<OP, 8, SRC_IMM32>,
            _ => return None,
        });
    }
    if insn.op0_kind() != OpKind::Register {
        return None;
    }
    let w = gpr_size(insn.op0_register());
    if insn.op1_kind() == OpKind::Register && gpr_size(insn.op1_register()) == w {
        return Some(match w {
            1 => binary_rr::<OP, 1>,
            2 => binary_rr::<OP, 2>,
            4 => binary_rr::<OP, 4>,
            8 => binary_rr::<OP, 8>,
            _ => return None,
        });
    }
    return Some(match (w, imm_kind(insn.op1_kind())?) {
        (1, SRC_IMM8) => binary_ri::<OP, 1, SRC_IMM8>,
        (2, SRC_IMM8) => binary_ri::<OP, 2, SRC_IMM8>,
        (4, SRC_IMM8) => binary_ri::<OP, 4, SRC_IMM8>,
        (8, SRC_IMM8) => binary_ri::<OP, 8, SRC_IMM8>,
        (1, _) => binary_ri::<OP, 1, SRC_IMM32>,
        (2, _) => binary_ri::<OP, 2, SRC_IMM32>,
        (4, _) => binary_ri::<OP, 4, SRC_IMM32>,
        (8, _) => binary_ri::<OP, 8, SRC_IMM32>,
        _ => return None,
    });
}

// Source kinds of the specialised handlers: a register, or an immediate encoded in 8 bits
// or in 16/32 bits.
const SRC_REG: u8 = 0;
const SRC_IMM8: u8 = 1;
const SRC_IMM32: u8 = 2;

fn imm_kind(k: OpKind) -> Option<u8> {
    match k {
        OpKind::Immediate8 | OpKind::Immediate8to16 | OpKind::Immediate8to32 | OpKind::Immediate8to64 => Some(SRC_IMM8),
        OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate32to64 => Some(SRC_IMM32),
        _ => None,
    }
}

/// The immediate operand, sign-extended from its encoded width; masked to the operand size
/// by the caller, this equals `insn.immediate(1)` for every form `imm_kind` accepts.
#[inline(always)]
fn imm_src<const SRC: u8>(insn: &Instruction) -> u64 {
    if SRC == SRC_IMM8 {
        insn.immediate8to64() as u64
    } else {
        insn.immediate32to64() as u64
    }
}

/// The result (unmasked) and flag kind of `op`.
#[inline(always)]
fn compute(op: Op, dst: u64, src: u64, carry: bool) -> (u64, CcOp) {
    match op {
        Op::Add | Op::Adc => (dst.wrapping_add(src).wrapping_add(carry as u64), CcOp::Add),
        Op::Sub | Op::Sbb | Op::Cmp => (dst.wrapping_sub(src).wrapping_sub(carry as u64), CcOp::Sub),
        Op::And | Op::Test => (dst & src, CcOp::Logic),
        Op::Or => (dst | src, CcOp::Logic),
        Op::Xor => (dst ^ src, CcOp::Logic),
    }
}

/// `binary` with a register destination of `W` bytes and source `src`.
#[inline(always)]
fn binary_reg<const OP: u8, const W: u8>(cpu: &mut Cpu, insn: &Instruction, src: u64) {
    let op = Op::from_u8(OP);
    let dst = cpu.reg_w::<W>(insn.op0_register());
    let src = src & size_mask(W);
    let carry = matches!(op, Op::Adc | Op::Sbb) && cpu.cf();
    let (res, cc) = compute(op, dst, src, carry);
    let res = res & size_mask(W);
    if !matches!(op, Op::Cmp | Op::Test) {
        cpu.set_reg_w::<W>(insn.op0_register(), res);
    }
    cpu.set_cc(cc, W, dst, src, res, carry);
}

fn binary_rr<const OP: u8, const W: u8>(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let src = cpu.reg_w::<W>(insn.op1_register());
    binary_reg::<OP, W>(cpu, insn, src);
    Ok(())
}

fn binary_ri<const OP: u8, const W: u8, const SRC: u8>(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    binary_reg::<OP, W>(cpu, insn, imm_src::<SRC>(insn));
    Ok(())
}

/// `binary` with a `W`-byte memory destination (64-bit addressing) and a register or
/// immediate source (`SRC`). When the TLB already allows the access on plain RAM, the
/// read-modify-write goes straight to memory; otherwise the general path raises the faults.
fn binary_m<const OP: u8, const W: u8, const SRC: u8>(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    insn: &Instruction,
) -> Result<()> {
    let op = Op::from_u8(OP);
    let writes = !matches!(op, Op::Cmp | Op::Test);
    let access = if writes { Access::Write } else { Access::Read };
    let off = cpu.ea64(insn);
    let lin = cpu.linear(cpu.memory_segment(insn), off, W, access)?;
    let ctx = cpu.data_ctx();
    if !cpu.tlb_hit(lin, W, ctx, access) {
        return binary(cpu, bus, insn, op);
    }
    let dst = cpu.read_lin(bus, lin, W, ctx)?;
    let src = if SRC == SRC_REG { cpu.reg_w::<W>(insn.op1_register()) } else { imm_src::<SRC>(insn) } & size_mask(W);
    let carry = matches!(op, Op::Adc | Op::Sbb) && cpu.cf();
    let (res, cc) = compute(op, dst, src, carry);
    let res = res & size_mask(W);
    if writes {
        cpu.write_lin(bus, lin, W, res, ctx)?;
    }
    cpu.set_cc(cc, W, dst, src, res, carry);
    Ok(())
}

fn pick_inc_dec<const INC: bool>(insn: &Instruction) -> Option<Handler> {
    if insn.op0_kind() != OpKind::Register {
        return None;
    }
    Some(match gpr_size(insn.op0_register()) {
        1 => inc_dec_r::<INC, 1>,
        2 => inc_dec_r::<INC, 2>,
        4 => inc_dec_r::<INC, 4>,
        8 => inc_dec_r::<INC, 8>,
        _ => return None,
    })
}

/// INC/DEC of a `W`-byte register.
fn inc_dec_r<const INC: bool, const W: u8>(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let r = insn.op0_register();
    let dst = cpu.reg_w::<W>(r);
    let res = if INC { dst.wrapping_add(1) } else { dst.wrapping_sub(1) } & size_mask(W);
    cpu.set_reg_w::<W>(r, res);
    let cf = cpu.cf();
    cpu.set_cc(if INC { CcOp::Inc } else { CcOp::Dec }, W, dst, 1, res, cf);
    Ok(())
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
    let (res, cc) = compute(op, dst, src, carry);
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

/// LOCK ADD/ADC/SUB/SBB/AND/OR/XOR m, r/imm: the memory update is one host atomic (`lock
/// xadd` for ADD and SUB, a compare-exchange loop otherwise); result and flags come from the
/// value it replaced.
fn locked_binary<const OP: u8>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let op = Op::from_u8(OP);
    let size = cpu.op_size(insn, 0);
    let mask = size_mask(size);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return binary(cpu, bus, insn, op);
    };
    // A register or an immediate: reading it cannot fault.
    let src = cpu.read_op(bus, insn, 1)? & mask;
    let carry = matches!(op, Op::Adc | Op::Sbb) && cpu.cf();
    // SAFETY: `locked_ptr` returned the host address of `size` bytes of writable guest RAM
    // inside one mapped page.
    let dst = unsafe {
        match op {
            Op::Add => fetch_add(p, size, src),
            Op::Sub => fetch_add(p, size, src.wrapping_neg()),
            _ => atomic_rmw(p, size, |dst| compute(op, dst, src, carry).0),
        }
    };
    let (res, cc) = compute(op, dst, src, carry);
    cpu.set_cc(cc, size, dst, src, res & mask, carry);
    Ok(())
}

/// LOCK INC/DEC m: one host `lock xadd` of +1 or -1.
fn locked_inc_dec<const INC: bool>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return inc_dec(cpu, bus, insn, if INC { CcOp::Inc } else { CcOp::Dec });
    };
    // SAFETY: as in `locked_binary`.
    let dst = unsafe { fetch_add(p, size, if INC { 1 } else { !0 }) };
    let res = if INC { dst.wrapping_add(1) } else { dst.wrapping_sub(1) } & size_mask(size);
    let cf = cpu.cf();
    cpu.set_cc(if INC { CcOp::Inc } else { CcOp::Dec }, size, dst, 1, res, cf);
    Ok(())
}

/// LOCK NEG m: a compare-exchange loop.
fn locked_neg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return neg(cpu, bus, insn);
    };
    // SAFETY: as in `locked_binary`.
    let src = unsafe { atomic_rmw(p, size, |v| v.wrapping_neg()) };
    let res = src.wrapping_neg() & size_mask(size);
    cpu.set_cc(CcOp::Sub, size, 0, src, res, false);
    Ok(())
}

/// LOCK NOT m: a compare-exchange loop (no flags).
fn locked_not(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return not(cpu, bus, insn);
    };
    // SAFETY: as in `locked_binary`.
    unsafe { atomic_rmw(p, size, |v| !v) };
    Ok(())
}
