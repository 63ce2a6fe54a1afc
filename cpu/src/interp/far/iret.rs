//! IRET/IRETD/IRETQ (SDM Vol. 2 IRET): real mode, virtual-8086 mode (IOPL = 3, or the VME
//! 16-bit form), protected-mode returns to the same or an outer level or to virtual-8086
//! mode, task return through the back link (NT = 1), and the IA-32e forms.

use super::{check_return_cs, check_return_ss, ip_mask};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::state::{cr4, flags::*, reg::RSP, Seg, Segment};
use crate::task::V86_ATTRS;
use crate::Cpu;
use iced_x86::{Code, Instruction};

/// EFLAGS bits a 32-bit real-mode IRET loads from the image (SDM: "tempEFLAGS AND 257FD5H");
/// VM, VIF and VIP (1A0000H) are kept.
const REAL_IRET32_LOADED: u64 = 0x257fd5;
const REAL_IRET32_KEPT: u64 = 0x1a0000;

pub(super) fn iret(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size: u8 = match insn.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    // IRET unblocks NMIs even when it faults (SDM Vol. 3, 6.7.1).
    cpu.nmi_blocked = false;
    cpu.end_block = true;
    if !cpu.state.protected() {
        iret_real(cpu, bus, size)
    } else if cpu.state.long_mode_active() {
        iret_protected(cpu, bus, size, true)
    } else if cpu.state.v86() {
        iret_v86(cpu, bus, size)
    } else if cpu.state.rflags & NT != 0 {
        let ret = cpu.next_rip;
        cpu.task_return(bus, ret)
    } else {
        iret_protected(cpu, bus, size, false)
    }
}

/// The three-slot frame: (eIP masked to the operand size, CS selector, flags image masked
/// to the operand size).
fn pop_frame(cpu: &mut Cpu, bus: &mut dyn CpuBus, size: u8) -> Result<(u64, u16, u64)> {
    let s = size as u64;
    let ip = cpu.peek_stack(bus, 0, size)? & ip_mask(size);
    let cs = cpu.peek_stack(bus, s, size)? as u16;
    let fl = cpu.peek_stack(bus, 2 * s, size)? & ip_mask(size);
    Ok((ip, cs, fl))
}

fn iret_real(cpu: &mut Cpu, bus: &mut dyn CpuBus, size: u8) -> Result<()> {
    let (ip, cs, fl) = pop_frame(cpu, bus, size)?;
    if ip > cpu.state.seg(Seg::Cs).limit as u64 {
        return Err(Fault::gp0());
    }
    let cur = cpu.rflags();
    let new = if size == 2 { (cur & !0xffff) | fl } else { (fl & REAL_IRET32_LOADED) | (cur & REAL_IRET32_KEPT) };
    cpu.load_cs_real(cs);
    cpu.next_rip = ip;
    cpu.adjust_sp(3 * size as u64);
    cpu.set_rflags(new);
    Ok(())
}

/// IRET executed in virtual-8086 mode (stays in virtual-8086 mode).
fn iret_v86(cpu: &mut Cpu, bus: &mut dyn CpuBus, size: u8) -> Result<()> {
    let cur = cpu.rflags();
    let iopl3 = cur & IOPL == IOPL;
    let vme16 = !iopl3 && cpu.state.cr4 & cr4::VME != 0 && size == 2;
    if !iopl3 && !vme16 {
        // Trap to the virtual-8086 monitor.
        return Err(Fault::gp0());
    }
    let (ip, cs, fl) = pop_frame(cpu, bus, size)?;
    let new = if iopl3 {
        if size == 2 {
            // IOPL is not modified by the pop.
            (cur & !0xffff) | (fl & !IOPL) | (cur & IOPL)
        } else {
            let kept = VM | IOPL | VIP | VIF;
            (fl & !kept) | (cur & kept)
        }
    } else {
        // VME (SDM Vol. 3, 20.3): IF goes to VIF; a pending virtual interrupt being enabled,
        // or TF, traps to the monitor.
        if fl & TF != 0 || (fl & IF != 0 && cur & VIP != 0) {
            return Err(Fault::gp0());
        }
        let kept = IOPL | IF;
        let low = (cur & !0xffff) | (fl & !kept) | (cur & kept);
        if fl & IF != 0 {
            low | VIF
        } else {
            low & !VIF
        }
    };
    if ip > cpu.state.seg(Seg::Cs).limit as u64 {
        return Err(Fault::gp0());
    }
    cpu.load_cs_real(cs);
    cpu.next_rip = ip;
    cpu.adjust_sp(3 * size as u64);
    cpu.set_rflags(new);
    Ok(())
}

/// Protected-mode IRET without NT, and every IA-32e IRET (`long`).
fn iret_protected(cpu: &mut Cpu, bus: &mut dyn CpuBus, size: u8, long: bool) -> Result<()> {
    if long && cpu.state.rflags & NT != 0 {
        // No task switching in IA-32e mode.
        return Err(Fault::gp0());
    }
    let (ip, cs_sel, fl) = pop_frame(cpu, bus, size)?;
    let cpl = cpu.state.cpl();
    if !long && fl & VM != 0 && cpl == 0 {
        return iret_to_v86(cpu, bus, ip, cs_sel, fl);
    }
    let desc = check_return_cs(cpu, bus, cs_sel)?;
    let rpl = (cs_sel & 3) as u8;
    let target64 = cpu.targets_64bit(&desc);
    let s = size as u64;
    // An outer-level return pops SS:eSP; so does every IRET in 64-bit mode.
    let pop_ss = rpl > cpl || cpu.state.in_64bit();
    let new_stack = if pop_ss {
        let sp = cpu.peek_stack(bus, 3 * s, size)?;
        let ss_sel = cpu.peek_stack(bus, 4 * s, size)? as u16;
        Some((sp, check_return_ss(cpu, bus, ss_sel, rpl, target64, true)?))
    } else {
        None
    };
    cpu.check_target_ip(ip, &desc, 0)?;
    cpu.set_descriptor_accessed(bus, cs_sel, desc)?;
    // Commit. Flags follow the old CPL's rules.
    cpu.iret_flags(fl, size, cpl);
    let orig_rsp = cpu.state.gpr[RSP];
    match new_stack {
        Some((sp, ss)) => {
            cpu.state.seg[Seg::Ss as usize] = ss;
            cpu.set_return_sp(orig_rsp, sp, 0, &ss, target64);
        }
        None => cpu.adjust_sp(3 * s),
    }
    cpu.load_cs(cs_sel, desc, rpl);
    cpu.next_rip = ip;
    if rpl > cpl {
        cpu.null_inaccessible_segments();
    }
    Ok(())
}

/// RETURN-TO-VIRTUAL-8086-MODE: a 32-bit IRET at CPL 0 whose flags image has VM = 1 also
/// pops ESP, SS, ES, DS, FS and GS.
fn iret_to_v86(cpu: &mut Cpu, bus: &mut dyn CpuBus, ip: u64, cs: u16, fl: u64) -> Result<()> {
    let mut rest = [0u64; 6];
    for (i, v) in rest.iter_mut().enumerate() {
        *v = cpu.peek_stack(bus, 12 + 4 * i as u64, 4)?;
    }
    if ip > 0xffff {
        return Err(Fault::gp0());
    }
    cpu.set_rflags(fl);
    let v86 = |sel: u64| Segment::real_mode(sel as u16, V86_ATTRS);
    let [esp, ss, es, ds, fs, gs] = rest;
    cpu.state.seg[Seg::Cs as usize] = v86(cs as u64);
    cpu.state.seg[Seg::Ss as usize] = v86(ss);
    cpu.state.seg[Seg::Es as usize] = v86(es);
    cpu.state.seg[Seg::Ds as usize] = v86(ds);
    cpu.state.seg[Seg::Fs as usize] = v86(fs);
    cpu.state.seg[Seg::Gs as usize] = v86(gs);
    cpu.state.gpr[RSP] = esp;
    cpu.next_rip = ip;
    Ok(())
}

impl Cpu {
    /// EFLAGS from a protected-mode IRET image (SDM Vol. 2 IRET, RETURN-TO-SAME/OUTER-
    /// PRIVILEGE-LEVEL): the status flags, TF, DF and NT always; RF, AC and ID with a 32/64-
    /// bit operand; IF only if CPL <= IOPL; IOPL (and with 32/64 bits VIF, VIP) only at CPL 0.
    /// VM never changes here. `cpl` is the level IRET executed at.
    fn iret_flags(&mut self, fl: u64, size: u8, cpl: u8) {
        let cur = self.rflags();
        let mut mask = ARITH | TF | DF | NT;
        if size != 2 {
            mask |= RF | AC | ID;
        }
        if cpl as u64 <= (cur & IOPL) >> IOPL_SHIFT {
            mask |= IF;
        }
        if cpl == 0 {
            mask |= IOPL;
            if size != 2 {
                mask |= VIF | VIP;
            }
        }
        self.set_rflags((cur & !mask) | (fl & mask));
    }
}
