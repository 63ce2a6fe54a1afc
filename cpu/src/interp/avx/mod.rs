//! AVX and AVX2 (VEX-encoded vector instructions), FMA and F16C.
//!
//! The VEX forms of SSE operations run the SSE family's own handlers (see `twin`); this
//! family adds what has no SSE twin: VZEROUPPER/VZEROALL, broadcasts, 128-bit lane inserts,
//! extracts and permutes, the element permutes, blends with per-lane immediates or a register
//! mask, variable shifts, VTESTPS/PD, widening and narrowing 256-bit forms, masked moves and
//! gathers, FMA and the half-precision conversions.
//!
//! Every VEX vector instruction checks `sse::check_avx` (mode, CR4.OSXSAVE, XCR0[2:1], CR0.TS)
//! before it touches anything; VEX.128 forms zero bits 255:128 of their destination register.

mod convert;
mod fma;
mod half;
mod masked;
mod permute;
mod twin;

use super::sse::{check_avx, read_src_wide, set_vec, xmm_index};
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::Cpu;
use iced_x86::{EncodingKind, Instruction, Mnemonic, Register};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if insn.encoding() != EncodingKind::VEX {
        return None;
    }
    match insn.mnemonic() {
        Mnemonic::Vzeroupper => return Some(|c, _, _| zero_upper(c, false)),
        Mnemonic::Vzeroall => return Some(|c, _, _| zero_upper(c, true)),
        _ => {}
    }
    permute::lookup(insn)
        .or_else(|| convert::lookup(insn))
        .or_else(|| masked::lookup(insn))
        .or_else(|| fma::lookup(insn))
        .or_else(|| half::lookup(insn))
        .or_else(|| twin::lookup(insn))
}

/// A 256-bit value as its two 128-bit lanes, low first.
pub(super) type Y = [u128; 2];

/// Operand `i` as 256 bits (a 128-bit operand has a zero upper lane).
#[inline]
pub(super) fn read(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, i: u32) -> Result<Y> {
    let (lo, hi) = read_src_wide(cpu, bus, insn, i)?;
    Ok([lo, hi])
}

/// Writes the destination register (operand 0); a VEX.128 destination gets a zero upper lane.
#[inline]
pub(super) fn write(cpu: &mut Cpu, insn: &Instruction, v: Y) {
    let d = insn.op0_register();
    let hi = if d.is_ymm() { v[1] } else { 0 };
    set_vec(cpu, insn, d, v[0], hi);
}

/// Element `k` of `bits` (32 or 64) of a 256-bit value, zero-extended.
pub(super) fn element(v: Y, bits: u32, k: u32) -> u64 {
    let per_lane = 128 / bits;
    let x = v[(k / per_lane) as usize] >> ((k % per_lane) * bits);
    if bits == 64 {
        x as u64
    } else {
        x as u64 & ((1u64 << bits) - 1)
    }
}

pub(super) fn set_element(v: &mut Y, bits: u32, k: u32, x: u64) {
    let per_lane = 128 / bits;
    let sh = (k % per_lane) * bits;
    let mask = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 } << sh;
    let lane = &mut v[(k / per_lane) as usize];
    *lane = (*lane & !mask) | ((x as u128) << sh & mask);
}

/// Whether operand `i` of the encoding is 256 bits wide (decided from the opcode, so it holds
/// at decode time whatever the operand registers).
pub(super) fn wide_operand(insn: &Instruction, i: u32) -> bool {
    use iced_x86::OpCodeOperandKind as K;
    matches!(insn.op_code().op_kind(i), K::ymm_or_mem | K::ymm_reg | K::ymm_rm | K::ymm_vvvv | K::ymm_is4)
}

/// Registers VZEROUPPER/VZEROALL reach: YMM0-15 in 64-bit mode, YMM0-7 elsewhere.
fn register_count(cpu: &Cpu) -> usize {
    if cpu.state.in_64bit() {
        16
    } else {
        8
    }
}

/// VZEROUPPER clears bits 255:128 of the YMM registers, VZEROALL all their bits.
fn zero_upper(cpu: &mut Cpu, all: bool) -> Result<()> {
    check_avx(cpu)?;
    let n = register_count(cpu);
    let f = &mut cpu.state.fpu;
    f.ymm_hi[..n].fill(0);
    if all {
        f.xmm[..n].fill(0);
    }
    // The zeroed components are in their initial configuration again (XINUSE).
    cpu.state.xinuse &= !if all { 0b110 } else { 0b100 };
    Ok(())
}

/// The vector register numbered like `r` (XMMn and YMMn alike).
#[inline]
pub(super) fn index(r: Register) -> usize {
    xmm_index(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Code, CpuidFeature as F};

    /// Every VEX-encoded AVX, AVX2, FMA and F16C instruction (and the VEX forms of AES-NI and
    /// PCLMULQDQ) has a handler.
    #[test]
    fn every_avx_instruction_is_claimed() {
        let ours = [F::AVX, F::AVX2, F::FMA, F::F16C];
        let mut missing = Vec::new();
        for code in Code::values() {
            let mut insn = Instruction::default();
            insn.set_code(code);
            if insn.encoding() != EncodingKind::VEX {
                continue;
            }
            let features = insn.cpuid_features();
            let vector = features.iter().all(|f| ours.contains(f) || matches!(f, F::AES | F::PCLMULQDQ));
            if vector && features.iter().any(|f| ours.contains(f)) && lookup(&insn).is_none() {
                missing.push(format!("{code:?}"));
            }
        }
        assert!(missing.is_empty(), "no handler for {missing:?}");
    }
}
