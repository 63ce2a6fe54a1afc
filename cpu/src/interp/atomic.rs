//! Locked read-modify-write instructions: CMPXCHG, CMPXCHG8B, CMPXCHG16B, XADD (XCHG lives in
//! `datamov.rs`).
//!
//! One vCPU runs one instruction at a time, so every handler here is atomic as written; the
//! LOCK prefix needs no action. iced (with `DecoderOptions::NONE`) already decodes a LOCK
//! prefix on an instruction that does not allow it, or with a register destination, as
//! invalid, which becomes #UD. Memory destinations are checked for writability before they
//! are read, and written back even when the comparison fails, as the locked cycle does.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::flags::{size_mask, CcOp};
use crate::mmu::Access;
use crate::operand::Loc;
use crate::state::flags::ZF;
use crate::state::reg::{RAX, RBX, RCX, RDX};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, Register};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Cmpxchg => cmpxchg,
        Mnemonic::Cmpxchg8b => cmpxchg8b,
        Mnemonic::Cmpxchg16b => cmpxchg16b,
        Mnemonic::Xadd => xadd,
        _ => return None,
    })
}

/// AL, AX, EAX or RAX.
fn accumulator(size: u8) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

/// CMPXCHG r/m, r: if the accumulator equals the destination, the destination takes the
/// source (ZF = 1); otherwise the accumulator takes the destination (ZF = 0). A register
/// destination is only written on success, the accumulator only on failure (so the upper
/// half of a 64-bit register is cleared only by the 32-bit write that happens). Flags as
/// CMP accumulator, destination.
fn cmpxchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let acc = cpu.state.gpr[RAX] & m;
    if acc == dst {
        let src = cpu.reg(insn.op1_register());
        cpu.write_loc(bus, loc, size, src)?;
    } else {
        // The SDM's pseudo-code writes DEST back with its own value on failure; for a 32-bit
        // register in 64-bit mode that zero-extends it (KVM's emulator agrees).
        cpu.write_loc(bus, loc, size, dst)?;
        cpu.set_reg(accumulator(size), dst);
    }
    cpu.set_cc(CcOp::Sub, size, acc, dst, acc.wrapping_sub(dst) & m, false);
    Ok(())
}

/// CMPXCHG8B m64: EDX:EAX against the memory; ECX:EBX stored on a match, otherwise the
/// memory value loaded into EDX:EAX (zero-extending both). Only ZF changes.
fn cmpxchg8b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, 8)?;
    let v = cpu.read_loc(bus, loc, 8)?;
    let g = &cpu.state.gpr;
    let expected = (g[RDX] << 32) | (g[RAX] & 0xffff_ffff);
    let new = (g[RCX] << 32) | (g[RBX] & 0xffff_ffff);
    if v == expected {
        cpu.write_loc(bus, loc, 8, new)?;
        cpu.set_arith_flags(ZF, ZF);
    } else {
        cpu.write_loc(bus, loc, 8, v)?;
        cpu.state.gpr[RAX] = v & 0xffff_ffff;
        cpu.state.gpr[RDX] = v >> 32;
        cpu.set_arith_flags(ZF, 0);
    }
    Ok(())
}

/// CMPXCHG16B m128: as CMPXCHG8B with RDX:RAX and RCX:RBX; #GP(0) unless the operand is
/// 16-byte aligned.
fn cmpxchg16b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin = cpu.linear(seg, off, 16, Access::Write)?;
    if lin & 0xf != 0 {
        return Err(Fault::gp0());
    }
    let ctx = cpu.data_ctx();
    cpu.probe_write(bus, lin, 16, ctx)?;
    let lo = cpu.read_lin(bus, lin, 8, ctx)?;
    let hi = cpu.read_lin(bus, lin + 8, 8, ctx)?;
    let g = &cpu.state.gpr;
    if lo == g[RAX] && hi == g[RDX] {
        let (new_lo, new_hi) = (g[RBX], g[RCX]);
        cpu.write_lin(bus, lin, 8, new_lo, ctx)?;
        cpu.write_lin(bus, lin + 8, 8, new_hi, ctx)?;
        cpu.set_arith_flags(ZF, ZF);
    } else {
        cpu.write_lin(bus, lin, 8, lo, ctx)?;
        cpu.write_lin(bus, lin + 8, 8, hi, ctx)?;
        cpu.state.gpr[RAX] = lo;
        cpu.state.gpr[RDX] = hi;
        cpu.set_arith_flags(ZF, 0);
    }
    Ok(())
}

/// XADD r/m, r: the destination takes the sum and the source register the old destination.
/// The destination is written last, so XADD r, r with one register leaves the sum.
fn xadd(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let src_reg = insn.op1_register();
    let src = cpu.reg(src_reg) & m;
    let sum = dst.wrapping_add(src) & m;
    match loc {
        Loc::Mem(..) => {
            cpu.write_loc(bus, loc, size, sum)?;
            cpu.set_reg(src_reg, dst);
        }
        Loc::Reg(r) => {
            cpu.set_reg(src_reg, dst);
            cpu.set_reg(r, sum);
        }
    }
    cpu.set_cc(CcOp::Add, size, dst, src, sum, false);
    Ok(())
}
