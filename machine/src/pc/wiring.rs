//! What devices and vCPU threads share besides memory and interrupts: guest time, the A20
//! gate, the timer thread's doorbell, and the requests that stop the machine (reset,
//! power-off, debug exit, triple fault), which take effect before the requesting vCPU's
//! next instruction.

use super::interrupts::lock;
use crate::clock::Clock;
use ferrite_cpu::Attention;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Why the machine stops running its vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    /// The guest asked for a reset (keyboard controller, port 0x92, 0xCF9).
    Reset,
    /// ACPI S5 (or S4).
    PowerOff,
    /// isa-debug-exit: exit with this status.
    DebugExit(i32),
    /// A vCPU triple-faulted.
    TripleFault,
    /// An accelerator cannot run its vCPU on (a KVM emulation failure).
    AcceleratorFailed,
    /// The monitor's `quit`.
    Quit,
}

/// A20 gate inputs: either opens the gate.
pub const A20_KBC: u8 = 1 << 0;
pub const A20_PORT92: u8 = 1 << 1;

pub struct Wiring {
    pub clock: Clock,
    a20: AtomicU8,
    /// Set once a machine event was raised: vCPU threads return instead of running on.
    stopping: AtomicBool,
    /// The board is done for (reset or exit): its timer thread ends.
    retired: AtomicBool,
    events: Mutex<Option<Sender<MachineEvent>>>,
    /// Every vCPU's flags, whose exit request is set with `stopping` so each returns within
    /// a block.
    attention: Vec<Arc<Attention>>,
    /// The vCPUs' links, to wake them (out of HLT or KVM_RUN) when they must stop.
    cpus: std::sync::OnceLock<std::sync::Weak<super::interrupts::Interrupts>>,
    timer_poke: (Mutex<bool>, Condvar),
}

impl Wiring {
    pub fn new(attention: Vec<Arc<Attention>>, events: Sender<MachineEvent>) -> Self {
        Wiring {
            clock: Clock::new(),
            a20: AtomicU8::new(0),
            stopping: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            events: Mutex::new(Some(events)),
            attention,
            cpus: std::sync::OnceLock::new(),
            timer_poke: (Mutex::new(false), Condvar::new()),
        }
    }

    pub fn set_a20(&self, source: u8, open: bool) {
        if open {
            self.a20.fetch_or(source, Ordering::AcqRel);
        } else {
            self.a20.fetch_and(!source, Ordering::AcqRel);
        }
    }

    pub fn a20_open(&self) -> bool {
        self.a20.load(Ordering::Acquire) != 0
    }

    /// Raises a machine event: every vCPU stops at its next block boundary (the caller's
    /// own vCPU, writing a port, before its next instruction) and the machine acts on it.
    /// The first event wins.
    pub fn raise(&self, ev: MachineEvent) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_vcpus();
        if let Some(tx) = lock(&self.events).as_ref() {
            tx.send(ev).ok();
        }
    }

    /// Where [`Wiring::stop_vcpus`] finds the vCPUs to wake.
    pub fn attach_cpus(&self, irq: &Arc<super::interrupts::Interrupts>) {
        let _ = self.cpus.set(Arc::downgrade(irq));
    }

    /// Makes every vCPU return from `run` (for stopping, pausing or resetting the machine).
    pub fn stop_vcpus(&self) {
        for a in &self.attention {
            a.kick.store(true, Ordering::Release);
        }
        if let Some(irq) = self.cpus.get().and_then(|w| w.upgrade()) {
            for link in &irq.cpus {
                link.wake();
            }
        }
        self.poke_timers();
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Lets the next event through again while the vCPUs stay stopped (a machine that
    /// `-no-shutdown` keeps after the guest's power-off waits for the monitor's commands).
    pub fn rearm(&self) {
        self.stopping.store(false, Ordering::Release);
    }

    /// Marks the machine as stopping without an event (the machine itself tears down).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop_vcpus();
    }

    /// The board is replaced or the machine exits: everything stops for good.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.set_stopping();
    }

    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// A timer device was reprogrammed: the timer thread recomputes its next deadline.
    pub fn poke_timers(&self) {
        let (m, cv) = &self.timer_poke;
        *lock(m) = true;
        cv.notify_one();
    }

    /// The timer thread's sleep: until `timeout` passes or a device pokes it.
    pub fn wait_for_poke(&self, timeout: Duration) {
        let (m, cv) = &self.timer_poke;
        let mut poked = lock(m);
        if !*poked {
            poked = cv.wait_timeout(poked, timeout).unwrap_or_else(|e| e.into_inner()).0;
        }
        *poked = false;
    }
}
