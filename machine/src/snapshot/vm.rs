//! `savevm`, `loadvm` and `delvm` on a machine, in the files of [`super::named`].
//!
//! `loadvm` loads into the running process: it checks the whole snapshot first (that it
//! exists, its checksum, that it is for this machine), so a missing, corrupted or foreign
//! one leaves the machine as it was, running or not. It then stops the guest, builds a fresh
//! board as a reset does and loads the state into it with [`Machine::load_state`], the same
//! path as `-incoming`: devices with threads of their own (virtio-blk workers, the timer
//! thread), interrupt lines, the guest clock and every vCPU's translated code and TLB start
//! from the snapshot rather than being patched in place. If loading still fails midway the
//! machine stays stopped in `restore-vm` with the error (as QEMU leaves it), until another
//! `loadvm` or `system_reset`.
//!
//! Disk contents are not in a snapshot, so both refuse while a writable disk is attached
//! (its contents would not match the restored guest); read-only drives and CD-ROMs are fine.

use super::named::{self, NamedError, SnapshotDir, SnapshotInfo};
use super::stream::{self, DeviceState, Verified};
use super::SnapshotError;
use crate::control::RunState;
use crate::Machine;
use serde_json::json;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum VmSnapshotError {
    /// QEMU's words, and how to do it with ferrite.
    #[error(
        "Device '{0}' is writable but does not support snapshots (ferrite keeps the machine's state outside the disk images: \
         make disk snapshots externally with qemu-img create -b, or attach the drive with readonly=on)"
    )]
    WritableDisk(String),
    #[error("the machine is under gdb's control (-gdb): detach gdb first")]
    Debugger,
    #[error("a migration is in progress")]
    Migrating,
    #[error(transparent)]
    Named(#[from] NamedError),
    #[error("snapshot '{tag}': {source}")]
    State {
        tag: String,
        #[source]
        source: SnapshotError,
    },
    #[error("loading snapshot '{tag}' failed midway: {why}; the machine stays stopped (loadvm another snapshot, or system_reset)")]
    LoadFailed { tag: String, why: String },
}

impl Machine {
    /// Where this machine's named snapshots live (`-snapshot-dir`, or by `-name`).
    pub(crate) fn snapshot_dir(&self) -> SnapshotDir {
        SnapshotDir::of_config(&self.cfg)
    }

    /// What rules out a snapshot now: gdb, a migration, a writable disk.
    fn check_snapshot_allowed(&self) -> Result<(), VmSnapshotError> {
        if self.debugging {
            return Err(VmSnapshotError::Debugger);
        }
        if self.control.migrating() || matches!(self.control.run_state(), RunState::Inmigrate | RunState::FinishMigrate) {
            return Err(VmSnapshotError::Migrating);
        }
        let writable = self.block_devices().into_iter().find(|b| b.inserted.as_ref().is_some_and(|i| !i.read_only));
        writable.map_or(Ok(()), |b| Err(VmSnapshotError::WritableDisk(b.device)))
    }

    /// Stops the guest for a snapshot (`save-vm`, `restore-vm`) with QEMU's STOP event;
    /// returns the state to go back to.
    fn stop_for(&mut self, state: RunState) -> RunState {
        let was = self.control.run_state();
        self.control.set_run_state(state);
        if was == RunState::Running {
            self.control.events.emit("STOP", json!({}));
        }
        was
    }

    /// Goes back to `was` after a snapshot (with RESUME if the guest runs again).
    fn resume_after(&mut self, was: RunState) {
        self.control.set_run_state(was);
        if was == RunState::Running {
            self.control.events.emit("RESUME", json!({}));
        }
    }

    /// `savevm [TAG]`: saves the machine as snapshot `tag` (by default `vm-DATE`), replacing
    /// one of that name. The guest goes on afterwards if it was running.
    pub fn save_vm(&mut self, tag: Option<&str>) -> Result<SnapshotInfo, VmSnapshotError> {
        self.check_snapshot_allowed()?;
        let tag = tag.map_or_else(|| named::default_tag(crate::clock::wall_clock_secs()), str::to_string);
        let dir = self.snapshot_dir();
        dir.stream_path(&tag)?;
        let was = self.stop_for(RunState::SaveVm);
        // Guest time stands still while the state is written; the run loop lets it go on.
        self.board.wiring.clock.pause();
        let clock = self.board.wiring.clock.now();
        let saved = dir.save(&tag, clock, |f| self.save_state(f).map(|_| ()).map_err(|e| e.to_string()));
        self.resume_after(was);
        Ok(saved?)
    }

    /// `loadvm TAG`: the machine continues from snapshot `tag` (running again if it was).
    pub fn load_vm(&mut self, tag: &str) -> Result<(), VmSnapshotError> {
        let state_error = |source| VmSnapshotError::State { tag: tag.into(), source };
        // As load_state refuses it, but before anything changes (the board is rebuilt first).
        self.check_accel().map_err(state_error)?;
        self.check_snapshot_allowed()?;
        let dir = self.snapshot_dir();
        self.verify_state(dir.open(tag)?).map_err(state_error)?;
        let was = self.stop_for(RunState::RestoreVm);
        let loaded = self.replace_board().map_err(|e| e.to_string()).and_then(|()| {
            let f = dir.open(tag).map_err(|e| e.to_string())?;
            self.load_state(f, |_| {}).map_err(|e| e.to_string())
        });
        crate::pc::spawn_timer_thread(self.board.clone());
        if let Err(why) = loaded {
            return Err(VmSnapshotError::LoadFailed { tag: tag.into(), why });
        }
        // A machine that had stopped for good (powered off, failed) now has a state to run.
        let next = match was {
            RunState::Shutdown | RunState::InternalError | RunState::RestoreVm => RunState::Paused,
            other => other,
        };
        self.resume_after(next);
        Ok(())
    }

    /// `-loadvm TAG`: the freshly built machine starts from snapshot `tag`.
    pub(crate) fn load_vm_at_start(&mut self, tag: &str) -> Result<(), VmSnapshotError> {
        self.check_snapshot_allowed()?;
        let f = self.snapshot_dir().open(tag)?;
        self.load_state(f, |_| {}).map_err(|source| VmSnapshotError::State { tag: tag.into(), source })
    }

    /// `delvm TAG` (a missing snapshot is no error, as with QEMU).
    pub fn delete_vm(&mut self, tag: &str) -> Result<(), VmSnapshotError> {
        self.snapshot_dir().delete(tag)?;
        Ok(())
    }

    /// `info snapshots`.
    pub(crate) fn info_snapshots(&self) -> String {
        named::info_table(&self.snapshot_dir().list())
    }

    /// Reads a whole state as [`Machine::load_state`] would, changing nothing: the magic,
    /// that it is for this machine, every RAM record's range, the device state's form and
    /// the checksum.
    fn verify_state(&self, input: impl Read) -> Result<(), SnapshotError> {
        let mut input = Verified::new(std::io::BufReader::with_capacity(1 << 20, input));
        let shape = stream::read_start(&mut input)?;
        let differences = shape.differences(&self.shape());
        if !differences.is_empty() {
            return Err(SnapshotError::Mismatch(differences));
        }
        stream::read_ram(&mut input, |gpa, len| shape.ram_fits(gpa, len), |_, _| {})?;
        let _: DeviceState = stream::read_json(&mut input)?;
        Ok(input.finish()?)
    }
}
