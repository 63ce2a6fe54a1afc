//! AES-NI: AESENC, AESENCLAST, AESDEC, AESDECLAST, AESIMC, AESKEYGENASSIST (SDM Vol. 2 and
//! FIPS-197). The 128-bit state is the register with byte i at row i mod 4, column i / 4.
//! The S-boxes are computed at compile time from their definition (inverse in GF(2^8)
//! followed by the affine map), not copied as tables.

use super::{b8, from_b8, xmm_op, Handler};
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Aesenc => |c, b, i| xmm_op(c, b, i, |s, k| mix_columns(sub_bytes(shift_rows(s), &SBOX)) ^ k),
        Mnemonic::Aesenclast => |c, b, i| xmm_op(c, b, i, |s, k| sub_bytes(shift_rows(s), &SBOX) ^ k),
        Mnemonic::Aesdec => |c, b, i| xmm_op(c, b, i, |s, k| inv_mix_columns(sub_bytes(inv_shift_rows(s), &INV_SBOX)) ^ k),
        Mnemonic::Aesdeclast => |c, b, i| xmm_op(c, b, i, |s, k| sub_bytes(inv_shift_rows(s), &INV_SBOX) ^ k),
        Mnemonic::Aesimc => |c, b, i| xmm_op(c, b, i, |_, s| inv_mix_columns(s)),
        Mnemonic::Aeskeygenassist => |c, b, i| xmm_op(c, b, i, |_, s| key_gen_assist(s, i.immediate8())),
        _ => return None,
    })
}

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
pub(crate) const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    p
}

/// The multiplicative inverse (0 maps to 0): a^254.
const fn gf_inv(a: u8) -> u8 {
    let mut r = 1u8;
    let mut i = 0;
    while i < 254 {
        r = gf_mul(r, a);
        i += 1;
    }
    r
}

const fn sbox() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = gf_inv(i as u8);
        t[i] = b ^ b.rotate_left(1) ^ b.rotate_left(2) ^ b.rotate_left(3) ^ b.rotate_left(4) ^ 0x63;
        i += 1;
    }
    t
}

const fn invert(s: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[s[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static SBOX: [u8; 256] = sbox();
static INV_SBOX: [u8; 256] = invert(&SBOX);

fn sub_bytes(s: u128, table: &[u8; 256]) -> u128 {
    from_b8(b8(s).map(|x| table[x as usize]))
}

/// Row r rotates left by r columns; `dir` = -1 rotates right (the inverse).
fn rotate_rows(s: u128, dir: isize) -> u128 {
    let b = b8(s);
    from_b8(core::array::from_fn(|i| {
        let (row, col) = (i % 4, i / 4);
        let from = (col as isize + dir * row as isize).rem_euclid(4) as usize;
        b[row + 4 * from]
    }))
}

fn shift_rows(s: u128) -> u128 {
    rotate_rows(s, 1)
}

fn inv_shift_rows(s: u128) -> u128 {
    rotate_rows(s, -1)
}

/// Each column times the circulant matrix whose first row is `m`.
fn mix_with(s: u128, m: [u8; 4]) -> u128 {
    let b = b8(s);
    from_b8(core::array::from_fn(|i| {
        let (row, col) = (i % 4, i / 4);
        (0..4).fold(0, |acc, k| acc ^ gf_mul(m[(k + 4 - row) % 4], b[k + 4 * col]))
    }))
}

fn mix_columns(s: u128) -> u128 {
    mix_with(s, [2, 3, 1, 1])
}

fn inv_mix_columns(s: u128) -> u128 {
    mix_with(s, [14, 11, 13, 9])
}

fn sub_word(w: u32) -> u32 {
    u32::from_le_bytes(w.to_le_bytes().map(|x| SBOX[x as usize]))
}

/// AESKEYGENASSIST: SubWord of dwords 1 and 3, each also rotated right by 8 and XORed with
/// the round constant.
fn key_gen_assist(s: u128, rcon: u8) -> u128 {
    let x1 = sub_word((s >> 32) as u32);
    let x3 = sub_word((s >> 96) as u32);
    let rcon = rcon as u32;
    super::from_d32([x1, x1.rotate_right(8) ^ rcon, x3, x3.rotate_right(8) ^ rcon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbox_matches_fips_197() {
        // FIPS-197 figure 7: S(0x00) = 0x63, S(0x53) = 0xed; the inverse undoes it.
        assert_eq!((SBOX[0], SBOX[0x53], INV_SBOX[0xed]), (0x63, 0xed, 0x53));
    }
}
