//! Far control transfers: JMP/CALL ptr16:16/32 and m16:16/32/64, RETF, IRET/IRETD/IRETQ
//! (SDM Vol. 2 JMP, CALL, RET, IRET; Vol. 3 chapter 5 for call gates and privilege checks).
//! Transfers to a TSS or task gate and IRET with NT = 1 switch tasks (`task.rs`).
//!
//! Every handler here ends the decoded block: CS, and with it the code size, CPL or mode,
//! may change.

mod gate;
mod iret;
mod ret;

use super::control::is_far;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::Access;
use crate::segment::{is_canonical, sel_code, sys_type, Descriptor};
use crate::state::{reg::RSP, seg_attr::*, Seg, Segment};
use crate::task::{TaskSource, V86_ATTRS};
use crate::Cpu;
use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Jmp if is_far(insn) => jmp_far,
        Mnemonic::Call if is_far(insn) => call_far,
        Mnemonic::Retf => ret::retf,
        Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq => iret::iret,
        _ => return None,
    })
}

/// A far pointer operand: selector, offset and operand size in bytes (2, 4 or 8).
struct FarPtr {
    sel: u16,
    offset: u64,
    size: u8,
}

/// The target of a far JMP/CALL: an immediate ptr16:16/ptr16:32, or m16:16/m16:32/m16:64
/// read offset first, selector after it.
fn far_target(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<FarPtr> {
    match insn.op0_kind() {
        OpKind::FarBranch16 => {
            Ok(FarPtr { sel: insn.far_branch_selector(), offset: insn.far_branch16() as u64, size: 2 })
        }
        OpKind::FarBranch32 => {
            Ok(FarPtr { sel: insn.far_branch_selector(), offset: insn.far_branch32() as u64, size: 4 })
        }
        _ => {
            let size: u8 = match insn.memory_size() {
                MemorySize::SegPtr16 => 2,
                MemorySize::SegPtr32 => 4,
                _ => 8,
            };
            let seg = cpu.memory_segment(insn);
            let off = cpu.effective_address(insn);
            let offset = cpu.read_mem(bus, seg, off, size)?;
            let sel = cpu.read_mem(bus, seg, off.wrapping_add(size as u64), 2)? as u16;
            Ok(FarPtr { sel, offset, size })
        }
    }
}

/// Mask of an instruction pointer of `size` bytes.
fn ip_mask(size: u8) -> u64 {
    match size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => !0,
    }
}

fn jmp_far(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let t = far_target(cpu, bus, insn)?;
    cpu.end_block = true;
    if !cpu.state.protected() || cpu.state.v86() {
        let eip = t.offset & ip_mask(t.size);
        if eip > cpu.state.seg(Seg::Cs).limit as u64 {
            return Err(Fault::gp0());
        }
        cpu.load_cs_real(t.sel);
        cpu.next_rip = eip;
        return Ok(());
    }
    cpu.far_protected(bus, t, false)
}

fn call_far(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let t = far_target(cpu, bus, insn)?;
    cpu.end_block = true;
    if !cpu.state.protected() || cpu.state.v86() {
        cpu.check_stack_room(2, t.size)?;
        let eip = t.offset & ip_mask(t.size);
        if eip > cpu.state.seg(Seg::Cs).limit as u64 {
            return Err(Fault::gp0());
        }
        let cs = cpu.state.seg(Seg::Cs).selector as u64;
        let ret = cpu.next_rip;
        cpu.push_all(bus, t.size, &[cs, ret])?;
        cpu.load_cs_real(t.sel);
        cpu.next_rip = eip;
        return Ok(());
    }
    cpu.far_protected(bus, t, true)
}

impl Cpu {
    /// A CS load in real or virtual-8086 mode: base = selector << 4. Real mode keeps the
    /// cached limit and attributes; virtual-8086 mode CS is always a 64 KiB DPL-3 segment.
    fn load_cs_real(&mut self, sel: u16) {
        let v86 = self.state.v86();
        let cs = self.state.seg_mut(Seg::Cs);
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        if v86 {
            cs.limit = 0xffff;
            cs.attrs = V86_ATTRS;
        }
    }

    /// Loads CS from a checked code-segment descriptor with RPL = `cpl`, and the accessed
    /// bit set as the descriptor in memory has it.
    fn load_cs(&mut self, sel: u16, desc: Descriptor, cpl: u8) {
        let mut s = desc.to_segment((sel & !3) | cpl as u16);
        s.attrs |= TYPE_ACCESSED;
        self.state.seg[Seg::Cs as usize] = s;
    }

    /// Pushes several values on the current stack; on a fault rSP is restored (what was
    /// written below the stack pointer is not architecturally visible state).
    fn push_all(&mut self, bus: &mut dyn CpuBus, size: u8, values: &[u64]) -> Result<()> {
        let saved = self.state.gpr[RSP];
        for &v in values {
            if let Err(e) = self.push(bus, size, v) {
                self.state.gpr[RSP] = saved;
                return Err(e);
            }
        }
        Ok(())
    }

    /// #SS(0) unless `count` pushes of `size` bytes fit in the current stack segment (the
    /// "stack not large enough" checks that precede the #GP checks of the target).
    fn check_stack_room(&self, count: u64, size: u8) -> Result<()> {
        let mask = self.sp_mask();
        let sp = self.state.gpr[RSP];
        for i in 1..=count {
            self.linear(Seg::Ss, sp.wrapping_sub(i * size as u64) & mask, size, Access::Write)?;
        }
        Ok(())
    }

    /// Checks a new instruction pointer against the code segment being loaded: the limit,
    /// or canonical form when the target runs in 64-bit mode. #GP(`code`) otherwise.
    fn check_target_ip(&self, ip: u64, desc: &Descriptor, code: u32) -> Result<()> {
        let ok = if self.targets_64bit(desc) { is_canonical(ip) } else { ip <= desc.limit() as u64 };
        if ok {
            Ok(())
        } else {
            Err(Fault::gp(code))
        }
    }

    /// Whether loading this code segment enters 64-bit mode (long mode with CS.L = 1).
    fn targets_64bit(&self, desc: &Descriptor) -> bool {
        self.state.long_mode_active() && desc.attrs() & L != 0
    }

    /// Protected-mode (and IA-32e) far JMP/CALL: dispatches on the descriptor type.
    fn far_protected(&mut self, bus: &mut dyn CpuBus, t: FarPtr, call: bool) -> Result<()> {
        if t.sel & 0xfffc == 0 {
            return Err(Fault::gp0());
        }
        let desc = self.read_descriptor(bus, t.sel, vector::GP)?;
        let long = self.state.long_mode_active();
        let a = desc.attrs();
        let bad = Fault::gp(sel_code(t.sel));
        if a & S != 0 {
            if a & TYPE_CODE == 0 {
                return Err(bad);
            }
            return self.far_to_code(bus, t, desc, call);
        }
        let ret = self.next_rip;
        let source = if call { TaskSource::Call } else { TaskSource::Jmp };
        match desc.typ() {
            sys_type::CALL_GATE => self.far_via_call_gate(bus, t, desc, call),
            sys_type::CALL_GATE16 if !long => self.far_via_call_gate(bus, t, desc, call),
            sys_type::TASK_GATE if !long => self.task_gate_transfer(bus, t.sel, desc, source, ret),
            sys_type::TSS_AVAIL | sys_type::TSS16_AVAIL if !long => self.tss_transfer(bus, t.sel, desc, source, ret),
            _ => Err(bad),
        }
    }
}

/// The selector checks of a far return (RETF/IRET) to protected or compatibility/64-bit
/// mode code: returns the checked descriptor. Faults: #GP(0) null, #GP(sel) outside the
/// table, not code, L = D = 1 in long mode, RPL < CPL, conforming with DPL > RPL,
/// non-conforming with DPL != RPL; #NP(sel) not present.
fn check_return_cs(cpu: &mut Cpu, bus: &mut dyn CpuBus, sel: u16) -> Result<Descriptor> {
    if sel & 0xfffc == 0 {
        return Err(Fault::gp0());
    }
    let desc = cpu.read_descriptor(bus, sel, vector::GP)?;
    let a = desc.attrs();
    let rpl = (sel & 3) as u8;
    let bad = Err(Fault::gp(sel_code(sel)));
    if a & S == 0 || a & TYPE_CODE == 0 {
        return bad;
    }
    if cpu.state.long_mode_active() && a & L != 0 && a & DB != 0 {
        return bad;
    }
    if rpl < cpu.state.cpl() {
        return bad;
    }
    let conforming = a & TYPE_EXPAND_DOWN != 0;
    if (conforming && desc.dpl() > rpl) || (!conforming && desc.dpl() != rpl) {
        return bad;
    }
    if !desc.present() {
        return Err(Fault::np(sel_code(sel)));
    }
    Ok(desc)
}

/// The stack segment popped by a return to an outer level (or by IRET in 64-bit mode):
/// RPL and DPL must equal the return CS's RPL, and it must be writable data; #GP(sel)
/// otherwise and #SS(sel) if not present (the SDM's IRET page lists #NP for the latter; every
/// other SS load, RETF included, raises #SS, which is what this follows). A null selector
/// is allowed only when returning to 64-bit mode at CPL < 3 (IRET also wants its RPL to
/// equal the new CPL, RETF does not); it becomes an unusable SS with DPL = the new CPL.
fn check_return_ss(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    ss_sel: u16,
    cs_rpl: u8,
    target64: bool,
    null_rpl_checked: bool,
) -> Result<Segment> {
    let ss_rpl = (ss_sel & 3) as u8;
    if ss_sel & 0xfffc == 0 {
        if target64 && cs_rpl != 3 && (!null_rpl_checked || ss_rpl == cs_rpl) {
            return Ok(Segment {
                selector: ss_sel,
                attrs: UNUSABLE | ((cs_rpl as u32) << DPL_SHIFT),
                limit: 0,
                base: 0,
            });
        }
        return Err(Fault::gp(sel_code(ss_sel)));
    }
    let desc = cpu.read_descriptor(bus, ss_sel, vector::GP)?;
    let a = desc.attrs();
    let writable_data = a & S != 0 && a & TYPE_CODE == 0 && a & TYPE_WRITABLE != 0;
    if ss_rpl != cs_rpl || !writable_data || desc.dpl() != cs_rpl {
        return Err(Fault::gp(sel_code(ss_sel)));
    }
    if !desc.present() {
        return Err(Fault::ss(sel_code(ss_sel)));
    }
    cpu.set_descriptor_accessed(bus, ss_sel, desc)?;
    let mut s = desc.to_segment(ss_sel);
    s.attrs |= TYPE_ACCESSED;
    Ok(s)
}

impl Cpu {
    /// rSP after a stack switch to `ss` by RETF/IRET: `value` plus `imm`, at the new stack's
    /// width. A 16-bit stack segment takes only SP; bits 16 and up keep what rSP held when
    /// the instruction started (hardware behaviour behind Linux's "espfix").
    fn set_return_sp(&mut self, orig_rsp: u64, value: u64, imm: u64, ss: &Segment, target64: bool) {
        let v = value.wrapping_add(imm);
        self.state.gpr[RSP] = if target64 {
            v
        } else if ss.default_big() {
            v & 0xffff_ffff
        } else {
            (orig_rsp & !0xffff) | (v & 0xffff)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_masks() {
        assert_eq!(ip_mask(2), 0xffff);
        assert_eq!(ip_mask(4), 0xffff_ffff);
        assert_eq!(ip_mask(8), !0);
    }
}
