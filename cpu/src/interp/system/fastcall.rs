//! SYSCALL SYSRET SYSENTER SYSEXIT: privilege changes that load CS and SS with fixed
//! descriptor caches instead of reading the GDT (SDM Vol. 2 pseudo-code). With an AMD
//! vendor string the AMD64 APM variants apply instead: SYSCALL/SYSRET also work outside
//! 64-bit mode (CSTAR, STAR[31:0]) and SYSENTER/SYSEXIT are #UD in long mode.

use super::{amd, Handler};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::segment::is_canonical;
use crate::state::{efer, flags, reg::*, seg_attr::*, Seg, Segment};
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Syscall => syscall,
        Mnemonic::Sysret | Mnemonic::Sysretq => sysret,
        Mnemonic::Sysenter => sysenter,
        Mnemonic::Sysexit | Mnemonic::Sysexitq => sysexit,
        _ => return None,
    })
}

const R11: usize = 11;
/// Type 11: execute/read code, accessed.
const CODE_TYPE: u32 = TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED;
/// Type 3: read/write data, accessed.
const DATA_TYPE: u32 = TYPE_WRITABLE | TYPE_ACCESSED;
/// A 20-bit limit of FFFFFH with 4 KiB granularity: 4 GiB.
const FLAT_LIMIT: u32 = 0xffff_ffff;
/// RFLAGS bits SYSRET takes from R11: everything but RF, VM and the reserved bits.
const SYSRET_FLAGS: u64 = 0x3c_7fd7;

/// The fixed flat code segment: 64-bit (L = 1, D = 0) or 32-bit (L = 0, D = 1).
fn flat_code(selector: u16, dpl: u8, long: bool) -> Segment {
    let size = if long { L } else { DB };
    Segment { selector, attrs: CODE_TYPE | S | P | G | size | ((dpl as u32) << DPL_SHIFT), limit: FLAT_LIMIT, base: 0 }
}

/// The fixed flat 32-bit stack segment; its DPL is the new CPL.
fn flat_stack(selector: u16, dpl: u8) -> Segment {
    Segment { selector, attrs: DATA_TYPE | S | P | DB | G | ((dpl as u32) << DPL_SHIFT), limit: FLAT_LIMIT, base: 0 }
}

impl Cpu {
    /// Commits a fast transfer: new CS and SS caches (and so a new mode and CPL), new RIP.
    fn fast_transfer(&mut self, cs: Segment, ss: Segment, rip: u64) {
        self.state.seg[Seg::Cs as usize] = cs;
        self.state.seg[Seg::Ss as usize] = ss;
        self.next_rip = rip;
        self.end_block = true;
    }
}

fn syscall(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let st = &cpu.state;
    if st.efer & efer::SCE == 0 {
        return Err(Fault::ud());
    }
    let star_cs = (st.msr.star >> 32) as u16;
    let fl = cpu.rflags();
    if st.in_64bit() || (amd(cpu) && st.long_mode_active()) {
        // RCX and R11 keep the return RIP and RFLAGS (RF clear); RFLAGS is masked by FMASK.
        let target = if st.in_64bit() { st.msr.lstar } else { st.msr.cstar };
        let mask = st.msr.sfmask;
        cpu.state.gpr[RCX] = cpu.next_rip;
        cpu.state.gpr[R11] = fl & !flags::RF;
        cpu.set_rflags(fl & !mask & !flags::RF);
        cpu.fast_transfer(flat_code(star_cs & 0xfffc, 0, true), flat_stack(star_cs.wrapping_add(8), 0), target);
        return Ok(());
    }
    if !amd(cpu) {
        // Intel: SYSCALL exists only in 64-bit mode.
        return Err(Fault::ud());
    }
    // AMD legacy mode: ECX gets the return EIP, the target is STAR[31:0].
    let target = st.msr.star & 0xffff_ffff;
    cpu.state.gpr[RCX] = cpu.next_rip & 0xffff_ffff;
    cpu.set_rflags(fl & !(flags::VM | flags::IF | flags::RF));
    cpu.fast_transfer(flat_code(star_cs & 0xfffc, 0, false), flat_stack(star_cs.wrapping_add(8), 0), target);
    Ok(())
}

fn sysret(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let to_64 = insn.code() == Code::Sysretq;
    let st = &cpu.state;
    if st.efer & efer::SCE == 0 {
        return Err(Fault::ud());
    }
    if amd(cpu) {
        return sysret_amd(cpu, to_64);
    }
    if !st.in_64bit() {
        return Err(Fault::ud());
    }
    let rcx = st.gpr[RCX];
    // Both checks happen in ring 0, before anything changes.
    if st.cpl() != 0 || (to_64 && !is_canonical(rcx)) {
        return Err(Fault::gp0());
    }
    let base = (st.msr.star >> 48) as u16;
    let (cs, rip) = if to_64 {
        (flat_code(base.wrapping_add(16) | 3, 3, true), rcx)
    } else {
        (flat_code(base | 3, 3, false), rcx & 0xffff_ffff)
    };
    let ss = flat_stack(base.wrapping_add(8) | 3, 3);
    let r11 = st.gpr[R11];
    cpu.set_rflags(r11 & SYSRET_FLAGS);
    cpu.fast_transfer(cs, ss, rip);
    Ok(())
}

/// AMD SYSRET: no canonical check on RCX, and SS keeps its cached attributes (only the
/// selector changes; the DPL becomes 3 because CPL is read from SS here). Legacy mode
/// returns to 32-bit code with IF set.
fn sysret_amd(cpu: &mut Cpu, to_64: bool) -> Result<()> {
    let st = &cpu.state;
    if !st.protected() || st.v86() || st.cpl() != 0 {
        return Err(Fault::gp0());
    }
    let base = (st.msr.star >> 48) as u16;
    let rcx = st.gpr[RCX];
    let mut ss = *st.seg(Seg::Ss);
    ss.selector = base.wrapping_add(8);
    ss.attrs = (ss.attrs & !DPL_MASK) | (3 << DPL_SHIFT);
    let (cs, rip) = if to_64 {
        (flat_code(base.wrapping_add(16) | 3, 3, true), rcx)
    } else {
        (flat_code(base | 3, 3, false), rcx & 0xffff_ffff)
    };
    if st.long_mode_active() {
        let r11 = st.gpr[R11];
        cpu.set_rflags(r11 & !(flags::RF | flags::VM));
    } else {
        let fl = cpu.rflags();
        cpu.set_rflags(fl | flags::IF);
    }
    cpu.fast_transfer(cs, ss, rip);
    Ok(())
}

fn sysenter(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let st = &cpu.state;
    let long = st.long_mode_active();
    if amd(cpu) && long {
        return Err(Fault::ud());
    }
    let cs = (st.msr.sysenter_cs as u16) & 0xfffc;
    if !st.protected() || cs == 0 {
        return Err(Fault::gp0());
    }
    let (mut sp, mut ip) = (st.msr.sysenter_esp, st.msr.sysenter_eip);
    if !long {
        sp &= 0xffff_ffff;
        ip &= 0xffff_ffff;
    }
    let fl = cpu.rflags();
    cpu.set_rflags(fl & !(flags::VM | flags::IF | flags::RF));
    cpu.state.gpr[RSP] = sp;
    cpu.fast_transfer(flat_code(cs, 0, long), flat_stack(cs.wrapping_add(8), 0), ip);
    Ok(())
}

fn sysexit(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let to_64 = insn.code() == Code::Sysexitq;
    let st = &cpu.state;
    if amd(cpu) && st.long_mode_active() {
        return Err(Fault::ud());
    }
    let msr_cs = st.msr.sysenter_cs as u16;
    if msr_cs & 0xfffc == 0 || !st.protected() || st.v86() || st.cpl() != 0 {
        return Err(Fault::gp0());
    }
    let (rcx, rdx) = (st.gpr[RCX], st.gpr[RDX]);
    let (cs_sel, sp, ip) = if to_64 {
        if !is_canonical(rcx) || !is_canonical(rdx) {
            return Err(Fault::gp0());
        }
        (msr_cs.wrapping_add(32) | 3, rcx, rdx)
    } else {
        (msr_cs.wrapping_add(16) | 3, rcx & 0xffff_ffff, rdx & 0xffff_ffff)
    };
    cpu.state.gpr[RSP] = sp;
    cpu.fast_transfer(flat_code(cs_sel, 3, to_64), flat_stack(cs_sel.wrapping_add(8), 3), ip);
    Ok(())
}
