//! BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR) and BMI2 (BZHI, MULX, PDEP, PEXT, RORX, SARX,
//! SHLX, SHRX): VEX-encoded general-purpose instructions (SDM Vol. 2). TZCNT, BMI1's
//! legacy-encoded member, lives with the other bit scans in `bits.rs`.
//!
//! Flags the SDM leaves undefined (AF and PF everywhere, SF for BEXTR) are set as the logical
//! instructions set them: AF = 0, PF and SF from the result. The host AMD CPU used as oracle
//! may differ there and the native comparison masks them; the SDM leaves them undefined, so
//! either is correct, and this choice keeps ferrite's one convention for logical results.
//!
//! Decoding already rejects VEX.L = 1 and a REX/66/F2/F3 prefix before VEX (iced reports
//! INVALID, so `handler_for` gives #UD); the mode rule is `vex::check_mode`.

use super::vex::check_mode;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{parity, sign_bit, size_mask};
use crate::state::flags::{ARITH, CF, SF, ZF};
use crate::state::reg::RDX;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Andn => |c, b, i| logical(c, b, i, 1, 2, |a, b, _| !a & b),
        Mnemonic::Bextr => |c, b, i| logical(c, b, i, 1, 2, bit_field),
        Mnemonic::Blsi => |c, b, i| logical(c, b, i, 1, 1, |s, _, _| s & s.wrapping_neg()),
        Mnemonic::Blsmsk => |c, b, i| logical(c, b, i, 1, 1, |s, _, _| s ^ s.wrapping_sub(1)),
        Mnemonic::Blsr => |c, b, i| logical(c, b, i, 1, 1, |s, _, _| s & s.wrapping_sub(1)),
        Mnemonic::Bzhi => |c, b, i| logical(c, b, i, 1, 2, zero_high),
        Mnemonic::Mulx => mulx,
        Mnemonic::Pdep => |c, b, i| no_flags(c, b, i, 1, 2, deposit),
        Mnemonic::Pext => |c, b, i| no_flags(c, b, i, 1, 2, extract),
        Mnemonic::Rorx => |c, b, i| no_flags(c, b, i, 1, 2, rotate_right),
        Mnemonic::Sarx => |c, b, i| no_flags(c, b, i, 1, 2, |v, n, bits| shift_right_arith(v, n % bits, bits)),
        Mnemonic::Shlx => |c, b, i| no_flags(c, b, i, 1, 2, |v, n, bits| v << (n % bits)),
        Mnemonic::Shrx => |c, b, i| no_flags(c, b, i, 1, 2, |v, n, bits| v >> (n % bits)),
        _ => return None,
    })
}

/// Reads operands `a` and `b` masked to the operand size, with the size in bits.
fn operands(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, a: u32, b: u32) -> Result<(u64, u64, u8)> {
    check_mode(cpu)?;
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let x = cpu.read_op(bus, insn, a)? & m;
    let y = cpu.read_op(bus, insn, b)? & m;
    Ok((x, y, size))
}

/// The BMI1 shape: `dest ← f(a, b, bits)`, SF and ZF from the result, OF = 0, CF as each
/// instruction defines it (`carry`).
fn logical(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, a: u32, b: u32, f: fn(u64, u64, u64) -> u64) -> Result<()> {
    let (x, y, size) = operands(cpu, bus, insn, a, b)?;
    let bits = size as u64 * 8;
    let r = f(x, y, bits) & size_mask(size);
    cpu.set_reg(insn.op0_register(), r);
    let mut flags = parity(r);
    if r == 0 {
        flags |= ZF;
    }
    if r & sign_bit(size) != 0 {
        flags |= SF;
    }
    if carry(insn.mnemonic(), x, y, bits) {
        flags |= CF;
    }
    cpu.set_arith_flags(ARITH, flags);
    Ok(())
}

/// CF of the BMI1/BZHI instructions: BLSI sets it for a non-zero source, BLSMSK and BLSR for
/// a zero one, BZHI when the index is past the operand; ANDN and BEXTR clear it.
fn carry(m: Mnemonic, src: u64, index: u64, bits: u64) -> bool {
    match m {
        Mnemonic::Blsi => src != 0,
        Mnemonic::Blsmsk | Mnemonic::Blsr => src == 0,
        Mnemonic::Bzhi => index & 0xff >= bits,
        _ => false,
    }
}

/// BEXTR: `len` bits from bit `start` (control bits 7:0 and 15:8); bits past the operand read
/// as zero.
fn bit_field(src: u64, control: u64, bits: u64) -> u64 {
    let start = control & 0xff;
    let len = (control >> 8) & 0xff;
    if start >= bits {
        return 0;
    }
    let v = src >> start;
    if len >= 64 {
        v
    } else {
        v & ((1u64 << len) - 1)
    }
}

/// BZHI: clears the bits from index `n` (bits 7:0) up; an index past the operand keeps all.
fn zero_high(src: u64, n: u64, bits: u64) -> u64 {
    let n = n & 0xff;
    if n >= bits {
        src
    } else {
        src & ((1u64 << n) - 1)
    }
}

/// RORX: rotates within the operand's `bits`, flags untouched.
fn rotate_right(v: u64, n: u64, bits: u64) -> u64 {
    let n = n % bits;
    if n == 0 {
        v
    } else {
        (v >> n | v << (bits - n)) & (u64::MAX >> (64 - bits))
    }
}

fn shift_right_arith(v: u64, n: u64, bits: u64) -> u64 {
    let shifted = ((v << (64 - bits)) as i64 >> (64 - bits + n)) as u64;
    shifted & (u64::MAX >> (64 - bits))
}

/// PDEP: the low source bits go, in order, to the positions of the mask's set bits.
fn deposit(src: u64, mask: u64, _: u64) -> u64 {
    let (mut out, mut k, mut m) = (0u64, 0, mask);
    while m != 0 {
        let bit = m & m.wrapping_neg();
        if src >> k & 1 != 0 {
            out |= bit;
        }
        k += 1;
        m &= m - 1;
    }
    out
}

/// PEXT: the source bits at the mask's set positions, packed at the bottom.
fn extract(src: u64, mask: u64, _: u64) -> u64 {
    let (mut out, mut k, mut m) = (0u64, 0, mask);
    while m != 0 {
        let bit = m & m.wrapping_neg();
        if src & bit != 0 {
            out |= 1 << k;
        }
        k += 1;
        m &= m - 1;
    }
    out
}

/// BMI2 instructions that leave the flags alone: `dest ← f(a, b, bits)`.
fn no_flags(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, a: u32, b: u32, f: fn(u64, u64, u64) -> u64) -> Result<()> {
    let (x, y, size) = operands(cpu, bus, insn, a, b)?;
    let r = f(x, y, size as u64 * 8) & size_mask(size);
    cpu.set_reg(insn.op0_register(), r);
    Ok(())
}

/// MULX hi, lo, src: unsigned EDX/RDX × src without touching the flags. The low half is
/// written first so that, with both destinations the same register, the high half stays
/// (SDM MULX).
fn mulx(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_mode(cpu)?;
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let src = cpu.read_op(bus, insn, 2)? & m;
    let product = (cpu.state.gpr[RDX] & m) as u128 * src as u128;
    let bits = size as u32 * 8;
    cpu.set_reg(insn.op1_register(), product as u64 & m);
    cpu.set_reg(insn.op0_register(), (product >> bits) as u64 & m);
    Ok(())
}
