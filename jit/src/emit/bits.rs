//! BT, BTS, BTR and BTC (without LOCK): CF is the selected bit; the other arithmetic flags
//! keep their values, as the interpreter keeps them (the SDM leaves OF, SF, AF and PF
//! undefined and ZF unaffected), so the flags are folded into RFLAGS first.

use super::mem::Access;
use super::ops::Opnd;
use super::Emit;
use cranelift_codegen::ir::{types, InstBuilder};
use iced_x86::{Instruction, Mnemonic};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BitOp {
    Test,
    Set,
    Reset,
    Complement,
}

impl BitOp {
    pub fn of(m: Mnemonic) -> Self {
        match m {
            Mnemonic::Bts => BitOp::Set,
            Mnemonic::Btr => BitOp::Reset,
            Mnemonic::Btc => BitOp::Complement,
            _ => BitOp::Test,
        }
    }
}

impl Emit<'_, '_> {
    /// `dst` a register or memory operand of `size` bytes, `src` the bit offset (an immediate
    /// or a register of the same size).
    pub(super) fn bit_test(&mut self, i: usize, insn: &Instruction, op: BitOp, size: u8, dst: Opnd, src: Opnd) {
        let bits = size as i64 * 8;
        let offset = match src {
            Opnd::Imm(v) => self.iconst(v),
            Opnd::Reg(r, _) => self.reg(r),
            Opnd::Mem(_) => unreachable!("classified: no memory bit offset"),
        };
        let bit = self.b.ins().band_imm_s(offset, bits - 1);
        let writes = op != BitOp::Test;
        let (value, host) = match (dst, src) {
            // A register offset into memory is a signed bit displacement from the operand,
            // which moves it by whole operand-size units (SDM BT, "bit base").
            (Opnd::Mem(_), Opnd::Reg(..)) => {
                let signed = self.sext(offset, size);
                let units = self.b.ins().sshr_imm_s(signed, bits.trailing_zeros() as i64);
                let bytes = self.b.ins().imul_imm_s(units, size as i64);
                let lin = self.operand_linear_plus(insn, Some(bytes));
                let host = self.probe(i, lin, size, if writes { Access::Update } else { Access::Read });
                (self.load_guest(host, size), Some(host))
            }
            _ => self.read_dst(i, insn, dst, size, writes),
        };
        let selected = self.b.ins().ushr(value, bit);
        let selected = self.b.ins().band_imm_s(selected, 1);
        if writes {
            let one = self.iconst(1);
            let mask = self.b.ins().ishl(one, bit);
            let new = match op {
                BitOp::Set => self.b.ins().bor(value, mask),
                BitOp::Reset => self.b.ins().band_not(value, mask),
                _ => self.b.ins().bxor(value, mask),
            };
            match host {
                Some(h) => self.store_guest(h, size, new),
                None => self.write_dst(dst, None, size, new),
            }
        }
        self.materialize_flags();
        let rflags = self.load_state(types::I64, self.l.rflags);
        let kept = self.b.ins().band_imm_s(rflags, !1);
        let rflags = self.b.ins().bor(kept, selected);
        self.store_state(rflags, self.l.rflags);
    }
}
