//! Descriptor-table registers and selector inspection: LGDT LIDT SGDT SIDT LLDT SLDT LTR
//! STR, LAR LSL VERR VERW, ARPL (SDM Vol. 2; Vol. 3 chapters 3, 5 and 7).

use super::{check_umip, require_cpl0, require_protected, Handler};
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::{Access, Ctx};
use crate::operand::Loc;
use crate::segment::{is_canonical, sel_code, sys_type, Descriptor};
use crate::state::{flags, seg_attr::*, Segment, TableReg};
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Lgdt => |c, b, i| load_table_reg(c, b, i, false),
        Mnemonic::Lidt => |c, b, i| load_table_reg(c, b, i, true),
        Mnemonic::Sgdt => |c, b, i| store_table_reg(c, b, i, false),
        Mnemonic::Sidt => |c, b, i| store_table_reg(c, b, i, true),
        Mnemonic::Lldt => lldt,
        Mnemonic::Ltr => ltr,
        Mnemonic::Sldt => |c, b, i| store_selector(c, b, i, true),
        Mnemonic::Str => |c, b, i| store_selector(c, b, i, false),
        Mnemonic::Lar => lar,
        Mnemonic::Lsl => lsl,
        Mnemonic::Verr => |c, b, i| verify(c, b, i, false),
        Mnemonic::Verw => |c, b, i| verify(c, b, i, true),
        Mnemonic::Arpl => arpl,
        _ => return None,
    })
}

/// Type field of a system descriptor's upper 8 bytes in IA-32e mode (must be 0).
const UPPER_TYPE_MASK: u64 = 0x1f << 40;
/// The busy bit of a TSS descriptor (type bit 1).
const TSS_BUSY: u64 = 1 << 41;
/// LAR returns the second descriptor dword masked by 00FxFF00H; the SDM leaves bits 19:16
/// (the limit's top) undefined, and Intel processors return them, as we do.
const LAR_MASK: u64 = 0x00ff_ff00;

/// Bytes of base address in the LGDT/LIDT/SGDT/SIDT memory operand (after the 2-byte limit).
fn base_size(insn: &Instruction) -> u8 {
    match insn.code() {
        Code::Lgdt_m1664 | Code::Lidt_m1664 | Code::Sgdt_m1664 | Code::Sidt_m1664 => 8,
        _ => 4,
    }
}

fn load_table_reg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, idt: bool) -> Result<()> {
    require_cpl0(cpu)?;
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let size = base_size(insn);
    let limit = cpu.read_mem(bus, seg, off, 2)? as u16;
    let mut base = cpu.read_mem(bus, seg, off.wrapping_add(2), size)?;
    if matches!(insn.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
        // 16-bit operand size: a 24-bit base.
        base &= 0xff_ffff;
    }
    if size == 8 && !is_canonical(base) {
        return Err(Fault::gp0());
    }
    let reg = TableReg { base, limit };
    if idt {
        cpu.state.idtr = reg;
    } else {
        cpu.state.gdtr = reg;
    }
    Ok(())
}

/// SGDT/SIDT: the limit, then a 4-byte base (16- and 32-bit operand sizes alike, as current
/// processors do) or an 8-byte base in 64-bit mode. Both stores are checked before either
/// is made.
fn store_table_reg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, idt: bool) -> Result<()> {
    check_umip(cpu)?;
    let reg = if idt { cpu.state.idtr } else { cpu.state.gdtr };
    let size = base_size(insn);
    let base = if size == 4 { reg.base & 0xffff_ffff } else { reg.base };
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin_limit = cpu.linear(seg, off, 2, Access::Write)?;
    let lin_base = cpu.linear(seg, off.wrapping_add(2), size, Access::Write)?;
    let ctx = cpu.data_ctx();
    cpu.probe_write(bus, lin_limit, 2, ctx)?;
    cpu.probe_write(bus, lin_base, size, ctx)?;
    cpu.write_lin(bus, lin_limit, 2, reg.limit as u64, ctx)?;
    cpu.write_lin(bus, lin_base, size, base, ctx)
}

/// SLDT/STR: a register destination gets the selector zero-extended (16-bit registers keep
/// their upper bits); memory gets 16 bits.
fn store_selector(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, ldt: bool) -> Result<()> {
    require_protected(cpu)?;
    check_umip(cpu)?;
    let selector = if ldt { cpu.state.ldtr.selector } else { cpu.state.tr.selector };
    cpu.write_op(bus, insn, 0, selector as u64)
}

/// The GDT system descriptor LLDT/LTR load, as a segment cache with the full base:
/// #GP(selector) for LDT selectors, selectors beyond the GDT limit, wrong types and (in
/// IA-32e mode, where system descriptors take 16 bytes) a non-zero upper type field or a
/// non-canonical base; #NP(selector) when not present.
fn load_system_descriptor(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    sel: u16,
    types: &[u32],
) -> Result<(Descriptor, Segment)> {
    let err = Fault::gp(sel_code(sel));
    if sel & 4 != 0 {
        return Err(err);
    }
    let desc = cpu.read_descriptor(bus, sel, vector::GP)?;
    if !desc.is_system() || !types.contains(&desc.typ()) {
        return Err(err);
    }
    let mut seg = desc.to_segment(sel);
    if cpu.state.long_mode_active() {
        let high = cpu.read_descriptor_high(bus, sel, vector::GP)?;
        seg.base |= high << 32;
        if high & UPPER_TYPE_MASK != 0 || !is_canonical(seg.base) {
            return Err(err);
        }
    }
    if !desc.present() {
        return Err(Fault::np(sel_code(sel)));
    }
    Ok((desc, seg))
}

fn lldt(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_protected(cpu)?;
    require_cpl0(cpu)?;
    let sel = cpu.read_op(bus, insn, 0)? as u16;
    if sel & 0xfffc == 0 {
        // A null selector marks LDTR invalid; later LDT references fault.
        cpu.state.ldtr = Segment { selector: sel, attrs: UNUSABLE, limit: 0, base: 0 };
        return Ok(());
    }
    let (_, seg) = load_system_descriptor(cpu, bus, sel, &[sys_type::LDT])?;
    cpu.state.ldtr = seg;
    Ok(())
}

fn ltr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_protected(cpu)?;
    require_cpl0(cpu)?;
    let sel = cpu.read_op(bus, insn, 0)? as u16;
    if sel & 0xfffc == 0 {
        return Err(Fault::gp0());
    }
    // Only an available TSS; 16-bit TSSs do not exist in IA-32e mode.
    let types: &[u32] = if cpu.state.long_mode_active() {
        &[sys_type::TSS_AVAIL]
    } else {
        &[sys_type::TSS16_AVAIL, sys_type::TSS_AVAIL]
    };
    let (desc, mut seg) = load_system_descriptor(cpu, bus, sel, types)?;
    // The descriptor is marked busy in the GDT (a locked read-modify-write on hardware).
    cpu.write_descriptor(bus, sel, Descriptor(desc.0 | TSS_BUSY))?;
    seg.attrs |= (TSS_BUSY >> 40) as u32;
    cpu.state.tr = seg;
    Ok(())
}

/// The descriptor LAR/LSL/VERR/VERW examine, or `None` where they just clear ZF: a null
/// selector, an LDT selector without a valid LDT, or an index beyond the table limit.
/// Faults reading the table (#PF) are raised.
fn peek_descriptor(cpu: &mut Cpu, bus: &mut dyn CpuBus, sel: u16, offset: u64) -> Result<Option<u64>> {
    if sel & 0xfffc == 0 {
        return Ok(None);
    }
    let (base, limit) = if sel & 4 != 0 {
        let ldtr = &cpu.state.ldtr;
        if ldtr.unusable() || ldtr.selector & 0xfffc == 0 {
            return Ok(None);
        }
        (ldtr.base, ldtr.limit as u64)
    } else {
        (cpu.state.gdtr.base, cpu.state.gdtr.limit as u64)
    };
    let off = (sel & 0xfff8) as u64 + offset;
    if off + 7 > limit {
        return Ok(None);
    }
    let lin = base.wrapping_add(off) & cpu.lin_mask();
    Ok(Some(cpu.read_lin(bus, lin, 8, Ctx::Supervisor)?))
}

/// The selector's descriptor if it passes the checks common to LAR and LSL: a code/data
/// segment, or a system descriptor of a type in `legacy`/`ia32e` (per mode), visible at
/// CPL and RPL unless conforming code. In IA-32e mode a system descriptor is 16 bytes: its
/// upper half must be in the table with a zero type field.
fn inspect(cpu: &mut Cpu, bus: &mut dyn CpuBus, sel: u16, legacy: &[u32], ia32e: &[u32]) -> Result<Option<Descriptor>> {
    let Some(raw) = peek_descriptor(cpu, bus, sel, 0)? else { return Ok(None) };
    let d = Descriptor(raw);
    let long = cpu.state.long_mode_active();
    if d.is_system() {
        if !(if long { ia32e } else { legacy }).contains(&d.typ()) {
            return Ok(None);
        }
        if long && !matches!(peek_descriptor(cpu, bus, sel, 8)?, Some(high) if high & UPPER_TYPE_MASK == 0) {
            return Ok(None);
        }
    }
    Ok(visible(cpu, d, sel).then_some(d))
}

/// DPL ≥ max(CPL, RPL), which conforming code segments do not need.
fn visible(cpu: &Cpu, d: Descriptor, sel: u16) -> bool {
    let conforming = !d.is_system() && d.typ() & (TYPE_CODE | TYPE_EXPAND_DOWN) == (TYPE_CODE | TYPE_EXPAND_DOWN);
    conforming || (cpu.state.cpl() <= d.dpl() && (sel & 3) as u8 <= d.dpl())
}

fn set_zf(cpu: &mut Cpu, ok: bool) {
    cpu.set_arith_flags(flags::ZF, if ok { flags::ZF } else { 0 });
}

/// LAR: SDM Table "Segment and Gate Types" (in IA-32e mode only 64-bit TSSs and call gates;
/// the SDM lists the LDT as invalid there).
fn lar(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    use sys_type::*;
    require_protected(cpu)?;
    let sel = cpu.read_op(bus, insn, 1)? as u16;
    let legacy = [TSS16_AVAIL, LDT, TSS16_BUSY, CALL_GATE16, TASK_GATE, TSS_AVAIL, TSS_BUSY, CALL_GATE];
    let found = inspect(cpu, bus, sel, &legacy, &[TSS_AVAIL, TSS_BUSY, CALL_GATE])?;
    if let Some(d) = found {
        // A 16-bit destination keeps the low word (FF00H of the mask); wider ones are
        // zero-extended. On failure the destination is untouched.
        cpu.set_reg(insn.op0_register(), (d.0 >> 32) & LAR_MASK);
    }
    set_zf(cpu, found.is_some());
    Ok(())
}

/// LSL: the byte-granular limit of a code/data segment, TSS or LDT.
fn lsl(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    use sys_type::*;
    require_protected(cpu)?;
    let sel = cpu.read_op(bus, insn, 1)? as u16;
    let found =
        inspect(cpu, bus, sel, &[TSS16_AVAIL, LDT, TSS16_BUSY, TSS_AVAIL, TSS_BUSY], &[LDT, TSS_AVAIL, TSS_BUSY])?;
    if let Some(d) = found {
        cpu.set_reg(insn.op0_register(), d.limit() as u64);
    }
    set_zf(cpu, found.is_some());
    Ok(())
}

/// VERR/VERW: ZF = 1 if the segment is readable (data or readable code) / writable (data)
/// from CPL and RPL. The present bit is not checked.
fn verify(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, write: bool) -> Result<()> {
    require_protected(cpu)?;
    let sel = cpu.read_op(bus, insn, 0)? as u16;
    let ok = match peek_descriptor(cpu, bus, sel, 0)? {
        Some(raw) => {
            let d = Descriptor(raw);
            let t = d.typ();
            let code = t & TYPE_CODE != 0;
            let accessible = if write { !code && t & TYPE_WRITABLE != 0 } else { !code || t & TYPE_WRITABLE != 0 };
            !d.is_system() && accessible && visible(cpu, d, sel)
        }
        None => false,
    };
    set_zf(cpu, ok);
    Ok(())
}

/// ARPL r/m16, r16: raises the destination selector's RPL to the source's. (In 64-bit mode
/// opcode 63 is MOVSXD, which the decoder reports as such.)
fn arpl(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_protected(cpu)?;
    let src = cpu.reg(insn.op1_register());
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, 2)?;
    let dst = match loc {
        // The o32 form names a 32-bit register but operates on (and writes) its low word.
        Loc::Reg(r) => cpu.state.gpr[r.number()] & 0xffff,
        Loc::Mem(..) => cpu.read_loc(bus, loc, 2)?,
    };
    let raise = dst & 3 < src & 3;
    if raise {
        let v = (dst & !3) | (src & 3);
        match loc {
            Loc::Reg(r) => {
                let g = &mut cpu.state.gpr[r.number()];
                *g = (*g & !0xffff) | v;
            }
            Loc::Mem(..) => cpu.write_loc(bus, loc, 2, v)?,
        }
    }
    set_zf(cpu, raise);
    Ok(())
}
