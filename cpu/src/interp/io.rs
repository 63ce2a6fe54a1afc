//! Port I/O: IN, OUT (imm8 and DX ports; 8, 16 and 32 bits), INS and OUTS (with REP), under
//! the I/O permission rules (SDM Vol. 1, 19.5): in protected mode with CPL > IOPL, and always
//! in virtual-8086 mode, every port the access touches must have a clear bit in the TSS I/O
//! permission bitmap.
//!
//! After any OUT or OUTS the block ends (a device may have raised an interrupt that should be
//! taken now) and the memory map is re-synchronised (ports 0x92/0x64 move the A20 gate).
//!
//! The permission check of INS/OUTS happens once, before the first iteration and even when
//! rCX is 0 (as Bochs models it); INS probes its memory destination before reading the port
//! so a fault never loses a port read's side effects.

use super::string::{repeat, Rep, Str};
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::flags::size_mask;
use crate::mmu::{Access, Ctx};
use crate::operand::gpr_size;
use crate::segment::sys_type;
use crate::state::flags::{IOPL, IOPL_SHIFT};
use crate::state::reg::{RDI, RDX, RSI};
use crate::state::seg_attr::TYPE_MASK;
use crate::state::Seg;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, OpKind};

/// Offset of the I/O map base address field in a 32-bit or 64-bit TSS.
const TSS_IO_MAP_BASE: u64 = 0x66;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::In => port_in,
        Mnemonic::Out => port_out,
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => ins,
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => outs,
        _ => return None,
    })
}

/// Raises #GP(0) unless the current privilege may access `size` ports from `port`.
fn check_io_permission(cpu: &mut Cpu, bus: &mut dyn CpuBus, port: u16, size: u8) -> Result<()> {
    let st = &cpu.state;
    if !st.protected() {
        return Ok(());
    }
    let iopl = ((st.rflags & IOPL) >> IOPL_SHIFT) as u8;
    if !st.v86() && st.cpl() <= iopl {
        return Ok(());
    }
    // Only 32-bit (and 64-bit) TSSes have a bitmap.
    let tr = st.tr;
    let typ = tr.attrs & TYPE_MASK;
    if tr.unusable()
        || !matches!(typ, sys_type::TSS_AVAIL | sys_type::TSS_BUSY)
        || (tr.limit as u64) < TSS_IO_MAP_BASE + 1
    {
        return Err(Fault::gp0());
    }
    let lin_mask = cpu.lin_mask();
    let map = cpu.read_lin(bus, tr.base.wrapping_add(TSS_IO_MAP_BASE) & lin_mask, 2, Ctx::Supervisor)?;
    // The processor always reads two bytes of the map; both must lie within the TSS limit.
    let first = map + port as u64 / 8;
    if first + 1 > tr.limit as u64 {
        return Err(Fault::gp0());
    }
    let bits = cpu.read_lin(bus, tr.base.wrapping_add(first) & lin_mask, 2, Ctx::Supervisor)?;
    let wanted = ((1u64 << size) - 1) << (port & 7);
    if bits & wanted != 0 {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// The port operand: an 8-bit immediate or DX.
#[inline]
fn port_operand(cpu: &Cpu, insn: &Instruction, i: u32) -> u16 {
    match insn.op_kind(i) {
        OpKind::Register => cpu.state.gpr[RDX] as u16,
        _ => insn.immediate(i) as u16,
    }
}

/// After a port write: devices may have moved the A20 gate or remapped memory, or raised an
/// interrupt that should be taken before the next instruction.
fn after_port_write(cpu: &mut Cpu, bus: &mut dyn CpuBus) {
    cpu.sync_memory_map(bus);
    cpu.end_block = true;
}

fn port_in(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let reg = insn.op0_register();
    let size = gpr_size(reg);
    let port = port_operand(cpu, insn, 1);
    check_io_permission(cpu, bus, port, size)?;
    let v = bus.io_read(port, size) as u64 & size_mask(size);
    cpu.guest_io_access(port, size);
    cpu.set_reg(reg, v);
    Ok(())
}

fn port_out(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let reg = insn.op1_register();
    let size = gpr_size(reg);
    let port = port_operand(cpu, insn, 0);
    check_io_permission(cpu, bus, port, size)?;
    bus.io_write(port, size, (cpu.reg(reg) & size_mask(size)) as u32);
    cpu.guest_io_access(port, size);
    after_port_write(cpu, bus);
    Ok(())
}

/// INS: ES:[rDI] <- port DX.
fn ins(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let port = cpu.state.gpr[RDX] as u16;
    check_io_permission(cpu, bus, port, s.size)?;
    repeat(cpu, bus, &s, Rep::of(insn, false), |cpu, bus| {
        let lin = cpu.linear(Seg::Es, s.di(cpu), s.size, Access::Write)?;
        let ctx = cpu.data_ctx();
        cpu.probe_write(bus, lin, s.size, ctx)?;
        let v = bus.io_read(port, s.size) as u64 & size_mask(s.size);
        cpu.guest_io_access(port, s.size);
        cpu.write_lin(bus, lin, s.size, v, ctx)?;
        s.advance(cpu, RDI, 1);
        Ok(())
    })
}

/// OUTS: port DX <- [seg:rSI].
fn outs(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let seg = cpu.memory_segment(insn);
    let port = cpu.state.gpr[RDX] as u16;
    check_io_permission(cpu, bus, port, s.size)?;
    let r = repeat(cpu, bus, &s, Rep::of(insn, false), |cpu, bus| {
        let v = cpu.read_mem(bus, seg, s.si(cpu), s.size)?;
        bus.io_write(port, s.size, v as u32);
        cpu.guest_io_access(port, s.size);
        s.advance(cpu, RSI, 1);
        // The next element may be read through a changed memory map.
        cpu.sync_memory_map(bus);
        Ok(())
    });
    after_port_write(cpu, bus);
    r
}
