//! CLFLUSH, CLFLUSHOPT and CLWB (SDM Vol. 2). Caches are not modelled, so nothing is flushed,
//! but the operand is checked as the hardware checks it: segment limits and canonical form,
//! then a page walk as for a byte read (a non-present or supervisor page faults; no write
//! permission is needed). The byte is not read, so MMIO sees no access.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::mmu::Access;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    matches!(insn.mnemonic(), Mnemonic::Clflush | Mnemonic::Clflushopt | Mnemonic::Clwb).then_some(check_line as Handler)
}

fn check_line(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin = cpu.linear(seg, off, 1, Access::Read)?;
    let ctx = cpu.data_ctx();
    cpu.translate(bus, lin, Access::Read, ctx)?;
    Ok(())
}
