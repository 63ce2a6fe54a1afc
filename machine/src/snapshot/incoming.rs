//! Where a machine that is not booted gets its first state: `-loadvm NAME` and `-incoming
//! URI` load before the guest first runs.

use crate::control::RunState;
use crate::{Machine, MachineError};

impl Machine {
    /// Before the guest first runs: `-loadvm`, `-incoming`.
    pub(crate) fn start_from_saved_state(&mut self) -> Result<(), MachineError> {
        let resume = self.control.run_state();
        if let Some(tag) = self.cfg.loadvm.clone() {
            self.control.set_run_state(RunState::RestoreVm);
            self.load_vm_at_start(&tag).map_err(|e| MachineError::Loadvm(e.to_string()))?;
            self.control.set_run_state(resume);
        }
        if let Some(uri) = self.cfg.incoming.clone() {
            self.control.set_run_state(RunState::Inmigrate);
            self.migrate_in(&uri).map_err(MachineError::Incoming)?;
            self.control.set_run_state(resume);
        }
        Ok(())
    }
}
