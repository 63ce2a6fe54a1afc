//! ferrite's translator: hot guest blocks, already decoded by iced-x86, become host code
//! through Cranelift.
//!
//! The translator does not know ferrite's CPU type. The CPU describes itself with a
//! [`Layout`] (where the registers, lazy flags and soft TLB live, and which `extern "C"`
//! helpers to call), so the dependency points from the CPU to here and the interpreter's own
//! tests can run with every block compiled.
//!
//! A compiled block is `fn(cpu, frame) -> u64` in Cranelift's `tail` convention; it adds the
//! instructions it retired to the frame and either returns or, through a linked exit, chains
//! into the next compiled block (see `chain`). Instructions the translator does not emit natively run through
//! the CPU's interpreter helper (`Layout::exec`), with the registers and flags written back
//! before the call and reloaded after it, so every instruction has exactly the interpreter's
//! semantics. Native loads and stores probe the soft TLB inline; a miss calls the CPU's fill
//! helper through a stub that clobbers no register, and goes on inline once the TLB holds
//! the page. A fault, device memory, a page holding code or a watched page leaves the block
//! before the instruction (a side exit, joining nothing again, so blocks stay straight and
//! quick to compile) and the CPU runs that instruction in the interpreter, which is exact
//! because native instructions check all their accesses before changing any state. Code goes to one dense arena per
//! module (`arena`).

mod arena;
mod chain;
mod emit;
mod layout;
pub mod operand;
mod perf_map;
mod service;
mod translator;

pub use chain::{
    indirect_slot, translated_link, ChainCell, Entry, EntryFn, LinkCell, CELL_INDIRECT_BEFORE, CHAIN_CELLS, CHAIN_EXITS, EXIT_INDIRECT,
    EXIT_NEXT, EXIT_INNER, EXIT_TAKEN, GLOBAL_LINK, INDIRECT_TABLE_SLOTS, LINK_FIELDS, LOCAL_LINK, LOOP_EXITS,
};
pub use layout::{fill_request, parse_fill_request, CcOps, ExecStatus, FrameLayout, Layout, MXCSR_CONTROLS, MXCSR_FLAGS, NATIVE_MXCSR};
pub use emit::exits::local_exit;
pub use service::{thread_cpu_ns, Done, Job, Service, PRIORITIES};
pub use translator::{BlockSpec, Compiled, Translator};

/// Why a block could not be compiled (the CPU keeps interpreting it).
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("no Cranelift backend for this host: {0}")]
    Isa(String),
    #[error("Cranelift rejected the block at guest {rip:#x}: {message}")]
    Compile { rip: u64, message: String },
    /// The compile thread dropped the job: the block had left the vCPU's cache (see
    /// [`Job::cancel`]).
    #[error("the block left the code cache before it was compiled")]
    Unwanted,
}
