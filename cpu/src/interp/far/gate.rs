//! Protected-mode and IA-32e far JMP/CALL to a code segment directly or through a call
//! gate, with the inner-stack switch and parameter copy of an inter-privilege CALL (SDM
//! Vol. 2 JMP/CALL "CONFORMING-CODE-SEGMENT", "NONCONFORMING-CODE-SEGMENT", "CALL-GATE",
//! "MORE-PRIVILEGE", "SAME-PRIVILEGE"; Vol. 3, 5.8.3-5.8.6).

use super::{ip_mask, FarPtr};
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::Ctx;
use crate::segment::{is_canonical, sel_code, sys_type, Descriptor};
use crate::stack::{check_limit, PendingStack};
use crate::state::{reg::RSP, seg_attr::*, Seg, Segment};
use crate::Cpu;

/// Most parameters a call gate can copy (a 5-bit count).
const MAX_GATE_PARAMS: usize = 31;

/// A decoded call gate: target selector and offset, size of its pushes in bytes (2, 4 or
/// 8 for a 64-bit gate) and the parameter count.
struct CallGate {
    cs_sel: u16,
    offset: u64,
    size: u8,
    params: usize,
}

impl Cpu {
    /// JMP/CALL straight to a code segment: no privilege change.
    pub(super) fn far_to_code(&mut self, bus: &mut dyn CpuBus, t: FarPtr, desc: Descriptor, call: bool) -> Result<()> {
        let cpl = self.state.cpl();
        let rpl = (t.sel & 3) as u8;
        let a = desc.attrs();
        let bad = Fault::gp(sel_code(t.sel));
        if self.state.long_mode_active() && a & L != 0 && a & DB != 0 {
            return Err(bad);
        }
        if a & TYPE_EXPAND_DOWN != 0 {
            // Conforming: callable from its DPL and outward, CPL unchanged.
            if desc.dpl() > cpl {
                return Err(bad);
            }
        } else if rpl > cpl || desc.dpl() != cpl {
            return Err(bad);
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(t.sel)));
        }
        if call {
            self.check_stack_room(2, t.size)?;
        }
        let eip = t.offset & ip_mask(t.size);
        self.check_target_ip(eip, &desc, 0)?;
        self.set_descriptor_accessed(bus, t.sel, desc)?;
        if call {
            let cs = self.state.seg(Seg::Cs).selector as u64;
            let ret = self.next_rip;
            self.push_all(bus, t.size, &[cs, ret])?;
        }
        self.load_cs(t.sel, desc, cpl);
        self.next_rip = eip;
        Ok(())
    }

    /// Reads the rest of a call gate: the 16-byte form in IA-32e mode (whose upper type
    /// field must be 0), the 8-byte 16/32-bit forms otherwise.
    fn decode_call_gate(&mut self, bus: &mut dyn CpuBus, gate_sel: u16, gate: Descriptor) -> Result<CallGate> {
        let lo = gate.0;
        let cs_sel = (lo >> 16) as u16;
        let offset32 = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000);
        if self.state.long_mode_active() {
            let hi = self.read_descriptor_high(bus, gate_sel, vector::GP)?;
            if (hi >> 40) & 0x1f != 0 {
                return Err(Fault::gp(sel_code(gate_sel)));
            }
            return Ok(CallGate { cs_sel, offset: offset32 | (hi << 32), size: 8, params: 0 });
        }
        let params = ((lo >> 32) & 0x1f) as usize;
        if gate.typ() == sys_type::CALL_GATE {
            Ok(CallGate { cs_sel, offset: offset32, size: 4, params })
        } else {
            Ok(CallGate { cs_sel, offset: lo & 0xffff, size: 2, params })
        }
    }

    /// JMP/CALL through a call gate.
    pub(super) fn far_via_call_gate(
        &mut self,
        bus: &mut dyn CpuBus,
        t: FarPtr,
        gate: Descriptor,
        call: bool,
    ) -> Result<()> {
        let g = self.decode_call_gate(bus, t.sel, gate)?;
        let cpl = self.state.cpl();
        let rpl = (t.sel & 3) as u8;
        if gate.dpl() < cpl || rpl > gate.dpl() {
            return Err(Fault::gp(sel_code(t.sel)));
        }
        if !gate.present() {
            return Err(Fault::np(sel_code(t.sel)));
        }
        if g.cs_sel & 0xfffc == 0 {
            return Err(Fault::gp0());
        }
        let desc = self.read_descriptor(bus, g.cs_sel, vector::GP)?;
        let a = desc.attrs();
        let bad = Fault::gp(sel_code(g.cs_sel));
        let conforming = a & TYPE_EXPAND_DOWN != 0;
        if a & S == 0 || a & TYPE_CODE == 0 {
            return Err(bad);
        }
        // CALL may go inward (DPL < CPL); JMP never changes privilege.
        let dpl_ok = if call || conforming { desc.dpl() <= cpl } else { desc.dpl() == cpl };
        if !dpl_ok {
            return Err(bad);
        }
        if self.state.long_mode_active() && (a & L == 0 || a & DB != 0) {
            return Err(bad);
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(g.cs_sel)));
        }
        if !call {
            let eip = g.offset;
            self.check_target_ip(eip, &desc, 0)?;
            self.set_descriptor_accessed(bus, g.cs_sel, desc)?;
            self.load_cs(g.cs_sel, desc, cpl);
            self.next_rip = eip;
            return Ok(());
        }
        if !conforming && desc.dpl() < cpl {
            if g.size == 8 {
                self.call_gate_inner64(bus, &g, desc)
            } else {
                self.call_gate_inner(bus, &g, desc)
            }
        } else {
            self.call_gate_same(bus, &g, desc, cpl)
        }
    }

    /// CALL through a gate to the same privilege level: CS:IP pushed with the gate's size.
    fn call_gate_same(&mut self, bus: &mut dyn CpuBus, g: &CallGate, desc: Descriptor, cpl: u8) -> Result<()> {
        let cs = self.state.seg(Seg::Cs).selector as u64;
        let ret = self.next_rip;
        if g.size == 8 {
            // A 64-bit gate: 8-byte pushes on the 64-bit stack, canonical or #SS(0).
            let ctx = self.data_ctx();
            let mut stack = PendingStack {
                seg: *self.state.seg(Seg::Ss),
                sp: self.state.gpr[RSP],
                width: 8,
                error: 0,
                ctx,
                long: true,
            };
            room(&stack, 2, 8)?;
            self.check_target_ip(g.offset, &desc, 0)?;
            self.set_descriptor_accessed(bus, g.cs_sel, desc)?;
            stack.push(self, bus, 8, cs)?;
            stack.push(self, bus, 8, ret)?;
            self.state.gpr[RSP] = stack.sp;
        } else {
            self.check_stack_room(2, g.size)?;
            self.check_target_ip(g.offset, &desc, 0)?;
            self.set_descriptor_accessed(bus, g.cs_sel, desc)?;
            self.push_all(bus, g.size, &[cs, ret])?;
        }
        self.load_cs(g.cs_sel, desc, cpl);
        self.next_rip = g.offset;
        Ok(())
    }

    /// CALL through a 16/32-bit gate to a more privileged non-conforming segment: switch to
    /// the inner stack from the TSS, push the caller's SS:eSP, copy the parameters, push the
    /// caller's CS:eIP.
    fn call_gate_inner(&mut self, bus: &mut dyn CpuBus, g: &CallGate, desc: Descriptor) -> Result<()> {
        let new_cpl = desc.dpl();
        let (ss_sel, tss_sp) = self.tss_stack(bus, new_cpl, 0)?;
        let ss = self.check_new_stack(bus, ss_sel, new_cpl, 0)?;
        let width = if ss.default_big() { 4 } else { 2 };
        let mut stack =
            PendingStack { seg: ss, sp: tss_sp, width, error: sel_code(ss_sel), ctx: Ctx::Supervisor, long: false };
        room(&stack, 4 + g.params as u64, g.size)?;
        self.check_target_ip(g.offset, &desc, 0)?;
        // The parameters, read from the caller's stack before anything changes.
        let mut params = [0u64; MAX_GATE_PARAMS];
        for (i, p) in params.iter_mut().enumerate().take(g.params) {
            *p = self.peek_stack(bus, i as u64 * g.size as u64, g.size)?;
        }
        self.set_descriptor_accessed(bus, g.cs_sel, desc)?;
        let old_ss = self.state.seg(Seg::Ss).selector as u64;
        let old_sp = self.state.gpr[RSP];
        let old_cs = self.state.seg(Seg::Cs).selector as u64;
        let ret = self.next_rip;
        stack.push(self, bus, g.size, old_ss)?;
        stack.push(self, bus, g.size, old_sp)?;
        for &p in params[..g.params].iter().rev() {
            stack.push(self, bus, g.size, p)?;
        }
        stack.push(self, bus, g.size, old_cs)?;
        stack.push(self, bus, g.size, ret)?;
        // Commit: SS first so the CPL (SS.DPL) and CS.RPL agree.
        self.state.seg[Seg::Ss as usize] = ss;
        let mask = if width == 4 { 0xffff_ffff } else { 0xffff };
        self.state.gpr[RSP] = (tss_sp & !mask) | (stack.sp & mask);
        self.load_cs(g.cs_sel, desc, new_cpl);
        self.next_rip = g.offset;
        Ok(())
    }

    /// CALL through a 64-bit gate to a more privileged level: RSP from the 64-bit TSS's
    /// RSPn, SS becomes null with RPL = the new CPL, no parameters are copied.
    fn call_gate_inner64(&mut self, bus: &mut dyn CpuBus, g: &CallGate, desc: Descriptor) -> Result<()> {
        let new_cpl = desc.dpl();
        let sp = self.read_tss64(bus, 4 + new_cpl as u64 * 8, 0)?;
        let mut stack =
            PendingStack { seg: *self.state.seg(Seg::Ss), sp, width: 8, error: 0, ctx: Ctx::Supervisor, long: true };
        room(&stack, 4, 8)?;
        if !is_canonical(g.offset) {
            return Err(Fault::gp0());
        }
        self.set_descriptor_accessed(bus, g.cs_sel, desc)?;
        let old_ss = self.state.seg(Seg::Ss).selector as u64;
        let old_sp = self.state.gpr[RSP];
        let old_cs = self.state.seg(Seg::Cs).selector as u64;
        let ret = self.next_rip;
        for v in [old_ss, old_sp, old_cs, ret] {
            stack.push(self, bus, 8, v)?;
        }
        self.state.seg[Seg::Ss as usize] =
            Segment { selector: new_cpl as u16, attrs: UNUSABLE | ((new_cpl as u32) << DPL_SHIFT), limit: 0, base: 0 };
        self.state.gpr[RSP] = stack.sp;
        self.load_cs(g.cs_sel, desc, new_cpl);
        self.next_rip = g.offset;
        Ok(())
    }
}

/// #SS(stack.error) unless `count` pushes of `size` bytes fit on a stack being built: the
/// segment limit, or canonical addresses for a 64-bit stack. Checked before the target's
/// #GP checks, as the SDM orders them.
fn room(stack: &PendingStack, count: u64, size: u8) -> Result<()> {
    let mask: u64 = match stack.width {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => !0,
    };
    for i in 1..=count {
        let sp = stack.sp.wrapping_sub(i * size as u64) & mask;
        let ok = if stack.long {
            is_canonical(sp) && is_canonical(sp.wrapping_add(size as u64 - 1))
        } else {
            check_limit(&stack.seg, sp, size).is_ok()
        };
        if !ok {
            return Err(Fault::ss(stack.error));
        }
    }
    Ok(())
}
