//! Hardware task switching (SDM Vol. 3, chapter 7): JMP/CALL to a TSS or task gate, IRET
//! with NT set, and interrupts through task gates; 32-bit and 16-bit TSS formats.
//!
//! Everything up to the commit point (privilege, type and limit checks, reading the new
//! TSS, the writes to the old TSS and the descriptor busy bits, all probed first) leaves the
//! old task intact when it faults. After the commit point the processor is in the new task:
//! faults while loading its segments are raised with the new task's CS:EIP (SDM 7.3, step
//! 13), which is why `state.rip` is updated at the commit.

use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::Ctx;
use crate::segment::{sel_code, sys_type, Descriptor};
use crate::state::{cr0, flags, seg_attr::*, Seg, Segment};
use crate::Cpu;

/// What started a task switch (SDM Vol. 3, Table 7-2 gives the differences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskSource {
    Jmp,
    Call,
    Iret,
    /// An interrupt or exception through a task gate.
    Interrupt,
}

impl TaskSource {
    /// CALL and interrupts nest: NT set in the new task and its back link written.
    fn nests(self) -> bool {
        matches!(self, TaskSource::Call | TaskSource::Interrupt)
    }
}

/// Smallest TSS limits a task switch accepts (SDM 7.2.2): the whole static and dynamic part.
const TSS32_MIN_LIMIT: u32 = 0x67;
const TSS16_MIN_LIMIT: u32 = 0x2b;
/// The old TSS must hold the dynamic fields the switch saves.
const TSS32_SAVE_LIMIT: u32 = 0x5f;
const TSS16_SAVE_LIMIT: u32 = 0x29;

/// 32-bit TSS field offsets (SDM Figure 7-2).
mod tss32 {
    pub const LINK: u64 = 0x00;
    pub const CR3: u64 = 0x1c;
    pub const EIP: u64 = 0x20;
    pub const EFLAGS: u64 = 0x24;
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, 4 bytes apart.
    pub const GPR: u64 = 0x28;
    /// ES, CS, SS, DS, FS, GS, 4 bytes apart (the `Seg` order).
    pub const SEG: u64 = 0x48;
    pub const LDT: u64 = 0x60;
    /// Bit 0: debug trap on entry (T).
    pub const TRAP: u64 = 0x64;
}

/// 16-bit (80286) TSS field offsets (SDM Figure 7-11).
mod tss16 {
    pub const IP: u64 = 0x0e;
    pub const FLAGS: u64 = 0x10;
    /// AX, CX, DX, BX, SP, BP, SI, DI, 2 bytes apart.
    pub const GPR: u64 = 0x12;
    /// ES, CS, SS, DS, 2 bytes apart.
    pub const SEG: u64 = 0x22;
    pub const LDT: u64 = 0x2a;
}

/// Attributes of every segment register in virtual-8086 mode: present, DPL 3, read/write,
/// accessed data (the VMX "0xF3" access rights, also used for CS).
pub(crate) const V86_ATTRS: u32 = P | S | TYPE_WRITABLE | TYPE_ACCESSED | (3 << DPL_SHIFT);

/// The busy bit: bit 1 of a TSS descriptor's type, in byte 5 of the descriptor.
const BUSY_BIT: u64 = 2;
/// DR7 local enables (L0-L3, LE) that a task switch clears (SDM Vol. 3, 18.2.4).
const DR7_LOCAL_ENABLES: u64 = 0x155;
/// DR6.BT: the debug exception was raised by the T flag of a new TSS.
const DR6_BT: u64 = 1 << 15;

/// The dynamic state read from the new task's TSS.
struct TssImage {
    cr3: u64,
    eip: u64,
    eflags: u64,
    gpr: [u64; 8],
    /// Selectors in `Seg` order.
    sel: [u16; 6],
    ldt: u16,
    trap: bool,
}

/// Descriptor type of an available/busy TSS: 32-bit (9/11) or 16-bit (1/3).
fn tss_is32(typ: u32) -> bool {
    typ & 8 != 0
}

impl Cpu {
    /// An interrupt or exception through a task gate naming TSS selector `sel` (SDM Vol. 2
    /// INT n "TASK-GATE"). `ret` and `fl` are the EIP and EFLAGS saved in the old task;
    /// `err` is pushed on the new task's stack.
    pub(crate) fn task_switch_via_gate(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        ret: u64,
        err: Option<u32>,
        ext: u32,
        fl: u64,
    ) -> Result<()> {
        let gp = Fault::gp(sel_code(sel) + ext);
        if sel & 4 != 0 {
            return Err(gp);
        }
        let desc = self.read_descriptor(bus, sel, vector::GP).map_err(|f| with_ext(f, ext))?;
        if !desc.is_system() || !matches!(desc.typ(), sys_type::TSS_AVAIL | sys_type::TSS16_AVAIL) {
            return Err(gp);
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(sel) + ext));
        }
        self.switch_task(bus, sel, desc, TaskSource::Interrupt, ret, fl, err, ext)
    }

    /// JMP/CALL to an available TSS descriptor (SDM Vol. 2 JMP/CALL "TASK-STATE-SEGMENT").
    pub(crate) fn tss_transfer(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        desc: Descriptor,
        source: TaskSource,
        ret: u64,
    ) -> Result<()> {
        let cpl = self.state.cpl();
        let rpl = (sel & 3) as u8;
        // TSS descriptors live only in the GDT.
        if sel & 4 != 0 || desc.dpl() < cpl || desc.dpl() < rpl {
            return Err(Fault::gp(sel_code(sel)));
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(sel)));
        }
        let fl = self.rflags();
        self.switch_task(bus, sel, desc, source, ret, fl, None, 0)
    }

    /// JMP/CALL to a task gate in the GDT or LDT (SDM Vol. 2 JMP/CALL "TASK-GATE").
    pub(crate) fn task_gate_transfer(
        &mut self,
        bus: &mut dyn CpuBus,
        gate_sel: u16,
        gate: Descriptor,
        source: TaskSource,
        ret: u64,
    ) -> Result<()> {
        let cpl = self.state.cpl();
        let rpl = (gate_sel & 3) as u8;
        if gate.dpl() < cpl || gate.dpl() < rpl {
            return Err(Fault::gp(sel_code(gate_sel)));
        }
        if !gate.present() {
            return Err(Fault::np(sel_code(gate_sel)));
        }
        let sel = (gate.0 >> 16) as u16;
        let gp = Fault::gp(sel_code(sel));
        if sel & 4 != 0 {
            return Err(gp);
        }
        let desc = self.read_descriptor(bus, sel, vector::GP)?;
        if !desc.is_system() || !matches!(desc.typ(), sys_type::TSS_AVAIL | sys_type::TSS16_AVAIL) {
            return Err(gp);
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(sel)));
        }
        let fl = self.rflags();
        self.switch_task(bus, sel, desc, source, ret, fl, None, 0)
    }

    /// IRET with NT = 1 in protected mode: back to the task named by the current TSS's
    /// previous-task link, which must be a busy TSS in the GDT (SDM Vol. 2 IRET "TASK-RETURN").
    pub(crate) fn task_return(&mut self, bus: &mut dyn CpuBus, ret: u64) -> Result<()> {
        let tr = self.state.tr;
        let link_lin = tr.base.wrapping_add(tss32::LINK) & self.lin_mask();
        let sel = self.read_lin(bus, link_lin, 2, Ctx::Supervisor)? as u16;
        let ts = Fault::ts(sel_code(sel));
        if sel & 4 != 0 {
            return Err(ts);
        }
        let desc = self.read_descriptor(bus, sel, vector::TS)?;
        if !desc.is_system() || !matches!(desc.typ(), sys_type::TSS_BUSY | sys_type::TSS16_BUSY) {
            return Err(ts);
        }
        if !desc.present() {
            return Err(Fault::np(sel_code(sel)));
        }
        let fl = self.rflags();
        self.switch_task(bus, sel, desc, TaskSource::Iret, ret, fl, None, 0)
    }

    /// Reads the dynamic state of the TSS at linear `base`.
    fn read_tss_image(&mut self, bus: &mut dyn CpuBus, base: u64, is32: bool) -> Result<TssImage> {
        let mask = self.lin_mask();
        let mut rd =
            |cpu: &mut Cpu, off: u64, size: u8| cpu.read_lin(bus, base.wrapping_add(off) & mask, size, Ctx::Supervisor);
        let mut img = TssImage { cr3: 0, eip: 0, eflags: 0, gpr: [0; 8], sel: [0; 6], ldt: 0, trap: false };
        if is32 {
            img.cr3 = rd(self, tss32::CR3, 4)?;
            img.eip = rd(self, tss32::EIP, 4)?;
            img.eflags = rd(self, tss32::EFLAGS, 4)?;
            for i in 0..8 {
                img.gpr[i] = rd(self, tss32::GPR + 4 * i as u64, 4)?;
            }
            for i in 0..6 {
                img.sel[i] = rd(self, tss32::SEG + 4 * i as u64, 2)? as u16;
            }
            img.ldt = rd(self, tss32::LDT, 2)? as u16;
            img.trap = rd(self, tss32::TRAP, 2)? & 1 != 0;
        } else {
            img.eip = rd(self, tss16::IP, 2)?;
            img.eflags = rd(self, tss16::FLAGS, 2)?;
            // A 16-bit TSS leaves the upper halves of the registers at all ones (as the
            // 386 and later do); FS and GS become null.
            for i in 0..8 {
                img.gpr[i] = 0xffff_0000 | rd(self, tss16::GPR + 2 * i as u64, 2)?;
            }
            for i in 0..4 {
                img.sel[i] = rd(self, tss16::SEG + 2 * i as u64, 2)? as u16;
            }
            img.ldt = rd(self, tss16::LDT, 2)? as u16;
        }
        Ok(img)
    }

    /// Linear address of byte 5 (type/busy) of the GDT entry for `sel`.
    fn tss_type_byte(&self, sel: u16) -> u64 {
        self.state.gdtr.base.wrapping_add((sel & 0xfff8) as u64 + 5) & self.lin_mask()
    }

    fn set_tss_busy(&mut self, bus: &mut dyn CpuBus, sel: u16, busy: bool) -> Result<()> {
        let lin = self.tss_type_byte(sel);
        let b = self.read_lin(bus, lin, 1, Ctx::Supervisor)?;
        let b = if busy { b | BUSY_BIT } else { b & !BUSY_BIT };
        self.write_lin(bus, lin, 1, b, Ctx::Supervisor)
    }

    /// SWITCH-TASKS (SDM Vol. 3, 7.3) to the TSS `sel`/`desc`, whose presence, type and
    /// privilege the caller checked. `ret`/`fl` are saved as the old task's EIP/EFLAGS.
    #[allow(clippy::too_many_arguments)]
    fn switch_task(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        desc: Descriptor,
        source: TaskSource,
        ret: u64,
        fl: u64,
        err: Option<u32>,
        ext: u32,
    ) -> Result<()> {
        let new32 = tss_is32(desc.typ());
        let min = if new32 { TSS32_MIN_LIMIT } else { TSS16_MIN_LIMIT };
        if desc.limit() < min {
            return Err(Fault::ts(sel_code(sel) + ext));
        }
        let old = self.state.tr;
        let old32 = tss_is32(old.attrs & TYPE_MASK);
        let old_min = if old32 { TSS32_SAVE_LIMIT } else { TSS16_SAVE_LIMIT };
        if old.limit < old_min {
            return Err(Fault::ts(sel_code(old.selector) + ext));
        }
        let mask = self.lin_mask();
        let nbase = desc.base() & mask;
        let obase = old.base & mask;

        // Probe every access that follows, so a page fault leaves the old task untouched.
        self.read_tss_image(bus, nbase, new32)?;
        let (save_first, save_last) = if old32 { (tss32::EIP, tss32::SEG + 21) } else { (tss16::IP, tss16::SEG + 7) };
        self.probe_write(bus, obase.wrapping_add(save_first) & mask, 1, Ctx::Supervisor)?;
        self.probe_write(bus, obase.wrapping_add(save_last) & mask, 1, Ctx::Supervisor)?;
        if source.nests() {
            self.probe_write(bus, nbase, 2, Ctx::Supervisor)?;
        }
        if matches!(source, TaskSource::Jmp | TaskSource::Iret) {
            let lin = self.tss_type_byte(old.selector);
            self.probe_write(bus, lin, 1, Ctx::Supervisor)?;
        }
        if source != TaskSource::Iret {
            let lin = self.tss_type_byte(sel);
            self.probe_write(bus, lin, 1, Ctx::Supervisor)?;
        }

        // The old task: busy bit, saved state, and the new task's back link.
        if matches!(source, TaskSource::Jmp | TaskSource::Iret) {
            self.set_tss_busy(bus, old.selector, false)?;
        }
        let saved_fl = if source == TaskSource::Iret { fl & !flags::NT } else { fl };
        self.save_task_state(bus, obase, old32, ret, saved_fl)?;
        if source.nests() {
            self.write_lin(bus, nbase, 2, old.selector as u64, Ctx::Supervisor)?;
        }
        // Read after saving: the old and new TSS may be the same memory.
        let img = self.read_tss_image(bus, nbase, new32)?;
        if source != TaskSource::Iret {
            self.set_tss_busy(bus, sel, true)?;
        }

        // Commit point: from here on the processor runs the new task.
        let mut tr = desc.to_segment(sel);
        tr.attrs |= BUSY_BIT as u32;
        self.state.tr = tr;
        self.state.cr0 |= cr0::TS;
        self.state.dr[7] &= !DR7_LOCAL_ENABLES;
        self.refresh_debug();
        self.interrupt_shadow = false;
        let eflags = if source.nests() { img.eflags | flags::NT } else { img.eflags };
        self.set_rflags(eflags);
        for (i, &v) in img.gpr.iter().enumerate() {
            self.state.gpr[i] = v & 0xffff_ffff;
        }
        self.state.rip = img.eip;
        self.next_rip = img.eip;
        self.end_block = true;
        if new32 && self.state.paging() {
            self.state.cr3 = img.cr3;
            self.flush_tlb(true);
        }
        self.load_task_segments(bus, &img, ext)?;
        if let Some(code) = err {
            let size = if new32 { 4 } else { 2 };
            self.push(bus, size, code as u64).map_err(|f| match f {
                Fault::Exception { vector: vector::SS, error_code: Some(0) } => Fault::ss(ext),
                other => other,
            })?;
        }
        if img.eip > self.state.seg(Seg::Cs).limit as u64 {
            return Err(Fault::gp(ext));
        }
        if new32 && img.trap {
            self.state.dr[6] |= DR6_BT;
            return Err(Fault::exc(vector::DB));
        }
        Ok(())
    }

    /// Saves the outgoing task's dynamic state (registers, selectors, EIP, EFLAGS).
    fn save_task_state(&mut self, bus: &mut dyn CpuBus, base: u64, is32: bool, ret: u64, fl: u64) -> Result<()> {
        let mask = self.lin_mask();
        let (ip_off, fl_off, gpr_off, seg_off, width, nseg) = if is32 {
            (tss32::EIP, tss32::EFLAGS, tss32::GPR, tss32::SEG, 4u8, 6)
        } else {
            (tss16::IP, tss16::FLAGS, tss16::GPR, tss16::SEG, 2u8, 4)
        };
        let w = width as u64;
        let mut wr = |cpu: &mut Cpu, off: u64, size: u8, v: u64| {
            cpu.write_lin(bus, base.wrapping_add(off) & mask, size, v, Ctx::Supervisor)
        };
        wr(self, ip_off, width, ret)?;
        wr(self, fl_off, width, fl)?;
        for i in 0..8 {
            let v = self.state.gpr[i];
            wr(self, gpr_off + w * i as u64, width, v)?;
        }
        for i in 0..nseg {
            let v = self.state.seg[i].selector as u64;
            wr(self, seg_off + w * i as u64, 2, v)?;
        }
        Ok(())
    }

    /// Loads LDTR and the segment registers of the new task with the checks of SDM Table
    /// 7-1; faults here are raised in the new task.
    fn load_task_segments(&mut self, bus: &mut dyn CpuBus, img: &TssImage, ext: u32) -> Result<()> {
        // Selectors first with unusable caches, so a fault leaves them visible as in the
        // TSS; SS has DPL 3 until validated so an exception handler switches stacks.
        for (i, &s) in img.sel.iter().enumerate() {
            let dpl3 = if i == Seg::Ss as usize { 3 << DPL_SHIFT } else { 0 };
            self.state.seg[i] = Segment { selector: s, attrs: UNUSABLE | dpl3, limit: 0, base: 0 };
        }
        self.state.ldtr = Segment { selector: img.ldt, attrs: UNUSABLE, limit: 0, base: 0 };
        let ts = |sel: u16| Fault::ts(sel_code(sel) + ext);

        // LDTR: a present LDT descriptor in the GDT, or null.
        if img.ldt & 4 != 0 {
            return Err(ts(img.ldt));
        }
        if img.ldt & 0xfffc != 0 {
            let d = self.read_descriptor(bus, img.ldt, vector::TS).map_err(|f| with_ext(f, ext))?;
            if !d.is_system() || d.typ() != sys_type::LDT || !d.present() {
                return Err(ts(img.ldt));
            }
            self.state.ldtr = d.to_segment(img.ldt);
        }

        if img.eflags & flags::VM != 0 {
            // A virtual-8086 task: real-mode style segments at CPL 3.
            for (i, &s) in img.sel.iter().enumerate() {
                self.state.seg[i] = Segment::real_mode(s, V86_ATTRS);
            }
            return Ok(());
        }

        let cs_sel = img.sel[Seg::Cs as usize];
        let cpl = (cs_sel & 3) as u8;
        // SS: writable data with DPL = RPL = CS.RPL.
        let ss_sel = img.sel[Seg::Ss as usize];
        if ss_sel & 0xfffc == 0 {
            return Err(ts(ss_sel));
        }
        let d = self.read_descriptor(bus, ss_sel, vector::TS).map_err(|f| with_ext(f, ext))?;
        let a = d.attrs();
        if a & S == 0 || a & TYPE_CODE != 0 || a & TYPE_WRITABLE == 0 {
            return Err(ts(ss_sel));
        }
        if !d.present() {
            return Err(Fault::ss(sel_code(ss_sel) + ext));
        }
        if d.dpl() != cpl || d.dpl() != (ss_sel & 3) as u8 {
            return Err(ts(ss_sel));
        }
        self.load_task_segment(bus, Seg::Ss, ss_sel, d)?;

        // DS, ES, FS, GS: null, or readable with DPL >= CPL and RPL unless conforming code.
        for seg in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs] {
            let s = img.sel[seg as usize];
            if s & 0xfffc == 0 {
                continue;
            }
            let d = self.read_descriptor(bus, s, vector::TS).map_err(|f| with_ext(f, ext))?;
            let a = d.attrs();
            let code = a & TYPE_CODE != 0;
            if a & S == 0 || (code && a & TYPE_WRITABLE == 0) {
                return Err(ts(s));
            }
            let conforming = code && a & TYPE_EXPAND_DOWN != 0;
            if !conforming && ((s & 3) as u8 > d.dpl() || cpl > d.dpl()) {
                return Err(ts(s));
            }
            if !d.present() {
                return Err(Fault::np(sel_code(s) + ext));
            }
            self.load_task_segment(bus, seg, s, d)?;
        }

        // CS: code with DPL = RPL (non-conforming) or DPL <= RPL (conforming).
        if cs_sel & 0xfffc == 0 {
            return Err(ts(cs_sel));
        }
        let d = self.read_descriptor(bus, cs_sel, vector::TS).map_err(|f| with_ext(f, ext))?;
        let a = d.attrs();
        if a & S == 0 || a & TYPE_CODE == 0 {
            return Err(ts(cs_sel));
        }
        let conforming = a & TYPE_EXPAND_DOWN != 0;
        if (!conforming && d.dpl() != cpl) || (conforming && d.dpl() > cpl) {
            return Err(ts(cs_sel));
        }
        if !d.present() {
            return Err(Fault::np(sel_code(cs_sel) + ext));
        }
        self.load_task_segment(bus, Seg::Cs, cs_sel, d)
    }

    fn load_task_segment(&mut self, bus: &mut dyn CpuBus, seg: Seg, sel: u16, d: Descriptor) -> Result<()> {
        self.set_descriptor_accessed(bus, sel, d)?;
        let mut s = d.to_segment(sel);
        s.attrs |= TYPE_ACCESSED;
        self.state.seg[seg as usize] = s;
        Ok(())
    }
}

/// Adds EXT to the selector error code of a fault raised while switching for an external
/// event (page faults keep their own error code).
fn with_ext(f: Fault, ext: u32) -> Fault {
    match f {
        Fault::Exception { vector: v, error_code: Some(c) } if v != vector::PF => {
            Fault::Exception { vector: v, error_code: Some(c | ext) }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_formats() {
        assert!(tss_is32(sys_type::TSS_AVAIL));
        assert!(tss_is32(sys_type::TSS_BUSY));
        assert!(!tss_is32(sys_type::TSS16_AVAIL));
        assert!(!tss_is32(sys_type::TSS16_BUSY));
        // The dynamic part ends with GS in a 32-bit TSS and DS in a 16-bit one.
        assert_eq!(tss32::SEG + 6 * 4 - 1, TSS32_SAVE_LIMIT as u64);
        assert_eq!(tss16::SEG + 4 * 2 - 1, TSS16_SAVE_LIMIT as u64);
    }
}
