//! Event delivery: exceptions, software interrupts, NMIs and external interrupts through the
//! real-mode IVT, protected-mode gates and long-mode gates (SDM Vol. 3, chapter 6), with the
//! double-fault and shutdown rules of Table 6-5.

use crate::bus::CpuBus;
use crate::exception::{fault_class, vector, Fault, FaultClass, Result};
use crate::exec::EventKind;
use crate::mmu::Ctx;
use crate::segment::{sel_code, sys_type, Descriptor};
use crate::stack::PendingStack;
use crate::state::{flags, reg::RSP, seg_attr::*, Seg, Segment};
use crate::Cpu;

impl Cpu {
    /// Delivers an event whose return address is the current RIP (faults, external
    /// interrupts). `Err` only for a triple fault.
    pub(crate) fn deliver_event(&mut self, bus: &mut dyn CpuBus, vector: u8, error: Option<u32>, kind: EventKind) -> Result<()> {
        let rip = self.state.rip;
        self.deliver_event_at(bus, vector, error, kind, rip)
    }

    /// Delivers an event returning to `ret_rip` (INT n returns past itself). A fault raised
    /// while delivering is itself delivered (or escalated to #DF / shutdown) with the current
    /// instruction's RIP as its return address.
    pub(crate) fn deliver_event_at(
        &mut self,
        bus: &mut dyn CpuBus,
        vector: u8,
        error: Option<u32>,
        kind: EventKind,
        ret_rip: u64,
    ) -> Result<()> {
        let (mut vec, mut err, mut kind, mut ret) = (vector, error, kind, ret_rip);
        // EXT bit of nested error codes: set when the event is not software-initiated.
        let mut ext = matches!(kind, EventKind::External | EventKind::Exception | EventKind::PrivilegedSoftware) as u32;
        if kind == EventKind::Exception && vector == vector::DB && self.state.dr[6] & (1 << 14) == 0 {
            ext = 1;
        }
        for _ in 0..4 {
            if self.log_interrupts {
                eprintln!(
                    "ferrite: {kind:?} vector {vec:#04x} error {} at {:04x}:{:#x} cpl {} cr2 {:#x}",
                    err.map_or("-".into(), |e| format!("{e:#x}")),
                    self.state.seg(Seg::Cs).selector,
                    self.state.rip,
                    self.state.cpl(),
                    self.state.cr2
                );
            }
            match self.deliver_once(bus, vec, err, kind, ret, ext) {
                Ok(()) => {
                    self.halted = false;
                    self.interrupt_shadow = false;
                    self.materialize_flags();
                    return Ok(());
                }
                Err(Fault::TripleFault) => return Err(Fault::TripleFault),
                Err(Fault::Exception { vector: v2, error_code: e2 }) => {
                    let first = if kind == EventKind::Exception { fault_class(vec) } else { FaultClass::Benign };
                    let second = fault_class(v2);
                    if first == FaultClass::DoubleFault {
                        return Err(Fault::TripleFault);
                    }
                    let double = (first == FaultClass::Contributory && second == FaultClass::Contributory)
                        || (first == FaultClass::PageFault && second != FaultClass::Benign);
                    if double {
                        (vec, err) = (vector::DF, Some(0));
                    } else {
                        (vec, err) = (v2, e2);
                    }
                    kind = EventKind::Exception;
                    ret = self.state.rip;
                    ext = 1;
                }
            }
        }
        Err(Fault::TripleFault)
    }

    fn deliver_once(&mut self, bus: &mut dyn CpuBus, vec: u8, err: Option<u32>, kind: EventKind, ret: u64, ext: u32) -> Result<()> {
        let mut fl = self.rflags();
        // Faults (not traps) save RF = 1 so the faulting instruction restarts without
        // re-triggering an instruction breakpoint (SDM Vol. 3, 17.3.1.1).
        if kind == EventKind::Exception && !matches!(vec, vector::DB | vector::BP | vector::OF) && self.state.protected() {
            fl |= flags::RF;
        }
        if !self.state.protected() {
            return self.deliver_real(bus, vec, ret, fl);
        }
        if self.state.long_mode_active() {
            self.deliver_long(bus, vec, err, kind, ret, ext, fl)
        } else {
            self.deliver_protected(bus, vec, err, kind, ret, ext, fl)
        }
    }

    fn deliver_real(&mut self, bus: &mut dyn CpuBus, vec: u8, ret: u64, fl: u64) -> Result<()> {
        let off = vec as u64 * 4;
        if off + 3 > self.state.idtr.limit as u64 {
            return Err(Fault::gp0());
        }
        let lin = self.state.idtr.base.wrapping_add(off) & 0xffff_ffff;
        let entry = self.read_lin(bus, lin, 4, Ctx::Supervisor)?;
        let saved_sp = self.state.gpr[RSP];
        let cs = self.state.seg(Seg::Cs).selector as u64;
        let pushed = self
            .push(bus, 2, fl)
            .and_then(|_| self.push(bus, 2, cs))
            .and_then(|_| self.push(bus, 2, ret));
        if let Err(e) = pushed {
            self.state.gpr[RSP] = saved_sp;
            return Err(e);
        }
        let sel = (entry >> 16) as u16;
        let cs = self.state.seg_mut(Seg::Cs);
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        self.state.rip = entry & 0xffff;
        self.state.rflags &= !(flags::IF | flags::TF | flags::AC | flags::RF);
        Ok(())
    }

    /// Reads the gate for `vec`, with the IDT limit, type, DPL and present checks common to
    /// both gate formats. Returns (low qword, high qword or 0).
    fn read_gate(&mut self, bus: &mut dyn CpuBus, vec: u8, kind: EventKind, ext: u32, long: bool) -> Result<(u64, u64)> {
        let idt_err = vec as u32 * 8 + 2 + ext;
        let size = if long { 16 } else { 8 };
        let off = vec as u64 * size;
        if off + size - 1 > self.state.idtr.limit as u64 {
            return Err(Fault::gp(idt_err));
        }
        let base = self.state.idtr.base.wrapping_add(off) & self.lin_mask();
        let lo = self.read_lin(bus, base, 8, Ctx::Supervisor)?;
        let hi = if long { self.read_lin(bus, base + 8, 8, Ctx::Supervisor)? } else { 0 };
        let g = Descriptor(lo);
        let typ = g.typ();
        let valid = if long {
            g.is_system() && matches!(typ, sys_type::INT_GATE | sys_type::TRAP_GATE)
        } else {
            g.is_system()
                && matches!(
                    typ,
                    sys_type::TASK_GATE
                        | sys_type::INT_GATE16
                        | sys_type::TRAP_GATE16
                        | sys_type::INT_GATE
                        | sys_type::TRAP_GATE
                )
        };
        if !valid {
            return Err(Fault::gp(idt_err));
        }
        if kind == EventKind::Software && g.dpl() < self.state.cpl() {
            return Err(Fault::gp(vec as u32 * 8 + 2));
        }
        if !g.present() {
            return Err(Fault::np(idt_err));
        }
        Ok((lo, hi))
    }

    /// Checks the code segment a gate names; returns its descriptor.
    fn gate_target(&mut self, bus: &mut dyn CpuBus, sel: u16, ext: u32) -> Result<Descriptor> {
        if sel & 0xfffc == 0 {
            return Err(Fault::gp(ext));
        }
        let d = self
            .read_descriptor(bus, sel, vector::GP)
            .map_err(|f| add_ext(f, ext))?;
        let a = d.attrs();
        if a & S == 0 || a & TYPE_CODE == 0 || d.dpl() > self.state.cpl() {
            return Err(Fault::gp(sel_code(sel) + ext));
        }
        if !d.present() {
            return Err(Fault::np(sel_code(sel) + ext));
        }
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_protected(&mut self, bus: &mut dyn CpuBus, vec: u8, err: Option<u32>, kind: EventKind, ret: u64, ext: u32, fl: u64) -> Result<()> {
        let (lo, _) = self.read_gate(bus, vec, kind, ext, false)?;
        let gate = Descriptor(lo);
        let sel = (lo >> 16) as u16;
        if gate.typ() == sys_type::TASK_GATE {
            return self.task_switch_via_gate(bus, sel, ret, err, ext, fl);
        }
        let gate32 = gate.typ() & 8 != 0;
        let offset = if gate32 { (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) } else { lo & 0xffff };
        let target = self.gate_target(bus, sel, ext)?;
        let cpl = self.state.cpl();
        let conforming = target.typ() & TYPE_EXPAND_DOWN != 0;
        let v86 = self.state.v86();
        let new_cpl = if conforming { cpl } else { target.dpl() };
        let push_size = if gate32 { 4 } else { 2 };
        let mut cs_seg = target.to_segment((sel & !3) | new_cpl as u16);
        cs_seg.attrs |= TYPE_ACCESSED;
        if offset > cs_seg.limit as u64 {
            return Err(Fault::gp(ext));
        }
        let old_ss = self.state.seg(Seg::Ss).selector as u64;
        let old_sp = self.state.gpr[RSP];
        let old_cs = self.state.seg(Seg::Cs).selector as u64;
        let (mut stack, new_ss) = if new_cpl < cpl {
            if v86 && new_cpl != 0 {
                return Err(Fault::gp(sel_code(sel) + ext));
            }
            let (ss_sel, sp) = self.tss_stack(bus, new_cpl, ext)?;
            let ss = self.check_new_stack(bus, ss_sel, new_cpl, ext)?;
            let width = if ss.default_big() { 4 } else { 2 };
            (PendingStack { seg: ss, sp, width, error: sel_code(ss_sel) + ext, ctx: Ctx::Supervisor, long: false }, Some(ss))
        } else {
            if v86 {
                return Err(Fault::gp(sel_code(sel) + ext));
            }
            let ss = *self.state.seg(Seg::Ss);
            let width = if ss.default_big() { 4 } else { 2 };
            let ctx = if cpl == 3 { Ctx::User } else { Ctx::Supervisor };
            (PendingStack { seg: ss, sp: old_sp, width, error: ext, ctx, long: false }, None)
        };
        let start_sp = stack.sp;
        if new_ss.is_some() {
            if v86 {
                for s in [Seg::Gs, Seg::Fs, Seg::Ds, Seg::Es] {
                    let v = self.state.seg(s).selector as u64;
                    stack.push(self, bus, push_size, v)?;
                }
            }
            stack.push(self, bus, push_size, old_ss)?;
            stack.push(self, bus, push_size, old_sp)?;
        }
        stack.push(self, bus, push_size, fl)?;
        stack.push(self, bus, push_size, old_cs)?;
        stack.push(self, bus, push_size, ret)?;
        if let Some(e) = err {
            stack.push(self, bus, push_size, e as u64)?;
        }
        // Commit.
        if let Some(ss) = new_ss {
            self.state.seg[Seg::Ss as usize] = ss;
            if v86 {
                for s in [Seg::Gs, Seg::Fs, Seg::Ds, Seg::Es] {
                    self.state.seg[s as usize] = Segment { selector: 0, attrs: UNUSABLE, limit: 0, base: 0 };
                }
            }
        }
        let mask = if stack.width == 4 { 0xffff_ffff } else { 0xffff };
        self.state.gpr[RSP] = (start_sp & !mask) | (stack.sp & mask);
        self.set_descriptor_accessed(bus, sel, target)?;
        self.state.seg[Seg::Cs as usize] = cs_seg;
        self.state.rip = offset;
        let mut clear = flags::TF | flags::NT | flags::VM | flags::RF;
        if gate.typ() & 1 == 0 {
            clear |= flags::IF;
        }
        self.set_rflags(fl & !clear);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_long(&mut self, bus: &mut dyn CpuBus, vec: u8, err: Option<u32>, kind: EventKind, ret: u64, ext: u32, fl: u64) -> Result<()> {
        let (lo, hi) = self.read_gate(bus, vec, kind, ext, true)?;
        let gate = Descriptor(lo);
        let sel = (lo >> 16) as u16;
        let offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let ist = ((lo >> 32) & 7) as u8;
        let target = self.gate_target(bus, sel, ext)?;
        if target.attrs() & L == 0 || target.attrs() & DB != 0 {
            return Err(Fault::gp(sel_code(sel) + ext));
        }
        let cpl = self.state.cpl();
        let conforming = target.typ() & TYPE_EXPAND_DOWN != 0;
        let new_cpl = if conforming { cpl } else { target.dpl() };
        let old_ss = self.state.seg(Seg::Ss).selector as u64;
        let old_sp = self.state.gpr[RSP];
        let old_cs = self.state.seg(Seg::Cs).selector as u64;
        let mut sp = if ist != 0 {
            self.read_tss64(bus, 0x1c + ist as u64 * 8, ext)?
        } else if new_cpl < cpl {
            self.read_tss64(bus, 4 + new_cpl as u64 * 8, ext)?
        } else {
            old_sp
        };
        if !crate::segment::is_canonical(offset) {
            return Err(Fault::gp(ext));
        }
        sp &= !0xf;
        let mut stack = PendingStack {
            seg: *self.state.seg(Seg::Ss),
            sp,
            width: 8,
            error: ext,
            ctx: if new_cpl == 3 { Ctx::User } else { Ctx::Supervisor },
            long: true,
        };
        stack.push(self, bus, 8, old_ss)?;
        stack.push(self, bus, 8, old_sp)?;
        stack.push(self, bus, 8, fl)?;
        stack.push(self, bus, 8, old_cs)?;
        stack.push(self, bus, 8, ret)?;
        if let Some(e) = err {
            stack.push(self, bus, 8, e as u64)?;
        }
        if new_cpl < cpl {
            // SS becomes a null selector with RPL = new CPL (SDM Vol. 3, 6.14.4).
            self.state.seg[Seg::Ss as usize] =
                Segment { selector: new_cpl as u16, attrs: UNUSABLE | ((new_cpl as u32) << DPL_SHIFT), limit: 0, base: 0 };
        }
        self.state.gpr[RSP] = stack.sp;
        self.set_descriptor_accessed(bus, sel, target)?;
        let mut cs_seg = target.to_segment((sel & !3) | new_cpl as u16);
        cs_seg.attrs |= TYPE_ACCESSED;
        self.state.seg[Seg::Cs as usize] = cs_seg;
        self.state.rip = offset;
        let mut clear = flags::TF | flags::NT | flags::VM | flags::RF;
        if gate.typ() & 1 == 0 {
            clear |= flags::IF;
        }
        self.set_rflags(fl & !clear);
        Ok(())
    }

    /// SS:ESP for privilege level `cpl` from the current 16- or 32-bit TSS.
    pub(crate) fn tss_stack(&mut self, bus: &mut dyn CpuBus, cpl: u8, ext: u32) -> Result<(u16, u64)> {
        let tr = self.state.tr;
        let ts = Fault::ts(sel_code(tr.selector) + ext);
        let is32 = tr.attrs & 8 != 0;
        let (off, size) = if is32 { (4 + cpl as u64 * 8, 4u8) } else { (2 + cpl as u64 * 4, 2u8) };
        if off + size as u64 + 1 > tr.limit as u64 {
            return Err(ts);
        }
        let base = tr.base.wrapping_add(off) & self.lin_mask();
        let sp = self.read_lin(bus, base, size, Ctx::Supervisor)?;
        let ss = self.read_lin(bus, base + size as u64, 2, Ctx::Supervisor)? as u16;
        Ok((ss, sp))
    }

    pub(crate) fn read_tss64(&mut self, bus: &mut dyn CpuBus, off: u64, ext: u32) -> Result<u64> {
        let tr = self.state.tr;
        if off + 7 > tr.limit as u64 {
            return Err(Fault::ts(sel_code(tr.selector) + ext));
        }
        let sp = self.read_lin(bus, tr.base.wrapping_add(off), 8, Ctx::Supervisor)?;
        if !crate::segment::is_canonical(sp) {
            return Err(Fault::ss(ext));
        }
        Ok(sp)
    }

    /// Validates the stack segment of an inner-privilege stack switch (#TS/#SS rules).
    pub(crate) fn check_new_stack(&mut self, bus: &mut dyn CpuBus, ss_sel: u16, cpl: u8, ext: u32) -> Result<Segment> {
        if ss_sel & 0xfffc == 0 {
            return Err(Fault::ts(ext));
        }
        let d = self.read_descriptor(bus, ss_sel, vector::TS).map_err(|f| add_ext(f, ext))?;
        let a = d.attrs();
        let writable_data = a & S != 0 && a & TYPE_CODE == 0 && a & TYPE_WRITABLE != 0;
        if (ss_sel & 3) as u8 != cpl || d.dpl() != cpl || !writable_data {
            return Err(Fault::ts(sel_code(ss_sel) + ext));
        }
        if !d.present() {
            return Err(Fault::ss(sel_code(ss_sel) + ext));
        }
        self.set_descriptor_accessed(bus, ss_sel, d)?;
        let mut s = d.to_segment(ss_sel);
        s.attrs |= TYPE_ACCESSED;
        Ok(s)
    }
}

/// Adds the EXT bit to a selector error code produced while delivering an external event.
fn add_ext(f: Fault, ext: u32) -> Fault {
    match f {
        Fault::Exception { vector, error_code: Some(c) } if vector != vector::PF => {
            Fault::Exception { vector, error_code: Some(c | ext) }
        }
        other => other,
    }
}
