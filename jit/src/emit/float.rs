//! SSE floating-point arithmetic natively (legacy encodings, 64-bit code, on an x86-64
//! host): ADDSS/SUBSS/MULSS/DIVSS/SQRTSS and their SD twins, CVTSI2SS/CVTSI2SD,
//! CVTSS2SD/CVTSD2SS, and COMISS/COMISD/UCOMISS/UCOMISD.
//!
//! The host's SSE unit computes them with the very instructions the guest ran, so results
//! and exception flags are the hardware's, provided the host runs them under the guest's
//! MXCSR controls. Compiled code runs under [`NATIVE_MXCSR`]'s, so a path checks, before its
//! first such instruction, that the guest's MXCSR has the same controls, and otherwise leaves
//! the instruction to the interpreter (whose soft-float follows any MXCSR). The flags the
//! host raises are folded into the guest's MXCSR by the CPU (see `Layout`).
//!
//! Two things keep the host's flags exact. Every guard comes before the arithmetic, so a
//! path that leaves has raised nothing. And no floating-point constant ever reaches an
//! operation, which Cranelift would fold at compile time without raising anything: operands
//! are loaded from the XMM registers (no folding rule sees through those loads), and an
//! integer converted by CVTSI2Sx passes through a stack slot, because it may be a constant.

use super::Emit;
use crate::layout::{MXCSR_CONTROLS, NATIVE_MXCSR};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Type, Value};
use iced_x86::{Code, EncodingKind, Instruction, OpKind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FloatOp {
    /// ADD/SUB/MUL/DIV/SQRT SS or SD xmm, xmm/m: the low element (the rest of the
    /// destination kept).
    Arith { op: Arith, double: bool },
    /// COMISx (`signals`: a QNaN operand is invalid too) and UCOMISx: ZF, PF and CF from the
    /// comparison (all three when unordered), OF, SF and AF cleared.
    Compare { double: bool, signals: bool },
    /// CVTSI2SS/CVTSI2SD xmm, r/m of `size` bytes.
    FromInt { double: bool, size: u8 },
    /// CVTSS2SD (`to_double`) and CVTSD2SS.
    Resize { to_double: bool },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Sqrt,
}

/// MXCSR.IE, which COMISx raises itself for a QNaN operand (the host's UCOMISx does not).
const MXCSR_IE: i64 = 1;
const CF: i64 = 1 << 0;
const PF: i64 = 1 << 2;
const ZF: i64 = 1 << 6;

pub(crate) fn classify(insn: &Instruction, bitness: u32) -> Option<FloatOp> {
    use Code as C;
    if !cfg!(target_arch = "x86_64") || bitness != 64 || insn.encoding() != EncodingKind::Legacy {
        return None;
    }
    let arith = |op, double| FloatOp::Arith { op, double };
    Some(match insn.code() {
        C::Addss_xmm_xmmm32 => arith(Arith::Add, false),
        C::Addsd_xmm_xmmm64 => arith(Arith::Add, true),
        C::Subss_xmm_xmmm32 => arith(Arith::Sub, false),
        C::Subsd_xmm_xmmm64 => arith(Arith::Sub, true),
        C::Mulss_xmm_xmmm32 => arith(Arith::Mul, false),
        C::Mulsd_xmm_xmmm64 => arith(Arith::Mul, true),
        C::Divss_xmm_xmmm32 => arith(Arith::Div, false),
        C::Divsd_xmm_xmmm64 => arith(Arith::Div, true),
        C::Sqrtss_xmm_xmmm32 => arith(Arith::Sqrt, false),
        C::Sqrtsd_xmm_xmmm64 => arith(Arith::Sqrt, true),
        C::Comiss_xmm_xmmm32 => FloatOp::Compare { double: false, signals: true },
        C::Comisd_xmm_xmmm64 => FloatOp::Compare { double: true, signals: true },
        C::Ucomiss_xmm_xmmm32 => FloatOp::Compare { double: false, signals: false },
        C::Ucomisd_xmm_xmmm64 => FloatOp::Compare { double: true, signals: false },
        C::Cvtsi2ss_xmm_rm32 => FloatOp::FromInt { double: false, size: 4 },
        C::Cvtsi2ss_xmm_rm64 => FloatOp::FromInt { double: false, size: 8 },
        C::Cvtsi2sd_xmm_rm32 => FloatOp::FromInt { double: true, size: 4 },
        C::Cvtsi2sd_xmm_rm64 => FloatOp::FromInt { double: true, size: 8 },
        C::Cvtss2sd_xmm_xmmm32 => FloatOp::Resize { to_double: true },
        C::Cvtsd2ss_xmm_xmmm64 => FloatOp::Resize { to_double: false },
        _ => return None,
    })
}

fn float_type(double: bool) -> Type {
    if double { types::F64 } else { types::F32 }
}

impl Emit<'_, '_> {
    pub(super) fn float(&mut self, i: usize, insn: &Instruction, op: FloatOp) {
        self.check_sse(i);
        self.check_mxcsr(i);
        let dst = insn.op_register(0);
        match op {
            FloatOp::Arith { op, double } => {
                let b = self.float_source(i, insn, double);
                let a = self.xmm_float(dst, double);
                let ins = self.b.ins();
                let r = match op {
                    Arith::Add => ins.fadd(a, b),
                    Arith::Sub => ins.fsub(a, b),
                    Arith::Mul => ins.fmul(a, b),
                    Arith::Div => ins.fdiv(a, b),
                    Arith::Sqrt => ins.sqrt(b),
                };
                self.set_xmm_float(dst, r, double);
            }
            FloatOp::Compare { double, signals } => {
                let b = self.float_source(i, insn, double);
                let a = self.xmm_float(dst, double);
                let unordered = self.b.ins().fcmp(FloatCC::Unordered, a, b);
                let less = self.b.ins().fcmp(FloatCC::LessThan, a, b);
                let equal = self.b.ins().fcmp(FloatCC::Equal, a, b);
                let zf = self.b.ins().bor(unordered, equal);
                let cf = self.b.ins().bor(unordered, less);
                if signals {
                    self.raise_mxcsr_if(unordered, MXCSR_IE);
                }
                let bit = |e: &mut Self, v: Value, mask: i64| {
                    let v = e.b.ins().uextend(types::I64, v);
                    e.b.ins().imul_imm_s(v, mask)
                };
                let (zf, pf, cf) = (bit(self, zf, ZF), bit(self, unordered, PF), bit(self, cf, CF));
                let arith = self.b.ins().bor(zf, pf);
                let arith = self.b.ins().bor(arith, cf);
                self.set_arith_flags(arith);
            }
            FloatOp::FromInt { double, size } => {
                let v = match insn.op_kind(1) {
                    OpKind::Memory => self.load_mem(i, insn, size, false).0,
                    _ => self.reg(insn.op_register(1)),
                };
                let v = self.opaque(v);
                let v = if size == 4 { self.b.ins().ireduce(types::I32, v) } else { v };
                let r = self.b.ins().fcvt_from_sint(float_type(double), v);
                self.set_xmm_float(dst, r, double);
            }
            FloatOp::Resize { to_double } => {
                let s = self.float_source(i, insn, !to_double);
                let r = if to_double { self.b.ins().fpromote(types::F64, s) } else { self.b.ins().fdemote(types::F32, s) };
                self.set_xmm_float(dst, r, to_double);
            }
        }
    }

    /// Leaves before instruction `i` unless the guest's MXCSR has the controls compiled code
    /// runs under; once per path until the interpreter runs something (LDMXCSR may).
    fn check_mxcsr(&mut self, i: usize) {
        if self.mxcsr_checked {
            return;
        }
        let mxcsr = self.load_state(types::I32, self.l.mxcsr);
        let controls = self.b.ins().band_imm_s(mxcsr, MXCSR_CONTROLS as i64);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, controls, NATIVE_MXCSR as i64);
        self.guard(i, ok);
        self.mxcsr_checked = true;
    }

    /// Sets the guest's MXCSR flag `flag` when `cond` (an `i8` truth value).
    fn raise_mxcsr_if(&mut self, cond: Value, flag: i64) {
        let mxcsr = self.load_state(types::I32, self.l.mxcsr);
        let cond = self.b.ins().uextend(types::I32, cond);
        let raised = self.b.ins().imul_imm_s(cond, flag);
        let mxcsr = self.b.ins().bor(mxcsr, raised);
        self.store_state(mxcsr, self.l.mxcsr);
    }

    /// The low element of XMM register `r` as a float.
    fn xmm_float(&mut self, r: iced_x86::Register, double: bool) -> Value {
        let at = self.xmm_offset(r);
        let bits = self.load_state(if double { types::I64 } else { types::I32 }, at);
        self.b.ins().bitcast(float_type(double), MemFlagsData::new(), bits)
    }

    /// Writes `v` to the low element of XMM register `r`, keeping the rest.
    fn set_xmm_float(&mut self, r: iced_x86::Register, v: Value, double: bool) {
        let bits = self.b.ins().bitcast(if double { types::I64 } else { types::I32 }, MemFlagsData::new(), v);
        self.store_state(bits, self.xmm_offset(r));
    }

    /// The source operand's low element: an XMM register's, or a 4- or 8-byte load.
    fn float_source(&mut self, i: usize, insn: &Instruction, double: bool) -> Value {
        if insn.op_kind(1) != OpKind::Memory {
            return self.xmm_float(insn.op_register(1), double);
        }
        let bits = self.load_mem(i, insn, if double { 8 } else { 4 }, false).0;
        let bits = if double { bits } else { self.b.ins().ireduce(types::I32, bits) };
        self.b.ins().bitcast(float_type(double), MemFlagsData::new(), bits)
    }

    /// `v` (`i64`) through a stack slot, so that Cranelift cannot know it is a constant.
    fn opaque(&mut self, v: Value) -> Value {
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 3));
        let addr = self.b.ins().stack_addr(types::I64, slot, 0);
        self.b.ins().store(MemFlagsData::trusted(), v, addr, 0);
        // Alias analysis forwards stores to plain loads, never to atomic ones.
        self.b.ins().atomic_load(types::I64, MemFlagsData::trusted(), addr)
    }
}
