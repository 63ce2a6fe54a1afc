//! Instruction family: atomic (not yet written: every mnemonic here raises #UD).

use super::Handler;
use iced_x86::Instruction;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    let _ = insn;
    None
}
