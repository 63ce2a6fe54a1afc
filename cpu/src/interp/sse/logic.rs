//! Bitwise logic (PAND/PANDN/POR/PXOR and the PS/PD forms) and the element shifts (PSLL/PSRL/
//! PSRA by register, memory or immediate count; PSLLDQ/PSRLDQ byte shifts).

use super::*;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match insn.mnemonic() {
        M::Pand | M::Andps | M::Andpd => mmx_or_xmm!(insn, |a, b| a & b),
        M::Pandn | M::Andnps | M::Andnpd => mmx_or_xmm!(insn, |a: u128, b| !a & b),
        M::Por | M::Orps | M::Orpd => mmx_or_xmm!(insn, |a, b| a | b),
        M::Pxor | M::Xorps | M::Xorpd => mmx_or_xmm!(insn, |a, b| a ^ b),
        M::Psllw => mmx_or_xmm!(insn, |a, c| shift16(a, c, Shift::Left)),
        M::Psrlw => mmx_or_xmm!(insn, |a, c| shift16(a, c, Shift::Right)),
        M::Psraw => mmx_or_xmm!(insn, |a, c| shift16(a, c, Shift::Arith)),
        M::Pslld => mmx_or_xmm!(insn, |a, c| shift32(a, c, Shift::Left)),
        M::Psrld => mmx_or_xmm!(insn, |a, c| shift32(a, c, Shift::Right)),
        M::Psrad => mmx_or_xmm!(insn, |a, c| shift32(a, c, Shift::Arith)),
        M::Psllq => mmx_or_xmm!(insn, |a, c| shift64(a, c, Shift::Left)),
        M::Psrlq => mmx_or_xmm!(insn, |a, c| shift64(a, c, Shift::Right)),
        M::Pslldq => |c, b, i| xmm_op(c, b, i, |a, n| if n > 15 { 0 } else { a << (8 * n) }),
        M::Psrldq => |c, b, i| xmm_op(c, b, i, |a, n| if n > 15 { 0 } else { a >> (8 * n) }),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shift {
    Left,
    Right,
    Arith,
}

/// The count is the whole low quadword of the source (or the immediate); counts beyond the
/// element width clear the element, or fill it with its sign for arithmetic shifts.
#[inline(always)]
fn count(c: u128, width: u32, kind: Shift) -> Option<u32> {
    let c = c as u64;
    if c < width as u64 {
        Some(c as u32)
    } else if kind == Shift::Arith {
        Some(width - 1)
    } else {
        None
    }
}

fn shift16(a: u128, c: u128, kind: Shift) -> u128 {
    let Some(n) = count(c, 16, kind) else { return 0 };
    zip16(a, 0, |x, _| match kind {
        Shift::Left => x << n,
        Shift::Right => x >> n,
        Shift::Arith => ((x as i16) >> n) as u16,
    })
}

fn shift32(a: u128, c: u128, kind: Shift) -> u128 {
    let Some(n) = count(c, 32, kind) else { return 0 };
    zip32(a, 0, |x, _| match kind {
        Shift::Left => x << n,
        Shift::Right => x >> n,
        Shift::Arith => ((x as i32) >> n) as u32,
    })
}

fn shift64(a: u128, c: u128, kind: Shift) -> u128 {
    let Some(n) = count(c, 64, kind) else { return 0 };
    zip64(a, 0, |x, _| if kind == Shift::Left { x << n } else { x >> n })
}
