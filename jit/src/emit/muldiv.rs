//! MUL and DIV of 32 and 64 bits (`r/m`), whose double-width accumulator is EDX:EAX or
//! RDX:RAX. The kernel divides 64-bit values with `xor edx, edx; div` (time and size
//! arithmetic), and multiplies with MUL in its hashes.
//!
//! DIV is native where the quotient fits a host division of 64 bits: a non-zero divisor and,
//! for 64-bit operands, RDX zero (for 32-bit ones, EDX below the divisor, as then the
//! quotient fits too). Anything else (#DE included, or a 128-bit dividend) goes to the
//! interpreter. DIV leaves the flags as they were, as the interpreter does (they are
//! undefined in the SDM).

use super::ops::{opnd, Native};
use super::Emit;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder};
use iced_x86::{Instruction, Mnemonic, Register};

pub(super) fn classify(insn: &Instruction, bitness: u32) -> Option<Native> {
    let div = match insn.mnemonic() {
        Mnemonic::Mul => false,
        Mnemonic::Div => true,
        _ => return None,
    };
    let size = match opnd(insn, 0, bitness)? {
        super::ops::Opnd::Reg(_, s) | super::ops::Opnd::Mem(s) => s,
        super::ops::Opnd::Imm(_) => return None,
    };
    matches!(size, 4 | 8).then_some(Native::MulDiv { div, size })
}

impl Emit<'_, '_> {
    pub(super) fn mul_div(&mut self, i: usize, insn: &Instruction, div: bool, size: u8) {
        let (a, d) = if size == 8 { (Register::RAX, Register::RDX) } else { (Register::EAX, Register::EDX) };
        let src = opnd(insn, 0, self.spec.bitness).expect("classified");
        let s = self.read_opnd(i, insn, src, size);
        let acc = self.reg(a);
        if div {
            let high = self.reg(d);
            let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, s, 0);
            let fits = if size == 8 { self.b.ins().icmp_imm_s(IntCC::Equal, high, 0) } else { self.b.ins().icmp(IntCC::UnsignedLessThan, high, s) };
            let ok = self.b.ins().band(nonzero, fits);
            self.guard(i, ok);
            let n = if size == 8 {
                acc
            } else {
                let shifted = self.b.ins().ishl_imm_s(high, 32);
                self.b.ins().bor(shifted, acc)
            };
            let q = self.b.ins().udiv(n, s);
            let r = self.b.ins().urem(n, s);
            self.set_reg(a, q);
            self.set_reg(d, r);
        } else {
            // Operands masked to their size: a 32-bit product is exact in 64 bits.
            let lo = self.b.ins().imul(acc, s);
            let hi = if size == 8 { self.b.ins().umulhi(acc, s) } else { self.b.ins().ushr_imm_s(lo, 32) };
            let lo = self.mask(lo, size);
            self.set_reg(a, lo);
            self.set_reg(d, hi);
            // Flags as IMUL's record them (see the interpreter's `set_mul_flags`): CF and OF
            // tell whether the high half is non-zero.
            let overflow = self.b.ins().icmp_imm_s(IntCC::NotEqual, hi, 0);
            let overflow = self.b.ins().uextend(types::I64, overflow);
            let ops = self.l.cc_ops;
            self.set_flags(ops.mul, size, acc, s, lo, Some(overflow));
        }
    }
}
