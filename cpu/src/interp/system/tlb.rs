//! INVLPG and INVPCID (SDM Vol. 2 "INVLPG", "INVPCID"; Vol. 3, 4.10.4.1).

use super::{require_cpl0, Handler};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::segment::is_canonical;
use crate::state::{cr4, Seg};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Invlpg => invlpg,
        Mnemonic::Invpcid => invpcid,
        _ => return None,
    })
}

fn invlpg(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    // The operand only names a linear address: no limit or canonical checks, no access
    // (an INVLPG of a non-canonical address is a no-op).
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let base = cpu.state.seg(seg).base;
    let lin = if !cpu.state.in_64bit() {
        base.wrapping_add(off) & 0xffff_ffff
    } else if matches!(seg, Seg::Fs | Seg::Gs) {
        base.wrapping_add(off)
    } else {
        off
    };
    cpu.flush_tlb_page(lin);
    // Decoded instructions later in this block may sit on the page whose mapping changed.
    cpu.end_block = true;
    Ok(())
}

/// INVPCID types (the register operand).
const INDIVIDUAL: u64 = 0;
const SINGLE_CONTEXT: u64 = 1;
const ALL_WITH_GLOBAL: u64 = 2;
const ALL_BUT_GLOBAL: u64 = 3;

/// INVPCID type, [PCID (bits 11:0, 63:12 reserved), linear address]: #UD in virtual-8086
/// mode, #GP(0) at CPL > 0, for a type above 3, reserved descriptor bits, a non-canonical
/// address with type 0, or a PCID other than 000H with type 0 or 1 while CR4.PCIDE is clear.
fn invpcid(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    if cpu.state.v86() {
        return Err(Fault::ud());
    }
    require_cpl0(cpu)?;
    let kind = cpu.reg(insn.op0_register());
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let desc = cpu.read_mem(bus, seg, off, 8)?;
    let lin = cpu.read_mem(bus, seg, off.wrapping_add(8), 8)?;
    let pcid = (desc & 0xfff) as u16;
    let pcide = cpu.state.cr4 & cr4::PCIDE != 0;
    let bad = kind > ALL_BUT_GLOBAL
        || desc >> 12 != 0
        || (kind == INDIVIDUAL && !is_canonical(lin))
        || (kind <= SINGLE_CONTEXT && !pcide && pcid != 0);
    if bad {
        return Err(Fault::gp0());
    }
    cpu.catch_up_code();
    match kind {
        INDIVIDUAL => cpu.flush_pcid(pcid, Some(lin)),
        SINGLE_CONTEXT => cpu.flush_pcid(pcid, None),
        ALL_WITH_GLOBAL => cpu.flush_all_tlbs(),
        _ => cpu.flush_all_pcids_but_global(),
    }
    // Jump-cache entries and links for non-global pages go with the TLB's translations; the
    // global ones only with a flush of global translations.
    if kind == ALL_WITH_GLOBAL {
        cpu.code.flush_jump_cache();
    }
    cpu.end_block = true;
    Ok(())
}
