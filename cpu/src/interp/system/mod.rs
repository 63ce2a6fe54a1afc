//! Instruction family: system instructions (SDM Vol. 2 and Vol. 3).
//!
//! - `control`: MOV to/from control and debug registers, LMSW, SMSW, CLTS.
//! - `tables`: LGDT LIDT SGDT SIDT LLDT SLDT LTR STR, LAR LSL VERR VERW, ARPL.
//! - `misc`: RDMSR WRMSR CPUID RDTSC RDTSCP RDPMC XGETBV XSETBV SWAPGS, FS/GS base access.
//! - `fastcall`: SYSCALL SYSRET SYSENTER SYSEXIT.
//! - `tlb`: INVLPG, INVPCID.
//! - `pku`: RDPKRU, WRPKRU.
//! - here: HLT, INVD, WBINVD, and the privilege checks the others share.
//!
//! MONITOR/MWAIT are not advertised by any model, so they stay #UD (the CPUID gate in
//! `handler_for` turns them into #UD before lookup).

mod control;
mod fastcall;
mod misc;
mod pku;
mod tables;
mod tlb;

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::state::cr4;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Mov => return control::lookup_mov(insn),
        Mnemonic::Hlt => hlt,
        Mnemonic::Invlpg | Mnemonic::Invpcid => return tlb::lookup(insn),
        Mnemonic::Rdpkru | Mnemonic::Wrpkru => return pku::lookup(insn),
        // Caches are not modelled: with CPL 0 these are no-ops.
        Mnemonic::Invd | Mnemonic::Wbinvd => |c, _, _| require_cpl0(c),
        Mnemonic::Clts | Mnemonic::Lmsw | Mnemonic::Smsw => return control::lookup(insn),
        Mnemonic::Lgdt
        | Mnemonic::Lidt
        | Mnemonic::Sgdt
        | Mnemonic::Sidt
        | Mnemonic::Lldt
        | Mnemonic::Sldt
        | Mnemonic::Ltr
        | Mnemonic::Str
        | Mnemonic::Lar
        | Mnemonic::Lsl
        | Mnemonic::Verr
        | Mnemonic::Verw
        | Mnemonic::Arpl => return tables::lookup(insn),
        Mnemonic::Rdmsr
        | Mnemonic::Wrmsr
        | Mnemonic::Cpuid
        | Mnemonic::Rdtsc
        | Mnemonic::Rdtscp
        | Mnemonic::Rdpid
        | Mnemonic::Rdpmc
        | Mnemonic::Xgetbv
        | Mnemonic::Xsetbv
        | Mnemonic::Swapgs
        | Mnemonic::Rdfsbase
        | Mnemonic::Rdgsbase
        | Mnemonic::Wrfsbase
        | Mnemonic::Wrgsbase => return misc::lookup(insn),
        Mnemonic::Syscall
        | Mnemonic::Sysret
        | Mnemonic::Sysretq
        | Mnemonic::Sysenter
        | Mnemonic::Sysexit
        | Mnemonic::Sysexitq => return fastcall::lookup(insn),
        _ => return None,
    })
}

/// Privileged instructions: allowed in real mode and at CPL 0; #GP(0) at CPL > 0 and in
/// virtual-8086 mode (where CPL is 3).
fn require_cpl0(cpu: &Cpu) -> Result<()> {
    if cpu.state.protected() && (cpu.state.v86() || cpu.state.cpl() != 0) {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// Instructions "not recognized in real-address or virtual-8086 mode" (LLDT, LAR, ...): #UD.
fn require_protected(cpu: &Cpu) -> Result<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(Fault::ud());
    }
    Ok(())
}

/// User-mode instruction prevention (SDM Vol. 3, 2.5): with CR4.UMIP set, SGDT, SIDT, SLDT,
/// SMSW and STR raise #GP(0) at CPL > 0 (including virtual-8086 mode).
fn check_umip(cpu: &Cpu) -> Result<()> {
    if cpu.state.cr4 & cr4::UMIP != 0 && cpu.state.protected() && (cpu.state.v86() || cpu.state.cpl() > 0) {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// Whether the model follows AMD's variants of the fast system-call instructions.
fn amd(cpu: &Cpu) -> bool {
    cpu.model.is_amd()
}

fn hlt(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    // RIP advances past HLT; the run loop returns `Halted` until an interrupt arrives.
    cpu.halted = true;
    cpu.end_block = true;
    Ok(())
}
