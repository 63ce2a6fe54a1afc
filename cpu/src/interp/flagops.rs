//! Flag instructions: CLC STC CMC CLD STD CLI STI CLAC STAC PUSHF POPF, with the IOPL,
//! virtual-8086 and VME/PVI rules of the SDM's pseudo-code.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::state::{cr4, flags::*};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Clc => |c, _, _| set_cf(c, Some(false)),
        Mnemonic::Stc => |c, _, _| set_cf(c, Some(true)),
        Mnemonic::Cmc => |c, _, _| set_cf(c, None),
        Mnemonic::Cld => |c, _, _| {
            c.state.rflags &= !DF;
            Ok(())
        },
        Mnemonic::Std => |c, _, _| {
            c.state.rflags |= DF;
            Ok(())
        },
        Mnemonic::Cli => cli,
        Mnemonic::Sti => sti,
        Mnemonic::Clac => |c, _, _| set_ac(c, false),
        Mnemonic::Stac => |c, _, _| set_ac(c, true),
        Mnemonic::Pushf | Mnemonic::Pushfd | Mnemonic::Pushfq => pushf,
        Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq => popf,
        _ => return None,
    })
}

fn set_cf(cpu: &mut Cpu, v: Option<bool>) -> Result<()> {
    let cf = v.unwrap_or(!cpu.cf());
    cpu.set_arith_flags(CF, if cf { CF } else { 0 });
    Ok(())
}

fn set_ac(cpu: &mut Cpu, v: bool) -> Result<()> {
    if !cpu.model.has_smap() || cpu.state.v86() || cpu.state.cpl() != 0 {
        return Err(Fault::ud());
    }
    if v {
        cpu.state.rflags |= AC;
    } else {
        cpu.state.rflags &= !AC;
    }
    Ok(())
}

fn iopl(cpu: &Cpu) -> u8 {
    ((cpu.state.rflags & IOPL) >> IOPL_SHIFT) as u8
}

/// Which flag CLI/STI may change here: IF, VIF (VME/PVI), or neither (#GP).
fn interrupt_flag_target(cpu: &Cpu) -> Result<u64> {
    let st = &cpu.state;
    if !st.protected() {
        return Ok(IF);
    }
    if st.v86() {
        if iopl(cpu) == 3 {
            return Ok(IF);
        }
        if st.cr4 & cr4::VME != 0 {
            return Ok(VIF);
        }
        return Err(Fault::gp0());
    }
    if iopl(cpu) >= st.cpl() {
        return Ok(IF);
    }
    if st.cpl() == 3 && st.cr4 & cr4::PVI != 0 {
        return Ok(VIF);
    }
    Err(Fault::gp0())
}

fn cli(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let f = interrupt_flag_target(cpu)?;
    cpu.state.rflags &= !f;
    Ok(())
}

fn sti(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let f = interrupt_flag_target(cpu)?;
    if f == VIF && cpu.state.rflags & VIP != 0 {
        return Err(Fault::gp0());
    }
    if f == IF && cpu.state.rflags & IF == 0 {
        // Interrupts stay blocked until after the next instruction.
        cpu.interrupt_shadow_next();
    }
    cpu.state.rflags |= f;
    Ok(())
}

fn op_size(insn: &Instruction) -> u8 {
    insn.stack_pointer_increment().unsigned_abs() as u8
}

fn pushf(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = op_size(insn);
    let mut f = cpu.rflags();
    if cpu.state.v86() && iopl(cpu) < 3 {
        if cpu.state.cr4 & cr4::VME == 0 || size != 2 {
            return Err(Fault::gp0());
        }
        // VME: the image shows VIF as IF and IOPL as 3.
        f = (f & !IF) | if f & VIF != 0 { IF } else { 0 } | IOPL;
    }
    // The pushed image never shows VM or RF.
    f &= !(VM | RF);
    cpu.push(bus, size, f & crate::flags::size_mask(size))
}

fn popf(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = op_size(insn);
    let cur = cpu.rflags();
    let cpl = cpu.state.cpl();
    let io = iopl(cpu);
    let v = cpu.peek_stack(bus, 0, size)?;
    let mut changeable = WRITABLE & !(VIP | VIF | VM | RF);
    if cpu.state.v86() {
        if io == 3 {
            changeable &= !IOPL;
        } else if cpu.state.cr4 & cr4::VME != 0 && size == 2 {
            // VME: IF in the image goes to VIF; #GP if that would enable with VIP pending
            // or TF is set.
            if (v & IF != 0 && cur & VIP != 0) || v & TF != 0 {
                return Err(Fault::gp0());
            }
            let mask = 0xffff & !(IOPL | IF);
            let vif = if v & IF != 0 { VIF } else { 0 };
            cpu.adjust_sp(size as u64);
            cpu.set_rflags((cur & !mask & !VIF) | (v & mask) | vif);
            cpu.end_block = true;
            return Ok(());
        } else {
            return Err(Fault::gp0());
        }
    } else if cpl > 0 {
        changeable &= !IOPL;
        if cpl > io {
            changeable &= !IF;
        }
    }
    if size == 2 {
        changeable &= 0xffff;
    }
    cpu.adjust_sp(size as u64);
    cpu.set_rflags((cur & !changeable) | (v & changeable));
    // TF/IF/AC changes affect how the following instructions run.
    cpu.end_block = true;
    Ok(())
}
