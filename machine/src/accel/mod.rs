//! Accelerators: what runs a vCPU's guest code. The machine drives every vCPU through the
//! [`Vcpu`] trait (modelled on cloud-hypervisor's `Vcpu::run() -> VmExit`), whatever executes
//! the code: ferrite's own CPU ([`tcg::TcgVcpu`], like QEMU's TCG) today, the JIT and KVM
//! behind the same trait later.

pub mod tcg;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why [`Vcpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// HLT (or waiting for a start-up IPI): nothing to run until an interrupt or a signal.
    Halted,
    /// Another thread asked the vCPU to return (its exit handle), or a run budget ended.
    Kicked,
    /// Triple fault: the machine resets or powers off.
    Shutdown,
    /// A debugger breakpoint, watchpoint or single step.
    Debug,
}

/// One virtual CPU. Port I/O, MMIO and interrupt acknowledges reach the board through the
/// accelerator's own path (TCG: the CPU's bus; KVM: its exits, dispatched to the same buses).
pub trait Vcpu: Send {
    /// Runs guest code until one of the [`VmExit`] reasons.
    fn run(&mut self) -> VmExit;
    /// Executes one instruction (or delivers one pending event); `irqs`: external interrupts
    /// may be delivered first.
    fn step(&mut self, irqs: bool) -> VmExit;
    /// The flag that, set from any thread, makes `run` return within one instruction block.
    fn exit_handle(&self) -> Arc<AtomicBool>;
    /// INIT: architectural reset into wait-for-SIPI.
    fn init(&mut self);
    /// Start-up IPI: a vCPU waiting after INIT starts in real mode at `vector << 12`.
    fn sipi(&mut self, vector: u8);
    /// Whether it waits for a start-up IPI.
    fn waiting_for_sipi(&self) -> bool;
    /// Leaves wait-for-SIPI (the bootstrap processor restarts at the reset vector on INIT).
    fn leave_wait_for_sipi(&mut self);
    fn inject_nmi(&mut self);
    /// Whether a maskable interrupt would be taken now (RFLAGS.IF).
    fn interrupts_enabled(&self) -> bool;
    /// Takes the NMI, INIT and start-up IPIs its local APIC latched, and applies them.
    fn take_lapic_signals(&mut self);
    /// The vCPU thread is done with it (the machine stops): a chance to report statistics.
    fn finish(&mut self) {}
}
