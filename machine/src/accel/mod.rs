//! Accelerators: what runs a vCPU's guest code. The machine drives every vCPU through the
//! [`Vcpu`] trait (modelled on cloud-hypervisor's `Vcpu::run() -> VmExit`), whatever executes
//! the code: ferrite's own CPU ([`tcg`], like QEMU's TCG) or the host CPU through KVM
//! ([`kvm`]). Either way the vCPU keeps a ferrite [`Cpu`]: under TCG it executes, under KVM it
//! holds the state read back from KVM, so the debugger, the monitor and snapshots have one
//! place to look.

pub mod kvm;
pub mod tcg;

use crate::pc::VcpuBus;
use ferrite_cpu::state::flags;
use ferrite_cpu::Cpu;
use ferrite_cpu::Attention;
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
    /// The accelerator cannot go on (a KVM emulation failure); the reason went to stderr.
    Failed,
}

/// One virtual CPU. Port I/O, MMIO and interrupt acknowledges reach the board through the
/// accelerator's own path (TCG: the CPU's bus; KVM: its exits, dispatched to the same buses).
pub trait Vcpu: Send {
    /// Runs guest code until one of the [`VmExit`] reasons.
    fn run(&mut self) -> VmExit;
    /// Executes one instruction (or delivers one pending event); `irqs`: external interrupts
    /// may be delivered first.
    fn step(&mut self, irqs: bool) -> VmExit;
    /// The vCPU's flags: `kick`, set from any thread, makes `run` return within one
    /// instruction block; `intr` is its INTR line.
    fn attention(&self) -> Arc<Attention>;
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

/// How long a KVM vCPU runs per turn when the debugger runs the vCPUs in turns.
const KVM_DEBUG_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

/// A vCPU as the machine holds it: ferrite's CPU, its view of the board, and the KVM vCPU
/// when KVM runs it (`None`: TCG).
pub struct MachineVcpu {
    pub cpu: Cpu,
    pub bus: VcpuBus,
    kvm: Option<kvm::KvmVcpu>,
}

impl MachineVcpu {
    pub fn tcg(cpu: Cpu, bus: VcpuBus) -> Self {
        MachineVcpu { cpu, bus, kvm: None }
    }

    pub fn kvm(cpu: Cpu, bus: VcpuBus, kvm: kvm::KvmVcpu) -> Self {
        MachineVcpu { cpu, bus, kvm: Some(kvm) }
    }

    /// Before a snapshot: the TSC, which KVM keeps running on its own, into the CPU's state.
    pub fn store_tsc(&mut self, now_ns: u64) -> Result<(), kvm::KvmError> {
        match &mut self.kvm {
            Some(k) => k.store_tsc(&mut self.cpu, now_ns),
            None => Ok(()),
        }
    }

    /// After a snapshot replaced the CPU's state: KVM takes all of it (TCG reads it as it runs).
    pub fn restored(&mut self, now_ns: u64) -> Result<(), kvm::KvmError> {
        match &mut self.kvm {
            Some(k) => k.restored(&mut self.cpu, now_ns),
            None => Ok(()),
        }
    }

    /// The KVM virtual machine this vCPU belongs to (`None`: TCG).
    pub fn kvm_vm(&self) -> Option<&Arc<kvm::KvmVm>> {
        self.kvm.as_ref().map(|k| k.vm())
    }

    /// Runs at most `budget` instructions (the debugger's round-robin slices); KVM, which
    /// counts no instructions, runs for a time slice instead.
    pub fn run_budget(&mut self, budget: u64) -> VmExit {
        match &mut self.kvm {
            Some(k) => k.run_slice(&mut self.cpu, &mut self.bus, KVM_DEBUG_SLICE),
            None => tcg::exit(self.cpu.run(&mut self.bus, budget)),
        }
    }
}

impl Vcpu for MachineVcpu {
    fn finish(&mut self) {
        self.cpu.report_jit_stats();
    }

    fn run(&mut self) -> VmExit {
        match &mut self.kvm {
            Some(k) => k.run(&mut self.cpu, &mut self.bus),
            None => tcg::exit(self.cpu.run(&mut self.bus, tcg::SLICE)),
        }
    }

    fn step(&mut self, irqs: bool) -> VmExit {
        match &mut self.kvm {
            Some(k) => k.step(&mut self.cpu, &mut self.bus, irqs),
            None if irqs => tcg::exit(self.cpu.step(&mut self.bus)),
            None => tcg::exit(self.cpu.step_no_irq(&mut self.bus)),
        }
    }

    fn attention(&self) -> Arc<Attention> {
        self.cpu.attention()
    }

    fn init(&mut self) {
        self.cpu.init();
    }

    fn sipi(&mut self, vector: u8) {
        self.cpu.sipi(vector);
    }

    fn waiting_for_sipi(&self) -> bool {
        // KVM's in-kernel local APIC holds the vCPU itself: the thread runs it all the same.
        self.cpu.wait_for_sipi && !self.kvm.as_ref().is_some_and(|k| k.lapic_in_kernel())
    }

    fn leave_wait_for_sipi(&mut self) {
        self.cpu.wait_for_sipi = false;
    }

    fn inject_nmi(&mut self) {
        match &mut self.kvm {
            // Ignored while waiting for a start-up IPI, as the CPU itself does.
            Some(k) if !self.cpu.wait_for_sipi => k.inject_nmi(),
            Some(_) => {}
            None => self.cpu.inject_nmi(),
        }
    }

    fn interrupts_enabled(&self) -> bool {
        match &self.kvm {
            Some(k) => k.interrupts_enabled(),
            None => self.cpu.state.rflags & flags::IF != 0,
        }
    }

    fn take_lapic_signals(&mut self) {
        let (nmi, init, sipi) = self.bus.take_lapic_signals();
        if init {
            self.init();
            if self.bus.index == 0 {
                self.leave_wait_for_sipi();
            }
        }
        if let Some(v) = sipi {
            self.sipi(v);
        }
        if nmi {
            self.inject_nmi();
        }
    }
}
