//! RETF and RETF imm16 (SDM Vol. 2 RET, far forms): real and virtual-8086 mode, return to
//! the same privilege level, and return to an outer level popping SS:eSP.

use super::{check_return_cs, check_return_ss, ip_mask};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::state::{reg::RSP, Seg};
use crate::Cpu;
use iced_x86::{Code, Instruction};

pub(super) fn retf(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let (size, imm): (u8, u64) = match insn.code() {
        Code::Retfw => (2, 0),
        Code::Retfd => (4, 0),
        Code::Retfq => (8, 0),
        Code::Retfw_imm16 => (2, insn.immediate16() as u64),
        Code::Retfd_imm16 => (4, insn.immediate16() as u64),
        _ => (8, insn.immediate16() as u64),
    };
    cpu.end_block = true;
    let s = size as u64;
    let eip = cpu.peek_stack(bus, 0, size)? & ip_mask(size);
    let cs_sel = cpu.peek_stack(bus, s, size)? as u16;
    if !cpu.state.protected() || cpu.state.v86() {
        if eip > cpu.state.seg(Seg::Cs).limit as u64 {
            return Err(Fault::gp0());
        }
        cpu.load_cs_real(cs_sel);
        cpu.next_rip = eip;
        cpu.adjust_sp(2 * s + imm);
        return Ok(());
    }
    let desc = check_return_cs(cpu, bus, cs_sel)?;
    let cpl = cpu.state.cpl();
    let rpl = (cs_sel & 3) as u8;
    let target64 = cpu.targets_64bit(&desc);
    if rpl == cpl {
        cpu.check_target_ip(eip, &desc, 0)?;
        cpu.set_descriptor_accessed(bus, cs_sel, desc)?;
        cpu.load_cs(cs_sel, desc, cpl);
        cpu.next_rip = eip;
        cpu.adjust_sp(2 * s + imm);
        return Ok(());
    }
    // RETURN-TO-OUTER-PRIVILEGE-LEVEL: the caller's SS:eSP sits above the parameters.
    let new_sp = cpu.peek_stack(bus, 2 * s + imm, size)?;
    let ss_sel = cpu.peek_stack(bus, 3 * s + imm, size)? as u16;
    let ss = check_return_ss(cpu, bus, ss_sel, rpl, target64, false)?;
    cpu.check_target_ip(eip, &desc, 0)?;
    cpu.set_descriptor_accessed(bus, cs_sel, desc)?;
    let orig_rsp = cpu.state.gpr[RSP];
    cpu.state.seg[Seg::Ss as usize] = ss;
    cpu.load_cs(cs_sel, desc, rpl);
    cpu.next_rip = eip;
    cpu.set_return_sp(orig_rsp, new_sp, imm, &ss, target64);
    cpu.null_inaccessible_segments();
    Ok(())
}
