//! MOVBE: a load or store that reverses the byte order (SDM Vol. 2, MOVBE). One operand is
//! always memory; 16-bit forms swap the two bytes and keep the register's upper bits.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    (insn.mnemonic() == Mnemonic::Movbe).then_some(movbe as Handler)
}

fn movbe(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let v = cpu.read_op(bus, insn, 1)?;
    let swapped = v.swap_bytes() >> (64 - 8 * size as u32);
    cpu.write_op(bus, insn, 0, swapped)
}
