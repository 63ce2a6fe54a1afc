//! Data movement: MOVAPS/MOVUPS/MOVDQA/... (whole register), MOVSS/MOVSD, MOVLPS/MOVHPS and
//! friends, MOVD/MOVQ in all their forms, MOVQ2DQ/MOVDQ2Q, MOVMSKPS/PD, PMOVMSKB, the
//! non-temporal and masked stores, LDDQU, MOVDDUP/MOVSHDUP/MOVSLDUP, LDMXCSR/STMXCSR, EMMS.

use super::*;
use crate::operand::gpr_size;
use iced_x86::Code;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Code as C;
    Some(match insn.code() {
        C::Movaps_xmm_xmmm128
        | C::Movapd_xmm_xmmm128
        | C::Movups_xmm_xmmm128
        | C::Movupd_xmm_xmmm128
        | C::Movdqa_xmm_xmmm128
        | C::Movdqu_xmm_xmmm128
        | C::Lddqu_xmm_m128
        | C::Movntdqa_xmm_m128 => load128,
        C::Movaps_xmmm128_xmm
        | C::Movapd_xmmm128_xmm
        | C::Movups_xmmm128_xmm
        | C::Movupd_xmmm128_xmm
        | C::Movdqa_xmmm128_xmm
        | C::Movdqu_xmmm128_xmm
        | C::Movntps_m128_xmm
        | C::Movntpd_m128_xmm
        | C::Movntdq_m128_xmm => store128,
        C::Movss_xmm_xmmm32 => |c, b, i| load_scalar(c, b, i, 4),
        C::Movsd_xmm_xmmm64 => |c, b, i| load_scalar(c, b, i, 8),
        C::Movss_xmmm32_xmm => |c, b, i| store_low(c, b, i, 4),
        C::Movsd_xmmm64_xmm => |c, b, i| store_low(c, b, i, 8),
        C::Movlps_xmm_m64 | C::Movlpd_xmm_m64 => |c, b, i| xmm_op(c, b, i, |d, s| (d & !LOW64) | (s & LOW64)),
        C::Movhps_xmm_m64 | C::Movhpd_xmm_m64 => |c, b, i| xmm_op(c, b, i, |d, s| (d & LOW64) | (s << 64)),
        C::Movhlps_xmm_xmm => |c, b, i| xmm_op(c, b, i, |d, s| (d & !LOW64) | (s >> 64)),
        C::Movlhps_xmm_xmm => |c, b, i| xmm_op(c, b, i, |d, s| (d & LOW64) | (s << 64)),
        C::Movlps_m64_xmm | C::Movlpd_m64_xmm => |c, b, i| store_low(c, b, i, 8),
        C::Movhps_m64_xmm | C::Movhpd_m64_xmm => store_high,
        C::Movddup_xmm_xmmm64 => |c, b, i| xmm_op(c, b, i, |_, s| (s & LOW64) | (s << 64)),
        C::Movshdup_xmm_xmmm128 => |c, b, i| xmm_op(c, b, i, |_, s| dup32(s, 1)),
        C::Movsldup_xmm_xmmm128 => |c, b, i| xmm_op(c, b, i, |_, s| dup32(s, 0)),
        C::Movd_mm_rm32 | C::Movq_mm_rm64 | C::Movq_mm_mmm64 => |c, b, i| mm_op(c, b, i, |_, s| s),
        C::Movd_xmm_rm32 | C::Movq_xmm_rm64 | C::Movq_xmm_xmmm64 => |c, b, i| xmm_op(c, b, i, |_, s| s & LOW64),
        C::Movd_rm32_mm | C::Movq_rm64_mm | C::Movq_mmm64_mm | C::Movntq_m64_mm => store_mm,
        C::Movd_rm32_xmm | C::Movq_rm64_xmm | C::Movq_xmmm64_xmm => store_xmm_low,
        C::Movq2dq_xmm_mm => movq2dq,
        C::Movdq2q_mm_xmm => movdq2q,
        C::Movmskps_r32_xmm | C::Movmskps_r64_xmm => |c, b, i| to_gpr(c, b, i, 32),
        C::Movmskpd_r32_xmm | C::Movmskpd_r64_xmm => |c, b, i| to_gpr(c, b, i, 64),
        C::Pmovmskb_r32_xmm | C::Pmovmskb_r64_xmm => |c, b, i| to_gpr(c, b, i, 8),
        C::Pmovmskb_r32_mm | C::Pmovmskb_r64_mm => pmovmskb_mm,
        C::Movnti_m32_r32 | C::Movnti_m64_r64 => movnti,
        C::Maskmovq_rDI_mm_mm => maskmovq,
        C::Maskmovdqu_rDI_xmm_xmm => maskmovdqu,
        C::Ldmxcsr_m32 => ldmxcsr,
        C::Stmxcsr_m32 => stmxcsr,
        C::Emms => emms,
        _ => return None,
    })
}

const LOW64: u128 = u64::MAX as u128;

/// MOVSHDUP (odd = 1) / MOVSLDUP (odd = 0): each pair of singles takes its odd/even element.
fn dup32(s: u128, odd: usize) -> u128 {
    let d = d32(s);
    from_d32([d[odd], d[odd], d[2 + odd], d[2 + odd]])
}

/// The sign bits of each `lane`-bit element, packed into the low bits.
pub(crate) fn sign_mask(v: u128, lane: u32) -> u64 {
    (0..128 / lane).fold(0, |m, i| m | (((v >> (i * lane + lane - 1)) & 1) as u64) << i)
}

fn load128(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    xmm_op(cpu, bus, insn, |_, s| s)
}

/// Whole-register stores, 128 bits or (VEX.256) 256.
fn store128(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let (lo, hi) = read_src_wide(cpu, bus, insn, 1)?;
    match insn.op_kind(0) {
        OpKind::Register => set_vec(cpu, insn, insn.op0_register(), lo, hi),
        _ if is_wide_operand(insn, 0) => write_mem_wide(cpu, bus, insn, lo, hi)?,
        _ => write_mem_op(cpu, bus, insn, 16, lo)?,
    }
    Ok(())
}

/// MOVSS/MOVSD loads: from a register only the low element moves; from memory the upper
/// elements are zeroed.
fn load_scalar(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, size: u32) -> Result<()> {
    let mask = (1u128 << (size * 8)) - 1;
    // The source is the last operand (after VEX.vvvv's register in the VEX register form).
    let from_reg = insn.op_kind(insn.op_count() - 1) == OpKind::Register;
    xmm_op(cpu, bus, insn, |d, s| if from_reg { (d & !mask) | (s & mask) } else { s & mask })
}

/// Stores (or, register to register, merges) the low `size` bytes of the source XMM register.
fn store_low(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, size: u8) -> Result<()> {
    check_vector(cpu, insn)?;
    let v = xmm(cpu, insn.op1_register());
    match insn.op_kind(0) {
        OpKind::Register => {
            let mask = (1u128 << (size * 8)) - 1;
            let d = insn.op0_register();
            let old = xmm(cpu, d);
            set_xmm(cpu, d, (old & !mask) | (v & mask));
            Ok(())
        }
        _ => write_mem_op(cpu, bus, insn, size, v),
    }
}

fn store_high(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let v = xmm(cpu, insn.op1_register()) >> 64;
    write_mem_op(cpu, bus, insn, 8, v)
}

/// MOVD/MOVQ r/m, mm and MOVNTQ.
fn store_mm(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_mmx(cpu)?;
    let v = mm(cpu, mm_index(insn.op1_register()));
    match insn.op_kind(0) {
        OpKind::Register => {
            enter_mmx(cpu);
            let r = insn.op0_register();
            if r.is_mm() {
                set_mm(cpu, mm_index(r), v);
            } else {
                cpu.set_reg(r, v);
            }
        }
        _ => {
            let size = insn.memory_size().size() as u8;
            write_mem_op(cpu, bus, insn, size, v as u128)?;
            enter_mmx(cpu);
        }
    }
    Ok(())
}

/// MOVD/MOVQ r/m, xmm and MOVQ xmm/m64, xmm (a register destination of the latter gets the
/// low quadword zero-extended).
fn store_xmm_low(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let v = xmm(cpu, insn.op1_register());
    match insn.op_kind(0) {
        OpKind::Register => {
            let r = insn.op0_register();
            if r.is_xmm() {
                set_vec(cpu, insn, r, v & LOW64, 0);
            } else {
                cpu.set_reg(r, v as u64);
            }
            Ok(())
        }
        _ => {
            let size = insn.memory_size().size() as u8;
            write_mem_op(cpu, bus, insn, size, v)
        }
    }
}

fn movq2dq(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_sse_mmx(cpu)?;
    let v = mm(cpu, mm_index(insn.op1_register()));
    enter_mmx(cpu);
    set_xmm(cpu, insn.op0_register(), v as u128);
    Ok(())
}

fn movdq2q(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_sse_mmx(cpu)?;
    let v = xmm(cpu, insn.op1_register()) as u64;
    enter_mmx(cpu);
    set_mm(cpu, mm_index(insn.op0_register()), v);
    Ok(())
}

/// MOVMSKPS/PD, PMOVMSKB xmm or ymm: the sign bits of the `lane`-bit elements into a general
/// register (zero-extended).
fn to_gpr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, lane: u32) -> Result<()> {
    check_vector(cpu, insn)?;
    let (lo, hi) = read_src_wide(cpu, bus, insn, 1)?;
    let v = sign_mask(lo, lane) | sign_mask(hi, lane) << (128 / lane);
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

fn pmovmskb_mm(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_mmx(cpu)?;
    let v = mm(cpu, mm_index(insn.op1_register()));
    enter_mmx(cpu);
    cpu.set_reg(insn.op0_register(), sign_mask(v as u128, 8) & 0xff);
    Ok(())
}

fn movnti(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let r = insn.op1_register();
    let v = cpu.reg(r);
    write_mem_op(cpu, bus, insn, gpr_size(r), v as u128)
}

/// The implicit DS:rDI destination of MASKMOVQ/MASKMOVDQU (segment overridable).
fn rdi_offset(cpu: &Cpu, insn: &Instruction) -> u64 {
    let rdi = cpu.state.gpr[crate::state::reg::RDI];
    match insn.op0_kind() {
        OpKind::MemorySegDI => rdi & 0xffff,
        OpKind::MemorySegEDI => rdi & 0xffff_ffff,
        _ => rdi,
    }
}

/// Stores the bytes of `data` whose `mask` byte has its top bit set. Only the span from the
/// first to the last selected byte is checked and probed (all before any byte is written);
/// an all-zero mask accesses nothing.
fn masked_store(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, data: u128, mask: u128, len: u32) -> Result<()> {
    let sel: u32 = (0..len).filter(|&i| (mask >> (8 * i + 7)) & 1 != 0).fold(0, |m, i| m | 1 << i);
    if sel == 0 {
        return Ok(());
    }
    let (first, last) = (sel.trailing_zeros() as u64, 31 - sel.leading_zeros() as u64);
    let seg = cpu.memory_segment(insn);
    let off = rdi_offset(cpu, insn).wrapping_add(first);
    let span = (last - first + 1) as u8;
    let lin = cpu.linear(seg, off, span, Access::Write)?;
    let ctx = cpu.data_ctx();
    cpu.probe_write(bus, lin, span, ctx)?;
    for i in first..=last {
        if sel & (1 << i) != 0 {
            let a = lin.wrapping_add(i - first) & cpu.lin_mask();
            cpu.write_lin(bus, a, 1, (data >> (8 * i)) as u64, ctx)?;
        }
    }
    Ok(())
}

fn maskmovq(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_mmx(cpu)?;
    let data = mm(cpu, mm_index(insn.op1_register()));
    let mask = mm(cpu, mm_index(insn.op2_register()));
    masked_store(cpu, bus, insn, data as u128, mask as u128, 8)?;
    enter_mmx(cpu);
    Ok(())
}

fn maskmovdqu(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let data = xmm(cpu, insn.op1_register());
    let mask = xmm(cpu, insn.op2_register());
    masked_store(cpu, bus, insn, data, mask, 16)
}

fn ldmxcsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let v = read_src(cpu, bus, insn, 0)? as u32;
    if v & !mx::WRITABLE != 0 {
        return Err(Fault::gp0());
    }
    cpu.state.fpu.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_vector(cpu, insn)?;
    let v = cpu.state.fpu.mxcsr;
    write_mem_op(cpu, bus, insn, 4, v as u128)
}

fn emms(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    check_mmx(cpu)?;
    leave_mmx(cpu);
    Ok(())
}
