//! Guest memory in generated code: effective addresses and the inline soft-TLB probe.

use super::Emit;
use crate::operand::address_mask;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use super::ops::Native;
use iced_x86::{Instruction, OpKind, Register};

/// The kind of access a probe clears.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
    /// Read-modify-write: both tags must match.
    Update,
}

/// Guest memory may be unaligned; a TLB hit means it is mapped.
fn guest_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// RFLAGS.AC (bit 18) selects the supervisor context that SMAP lets through.
const AC_SHIFT: i64 = 18;

impl Emit<'_, '_> {
    /// The offset of the explicit memory operand, wrapped at the address size.
    pub fn effective_address(&mut self, insn: &Instruction) -> Value {
        self.effective_address_plus(insn, None)
    }

    /// The offset of the explicit memory operand moved by `extra` bytes, wrapped at the
    /// address size.
    pub fn effective_address_plus(&mut self, insn: &Instruction, extra: Option<Value>) -> Value {
        // Terms that are there only: compile time scales with the IR built.
        let mut off = extra;
        let base = insn.memory_base();
        if !matches!(base, Register::None | Register::RIP | Register::EIP) {
            let v = self.reg(base);
            off = Some(self.sum(off, v));
        }
        let index = insn.memory_index();
        if index != Register::None {
            let v = self.reg(index);
            let v = self.b.ins().ishl_imm_s(v, insn.memory_index_scale().trailing_zeros() as i64);
            off = Some(self.sum(off, v));
        }
        let disp = insn.memory_displacement64();
        let off = match off {
            None => self.iconst(disp),
            Some(o) if disp == 0 => o,
            Some(o) => self.b.ins().iadd_imm_s(o, disp as i64),
        };
        match address_mask(insn) {
            u64::MAX => off,
            0xffff_ffff => self.mask(off, 4),
            m => self.b.ins().band_imm_s(off, m as i64),
        }
    }

    /// `acc + v`, or `v` alone.
    fn sum(&mut self, acc: Option<Value>, v: Value) -> Value {
        match acc {
            Some(a) => self.b.ins().iadd(a, v),
            None => v,
        }
    }

    /// The linear address of the explicit memory operand (64-bit mode: only FS and GS have
    /// a base).
    pub fn operand_linear(&mut self, insn: &Instruction) -> Value {
        self.operand_linear_plus(insn, None)
    }

    /// As `operand_linear`, for the operand moved by `extra` bytes (see
    /// `effective_address_plus`).
    pub fn operand_linear_plus(&mut self, insn: &Instruction, extra: Option<Value>) -> Value {
        let off = self.effective_address_plus(insn, extra);
        let seg = match insn.memory_segment() {
            Register::FS => 4,
            Register::GS => 5,
            _ => return off,
        };
        let base = self.load_state(types::I64, self.l.seg_base[seg]);
        self.b.ins().iadd(off, base)
    }

    /// Host address of `size` bytes at linear `lin` if the soft TLB lets the access through
    /// on plain RAM, after the TLB fill helper on a miss; otherwise instruction `i` goes to
    /// the interpreter (see `guard`).
    pub fn probe(&mut self, i: usize, lin: Value, size: u8, access: Access) -> Value {
        let host = match self.grouped(i, lin, size, access) {
            Some(host) => host,
            None => self.probe_range(i, lin, size, access),
        };
        // The access writes guest memory next (the probe's own side exit comes before).
        self.effects |= access != Access::Read;
        host
    }

    /// The host address of instruction `i`'s access if it is one of a group (see
    /// `ProbeGroup`): the group's first access probes the group's whole span, the others
    /// add their offset to the host address it found.
    fn grouped(&mut self, i: usize, lin: Value, size: u8, access: Access) -> Option<Value> {
        let slot = self.probe_groups.get(i).copied().flatten()?;
        if slot.access != access || size > slot.size {
            return None;
        }
        if slot.leader == i {
            let low = self.b.ins().iadd_imm_s(lin, -slot.offset);
            let host_low = self.probe_range(i, low, slot.span, access);
            self.probe_group = Some((i, host_low));
        }
        let (_, host_low) = self.probe_group.filter(|&(leader, _)| leader == slot.leader)?;
        Some(self.b.ins().iadd_imm_s(host_low, slot.offset))
    }

    /// The probe itself (see `probe`).
    fn probe_range(&mut self, i: usize, lin: Value, size: u8, access: Access) -> Value {
        let l = self.l;
        let ctx_base = self.tlb_context();
        let offset = self.tlb_slot_offset(lin);
        let entry = self.b.ins().iadd(ctx_base, offset);
        // The page of the access's last byte: it matches the tag of the first byte's slot
        // only if both bytes are on that page (a tag in slot k is a page whose number is k
        // modulo the slots), so one compare also rules out page-crossing accesses.
        let last = if size > 1 { self.b.ins().iadd_imm_s(lin, size as i64 - 1) } else { lin };
        let page = self.b.ins().band_imm_s(last, !0xfff);
        let tag_ok = |e: &mut Self, off: i32| {
            let tag = e.b.ins().load(types::I64, super::state_flags(), entry, off);
            e.b.ins().icmp(IntCC::Equal, tag, page)
        };
        let ok = match access {
            Access::Read => tag_ok(self, l.tlb_read),
            Access::Write => tag_ok(self, l.tlb_write),
            Access::Update => {
                let r = tag_ok(self, l.tlb_read);
                let w = tag_ok(self, l.tlb_write);
                self.b.ins().band(r, w)
            }
        };
        let (hit, miss, exit) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(ok, hit, &[], miss, &[]);
        // A miss: the helper fills the TLB, reading no guest register and clobbering no
        // host one, so the path joins the hit's with nothing stored, where the tags now
        // match.
        self.b.set_cold_block(miss);
        self.b.switch_to_block(miss);
        let request = crate::layout::fill_request(size, access != Access::Write, access != Access::Read);
        let request = self.iconst(request);
        let stub = self.load_frame(l.frame.fill_stub);
        self.b.ins().call_indirect(self.fill_sig, stub, &[self.cpu, self.frame, lin, request]);
        let filled = self.load_frame(l.frame.fill_ok);
        self.b.ins().brif(filled, hit, &[], exit, &[]);
        self.side_exit(i, exit);
        self.b.switch_to_block(hit);
        let addend = self.b.ins().load(types::I64, super::state_flags(), entry, l.tlb_addend);
        self.b.ins().iadd(addend, lin)
    }

    /// The offset of linear address `lin`'s slot in a table of the soft TLB.
    pub(super) fn tlb_slot_offset(&mut self, lin: Value) -> Value {
        let l = self.l;
        let entry_size = l.tlb_entry_size as i64;
        if entry_size.count_ones() == 1 {
            // (lin >> 12 & slots - 1) * entry_size in two operations.
            let shift = 12 - entry_size.trailing_zeros() as i64;
            let scaled = self.b.ins().ushr_imm_s(lin, shift);
            self.b.ins().band_imm_s(scaled, ((1i64 << l.tlb_bits) - 1) * entry_size)
        } else {
            let slot = self.b.ins().ushr_imm_s(lin, 12);
            let slot = self.b.ins().band_imm_s(slot, (1i64 << l.tlb_bits) - 1);
            self.b.ins().imul_imm_s(slot, entry_size)
        }
    }

    /// The soft TLB's table for this block's privilege context (supervisor code: the one
    /// RFLAGS.AC selects), computed once until the interpreter runs an instruction (which may
    /// change AC).
    fn tlb_context(&mut self) -> Value {
        if !self.tlb_context_known {
            let v = self.compute_tlb_context();
            self.b.def_var(self.tlb_context_var, v);
            self.tlb_context_known = true;
        }
        self.b.use_var(self.tlb_context_var)
    }

    pub(super) fn compute_tlb_context(&mut self) -> Value {
        let l = self.l;
        let tlb = self.load_state(types::I64, l.tlb);
        let ctx_bytes = (l.tlb_entry_size as i64) << l.tlb_bits;
        if self.spec.user {
            self.b.ins().iadd_imm_s(tlb, l.ctx_user as i64 * ctx_bytes)
        } else {
            // Context `ctx_supervisor + AC`, AC's offset in two operations where a context's
            // size is a power of two: AC's bit moved to the size's.
            let rflags = self.load_state(types::I64, l.rflags);
            let size_shift = ctx_bytes.trailing_zeros() as i64;
            let ac_off = if ctx_bytes.count_ones() == 1 && size_shift != AC_SHIFT {
                let ac = self.b.ins().band_imm_s(rflags, 1 << AC_SHIFT);
                if size_shift > AC_SHIFT {
                    self.b.ins().ishl_imm_s(ac, size_shift - AC_SHIFT)
                } else {
                    self.b.ins().ushr_imm_s(ac, AC_SHIFT - size_shift)
                }
            } else {
                let ac = self.b.ins().ushr_imm_s(rflags, AC_SHIFT);
                let ac = self.b.ins().band_imm_s(ac, 1);
                self.b.ins().imul_imm_s(ac, ctx_bytes)
            };
            let base = match l.ctx_supervisor as i64 * ctx_bytes {
                0 => tlb,
                k => self.b.ins().iadd_imm_s(tlb, k),
            };
            self.b.ins().iadd(base, ac_off)
        }
    }

    /// Loads `size` bytes (zero-extended) from a host address `probe` returned.
    pub fn load_guest(&mut self, host: Value, size: u8) -> Value {
        let f = guest_flags();
        match size {
            1 => self.b.ins().uload8(types::I64, f, host, 0),
            2 => self.b.ins().uload16(types::I64, f, host, 0),
            4 => self.b.ins().uload32(f, host, 0),
            _ => self.b.ins().load(types::I64, f, host, 0),
        }
    }

    pub fn store_guest(&mut self, host: Value, size: u8, v: Value) {
        let f = guest_flags();
        match size {
            1 => self.b.ins().istore8(f, v, host, 0),
            2 => self.b.ins().istore16(f, v, host, 0),
            4 => self.b.ins().istore32(f, v, host, 0),
            _ => self.b.ins().store(f, v, host, 0),
        };
    }

}

/// An access of a probe group, whose first access probes the whole span of the group: one
/// page lets every access through (none can fault), otherwise the block leaves before the
/// first, which the interpreter then runs. Groups are
/// - runs of consecutive PUSHes of a register or an immediate, or of POPs;
/// - explicit memory operands of the same kind relative to one base register that no
///   instruction between them writes. Nothing between them may change how memory translates
///   (the interpreter, system instructions such as STAC/CLAC, branches): such a group spans
///   plain integer instructions only.
/// Either way the span is at most 255 bytes (the probe's size is a byte).
#[derive(Clone, Copy)]
pub(super) struct ProbeGroup {
    /// The instruction whose access probes for the group.
    pub leader: usize,
    /// This access's distance from the group's lowest byte.
    pub offset: i64,
    /// The group's bytes, from its lowest to the end of its highest access.
    pub span: u8,
    pub access: Access,
    /// This access's size.
    pub size: u8,
}

/// The explicit memory access of an instruction a group may hold: MOV, MOVZX/MOVSX, an ALU
/// operation or INC/DEC with one memory operand at a 64-bit base register plus a
/// displacement (no index, no FS/GS base).
fn group_access(insn: &Instruction, plan: &Option<Native>) -> Option<(Register, i64, u8, Access)> {
    use iced_x86::OpAccess;
    if !matches!(plan, Some(Native::Mov { .. } | Native::MovExt { .. } | Native::Alu { .. } | Native::IncDec { .. })) {
        return None;
    }
    let base = insn.memory_base();
    let size = insn.memory_size().size();
    let memory_operands = (0..insn.op_count()).filter(|&k| insn.op_kind(k) == OpKind::Memory).count();
    if memory_operands != 1
        || !base.is_gpr64()
        || insn.memory_index() != Register::None
        || matches!(insn.memory_segment(), Register::FS | Register::GS)
        || !(1..=8).contains(&size)
    {
        return None;
    }
    let mut factory = iced_x86::InstructionInfoFactory::new();
    let access = match factory.info(insn).used_memory().first()?.access() {
        OpAccess::Read => Access::Read,
        OpAccess::Write => Access::Write,
        OpAccess::ReadWrite => Access::Update,
        _ => return None,
    };
    Some((base, insn.memory_displacement64() as i64, size as u8, access))
}

/// Whether an instruction may stand between two accesses of a group (it neither branches nor
/// runs in the interpreter nor changes privileges or translations).
fn plain(plan: &Option<Native>) -> bool {
    matches!(
        plan,
        Some(
            Native::Nop
                | Native::Mov { .. }
                | Native::MovExt { .. }
                | Native::Lea
                | Native::Alu { .. }
                | Native::IncDec { .. }
                | Native::Push
                | Native::Pop
                | Native::Setcc
                | Native::Cmov { .. }
                | Native::Shift { .. }
                | Native::ShiftCl { .. }
                | Native::Imul { .. }
                | Native::Unary { .. }
                | Native::Bswap { .. }
                | Native::SignExtendAcc { .. }
        )
    )
}

/// Per instruction, its place in a probe group of two or more accesses (see `ProbeGroup`).
pub(super) fn probe_groups(insns: &[Instruction], plan: &[Option<Native>]) -> Vec<Option<ProbeGroup>> {
    let mut groups = vec![None; insns.len()];
    stack_runs(insns, plan, &mut groups);
    base_groups(insns, plan, &mut groups);
    groups
}

/// The runs of PUSHes (of a register or an immediate) or POPs: PUSH k of n writes 8(n-1-k)
/// bytes above the run's lowest byte, POP k reads 8k above it.
fn stack_runs(insns: &[Instruction], plan: &[Option<Native>], groups: &mut [Option<ProbeGroup>]) {
    let kind = |i: usize| match plan[i] {
        Some(Native::Push) if matches!(insns[i].op0_kind(), OpKind::Register | OpKind::Immediate8to64 | OpKind::Immediate32to64) => Some(Access::Write),
        Some(Native::Pop) => Some(Access::Read),
        _ => None,
    };
    let mut i = 0;
    while i < insns.len() {
        let Some(access) = kind(i) else {
            i += 1;
            continue;
        };
        let mut n = 1;
        while i + n < insns.len() && n < 31 && kind(i + n) == Some(access) {
            n += 1;
        }
        if n >= 2 {
            for k in 0..n {
                let offset = if access == Access::Write { 8 * (n - 1 - k) } else { 8 * k } as i64;
                groups[i + k] = Some(ProbeGroup { leader: i, offset, span: 8 * n as u8, access, size: 8 });
            }
        }
        i += n;
    }
}

/// The groups of explicit operands at one base register (see `group_access` and `plain`).
fn base_groups(insns: &[Instruction], plan: &[Option<Native>], groups: &mut [Option<ProbeGroup>]) {
    let accesses: Vec<_> = insns.iter().zip(plan).map(|(insn, p)| group_access(insn, p)).collect();
    let written: Vec<u16> = insns.iter().map(super::written_gprs).collect();
    for lead in 0..insns.len() {
        let Some((base, disp, size, access)) = accesses[lead] else { continue };
        if groups[lead].is_some() {
            continue;
        }
        let base_bit = 1u16 << crate::operand::gpr_slot(base).expect("a GPR").0;
        let (mut low, mut high) = (disp, disp + size as i64);
        let mut members = vec![(lead, disp, size)];
        let mut j = lead;
        while written[j] & base_bit == 0 && j + 1 < insns.len() && plain(&plan[j + 1]) {
            j += 1;
            if let Some((b, d, s, a)) = accesses[j] {
                let (l, h) = (low.min(d), high.max(d + s as i64));
                if b == base && a == access && h - l <= u8::MAX as i64 && groups[j].is_none() {
                    (low, high) = (l, h);
                    members.push((j, d, s));
                }
            }
        }
        if members.len() >= 2 {
            for (k, d, s) in members {
                groups[k] = Some(ProbeGroup { leader: lead, offset: d - low, span: (high - low) as u8, access, size: s });
            }
        }
    }
}
