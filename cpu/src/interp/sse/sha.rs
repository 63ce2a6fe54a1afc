//! SHA extensions: SHA1RNDS4, SHA1NEXTE, SHA1MSG1, SHA1MSG2, SHA256RNDS2, SHA256MSG1,
//! SHA256MSG2, written from the SDM's operation sections (Vol. 2) with FIPS 180-4's functions.
//! Dword 3 (bits 127:96) holds the SDM's first-named word (A, W0, ...).

use super::{d32, from_d32, xmm, xmm_op, Handler};
use iced_x86::{Instruction, Mnemonic, Register};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Sha1rnds4 => |c, b, i| xmm_op(c, b, i, |d, s| sha1_rounds4(d, s, i.immediate8())),
        Mnemonic::Sha1nexte => |c, b, i| xmm_op(c, b, i, sha1_next_e),
        Mnemonic::Sha1msg1 => |c, b, i| xmm_op(c, b, i, sha1_msg1),
        Mnemonic::Sha1msg2 => |c, b, i| xmm_op(c, b, i, sha1_msg2),
        Mnemonic::Sha256rnds2 => |c, b, i| {
            let wk = xmm(c, Register::XMM0);
            xmm_op(c, b, i, |d, s| sha256_rounds2(d, s, wk))
        },
        Mnemonic::Sha256msg1 => |c, b, i| xmm_op(c, b, i, sha256_msg1),
        Mnemonic::Sha256msg2 => |c, b, i| xmm_op(c, b, i, sha256_msg2),
        _ => return None,
    })
}

/// Dwords from the top: [bits 127:96, 95:64, 63:32, 31:0].
fn words(v: u128) -> [u32; 4] {
    let d = d32(v);
    [d[3], d[2], d[1], d[0]]
}

fn from_words(w: [u32; 4]) -> u128 {
    from_d32([w[3], w[2], w[1], w[0]])
}

fn sha1_f(round_group: u8, b: u32, c: u32, d: u32) -> u32 {
    match round_group & 3 {
        0 => (b & c) ^ (!b & d),
        2 => (b & c) ^ (b & d) ^ (c & d),
        _ => b ^ c ^ d,
    }
}

const SHA1_K: [u32; 4] = [0x5a82_7999, 0x6ed9_eba1, 0x8f1b_bcdc, 0xca62_c1d6];

fn sha1_rounds4(state: u128, msg: u128, imm: u8) -> u128 {
    let [mut a, mut b, mut c, mut d] = words(state);
    let w = words(msg);
    let k = SHA1_K[(imm & 3) as usize];
    // The first round's W already includes E (SHA1NEXTE adds it), so E starts at 0.
    let mut e = 0u32;
    for wi in w {
        let t = sha1_f(imm, b, c, d).wrapping_add(a.rotate_left(5)).wrapping_add(wi).wrapping_add(e).wrapping_add(k);
        (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
    }
    from_words([a, b, c, d])
}

fn sha1_next_e(state: u128, msg: u128) -> u128 {
    let e = words(state)[0].rotate_left(30);
    let mut w = words(msg);
    w[0] = w[0].wrapping_add(e);
    from_words(w)
}

fn sha1_msg1(a: u128, b: u128) -> u128 {
    let [w0, w1, w2, w3] = words(a);
    let [w4, w5, _, _] = words(b);
    from_words([w2 ^ w0, w3 ^ w1, w4 ^ w2, w5 ^ w3])
}

fn sha1_msg2(a: u128, b: u128) -> u128 {
    let s = words(a);
    let [_, w13, w14, w15] = words(b);
    let w16 = (s[0] ^ w13).rotate_left(1);
    let w17 = (s[1] ^ w14).rotate_left(1);
    let w18 = (s[2] ^ w15).rotate_left(1);
    let w19 = (s[3] ^ w16).rotate_left(1);
    from_words([w16, w17, w18, w19])
}

fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// Two SHA-256 rounds: the destination holds C, D, G, H and the source A, B, E, F; XMM0's
/// low two dwords are W+K of the two rounds.
fn sha256_rounds2(cdgh: u128, abef: u128, wk: u128) -> u128 {
    let [mut a, mut b, mut e, mut f] = words(abef);
    let [mut c, mut d, mut g, mut h] = words(cdgh);
    for k in [wk as u32, (wk >> 32) as u32] {
        let ch = (e & f) ^ (!e & g);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t1 = ch.wrapping_add(big_sigma1(e)).wrapping_add(k).wrapping_add(h);
        (h, g, f, e) = (g, f, e, t1.wrapping_add(d));
        (d, c, b, a) = (c, b, a, t1.wrapping_add(maj).wrapping_add(big_sigma0(a)));
    }
    from_words([a, b, e, f])
}

fn sha256_msg1(a: u128, b: u128) -> u128 {
    let [w3, w2, w1, w0] = words(a);
    let w4 = words(b)[3];
    from_words([
        w3.wrapping_add(small_sigma0(w4)),
        w2.wrapping_add(small_sigma0(w3)),
        w1.wrapping_add(small_sigma0(w2)),
        w0.wrapping_add(small_sigma0(w1)),
    ])
}

fn sha256_msg2(a: u128, b: u128) -> u128 {
    let s = d32(a);
    let [w15, w14, _, _] = words(b);
    let w16 = s[0].wrapping_add(small_sigma1(w14));
    let w17 = s[1].wrapping_add(small_sigma1(w15));
    let w18 = s[2].wrapping_add(small_sigma1(w16));
    let w19 = s[3].wrapping_add(small_sigma1(w17));
    from_words([w19, w18, w17, w16])
}
