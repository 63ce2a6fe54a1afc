//! SSE data movement natively (legacy encodings, 64-bit code): MOVSS/MOVSD, MOVD/MOVQ,
//! the 128-bit MOVAPS/MOVUPS family, and XORPS/XORPD/PXOR. They touch neither MXCSR nor the
//! flags, so they are exact as plain loads and stores (floating-point arithmetic, which
//! depends on MXCSR and sets its flags, is `float`'s). XMM registers live in the CPU
//! structure and are read and written there.

use super::mem::Access;
use super::Emit;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use iced_x86::{Code, EncodingKind, Instruction, OpKind, Register};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VecOp {
    /// MOVSS/MOVSD xmm, xmm/m: from memory the `size` bytes zero-extended to 128 bits; from
    /// a register only the low `size` bytes move.
    LoadScalar(u8),
    /// MOVSS/MOVSD xmm/m, xmm: the low `size` bytes (to a register: merged as above).
    StoreScalar(u8),
    /// MOVD/MOVQ xmm, r/m and MOVQ xmm, xmm/m64: the low `size` bytes, the rest zeroed.
    LoadZeroExtended(u8),
    /// MOVD/MOVQ r/m, xmm and MOVQ xmm/m64, xmm (to an XMM register: the rest zeroed).
    StoreLow(u8),
    /// MOVAPS/MOVAPD/MOVDQA (`aligned`: a misaligned memory operand raises #GP) and
    /// MOVUPS/MOVUPD/MOVDQU, either direction.
    Move128 { aligned: bool },
    /// XORPS/XORPD/PXOR xmm, xmm/m128 (memory aligned).
    Xor128,
}

/// CR0.EM, CR0.TS and CR4.OSFXSR: SSE instructions raise #UD or #NM unless EM and TS are
/// clear and OSFXSR is set (SDM Vol. 3, 13.1.4).
const CR0_EM_TS: i64 = 1 << 2 | 1 << 3;
const CR4_OSFXSR: i64 = 1 << 9;

pub(crate) fn classify(insn: &Instruction, bitness: u32) -> Option<VecOp> {
    use Code as C;
    if bitness != 64 || insn.encoding() != EncodingKind::Legacy {
        return None;
    }
    Some(match insn.code() {
        C::Movss_xmm_xmmm32 => VecOp::LoadScalar(4),
        C::Movsd_xmm_xmmm64 => VecOp::LoadScalar(8),
        C::Movss_xmmm32_xmm => VecOp::StoreScalar(4),
        C::Movsd_xmmm64_xmm => VecOp::StoreScalar(8),
        C::Movd_xmm_rm32 => VecOp::LoadZeroExtended(4),
        C::Movq_xmm_rm64 | C::Movq_xmm_xmmm64 => VecOp::LoadZeroExtended(8),
        C::Movd_rm32_xmm => VecOp::StoreLow(4),
        C::Movq_rm64_xmm | C::Movq_xmmm64_xmm => VecOp::StoreLow(8),
        C::Movaps_xmm_xmmm128
        | C::Movaps_xmmm128_xmm
        | C::Movapd_xmm_xmmm128
        | C::Movapd_xmmm128_xmm
        | C::Movdqa_xmm_xmmm128
        | C::Movdqa_xmmm128_xmm => VecOp::Move128 { aligned: true },
        C::Movups_xmm_xmmm128
        | C::Movups_xmmm128_xmm
        | C::Movupd_xmm_xmmm128
        | C::Movupd_xmmm128_xmm
        | C::Movdqu_xmm_xmmm128
        | C::Movdqu_xmmm128_xmm => VecOp::Move128 { aligned: false },
        C::Xorps_xmm_xmmm128 | C::Xorpd_xmm_xmmm128 | C::Pxor_xmm_xmmm128 => VecOp::Xor128,
        _ => return None,
    })
}

/// A 128-bit value as its (low, high) quadwords.
type Pair = (Value, Value);

impl Emit<'_, '_> {
    pub(super) fn vector(&mut self, i: usize, insn: &Instruction, op: VecOp) {
        self.check_sse(i);
        let (dst, src) = (0, 1);
        match op {
            VecOp::LoadScalar(size) | VecOp::StoreScalar(size) => {
                if insn.op_kind(dst) == OpKind::Memory {
                    let (lo, _) = self.xmm(insn.op_register(src));
                    self.store_mem(i, insn, size, lo);
                } else if insn.op_kind(src) == OpKind::Memory {
                    let v = self.load_mem(i, insn, size, false);
                    self.set_xmm(insn.op_register(dst), v);
                } else {
                    // Register to register: only the low element moves.
                    let (s, _) = self.xmm(insn.op_register(src));
                    let (d_lo, d_hi) = self.xmm(insn.op_register(dst));
                    let lo = if size == 8 {
                        s
                    } else {
                        let kept = self.b.ins().band_imm_s(d_lo, !0xffff_ffffi64);
                        let moved = self.mask(s, 4);
                        self.b.ins().bor(kept, moved)
                    };
                    self.set_xmm(insn.op_register(dst), (lo, d_hi));
                }
            }
            VecOp::LoadZeroExtended(size) => {
                let lo = match insn.op_kind(src) {
                    OpKind::Memory => self.load_mem(i, insn, size, false).0,
                    _ => {
                        let r = insn.op_register(src);
                        if r.is_xmm() { self.xmm(r).0 } else { self.reg(r) }
                    }
                };
                let zero = self.iconst(0);
                self.set_xmm(insn.op_register(dst), (lo, zero));
            }
            VecOp::StoreLow(size) => {
                let (lo, _) = self.xmm(insn.op_register(src));
                match insn.op_kind(dst) {
                    OpKind::Memory => self.store_mem(i, insn, size, lo),
                    _ => {
                        let r = insn.op_register(dst);
                        if r.is_xmm() {
                            let zero = self.iconst(0);
                            self.set_xmm(r, (lo, zero));
                        } else {
                            self.set_reg(r, lo);
                        }
                    }
                }
            }
            VecOp::Move128 { aligned } => {
                if insn.op_kind(dst) == OpKind::Memory {
                    let v = self.xmm(insn.op_register(src));
                    self.store_mem_checked(i, insn, v, aligned);
                } else {
                    let v = match insn.op_kind(src) {
                        OpKind::Memory => self.load_mem(i, insn, 16, aligned),
                        _ => self.xmm(insn.op_register(src)),
                    };
                    self.set_xmm(insn.op_register(dst), v);
                }
            }
            VecOp::Xor128 => {
                let s = match insn.op_kind(src) {
                    OpKind::Memory => self.load_mem(i, insn, 16, true),
                    _ => self.xmm(insn.op_register(src)),
                };
                let d = self.xmm(insn.op_register(dst));
                let lo = self.b.ins().bxor(d.0, s.0);
                let hi = self.b.ins().bxor(d.1, s.1);
                self.set_xmm(insn.op_register(dst), (lo, hi));
            }
        }
    }

    /// Leaves before instruction `i` unless SSE is available (the interpreter then raises
    /// the #UD or #NM); once per path until the interpreter runs something.
    pub(super) fn check_sse(&mut self, i: usize) {
        if self.sse_checked {
            return;
        }
        let cr0 = self.load_state(types::I64, self.l.cr0);
        let cr4 = self.load_state(types::I64, self.l.cr4);
        let em_ts = self.b.ins().band_imm_s(cr0, CR0_EM_TS);
        let osfxsr = self.b.ins().band_imm_s(cr4, CR4_OSFXSR);
        let bad = self.b.ins().bxor_imm_s(osfxsr, CR4_OSFXSR);
        let bad = self.b.ins().bor(bad, em_ts);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, bad, 0);
        self.guard(i, ok);
        self.sse_checked = true;
    }

    pub(super) fn xmm_offset(&self, r: Register) -> i32 {
        self.l.xmm + 16 * r.number() as i32
    }

    fn xmm(&mut self, r: Register) -> Pair {
        let at = self.xmm_offset(r);
        (self.load_state(types::I64, at), self.load_state(types::I64, at + 8))
    }

    fn set_xmm(&mut self, r: Register, (lo, hi): Pair) {
        let at = self.xmm_offset(r);
        self.store_state(lo, at);
        self.store_state(hi, at + 8);
    }

    /// The memory operand's linear address; leaves before `i` if `aligned` and it is not
    /// 16-byte aligned (the interpreter raises the #GP).
    fn vector_address(&mut self, i: usize, insn: &Instruction, aligned: bool) -> Value {
        let lin = self.operand_linear(insn);
        if aligned {
            let low = self.b.ins().band_imm_s(lin, 15);
            let ok = self.b.ins().icmp_imm_s(IntCC::Equal, low, 0);
            self.guard(i, ok);
        }
        lin
    }

    /// Loads `size` bytes (4, 8 or 16) of the memory operand, zero-extended to 128 bits.
    pub(super) fn load_mem(&mut self, i: usize, insn: &Instruction, size: u8, aligned: bool) -> Pair {
        let lin = self.vector_address(i, insn, aligned);
        let host = self.probe(i, lin, size, Access::Read);
        if size == 16 {
            let lo = self.load_guest(host, 8);
            let high = self.b.ins().iadd_imm_s(host, 8);
            (lo, self.load_guest(high, 8))
        } else {
            let zero = self.iconst(0);
            (self.load_guest(host, size), zero)
        }
    }

    /// Stores the low `size` bytes (4 or 8) of `v` to the memory operand.
    fn store_mem(&mut self, i: usize, insn: &Instruction, size: u8, v: Value) {
        let lin = self.vector_address(i, insn, false);
        let host = self.probe(i, lin, size, Access::Write);
        self.store_guest(host, size, v);
    }

    fn store_mem_checked(&mut self, i: usize, insn: &Instruction, (lo, hi): Pair, aligned: bool) {
        let lin = self.vector_address(i, insn, aligned);
        let host = self.probe(i, lin, 16, Access::Write);
        self.store_guest(host, 8, lo);
        let high = self.b.ins().iadd_imm_s(host, 8);
        self.store_guest(high, 8, hi);
    }
}
