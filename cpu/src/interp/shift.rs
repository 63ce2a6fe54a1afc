//! Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR SHLD SHRD.
//!
//! The count is masked to 5 bits (6 with a 64-bit operand); RCL/RCR of 8- and 16-bit operands
//! then rotate modulo 9/17. A zero count changes no flags, but the operand is still accessed
//! for writing and a 32-bit register destination is still written (zero-extended), as on
//! hardware.
//!
//! Flags the SDM leaves undefined follow current Intel cores (Skylake/Cascade Lake, as measured
//! for VirtualBox's IEM and matching Bochs where Bochs models them):
//! - AF is cleared by SHL/SHR/SAR/SHLD/SHRD with a non-zero count (AMD sets it).
//! - OF for counts above 1 is the OF of the *first* one-bit step: MSB(dst) ^ MSB-1(dst) for
//!   SHL/ROL/RCL/SHLD, MSB(dst) for SHR, MSB(dst) ^ LSB(dst) for ROR, CF ^ MSB(dst) for RCR,
//!   MSB(dst) ^ LSB(src) for SHRD, 0 for SAR.
//! - SHL/SHR counts of at least the operand width leave 0 and CF is the last bit shifted out
//!   (0 once every bit has gone).
//! - 16-bit SHLD/SHRD counts of 17..31 shift the 48-bit value dst:src:dst (P6 and later);
//!   CF is the last bit shifted out of it.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{size_mask, szp};
use crate::operand::{gpr_size, Loc};
use crate::state::flags::{ARITH, CF, OF};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Shl | Mnemonic::Sal => |c, b, i| shift(c, b, i, Op::Shl),
        Mnemonic::Shr => |c, b, i| shift(c, b, i, Op::Shr),
        Mnemonic::Sar => |c, b, i| shift(c, b, i, Op::Sar),
        Mnemonic::Rol => |c, b, i| shift(c, b, i, Op::Rol),
        Mnemonic::Ror => |c, b, i| shift(c, b, i, Op::Ror),
        Mnemonic::Rcl => |c, b, i| shift(c, b, i, Op::Rcl),
        Mnemonic::Rcr => |c, b, i| shift(c, b, i, Op::Rcr),
        Mnemonic::Shld => |c, b, i| double(c, b, i, true),
        Mnemonic::Shrd => |c, b, i| double(c, b, i, false),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Shl,
    Shr,
    Sar,
    Rol,
    Ror,
    Rcl,
    Rcr,
}

/// Count mask: 5 bits, or 6 for 64-bit operands (SDM SAL/SAR/SHL/SHR "countMASK").
#[inline(always)]
fn count_mask(size: u8) -> u32 {
    if size == 8 {
        0x3f
    } else {
        0x1f
    }
}

#[inline(always)]
fn bit(v: u64, n: u32) -> u64 {
    (v >> n) & 1
}

/// New value, flag values and the flags they replace; `None` when nothing changes.
fn compute(op: Op, size: u8, dst: u64, count: u32, cf_in: bool) -> Option<(u64, u64, u64)> {
    if count == 0 {
        return None;
    }
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let dst = dst & m;
    let top = bit(dst, bits - 1);
    // OF of a one-bit left step: the top two bits differ.
    let of_left = top ^ bit(dst, bits - 2);
    let (res, cf, of) = match op {
        Op::Shl => {
            let res = if count < bits { (dst << count) & m } else { 0 };
            let cf = if count <= bits { bit(dst, bits - count) } else { 0 };
            return Some((res, szp(res, size) | (cf * CF) | (of_left * OF), ARITH));
        }
        Op::Shr => {
            let res = if count < bits { dst >> count } else { 0 };
            let cf = if count <= bits { bit(dst, count - 1) } else { 0 };
            return Some((res, szp(res, size) | (cf * CF) | (top * OF), ARITH));
        }
        Op::Sar => {
            let s = super::datamov::sign_extend(dst, size) as i64;
            let res = (s >> count.min(63)) as u64 & m;
            let cf = ((s >> (count - 1).min(63)) & 1) as u64;
            return Some((res, szp(res, size) | (cf * CF), ARITH));
        }
        Op::Rol => {
            let r = count % bits;
            let res = if r == 0 { dst } else { ((dst << r) | (dst >> (bits - r))) & m };
            (res, res & 1, of_left)
        }
        Op::Ror => {
            let r = count % bits;
            let res = if r == 0 { dst } else { ((dst >> r) | (dst << (bits - r))) & m };
            (res, bit(res, bits - 1), top ^ (dst & 1))
        }
        Op::Rcl | Op::Rcr => {
            // Rotate the (bits+1)-bit value CF:dst.
            let r = if bits < 32 { count % (bits + 1) } else { count };
            if r == 0 {
                return None;
            }
            let w = bits + 1;
            let wide = ((cf_in as u128) << bits) | dst as u128;
            let wmask = (1u128 << w) - 1;
            let rot = if op == Op::Rcl {
                ((wide << r) | (wide >> (w - r))) & wmask
            } else {
                ((wide >> r) | (wide << (w - r))) & wmask
            };
            let of = if op == Op::Rcl { of_left } else { cf_in as u64 ^ top };
            (rot as u64 & m, (rot >> bits) as u64 & 1, of)
        }
    };
    Some((res, (cf * CF) | (of * OF), CF | OF))
}

/// A zero count still writes a 32-bit register destination back (zero-extending it).
#[inline]
fn write_back_unchanged(cpu: &mut Cpu, loc: Loc, value: u64) {
    if let Loc::Reg(r) = loc {
        if gpr_size(r) == 4 {
            cpu.set_reg(r, value);
        }
    }
}

fn shift(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, op: Op) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let count = cpu.read_op(bus, insn, 1)? as u32 & count_mask(size);
    let uses_cf = matches!(op, Op::Rcl | Op::Rcr);
    let cf_in = uses_cf && cpu.cf();
    match compute(op, size, dst, count, cf_in) {
        Some((res, flags, mask)) => {
            cpu.write_loc(bus, loc, size, res)?;
            cpu.set_arith_flags(mask, flags);
        }
        None => write_back_unchanged(cpu, loc, dst),
    }
    Ok(())
}

/// SHLD (`left`) / SHRD: result, CF and OF for a non-zero masked count.
fn compute_double(left: bool, size: u8, dst: u64, src: u64, count: u32) -> (u64, u64, u64) {
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let (dst, src) = (dst & m, src & m);
    let top = bit(dst, bits - 1);
    if size == 2 {
        // Counts up to 31: shift the 48-bit dst:src:dst.
        if left {
            let t = (dst << 32) | (src << 16) | dst;
            ((t >> (32 - count)) & m, bit(t, 48 - count), top ^ bit(dst, 14))
        } else {
            let t = (dst << 32) | (src << 16) | dst;
            ((t >> count) & m, bit(t, count - 1), top ^ (src & 1))
        }
    } else if left {
        let res = ((dst << count) | (src >> (bits - count))) & m;
        (res, bit(dst, bits - count), top ^ bit(dst, bits - 2))
    } else {
        let res = ((dst >> count) | (src << (bits - count))) & m;
        (res, bit(dst, count - 1), top ^ (src & 1))
    }
}

fn double(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, left: bool) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let src = cpu.reg(insn.op1_register());
    let count = cpu.read_op(bus, insn, 2)? as u32 & count_mask(size);
    if count == 0 {
        write_back_unchanged(cpu, loc, dst);
        return Ok(());
    }
    let (res, cf, of) = compute_double(left, size, dst, src, count);
    cpu.write_loc(bus, loc, size, res)?;
    cpu.set_arith_flags(ARITH, szp(res, size) | (cf * CF) | (of * OF));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::flags::{PF, SF, ZF};

    #[test]
    fn shl_flags_by_count() {
        // SHL AL=0x81 by 1: result 0x02, CF=1 (bit 7 out), OF = CF ^ MSB(res) = 1.
        let (r, f, _) = compute(Op::Shl, 1, 0x81, 1, false).unwrap();
        assert_eq!((r, f & (CF | OF | SF | ZF)), (0x02, CF | OF));
        // By 8: everything out, CF = bit 0 of the operand; by 9: CF = 0.
        let (r, f, _) = compute(Op::Shl, 1, 0x01, 8, false).unwrap();
        assert_eq!((r, f & (CF | ZF | PF)), (0, CF | ZF | PF));
        let (_, f, _) = compute(Op::Shl, 1, 0xff, 9, false).unwrap();
        assert_eq!(f & CF, 0);
        assert!(compute(Op::Shl, 4, 1, 0, false).is_none());
    }

    #[test]
    fn rotate_through_carry_modulo() {
        // RCL of a byte by 9 is the identity (count mod 9 = 0): no change at all.
        assert!(compute(Op::Rcl, 1, 0x5a, 9, true).is_none());
        // RCR word by 17 likewise; by 1 with CF=1: 0x8000 | dst>>1, CF = bit 0.
        assert!(compute(Op::Rcr, 2, 0x1234, 17, false).is_none());
        let (r, f, _) = compute(Op::Rcr, 2, 0x0003, 1, true).unwrap();
        assert_eq!((r, f & CF, f & OF), (0x8001, CF, OF));
    }

    #[test]
    fn shld16_beyond_16() {
        // dst:src:dst = 0x1234:0xabcd:0x1234 shifted left by 20 keeps bits 27..12: 0xbcd1.
        let (r, cf, _) = compute_double(true, 2, 0x1234, 0xabcd, 20);
        assert_eq!(r, 0xbcd1);
        // Last bit out: bit 48-20 = 28 of the 48-bit value = bit 12 of src (0xabcd) = 0.
        assert_eq!(cf, 0);
    }
}
