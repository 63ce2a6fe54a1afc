//! Lazy condition codes in generated code. An instruction that sets flags only records its
//! operation, width and operands in variables; the record is stored to the CPU (in the
//! interpreter's own lazy format) only where something else may read it: at exits and
//! interpreter calls. A record that the next flag-setting instruction replaces before any
//! such point is never stored (dead-flag elimination), and Jcc/SETcc/CMOVcc after a compare
//! become one host compare.

use super::Emit;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use iced_x86::ConditionCode;

/// RFLAGS bit positions of the arithmetic flags.
const CF_BIT: i64 = 0;
const PF_BIT: i64 = 2;
const AF_BIT: i64 = 4;
const ZF_BIT: i64 = 6;
const SF_BIT: i64 = 7;
const OF_BIT: i64 = 11;
const ARITH: i64 = 1 << CF_BIT | 1 << PF_BIT | 1 << AF_BIT | 1 << ZF_BIT | 1 << SF_BIT | 1 << OF_BIT;

/// What the compiler knows about the flags at the current point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flags {
    /// The CPU structure holds them (the lazy record or RFLAGS).
    Memory,
    /// The variables hold a record of operation `op` (the CPU's numbering) on `size` bytes,
    /// not necessarily stored yet; `carry`: its carry-in may be 1 (ADC, SBB, INC, DEC).
    Pending { op: u8, size: u8, carry: bool },
    /// RFLAGS in the CPU structure holds them, and the stored record says so (its operation
    /// is `eflags`): conditions are bits of RFLAGS.
    Eflags,
}

/// Variables of the pending record: operands and result masked to the width, carry-in 0/1.
#[derive(Clone, Copy)]
pub(crate) struct CcVars {
    pub dst: Variable,
    pub src: Variable,
    pub res: Variable,
    pub carry: Variable,
}

impl CcVars {
    pub fn declare(b: &mut FunctionBuilder) -> Self {
        CcVars {
            dst: b.declare_var(types::I64),
            src: b.declare_var(types::I64),
            res: b.declare_var(types::I64),
            carry: b.declare_var(types::I64),
        }
    }
}

impl Emit<'_, '_> {
    /// Records a flag-setting result (`dst`, `src`, `res` already masked to `size`; `carry`
    /// the 0/1 carry-in, `None` for 0).
    pub fn set_flags(&mut self, op: u8, size: u8, dst: Value, src: Value, res: Value, carry: Option<Value>) {
        self.b.def_var(self.cc.dst, dst);
        self.b.def_var(self.cc.src, src);
        self.b.def_var(self.cc.res, res);
        // No carry in: the variable is left alone, and nothing reads it (see `carry_in`).
        if let Some(c) = carry {
            self.b.def_var(self.cc.carry, c);
        }
        self.flags = Flags::Pending { op, size, carry: carry.is_some() };
    }

    /// A shift by a count known only at run time: its record replaces the flags unless the
    /// count is 0, which leaves them as they were (SDM SAL/SAR/SHL/SHR). Both ways end with
    /// the record in memory (state `Memory`).
    pub fn set_flags_unless_zero(&mut self, count: Value, op: u8, size: u8, dst: Value, res: Value) {
        self.store_flags();
        let (shifted, join) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(count, shifted, &[], join, &[]);
        self.b.switch_to_block(shifted);
        self.set_flags(op, size, dst, count, res, None);
        self.store_flags();
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
        self.flags = Flags::Memory;
    }

    /// Stores a pending record (without forgetting it: it may be stored again later): the
    /// operation, width and carry-in bytes (adjacent in the CPU's record) in one store, and
    /// only the operands the operation's flags are computed from (a logical operation's and
    /// IMUL's come from the result alone, see the CPU's `LazyFlags`).
    pub(super) fn store_flags(&mut self) {
        let Flags::Pending { op, size, carry } = self.flags else { return };
        self.effects = true;
        let f = super::state_flags();
        let l = self.l;
        if l.cc_size == l.cc_op + 1 && l.cc_carry_in == l.cc_op + 2 {
            let head = op as i64 | (size as i64) << 8;
            let word = if carry {
                let c = self.b.use_var(self.cc.carry);
                let c = self.b.ins().ishl_imm_s(c, 16);
                self.b.ins().bor_imm_s(c, head)
            } else {
                self.iconst(head as u64)
            };
            // The fourth byte is the record's padding.
            self.b.ins().istore32(f, word, self.cpu, l.cc_op);
        } else {
            let op = self.b.ins().iconst(types::I8, op as i64);
            self.b.ins().store(f, op, self.cpu, l.cc_op);
            let size = self.b.ins().iconst(types::I8, size as i64);
            self.b.ins().store(f, size, self.cpu, l.cc_size);
            let carry = self.carry_in(carry);
            self.b.ins().istore8(f, carry, self.cpu, l.cc_carry_in);
        }
        let result_only = op == l.cc_ops.logic || op == l.cc_ops.mul;
        for (var, off) in [(self.cc.dst, l.cc_dst), (self.cc.src, l.cc_src), (self.cc.res, l.cc_res)] {
            if result_only && var != self.cc.res {
                continue;
            }
            let v = self.b.use_var(var);
            self.b.ins().store(f, v, self.cpu, off);
        }
    }

    /// CF as 0/1 (for INC/DEC, which keep it).
    pub fn carry_flag(&mut self) -> Value {
        let c = self.condition(ConditionCode::b);
        self.b.ins().uextend(types::I64, c)
    }

    /// Makes RFLAGS in the CPU structure hold the arithmetic flags (state `Eflags`): a
    /// pending record is folded in inline, a stored one too (see `fold_stored_flags`).
    pub fn materialize_flags(&mut self) {
        match self.flags {
            Flags::Eflags => {}
            Flags::Memory => {
                self.effects = true;
                self.fold_stored_flags();
            }
            Flags::Pending { op, size, carry } => {
                let arith = self.arith_flags(op, size, carry);
                self.set_arith_flags(arith);
            }
        }
        self.flags = Flags::Eflags;
    }

    /// Folds the record stored in the CPU structure into RFLAGS: ADD, SUB (with their
    /// carry-in) and the logic operations inline, at the record's width known only at run
    /// time (the operands shifted up to bit 63); a record of another operation by the CPU's
    /// helper. The bench's awk loop runs BT at the start of a block some 40M times, and the
    /// helper was a tenth of that phase.
    fn fold_stored_flags(&mut self) {
        let (l, ops, f) = (self.l, self.l.cc_ops, super::state_flags());
        let op = self.b.ins().uload8(types::I64, f, self.cpu, l.cc_op);
        let [is_add, is_sub, is_logic] = [ops.add, ops.sub, ops.logic].map(|o| self.b.ins().icmp_imm_s(IntCC::Equal, op, o as i64));
        let known = self.b.ins().bor(is_add, is_sub);
        let known = self.b.ins().bor(known, is_logic);
        let (inline, other, helper, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(known, inline, &[], other, &[]);

        self.b.switch_to_block(other);
        self.b.set_cold_block(other);
        let is_eflags = self.b.ins().icmp_imm_s(IntCC::Equal, op, ops.eflags as i64);
        self.b.ins().brif(is_eflags, done, &[], helper, &[]);
        self.b.switch_to_block(helper);
        self.b.set_cold_block(helper);
        let h = self.iconst(l.flags as u64);
        let zero = self.iconst(0);
        self.b.ins().call_indirect(self.helper_sig, h, &[self.cpu, zero]);
        self.b.ins().jump(done, &[]);

        self.b.switch_to_block(inline);
        let size = self.b.ins().uload8(types::I64, f, self.cpu, l.cc_size);
        let bits = self.b.ins().ishl_imm_s(size, 3);
        let sixty_four = self.iconst(64);
        let up = self.b.ins().isub(sixty_four, bits);
        let [dst, src, res] = [l.cc_dst, l.cc_src, l.cc_res].map(|off| self.b.ins().load(types::I64, f, self.cpu, off));
        let carry = self.b.ins().uload8(types::I64, f, self.cpu, l.cc_carry_in);
        let [d, s, r] = [dst, src, res].map(|v| self.b.ins().ishl(v, up));
        // As `LazyFlags::compute`: CF is res < dst (ADD) or dst < src (SUB), <= with a carry
        // in; OF is (dst ^ res) & (src ^ res) (ADD) or (dst ^ src) & (dst ^ res) (SUB).
        let a = self.b.ins().select(is_sub, d, r);
        let c = self.b.ins().select(is_sub, s, d);
        let below = self.b.ins().icmp(IntCC::UnsignedLessThan, a, c);
        let equal = self.b.ins().icmp(IntCC::Equal, a, c);
        let carried = self.b.ins().icmp_imm_s(IntCC::NotEqual, carry, 0);
        let equal_carried = self.b.ins().band(equal, carried);
        let cf = self.b.ins().bor(below, equal_carried);
        let x = self.b.ins().bxor(d, s);
        let y = self.b.ins().bxor(s, r);
        let x = self.b.ins().select(is_sub, x, y);
        let y = self.b.ins().bxor(d, r);
        let of = self.b.ins().band(x, y);
        let of = self.b.ins().ushr_imm_s(of, 63);
        let af = self.b.ins().bxor(dst, src);
        let af = self.b.ins().bxor(af, res);
        let af = self.b.ins().band_imm_s(af, 1 << AF_BIT);
        let cf = self.b.ins().uextend(types::I64, cf);
        let carries = self.b.ins().bor(cf, af);
        let of = self.b.ins().ishl_imm_s(of, OF_BIT);
        let carries = self.b.ins().bor(carries, of);
        // The logic operations clear CF, AF and OF.
        let zero = self.iconst(0);
        let carries = self.b.ins().select(is_logic, zero, carries);
        let zf = self.b.ins().icmp_imm_s(IntCC::Equal, r, 0);
        let zf = self.b.ins().uextend(types::I64, zf);
        let zf = self.b.ins().ishl_imm_s(zf, ZF_BIT);
        let sf = self.b.ins().ushr_imm_s(r, 63);
        let sf = self.b.ins().ishl_imm_s(sf, SF_BIT);
        let pf = self.parity(res);
        let pf = self.b.ins().uextend(types::I64, pf);
        let pf = self.b.ins().ishl_imm_s(pf, PF_BIT);
        let arith = self.b.ins().bor(carries, zf);
        let arith = self.b.ins().bor(arith, sf);
        let arith = self.b.ins().bor(arith, pf);
        self.set_arith_flags(arith);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// Sets the six arithmetic flags to `arith` (at their RFLAGS positions, nothing else
    /// set): the old ones do not survive, so they are never computed.
    pub fn set_arith_flags(&mut self, arith: Value) {
        let rflags = self.load_state(types::I64, self.l.rflags);
        let kept = self.b.ins().band_imm_s(rflags, !ARITH);
        let rflags = self.b.ins().bor(kept, arith);
        self.store_state(rflags, self.l.rflags);
        let eflags = self.b.ins().iconst(types::I8, self.l.cc_ops.eflags as i64);
        self.store_state(eflags, self.l.cc_op);
        self.flags = Flags::Eflags;
    }

    /// The six arithmetic flags of a pending record, at their RFLAGS positions (as the CPU's
    /// `LazyFlags::compute` gives them).
    fn arith_flags(&mut self, op: u8, size: u8, carry: bool) -> Value {
        let ops = self.l.cc_ops;
        let bits = [(self.cf(op, size, carry), CF_BIT), (self.pf(), PF_BIT), (self.zf(op), ZF_BIT), (self.sf(size), SF_BIT), (self.of(op, size), OF_BIT)];
        let mut acc = if [ops.add, ops.sub, ops.inc, ops.dec].contains(&op) {
            let (dst, src, res) = (self.b.use_var(self.cc.dst), self.b.use_var(self.cc.src), self.b.use_var(self.cc.res));
            let x = self.b.ins().bxor(dst, src);
            let x = self.b.ins().bxor(x, res);
            self.b.ins().band_imm_s(x, 1 << AF_BIT)
        } else {
            self.iconst(0)
        };
        for (flag, at) in bits {
            let v = self.b.ins().uextend(types::I64, flag);
            let v = if at == 0 { v } else { self.b.ins().ishl_imm_s(v, at) };
            acc = self.b.ins().bor(acc, v);
        }
        acc
    }

    /// A condition from RFLAGS in the CPU structure.
    fn eflags_condition(&mut self, cc: ConditionCode) -> Value {
        use ConditionCode as C;
        let rflags = self.load_state(types::I64, self.l.rflags);
        let any = |e: &mut Self, mask: i64, set: bool| {
            let m = e.b.ins().band_imm_s(rflags, mask);
            e.b.ins().icmp_imm_s(if set { IntCC::NotEqual } else { IntCC::Equal }, m, 0)
        };
        // SF != OF, as bit 0.
        let less = |e: &mut Self| {
            let sf = e.b.ins().ushr_imm_s(rflags, SF_BIT);
            let of = e.b.ins().ushr_imm_s(rflags, OF_BIT);
            e.b.ins().bxor(sf, of)
        };
        let (cf, pf, zf, sf, of) = (1 << CF_BIT, 1 << PF_BIT, 1 << ZF_BIT, 1 << SF_BIT, 1 << OF_BIT);
        match cc {
            C::None => self.b.ins().iconst(types::I8, 1),
            C::o => any(self, of, true),
            C::no => any(self, of, false),
            C::b => any(self, cf, true),
            C::ae => any(self, cf, false),
            C::e => any(self, zf, true),
            C::ne => any(self, zf, false),
            C::be => any(self, cf | zf, true),
            C::a => any(self, cf | zf, false),
            C::s => any(self, sf, true),
            C::ns => any(self, sf, false),
            C::p => any(self, pf, true),
            C::np => any(self, pf, false),
            C::l | C::ge | C::le | C::g => {
                let mut x = less(self);
                if matches!(cc, C::le | C::g) {
                    let z = self.b.ins().ushr_imm_s(rflags, ZF_BIT);
                    x = self.b.ins().bor(x, z);
                }
                let x = self.b.ins().band_imm_s(x, 1);
                let set = matches!(cc, C::l | C::le);
                self.b.ins().icmp_imm_s(if set { IntCC::NotEqual } else { IntCC::Equal }, x, 0)
            }
        }
    }

    /// A Jcc/SETcc/CMOVcc condition as an `i8` 0/1.
    pub fn condition(&mut self, cc: ConditionCode) -> Value {
        let Flags::Pending { op, size, carry } = self.flags else {
            // An operation unknown here is folded into RFLAGS once; later conditions read it.
            self.materialize_flags();
            return self.eflags_condition(cc);
        };
        let ops = self.l.cc_ops;
        // A compare of the operands answers for SUB and CMP; SBB's borrow-in spoils it.
        if op == ops.sub && !carry {
            if let Some(c) = self.sub_condition(cc, size) {
                return c;
            }
        }
        use ConditionCode as C;
        match cc {
            C::None => self.b.ins().iconst(types::I8, 1),
            C::o => self.of(op, size),
            C::no => self.not(|e| e.of(op, size)),
            C::b => self.cf(op, size, carry),
            C::ae => self.not(|e| e.cf(op, size, carry)),
            C::e => self.zf(op),
            C::ne => self.not(|e| e.zf(op)),
            C::be => {
                let (c, z) = (self.cf(op, size, carry), self.zf(op));
                self.b.ins().bor(c, z)
            }
            C::a => self.not(|e| {
                let (c, z) = (e.cf(op, size, carry), e.zf(op));
                e.b.ins().bor(c, z)
            }),
            C::s => self.sf(size),
            C::ns => self.not(|e| e.sf(size)),
            C::p => self.pf(),
            C::np => self.not(|e| e.pf()),
            C::l => self.lt(op, size),
            C::ge => self.not(|e| e.lt(op, size)),
            C::le => {
                let (l, z) = (self.lt(op, size), self.zf(op));
                self.b.ins().bor(l, z)
            }
            C::g => self.not(|e| {
                let (l, z) = (e.lt(op, size), e.zf(op));
                e.b.ins().bor(l, z)
            }),
        }
    }

    fn not(&mut self, f: impl FnOnce(&mut Self) -> Value) -> Value {
        let v = f(self);
        self.b.ins().bxor_imm_s(v, 1)
    }

    /// After SUB/CMP (no borrow in), most conditions are a single compare of the operands.
    fn sub_condition(&mut self, cc: ConditionCode, size: u8) -> Option<Value> {
        use ConditionCode as C;
        let (unsigned, signed) = match cc {
            C::b => (Some(IntCC::UnsignedLessThan), None),
            C::ae => (Some(IntCC::UnsignedGreaterThanOrEqual), None),
            C::e => (Some(IntCC::Equal), None),
            C::ne => (Some(IntCC::NotEqual), None),
            C::be => (Some(IntCC::UnsignedLessThanOrEqual), None),
            C::a => (Some(IntCC::UnsignedGreaterThan), None),
            C::l => (None, Some(IntCC::SignedLessThan)),
            C::ge => (None, Some(IntCC::SignedGreaterThanOrEqual)),
            C::le => (None, Some(IntCC::SignedLessThanOrEqual)),
            C::g => (None, Some(IntCC::SignedGreaterThan)),
            _ => return None,
        };
        let dst = self.b.use_var(self.cc.dst);
        let src = self.b.use_var(self.cc.src);
        Some(match (unsigned, signed) {
            (Some(c), _) => self.b.ins().icmp(c, dst, src),
            (_, Some(c)) => {
                let (d, s) = (self.sext(dst, size), self.sext(src, size));
                self.b.ins().icmp(c, d, s)
            }
            _ => unreachable!(),
        })
    }

    fn zf(&mut self, op: u8) -> Value {
        if op == self.l.cc_ops.mul {
            // The interpreter's IMUL clears ZF (the SDM leaves it undefined).
            return self.b.ins().iconst(types::I8, 0);
        }
        let res = self.b.use_var(self.cc.res);
        self.b.ins().icmp_imm_s(IntCC::Equal, res, 0)
    }

    fn sf(&mut self, size: u8) -> Value {
        let res = self.b.use_var(self.cc.res);
        self.sign(res, size)
    }

    fn sign(&mut self, v: Value, size: u8) -> Value {
        let bit = self.b.ins().ushr_imm_s(v, (size as i64 * 8) - 1);
        let bit = self.b.ins().band_imm_s(bit, 1);
        self.b.ins().ireduce(types::I8, bit)
    }

    /// The pending record's carry in (0 when it has none).
    fn carry_in(&mut self, has_carry: bool) -> Value {
        if has_carry {
            self.b.use_var(self.cc.carry)
        } else {
            self.iconst(0)
        }
    }

    fn pf(&mut self) -> Value {
        let res = self.b.use_var(self.cc.res);
        self.parity(res)
    }

    /// PF of a result: its low byte has an even number of bits set (an `i8` 0/1).
    fn parity(&mut self, res: Value) -> Value {
        let low = self.b.ins().band_imm_s(res, 0xff);
        let n = self.b.ins().popcnt(low);
        let odd = self.b.ins().band_imm_s(n, 1);
        self.b.ins().icmp_imm_s(IntCC::Equal, odd, 0)
    }

    fn cf(&mut self, op: u8, size: u8, has_carry: bool) -> Value {
        let ops = self.l.cc_ops;
        let (dst, src, res) = (self.b.use_var(self.cc.dst), self.b.use_var(self.cc.src), self.b.use_var(self.cc.res));
        // res < dst (ADD) or dst < src (SUB); with a carry in, <= where it is set.
        let borrow = |e: &mut Self, a: Value, b: Value| {
            let lt = e.b.ins().icmp(IntCC::UnsignedLessThan, a, b);
            if !has_carry {
                return lt;
            }
            let le = e.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, b);
            let carry = e.b.use_var(e.cc.carry);
            let c = e.b.ins().icmp_imm_s(IntCC::NotEqual, carry, 0);
            e.b.ins().select(c, le, lt)
        };
        if op == ops.add {
            borrow(self, res, dst)
        } else if op == ops.sub {
            borrow(self, dst, src)
        } else if op == ops.logic {
            self.b.ins().iconst(types::I8, 0)
        } else if op == ops.shl || op == ops.shr || op == ops.sar {
            // The last bit shifted out: dst bit (width - count) for SHL, (count - 1) for SHR and
            // SAR (with counts below the width, a bit of the operand for SAR too).
            let at = if op == ops.shl {
                let bits = self.b.ins().iconst(types::I64, size as i64 * 8);
                self.b.ins().isub(bits, src)
            } else {
                self.b.ins().iadd_imm_s(src, -1)
            };
            let bit = self.b.ins().ushr(dst, at);
            let bit = self.b.ins().band_imm_s(bit, 1);
            self.b.ins().ireduce(types::I8, bit)
        } else {
            // INC/DEC keep the carry they found; IMUL's records its overflow there.
            let carry = self.carry_in(has_carry);
            self.b.ins().icmp_imm_s(IntCC::NotEqual, carry, 0)
        }
    }

    fn of(&mut self, op: u8, size: u8) -> Value {
        let ops = self.l.cc_ops;
        let (dst, src, res) = (self.b.use_var(self.cc.dst), self.b.use_var(self.cc.src), self.b.use_var(self.cc.res));
        let sb = 1i64 << (size as u32 * 8 - 1);
        if op == ops.add {
            let a = self.b.ins().bxor(dst, res);
            let b = self.b.ins().bxor(src, res);
            let x = self.b.ins().band(a, b);
            self.sign(x, size)
        } else if op == ops.sub {
            let a = self.b.ins().bxor(dst, src);
            let b = self.b.ins().bxor(dst, res);
            let x = self.b.ins().band(a, b);
            self.sign(x, size)
        } else if op == ops.logic || op == ops.sar {
            self.b.ins().iconst(types::I8, 0)
        } else if op == ops.shl {
            // The first one-bit step's: the top two bits differ.
            let twice = self.b.ins().ishl_imm_s(dst, 1);
            let x = self.b.ins().bxor(dst, twice);
            self.sign(x, size)
        } else if op == ops.shr {
            self.sign(dst, size)
        } else if op == ops.mul {
            // CF = OF: the product overflowed.
            let carry = self.carry_in(true);
            self.b.ins().icmp_imm_s(IntCC::NotEqual, carry, 0)
        } else if op == ops.inc {
            self.b.ins().icmp_imm_s(IntCC::Equal, res, sb)
        } else {
            self.b.ins().icmp_imm_s(IntCC::Equal, res, sb.wrapping_sub(1) & super::mask_of(size) as i64)
        }
    }

    /// SF != OF.
    fn lt(&mut self, op: u8, size: u8) -> Value {
        let s = self.sf(size);
        let o = self.of(op, size);
        self.b.ins().bxor(s, o)
    }
}
