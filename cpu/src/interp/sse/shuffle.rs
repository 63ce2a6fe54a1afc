//! Rearrangement: shuffles (PSHUFD/HW/LW/W, PSHUFB, SHUFPS/PD, PALIGNR), unpacks (PUNPCK*,
//! UNPCK*PS/PD), packs with saturation (PACKSS*/PACKUS*), blends (PBLENDW, BLENDPS/PD and the
//! XMM0-controlled variable blends), element insert/extract (PINSR*, PEXTR*, INSERTPS,
//! EXTRACTPS) and the widening moves PMOVSX*/PMOVZX*.

use super::*;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    let mmx = insn.op0_register().is_mm() || insn.op1_register().is_mm();
    Some(match insn.mnemonic() {
        M::Pshufd => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |_, s| {
                let s = d32(s);
                from_d32(core::array::from_fn(|k| s[sel(imm, k)]))
            })
        },
        M::Pshufhw => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |_, s| {
                let w = w16(s);
                from_w16(core::array::from_fn(|k| if k < 4 { w[k] } else { w[4 + sel(imm, k - 4)] }))
            })
        },
        M::Pshuflw => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |_, s| {
                let w = w16(s);
                from_w16(core::array::from_fn(|k| if k < 4 { w[sel(imm, k)] } else { w[k] }))
            })
        },
        M::Pshufw => |c, b, i| {
            let imm = i.immediate8();
            mm_op(c, b, i, |_, s| {
                let w = w16(s as u128);
                from_w16(core::array::from_fn(|k| if k < 4 { w[sel(imm, k)] } else { 0 })) as u64
            })
        },
        M::Pshufb => mmx_or_xmm!(insn, |a, b| pshufb(a, b, 15), |a: u64, b: u64| pshufb(a as u128, b as u128, 7) as u64),
        M::Palignr if mmx => |c, b, i| {
            let n = i.immediate8() as u32;
            mm_op(c, b, i, |d, s| {
                let cat = (d as u128) << 64 | s as u128;
                if n >= 16 {
                    0
                } else {
                    (cat >> (8 * n)) as u64
                }
            })
        },
        M::Palignr => |c, b, i| {
            let n = i.immediate8() as u32;
            xmm_op(c, b, i, |d, s| match n {
                0 => s,
                1..=15 => (s >> (8 * n)) | (d << (128 - 8 * n)),
                16..=31 => d >> (8 * (n - 16)),
                _ => 0,
            })
        },
        M::Punpcklbw => mmx_or_xmm!(insn, |a, b| unpack_lo(a, b, 1)),
        M::Punpcklwd => mmx_or_xmm!(insn, |a, b| unpack_lo(a, b, 2)),
        M::Punpckldq | M::Unpcklps => mmx_or_xmm!(insn, |a, b| unpack_lo(a, b, 4)),
        M::Punpcklqdq | M::Unpcklpd => mmx_or_xmm!(insn, |a, b| unpack_lo(a, b, 8)),
        M::Punpckhbw => mmx_or_xmm!(insn, |a, b| unpack_lo(a >> 64, b >> 64, 1), |a: u64, b: u64| unpack_hi_mm(a, b, 1)),
        M::Punpckhwd => mmx_or_xmm!(insn, |a, b| unpack_lo(a >> 64, b >> 64, 2), |a: u64, b: u64| unpack_hi_mm(a, b, 2)),
        M::Punpckhdq | M::Unpckhps => {
            mmx_or_xmm!(insn, |a, b| unpack_lo(a >> 64, b >> 64, 4), |a: u64, b: u64| unpack_hi_mm(a, b, 4))
        }
        M::Punpckhqdq | M::Unpckhpd => |c, b, i| xmm_op(c, b, i, |a, b| unpack_lo(a >> 64, b >> 64, 8)),
        M::Packsswb => mmx_or_xmm!(insn, |a, b| pack_w_b(a, b, 8, true), |a: u64, b: u64| pack_w_b(a as u128, b as u128, 4, true) as u64),
        M::Packuswb => mmx_or_xmm!(insn, |a, b| pack_w_b(a, b, 8, false), |a: u64, b: u64| pack_w_b(a as u128, b as u128, 4, false) as u64),
        M::Packssdw => mmx_or_xmm!(insn, |a, b| pack_d_w(a, b, 4, true), |a: u64, b: u64| pack_d_w(a as u128, b as u128, 2, true) as u64),
        M::Packusdw => |c, b, i| xmm_op(c, b, i, |a, b| pack_d_w(a, b, 4, false)),
        M::Shufps => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |d, s| {
                let (d, s) = (d32(d), d32(s));
                from_d32([d[sel(imm, 0)], d[sel(imm, 1)], s[sel(imm, 2)], s[sel(imm, 3)]])
            })
        },
        M::Shufpd => |c, b, i| {
            let imm = i.immediate8() as usize;
            xmm_op(c, b, i, |d, s| from_q64([q64(d)[imm & 1], q64(s)[(imm >> 1) & 1]]))
        },
        M::Pblendw => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |d, s| blend(d, s, 16, |k| imm >> k & 1 != 0))
        },
        M::Blendps => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |d, s| blend(d, s, 32, |k| imm >> k & 1 != 0))
        },
        M::Blendpd => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |d, s| blend(d, s, 64, |k| imm >> k & 1 != 0))
        },
        M::Pblendvb => |c, b, i| blendv(c, b, i, 8),
        M::Blendvps => |c, b, i| blendv(c, b, i, 32),
        M::Blendvpd => |c, b, i| blendv(c, b, i, 64),
        M::Pinsrw if mmx => |c, b, i| {
            let k = (i.immediate8() & 3) as u32;
            mm_op(c, b, i, |d, s| insert(d as u128, s as u128, 16, k) as u64)
        },
        M::Pinsrb => |c, b, i| pinsr(c, b, i, 8),
        M::Pinsrw => |c, b, i| pinsr(c, b, i, 16),
        M::Pinsrd => |c, b, i| pinsr(c, b, i, 32),
        M::Pinsrq => |c, b, i| pinsr(c, b, i, 64),
        M::Pextrw if mmx => pextrw_mm,
        M::Pextrb => |c, b, i| pextr(c, b, i, 8),
        M::Pextrw => |c, b, i| pextr(c, b, i, 16),
        M::Pextrd | M::Extractps => |c, b, i| pextr(c, b, i, 32),
        M::Pextrq => |c, b, i| pextr(c, b, i, 64),
        M::Insertps => insertps,
        M::Pmovsxbw => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 16, true)),
        M::Pmovsxbd => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 32, true)),
        M::Pmovsxbq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 64, true)),
        M::Pmovsxwd => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 16, 32, true)),
        M::Pmovsxwq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 16, 64, true)),
        M::Pmovsxdq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 32, 64, true)),
        M::Pmovzxbw => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 16, false)),
        M::Pmovzxbd => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 32, false)),
        M::Pmovzxbq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 8, 64, false)),
        M::Pmovzxwd => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 16, 32, false)),
        M::Pmovzxwq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 16, 64, false)),
        M::Pmovzxdq => |c, b, i| xmm_op(c, b, i, |_, s| widen(s, 32, 64, false)),
        _ => return None,
    })
}

/// The 2-bit selector for element `k` of a shuffle immediate.
#[inline(always)]
fn sel(imm: u8, k: usize) -> usize {
    ((imm >> (2 * k)) & 3) as usize
}

fn pshufb(a: u128, b: u128, index_mask: u8) -> u128 {
    let (a, b) = (b8(a), b8(b));
    from_b8(core::array::from_fn(|i| if b[i] & 0x80 != 0 { 0 } else { a[(b[i] & index_mask) as usize] }))
}

/// Interleaves the low halves of `a` and `b` in elements of `size` bytes.
fn unpack_lo(a: u128, b: u128, size: u32) -> u128 {
    let bits = size * 8;
    let mask = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 };
    (0..64 / bits).fold(0u128, |r, i| {
        let x = (a >> (i * bits)) & mask;
        let y = (b >> (i * bits)) & mask;
        r | x << (2 * i * bits) | y << ((2 * i + 1) * bits)
    })
}

/// MMX PUNPCKH*: interleave the high 32 bits of each operand.
fn unpack_hi_mm(a: u64, b: u64, size: u32) -> u64 {
    unpack_lo((a >> 32) as u128, (b >> 32) as u128, size) as u64
}

/// PACKSSWB/PACKUSWB: `n` words of each operand to bytes with signed/unsigned saturation.
fn pack_w_b(a: u128, b: u128, n: usize, signed: bool) -> u128 {
    let (a, b) = (w16(a), w16(b));
    let sat = |w: u16| {
        let w = w as i16;
        if signed {
            w.clamp(i8::MIN as i16, i8::MAX as i16) as u8
        } else {
            w.clamp(0, u8::MAX as i16) as u8
        }
    };
    let mut r = [0u8; 16];
    for i in 0..n {
        r[i] = sat(a[i]);
        r[n + i] = sat(b[i]);
    }
    from_b8(r)
}

/// PACKSSDW/PACKUSDW: `n` dwords of each operand to words.
fn pack_d_w(a: u128, b: u128, n: usize, signed: bool) -> u128 {
    let (a, b) = (d32(a), d32(b));
    let sat = |d: u32| {
        let d = d as i32;
        if signed {
            d.clamp(i16::MIN as i32, i16::MAX as i32) as u16
        } else {
            d.clamp(0, u16::MAX as i32) as u16
        }
    };
    let mut r = [0u16; 8];
    for i in 0..n {
        r[i] = sat(a[i]);
        r[n + i] = sat(b[i]);
    }
    from_w16(r)
}

/// Element `k` (of `bits` bits) from `s` where `take(k)`, else from `d`.
pub(crate) fn blend(d: u128, s: u128, bits: u32, take: impl Fn(u32) -> bool) -> u128 {
    let lane = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 };
    let mask = (0..128 / bits).filter(|&k| take(k)).fold(0u128, |m, k| m | lane << (k * bits));
    (d & !mask) | (s & mask)
}

/// PBLENDVB/BLENDVPS/BLENDVPD: the implicit XMM0 selects by each element's top bit.
fn blendv(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    let ctl = cpu.state.fpu.xmm[0];
    xmm_op(cpu, bus, insn, |d, s| blend(d, s, bits, |k| (ctl >> (k * bits + bits - 1)) & 1 != 0))
}

fn insert(d: u128, v: u128, bits: u32, k: u32) -> u128 {
    let lane = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 };
    let sh = k * bits;
    (d & !(lane << sh)) | ((v & lane) << sh)
}

/// PINSRB/W/D/Q xmm, r/m, imm8.
fn pinsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    let k = insn.immediate8() as u32 & (128 / bits - 1);
    xmm_op(cpu, bus, insn, |d, s| insert(d, s, bits, k))
}

/// PEXTRB/W/D/Q and EXTRACTPS: an element to a general register (zero-extended) or memory.
fn pextr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, bits: u32) -> Result<()> {
    check_vector(cpu, insn)?;
    let k = insn.immediate8() as u32 & (128 / bits - 1);
    let v = (xmm(cpu, insn.op1_register()) >> (k * bits)) as u64;
    let v = if bits == 64 { v } else { v & ((1u64 << bits) - 1) };
    match insn.op_kind(0) {
        OpKind::Register => {
            // r32 destinations are zero-extended by the 32-bit register write.
            cpu.set_reg(insn.op0_register(), v);
            Ok(())
        }
        _ => write_mem_op(cpu, bus, insn, (bits / 8) as u8, v as u128),
    }
}

fn pextrw_mm(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_mmx(cpu)?;
    let k = (insn.immediate8() & 3) as u32;
    let v = (mm(cpu, mm_index(insn.op1_register())) >> (16 * k)) & 0xffff;
    enter_mmx(cpu);
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

/// INSERTPS: a single (from a register element imm8[7:6], or memory) into element imm8[5:4],
/// then the elements set in imm8[3:0] cleared.
fn insertps(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let imm = insn.immediate8() as u32;
    // The source precedes the immediate (and follows VEX.vvvv's register in the VEX form).
    let from_reg = insn.op_kind(insn.op_count() - 2) == OpKind::Register;
    xmm_op(cpu, bus, insn, |d, s| {
        let v = if from_reg { s >> (32 * (imm >> 6)) } else { s };
        let r = insert(d, v, 32, (imm >> 4) & 3);
        blend(r, 0, 32, |k| imm >> k & 1 != 0)
    })
}

/// PMOVSX/PMOVZX: the low elements of `from` bits widened to `to` bits.
pub(crate) fn widen(s: u128, from: u32, to: u32, signed: bool) -> u128 {
    let n = 128 / to;
    (0..n).fold(0u128, |r, k| {
        let x = (s >> (k * from)) as u64 & ((1u64 << from) - 1);
        let x = if signed {
            let sh = 64 - from;
            (((x << sh) as i64) >> sh) as u64
        } else {
            x
        };
        let x = if to == 64 { x as u128 } else { (x & ((1u64 << to) - 1)) as u128 };
        r | x << (k * to)
    })
}
