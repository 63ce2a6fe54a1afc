//! Memory operands wider than 8 bytes (m80, environments, save areas). Writes probe every
//! page first, so a fault leaves memory and registers untouched (faults are restartable).

use crate::bus::CpuBus;
use crate::exception::Result;
use crate::mmu::Access;
use crate::state::Seg;
use crate::Cpu;
use iced_x86::Instruction;

/// Segment and offset of the instruction's memory operand.
pub fn operand(cpu: &Cpu, insn: &Instruction) -> (Seg, u64) {
    (cpu.memory_segment(insn), cpu.effective_address(insn))
}

/// Linear addresses of the (up to 8-byte) pieces of `len` bytes at seg:off, with the segment
/// checks of each piece.
fn pieces(cpu: &Cpu, seg: Seg, off: u64, len: usize, access: Access) -> Result<Vec<(u64, u8)>> {
    let mut out = Vec::with_capacity(len.div_ceil(8));
    let mut i = 0;
    while i < len {
        let n = (len - i).min(8) as u8;
        out.push((cpu.linear(seg, off.wrapping_add(i as u64), n, access)?, n));
        i += n as usize;
    }
    Ok(out)
}

pub fn read_bytes(cpu: &mut Cpu, bus: &mut dyn CpuBus, seg: Seg, off: u64, buf: &mut [u8]) -> Result<()> {
    let ctx = cpu.data_ctx();
    let mut at = 0;
    for (lin, n) in pieces(cpu, seg, off, buf.len(), Access::Read)? {
        let v = cpu.read_lin(bus, lin, n, ctx)?;
        buf[at..at + n as usize].copy_from_slice(&v.to_le_bytes()[..n as usize]);
        at += n as usize;
    }
    Ok(())
}

pub fn write_bytes(cpu: &mut Cpu, bus: &mut dyn CpuBus, seg: Seg, off: u64, buf: &[u8]) -> Result<()> {
    let ctx = cpu.data_ctx();
    let ps = pieces(cpu, seg, off, buf.len(), Access::Write)?;
    for &(lin, n) in &ps {
        cpu.probe_write(bus, lin, n, ctx)?;
    }
    let mut at = 0;
    for (lin, n) in ps {
        let mut b = [0u8; 8];
        b[..n as usize].copy_from_slice(&buf[at..at + n as usize]);
        cpu.write_lin(bus, lin, n, u64::from_le_bytes(b), ctx)?;
        at += n as usize;
    }
    Ok(())
}

/// Reads `N` bytes of the instruction's memory operand.
pub fn read_op<const N: usize>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<[u8; N]> {
    let (seg, off) = operand(cpu, insn);
    let mut b = [0u8; N];
    read_bytes(cpu, bus, seg, off, &mut b)?;
    Ok(b)
}

pub fn write_op(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bytes: &[u8]) -> Result<()> {
    let (seg, off) = operand(cpu, insn);
    write_bytes(cpu, bus, seg, off, bytes)
}

/// Reads the instruction's memory operand of 2, 4 or 8 bytes as an integer.
pub fn read_int(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<u64> {
    let (seg, off) = operand(cpu, insn);
    let size = insn.memory_size().size() as u8;
    cpu.read_mem(bus, seg, off, size)
}

pub fn write_int(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, size: u8, v: u64) -> Result<()> {
    let (seg, off) = operand(cpu, insn);
    cpu.write_mem(bus, seg, off, size, v)
}
