//! The machine thread's loop when no debugger drives it: vCPUs run on their threads while the
//! machine waits for an event (reset, power-off...), a control job, or the user's Ctrl-A X;
//! any of them stops the vCPUs, is acted on, and the vCPUs start again if the machine still
//! runs.

use super::{Job, Phase, RunState};
use crate::accel::MachineVcpu;
use crate::pc::MachineEvent;
use crate::vcpu::VcpuThreads;
use crate::{Console, Machine, MachineError, Outcome};
use serde_json::json;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// What woke the machine thread.
enum Wake {
    Event(MachineEvent),
    Job(Job),
    Quit(Outcome),
}

/// Why `stop` or `cont` cannot change the run state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunStateError {
    #[error("Resetting the Virtual Machine is required")]
    NeedsReset,
    #[error("gdb controls this machine (-gdb): stop and continue it from gdb")]
    InDebugger,
    #[error("a migration is in progress")]
    Migrating,
    /// The disk images were handed over in a migration, and the destination still has them.
    #[error("{0}")]
    Images(String),
}

impl Machine {
    /// Runs the monitors' pending jobs (the debugger's loop calls this between slices).
    pub(crate) fn run_pending_jobs(&mut self) {
        while let Ok(job) = self.jobs.try_recv() {
            job(self);
        }
    }

    /// Runs every vCPU on its own thread until the machine stops or the user quits.
    pub(crate) fn run_threads(&mut self, console: &mut Console) -> Result<Outcome, MachineError> {
        let threads = self.threads.take().unwrap_or_else(|| VcpuThreads::<MachineVcpu>::new(self.vcpus.len()));
        self.vcpu_tids = threads.tids();
        let result = self.run_on(&threads, console);
        self.threads = Some(threads);
        result
    }

    fn run_on(&mut self, threads: &VcpuThreads<MachineVcpu>, console: &mut Console) -> Result<Outcome, MachineError> {
        loop {
            if let Some(outcome) = self.finish.take() {
                // The monitor that asked (`quit`) answers before the process goes.
                std::thread::sleep(std::time::Duration::from_millis(50));
                return Ok(outcome);
            }
            let running = self.control.run_state() == RunState::Running;
            // Frames reach the guest only while it runs (the cards start closed): jobs (a
            // migration's last copy, a savevm) see RAM and the cards as the stopped guest
            // left them.
            if running {
                self.control.set_phase(Phase::HoldingFrames);
                for nic in &self.nics {
                    nic.accept_frames(true);
                }
                self.control.set_phase(Phase::Idle);
                self.board.wiring.rearm();
                self.board.wiring.clock.resume();
                threads.start(std::mem::take(&mut self.vcpus), &self.board);
            } else {
                self.board.wiring.clock.pause();
            }
            let wake = self.wait_for_wake(console);
            if running {
                self.control.set_phase(Phase::StoppingVcpus);
                self.board.wiring.set_stopping();
                self.vcpus = threads.collect();
                self.control.set_phase(Phase::HoldingFrames);
                for nic in &self.nics {
                    nic.accept_frames(false);
                }
            }
            match wake {
                Wake::Quit(outcome) => return Ok(outcome),
                Wake::Job(job) => {
                    self.control.set_phase(Phase::RunningJob);
                    job(self);
                }
                Wake::Event(ev) => {
                    self.control.set_phase(Phase::HandlingEvent);
                    if let Some(outcome) = self.handle_event(ev)? {
                        return Ok(outcome);
                    }
                }
            }
            self.control.set_phase(Phase::Idle);
        }
    }

    /// Waits for the next event or job while passing console input to the guest.
    fn wait_for_wake(&mut self, console: &mut Console) -> Wake {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => return Wake::Job(job),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
            }
            let wait = if console.pending.is_empty() { Duration::from_millis(5) } else { Duration::from_millis(1) };
            match self.events.recv_timeout(wait) {
                Ok(ev) => return Wake::Event(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Wake::Event(MachineEvent::PowerOff),
            }
            if let Some(outcome) = self.service_console(console) {
                return Wake::Quit(outcome);
            }
        }
    }

    /// Acts on a machine event: `Some` when the machine is finished, `None` when it goes on
    /// (reset, or kept after power-off by `-no-shutdown`). Reports it as a QMP event.
    pub(crate) fn handle_event(&mut self, ev: MachineEvent) -> Result<Option<Outcome>, MachineError> {
        let events = self.control.events.clone();
        let guest = |reason: &str| json!({"guest": true, "reason": reason});
        Ok(match ev {
            MachineEvent::DebugExit(code) => Some(Outcome::DebugExit(code)),
            MachineEvent::PowerOff if self.control.run_state() == RunState::Shutdown => {
                // A device's late power-off changes nothing.
                self.board.wiring.rearm();
                None
            }
            MachineEvent::PowerOff => {
                events.emit("SHUTDOWN", guest("guest-shutdown"));
                // Under gdb the debugger's loop ends the machine at power-off as before.
                if self.cfg.no_shutdown && !self.debugging {
                    self.control.set_run_state(RunState::Shutdown);
                    events.emit("STOP", json!({}));
                    self.board.wiring.rearm();
                    None
                } else {
                    Some(Outcome::PowerOff)
                }
            }
            MachineEvent::Quit => Some(Outcome::Quit),
            MachineEvent::AcceleratorFailed => {
                self.control.set_run_state(RunState::InternalError);
                Some(Outcome::Failed)
            }
            MachineEvent::Reset | MachineEvent::TripleFault if self.cfg.no_reboot => {
                events.emit("SHUTDOWN", guest("guest-reset"));
                Some(if ev == MachineEvent::Reset { Outcome::Reboot } else { Outcome::TripleFault })
            }
            MachineEvent::Reset | MachineEvent::TripleFault => {
                if ev == MachineEvent::TripleFault {
                    eprintln!("ferrite: triple fault; resetting the machine");
                }
                events.emit("RESET", guest("guest-reset"));
                self.reset()?;
                None
            }
        })
    }

    /// `stop`: the vCPUs stay stopped and guest time stands still.
    pub fn pause(&mut self) -> Result<(), RunStateError> {
        if self.debugging {
            return Err(RunStateError::InDebugger);
        }
        if self.control.run_state() == RunState::Running {
            self.control.set_run_state(RunState::Paused);
            self.control.events.emit("STOP", json!({}));
        }
        Ok(())
    }

    /// `cont`: the guest runs again (or for the first time after `-S`).
    pub fn resume(&mut self) -> Result<(), RunStateError> {
        if self.debugging {
            return Err(RunStateError::InDebugger);
        }
        match self.control.run_state() {
            RunState::Running => Ok(()),
            // After a loadvm that failed midway the machine's state is half loaded.
            RunState::Shutdown | RunState::InternalError | RunState::RestoreVm => Err(RunStateError::NeedsReset),
            RunState::Debug => Err(RunStateError::InDebugger),
            RunState::Inmigrate | RunState::FinishMigrate | RunState::SaveVm => Err(RunStateError::Migrating),
            RunState::Paused | RunState::Prelaunch | RunState::Postmigrate => {
                // After a migration, the images must be ours again before the guest writes.
                self.take_images_back().map_err(RunStateError::Images)?;
                self.control.set_run_state(RunState::Running);
                self.control.events.emit("RESUME", json!({}));
                Ok(())
            }
        }
    }

    /// `system_reset` from a monitor: the machine restarts, as if the reset button was
    /// pressed; a machine kept after power-off, or left half loaded by a failed loadvm,
    /// runs again.
    pub fn monitor_reset(&mut self, reason: &'static str) -> Result<(), MachineError> {
        self.control.events.emit("RESET", json!({"guest": false, "reason": reason}));
        self.reset()?;
        if matches!(self.control.run_state(), RunState::Shutdown | RunState::RestoreVm) {
            self.control.set_run_state(RunState::Running);
            self.control.events.emit("RESUME", json!({}));
        }
        Ok(())
    }

    /// `system_powerdown`: presses the ACPI power button. The guest decides what to do (an
    /// OS without ACPI, or that ignores the button, carries on).
    pub fn power_button(&mut self) {
        self.board.press_power_button();
        self.control.events.emit("POWERDOWN", json!({}));
    }

    /// `quit`: ferrite exits once the current job is answered.
    pub fn quit(&mut self, reason: &'static str) {
        self.control.events.emit("SHUTDOWN", json!({"guest": false, "reason": reason}));
        self.finish = Some(Outcome::Quit);
    }
}
