//! FXSAVE/FXRSTOR (SDM Vol. 1, 10.5.1, Table 10-2/10-3), and the legacy region they share
//! with the XSAVE family (`xsave_ext`).
//!
//! FXSAVE always stores FIP/FDP/FOP (Intel behaviour; some AMD parts store them only with an
//! exception pending) and writes the XMM area for the registers the mode has (8 outside
//! 64-bit mode, 16 in it); bytes 288-511 beyond that are left untouched. MXCSR_MASK is
//! 0xFFFF (DAZ supported).

use super::mem;
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::Access;
use crate::state::{cr0, FpuState};
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        Fxsave | Fxsave64 => fxsave,
        Fxrstor | Fxrstor64 => fxrstor,
        _ => return super::xsave_ext::lookup(insn),
    })
}

/// MXCSR bits this CPU implements (FXSAVE's MXCSR_MASK).
pub const MXCSR_MASK: u32 = 0xffff;
use crate::xstate::LEGACY_LEN;

/// REX.W: the x87 part of the image uses the 64-bit layout (FIP/FDP without selectors).
pub(super) fn rex_w(insn: &Instruction) -> bool {
    use Code::*;
    matches!(
        insn.code(),
        Fxsave64_m512byte
            | Fxrstor64_m512byte
            | Xsave64_mem
            | Xsaveopt64_mem
            | Xsavec64_mem
            | Xsaves64_mem
            | Xrstor64_mem
            | Xrstors64_mem
    )
}

pub(super) fn xmm_count(cpu: &Cpu) -> usize {
    if cpu.state.in_64bit() {
        16
    } else {
        8
    }
}

/// #GP(0) unless the operand's linear address is aligned to `align` bytes.
pub(super) fn check_alignment(cpu: &Cpu, insn: &Instruction, align: u64) -> Result<()> {
    let (seg, off) = mem::operand(cpu, insn);
    let lin = cpu.linear(seg, off, 1, Access::Read)?;
    if lin & (align - 1) != 0 {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// The x87 part of the legacy area (bytes 0-23 and 32-159).
pub(super) fn save_x87(f: &FpuState, b: &mut [u8], wide: bool) {
    b[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    b[4] = f.abridged_tag();
    b[5] = 0;
    b[6..8].copy_from_slice(&(f.fop & 0x7ff).to_le_bytes());
    if wide {
        b[8..16].copy_from_slice(&f.fip.to_le_bytes());
        b[16..24].copy_from_slice(&f.fdp.to_le_bytes());
    } else {
        b[8..12].copy_from_slice(&(f.fip as u32).to_le_bytes());
        b[12..14].copy_from_slice(&f.fcs.to_le_bytes());
        b[14..16].fill(0);
        b[16..20].copy_from_slice(&(f.fdp as u32).to_le_bytes());
        b[20..22].copy_from_slice(&f.fds.to_le_bytes());
        b[22..24].fill(0);
    }
    for i in 0..8 {
        let at = 32 + 16 * i;
        b[at..at + 10].copy_from_slice(&f.st(i).to_bytes());
        b[at + 10..at + 16].fill(0);
    }
}

pub(super) fn load_x87(f: &mut FpuState, b: &[u8], wide: bool) {
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| u32_at(i) as u64 | (u32_at(i + 4) as u64) << 32;
    f.fcw = super::control::sanitize_fcw(u16_at(0));
    f.fsw = u16_at(2);
    f.fop = u16_at(6) & 0x7ff;
    if wide {
        f.fip = u64_at(8);
        f.fdp = u64_at(16);
        f.fcs = 0;
        f.fds = 0;
    } else {
        f.fip = u32_at(8) as u64;
        f.fcs = u16_at(12);
        f.fdp = u32_at(16) as u64;
        f.fds = u16_at(20);
    }
    // Registers are stored in ST order relative to the TOP just loaded.
    let top = f.top();
    for i in 0..8 {
        let at = 32 + 16 * i;
        f.st[(top + i) & 7].copy_from_slice(&b[at..at + 10]);
    }
    f.set_abridged_tag(b[4]);
    super::update_summary(f);
}

pub(super) fn save_mxcsr(f: &FpuState, b: &mut [u8]) {
    b[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
}

pub(super) fn save_xmm(f: &FpuState, b: &mut [u8], n: usize) {
    for i in 0..n {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(&f.xmm[i].to_le_bytes());
    }
}

pub(super) fn load_xmm(f: &mut FpuState, b: &[u8], n: usize) {
    for i in 0..n {
        let mut x = [0u8; 16];
        x.copy_from_slice(&b[160 + 16 * i..176 + 16 * i]);
        f.xmm[i] = u128::from_le_bytes(x);
    }
}

/// The 512-byte FXSAVE image (64-bit format, all sixteen XMM registers) of `f`: the legacy
/// area KVM's XSAVE buffer starts with.
pub(crate) fn fxsave_image(f: &FpuState) -> [u8; LEGACY_LEN] {
    let mut b = [0; LEGACY_LEN];
    save_x87(f, &mut b, true);
    save_mxcsr(f, &mut b);
    save_xmm(f, &mut b, 16);
    b
}

/// The inverse of [`fxsave_image`] (MXCSR taken as it is: the image comes from hardware).
pub(crate) fn load_fxsave_image(f: &mut FpuState, b: &[u8; LEGACY_LEN]) {
    load_x87(f, b, true);
    f.mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    load_xmm(f, b, 16);
}

pub(super) fn mxcsr_in(b: &[u8]) -> Result<u32> {
    let v = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if v & !MXCSR_MASK != 0 {
        return Err(Fault::gp0());
    }
    Ok(v)
}

/// FXSAVE/FXRSTOR: #NM with CR0.EM or CR0.TS (no pending-exception check).
fn fx_available(cpu: &Cpu) -> Result<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Fault::exc(vector::NM));
    }
    Ok(())
}

fn fxsave(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    fx_available(cpu)?;
    check_alignment(cpu, insn, 16)?;
    let n = xmm_count(cpu);
    let f = &cpu.state.fpu;
    let mut b = vec![0u8; 160 + 16 * n];
    save_x87(f, &mut b, rex_w(insn));
    save_mxcsr(f, &mut b);
    save_xmm(f, &mut b, n);
    mem::write_op(cpu, bus, insn, &b)
}

fn fxrstor(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    fx_available(cpu)?;
    check_alignment(cpu, insn, 16)?;
    let n = xmm_count(cpu);
    let mut b = vec![0u8; 160 + 16 * n];
    let (seg, off) = mem::operand(cpu, insn);
    mem::read_bytes(cpu, bus, seg, off, &mut b)?;
    let mxcsr = mxcsr_in(&b)?;
    let f = &mut cpu.state.fpu;
    load_x87(f, &b, rex_w(insn));
    f.mxcsr = mxcsr;
    load_xmm(f, &b, n);
    Ok(())
}

