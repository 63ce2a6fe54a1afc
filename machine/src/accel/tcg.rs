//! The TCG accelerator: ferrite's own CPU (interpreter) running against one vCPU's view of
//! the board.

use super::{Vcpu, VmExit};
use crate::pc::VcpuBus;
use ferrite_cpu::state::flags;
use ferrite_cpu::{Cpu, RunExit};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Instructions per `run` of the CPU. Only a bound: the machine reaches a vCPU at once through
/// its exit handle, so nothing waits for it to end.
const SLICE: u64 = 1 << 22;

pub struct TcgVcpu {
    pub cpu: Cpu,
    pub bus: VcpuBus,
}

impl TcgVcpu {
    pub fn new(cpu: Cpu, bus: VcpuBus) -> Self {
        TcgVcpu { cpu, bus }
    }

    /// Runs at most `budget` instructions (the debugger's round-robin slices).
    pub fn run_budget(&mut self, budget: u64) -> VmExit {
        exit(self.cpu.run(&mut self.bus, budget))
    }
}

fn exit(e: RunExit) -> VmExit {
    match e {
        RunExit::Halted => VmExit::Halted,
        RunExit::Budget | RunExit::Kicked => VmExit::Kicked,
        RunExit::Shutdown => VmExit::Shutdown,
        RunExit::Debug => VmExit::Debug,
    }
}

impl Vcpu for TcgVcpu {
    fn finish(&mut self) {
        self.cpu.report_jit_stats();
    }

    fn run(&mut self) -> VmExit {
        self.run_budget(SLICE)
    }

    fn step(&mut self, irqs: bool) -> VmExit {
        exit(if irqs { self.cpu.step(&mut self.bus) } else { self.cpu.step_no_irq(&mut self.bus) })
    }

    fn exit_handle(&self) -> Arc<AtomicBool> {
        self.cpu.exit_handle()
    }

    fn init(&mut self) {
        self.cpu.init();
    }

    fn sipi(&mut self, vector: u8) {
        self.cpu.sipi(vector);
    }

    fn waiting_for_sipi(&self) -> bool {
        self.cpu.wait_for_sipi
    }

    fn leave_wait_for_sipi(&mut self) {
        self.cpu.wait_for_sipi = false;
    }

    fn inject_nmi(&mut self) {
        self.cpu.inject_nmi();
    }

    fn interrupts_enabled(&self) -> bool {
        self.cpu.state.rflags & flags::IF != 0
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
