//! What the translator needs to know about the CPU it generates code for.

/// The MXCSR compiled code runs SSE arithmetic under (the host's, and Rust's, default):
/// every exception masked, round to nearest, neither flush-to-zero nor denormals-are-zero.
/// Compiled code runs an SSE floating-point instruction only while the guest's MXCSR has
/// these controls; the CPU keeps the host's MXCSR at this value while compiled code runs,
/// and the exception flags the host raises meanwhile are the guest's.
pub const NATIVE_MXCSR: u32 = 0x1f80;
/// MXCSR's exception flags (IE, DE, ZE, OE, UE, PE).
pub const MXCSR_FLAGS: u32 = 0x3f;
/// MXCSR's defined control bits (DAZ, the masks, RC, FTZ).
pub const MXCSR_CONTROLS: u32 = 0xffc0;

/// Field offsets (from the CPU pointer a block receives) and helper entry points. Built by
/// the CPU with `offset_of!`, so the generated code follows the CPU's real layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The 16 general-purpose registers, `u64` each, RAX first.
    pub gpr: i32,
    pub rip: i32,
    pub rflags: i32,
    pub cr0: i32,
    pub cr4: i32,
    /// XMM0-15, 16 bytes each (low quadword first).
    pub xmm: i32,
    /// MXCSR (`u32`).
    pub mxcsr: i32,
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
    /// Segment selectors (`u16`), in the same order.
    pub seg_selector: [i32; 6],
    /// SS's descriptor attributes (`u32`), whose DPL (2 bits from `dpl_shift`) is the CPL.
    pub ss_attrs: i32,
    pub dpl_shift: u32,
    /// `u64`: the KERNEL_GS_BASE MSR, which SWAPGS exchanges with GS's base.
    pub kernel_gs_base: i32,
    /// The pointer to the soft TLB: `[table][slot]` entries, a data table per context, then
    /// a code table per context (`code_tables` tables further on).
    pub tlb: i32,
    pub tlb_bits: u32,
    pub tlb_entry_size: i32,
    pub tlb_read: i32,
    pub tlb_write: i32,
    pub tlb_addend: i32,
    /// The entry's instruction-fetch tag and physical page (`u64`s), which validate links
    /// to other pages (see `chain::LinkCell`), read in a context's code table.
    pub tlb_exec: i32,
    pub tlb_paddr: i32,
    /// How many tables the code table of a context lies beyond its data table.
    pub code_tables: u32,
    /// TLB context indices: CPL 0-2 (plus one for RFLAGS.AC = 1, which must follow it), CPL 3.
    pub ctx_supervisor: u32,
    pub ctx_user: u32,
    /// `extern "C" fn(frame, index) -> u64`: runs instruction `index` of the block through
    /// the interpreter; returns an [`ExecStatus`].
    pub exec: usize,
    /// `extern "C" fn(frame, exit) -> u64`: called by the link stub (`chain::Entry`, made
    /// with it) at an exit of the
    /// frame's block whose link is missing or no longer holds, when nothing needs the run
    /// loop: links the exit to the compiled block for the RIP just stored and returns that
    /// block's entry, or 0 (the chain returns).
    pub link: usize,
    /// `extern "C" fn(frame, lin, request)`: called (through the fill stub, see
    /// `chain::Entry`) when an inline TLB probe misses; fills the TLB for the access at
    /// linear `lin` that `request` describes (see [`fill_request`]) and sets
    /// `FrameLayout::fill_ok` if it may
    /// now go the fast way, else clears it (it faults, crosses a page, or needs the slow
    /// path): the block then leaves through a side exit.
    pub tlb_fill: usize,
    /// `extern "C" fn(cpu, 0) -> u64`: folds the lazy record in memory into RFLAGS (the
    /// record's operation becomes `CcOps::eflags`) and returns RFLAGS.
    pub flags: usize,
    /// The generation of links to blocks on global pages (`u64`, with `GLOBAL_LINK` set):
    /// bumped only when global translations may have changed.
    pub global_link_generation: i32,
    /// The bits of the attention word (see `FrameLayout::attention`) that hold the INTR line.
    pub attention_intr: u64,
    pub frame: FrameLayout,
}

/// The frame a chain of blocks shares (offsets from the frame pointer each block receives).
#[derive(Clone, Copy, Debug)]
pub struct FrameLayout {
    /// The running block (pointer), which the interpreter helper, side exits and linking
    /// read: a block stores its own on the paths that lead to them.
    pub block: i32,
    /// `u64`: instructions the chain retired so far; every exit adds its own.
    pub retired: i32,
    /// `u64`: a block chains on only while `retired` is at most this (the run's budget less a
    /// block's worth).
    pub limit: i32,
    /// `u64`: blocks run.
    pub runs: i32,
    /// Pointer to the vCPU's attention word (`u64`), which other threads set: while it is
    /// zero the chain goes on. Any bit set stops it, except that the INTR line's
    /// (`Layout::attention_intr`) counts only with RFLAGS.IF set.
    pub attention: i32,
    /// Address of the link stub (see `chain::Entry::link_stub`), which an exit without a
    /// valid link tail-calls.
    pub link_stub: i32,
    /// Address of the CPU's indirect table (`2 * INDIRECT_TABLE_SLOTS` `ChainCell`s, see
    /// `chain::indirect_slot`).
    pub indirect_table: i32,
    /// Address of the fill stub (see `chain::Entry::fill_stub`), and the `u64` of a fill's
    /// answer (see `Layout::tlb_fill`).
    pub fill_stub: i32,
    pub fill_ok: i32,
    /// `u64`: set by a side exit to the index of the instruction it left before, plus one;
    /// the CPU then runs that instruction in the interpreter.
    pub side_exit: i32,
}

/// The request word of the TLB fill helper: the access's size in bytes, and whether it
/// reads and writes.
pub fn fill_request(size: u8, read: bool, write: bool) -> u64 {
    size as u64 | (read as u64) << 8 | (write as u64) << 9
}

/// The fields of a request `fill_request` made: (size, read, write).
pub fn parse_fill_request(request: u64) -> (u8, bool, bool) {
    (request as u8, request & 1 << 8 != 0, request & 1 << 9 != 0)
}

/// The CPU's numbering of lazy flag operations (see the CPU's `CcOp`).
#[derive(Clone, Copy, Debug)]
pub struct CcOps {
    /// Nothing pending: RFLAGS holds the arithmetic flags.
    pub eflags: u8,
    pub add: u8,
    pub sub: u8,
    pub logic: u8,
    pub inc: u8,
    pub dec: u8,
    /// SHL/SHR/SAR by an immediate below the width: `dst` the operand, `src` the count.
    pub shl: u8,
    pub shr: u8,
    pub sar: u8,
    /// IMUL into a register: `res` the truncated product, the carry-in whether it overflowed.
    pub mul: u8,
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
