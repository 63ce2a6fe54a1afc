//! Alignment checking (SDM Vol. 3, 6.15 "Interrupt 17—Alignment Check Exception (#AC)"):
//! with CR0.AM = 1, EFLAGS.AC = 1 and CPL 3, an explicit data access whose address is not a
//! multiple of its size raises #AC(0). Implicit supervisor accesses (descriptor tables, the
//! IDT, the TSS) use the supervisor TLB context and are never checked.
//!
//! The mode is computed once per block while EFLAGS.AC is set or the mode is on
//! (`debug_block_start`): every way in or out of it
//! (POPF, IRET, far transfers, SYSRET, MOV CR0, task switches) ends the block. While it
//! is on, every user-context TLB entry carries slow-path tags, so each user access reaches
//! `guest_access` and `check_alignment`; the fast path costs nothing more.

use crate::exception::{vector, Fault, Result};
use crate::mmu::Ctx;
use crate::state::{cr0, flags};
use crate::Cpu;

impl Cpu {
    /// Whether accesses are alignment-checked now: CR0.AM, EFLAGS.AC and CPL 3.
    pub(crate) fn alignment_checking(&self) -> bool {
        let st = &self.state;
        st.cr0 & cr0::AM != 0 && st.rflags & flags::AC != 0 && st.cpl() == 3
    }

    /// Re-evaluates CR0.AM && EFLAGS.AC && CPL 3; a change redoes the user TLB entries'
    /// tags (dropping them; they refill with or without slow tags).
    pub(crate) fn update_alignment_mode(&mut self) {
        let on = self.alignment_checking();
        if on == self.dbg.ac {
            return;
        }
        self.dbg.ac = on;
        self.update_debug_modes();
        self.catch_up_code();
        self.tlb.clear_table(Ctx::User as usize);
    }

    /// #AC(0) for a misaligned access of `size` bytes (a word on an odd address, a
    /// doubleword off a multiple of 4, a quadword off a multiple of 8: the SDM's Table 6-7
    /// for the sizes the accessors see; wider operands are accessed in such pieces).
    pub(crate) fn check_alignment(&self, lin: u64, size: u64) -> Result<()> {
        if size > 1 && lin & (size.min(8) - 1) != 0 {
            return Err(Fault::exc_code(vector::AC, 0));
        }
        Ok(())
    }
}
