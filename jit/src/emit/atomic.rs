//! CMPXCHG, XADD and XCHG of memory, and ADD, SUB, AND, OR, XOR, INC and DEC of memory under
//! LOCK. A locked access (XCHG's always is) is one host atomic operation on the guest's RAM,
//! as in the interpreter's locked path, so other vCPUs' threads see it whole; a misaligned one
//! goes to the interpreter, which serializes split locks. Without LOCK they are plain
//! read-modify-writes: Linux patches its LOCK prefixes out when it runs on one CPU, and its
//! spinlocks and reference counts then run these by the million.

use super::mem::Access;
use super::ops::{opnd, AluOp, Opnd};
use super::{int_type, Emit};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{AtomicRmwOp, InstBuilder, MemFlagsData, Value};
use iced_x86::{Instruction, Mnemonic, Register};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AtomicOp {
    Cmpxchg,
    Xadd,
    Xchg,
    /// ADD, SUB, AND, OR or XOR (under LOCK).
    Alu(AluOp),
    /// INC or DEC (under LOCK).
    IncDec { inc: bool },
}

/// The instruction's operation, operand size and whether it is locked, for a memory
/// destination and a register source of the same size (an immediate one too for the ALU
/// operations).
pub(super) fn classify(insn: &Instruction, bitness: u32) -> Option<(AtomicOp, u8, bool)> {
    let locked = insn.has_lock_prefix();
    let op = match insn.mnemonic() {
        Mnemonic::Cmpxchg => AtomicOp::Cmpxchg,
        Mnemonic::Xadd => AtomicOp::Xadd,
        Mnemonic::Xchg => AtomicOp::Xchg,
        Mnemonic::Add if locked => AtomicOp::Alu(AluOp::Add),
        Mnemonic::Sub if locked => AtomicOp::Alu(AluOp::Sub),
        Mnemonic::And if locked => AtomicOp::Alu(AluOp::And),
        Mnemonic::Or if locked => AtomicOp::Alu(AluOp::Or),
        Mnemonic::Xor if locked => AtomicOp::Alu(AluOp::Xor),
        m @ (Mnemonic::Inc | Mnemonic::Dec) if locked => AtomicOp::IncDec { inc: m == Mnemonic::Inc },
        _ => return None,
    };
    let Opnd::Mem(size) = opnd(insn, 0, bitness)? else { return None };
    let source_ok = match op {
        AtomicOp::IncDec { .. } => true,
        _ => match opnd(insn, 1, bitness)? {
            Opnd::Reg(_, s) => s == size,
            Opnd::Imm(_) => matches!(op, AtomicOp::Alu(_)),
            Opnd::Mem(_) => false,
        },
    };
    source_ok.then_some((op, size, locked || op == AtomicOp::Xchg))
}

/// The accumulator CMPXCHG compares, by operand size.
fn accumulator(size: u8) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

/// Host atomics on guest RAM: aligned (checked first) and mapped (the probe's hit).
fn atomic_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_aligned()
}

impl Emit<'_, '_> {
    pub(super) fn atomic(&mut self, i: usize, insn: &Instruction, op: AtomicOp, size: u8, locked: bool) {
        let bitness = self.spec.bitness;
        // INC and DEC keep CF, as it stands before them.
        let carry = matches!(op, AtomicOp::IncDec { .. }).then(|| self.carry_flag());
        let src = match op {
            AtomicOp::IncDec { inc: true } => self.iconst(1),
            AtomicOp::IncDec { inc: false } => self.iconst(super::mask_of(size)),
            _ => match opnd(insn, 1, bitness).expect("classified") {
                Opnd::Reg(r, _) => self.reg(r),
                Opnd::Imm(v) => self.iconst(v & super::mask_of(size)),
                Opnd::Mem(_) => unreachable!("classified: a register or immediate source"),
            },
        };
        let lin = self.operand_linear(insn);
        if locked && size > 1 {
            let low = self.b.ins().band_imm_s(lin, size as i64 - 1);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, low, 0);
            self.guard(i, aligned);
        }
        let host = self.probe(i, lin, size, Access::Update);
        let ops = self.l.cc_ops;
        match op {
            AtomicOp::Cmpxchg => {
                let acc = self.reg(accumulator(size));
                let old = if locked {
                    let (expected, new) = (self.narrow(acc, size), self.narrow(src, size));
                    let old = self.b.ins().atomic_cas(atomic_flags(), host, expected, new);
                    self.widen(old, size)
                } else {
                    // The destination is written either way (with its own value on a
                    // mismatch), as the SDM's pseudo-code has it.
                    let old = self.load_guest(host, size);
                    let same = self.b.ins().icmp(IntCC::Equal, old, acc);
                    let new = self.b.ins().select(same, src, old);
                    self.store_guest(host, size, new);
                    old
                };
                // On a mismatch the accumulator takes the destination's value; on a match it
                // is not written at all (a 32-bit one keeps RAX's upper half).
                let same = self.b.ins().icmp(IntCC::Equal, old, acc);
                let (reg, kept) = if size == 4 { (Register::RAX, self.reg(Register::RAX)) } else { (accumulator(size), acc) };
                let v = self.b.ins().select(same, kept, old);
                self.set_reg(reg, v);
                let diff = self.b.ins().isub(acc, old);
                let diff = self.mask(diff, size);
                self.set_flags(ops.sub, size, acc, old, diff, None);
            }
            AtomicOp::Xadd => {
                let old = self.fetch_and(AtomicRmwOp::Add, host, src, size, locked);
                let sum = self.b.ins().iadd(old, src);
                let sum = self.mask(sum, size);
                if !locked {
                    self.store_guest(host, size, sum);
                }
                self.set_reg(insn.op1_register(), old);
                self.set_flags(ops.add, size, old, src, sum, None);
            }
            AtomicOp::Xchg => {
                let old = self.fetch_and(AtomicRmwOp::Xchg, host, src, size, true);
                self.set_reg(insn.op1_register(), old);
            }
            AtomicOp::Alu(alu) => {
                let (rmw, cc) = match alu {
                    AluOp::Add => (AtomicRmwOp::Add, ops.add),
                    AluOp::Sub => (AtomicRmwOp::Sub, ops.sub),
                    AluOp::And => (AtomicRmwOp::And, ops.logic),
                    AluOp::Or => (AtomicRmwOp::Or, ops.logic),
                    AluOp::Xor => (AtomicRmwOp::Xor, ops.logic),
                    _ => unreachable!("classified: no locked {alu:?}"),
                };
                let old = self.fetch_and(rmw, host, src, size, true);
                let res = match alu {
                    AluOp::Add => self.b.ins().iadd(old, src),
                    AluOp::Sub => self.b.ins().isub(old, src),
                    AluOp::And => self.b.ins().band(old, src),
                    AluOp::Or => self.b.ins().bor(old, src),
                    _ => self.b.ins().bxor(old, src),
                };
                let res = self.mask(res, size);
                self.set_flags(cc, size, old, src, res, None);
            }
            AtomicOp::IncDec { inc } => {
                // DEC adds all ones (`src`); its flags record takes the 1 it subtracts.
                let old = self.fetch_and(AtomicRmwOp::Add, host, src, size, true);
                let res = self.b.ins().iadd(old, src);
                let res = self.mask(res, size);
                let one = self.iconst(1);
                self.set_flags(if inc { ops.inc } else { ops.dec }, size, old, one, res, carry);
            }
        }
    }

    /// The destination's value before `op` with `src`, which a locked access applies
    /// atomically; unlocked, the value is only read (the caller stores the result).
    fn fetch_and(&mut self, op: AtomicRmwOp, host: Value, src: Value, size: u8, locked: bool) -> Value {
        if !locked {
            return self.load_guest(host, size);
        }
        let operand = self.narrow(src, size);
        let old = self.b.ins().atomic_rmw(int_type(size), atomic_flags(), op, host, operand);
        self.widen(old, size)
    }
}
