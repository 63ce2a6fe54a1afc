//! Packed integer arithmetic (MMX and XMM forms): add/subtract (wrapping and saturating),
//! multiplies (PMULLW/HW/HUW/LD/UDQ/DQ, PMADDWD, PMADDUBSW, PMULHRSW), PSADBW, PAVG, PMIN/PMAX,
//! PABS, PSIGN, the horizontal PHADD/PHSUB family, MPSADBW and PHMINPOSUW.

use super::*;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match insn.mnemonic() {
        M::Paddb => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::wrapping_add)),
        M::Paddw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::wrapping_add)),
        M::Paddd => mmx_or_xmm!(insn, |a, b| zip32(a, b, u32::wrapping_add)),
        M::Paddq => mmx_or_xmm!(insn, |a, b| zip64(a, b, u64::wrapping_add)),
        M::Psubb => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::wrapping_sub)),
        M::Psubw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::wrapping_sub)),
        M::Psubd => mmx_or_xmm!(insn, |a, b| zip32(a, b, u32::wrapping_sub)),
        M::Psubq => mmx_or_xmm!(insn, |a, b| zip64(a, b, u64::wrapping_sub)),
        M::Paddsb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| (x as i8).saturating_add(y as i8) as u8)),
        M::Paddsw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| (x as i16).saturating_add(y as i16) as u16)),
        M::Paddusb => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::saturating_add)),
        M::Paddusw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::saturating_add)),
        M::Psubsb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| (x as i8).saturating_sub(y as i8) as u8)),
        M::Psubsw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| (x as i16).saturating_sub(y as i16) as u16)),
        M::Psubusb => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::saturating_sub)),
        M::Psubusw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::saturating_sub)),
        M::Pmullw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::wrapping_mul)),
        M::Pmulhw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| ((x as i16 as i32 * y as i16 as i32) >> 16) as u16)),
        M::Pmulhuw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| ((x as u32 * y as u32) >> 16) as u16)),
        M::Pmulld => mmx_or_xmm!(insn, |a, b| zip32(a, b, u32::wrapping_mul)),
        M::Pmuludq => mmx_or_xmm!(insn, |a, b| zip64(a, b, |x, y| (x as u32 as u64) * (y as u32 as u64))),
        M::Pmuldq => mmx_or_xmm!(insn, |a, b| zip64(a, b, |x, y| ((x as i32 as i64) * (y as i32 as i64)) as u64)),
        M::Pmaddwd => mmx_or_xmm!(insn, pmaddwd),
        M::Pmaddubsw => mmx_or_xmm!(insn, pmaddubsw),
        M::Pmulhrsw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| {
            ((((x as i16 as i32 * y as i16 as i32) >> 14) + 1) >> 1) as u16
        })),
        M::Psadbw => mmx_or_xmm!(insn, psadbw),
        M::Pavgb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| ((x as u16 + y as u16 + 1) >> 1) as u8)),
        M::Pavgw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| ((x as u32 + y as u32 + 1) >> 1) as u16)),
        M::Pminub => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::min)),
        M::Pmaxub => mmx_or_xmm!(insn, |a, b| zip8(a, b, u8::max)),
        M::Pminuw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::min)),
        M::Pmaxuw => mmx_or_xmm!(insn, |a, b| zip16(a, b, u16::max)),
        M::Pminud => mmx_or_xmm!(insn, |a, b| zip32(a, b, u32::min)),
        M::Pmaxud => mmx_or_xmm!(insn, |a, b| zip32(a, b, u32::max)),
        M::Pminsb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| (x as i8).min(y as i8) as u8)),
        M::Pmaxsb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| (x as i8).max(y as i8) as u8)),
        M::Pminsw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| (x as i16).min(y as i16) as u16)),
        M::Pmaxsw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| (x as i16).max(y as i16) as u16)),
        M::Pminsd => mmx_or_xmm!(insn, |a, b| zip32(a, b, |x, y| (x as i32).min(y as i32) as u32)),
        M::Pmaxsd => mmx_or_xmm!(insn, |a, b| zip32(a, b, |x, y| (x as i32).max(y as i32) as u32)),
        M::Pabsb => mmx_or_xmm!(insn, |_, b| zip8(b, b, |x, _| (x as i8).unsigned_abs())),
        M::Pabsw => mmx_or_xmm!(insn, |_, b| zip16(b, b, |x, _| (x as i16).unsigned_abs())),
        M::Pabsd => mmx_or_xmm!(insn, |_, b| zip32(b, b, |x, _| (x as i32).unsigned_abs())),
        M::Psignb => mmx_or_xmm!(insn, |a, b| zip8(a, b, |x, y| sign(x as i8 as i64, y as i8 as i64) as u8)),
        M::Psignw => mmx_or_xmm!(insn, |a, b| zip16(a, b, |x, y| sign(x as i16 as i64, y as i16 as i64) as u16)),
        M::Psignd => mmx_or_xmm!(insn, |a, b| zip32(a, b, |x, y| sign(x as i32 as i64, y as i32 as i64) as u32)),
        M::Phaddw | M::Phsubw | M::Phaddsw | M::Phsubsw => horizontal16(insn),
        M::Phaddd | M::Phsubd => horizontal32(insn),
        M::Mpsadbw => |c, b, i| {
            let imm = i.immediate8();
            xmm_op(c, b, i, |d, s| mpsadbw(d, s, imm))
        },
        M::Phminposuw => |c, b, i| xmm_op(c, b, i, |_, s| phminposuw(s)),
        _ => return None,
    })
}

/// PSIGN: the destination element negated, zeroed or kept by the sign of the source's.
#[inline(always)]
fn sign(x: i64, y: i64) -> i64 {
    match y.signum() {
        -1 => x.wrapping_neg(),
        0 => 0,
        _ => x,
    }
}

fn pmaddwd(a: u128, b: u128) -> u128 {
    let (a, b) = (w16(a), w16(b));
    from_d32(core::array::from_fn(|i| {
        let p = |j: usize| a[j] as i16 as i32 * b[j] as i16 as i32;
        // Only −32768² + −32768² overflows; it wraps to 0x8000_0000 as on hardware.
        p(2 * i).wrapping_add(p(2 * i + 1)) as u32
    }))
}

fn pmaddubsw(a: u128, b: u128) -> u128 {
    let (a, b) = (b8(a), b8(b));
    from_w16(core::array::from_fn(|i| {
        let p = |j: usize| a[j] as i32 * b[j] as i8 as i32;
        (p(2 * i) + p(2 * i + 1)).clamp(i16::MIN as i32, i16::MAX as i32) as u16
    }))
}

fn psadbw(a: u128, b: u128) -> u128 {
    let (a, b) = (b8(a), b8(b));
    let sum = |h: usize| (0..8).map(|j| a[8 * h + j].abs_diff(b[8 * h + j]) as u128).sum::<u128>();
    sum(0) | sum(1) << 64
}

/// PHADD/PHSUB on words: pairs of the destination fill the low half, pairs of the source the
/// high half (of 64 bits for MMX, 128 for XMM).
fn horizontal16(insn: &Instruction) -> Handler {
    fn h(a: u128, b: u128, n: usize, f: impl Fn(u16, u16) -> u16) -> u128 {
        let (a, b) = (w16(a), w16(b));
        let mut r = [0u16; 8];
        for i in 0..n / 2 {
            r[i] = f(a[2 * i], a[2 * i + 1]);
            r[n / 2 + i] = f(b[2 * i], b[2 * i + 1]);
        }
        from_w16(r)
    }
    match (insn.mnemonic(), insn.op0_register().is_mm()) {
        (Mnemonic::Phaddw, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 8, u16::wrapping_add)),
        (Mnemonic::Phaddw, true) => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 4, u16::wrapping_add) as u64),
        (Mnemonic::Phsubw, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 8, u16::wrapping_sub)),
        (Mnemonic::Phsubw, true) => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 4, u16::wrapping_sub) as u64),
        (Mnemonic::Phaddsw, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 8, sat_add16)),
        (Mnemonic::Phaddsw, true) => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 4, sat_add16) as u64),
        (Mnemonic::Phsubsw, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 8, sat_sub16)),
        _ => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 4, sat_sub16) as u64),
    }
}

fn sat_add16(x: u16, y: u16) -> u16 {
    (x as i16).saturating_add(y as i16) as u16
}
fn sat_sub16(x: u16, y: u16) -> u16 {
    (x as i16).saturating_sub(y as i16) as u16
}

fn horizontal32(insn: &Instruction) -> Handler {
    fn h(a: u128, b: u128, n: usize, f: impl Fn(u32, u32) -> u32) -> u128 {
        let (a, b) = (d32(a), d32(b));
        let mut r = [0u32; 4];
        for i in 0..n / 2 {
            r[i] = f(a[2 * i], a[2 * i + 1]);
            r[n / 2 + i] = f(b[2 * i], b[2 * i + 1]);
        }
        from_d32(r)
    }
    match (insn.mnemonic(), insn.op0_register().is_mm()) {
        (Mnemonic::Phaddd, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 4, u32::wrapping_add)),
        (Mnemonic::Phaddd, true) => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 2, u32::wrapping_add) as u64),
        (_, false) => |c, b, i| xmm_op(c, b, i, |x, y| h(x, y, 4, u32::wrapping_sub)),
        (_, true) => |c, b, i| mm_op(c, b, i, |x, y| h(x as u128, y as u128, 2, u32::wrapping_sub) as u64),
    }
}

/// MPSADBW: eight sums of absolute differences of a sliding 4-byte window of the destination
/// (offset imm8[2]·4) against a fixed 4-byte block of the source (imm8[1:0]·4).
pub(crate) fn mpsadbw(d: u128, s: u128, imm: u8) -> u128 {
    let (d, s) = (b8(d), b8(s));
    let a = ((imm >> 2) & 1) as usize * 4;
    let b = (imm & 3) as usize * 4;
    from_w16(core::array::from_fn(|i| (0..4).map(|j| d[a + i + j].abs_diff(s[b + j]) as u16).sum()))
}

/// PHMINPOSUW: the smallest word (lowest index on ties) and its index.
fn phminposuw(s: u128) -> u128 {
    let w = w16(s);
    let (idx, min) = w.iter().enumerate().fold((0, w[0]), |(bi, bm), (i, &v)| if v < bm { (i, v) } else { (bi, bm) });
    min as u128 | (idx as u128) << 16
}
