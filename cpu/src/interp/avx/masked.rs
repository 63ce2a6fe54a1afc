//! Masked moves (VMASKMOVPS/PD, VPMASKMOVD/Q) and gathers (VPGATHERDD/DQ/QD/QQ,
//! VGATHERDPS/DPD/QPS/QPD), SDM Vol. 2. An element whose mask sign bit is clear is neither
//! read nor written and cannot fault.
//!
//! A gather loads its elements in order, clearing each one's mask element as it completes; a
//! fault on one leaves the completed elements (in the destination, cleared in the mask) so the
//! restarted instruction carries on from there, which is the one architectural exception to
//! "a faulting handler changes nothing". At the end the mask register is all zeros.

use super::super::sse::{is_wide_operand, ymm};
use super::{element, index, read, set_element, write, Y};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::interp::sse::{check_avx, set_vec};
use crate::interp::Handler;
use crate::mmu::Access;
use crate::operand::address_mask;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic as M, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        M::Vmaskmovps | M::Vpmaskmovd => |c, b, i| masked_move(c, b, i, 32),
        M::Vmaskmovpd | M::Vpmaskmovq => |c, b, i| masked_move(c, b, i, 64),
        M::Vpgatherdd | M::Vgatherdps => |c, b, i| gather(c, b, i, 32, 32),
        M::Vpgatherdq | M::Vgatherdpd => |c, b, i| gather(c, b, i, 64, 32),
        M::Vpgatherqd | M::Vgatherqps => |c, b, i| gather(c, b, i, 32, 64),
        M::Vpgatherqq | M::Vgatherqpd => |c, b, i| gather(c, b, i, 64, 64),
        _ => return None,
    })
}

fn selected(mask: Y, bits: u32, k: u32) -> bool {
    element(mask, bits, k) >> (bits - 1) & 1 != 0
}

/// Loads (`op x, mask, m`) zero the unselected elements; stores (`op m, mask, x`) leave
/// their memory alone. Every selected element is checked before anything changes.
fn masked_move(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    check_avx(cpu)?;
    let store = insn.op_kind(0) == OpKind::Memory;
    let mask = read(cpu, bus, insn, 1)?;
    let n = if is_wide_operand(insn, if store { 2 } else { 0 }) { 256 / bits } else { 128 / bits };
    let seg = cpu.memory_segment(insn);
    let base = cpu.effective_address(insn);
    let size = (bits / 8) as u8;
    let ctx = cpu.data_ctx();
    let mut lins = Vec::with_capacity(n as usize);
    for k in (0..n).filter(|&k| selected(mask, bits, k)) {
        let off = base.wrapping_add(k as u64 * size as u64) & address_mask(insn);
        let access = if store { Access::Write } else { Access::Read };
        let lin = cpu.linear(seg, off, size, access)?;
        if store {
            cpu.probe_write(bus, lin, size, ctx)?;
        }
        lins.push((k, lin));
    }
    if store {
        let data = read(cpu, bus, insn, 2)?;
        for (k, lin) in lins {
            cpu.write_lin(bus, lin, size, element(data, bits, k), ctx)?;
        }
        return Ok(());
    }
    let mut out: Y = [0; 2];
    for (k, lin) in lins {
        let v = cpu.read_lin(bus, lin, size, ctx)?;
        set_element(&mut out, bits, k, v);
    }
    write(cpu, insn, out);
    Ok(())
}

/// `op dest, [base + index*scale + disp], mask` with a vector of `index_bits` indices.
fn gather(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32, index_bits: u32) -> Result<()> {
    check_avx(cpu)?;
    let (dest, mask_reg, idx_reg) = (insn.op0_register(), insn.op2_register(), insn.memory_index());
    let (d, m, x) = (index(dest), index(mask_reg), index(idx_reg));
    if d == m || d == x || m == x {
        return Err(Fault::ud());
    }
    let dest_bits = if dest.is_ymm() { 256 } else { 128 };
    let idx_width = if idx_reg.is_ymm() { 256 } else { 128 };
    let n = (dest_bits / bits).min(idx_width / index_bits);
    let (i_lo, i_hi) = ymm(cpu, idx_reg);
    let indices: Y = [i_lo, if idx_reg.is_ymm() { i_hi } else { 0 }];
    let (v_lo, v_hi) = ymm(cpu, dest);
    let mut value: Y = [v_lo, if dest.is_ymm() { v_hi } else { 0 }];
    let (m_lo, m_hi) = ymm(cpu, mask_reg);
    let mut mask: Y = [m_lo, if dest.is_ymm() { m_hi } else { 0 }];
    let seg = cpu.memory_segment(insn);
    let mut base = insn.memory_displacement64();
    if insn.memory_base() != iced_x86::Register::None {
        base = base.wrapping_add(cpu.reg(insn.memory_base()));
    }
    let scale = insn.memory_index_scale() as u64;
    let size = (bits / 8) as u8;
    let ctx = cpu.data_ctx();
    let mut fault = None;
    for k in 0..n {
        if !selected(mask, bits, k) {
            continue;
        }
        let raw = element(indices, index_bits, k);
        let idx = if index_bits == 32 { raw as u32 as i32 as i64 as u64 } else { raw };
        let off = base.wrapping_add(idx.wrapping_mul(scale)) & address_mask(insn);
        let loaded = cpu.linear(seg, off, size, Access::Read).and_then(|lin| cpu.read_lin(bus, lin, size, ctx));
        match loaded {
            Ok(v) => {
                set_element(&mut value, bits, k, v);
                set_element(&mut mask, bits, k, 0);
            }
            Err(e) => {
                fault = Some(e);
                break;
            }
        }
    }
    // Elements past the index count (the upper half of a QD/QPS destination) are zeroed.
    for k in n..dest_bits / bits {
        set_element(&mut value, bits, k, 0);
        set_element(&mut mask, bits, k, 0);
    }
    if fault.is_none() {
        mask = [0; 2];
    }
    set_vec(cpu, insn, dest, value[0], value[1]);
    set_vec(cpu, insn, mask_reg, mask[0], mask[1]);
    fault.map_or(Ok(()), Err)
}
