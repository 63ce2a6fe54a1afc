//! PCLMULQDQ: carry-less multiplication of one quadword of each operand, chosen by imm8 bits
//! 0 (destination) and 4 (source), into 128 bits (SDM Vol. 2, PCLMULQDQ).

use super::{xmm_op, Handler};
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    (insn.mnemonic() == Mnemonic::Pclmulqdq).then_some(|c, b, i| xmm_op(c, b, i, |d, s| select_and_multiply(d, s, i.immediate8())))
}

pub(super) fn select_and_multiply(a: u128, b: u128, imm: u8) -> u128 {
    let x = (a >> (64 * (imm & 1) as u32)) as u64;
    let y = (b >> (64 * ((imm >> 4) & 1) as u32)) as u64;
    carryless_mul(x, y)
}

fn carryless_mul(x: u64, y: u64) -> u128 {
    (0..64).filter(|&i| y >> i & 1 != 0).fold(0u128, |acc, i| acc ^ (x as u128) << i)
}
