//! ferrite's x86 CPU: architectural state, MMU with a soft TLB, exception delivery and an
//! interpreter over iced-x86 decoded instructions.
//!
//! The CPU reaches memory and devices only through [`CpuBus`]. Guest RAM is reached through
//! host pointers cached in the TLB, so an ordinary load is a compare and a pointer add.

pub mod bus;
pub mod cpuid;
pub mod debug;
mod exec;
pub mod exception;
pub mod flags;
mod interp;
pub mod interrupt;
pub mod mmu;
pub mod msr;
mod operand;
pub mod segment;
mod stack;
pub mod state;
mod task;
pub mod testing;

pub use bus::{CpuBus, PhysPage};
pub use cpuid::CpuModel;
pub use debug::{WatchHit, WatchKind, Watchpoint};
pub use exception::{Fault, Result};
pub use state::{CpuState, Seg, Segment};

use exec::CodeCache;
use flags::LazyFlags;
use mmu::Tlb;

/// Why `Cpu::run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget ran out.
    Budget,
    /// HLT with interrupts that cannot currently wake the CPU, or waiting for one.
    Halted,
    /// Triple fault: the machine resets or powers off, as configured.
    Shutdown,
    /// A debug event the embedder asked for (single step or breakpoint).
    Debug,
}

/// One logical processor.
pub struct Cpu {
    pub state: CpuState,
    pub(crate) cc: LazyFlags,
    pub(crate) tlb: Box<Tlb>,
    pub(crate) code: CodeCache,
    /// The model CPUID describes and whose features the interpreter enforces.
    pub model: CpuModel,
    /// This processor's local APIC ID, and the number of processors in the machine (CPUID).
    pub apic_id: u32,
    pub cpus: u32,
    /// Waiting in HLT for an interrupt.
    pub halted: bool,
    /// The next instruction runs with interrupts blocked (after STI, MOV SS, POP SS).
    pub(crate) interrupt_shadow: bool,
    pub(crate) nmi_pending: bool,
    /// NMIs are blocked from NMI delivery until the next IRET.
    pub(crate) nmi_blocked: bool,
    /// Where execution continues after the current instruction; branch handlers overwrite it.
    pub(crate) next_rip: u64,
    /// A handler asks the loop to stop the block after this instruction (mode changes).
    pub(crate) end_block: bool,
    /// Instructions retired since creation.
    pub instructions: u64,
    /// Linear addresses where execution must stop with `RunExit::Debug` (the gdbstub's
    /// breakpoints; guest memory is never patched).
    pub breakpoints: Vec<u64>,
    /// Watched linear ranges (see `debug`); set through `set_watchpoints`.
    pub(crate) watchpoints: Vec<Watchpoint>,
    /// The first watched access of the last instruction (see `debug`).
    pub(crate) watch_hit: Option<WatchHit>,
    /// Print every exception and interrupt delivered to stderr (QEMU's `-d int`).
    pub log_interrupts: bool,
    pub(crate) a20_mask: u64,
    pub(crate) memory_generation: u64,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new(CpuModel::default())
    }
}

impl Cpu {
    pub fn new(model: CpuModel) -> Self {
        let mut cpu = Cpu {
            state: CpuState::reset(),
            cc: LazyFlags::default(),
            tlb: Box::new(Tlb::new()),
            code: CodeCache::default(),
            model,
            apic_id: 0,
            cpus: 1,
            halted: false,
            interrupt_shadow: false,
            nmi_pending: false,
            nmi_blocked: false,
            next_rip: 0,
            end_block: false,
            instructions: 0,
            breakpoints: Vec::new(),
            watchpoints: Vec::new(),
            watch_hit: None,
            log_interrupts: false,
            a20_mask: !0,
            memory_generation: 0,
        };
        cpu.state.gpr[state::reg::RDX] = cpu.model.signature() as u64;
        cpu
    }

    /// Power-on / INIT reset: architectural state back to the reset values, caches dropped.
    pub fn reset(&mut self) {
        self.state = CpuState::reset();
        self.state.gpr[state::reg::RDX] = self.model.signature() as u64;
        self.cc = LazyFlags::default();
        self.halted = false;
        self.interrupt_shadow = false;
        self.nmi_pending = false;
        self.nmi_blocked = false;
        // Reset invalidates global translations too (and the machine may have new memory).
        self.flush_tlb(false);
        self.code.clear();
    }

    /// Replaces the whole architectural state (loaders, snapshots, the gdbstub): flushes
    /// everything derived from the old state.
    pub fn set_state(&mut self, state: CpuState) {
        self.state = state;
        self.cc = LazyFlags::default();
        self.flush_tlb(false);
    }

    /// Requests a non-maskable interrupt; delivered at the next instruction boundary.
    pub fn inject_nmi(&mut self) {
        self.nmi_pending = true;
    }

    /// Tells the CPU that guest-physical memory in `[paddr, paddr+len)` changed behind its
    /// back (device DMA, the loader), so decoded instructions there are stale.
    pub fn invalidate_code(&mut self, paddr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = paddr >> 12;
        let last = (paddr + len - 1) >> 12;
        for page in first..=last {
            self.code.invalidate_page(page << 12);
        }
    }
}
