//! Instruction family: the x87 FPU (SDM Vol. 1, chapter 8; Vol. 2 F*), plus the state
//! save/restore instructions that cover it (FXSAVE/FXRSTOR, XSAVE/XRSTOR for the x87 and SSE
//! components) and EMMS.
//!
//! Arithmetic is exact 80-bit soft-float (`float`, `ops`): results, flags and C1 match
//! hardware bit for bit under every rounding and precision control. Transcendentals use host
//! f64 math (see `transcendental`). Exceptions follow SDM Vol. 1, 8.4-8.7: masked ones
//! deliver the default response; unmasked ones set ES/B and are reported as #MF by the next
//! waiting x87 instruction when CR0.NE = 1. With CR0.NE = 0, hardware would signal FERR# to
//! the interrupt controller (IRQ13); that legacy path is not modelled and the exception
//! simply stays pending in FSW.
//!
//! FIP/FCS/FOP are updated by every non-control instruction and FDP/FDS by those with a
//! memory operand (as on the P6 family and on the AMD host the tests run on; Intel's
//! "FOP only on unmasked exceptions" default since the Pentium 4 is not modelled).

mod arith;
mod compare;
mod control;
mod env;
pub(crate) mod float;
mod load_store;
mod mem;
pub(crate) mod ops;
pub(crate) mod stack;
mod transcendental;
pub(crate) mod xsave;
mod xsave_ext;
pub(crate) use xsave_ext::in_use;

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::state::{cr0, FpuState, Seg};
use crate::Cpu;
use float::{exc, Env};
use iced_x86::Instruction;
use stack::fsw;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    load_store::lookup(insn)
        .or_else(|| arith::lookup(insn))
        .or_else(|| compare::lookup(insn))
        .or_else(|| transcendental::lookup(insn))
        .or_else(|| control::lookup(insn))
        .or_else(|| env::lookup(insn))
        .or_else(|| xsave::lookup(insn))
}

/// #NM for x87 instructions: CR0.EM (no FPU, emulate) or CR0.TS (lazy context switch).
fn check_available(cpu: &Cpu) -> Result<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Fault::exc(vector::NM));
    }
    Ok(())
}

/// A pending unmasked exception is reported as #MF by waiting instructions when CR0.NE = 1.
fn check_pending(cpu: &Cpu) -> Result<()> {
    if cpu.state.fpu.fsw & fsw::ES != 0 && cpu.state.cr0 & cr0::NE != 0 {
        return Err(Fault::exc(vector::MF));
    }
    Ok(())
}

/// Start of a waiting x87 instruction: #NM, then pending #MF.
fn begin(cpu: &Cpu) -> Result<()> {
    check_available(cpu)?;
    check_pending(cpu)
}

/// Start of a non-waiting (FN*) control instruction: only #NM.
fn begin_nowait(cpu: &Cpu) -> Result<()> {
    check_available(cpu)
}

/// The environment of register arithmetic under the current FCW.
fn env_of(f: &FpuState) -> Env {
    Env::from_fcw(f.fcw)
}

/// Whether `flags` hold an unmasked pre-computation exception (invalid, denormal, divide by
/// zero): the destination and stack are then left unchanged.
fn aborts(f: &FpuState, flags: u16) -> bool {
    flags & (exc::IE | exc::DE | exc::ZE) & !f.fcw != 0
}

/// Whether a store to memory is suppressed: a pre-computation exception, or an unmasked
/// overflow/underflow (memory destinations receive no biased result).
fn store_suppressed(f: &FpuState, flags: u16) -> bool {
    aborts(f, flags) || flags & (exc::OE | exc::UE) & !f.fcw != 0
}

/// Records an operation's flags in FSW: sticky exception bits, C1 (rounded up / stack
/// overflow), and ES/B when any raised exception is unmasked.
fn raise(f: &mut FpuState, flags: u16) {
    let ex = flags & (exc::ALL | exc::SF);
    f.fsw = (f.fsw & !fsw::C1) | ex | (flags & exc::C1);
    if ex & exc::ALL & !f.fcw != 0 {
        f.fsw |= fsw::ES | fsw::B;
    }
}

/// Recomputes ES and B after FCW or FSW were loaded wholesale.
fn update_summary(f: &mut FpuState) {
    if f.fsw & exc::ALL & !f.fcw != 0 {
        f.fsw |= fsw::ES | fsw::B;
    } else {
        f.fsw &= !(fsw::ES | fsw::B);
    }
}

/// Flags of a stack underflow (empty source register): invalid with SF, C1 = 0.
const UNDERFLOW: u16 = exc::IE | exc::SF;
/// Flags of a stack overflow (push onto a full register): invalid with SF, C1 = 1.
const OVERFLOW: u16 = exc::IE | exc::SF | exc::C1;

/// The 11-bit FOP of the instruction at RIP: the low 3 bits of its D8-DF opcode byte and the
/// ModRM byte. Read back from the code bytes (iced keeps no ModRM); 0 if unreadable.
fn fop_of(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> u16 {
    let cs = cpu.state.seg(Seg::Cs).base;
    let lin = cs.wrapping_add(cpu.state.rip) & cpu.lin_mask();
    let ctx = cpu.code_ctx();
    let mut prev: Option<u8> = None;
    for i in 0..(insn.len() as u64).min(15) {
        let Ok(b) = cpu.read_lin(bus, lin.wrapping_add(i) & cpu.lin_mask(), 1, ctx) else {
            return 0;
        };
        let b = b as u8;
        if let Some(op) = prev {
            return ((op as u16 & 7) << 8) | b as u16;
        }
        if (0xd8..=0xdf).contains(&b) {
            prev = Some(b);
        }
    }
    0
}

/// Records the last non-control instruction's address and opcode (and its data operand's
/// address when it has one).
fn note(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, has_mem: bool) {
    let fop = fop_of(cpu, bus, insn);
    let rip = cpu.state.rip;
    let cs = cpu.state.seg(Seg::Cs).selector;
    let (ds, dp) =
        if has_mem { (cpu.state.seg(cpu.memory_segment(insn)).selector, cpu.effective_address(insn)) } else { (0, 0) };
    let f = &mut cpu.state.fpu;
    f.fop = fop;
    f.fip = rip;
    f.fcs = cs;
    if has_mem {
        f.fdp = dp;
        f.fds = ds;
    }
}

/// ST register index of operand `i` (ST0..ST7).
fn sti(insn: &Instruction, i: u32) -> usize {
    (insn.op_register(i) as u32).wrapping_sub(iced_x86::Register::ST0 as u32) as usize & 7
}
