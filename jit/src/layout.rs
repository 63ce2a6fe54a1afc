//! What the translator needs to know about the CPU it generates code for.

/// Field offsets (from the CPU pointer a block receives) and helper entry points. Built by
/// the CPU with `offset_of!`, so the generated code follows the CPU's real layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The 16 general-purpose registers, `u64` each, RAX first.
    pub gpr: i32,
    pub rip: i32,
    pub rflags: i32,
    /// The lazy condition codes: `op: u8`, `size: u8`, `carry_in: u8`, `dst`/`src`/`res: u64`.
    pub cc_op: i32,
    pub cc_size: i32,
    pub cc_carry_in: i32,
    pub cc_dst: i32,
    pub cc_src: i32,
    pub cc_res: i32,
    pub cc_ops: CcOps,
    /// Segment bases (`u64`) in ES, CS, SS, DS, FS, GS order.
    pub seg_base: [i32; 6],
    /// The pointer to the soft TLB: `[context][slot]` entries.
    pub tlb: i32,
    pub tlb_bits: u32,
    pub tlb_entry_size: i32,
    pub tlb_read: i32,
    pub tlb_write: i32,
    pub tlb_addend: i32,
    /// TLB context indices: CPL 0-2 (plus one for RFLAGS.AC = 1, which must follow it), CPL 3.
    pub ctx_supervisor: u32,
    pub ctx_user: u32,
    /// `extern "C" fn(frame, index) -> u64`: runs instruction `index` of the block through
    /// the interpreter; returns an [`ExecStatus`].
    pub exec: usize,
    /// `extern "C" fn(cpu, condition) -> u64`: evaluates a condition code (iced's
    /// `ConditionCode` numbering) from the flags in memory.
    pub cond: usize,
}

/// The CPU's numbering of lazy flag operations (see the CPU's `CcOp`).
#[derive(Clone, Copy, Debug)]
pub struct CcOps {
    pub add: u8,
    pub sub: u8,
    pub logic: u8,
    pub inc: u8,
    pub dec: u8,
}

/// What the interpreter helper reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExecStatus {
    /// Retired; continue with the next instruction.
    Next = 0,
    /// Retired, but the block must end here (a mode change, its own code overwritten, a
    /// repeated string instruction not finished).
    Stop = 1,
    /// Faulted: not retired; the fault waits in the frame.
    Fault = 2,
}
