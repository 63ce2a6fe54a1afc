//! Instruction family: system (HLT only so far; the rest raises #UD).

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Hlt => hlt,
        _ => return None,
    })
}

fn hlt(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.state.protected() && cpu.state.cpl() != 0 {
        return Err(Fault::gp0());
    }
    cpu.halted = true;
    cpu.end_block = true;
    Ok(())
}
