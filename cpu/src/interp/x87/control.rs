//! Control instructions: FINIT/FNINIT, FLDCW, FSTCW, FSTSW (memory and AX), FCLEX, WAIT,
//! FNOP (and the 8087/287 FENI/FDISI/FSETPM, no-ops since the 387), FINCSTP, FDECSTP, FFREE(P)
//! and EMMS. Control instructions leave FIP/FDP/FOP alone, except FINCSTP, FDECSTP, FFREE and
//! FNOP, which record FIP/FOP like arithmetic (as the host x87 does).

use super::stack::{fsw, FCW_INIT};
use super::{begin, begin_nowait, check_pending, mem, update_summary};
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::state::{cr0, FpuState};
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        Finit => |c, _, _| {
            begin(c)?;
            init(&mut c.state.fpu);
            Ok(())
        },
        Fninit => |c, _, _| {
            begin_nowait(c)?;
            init(&mut c.state.fpu);
            Ok(())
        },
        Fldcw => fldcw,
        Fstcw | Fnstcw => fstcw,
        Fstsw | Fnstsw => fstsw,
        Fclex | Fnclex => fclex,
        Wait => wait,
        Fnop => |c, b, i| {
            begin(c)?;
            super::note(c, b, i, false);
            Ok(())
        },
        Feni | Fneni | Fdisi | Fndisi | Fsetpm | Fnsetpm | Frstpm => |c, _, _| begin(c),
        Fincstp | Fdecstp => fincdec,
        Ffree | Ffreep => ffree,
        Emms => emms,
        _ => return None,
    })
}

/// The state after FNINIT (SDM Vol. 1, Table 8-1): registers keep their contents, all empty.
pub(super) fn init(f: &mut FpuState) {
    f.fcw = FCW_INIT;
    f.fsw = 0;
    f.ftw = 0xffff;
    f.fop = 0;
    f.fip = 0;
    f.fdp = 0;
    f.fcs = 0;
    f.fds = 0;
}

/// FCW bits software can set; bit 6 always reads as 1 (reserved bits 13-15 read as 0).
pub(super) fn sanitize_fcw(v: u16) -> u16 {
    (v & 0x1f3f) | 0x0040
}

/// Whether the FN* form (no wait) was decoded; the waiting forms first check for pending
/// exceptions.
fn no_wait(insn: &Instruction) -> bool {
    matches!(insn.mnemonic(), Mnemonic::Fnstcw | Mnemonic::Fnstsw | Mnemonic::Fnclex)
}

fn start(cpu: &Cpu, insn: &Instruction) -> Result<()> {
    if no_wait(insn) {
        begin_nowait(cpu)
    } else {
        begin(cpu)
    }
}

fn fldcw(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let v = mem::read_int(cpu, bus, insn)? as u16;
    let f = &mut cpu.state.fpu;
    f.fcw = sanitize_fcw(v);
    update_summary(f);
    Ok(())
}

fn fstcw(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    start(cpu, insn)?;
    let v = cpu.state.fpu.fcw;
    mem::write_int(cpu, bus, insn, 2, v as u64)
}

fn fstsw(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    start(cpu, insn)?;
    let v = cpu.state.fpu.fsw;
    if insn.op_kind(0) == OpKind::Register {
        cpu.set_reg(iced_x86::Register::AX, v as u64);
        Ok(())
    } else {
        mem::write_int(cpu, bus, insn, 2, v as u64)
    }
}

fn fclex(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    start(cpu, insn)?;
    // Exception flags, SF, ES and B cleared; condition codes and TOP kept.
    cpu.state.fpu.fsw &= fsw::CC | fsw::TOP;
    Ok(())
}

/// WAIT/FWAIT: #NM only when both CR0.MP and CR0.TS are set; then pending exceptions.
fn wait(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.state.cr0 & (cr0::MP | cr0::TS) == (cr0::MP | cr0::TS) {
        return Err(Fault::exc(vector::NM));
    }
    check_pending(cpu)
}

fn fincdec(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let step = if insn.code() == Code::Fincstp { 1 } else { 7 };
    f.set_top(f.top() + step);
    f.fsw &= !fsw::C1;
    super::note(cpu, bus, insn, false);
    Ok(())
}

fn ffree(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let r = f.phys(super::sti(insn, 0));
    f.set_phys_tag(r, super::stack::tag::EMPTY);
    if insn.mnemonic() == Mnemonic::Ffreep {
        f.set_top(f.top() + 1);
    }
    super::note(cpu, bus, insn, false);
    Ok(())
}

/// EMMS: an MMX instruction (CR0.EM → #UD) that empties the whole register file.
fn emms(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.state.cr0 & cr0::EM != 0 {
        return Err(Fault::ud());
    }
    if cpu.state.cr0 & cr0::TS != 0 {
        return Err(Fault::exc(vector::NM));
    }
    check_pending(cpu)?;
    cpu.state.fpu.emms();
    Ok(())
}
