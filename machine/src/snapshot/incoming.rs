//! Where a machine that is not booted gets its first state: `-loadvm NAME` and `-incoming
//! URI` load before the guest first runs; with `-incoming defer` the machine waits in
//! `inmigrate` (monitors answering) until QMP's `migrate-incoming` or HMP's
//! `migrate_incoming` names the source, then loads from it as `-incoming` would.
//!
//! A source that cannot be opened (a missing file, a port in use) is the command's error
//! and the machine waits for another; a load that fails ends ferrite with an error, as a
//! failed `-incoming` does (the RAM may be half loaded), and as QEMU's destination does.

use super::live;
use super::MigrationTarget;
use crate::control::RunState;
use crate::{Machine, MachineError, Outcome};
use serde_json::json;

/// `-incoming defer`'s progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// No `-incoming defer`.
    #[default]
    No,
    /// Waiting for `migrate-incoming`; then the machine goes to `resume`.
    Waiting { resume: RunState },
    /// `migrate-incoming` named the source.
    Started,
}

impl Machine {
    /// Before the guest first runs: `-loadvm`, `-incoming`.
    pub(crate) fn start_from_saved_state(&mut self) -> Result<(), MachineError> {
        let resume = crate::run_state_after_start(&self.cfg);
        if let Some(tag) = self.cfg.loadvm.clone() {
            self.control.set_run_state(RunState::RestoreVm);
            self.load_vm_at_start(&tag).map_err(|e| MachineError::Loadvm(e.to_string()))?;
            self.control.set_run_state(resume);
        }
        match self.cfg.incoming.clone().as_deref() {
            None => {}
            Some("defer") => {
                self.control.set_run_state(RunState::Inmigrate);
                self.deferred_incoming = Deferred::Waiting { resume };
            }
            Some(uri) => {
                self.control.set_run_state(RunState::Inmigrate);
                self.migrate_in(uri).map_err(MachineError::Incoming)?;
                self.control.set_run_state(self.after_incoming(resume));
            }
        }
        Ok(())
    }

    /// The run state once an incoming state loaded: the one the machine was to start in, but
    /// paused if the guest was paused when it was saved (as QEMU's destination). A named
    /// snapshot (`-loadvm`) runs either way, as QEMU's does.
    fn after_incoming(&self, resume: RunState) -> RunState {
        if self.loaded_paused && resume == RunState::Running {
            RunState::Paused
        } else {
            resume
        }
    }

    /// `migrate-incoming URI` (`tcp:HOST:PORT`, `file:PATH`, `exec:COMMAND`): starts loading
    /// from the source and returns; the MIGRATION events and the run state tell the rest.
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), String> {
        let resume = match self.deferred_incoming {
            Deferred::No => return Err("'-incoming' was not specified on the command line".into()),
            Deferred::Started => return Err("The incoming migration has already been started".into()),
            Deferred::Waiting { resume } => resume,
        };
        let control = self.control.clone();
        if let Some(addr) = uri.strip_prefix("tcp:") {
            let listener = live::listen(addr)?;
            let addr = addr.to_string();
            std::thread::Builder::new()
                .name("incoming".into())
                .spawn(move || {
                    let accepted = live::accept(listener, &addr);
                    let _ = control.post(move |m| {
                        let loaded = accepted.and_then(|(conn, peer)| live::load_from(m, conn, peer));
                        m.finish_incoming(resume, loaded);
                    });
                })
                .map_err(|e| format!("cannot start waiting for the source: {e}"))?;
        } else {
            if let MigrationTarget::File(path) = MigrationTarget::parse(uri)? {
                std::fs::File::open(&path).map_err(|e| format!("cannot open '{path}': {e}"))?;
            }
            let uri = uri.to_string();
            control
                .post(move |m| {
                    let loaded = m.migrate_in(&uri);
                    m.finish_incoming(resume, loaded);
                })
                .map_err(|e| e.to_string())?;
        }
        self.deferred_incoming = Deferred::Started;
        self.control.events.emit("MIGRATION", json!({"status": "active"}));
        Ok(())
    }

    fn finish_incoming(&mut self, resume: RunState, loaded: Result<(), String>) {
        let status = if loaded.is_ok() { "completed" } else { "failed" };
        self.control.events.emit("MIGRATION", json!({"status": status}));
        match loaded {
            Ok(()) => {
                let state = self.after_incoming(resume);
                self.control.set_run_state(state);
                if state == RunState::Running {
                    self.control.events.emit("RESUME", json!({}));
                }
            }
            Err(e) => {
                eprintln!("ferrite: -incoming: {e}");
                self.finish = Some(Outcome::Failed);
            }
        }
    }
}
