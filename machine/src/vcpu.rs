//! vCPU threads: one host thread per vCPU runs it through the [`Vcpu`] trait, takes the NMIs,
//! INITs and start-up IPIs its LAPIC latched, sleeps in HLT until an interrupt it can take
//! arrives, and returns when the machine stops.

use crate::accel::{Vcpu, VmExit};
use crate::pc::{CpuLink, MachineEvent, PcBoard};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest HLT sleep between re-checks (wake-ups normally come from `CpuLink::wake`).
const HALT_NAP: Duration = Duration::from_millis(100);

pub(crate) fn spawn<V: Vcpu + 'static>(vcpu: V, board: Arc<PcBoard>, index: usize) -> JoinHandle<V> {
    std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || run(vcpu, board, index))
        .expect("spawning a vCPU thread")
}

/// Whether a halted vCPU has something to do.
pub(crate) fn has_work(vcpu: &dyn Vcpu, link: &CpuLink) -> bool {
    link.exit.load(Ordering::Acquire) || (!vcpu.waiting_for_sipi() && link.intr() && vcpu.interrupts_enabled())
}

fn run<V: Vcpu>(mut vcpu: V, board: Arc<PcBoard>, index: usize) -> V {
    let link = &board.irq.cpus[index];
    link.set_thread(Some(std::thread::current()));
    // Signals latched before the thread started (an INIT/SIPI sent early) are taken now.
    link.exit.store(true, Ordering::Release);
    loop {
        if link.exit.swap(false, Ordering::AcqRel) {
            if board.wiring.stopping() {
                break;
            }
            vcpu.take_lapic_signals();
        }
        match vcpu.run() {
            VmExit::Shutdown => {
                board.wiring.raise(MachineEvent::TripleFault);
                break;
            }
            VmExit::Failed => {
                board.wiring.raise(MachineEvent::AcceleratorFailed);
                break;
            }
            VmExit::Halted => {
                while !has_work(&vcpu, link) {
                    std::thread::park_timeout(HALT_NAP);
                }
            }
            VmExit::Kicked | VmExit::Debug => {}
        }
    }
    link.set_thread(None);
    vcpu.finish();
    vcpu
}
