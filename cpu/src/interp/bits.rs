//! Bit instructions: BT BTS BTR BTC, BSF BSR, TZCNT LZCNT, POPCNT.
//!
//! Flags the SDM leaves undefined follow current Intel cores (Skylake/Cascade Lake, as
//! measured for VirtualBox's IEM):
//! - BT/BTS/BTR/BTC change only CF.
//! - BSF/BSR clear OF, SF, AF and CF; with a zero source they set ZF and PF and leave the
//!   destination unchanged (the whole 64-bit register, even for 32-bit operands), otherwise
//!   ZF = 0 and PF is the parity of the bit index.
//! - TZCNT/LZCNT: CF = (source is 0), ZF = (result is 0) as documented; PF is the result's
//!   parity and OF, SF, AF are cleared.
//!
//! TZCNT and LZCNT are F3-prefixed BSF/BSR; a CPU without BMI1/LZCNT ignores the prefix.
//! The model check happens before lookup, so `without_feature` supplies BSF/BSR there (the
//! model never changes while code is cached, so deciding at decode time is exact).
//!
//! LOCK BTS/BTR/BTC update memory with a host compare-exchange loop (see `atomic.rs`).

use super::atomic::split_lock;
use super::datamov::sign_extend;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{parity, size_mask};
use crate::mmu::atomic::atomic_rmw;
use crate::operand::{address_mask, Loc};
use crate::state::flags::{ARITH, CF, PF, ZF};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if insn.has_lock_prefix() {
        // Decoded only with a memory destination (see `atomic.rs`); BT never.
        return Some(match insn.mnemonic() {
            Mnemonic::Bts => |c, b, i| locked_bit_test(c, b, i, BitOp::Set),
            Mnemonic::Btr => |c, b, i| locked_bit_test(c, b, i, BitOp::Reset),
            Mnemonic::Btc => |c, b, i| locked_bit_test(c, b, i, BitOp::Complement),
            _ => return None,
        });
    }
    Some(match insn.mnemonic() {
        Mnemonic::Bt => |c, b, i| bit_test(c, b, i, BitOp::Test),
        Mnemonic::Bts => |c, b, i| bit_test(c, b, i, BitOp::Set),
        Mnemonic::Btr => |c, b, i| bit_test(c, b, i, BitOp::Reset),
        Mnemonic::Btc => |c, b, i| bit_test(c, b, i, BitOp::Complement),
        Mnemonic::Bsf => |c, b, i| bit_scan(c, b, i, true),
        Mnemonic::Bsr => |c, b, i| bit_scan(c, b, i, false),
        Mnemonic::Tzcnt => |c, b, i| count_zeros(c, b, i, true),
        Mnemonic::Lzcnt => |c, b, i| count_zeros(c, b, i, false),
        Mnemonic::Popcnt => popcnt,
        _ => return None,
    })
}

/// The handler for an instruction whose CPUID feature the model lacks but which still does
/// something on such a CPU: TZCNT runs as BSF and LZCNT as BSR.
pub(super) fn without_feature(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Tzcnt => |c, b, i| bit_scan(c, b, i, true),
        Mnemonic::Lzcnt => |c, b, i| bit_scan(c, b, i, false),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    Test,
    Set,
    Reset,
    Complement,
}

/// Where the bit lives and its index within that operand-size unit.
fn bit_location(cpu: &Cpu, insn: &Instruction, size: u8) -> (Loc, u64) {
    let bits = size as u64 * 8;
    if insn.op_kind(1) != OpKind::Register {
        // Immediate offsets select a bit within the operand only.
        return (cpu.loc(insn, 0), insn.immediate(1) & (bits - 1));
    }
    let offset = cpu.reg(insn.op1_register());
    match insn.op_kind(0) {
        OpKind::Register => (Loc::Reg(insn.op0_register()), offset & (bits - 1)),
        _ => {
            // A register offset is a signed bit displacement from the operand's address
            // and may reach far outside it (SDM BT, "bit base"): move by whole operand-size
            // units, wrapping at the address size.
            let units = (sign_extend(offset, size) as i64) >> bits.trailing_zeros();
            let ea = cpu.effective_address(insn).wrapping_add((units * size as i64) as u64) & address_mask(insn);
            (Loc::Mem(cpu.memory_segment(insn), ea), offset & (bits - 1))
        }
    }
}

fn bit_test(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, op: BitOp) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let (loc, bit) = bit_location(cpu, insn, size);
    if op != BitOp::Test {
        cpu.check_writable(bus, loc, size)?;
    }
    let v = cpu.read_loc(bus, loc, size)?;
    let mask = 1u64 << bit;
    let new = match op {
        BitOp::Test => v,
        BitOp::Set => v | mask,
        BitOp::Reset => v & !mask,
        BitOp::Complement => v ^ mask,
    };
    if op != BitOp::Test {
        cpu.write_loc(bus, loc, size, new)?;
    }
    cpu.set_arith_flags(CF, if v & mask != 0 { CF } else { 0 });
    Ok(())
}

/// LOCK BTS/BTR/BTC m, r/imm: the operand-size unit holding the bit is updated with a
/// compare-exchange loop; CF is the bit as that update found it.
fn locked_bit_test(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, op: BitOp) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let (loc, bit) = bit_location(cpu, insn, size);
    let (Loc::Mem(seg, off), false) = (loc, op == BitOp::Test) else {
        return bit_test(cpu, bus, insn, op);
    };
    let Some(p) = cpu.locked_ptr(bus, seg, off, size)? else {
        let _serial = split_lock();
        return bit_test(cpu, bus, insn, op);
    };
    let mask = 1u64 << bit;
    // SAFETY: `locked_ptr` returned the host address of `size` bytes of writable guest RAM
    // inside one mapped page.
    let v = unsafe {
        match op {
            BitOp::Reset => atomic_rmw(p, size, |v| v & !mask),
            BitOp::Complement => atomic_rmw(p, size, |v| v ^ mask),
            BitOp::Set | BitOp::Test => atomic_rmw(p, size, |v| v | mask),
        }
    };
    cpu.set_arith_flags(CF, if v & mask != 0 { CF } else { 0 });
    Ok(())
}

fn bit_scan(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, forward: bool) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let src = cpu.read_op(bus, insn, 1)? & size_mask(size);
    if src == 0 {
        cpu.set_arith_flags(ARITH, ZF | PF);
        return Ok(());
    }
    let index = if forward { src.trailing_zeros() } else { 63 - src.leading_zeros() } as u64;
    cpu.set_reg(insn.op0_register(), index);
    cpu.set_arith_flags(ARITH, parity(index));
    Ok(())
}

fn count_zeros(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, trailing: bool) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let bits = size as u32 * 8;
    let src = cpu.read_op(bus, insn, 1)? & size_mask(size);
    let n = if trailing { src.trailing_zeros().min(bits) } else { src.leading_zeros() - (64 - bits) } as u64;
    cpu.set_reg(insn.op0_register(), n);
    let mut f = parity(n);
    if src == 0 {
        f |= CF;
    }
    if n == 0 {
        f |= ZF;
    }
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}

fn popcnt(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let src = cpu.read_op(bus, insn, 1)? & size_mask(size);
    cpu.set_reg(insn.op0_register(), src.count_ones() as u64);
    // All flags cleared except ZF, which reports a zero source (SDM POPCNT).
    cpu.set_arith_flags(ARITH, if src == 0 { ZF } else { 0 });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FlatBus;
    use iced_x86::{Decoder, DecoderOptions};

    /// TZCNT proper (no CPU model offers BMI1 yet, so it is only reachable directly).
    #[test]
    fn tzcnt_counts_and_flags() {
        let mut cpu = Cpu::default();
        let mut bus = FlatBus::new(4096);
        let tz32 = Decoder::new(64, &[0xf3, 0x0f, 0xbc, 0xc3], DecoderOptions::NONE).decode();
        let tz64 = Decoder::new(64, &[0xf3, 0x48, 0x0f, 0xbc, 0xc3], DecoderOptions::NONE).decode();
        assert_eq!(tz32.mnemonic(), Mnemonic::Tzcnt);
        cpu.state.gpr[3] = 0x50;
        count_zeros(&mut cpu, &mut bus, &tz32, true).unwrap();
        assert_eq!((cpu.state.gpr[0], cpu.rflags() & ARITH), (4, 0));
        cpu.state.gpr[3] = 0xffff_ffff_0000_0000;
        count_zeros(&mut cpu, &mut bus, &tz32, true).unwrap();
        assert_eq!((cpu.state.gpr[0], cpu.rflags() & ARITH), (32, CF));
        cpu.state.gpr[3] = 0;
        count_zeros(&mut cpu, &mut bus, &tz64, true).unwrap();
        assert_eq!((cpu.state.gpr[0], cpu.rflags() & ARITH), (64, CF));
        cpu.state.gpr[3] = 1;
        count_zeros(&mut cpu, &mut bus, &tz64, true).unwrap();
        assert_eq!((cpu.state.gpr[0], cpu.rflags() & ARITH), (0, ZF | PF));
    }
}
