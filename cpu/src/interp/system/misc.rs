//! RDMSR WRMSR CPUID RDTSC RDTSCP RDPID RDPMC XGETBV XSETBV SWAPGS and RDFSBASE RDGSBASE WRFSBASE
//! WRGSBASE (SDM Vol. 2).

use super::{require_cpl0, Handler};
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::operand::gpr_size;
use crate::segment::is_canonical;
use crate::state::{cr4, reg::*, Seg};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

/// XCR0 components: x87 (bit 0), SSE (bit 1) and, with AVX in the model, AVX (bit 2), as
/// CPUID leaf 0DH says.
use crate::xstate::{AVX as XCR0_AVX, SSE as XCR0_SSE, X87 as XCR0_X87};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Rdmsr => rdmsr,
        Mnemonic::Wrmsr => wrmsr,
        Mnemonic::Cpuid => cpuid,
        Mnemonic::Rdtsc => rdtsc,
        Mnemonic::Rdtscp => rdtscp,
        Mnemonic::Rdpid => rdpid,
        Mnemonic::Rdpmc => rdpmc,
        Mnemonic::Xgetbv => xgetbv,
        Mnemonic::Xsetbv => xsetbv,
        Mnemonic::Swapgs => swapgs,
        Mnemonic::Rdfsbase => |c, _, i| read_base(c, i, Seg::Fs),
        Mnemonic::Rdgsbase => |c, _, i| read_base(c, i, Seg::Gs),
        Mnemonic::Wrfsbase => |c, _, i| write_base(c, i, Seg::Fs),
        Mnemonic::Wrgsbase => |c, _, i| write_base(c, i, Seg::Gs),
        _ => return None,
    })
}

fn ecx(cpu: &Cpu) -> u32 {
    cpu.state.gpr[RCX] as u32
}

/// EDX:EAX as one 64-bit value.
fn edx_eax(cpu: &Cpu) -> u64 {
    (cpu.state.gpr[RDX] << 32) | (cpu.state.gpr[RAX] & 0xffff_ffff)
}

/// EDX:EAX ← v; the upper halves of RDX and RAX are cleared in every mode.
fn set_edx_eax(cpu: &mut Cpu, v: u64) {
    cpu.state.gpr[RAX] = v & 0xffff_ffff;
    cpu.state.gpr[RDX] = v >> 32;
}

fn rdmsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let v = cpu.read_msr(bus, ecx(cpu))?;
    set_edx_eax(cpu, v);
    Ok(())
}

fn wrmsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let (msr, v) = (ecx(cpu), edx_eax(cpu));
    cpu.write_msr(bus, msr, v)?;
    // EFER, segment bases and the like shape how the following instructions run.
    cpu.end_block = true;
    Ok(())
}

/// CPUID writes EAX, EBX, ECX and EDX and clears the upper halves of their 64-bit
/// registers in every mode.
fn cpuid(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let leaf = cpu.state.gpr[RAX] as u32;
    let r = cpu.model.cpuid(leaf, ecx(cpu), cpu.apic_id, cpu.cpuid_topology(), &cpu.state);
    for (reg, v) in [RAX, RBX, RCX, RDX].into_iter().zip(r) {
        cpu.state.gpr[reg] = v as u64;
    }
    Ok(())
}

/// CR4.TSD restricts RDTSC/RDTSCP to CPL 0 in protected mode (virtual-8086 mode is CPL 3).
fn check_tsd(cpu: &Cpu) -> Result<()> {
    let st = &cpu.state;
    if st.cr4 & cr4::TSD != 0 && st.protected() && (st.v86() || st.cpl() != 0) {
        return Err(Fault::gp0());
    }
    Ok(())
}

fn rdtsc(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    check_tsd(cpu)?;
    let t = cpu.tsc(bus);
    set_edx_eax(cpu, t);
    Ok(())
}

fn rdtscp(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    check_tsd(cpu)?;
    let t = cpu.tsc(bus);
    set_edx_eax(cpu, t);
    cpu.state.gpr[RCX] = cpu.state.msr.tsc_aux & 0xffff_ffff;
    Ok(())
}

/// RDPID: IA32_TSC_AUX into a 64-bit register in 64-bit mode, a 32-bit one elsewhere; unlike
/// RDTSCP, CR4.TSD does not restrict it.
fn rdpid(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.state.msr.tsc_aux & 0xffff_ffff;
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

/// No performance-monitoring counters exist (CPUID leaf 0AH reports version 0), so every
/// counter number in ECX is invalid: RDPMC raises #GP(0), as it does at CPL > 0 with
/// CR4.PCE clear.
fn rdpmc(_: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    Err(Fault::gp0())
}

fn xgetbv(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.state.cr4 & cr4::OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    // XCR0, and with CPUID.(EAX=0DH,ECX=1):EAX[2] XCR 1: XINUSE, the enabled components not
    // in their initial configuration.
    let v = match ecx(cpu) {
        0 => cpu.state.xcr0,
        1 if cpu.model.has("xgetbv1") => cpu.state.xcr0 & super::super::x87::in_use(&cpu.state),
        _ => return Err(Fault::gp0()),
    };
    set_edx_eax(cpu, v);
    Ok(())
}

fn xsetbv(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.state.cr4 & cr4::OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    require_cpl0(cpu)?;
    let v = edx_eax(cpu);
    let supported = crate::xstate::supported_xcr0(&cpu.model);
    // x87 is always on; AVX state needs SSE state (SDM Vol. 1, 13.3).
    let avx_without_sse = v & XCR0_AVX != 0 && v & XCR0_SSE == 0;
    if ecx(cpu) != 0 || v & !supported != 0 || v & XCR0_X87 == 0 || avx_without_sse {
        return Err(Fault::gp0());
    }
    cpu.state.xcr0 = v;
    cpu.end_block = true;
    Ok(())
}

/// SWAPGS exchanges GS.base with IA32_KERNEL_GS_BASE; 64-bit mode and CPL 0 only.
fn swapgs(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if !cpu.state.in_64bit() {
        return Err(Fault::ud());
    }
    if cpu.state.cpl() != 0 {
        return Err(Fault::gp0());
    }
    let st = &mut cpu.state;
    std::mem::swap(&mut st.seg[Seg::Gs as usize].base, &mut st.msr.kernel_gs_base);
    Ok(())
}

/// RD/WR FS/GS base: 64-bit mode with CR4.FSGSBASE, at any CPL.
fn check_fsgsbase(cpu: &Cpu) -> Result<()> {
    if !cpu.state.in_64bit() || cpu.state.cr4 & cr4::FSGSBASE == 0 {
        return Err(Fault::ud());
    }
    Ok(())
}

/// A 32-bit destination gets the base's low half, zero-extended.
fn read_base(cpu: &mut Cpu, insn: &Instruction, seg: Seg) -> Result<()> {
    check_fsgsbase(cpu)?;
    let v = cpu.state.seg(seg).base;
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

/// A 32-bit source is zero-extended; a 64-bit one must be canonical.
fn write_base(cpu: &mut Cpu, insn: &Instruction, seg: Seg) -> Result<()> {
    check_fsgsbase(cpu)?;
    let r = insn.op0_register();
    let v = cpu.reg(r);
    if gpr_size(r) == 8 && !is_canonical(v) {
        return Err(Fault::gp0());
    }
    cpu.state.seg_mut(seg).base = v;
    Ok(())
}
