//! AVX/AVX2 rearrangements without an SSE twin: broadcasts, 128-bit lane insert/extract and
//! VPERM2F128/I128, VPERMQ/PD/D/PS, VPERMILPS/PD, VPBLENDD, the 256-bit VBLENDPS/PD, VSHUFPD
//! and VMPSADBW (whose upper lane reads other immediate bits), VMOVDDUP ymm, the register-mask blends
//! VBLENDVPS/PD and VPBLENDVB, the variable shifts VPSLLV/VPSRLV/VPSRAV and VTESTPS/PD.

use super::super::sse::{blend, d32, from_d32, from_q64, mpsadbw, q64, sign_mask, write_mem_op, zip32, zip64};
use super::{read, wide_operand, write, Y};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::interp::sse::check_avx;
use crate::interp::Handler;
use crate::state::flags::{ARITH, CF, ZF};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic as M, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    let wide = wide_operand(insn, 0);
    Some(match insn.mnemonic() {
        M::Vpbroadcastb => |c, b, i| broadcast(c, b, i, 8),
        M::Vpbroadcastw => |c, b, i| broadcast(c, b, i, 16),
        M::Vpbroadcastd | M::Vbroadcastss => |c, b, i| broadcast(c, b, i, 32),
        M::Vpbroadcastq | M::Vbroadcastsd => |c, b, i| broadcast(c, b, i, 64),
        M::Vbroadcastf128 | M::Vbroadcasti128 => |c, b, i| broadcast(c, b, i, 128),
        M::Vinsertf128 | M::Vinserti128 => insert128,
        M::Vextractf128 | M::Vextracti128 => extract128,
        M::Vperm2f128 | M::Vperm2i128 => perm2x128,
        M::Vpermq | M::Vpermpd => |c, b, i| unary(c, b, i, permute_qwords),
        M::Vpermd | M::Vpermps => |c, b, i| binary(c, b, i, |idx, s, _| permute_dwords(idx, s)),
        M::Vpermilps if insn.op_kind(2) == OpKind::Immediate8 => |c, b, i| unary(c, b, i, |s, imm| per_lane(s, |l, _| shuffle_dwords(l, |k| imm >> (2 * k)))),
        M::Vpermilps => |c, b, i| binary(c, b, i, |s, ctl, _| {
            let ctl = [d32(ctl[0]), d32(ctl[1])];
            per_lane(s, |l, n| shuffle_dwords(l, |k| ctl[n][k] as u8))
        }),
        M::Vpermilpd if insn.op_kind(2) == OpKind::Immediate8 => |c, b, i| unary(c, b, i, |s, imm| per_lane(s, |l, n| shuffle_qwords(l, |k| imm >> (2 * n + k)))),
        M::Vpermilpd => |c, b, i| binary(c, b, i, |s, ctl, _| {
            let ctl = [q64(ctl[0]), q64(ctl[1])];
            per_lane(s, |l, n| shuffle_qwords(l, |k| (ctl[n][k] >> 1) as u8))
        }),
        M::Vmovddup if wide => |c, b, i| unary(c, b, i, |s, _| per_lane(s, |l, _| from_q64([l as u64; 2]))),
        M::Vpblendd => |c, b, i| binary(c, b, i, |x, y, imm| blend_by_bits(x, y, 32, imm)),
        M::Vblendps if wide => |c, b, i| binary(c, b, i, |x, y, imm| blend_by_bits(x, y, 32, imm)),
        M::Vblendpd if wide => |c, b, i| binary(c, b, i, |x, y, imm| blend_by_bits(x, y, 64, imm)),
        M::Vshufpd if wide => |c, b, i| binary(c, b, i, |x, y, imm| {
            let pick = |v: u128, bit: u8| q64(v)[(imm >> bit & 1) as usize];
            [from_q64([pick(x[0], 0), pick(y[0], 1)]), from_q64([pick(x[1], 2), pick(y[1], 3)])]
        }),
        M::Vmpsadbw if wide => |c, b, i| binary(c, b, i, |x, y, imm| [mpsadbw(x[0], y[0], imm), mpsadbw(x[1], y[1], imm >> 3)]),
        M::Vpblendvb => |c, b, i| blend_by_mask(c, b, i, 8),
        M::Vblendvps => |c, b, i| blend_by_mask(c, b, i, 32),
        M::Vblendvpd => |c, b, i| blend_by_mask(c, b, i, 64),
        M::Vpsllvd => |c, b, i| binary(c, b, i, |x, n, _| lanewise(x, n, |x, n| zip32(x, n, |v, s| if s < 32 { v << s } else { 0 }))),
        M::Vpsllvq => |c, b, i| binary(c, b, i, |x, n, _| lanewise(x, n, |x, n| zip64(x, n, |v, s| if s < 64 { v << s } else { 0 }))),
        M::Vpsrlvd => |c, b, i| binary(c, b, i, |x, n, _| lanewise(x, n, |x, n| zip32(x, n, |v, s| if s < 32 { v >> s } else { 0 }))),
        M::Vpsrlvq => |c, b, i| binary(c, b, i, |x, n, _| lanewise(x, n, |x, n| zip64(x, n, |v, s| if s < 64 { v >> s } else { 0 }))),
        M::Vpsravd => |c, b, i| binary(c, b, i, |x, n, _| lanewise(x, n, |x, n| zip32(x, n, |v, s| ((v as i32) >> s.min(31)) as u32))),
        M::Vtestps => |c, b, i| test_signs(c, b, i, 32),
        M::Vtestpd => |c, b, i| test_signs(c, b, i, 64),
        _ => return None,
    })
}

/// `dest ← f(src, imm)` for the forms without VEX.vvvv (`op, dest, src/m, imm8`).
fn unary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: fn(Y, u8) -> Y) -> Result<()> {
    check_avx(cpu)?;
    let s = read(cpu, bus, insn, 1)?;
    write(cpu, insn, f(s, insn.immediate8()));
    Ok(())
}

/// `dest ← f(src1, src2, imm)` for `op, dest, vvvv, r/m[, imm8]`.
fn binary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, f: fn(Y, Y, u8) -> Y) -> Result<()> {
    check_avx(cpu)?;
    let a = read(cpu, bus, insn, 1)?;
    let b = read(cpu, bus, insn, 2)?;
    let imm = if insn.op_count() > 3 && insn.op_kind(3) == OpKind::Immediate8 { insn.immediate8() } else { 0 };
    write(cpu, insn, f(a, b, imm));
    Ok(())
}

fn per_lane(s: Y, f: impl Fn(u128, usize) -> u128) -> Y {
    [f(s[0], 0), f(s[1], 1)]
}

fn lanewise(x: Y, y: Y, f: impl Fn(u128, u128) -> u128) -> Y {
    [f(x[0], y[0]), f(x[1], y[1])]
}

/// Each dword k of the lane takes element `sel(k) & 3`.
fn shuffle_dwords(l: u128, sel: impl Fn(usize) -> u8) -> u128 {
    let d = d32(l);
    from_d32(core::array::from_fn(|k| d[(sel(k) & 3) as usize]))
}

fn shuffle_qwords(l: u128, sel: impl Fn(usize) -> u8) -> u128 {
    let q = q64(l);
    from_q64(core::array::from_fn(|k| q[(sel(k) & 1) as usize]))
}

fn qwords(v: Y) -> [u64; 4] {
    let (a, b) = (q64(v[0]), q64(v[1]));
    [a[0], a[1], b[0], b[1]]
}

fn from_qwords(q: [u64; 4]) -> Y {
    [from_q64([q[0], q[1]]), from_q64([q[2], q[3]])]
}

fn permute_qwords(s: Y, imm: u8) -> Y {
    let q = qwords(s);
    from_qwords(core::array::from_fn(|k| q[(imm >> (2 * k) & 3) as usize]))
}

fn permute_dwords(idx: Y, s: Y) -> Y {
    let d = [d32(s[0]), d32(s[1])].concat();
    let i = [d32(idx[0]), d32(idx[1])].concat();
    let r: [u32; 8] = core::array::from_fn(|k| d[(i[k] & 7) as usize]);
    [from_d32([r[0], r[1], r[2], r[3]]), from_d32([r[4], r[5], r[6], r[7]])]
}

/// Element k (of `bits`) from `y` where bit k of `imm` is set (bits past 8 repeat, as
/// VPBLENDD's 8-bit immediate covers eight dwords).
fn blend_by_bits(x: Y, y: Y, bits: u32, imm: u8) -> Y {
    let per_lane = 128 / bits;
    core::array::from_fn(|l| blend(x[l], y[l], bits, |k| imm >> ((l as u32 * per_lane + k) % 8) & 1 != 0))
}

/// VPBLENDVB/VBLENDVPS/VBLENDVPD dest, src1, src2/m, mask: an element of `src2` where the
/// mask element's top bit is set, else of `src1`.
fn blend_by_mask(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    check_avx(cpu)?;
    let a = read(cpu, bus, insn, 1)?;
    let b = read(cpu, bus, insn, 2)?;
    let m = read(cpu, bus, insn, 3)?;
    let r = core::array::from_fn(|l| blend(a[l], b[l], bits, |k| m[l] >> (k * bits + bits - 1) & 1 != 0));
    write(cpu, insn, r);
    Ok(())
}

/// VTESTPS/PD: ZF = no element with both sign bits set, CF = no element whose source sign
/// is set and destination sign clear; AF, OF, PF, SF cleared.
fn test_signs(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    check_avx(cpu)?;
    let d = read(cpu, bus, insn, 0)?;
    let s = read(cpu, bus, insn, 1)?;
    let signs = |v: Y| sign_mask(v[0], bits) | sign_mask(v[1], bits) << (128 / bits);
    let (ds, ss) = (signs(d), signs(s));
    let f = if ds & ss == 0 { ZF } else { 0 } | if !ds & ss == 0 { CF } else { 0 };
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}

/// VPBROADCAST*/VBROADCAST*: the source's low element of `bits` in every element.
fn broadcast(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    check_avx(cpu)?;
    let s = read(cpu, bus, insn, 1)?[0];
    let e = if bits == 128 { s } else { s & ((1u128 << bits) - 1) };
    let lane = (0..128 / bits).fold(0u128, |acc, k| acc | e << (k * bits));
    write(cpu, insn, [lane; 2]);
    Ok(())
}

/// VINSERTF128/I128 dest, src1, src2/m128, imm: src1 with lane imm[0] replaced.
fn insert128(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let mut a = read(cpu, bus, insn, 1)?;
    let b = read(cpu, bus, insn, 2)?[0];
    a[(insn.immediate8() & 1) as usize] = b;
    write(cpu, insn, a);
    Ok(())
}

/// VEXTRACTF128/I128 xmm/m128, ymm, imm: lane imm[0] (a register destination's upper lane is
/// zeroed).
fn extract128(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let v = read(cpu, bus, insn, 1)?[(insn.immediate8() & 1) as usize];
    match insn.op_kind(0) {
        OpKind::Register => write(cpu, insn, [v, 0]),
        _ => write_mem_op(cpu, bus, insn, 16, v)?,
    }
    Ok(())
}

/// VPERM2F128/I128: each destination lane is a lane of either source, or zero (imm bit 3/7).
fn perm2x128(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_avx(cpu)?;
    let a = read(cpu, bus, insn, 1)?;
    let b = read(cpu, bus, insn, 2)?;
    let imm = insn.immediate8();
    let all = [a[0], a[1], b[0], b[1]];
    let pick = |ctl: u8| if ctl & 8 != 0 { 0 } else { all[(ctl & 3) as usize] };
    write(cpu, insn, [pick(imm), pick(imm >> 4)]);
    Ok(())
}
