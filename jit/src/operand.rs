//! Operand facts shared by the interpreter and the translator.

use iced_x86::{CodeSize, Instruction, Register};

/// Size in bytes of a general-purpose register (0 for anything else).
#[inline(always)]
pub fn gpr_size(r: Register) -> u8 {
    match r as u32 {
        1..=20 => 1,
        21..=36 => 2,
        37..=52 | 69 => 4,
        53..=68 | 70 => 8,
        _ => 0,
    }
}

/// Where a general-purpose register lives: index into the 16 registers, width in bytes,
/// and whether it is one of AH, CH, DH, BH (bits 8-15). `None` for other registers.
pub fn gpr_slot(r: Register) -> Option<(usize, u8, bool)> {
    let n = r as u32;
    Some(match n {
        1..=4 => ((n - 1) as usize, 1, false),
        5..=8 => ((n - 5) as usize, 1, true),
        9..=20 => ((n - 5) as usize, 1, false),
        21..=36 => ((n - 21) as usize, 2, false),
        37..=52 => ((n - 37) as usize, 4, false),
        53..=68 => ((n - 53) as usize, 8, false),
        _ => return None,
    })
}

/// Address-size mask of the instruction's explicit memory operand (offsets wrap at it).
#[inline]
pub fn address_mask(insn: &Instruction) -> u64 {
    let size = gpr_size(insn.memory_base()).max(gpr_size(insn.memory_index()));
    match size {
        8 => u64::MAX,
        4 => 0xffff_ffff,
        2 => 0xffff,
        _ => match insn.memory_displ_size() {
            8 => u64::MAX,
            4 => 0xffff_ffff,
            2 => 0xffff,
            _ => match insn.code_size() {
                CodeSize::Code16 => 0xffff,
                CodeSize::Code32 => 0xffff_ffff,
                _ => u64::MAX,
            },
        },
    }
}
