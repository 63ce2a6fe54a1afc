//! The instructions emitted natively: moves, integer ALU, stack, near branches, SETcc and
//! CMOVcc, CMPXCHG, XADD, XCHG and LOCK'd ALU operations of memory (`atomic`), CLI, STI, CLAC,
//! STAC and PUSHFQ (`system`), and shifts and
//! rotates of a register (by an immediate or CL) whose flags nothing reads
//! ([`keep_dead_flag_shifts`]). Everything else (and every instruction in device memory or
//! under a TLB miss) runs through the interpreter. Memory operands are native in 64-bit code only, where
//! segments other than FS/GS have no base and no limit.

use super::mem::Access;
use super::{mask_of, Emit};
use crate::chain::{EXIT_NEXT, EXIT_TAKEN};
use crate::operand::gpr_slot;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ShiftOp {
    Shl,
    Shr,
    Sar,
    Rol,
    Ror,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AluOp {
    Add,
    Adc,
    Sub,
    Sbb,
    Cmp,
    And,
    Or,
    Xor,
    Test,
}

/// How an instruction is emitted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Native {
    Nop,
    Mov { size: u8 },
    MovExt { src_size: u8, signed: bool },
    Lea,
    Alu { op: AluOp, size: u8 },
    IncDec { inc: bool, size: u8 },
    Push,
    Pop,
    /// LEAVE in 64-bit code: RSP from RBP, then RBP popped.
    Leave,
    /// MOV r/m16, Sreg (and its 32 and 64-bit register forms): `seg` in ES..GS order.
    MovFromSreg { seg: usize },
    Jmp,
    Jcc,
    Call,
    Ret { pop: u64 },
    JmpIndirect,
    CallIndirect,
    Setcc,
    Cmov { size: u8 },
    /// A register shifted or rotated by a non-zero (masked) immediate count. SHL, SHR and
    /// SAR below the width record their flags lazily; the others are emitted without theirs
    /// (only kept where they are dead), except rotates, whose CF and OF are computed when
    /// `flags` (they live on).
    Shift { op: ShiftOp, size: u8, count: u32, flags: bool },
    /// The same by CL (any count, zero included). `flags`: its flags live on (only SHL, SHR
    /// and SAR of 32 or 64 bits, whose masked counts stay below the width, have a lazy form).
    ShiftCl { op: ShiftOp, size: u8, flags: bool },
    /// IMUL r, r/m and IMUL r, r/m, imm (16, 32 or 64 bits).
    Imul { size: u8 },
    /// NOT r/m, or NEG r/m (`neg`: flags as SUB from 0).
    Unary { neg: bool, size: u8 },
    /// BSWAP r32/r64.
    Bswap { size: u8 },
    /// CBW/CWDE/CDQE (`into_dx` false: the accumulator's low half sign-extended into it) and
    /// CWD/CDQ/CQO (true: its sign copied into DX/EDX/RDX); `size` the result's width.
    SignExtendAcc { size: u8, into_dx: bool },
    /// SSE moves and XOR (see `vector`).
    Vector(super::vector::VecOp),
    /// SSE scalar floating-point arithmetic, conversions and comparisons (see `float`).
    Float(super::float::FloatOp),
    /// BT, BTS, BTR, BTC without LOCK (see `bits`).
    BitTest { op: super::bits::BitOp, size: u8 },
    /// CMPXCHG, XADD, XCHG of memory, and LOCK'd ALU operations (see `atomic`).
    Atomic { op: super::atomic::AtomicOp, size: u8, locked: bool },
    /// CLI, STI, CLAC, STAC, PUSHFQ, SWAPGS, MFENCE (see `system`).
    System(super::system::SysOp),
    /// MUL or DIV (`div`) of 32 or 64 bits (see `muldiv`).
    MulDiv { div: bool, size: u8 },
}

/// An operand the translator handles.
#[derive(Clone, Copy)]
pub(super) enum Opnd {
    Reg(Register, u8),
    Imm(u64),
    Mem(u8),
}

pub(super) fn opnd(insn: &Instruction, k: u32, bitness: u32) -> Option<Opnd> {
    match insn.op_kind(k) {
        OpKind::Register => {
            let r = insn.op_register(k);
            gpr_slot(r).map(|(_, size, _)| Opnd::Reg(r, size))
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(Opnd::Imm(insn.immediate(k))),
        OpKind::Memory if bitness == 64 => match insn.memory_size().size() {
            s @ (1 | 2 | 4 | 8) => Some(Opnd::Mem(s as u8)),
            _ => None,
        },
        _ => None,
    }
}

fn size_of(o: Opnd) -> u8 {
    match o {
        Opnd::Reg(_, s) | Opnd::Mem(s) => s,
        Opnd::Imm(_) => 0,
    }
}

fn is_canonical(a: u64) -> bool {
    ((a << 16) as i64 >> 16) as u64 == a
}

/// A near branch whose target is known at translation time and which this mode lets the
/// translator take without a CS limit check.
fn direct_target(insn: &Instruction, bitness: u32) -> Option<u64> {
    (bitness == 64 && insn.op0_kind() == OpKind::NearBranch64 && is_canonical(insn.near_branch_target()))
        .then(|| insn.near_branch_target())
}

/// Decides whether and how `insn` is emitted natively in code of `bitness`.
pub(crate) fn classify(insn: &Instruction, bitness: u32) -> Option<Native> {
    if let Some((op, size, locked)) = super::atomic::classify(insn, bitness) {
        return Some(Native::Atomic { op, size, locked });
    }
    if insn.has_lock_prefix() {
        return None;
    }
    if let Some(op) = super::system::classify(insn, bitness) {
        return Some(Native::System(op));
    }
    if let Some(native) = super::muldiv::classify(insn, bitness) {
        return Some(native);
    }
    let two = || Some((opnd(insn, 0, bitness)?, opnd(insn, 1, bitness)?));
    let long = bitness == 64;
    if let Some(v) = super::vector::classify(insn, bitness) {
        return Some(Native::Vector(v));
    }
    if let Some(f) = super::float::classify(insn, bitness) {
        return Some(Native::Float(f));
    }
    Some(match insn.mnemonic() {
        Mnemonic::Nop => Native::Nop,
        // Nothing to order or wait for (see the interpreter's handler of these): every
        // 64-bit CPU has them.
        Mnemonic::Lfence | Mnemonic::Sfence | Mnemonic::Pause if long => Native::Nop,
        // Hints that touch nothing and never fault; every 64-bit CPU has them (see the CPU's
        // `cpuid::hint_nop_without_cet` for PREFETCH/PREFETCHW).
        Mnemonic::Prefetchw | Mnemonic::Prefetch | Mnemonic::Prefetchnta | Mnemonic::Prefetcht0 | Mnemonic::Prefetcht1 | Mnemonic::Prefetcht2
            if long =>
        {
            Native::Nop
        }
        Mnemonic::Cbw => Native::SignExtendAcc { size: 2, into_dx: false },
        Mnemonic::Cwde => Native::SignExtendAcc { size: 4, into_dx: false },
        Mnemonic::Cdqe => Native::SignExtendAcc { size: 8, into_dx: false },
        Mnemonic::Cwd => Native::SignExtendAcc { size: 2, into_dx: true },
        Mnemonic::Cdq => Native::SignExtendAcc { size: 4, into_dx: true },
        Mnemonic::Cqo => Native::SignExtendAcc { size: 8, into_dx: true },
        Mnemonic::Mov if insn.op1_kind() == OpKind::Register && insn.op1_register().is_segment_register() => {
            opnd(insn, 0, bitness)?;
            Native::MovFromSreg { seg: insn.op1_register() as usize - Register::ES as usize }
        }
        Mnemonic::Leave if long && insn.code() == Code::Leaveq => Native::Leave,
        Mnemonic::Mov => {
            let (d, s) = two()?;
            let size = size_of(d);
            match (d, s) {
                (Opnd::Imm(_), _) | (Opnd::Mem(_), Opnd::Mem(_)) => return None,
                (_, Opnd::Imm(_)) => {}
                _ if size_of(s) != size => return None,
                _ => {}
            }
            Native::Mov { size }
        }
        Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => {
            let (d, s) = two()?;
            let (Opnd::Reg(_, ds), Opnd::Reg(_, ss) | Opnd::Mem(ss)) = (d, s) else { return None };
            if ds < 2 || ss >= ds {
                return None;
            }
            Native::MovExt { src_size: ss, signed: insn.mnemonic() != Mnemonic::Movzx }
        }
        Mnemonic::Lea => match insn.op0_kind() {
            OpKind::Register if gpr_slot(insn.op0_register()).is_some_and(|(_, s, _)| s >= 2) => {
                let regs_ok = [insn.memory_base(), insn.memory_index()]
                    .iter()
                    .all(|&r| matches!(r, Register::None | Register::RIP | Register::EIP) || gpr_slot(r).is_some());
                if !regs_ok {
                    return None;
                }
                Native::Lea
            }
            _ => return None,
        },
        m @ (Mnemonic::Add
        | Mnemonic::Adc
        | Mnemonic::Sbb
        | Mnemonic::Sub
        | Mnemonic::Cmp
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Test) => {
            let op = match m {
                Mnemonic::Add => AluOp::Add,
                Mnemonic::Adc => AluOp::Adc,
                Mnemonic::Sub => AluOp::Sub,
                Mnemonic::Sbb => AluOp::Sbb,
                Mnemonic::Cmp => AluOp::Cmp,
                Mnemonic::And => AluOp::And,
                Mnemonic::Or => AluOp::Or,
                Mnemonic::Xor => AluOp::Xor,
                _ => AluOp::Test,
            };
            let (d, s) = two()?;
            let size = size_of(d);
            match (d, s) {
                (Opnd::Imm(_), _) | (Opnd::Mem(_), Opnd::Mem(_)) => return None,
                (_, Opnd::Imm(_)) => {}
                _ if size_of(s) != size => return None,
                _ => {}
            }
            Native::Alu { op, size }
        }
        m @ (Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar | Mnemonic::Rol | Mnemonic::Ror) => {
            let op = match m {
                Mnemonic::Shl | Mnemonic::Sal => ShiftOp::Shl,
                Mnemonic::Shr => ShiftOp::Shr,
                Mnemonic::Sar => ShiftOp::Sar,
                Mnemonic::Rol => ShiftOp::Rol,
                _ => ShiftOp::Ror,
            };
            match two()? {
                (Opnd::Reg(_, size), Opnd::Imm(imm)) => {
                    // SDM SAL/SAR/SHL/SHR, ROL/ROR: the count is masked to 5 bits (6 for
                    // 64-bit operands); a zero count changes nothing but the 32-bit zero
                    // extension.
                    let count = (imm as u32) & if size == 8 { 0x3f } else { 0x1f };
                    if count == 0 {
                        return None;
                    }
                    Native::Shift { op, size, count, flags: true }
                }
                (Opnd::Reg(_, size), Opnd::Reg(Register::CL, 1)) => Native::ShiftCl { op, size, flags: true },
                _ => return None,
            }
        }
        Mnemonic::Imul if insn.op_count() >= 2 => {
            let Opnd::Reg(_, size) = opnd(insn, 0, bitness)? else { return None };
            let src = opnd(insn, 1, bitness)?;
            if size < 2 || matches!(src, Opnd::Imm(_)) || size_of(src) != size {
                return None;
            }
            if insn.op_count() == 3 && !matches!(opnd(insn, 2, bitness)?, Opnd::Imm(_)) {
                return None;
            }
            Native::Imul { size }
        }
        m @ (Mnemonic::Not | Mnemonic::Neg) => match opnd(insn, 0, bitness)? {
            Opnd::Imm(_) => return None,
            d => Native::Unary { neg: m == Mnemonic::Neg, size: size_of(d) },
        },
        // BSWAP of a 16-bit register is undefined (SDM): the interpreter keeps its choice.
        Mnemonic::Bswap => match opnd(insn, 0, bitness)? {
            Opnd::Reg(_, size @ (4 | 8)) => Native::Bswap { size },
            _ => return None,
        },
        m @ (Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc) => {
            let (d, s) = two()?;
            let size = size_of(d);
            match s {
                Opnd::Imm(_) => {}
                Opnd::Reg(_, s) if s == size => {}
                _ => return None,
            }
            if size < 2 || matches!(d, Opnd::Imm(_)) {
                return None;
            }
            Native::BitTest { op: super::bits::BitOp::of(m), size }
        }
        Mnemonic::Inc | Mnemonic::Dec => match opnd(insn, 0, bitness)? {
            Opnd::Imm(_) => return None,
            d => Native::IncDec { inc: insn.mnemonic() == Mnemonic::Inc, size: size_of(d) },
        },
        Mnemonic::Push if long => match insn.code() {
            Code::Push_r64 | Code::Push_rm64 => Native::Push,
            Code::Pushq_imm8 | Code::Pushq_imm32 => Native::Push,
            _ => return None,
        },
        Mnemonic::Pop if long && insn.code() == Code::Pop_r64 && insn.op0_register() != Register::RSP => Native::Pop,
        Mnemonic::Jmp if direct_target(insn, bitness).is_some() => Native::Jmp,
        Mnemonic::Jmp if long && insn.code() == Code::Jmp_rm64 && opnd(insn, 0, bitness).is_some() => Native::JmpIndirect,
        Mnemonic::Call if direct_target(insn, bitness).is_some() && insn.code() == Code::Call_rel32_64 => Native::Call,
        Mnemonic::Call if long && insn.code() == Code::Call_rm64 && opnd(insn, 0, bitness).is_some() => Native::CallIndirect,
        Mnemonic::Ret if long && insn.code() == Code::Retnq => Native::Ret { pop: 0 },
        Mnemonic::Ret if long && insn.code() == Code::Retnq_imm16 => Native::Ret { pop: insn.immediate16() as u64 },
        _ if insn.is_jcc_short_or_near() && direct_target(insn, bitness).is_some() => Native::Jcc,
        Mnemonic::Seta
        | Mnemonic::Setae
        | Mnemonic::Setb
        | Mnemonic::Setbe
        | Mnemonic::Sete
        | Mnemonic::Setg
        | Mnemonic::Setge
        | Mnemonic::Setl
        | Mnemonic::Setle
        | Mnemonic::Setne
        | Mnemonic::Setno
        | Mnemonic::Setnp
        | Mnemonic::Setns
        | Mnemonic::Seto
        | Mnemonic::Setp
        | Mnemonic::Sets => {
            match opnd(insn, 0, bitness)? {
                Opnd::Reg(_, 1) | Opnd::Mem(1) => Native::Setcc,
                _ => return None,
            }
        }
        Mnemonic::Cmova
        | Mnemonic::Cmovae
        | Mnemonic::Cmovb
        | Mnemonic::Cmovbe
        | Mnemonic::Cmove
        | Mnemonic::Cmovg
        | Mnemonic::Cmovge
        | Mnemonic::Cmovl
        | Mnemonic::Cmovle
        | Mnemonic::Cmovne
        | Mnemonic::Cmovno
        | Mnemonic::Cmovnp
        | Mnemonic::Cmovns
        | Mnemonic::Cmovo
        | Mnemonic::Cmovp
        | Mnemonic::Cmovs => {
            let (d, s) = two()?;
            let (Opnd::Reg(_, size), Opnd::Reg(..) | Opnd::Mem(_)) = (d, s) else { return None };
            Native::Cmov { size }
        }
        _ => return None,
    })
}

/// The six arithmetic flags.
pub(crate) const ARITH_FLAGS: u32 = iced_x86::RflagsBits::OF
    | iced_x86::RflagsBits::SF
    | iced_x86::RflagsBits::ZF
    | iced_x86::RflagsBits::AF
    | iced_x86::RflagsBits::PF
    | iced_x86::RflagsBits::CF;

/// Keeps a rotate, or a shift by CL or by the width or more ([`Native::Shift`],
/// [`Native::ShiftCl`]), which are emitted without their flags, only where the flags they
/// write are dead: before anything could look at one of them (a flag read, an instruction that
/// may fault or runs in the interpreter, the end of the block), native register-only
/// instructions overwrite each. A shift by CL overwrites nothing here, as its count may be 0.
/// Elsewhere the interpreter runs the instruction, flags and all.
pub(crate) fn keep_dead_flag_shifts(plan: &mut [Option<Native>], insns: &[Instruction]) {
    for i in (0..plan.len()).rev() {
        match &plan[i] {
            Some(n) if has_lazy_flags(n) => continue,
            Some(Native::Shift { .. } | Native::ShiftCl { .. }) => {}
            _ => continue,
        }
        let dead = flags_die(plan, insns, i + 1, insns[i].rflags_modified() & ARITH_FLAGS);
        plan[i] = match plan[i] {
            Some(Native::ShiftCl { op, size, .. }) if dead || (size >= 4 && matches!(op, ShiftOp::Shl | ShiftOp::Shr | ShiftOp::Sar)) => {
                Some(Native::ShiftCl { op, size, flags: !dead })
            }
            // A rotate's CF and OF are computed where they live on (see `rotate_flags`).
            Some(Native::Shift { op: op @ (ShiftOp::Rol | ShiftOp::Ror), size, count, .. }) => Some(Native::Shift { op, size, count, flags: !dead }),
            _ if dead => plan[i],
            _ => None,
        };
    }
}

/// Whether the flags in `live` are all overwritten from instruction `from` on before anything
/// may observe them: an instruction reading one, one that may leave the block (a memory
/// operand, the stack, a branch, the interpreter) or the block's end.
pub(crate) fn flags_die(plan: &[Option<Native>], insns: &[Instruction], from: usize, mut live: u32) -> bool {
    for j in from..plan.len() {
        if live == 0 {
            break;
        }
        let insn = &insns[j];
        let no_memory = (0..insn.op_count()).all(|k| insn.op_kind(k) != OpKind::Memory);
        let observable = match &plan[j] {
            // BT keeps the flags it does not define, so it reads them all.
            Some(Native::BitTest { .. }) => true,
            Some(n) => !no_memory || n.ends_block() || n.may_leave() || insn.rflags_read() & live != 0,
            None => true,
        };
        if observable {
            return false;
        }
        // A shift by CL may shift by zero and keep them all.
        if !matches!(plan[j], Some(Native::ShiftCl { .. })) {
            live &= !insn.rflags_modified();
        }
    }
    live == 0
}

/// SHL/SHR/SAR by an immediate below the width: their flags have a lazy form, so they are
/// native whether or not the flags live on.
fn has_lazy_flags(n: &Native) -> bool {
    matches!(n, Native::Shift { op: ShiftOp::Shl | ShiftOp::Shr | ShiftOp::Sar, size, count, .. } if *count < *size as u32 * 8)
}

impl Emit<'_, '_> {
    /// The lazy flag operation of a shift, where it has one (see `has_lazy_flags`).
    fn lazy_shift_op(&self, op: ShiftOp, size: u8, count: u32) -> Option<u8> {
        let ops = self.l.cc_ops;
        if count >= size as u32 * 8 {
            return None;
        }
        match op {
            ShiftOp::Shl => Some(ops.shl),
            ShiftOp::Shr => Some(ops.shr),
            ShiftOp::Sar => Some(ops.sar),
            _ => None,
        }
    }
}

impl Native {
    /// Whether a native instruction without a memory operand may still leave the block
    /// before it (see `Emit::guard`), where the interpreter sees the flags: the stack's
    /// implicit accesses, and the checks of the privileged and DIV's operands. (DIV also
    /// leaves the flags as they were, though the decoder says it writes them.)
    fn may_leave(&self) -> bool {
        matches!(self, Native::Push | Native::Pop | Native::Leave | Native::System(_) | Native::MulDiv { div: true, .. })
    }

    /// Whether the instruction ends its block natively (a branch).
    fn ends_block(&self) -> bool {
        matches!(
            self,
            Native::Jmp | Native::Jcc | Native::Call | Native::Ret { .. } | Native::JmpIndirect | Native::CallIndirect
        )
    }
}

impl Emit<'_, '_> {
    /// Emits instruction `i`. Returns whether it ended the block (a branch, which stores
    /// RIP and returns itself).
    pub(super) fn native(&mut self, i: usize, insn: &Instruction, op: &Native) -> bool {
        let bitness = self.spec.bitness;
        let next = insn.next_ip();
        match *op {
            Native::Nop => {}
            Native::Mov { size } => {
                let src = opnd(insn, 1, bitness).expect("classified");
                let v = self.read_opnd(i, insn, src, size);
                self.write_opnd(i, insn, opnd(insn, 0, bitness).expect("classified"), size, v);
            }
            Native::MovExt { src_size, signed } => {
                let v = self.read_opnd(i, insn, opnd(insn, 1, bitness).expect("classified"), src_size);
                let v = if signed { self.sext(v, src_size) } else { v };
                self.set_reg(insn.op0_register(), v);
            }
            Native::Lea => {
                let ea = self.effective_address(insn);
                self.set_reg(insn.op0_register(), ea);
            }
            Native::Alu { op, size } => self.alu(i, insn, op, size),
            Native::Atomic { op, size, locked } => self.atomic(i, insn, op, size, locked),
            Native::System(op) => self.system(i, op),
            Native::MulDiv { div, size } => self.mul_div(i, insn, div, size),
            Native::IncDec { inc, size } => {
                let carry = self.carry_flag();
                let dst = opnd(insn, 0, bitness).expect("classified");
                let (d, host) = self.read_dst(i, insn, dst, size, true);
                let res = if inc { self.b.ins().iadd_imm_s(d, 1) } else { self.b.ins().iadd_imm_s(d, -1) };
                let res = self.mask(res, size);
                self.write_dst(dst, host, size, res);
                let one = self.iconst(1);
                let ops = self.l.cc_ops;
                self.set_flags(if inc { ops.inc } else { ops.dec }, size, d, one, res, Some(carry));
            }
            Native::Push => {
                let v = match opnd(insn, 0, bitness).expect("classified") {
                    Opnd::Imm(v) => self.iconst(v),
                    Opnd::Reg(r, _) => self.reg(r),
                    // The address is formed with RSP before the push (SDM PUSH); the read
                    // changes nothing if the stack's probe then leaves the block.
                    m @ Opnd::Mem(_) => self.read_opnd(i, insn, m, 8),
                };
                self.push(i, v);
            }
            Native::Leave => {
                // The interpreter's order: the read at RBP may fault before anything changes.
                let rbp = self.reg(Register::RBP);
                let v = self.pop_from(i, rbp);
                self.set_reg(Register::RBP, v);
            }
            Native::MovFromSreg { seg } => {
                // A register takes the selector zero-extended to its size (the 16-bit form
                // keeps the upper bits), memory its 16 bits, as the interpreter does.
                let sel = self.b.ins().uload16(cranelift_codegen::ir::types::I64, super::state_flags(), self.cpu, self.l.seg_selector[seg]);
                let dst = opnd(insn, 0, bitness).expect("classified");
                let size = match dst {
                    Opnd::Reg(_, s) => s,
                    _ => 2,
                };
                self.write_opnd(i, insn, dst, size, sel);
            }
            Native::Pop => {
                let rsp = self.reg(Register::RSP);
                let v = self.pop_from(i, rsp);
                self.set_reg(insn.op0_register(), v);
            }
            Native::Jmp => {
                let target = insn.near_branch_target();
                if self.loops_to(target) {
                    self.loop_back(i as u64 + 1, target);
                } else {
                    self.finish_direct(target, EXIT_TAKEN, i as u64 + 1);
                }
                return true;
            }
            Native::Jcc if self.loops_to(insn.near_branch_target()) => {
                let c = self.condition(insn.condition_code());
                let (taken, not_taken) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(c, taken, &[], not_taken, &[]);
                self.b.switch_to_block(taken);
                self.loop_back(i as u64 + 1, insn.near_branch_target());
                self.b.switch_to_block(not_taken);
                self.finish_direct(next, EXIT_NEXT, i as u64 + 1);
                return true;
            }
            Native::Jcc if i + 1 < self.spec.insns.len() => {
                let c = self.condition(insn.condition_code());
                self.inner_branch(c, insn.near_branch_target(), i as u64 + 1);
            }
            Native::Jcc => {
                let c = self.condition(insn.condition_code());
                self.finish_branch(c, insn.near_branch_target(), next, i as u64 + 1);
                return true;
            }
            Native::Call => {
                let ret = self.iconst(next);
                self.push(i, ret);
                self.finish_direct(insn.near_branch_target(), EXIT_TAKEN, i as u64 + 1);
                return true;
            }
            Native::Ret { pop } => {
                let rsp = self.reg(Register::RSP);
                let host = self.probe(i, rsp, 8, Access::Read);
                let t = self.load_guest(host, 8);
                self.guard_canonical(i, t);
                let up = self.b.ins().iadd_imm_s(rsp, 8 + pop as i64);
                self.set_reg(Register::RSP, up);
                self.finish_indirect(t, i as u64 + 1);
                return true;
            }
            Native::JmpIndirect | Native::CallIndirect => {
                let t = self.read_opnd(i, insn, opnd(insn, 0, bitness).expect("classified"), 8);
                self.guard_canonical(i, t);
                if matches!(op, Native::CallIndirect) {
                    let ret = self.iconst(next);
                    self.push(i, ret);
                }
                self.finish_indirect(t, i as u64 + 1);
                return true;
            }
            Native::Setcc => {
                let c = self.condition(insn.condition_code());
                let v = self.b.ins().uextend(cranelift_codegen::ir::types::I64, c);
                self.write_opnd(i, insn, opnd(insn, 0, bitness).expect("classified"), 1, v);
            }
            Native::Shift { op, size, count, flags } => {
                let r = insn.op0_register();
                let v = self.reg(r);
                let n = self.iconst(count as u64);
                let res = self.shift_by(v, op, size, n);
                self.set_reg(r, res);
                if let Some(cc) = self.lazy_shift_op(op, size, count) {
                    let res = self.mask(res, size);
                    self.set_flags(cc, size, v, n, res, None);
                } else if flags {
                    self.rotate_flags(op, size, v, res);
                }
            }
            Native::ShiftCl { op, size, flags } => {
                let r = insn.op0_register();
                let v = self.reg(r);
                let cl = self.reg(Register::CL);
                let count = self.b.ins().band_imm_s(cl, if size == 8 { 0x3f } else { 0x1f });
                let res = self.shift_by(v, op, size, count);
                self.set_reg(r, res);
                if flags {
                    let cc = self.lazy_shift_op(op, size, 1).expect("classified: a lazy shift");
                    let res = self.mask(res, size);
                    self.set_flags_unless_zero(count, cc, size, v, res);
                }
            }
            Native::Imul { size } => {
                let a = self.read_opnd(i, insn, opnd(insn, 1, bitness).expect("classified"), size);
                let b = if insn.op_count() == 3 {
                    self.read_opnd(i, insn, opnd(insn, 2, bitness).expect("classified"), size)
                } else {
                    self.reg(insn.op0_register())
                };
                let (res, overflow) = self.signed_product(a, b, size);
                self.set_reg(insn.op0_register(), res);
                let ops = self.l.cc_ops;
                self.set_flags(ops.mul, size, a, b, res, Some(overflow));
            }
            Native::Unary { neg, size } => {
                let dst = opnd(insn, 0, bitness).expect("classified");
                let (d, host) = self.read_dst(i, insn, dst, size, true);
                let res = if neg { self.b.ins().ineg(d) } else { self.b.ins().bnot(d) };
                let res = self.mask(res, size);
                self.write_dst(dst, host, size, res);
                if neg {
                    let (zero, ops) = (self.iconst(0), self.l.cc_ops);
                    self.set_flags(ops.sub, size, zero, d, res, None);
                }
            }
            Native::Bswap { size } => {
                let r = insn.op0_register();
                let v = self.reg(r);
                let n = self.narrow(v, size);
                let swapped = self.b.ins().bswap(n);
                let swapped = self.widen(swapped, size);
                self.set_reg(r, swapped);
            }
            Native::Vector(op) => self.vector(i, insn, op),
            Native::Float(op) => self.float(i, insn, op),
            Native::SignExtendAcc { size, into_dx } => {
                let acc = |size| match size {
                    2 => (Register::AX, Register::DX),
                    4 => (Register::EAX, Register::EDX),
                    _ => (Register::RAX, Register::RDX),
                };
                let (a, d) = acc(size);
                if into_dx {
                    let v = self.reg(a);
                    let v = self.sext(v, size);
                    let sign = self.b.ins().sshr_imm_s(v, 63);
                    self.set_reg(d, sign);
                } else {
                    let half = self.reg(a);
                    let v = self.sext(half, size / 2);
                    self.set_reg(a, v);
                }
            }
            Native::BitTest { op, size } => {
                let (d, s) = (opnd(insn, 0, bitness).expect("classified"), opnd(insn, 1, bitness).expect("classified"));
                self.bit_test(i, insn, op, size, d, s);
            }
            Native::Cmov { size } => {
                // The source is read (and may fault) whatever the condition; a 32-bit
                // destination is zero-extended even when nothing moves (SDM, CMOVcc).
                let s = self.read_opnd(i, insn, opnd(insn, 1, bitness).expect("classified"), size);
                let c = self.condition(insn.condition_code());
                let d = self.reg(insn.op0_register());
                let v = self.b.ins().select(c, s, d);
                self.set_reg(insn.op0_register(), v);
            }
        }
        false
    }

    /// The value of a source operand, masked to `size`.
    pub(super) fn read_opnd(&mut self, i: usize, insn: &Instruction, o: Opnd, size: u8) -> Value {
        match o {
            Opnd::Reg(r, _) => self.reg(r),
            Opnd::Imm(v) => self.iconst(v & mask_of(size)),
            Opnd::Mem(_) => {
                let lin = self.operand_linear(insn);
                let host = self.probe(i, lin, size, Access::Read);
                self.load_guest(host, size)
            }
        }
    }

    fn write_opnd(&mut self, i: usize, insn: &Instruction, o: Opnd, size: u8, v: Value) {
        match o {
            Opnd::Reg(r, _) => self.set_reg(r, v),
            Opnd::Mem(_) => {
                let lin = self.operand_linear(insn);
                let host = self.probe(i, lin, size, Access::Write);
                self.store_guest(host, size, v);
            }
            Opnd::Imm(_) => unreachable!("classified: no immediate destination"),
        }
    }

    /// Reads a destination for read-modify-write, probing memory for both accesses (or
    /// only reading, when `writes` is false). Returns the value and the host address.
    pub(super) fn read_dst(&mut self, i: usize, insn: &Instruction, o: Opnd, size: u8, writes: bool) -> (Value, Option<Value>) {
        match o {
            Opnd::Mem(_) => {
                let lin = self.operand_linear(insn);
                let host = self.probe(i, lin, size, if writes { Access::Update } else { Access::Read });
                (self.load_guest(host, size), Some(host))
            }
            _ => (self.read_opnd(i, insn, o, size), None),
        }
    }

    pub(super) fn write_dst(&mut self, o: Opnd, host: Option<Value>, size: u8, v: Value) {
        match (o, host) {
            (Opnd::Reg(r, _), _) => self.set_reg(r, v),
            (Opnd::Mem(_), Some(h)) => self.store_guest(h, size, v),
            _ => unreachable!("classified"),
        }
    }

    fn alu(&mut self, i: usize, insn: &Instruction, op: AluOp, size: u8) {
        let bitness = self.spec.bitness;
        let writes = !matches!(op, AluOp::Cmp | AluOp::Test);
        let (d_op, s_op) = (opnd(insn, 0, bitness).expect("classified"), opnd(insn, 1, bitness).expect("classified"));
        // ADC/SBB take CF as it stands before their own operands are read.
        let carry = matches!(op, AluOp::Adc | AluOp::Sbb).then(|| self.carry_flag());
        let s = self.read_opnd(i, insn, s_op, size);
        let (d, host) = self.read_dst(i, insn, d_op, size, writes);
        let res = match op {
            AluOp::Add => self.b.ins().iadd(d, s),
            AluOp::Adc => {
                let sum = self.b.ins().iadd(d, s);
                self.b.ins().iadd(sum, carry.expect("ADC"))
            }
            AluOp::Sub | AluOp::Cmp => self.b.ins().isub(d, s),
            AluOp::Sbb => {
                let diff = self.b.ins().isub(d, s);
                self.b.ins().isub(diff, carry.expect("SBB"))
            }
            AluOp::And | AluOp::Test => self.b.ins().band(d, s),
            AluOp::Or => self.b.ins().bor(d, s),
            AluOp::Xor => self.b.ins().bxor(d, s),
        };
        let res = self.mask(res, size);
        if writes {
            self.write_dst(d_op, host, size, res);
        }
        let ops = self.l.cc_ops;
        let cc = match op {
            AluOp::Add | AluOp::Adc => ops.add,
            AluOp::Sub | AluOp::Sbb | AluOp::Cmp => ops.sub,
            _ => ops.logic,
        };
        self.set_flags(cc, size, d, s, res, carry);
    }

    /// The product of two `size`-byte operands as IMUL truncates it (masked), and whether
    /// the full signed product did not fit (CF = OF), as a 0/1 `i64`.
    fn signed_product(&mut self, a: Value, b: Value, size: u8) -> (Value, Value) {
        let (sa, sb) = (self.sext(a, size), self.sext(b, size));
        let lo = self.b.ins().imul(sa, sb);
        let overflow = if size == 8 {
            // The high half must be the low half's sign.
            let hi = self.b.ins().smulhi(sa, sb);
            let sign = self.b.ins().sshr_imm_s(lo, 63);
            self.b.ins().icmp(IntCC::NotEqual, hi, sign)
        } else {
            // 16 and 32-bit products are exact in 64 bits.
            let fits = self.sext(lo, size);
            self.b.ins().icmp(IntCC::NotEqual, fits, lo)
        };
        let overflow = self.b.ins().uextend(cranelift_codegen::ir::types::I64, overflow);
        (self.mask(lo, size), overflow)
    }

    /// CF and OF of ROL or ROR (by a non-zero count) of `dst` to `res`, both masked to `size`,
    /// as the interpreter computes them: CF the bit that went round, OF from the operand's
    /// top bits for any count (undefined beyond 1 in the SDM). The other flags stay.
    fn rotate_flags(&mut self, op: ShiftOp, size: u8, dst: Value, res: Value) {
        const CF: i64 = 1;
        const OF_BIT: i64 = 11;
        let bits = size as i64 * 8;
        let top = self.b.ins().ushr_imm_s(dst, bits - 1);
        let (cf, other) = if op == ShiftOp::Rol {
            (self.b.ins().band_imm_s(res, 1), self.b.ins().ushr_imm_s(dst, bits - 2))
        } else {
            (self.b.ins().ushr_imm_s(res, bits - 1), dst)
        };
        let of = self.b.ins().bxor(top, other);
        let of = self.b.ins().band_imm_s(of, 1);
        let of = self.b.ins().ishl_imm_s(of, OF_BIT);
        self.materialize_flags();
        let rflags = self.load_state(cranelift_codegen::ir::types::I64, self.l.rflags);
        let kept = self.b.ins().band_imm_s(rflags, !(CF | 1 << OF_BIT));
        let rflags = self.b.ins().bor(kept, cf);
        let rflags = self.b.ins().bor(rflags, of);
        self.store_state(rflags, self.l.rflags);
    }

    /// `v` (masked to `size`) shifted or rotated by `count` (a constant or CL, already masked
    /// to 5 or 6 bits, possibly 0), masked to `size`.
    fn shift_by(&mut self, v: Value, op: ShiftOp, size: u8, count: Value) -> Value {
        // A rotate by any count is one host rotate of the operand's width (host rotates take
        // the count modulo the width, as rotating does); 32 and 64-bit shift counts are masked
        // below the width, so host shifts of that width do.
        if matches!(op, ShiftOp::Rol | ShiftOp::Ror) || size >= 4 {
            let n = self.narrow(v, size);
            let r = match op {
                ShiftOp::Rol => self.b.ins().rotl(n, count),
                ShiftOp::Ror => self.b.ins().rotr(n, count),
                ShiftOp::Shl => self.b.ins().ishl(n, count),
                ShiftOp::Shr => self.b.ins().ushr(n, count),
                ShiftOp::Sar => self.b.ins().sshr(n, count),
            };
            return self.widen(r, size);
        }
        // Counts past an 8- or 16-bit width shift every bit out of the masked value.
        let res = match op {
            ShiftOp::Shl => self.b.ins().ishl(v, count),
            ShiftOp::Shr => self.b.ins().ushr(v, count),
            _ => {
                let s = self.sext(v, size);
                self.b.ins().sshr(s, count)
            }
        };
        self.mask(res, size)
    }

    /// PUSH of a 64-bit value in 64-bit mode (SS has no base there).
    pub(super) fn push(&mut self, i: usize, v: Value) {
        let rsp = self.reg(Register::RSP);
        let down = self.b.ins().iadd_imm_s(rsp, -8);
        let host = self.probe(i, down, 8, Access::Write);
        self.store_guest(host, 8, v);
        self.set_reg(Register::RSP, down);
    }

    /// Pops the quadword at `sp` (the stack pointer to be): RSP becomes `sp` + 8.
    fn pop_from(&mut self, i: usize, sp: Value) -> Value {
        let host = self.probe(i, sp, 8, Access::Read);
        let v = self.load_guest(host, 8);
        let up = self.b.ins().iadd_imm_s(sp, 8);
        self.set_reg(Register::RSP, up);
        v
    }

    /// A non-canonical branch target goes to the interpreter, which raises the #GP.
    fn guard_canonical(&mut self, i: usize, t: Value) {
        let up = self.b.ins().ishl_imm_s(t, 16);
        let back = self.b.ins().sshr_imm_s(up, 16);
        let ok = self.b.ins().icmp(IntCC::Equal, back, t);
        self.guard(i, ok);
    }
}
