//! ferrite's x86 CPU: architectural state, MMU with a soft TLB, exception delivery and an
//! interpreter over iced-x86 decoded instructions.
//!
//! The CPU reaches memory and devices only through [`CpuBus`]. Guest RAM is reached through
//! host pointers cached in the TLB, so an ordinary load is a compare and a pointer add.

mod align;
mod attention;
pub mod bus;
mod coherence;
pub mod cpuid;
pub mod debug;
mod exec;
pub mod exception;
pub mod flags;
mod guest_debug;
mod host_mxcsr;
mod interp;
pub mod kvm;
pub mod interrupt;
pub mod mmu;
pub mod msr;
mod operand;
pub mod persist;
pub mod segment;
mod stack;
pub mod state;
mod task;
pub mod testing;
mod tier;
pub mod xstate;

pub use attention::Attention;
pub use bus::{CpuBus, PhysPage};
pub use cpuid::{CpuModel, Topology};
pub use debug::{WatchHit, WatchKind, Watchpoint};
pub use exception::{Fault, Result};
pub use state::{CpuState, Seg, Segment};
pub use tier::{JitConfig, JitMode, JitStats};

use exec::CodeCache;
use ferrite_memory::{CodeEvent, PageTracking};
use flags::LazyFlags;
use mmu::Tlb;
use state::cr0;
use std::sync::Arc;

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
    /// The exit request (`kick` of [`Cpu::attention`]) was set; the CPU stopped at a block boundary.
    Kicked,
}

/// One logical processor.
///
/// `repr(C)` keeps the guest state, which compiled code reads and writes at fixed offsets, at
/// the start whatever the other fields become: with Rust's own ordering, a field added to the
/// translator's service moved it from 0x2800 to 0x1f0 bytes in and made the xz decompressor's
/// compiled loops 40% slower, for reasons the host's counters (not available here) would tell.
#[repr(C)]
pub struct Cpu {
    pub state: CpuState,
    pub(crate) cc: LazyFlags,
    /// The translations of the active PCID (the table generated code probes).
    pub(crate) tlb: Box<Tlb>,
    pub(crate) code: CodeCache,
    /// When and how hot blocks become host code (see `tier`).
    pub(crate) tier: tier::Tier,
    /// The model CPUID describes and whose features the interpreter enforces.
    pub model: CpuModel,
    /// This processor's local APIC ID, and the number of processors in the machine (CPUID).
    pub apic_id: u32,
    pub cpus: u32,
    /// How the machine's processors group into packages, cores and threads (CPUID).
    pub topology: Topology,
    /// Waiting in HLT for an interrupt.
    pub halted: bool,
    /// After INIT: waiting for a start-up IPI ([`Cpu::sipi`]); runs nothing, takes no interrupts.
    pub wait_for_sipi: bool,
    /// What other threads tell this vCPU: its exit request, INTR line and code changes.
    pub(crate) attention: Arc<Attention>,
    /// The machine's shared dirty log and code tracking, and this vCPU's index as the origin
    /// of the events it logs there (see `coherence`).
    pub(crate) tracking: Option<Arc<PageTracking>>,
    pub(crate) origin: u32,
    /// Code-tracking events seen so far, and a buffer to read new ones into.
    pub(crate) code_seq: u64,
    pub(crate) code_events: Vec<CodeEvent>,
    /// The next instruction runs with interrupts blocked (after STI, MOV SS, POP SS).
    pub(crate) interrupt_shadow: bool,
    pub(crate) nmi_pending: bool,
    /// NMIs are blocked from NMI delivery until the next IRET.
    pub(crate) nmi_blocked: bool,
    /// An external interrupt acknowledged at its controller but not yet delivered: KVM stopped
    /// between the two, and the machine moved on to another accelerator. Delivered first.
    pub(crate) injected_interrupt: Option<u8>,
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
    /// The guest's own debug registers and alignment checking, as they affect execution.
    pub(crate) dbg: guest_debug::GuestDebug,
    /// Print every exception and interrupt delivered to stderr (QEMU's `-d int`).
    pub log_interrupts: bool,
    pub(crate) a20_mask: u64,
    pub(crate) memory_generation: u64,
    /// The PCID `tlb` holds, and the tables of other recently used PCIDs (see `mmu::pcid`).
    pub(crate) tlb_pcid: u16,
    pub(crate) parked_tlbs: Vec<mmu::pcid::Parked>,
}

/// What [`Cpu::events`] returns: the state between instructions an accelerator hands over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingEvents {
    /// The next instruction runs with interrupts blocked (STI, MOV SS).
    pub interrupt_shadow: bool,
    pub nmi_pending: bool,
    /// NMIs blocked until the next IRET.
    pub nmi_blocked: bool,
    /// An external interrupt already acknowledged, to be delivered before anything else.
    pub injected_interrupt: Option<u8>,
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
            tier: tier::Tier::new(tier::JitConfig::from_env()),
            model,
            apic_id: 0,
            cpus: 1,
            topology: Topology::default(),
            halted: false,
            wait_for_sipi: false,
            attention: Arc::new(Attention::default()),
            tracking: None,
            origin: 0,
            code_seq: 0,
            code_events: Vec::new(),
            interrupt_shadow: false,
            nmi_pending: false,
            nmi_blocked: false,
            injected_interrupt: None,
            next_rip: 0,
            end_block: false,
            instructions: 0,
            breakpoints: Vec::new(),
            watchpoints: Vec::new(),
            watch_hit: None,
            dbg: Default::default(),
            log_interrupts: false,
            a20_mask: !0,
            memory_generation: 0,
            tlb_pcid: 0,
            parked_tlbs: Vec::new(),
        };
        cpu.state.gpr[state::reg::RDX] = cpu.model.signature() as u64;
        cpu
    }

    /// Power-on reset: architectural state back to the reset values, caches dropped; the CPU
    /// runs from the reset vector (see [`Cpu::init`] for an AP's reset).
    pub fn reset(&mut self) {
        self.state = CpuState::reset();
        self.state.gpr[state::reg::RDX] = self.model.signature() as u64;
        self.cc = LazyFlags::default();
        self.halted = false;
        self.wait_for_sipi = false;
        self.interrupt_shadow = false;
        self.nmi_pending = false;
        self.nmi_blocked = false;
        self.injected_interrupt = None;
        self.dbg = Default::default();
        // Reset invalidates global translations too (and the machine may have new memory).
        self.flush_tlb(false);
        self.code.clear();
    }

    /// Replaces the whole architectural state (loaders, snapshots, the gdbstub): flushes
    /// everything derived from the old state.
    pub fn set_state(&mut self, state: CpuState) {
        self.state = state;
        self.cc = LazyFlags::default();
        self.dbg = Default::default();
        self.flush_tlb(false);
        self.refresh_debug();
    }

    /// INIT (SDM Vol. 3, 9.1 and Table 9-1): like a reset, except that the x87/MMX/SSE state,
    /// XCR0, the MSRs (MTRRs, PAT, APIC base, TSC, ...) and CR0.CD/NW are kept; the TLBs are
    /// flushed. EFER is cleared like the other paging controls (as KVM does: LMA cannot
    /// outlive CR0.PG). The processor then waits for a start-up IPI; the embedder clears
    /// `wait_for_sipi` itself for a bootstrap processor, which restarts at the reset vector.
    pub fn init(&mut self) {
        // The default state is the reset state.
        let old = std::mem::take(&mut self.state);
        let st = &mut self.state;
        st.gpr[state::reg::RDX] = self.model.signature() as u64;
        st.cr0 = cr0::ET | (old.cr0 & (cr0::CD | cr0::NW));
        st.fpu = old.fpu;
        st.xcr0 = old.xcr0;
        st.pkru = old.pkru;
        st.xinuse = old.xinuse;
        st.msr = old.msr;
        self.cc = LazyFlags::default();
        self.halted = false;
        self.interrupt_shadow = false;
        self.nmi_pending = false;
        self.nmi_blocked = false;
        self.injected_interrupt = None;
        self.dbg = Default::default();
        self.flush_tlb(false);
        self.wait_for_sipi = true;
    }

    /// Start-up IPI (SDM Vol. 3, the ICR's Start-Up delivery mode and the MP initialization
    /// protocol): a processor waiting after INIT starts in real mode at `vector`:0000 (CS base
    /// `vector << 12`). Ignored otherwise.
    pub fn sipi(&mut self, vector: u8) {
        if !self.wait_for_sipi {
            return;
        }
        self.wait_for_sipi = false;
        self.halted = false;
        let cs = &mut self.state.seg[Seg::Cs as usize];
        cs.selector = (vector as u16) << 8;
        cs.base = (vector as u64) << 12;
        cs.limit = 0xffff;
        self.state.rip = 0;
    }

    /// Requests a non-maskable interrupt; delivered at the next instruction boundary. A
    /// processor waiting for a start-up IPI ignores it.
    pub fn inject_nmi(&mut self) {
        if !self.wait_for_sipi {
            self.nmi_pending = true;
        }
    }

    /// The events between instructions that an accelerator keeps too (KVM's vCPU events).
    pub fn events(&self) -> PendingEvents {
        PendingEvents {
            interrupt_shadow: self.interrupt_shadow,
            nmi_pending: self.nmi_pending,
            nmi_blocked: self.nmi_blocked,
            injected_interrupt: self.injected_interrupt,
        }
    }

    pub fn set_events(&mut self, e: PendingEvents) {
        self.interrupt_shadow = e.interrupt_shadow;
        self.nmi_pending = e.nmi_pending;
        self.nmi_blocked = e.nmi_blocked;
        self.injected_interrupt = e.injected_interrupt;
        if e.injected_interrupt.is_some() || e.nmi_pending {
            self.halted = false;
        }
    }

    /// The flags other threads set for this CPU: `kick`, once set, makes `run` and `step`
    /// return `RunExit::Kicked` at the next block boundary (the CPU never clears it); `intr`
    /// is the INTR line for a machine that drives it there.
    pub fn attention(&self) -> Arc<Attention> {
        self.attention.clone()
    }

    /// The topology CPUID reports: `topology`, or, for an embedder that only set `cpus`, one
    /// package of `cpus` single-threaded cores.
    pub fn cpuid_topology(&self) -> Topology {
        if self.topology.cpus() >= self.cpus {
            self.topology
        } else {
            Topology { sockets: 1, cores: self.cpus, threads: 1 }
        }
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
