//! vCPU threads: one host thread per vCPU runs it through the [`Vcpu`] trait, takes the NMIs,
//! INITs and start-up IPIs its LAPIC latched, sleeps in HLT until an interrupt it can take
//! arrives, and returns when the machine stops.

use crate::accel::{Vcpu, VmExit};
use crate::pc::{CpuLink, MachineEvent, PcBoard};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// Longest HLT sleep between re-checks (wake-ups normally come from `CpuLink::wake`).
const HALT_NAP: Duration = Duration::from_millis(100);

/// One host thread per vCPU for the machine's whole life (so thread ids stay what a user
/// pinned): each running period hands every thread its vCPU and the current board, and gets
/// the vCPU back when the machine stops (to pause, reset, inspect or save it).
pub(crate) struct VcpuThreads<V: Vcpu + 'static> {
    threads: Vec<VcpuThread<V>>,
}

struct VcpuThread<V> {
    start: Sender<(V, Arc<PcBoard>)>,
    done: Receiver<V>,
    /// The host thread id (Linux TID), for `query-cpus-fast` and `info cpus`.
    tid: i32,
}

impl<V: Vcpu + 'static> VcpuThreads<V> {
    pub fn new(count: usize) -> Self {
        let threads = (0..count)
            .map(|index| {
                let (start, jobs) = channel::<(V, Arc<PcBoard>)>();
                let (results, done) = channel();
                let (tid_tx, tid_rx) = channel();
                std::thread::Builder::new()
                    .name(format!("vcpu{index}"))
                    .spawn(move || {
                        // SAFETY: gettid has no preconditions.
                        let _ = tid_tx.send(unsafe { libc::gettid() });
                        for (vcpu, board) in jobs {
                            if results.send(run(vcpu, board, index)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a vCPU thread");
                VcpuThread { start, done, tid: tid_rx.recv().unwrap_or(0) }
            })
            .collect();
        VcpuThreads { threads }
    }

    /// Every vCPU starts running on its thread (vCPU `i` on thread `i`).
    pub fn start(&self, vcpus: Vec<V>, board: &Arc<PcBoard>) {
        for (t, v) in self.threads.iter().zip(vcpus) {
            t.start.send((v, board.clone())).expect("a vCPU thread ended");
        }
    }

    /// Waits for every vCPU started by [`VcpuThreads::start`] to return (the caller made the
    /// machine stop).
    pub fn collect(&self) -> Vec<V> {
        self.threads.iter().map(|t| t.done.recv().expect("a vCPU thread panicked")).collect()
    }

    pub fn tids(&self) -> Vec<i32> {
        self.threads.iter().map(|t| t.tid).collect()
    }
}

/// Whether a halted vCPU has something to do.
pub(crate) fn has_work(vcpu: &dyn Vcpu, link: &CpuLink) -> bool {
    link.attention.kick.load(Ordering::Acquire) || (!vcpu.waiting_for_sipi() && link.intr() && vcpu.interrupts_enabled())
}

fn run<V: Vcpu>(mut vcpu: V, board: Arc<PcBoard>, index: usize) -> V {
    let link = &board.irq.cpus[index];
    link.set_thread(Some(std::thread::current()));
    // Signals latched before the thread started (an INIT/SIPI sent early) are taken now.
    link.attention.kick.store(true, Ordering::Release);
    loop {
        if link.attention.kick.swap(false, Ordering::AcqRel) {
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
