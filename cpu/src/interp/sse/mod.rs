//! MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2, AES-NI, PCLMULQDQ and SHA. This family's
//! lookup takes the legacy encodings; the AVX family hands it the VEX forms of the same
//! operations (see `avx::twin`), which the helpers here run by their encoding.
//!
//! This module holds what the sub-families share: the availability checks (CR0.EM/TS,
//! CR4.OSFXSR, pending x87 exceptions; for VEX, AVX's), MMX/XMM/YMM register access, memory
//! access with the legacy-SSE and VEX alignment rules, lane helpers and the MXCSR exception
//! commit. Each sub-module's `lookup` picks one handler per operation at decode time.

mod aes;
mod clmul;
mod compare;
mod convert;
mod crc32;
mod float;
mod intarith;
mod logic;
mod moves;
mod pcmpstr;
mod sha;
mod shuffle;
pub(crate) mod softfloat;

pub(crate) use intarith::mpsadbw;
pub(crate) use moves::sign_mask;
pub(crate) use shuffle::{blend, widen};

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::Access;
use crate::state::{cr0, cr4};
use crate::Cpu;
use iced_x86::{EncodingKind, Instruction, Mnemonic, OpCodeOperandKind, OpKind, Register};
use softfloat::{mx, Env};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if insn.encoding() != EncodingKind::Legacy {
        return None;
    }
    lookup_any(insn)
}

/// The handler of an SSE operation, whatever its encoding: the AVX family passes the VEX
/// instruction re-coded as its legacy twin, and the handler then runs on the VEX form (the
/// shared helpers below read operands, check availability and write results by encoding).
pub(crate) fn lookup_any(insn: &Instruction) -> Option<Handler> {
    moves::lookup(insn)
        .or_else(|| intarith::lookup(insn))
        .or_else(|| logic::lookup(insn))
        .or_else(|| shuffle::lookup(insn))
        .or_else(|| float::lookup(insn))
        .or_else(|| compare::lookup(insn))
        .or_else(|| convert::lookup(insn))
        .or_else(|| pcmpstr::lookup(insn))
        .or_else(|| crc32::lookup(insn))
        .or_else(|| aes::lookup(insn))
        .or_else(|| clmul::lookup(insn))
        .or_else(|| sha::lookup(insn))
}

/// FSW bits the MMX state transition and the pending-exception check use.
const FSW_ES: u16 = 1 << 7;

/// Availability of an instruction using XMM registers or MXCSR (SDM Vol. 3, 13.1, and the
/// exception tables of Vol. 2, 2.5): #UD with CR0.EM or without CR4.OSFXSR, then #NM with
/// CR0.TS.
#[inline(always)]
pub(super) fn check_sse(cpu: &Cpu) -> Result<()> {
    let st = &cpu.state;
    if st.cr0 & cr0::EM != 0 || st.cr4 & cr4::OSFXSR == 0 {
        return Err(Fault::ud());
    }
    if st.cr0 & cr0::TS != 0 {
        return Err(Fault::exc(vector::NM));
    }
    Ok(())
}

/// Whether the instruction is VEX-encoded: an AVX form of an SSE operation.
#[inline(always)]
pub(crate) fn is_vex(insn: &Instruction) -> bool {
    insn.encoding() == EncodingKind::VEX
}

/// Whether a VEX instruction takes a register from VEX.vvvv: then its operands sit one place
/// later than its legacy twin's, the vvvv register (or, for shifts by immediate, the r/m
/// operand) standing in for the legacy destination's old value.
#[inline]
pub(crate) fn has_vvvv(insn: &Instruction) -> bool {
    vvvv_operand(insn).is_some()
}

/// Which operand VEX.vvvv encodes, if a vector register.
#[inline]
pub(crate) fn vvvv_operand(insn: &Instruction) -> Option<usize> {
    insn.op_code().op_kinds().iter().position(|k| matches!(k, OpCodeOperandKind::xmm_vvvv | OpCodeOperandKind::ymm_vvvv))
}

/// XCR0 bits AVX needs enabled: SSE and AVX state.
const XCR0_SSE_AVX: u64 = 0b110;

/// Availability of a VEX-encoded vector instruction (SDM Vol. 2, 2.8, and Vol. 1, 13.5.3):
/// #UD in real or virtual-8086 mode, without CR4.OSXSAVE or unless XCR0 enables both SSE and
/// AVX state; then #NM with CR0.TS. CR0.EM and CR4.OSFXSR play no part.
#[inline]
pub(crate) fn check_avx(cpu: &Cpu) -> Result<()> {
    super::vex::check_mode(cpu)?;
    let st = &cpu.state;
    if st.cr4 & cr4::OSXSAVE == 0 || st.xcr0 & XCR0_SSE_AVX != XCR0_SSE_AVX {
        return Err(Fault::ud());
    }
    if st.cr0 & cr0::TS != 0 {
        return Err(Fault::exc(vector::NM));
    }
    Ok(())
}

/// The availability check of the instruction's encoding: AVX rules for VEX, SSE rules else.
#[inline(always)]
pub(super) fn check_vector(cpu: &Cpu, insn: &Instruction) -> Result<()> {
    if is_vex(insn) {
        check_avx(cpu)
    } else {
        check_sse(cpu)
    }
}

/// Availability of an instruction on MMX registers (SDM Vol. 3, chapter 12, and the MMX
/// exception tables of Vol. 3, 22.25): #UD with CR0.EM, #NM with CR0.TS, #MF while an unmasked
/// x87 exception is pending (FSW.ES). CR4.OSFXSR is not required.
#[inline(always)]
pub(super) fn check_mmx(cpu: &Cpu) -> Result<()> {
    let st = &cpu.state;
    if st.cr0 & cr0::EM != 0 {
        return Err(Fault::ud());
    }
    if st.cr0 & cr0::TS != 0 {
        return Err(Fault::exc(vector::NM));
    }
    if st.fpu.fsw & FSW_ES != 0 {
        return Err(Fault::exc(vector::MF));
    }
    Ok(())
}

/// SSE/SSE2 instructions with both an XMM (or MXCSR) and an MMX operand (CVTPI2PS, MOVQ2DQ,
/// ...): the SSE checks, then the pending x87 exception.
#[inline(always)]
pub(super) fn check_sse_mmx(cpu: &Cpu) -> Result<()> {
    check_sse(cpu)?;
    if cpu.state.fpu.fsw & FSW_ES != 0 {
        return Err(Fault::exc(vector::MF));
    }
    Ok(())
}

// MMX state. MMX register i aliases the significand of physical x87 register R_i. These are
// local helpers, to be unified with the x87 family's.

/// The x87 → MMX transition every MMX instruction except EMMS makes: TOP = 0, all tags valid.
#[inline(always)]
pub(super) fn enter_mmx(cpu: &mut Cpu) {
    cpu.state.fpu.mmx_enter();
}

/// EMMS: every x87 register empty.
pub(super) fn leave_mmx(cpu: &mut Cpu) {
    cpu.state.fpu.emms();
}

#[inline(always)]
pub(super) fn mm_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::MM0 as usize) & 7
}

#[inline(always)]
pub(super) fn mm(cpu: &Cpu, i: usize) -> u64 {
    let r = &cpu.state.fpu.st[i & 7];
    u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]])
}

/// Writes an MMX register; the aliased x87 register's sign and exponent become all ones
/// (SDM Vol. 1, 9.5.2).
#[inline(always)]
pub(super) fn set_mm(cpu: &mut Cpu, i: usize, v: u64) {
    let r = &mut cpu.state.fpu.st[i & 7];
    r[..8].copy_from_slice(&v.to_le_bytes());
    r[8] = 0xff;
    r[9] = 0xff;
}

#[inline(always)]
pub(super) fn xmm_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::XMM0 as usize) & 15
}

#[inline(always)]
pub(super) fn xmm(cpu: &Cpu, r: Register) -> u128 {
    cpu.state.fpu.xmm[xmm_index(r)]
}

#[inline(always)]
pub(super) fn set_xmm(cpu: &mut Cpu, r: Register, v: u128) {
    cpu.state.fpu.xmm[xmm_index(r)] = v;
}

/// A vector register as (bits 127:0, bits 255:128); YMMn and XMMn share the index.
#[inline(always)]
pub(crate) fn ymm(cpu: &Cpu, r: Register) -> (u128, u128) {
    let i = xmm_index(r);
    (cpu.state.fpu.xmm[i], cpu.state.fpu.ymm_hi[i])
}

/// Writes a vector result: a legacy SSE instruction keeps bits 255:128 of the register, a
/// VEX one writes them (`hi`, zero for VEX.128) (SDM Vol. 1, 14.1.2).
#[inline(always)]
pub(crate) fn set_vec(cpu: &mut Cpu, insn: &Instruction, r: Register, lo: u128, hi: u128) {
    let i = xmm_index(r);
    cpu.state.fpu.xmm[i] = lo;
    if is_vex(insn) {
        cpu.state.fpu.ymm_hi[i] = hi;
    }
}

/// Legacy SSE requires 16-byte alignment of 128-bit memory operands (#GP(0) otherwise),
/// except for these (SDM Vol. 2, 2.5, the notes to exception types 4 and the PCMPxSTRx pages).
fn unaligned_ok(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Movups
            | Mnemonic::Movupd
            | Mnemonic::Movdqu
            | Mnemonic::Lddqu
            | Mnemonic::Pcmpestri
            | Mnemonic::Pcmpestrm
            | Mnemonic::Pcmpistri
            | Mnemonic::Pcmpistrm
    )
}

/// VEX-encoded instructions accept any alignment except the explicitly aligned moves, which
/// need their operand's size (SDM Vol. 2, 2.5, exception type 1).
fn vex_aligned(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Vmovaps
            | Mnemonic::Vmovapd
            | Mnemonic::Vmovdqa
            | Mnemonic::Vmovntps
            | Mnemonic::Vmovntpd
            | Mnemonic::Vmovntdq
            | Mnemonic::Vmovntdqa
    )
}

/// Linear address of the explicit memory operand, `size` bytes, with the segment checks and
/// the #GP(0) alignment check of aligned forms (16-byte legacy operands, VEX aligned moves).
#[inline]
pub(super) fn mem_lin(cpu: &Cpu, insn: &Instruction, size: u8, access: Access) -> Result<u64> {
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin = cpu.linear(seg, off, size, access)?;
    let aligned = if is_vex(insn) { size >= 16 && vex_aligned(insn.mnemonic()) } else { size == 16 && !unaligned_ok(insn.mnemonic()) };
    if aligned && lin & (size as u64 - 1) != 0 {
        return Err(Fault::gp0());
    }
    Ok(lin)
}

pub(super) fn read_lin128(cpu: &mut Cpu, bus: &mut dyn CpuBus, lin: u64) -> Result<u128> {
    let ctx = cpu.data_ctx();
    let lo = cpu.read_lin(bus, lin, 8, ctx)?;
    let hi = cpu.read_lin(bus, lin.wrapping_add(8) & cpu.lin_mask(), 8, ctx)?;
    Ok(lo as u128 | (hi as u128) << 64)
}

/// Writes `size` (≤ 16) bytes at a linear address, all-or-nothing.
pub(super) fn write_lin_n(cpu: &mut Cpu, bus: &mut dyn CpuBus, lin: u64, size: u8, v: u128) -> Result<()> {
    let ctx = cpu.data_ctx();
    if size <= 8 {
        return cpu.write_lin(bus, lin, size, v as u64, ctx);
    }
    cpu.probe_write(bus, lin, size, ctx)?;
    cpu.write_lin(bus, lin, 8, v as u64, ctx)?;
    cpu.write_lin(bus, lin.wrapping_add(8) & cpu.lin_mask(), size - 8, (v >> 64) as u64, ctx)
}

/// Reads operand `i` (an XMM, MMX or general register, an immediate, or memory of the
/// instruction's memory size), zero-extended to 128 bits.
#[inline]
pub(super) fn read_src(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, i: u32) -> Result<u128> {
    match insn.op_kind(i) {
        OpKind::Register => {
            let r = insn.op_register(i);
            Ok(if r.is_xmm() {
                xmm(cpu, r)
            } else if r.is_mm() {
                mm(cpu, mm_index(r)) as u128
            } else {
                cpu.reg(r) as u128
            })
        }
        OpKind::Immediate8 => Ok(insn.immediate8() as u128),
        _ => {
            let size = insn.memory_size().size() as u8;
            let lin = mem_lin(cpu, insn, size, Access::Read)?;
            if size == 16 {
                read_lin128(cpu, bus, lin)
            } else {
                let ctx = cpu.data_ctx();
                Ok(cpu.read_lin(bus, lin, size, ctx)? as u128)
            }
        }
    }
}

/// Reads operand `i` as 256 bits: a YMM register or 32-byte memory operand whole, anything
/// else (see `read_src`) with a zero upper half.
pub(crate) fn read_src_wide(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, i: u32) -> Result<(u128, u128)> {
    match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_ymm() => Ok(ymm(cpu, insn.op_register(i))),
        OpKind::Memory if insn.memory_size().size() == 32 => {
            let lin = mem_lin(cpu, insn, 32, Access::Read)?;
            let lo = read_lin128(cpu, bus, lin)?;
            let hi = read_lin128(cpu, bus, lin.wrapping_add(16) & cpu.lin_mask())?;
            Ok((lo, hi))
        }
        _ => Ok((read_src(cpu, bus, insn, i)?, 0)),
    }
}

/// Whether operand `i` is 256 bits wide.
pub(crate) fn is_wide_operand(insn: &Instruction, i: u32) -> bool {
    match insn.op_kind(i) {
        OpKind::Register => insn.op_register(i).is_ymm(),
        OpKind::Memory => insn.memory_size().size() == 32,
        _ => false,
    }
}

/// Writes 32 bytes at the memory operand, all-or-nothing.
pub(crate) fn write_mem_wide(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, lo: u128, hi: u128) -> Result<()> {
    let lin = mem_lin(cpu, insn, 32, Access::Write)?;
    let ctx = cpu.data_ctx();
    cpu.probe_write(bus, lin, 32, ctx)?;
    write_lin_n(cpu, bus, lin, 16, lo)?;
    write_lin_n(cpu, bus, lin.wrapping_add(16) & cpu.lin_mask(), 16, hi)
}

/// The VEX form of a lane-wise operation `f(src1, src2)`, applied to each 128-bit lane the
/// destination has. Operands sit as `has_vvvv` describes. A 128-bit second source of a
/// 256-bit operation (the shift count of VPSLLW ymm, ymm, xmm/m128, or an immediate) serves
/// both lanes.
fn vex_lanes(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, mut f: impl FnMut(u128, u128) -> u128) -> Result<(u128, u128)> {
    let shift = has_vvvv(insn) as u32;
    let d = insn.op0_register();
    let (a_lo, a_hi) = if shift == 1 { read_src_wide(cpu, bus, insn, 1)? } else { ymm(cpu, d) };
    let (b_lo, mut b_hi) = read_src_wide(cpu, bus, insn, 1 + shift)?;
    if !is_wide_operand(insn, 1 + shift) {
        b_hi = b_lo;
    }
    let lo = f(a_lo, b_lo);
    let hi = if d.is_ymm() { f(a_hi, b_hi) } else { 0 };
    Ok((lo, hi))
}

/// Writes the low `size` bytes of `v` to memory operand of `insn` (a store form).
pub(super) fn write_mem_op(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, size: u8, v: u128) -> Result<()> {
    let lin = mem_lin(cpu, insn, size, Access::Write)?;
    write_lin_n(cpu, bus, lin, size, v)
}

/// Sets the MXCSR flags an operation raised and decides whether it faults: an unmasked
/// pre-computation exception (IE, DE, ZE) of any element stops the instruction with only the
/// pre-computation flags set; otherwise all flags are set and an unmasked post-computation
/// exception faults. Faulting instructions leave the destination unchanged (SDM Vol. 1,
/// 11.5.1–11.5.2). The fault is #XM with CR4.OSXMMEXCPT, else #UD.
#[inline]
pub(super) fn commit_fp(cpu: &mut Cpu, env: &Env) -> Result<()> {
    if env.flags == 0 {
        return Ok(());
    }
    let m = &mut cpu.state.fpu.mxcsr;
    let unmasked = !(*m >> mx::MASK_SHIFT) & mx::FLAGS;
    let pre = env.flags & mx::PRE;
    if pre & unmasked != 0 {
        *m |= pre;
    } else {
        *m |= env.flags;
        if env.flags & unmasked == 0 {
            return Ok(());
        }
    }
    Err(if cpu.state.cr4 & cr4::OSXMMEXCPT != 0 { Fault::exc(vector::XM) } else { Fault::ud() })
}

/// The common shape `xmm ← f(xmm, xmm/mem)` for operations without FP exceptions.
#[inline(always)]
pub(super) fn xmm_op(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, mut f: impl FnMut(u128, u128) -> u128) -> Result<()> {
    if is_vex(insn) {
        check_avx(cpu)?;
        let (lo, hi) = vex_lanes(cpu, bus, insn, f)?;
        set_vec(cpu, insn, insn.op0_register(), lo, hi);
        return Ok(());
    }
    check_sse(cpu)?;
    let src = read_src(cpu, bus, insn, 1)?;
    let d = insn.op0_register();
    let v = f(xmm(cpu, d), src);
    set_xmm(cpu, d, v);
    Ok(())
}

/// `mm ← f(mm, mm/m64)`.
#[inline(always)]
pub(super) fn mm_op(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: impl FnOnce(u64, u64) -> u64) -> Result<()> {
    check_mmx(cpu)?;
    let src = read_src(cpu, bus, insn, 1)? as u64;
    enter_mmx(cpu);
    let d = mm_index(insn.op0_register());
    let v = f(mm(cpu, d), src);
    set_mm(cpu, d, v);
    Ok(())
}

/// `xmm ← f(env, xmm, xmm/mem)` for floating-point operations: the destination is written
/// only if no unmasked exception occurred.
#[inline(always)]
pub(super) fn fp_op(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, mut f: impl FnMut(&mut Env, u128, u128) -> u128) -> Result<()> {
    if is_vex(insn) {
        check_avx(cpu)?;
        let mut env = Env::new(cpu.state.fpu.mxcsr);
        let (lo, hi) = vex_lanes(cpu, bus, insn, |a, b| f(&mut env, a, b))?;
        commit_fp(cpu, &env)?;
        set_vec(cpu, insn, insn.op0_register(), lo, hi);
        return Ok(());
    }
    check_sse(cpu)?;
    let src = read_src(cpu, bus, insn, 1)?;
    let d = insn.op0_register();
    let mut env = Env::new(cpu.state.fpu.mxcsr);
    let v = f(&mut env, xmm(cpu, d), src);
    commit_fp(cpu, &env)?;
    set_xmm(cpu, d, v);
    Ok(())
}

/// Picks the MMX or XMM form of an integer operation by the destination register. `$x` is
/// the 128-bit operation; `$m` the 64-bit one (by default `$x` on zero-extended operands,
/// right for lane-wise operations).
macro_rules! mmx_or_xmm {
    ($insn:expr, $x:expr) => {
        mmx_or_xmm!($insn, $x, |a: u64, b: u64| $x(a as u128, b as u128) as u64)
    };
    ($insn:expr, $x:expr, $m:expr) => {
        if $insn.op0_register().is_mm() {
            (|c, b, i| $crate::interp::sse::mm_op(c, b, i, $m)) as $crate::interp::Handler
        } else {
            (|c, b, i| $crate::interp::sse::xmm_op(c, b, i, $x)) as $crate::interp::Handler
        }
    };
}
pub(super) use mmx_or_xmm;

// Lane views of a 128-bit value (little-endian lane order, as in the register).

#[inline(always)]
pub(super) fn b8(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}
#[inline(always)]
pub(super) fn from_b8(a: [u8; 16]) -> u128 {
    u128::from_le_bytes(a)
}
#[inline(always)]
pub(super) fn w16(v: u128) -> [u16; 8] {
    core::array::from_fn(|i| (v >> (16 * i)) as u16)
}
#[inline(always)]
pub(super) fn from_w16(a: [u16; 8]) -> u128 {
    a.iter().rev().fold(0u128, |acc, &x| (acc << 16) | x as u128)
}
#[inline(always)]
pub(super) fn d32(v: u128) -> [u32; 4] {
    core::array::from_fn(|i| (v >> (32 * i)) as u32)
}
#[inline(always)]
pub(super) fn from_d32(a: [u32; 4]) -> u128 {
    a[0] as u128 | (a[1] as u128) << 32 | (a[2] as u128) << 64 | (a[3] as u128) << 96
}
#[inline(always)]
pub(super) fn q64(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}
#[inline(always)]
pub(super) fn from_q64(a: [u64; 2]) -> u128 {
    a[0] as u128 | (a[1] as u128) << 64
}

/// Lane-wise binary operations.
#[inline(always)]
pub(super) fn zip8(a: u128, b: u128, mut f: impl FnMut(u8, u8) -> u8) -> u128 {
    let (a, b) = (b8(a), b8(b));
    from_b8(core::array::from_fn(|i| f(a[i], b[i])))
}
#[inline(always)]
pub(super) fn zip16(a: u128, b: u128, mut f: impl FnMut(u16, u16) -> u16) -> u128 {
    let (a, b) = (w16(a), w16(b));
    from_w16(core::array::from_fn(|i| f(a[i], b[i])))
}
#[inline(always)]
pub(super) fn zip32(a: u128, b: u128, mut f: impl FnMut(u32, u32) -> u32) -> u128 {
    let (a, b) = (d32(a), d32(b));
    from_d32(core::array::from_fn(|i| f(a[i], b[i])))
}
#[inline(always)]
pub(super) fn zip64(a: u128, b: u128, mut f: impl FnMut(u64, u64) -> u64) -> u128 {
    from_q64([f(a as u64, b as u64), f((a >> 64) as u64, (b >> 64) as u64)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Code, CpuidFeature as F};

    /// Every legacy-encoded MMX..SSE4.2 instruction has a handler here, except those other
    /// families own (fences, prefetches, cache control, MONITOR/MWAIT, FISTTP, POPCNT).
    #[test]
    fn every_sse_instruction_is_claimed() {
        let ours = [F::MMX, F::SSE, F::SSE2, F::SSE3, F::SSSE3, F::SSE4_1, F::SSE4_2];
        let others = [
            Mnemonic::Lfence,
            Mnemonic::Sfence,
            Mnemonic::Mfence,
            Mnemonic::Clflush,
            Mnemonic::Pause,
            Mnemonic::Prefetchnta,
            Mnemonic::Prefetcht0,
            Mnemonic::Prefetcht1,
            Mnemonic::Prefetcht2,
            Mnemonic::Monitor,
            Mnemonic::Mwait,
            Mnemonic::Fisttp,
            Mnemonic::Popcnt,
        ];
        let mut missing = Vec::new();
        for code in Code::values() {
            let mut insn = Instruction::default();
            insn.set_code(code);
            if insn.encoding() != EncodingKind::Legacy || others.contains(&insn.mnemonic()) {
                continue;
            }
            if insn.cpuid_features().iter().any(|f| ours.contains(f)) && lookup(&insn).is_none() {
                missing.push(format!("{code:?}"));
            }
        }
        assert!(missing.is_empty(), "no handler for {missing:?}");
    }
}
