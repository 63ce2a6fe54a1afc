//! Multiply and divide: MUL, IMUL (one-, two- and three-operand forms), DIV, IDIV.
//!
//! Flags the SDM leaves undefined follow current Intel cores (Skylake/Cascade Lake, as
//! measured for VirtualBox's IEM): MUL and IMUL set SF from the top bit and PF from the low
//! byte of the low half of the product and clear ZF and AF (AMD leaves all four alone);
//! DIV and IDIV leave every flag unchanged.

use super::datamov::sign_extend;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::flags::{parity, sign_bit, size_mask};
use crate::state::flags::{ARITH, CF, OF, SF};
use crate::state::reg::{RAX, RDX};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, Register};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Mul => mul,
        Mnemonic::Imul if insn.op_count() == 1 => imul_acc,
        Mnemonic::Imul => imul,
        Mnemonic::Div => div,
        Mnemonic::Idiv => idiv,
        _ => return None,
    })
}

/// Flags after a multiply whose low half is `lo`: CF = OF = `overflow`, SF and PF from `lo`,
/// ZF = AF = 0 (Intel).
#[inline]
fn set_mul_flags(cpu: &mut Cpu, size: u8, lo: u64, overflow: bool) {
    let mut f = parity(lo);
    if lo & sign_bit(size) != 0 {
        f |= SF;
    }
    if overflow {
        f |= CF | OF;
    }
    cpu.set_arith_flags(ARITH, f);
}

/// Writes a double-width result: AH:AL, DX:AX, EDX:EAX or RDX:RAX (32-bit halves
/// zero-extend their registers).
#[inline]
fn write_pair(cpu: &mut Cpu, size: u8, lo: u64, hi: u64) {
    let m = size_mask(size);
    match size {
        1 => cpu.set_reg(Register::AX, (lo & m) | ((hi & m) << 8)),
        2 => {
            cpu.set_reg(Register::AX, lo);
            cpu.set_reg(Register::DX, hi);
        }
        4 => {
            cpu.set_reg(Register::EAX, lo);
            cpu.set_reg(Register::EDX, hi);
        }
        _ => {
            cpu.state.gpr[RAX] = lo;
            cpu.state.gpr[RDX] = hi;
        }
    }
}

/// The double-width dividend: AX, DX:AX, EDX:EAX or RDX:RAX, zero-extended.
#[inline]
fn dividend(cpu: &Cpu, size: u8) -> u128 {
    let (a, d) = (cpu.state.gpr[RAX], cpu.state.gpr[RDX]);
    if size == 1 {
        return (a & 0xffff) as u128;
    }
    let m = size_mask(size);
    (((d & m) as u128) << (size as u32 * 8)) | (a & m) as u128
}

fn mul(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let src = cpu.read_op(bus, insn, 0)? & m;
    let product = (cpu.state.gpr[RAX] & m) as u128 * src as u128;
    let lo = product as u64 & m;
    let hi = (product >> (size as u32 * 8)) as u64 & m;
    write_pair(cpu, size, lo, hi);
    set_mul_flags(cpu, size, lo, hi != 0);
    Ok(())
}

/// Signed product of two `size`-byte values, as a 128-bit integer.
#[inline]
fn signed_product(a: u64, b: u64, size: u8) -> i128 {
    sign_extend(a, size) as i64 as i128 * sign_extend(b, size) as i64 as i128
}

/// IMUL r/m: the accumulator times the operand into AX, DX:AX, EDX:EAX or RDX:RAX.
fn imul_acc(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let src = cpu.read_op(bus, insn, 0)?;
    let product = signed_product(cpu.state.gpr[RAX], src, size);
    let lo = product as u64 & m;
    let hi = (product >> (size as u32 * 8)) as u64 & m;
    write_pair(cpu, size, lo, hi);
    // CF = OF = the full product does not fit the low half.
    let overflow = product != sign_extend(lo, size) as i64 as i128;
    set_mul_flags(cpu, size, lo, overflow);
    Ok(())
}

/// IMUL r, r/m and IMUL r, r/m, imm: the truncated product into the register.
fn imul(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let (a, b) = if insn.op_count() == 3 {
        (cpu.read_op(bus, insn, 1)?, cpu.read_op(bus, insn, 2)?)
    } else {
        (cpu.reg(insn.op0_register()), cpu.read_op(bus, insn, 1)?)
    };
    let product = signed_product(a, b, size);
    let res = product as u64 & m;
    cpu.set_reg(insn.op0_register(), res);
    let overflow = product != sign_extend(res, size) as i64 as i128;
    set_mul_flags(cpu, size, res, overflow);
    Ok(())
}

fn div(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let divisor = (cpu.read_op(bus, insn, 0)? & m) as u128;
    if divisor == 0 {
        return Err(Fault::de());
    }
    let n = dividend(cpu, size);
    let (q, r) = (n / divisor, n % divisor);
    if q > m as u128 {
        return Err(Fault::de());
    }
    write_pair(cpu, size, q as u64, r as u64);
    Ok(())
}

fn idiv(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let divisor = sign_extend(cpu.read_op(bus, insn, 0)?, size) as i64 as i128;
    if divisor == 0 {
        return Err(Fault::de());
    }
    // Sign-extend the double-width dividend from 2 * size bytes.
    let n = dividend(cpu, size);
    let wide_bits = size as u32 * 16;
    let n = ((n << (128 - wide_bits)) as i128) >> (128 - wide_bits);
    // i128::MIN / -1 only arises for RDX:RAX = 2^127 and overflows the quotient anyway.
    let (Some(q), Some(r)) = (n.checked_div(divisor), n.checked_rem(divisor)) else {
        return Err(Fault::de());
    };
    let half = 1i128 << (size as u32 * 8 - 1);
    if q < -half || q >= half {
        return Err(Fault::de());
    }
    write_pair(cpu, size, q as u64, r as u64);
    Ok(())
}
