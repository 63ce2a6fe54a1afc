//! vCPU threads: one host thread per vCPU runs the CPU against its view of the board, takes
//! the NMIs, INITs and start-up IPIs its LAPIC latched, sleeps in HLT until an interrupt it
//! can take arrives, and returns when the machine stops.

use crate::pc::{MachineEvent, PcBoard, VcpuBus};
use ferrite_cpu::state::flags;
use ferrite_cpu::{Cpu, RunExit};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Instructions per `run` call. Only a bound: the machine reaches a vCPU at once through its
/// exit request, so nothing waits for a slice to end.
pub(crate) const SLICE: u64 = 1 << 22;
/// Longest HLT sleep between re-checks (wake-ups normally come from `CpuLink::wake`).
const HALT_NAP: Duration = Duration::from_millis(100);

pub(crate) fn spawn(cpu: Cpu, board: Arc<PcBoard>, index: usize) -> JoinHandle<Cpu> {
    std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || run(cpu, board, index))
        .expect("spawning a vCPU thread")
}

/// Applies what the LAPIC latched for this vCPU: NMI, INIT (an AP then waits for a start-up
/// IPI; the BSP restarts at the reset vector), start-up IPI.
pub(crate) fn take_signals(cpu: &mut Cpu, bus: &VcpuBus) {
    let (nmi, init, sipi) = bus.take_lapic_signals();
    if init {
        cpu.init();
        if bus.index == 0 {
            cpu.wait_for_sipi = false;
        }
    }
    if let Some(v) = sipi {
        cpu.sipi(v);
    }
    if nmi {
        cpu.inject_nmi();
    }
}

/// Whether a halted vCPU has something to do.
pub(crate) fn has_work(cpu: &Cpu, bus: &VcpuBus) -> bool {
    let link = &bus.board.irq.cpus[bus.index];
    link.exit.load(Ordering::Acquire) || (!cpu.wait_for_sipi && link.intr() && cpu.state.rflags & flags::IF != 0)
}

fn run(mut cpu: Cpu, board: Arc<PcBoard>, index: usize) -> Cpu {
    let mut bus = VcpuBus::new(board.clone(), index);
    let link = &board.irq.cpus[index];
    link.set_thread(Some(std::thread::current()));
    // Signals latched before the thread started (an INIT/SIPI sent early) are taken now.
    link.exit.store(true, Ordering::Release);
    loop {
        if link.exit.swap(false, Ordering::AcqRel) {
            if board.wiring.stopping() {
                break;
            }
            take_signals(&mut cpu, &bus);
        }
        match cpu.run(&mut bus, SLICE) {
            RunExit::Shutdown => {
                board.wiring.raise(MachineEvent::TripleFault);
                break;
            }
            RunExit::Halted => {
                while !has_work(&cpu, &bus) {
                    std::thread::park_timeout(HALT_NAP);
                }
            }
            RunExit::Budget | RunExit::Kicked | RunExit::Debug => {}
        }
    }
    link.set_thread(None);
    cpu
}
