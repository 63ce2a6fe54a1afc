//! The machine's disk images (IDE drives and virtio-blk backends) and their handover across a
//! migration, as QEMU does it: a destination (`-incoming`) opens them inactive, holding only a
//! shared read lock while the source still writes; the source inactivates its own (flushed,
//! write locks released) before the last of the state leaves, so the destination can activate
//! them once the state has arrived, before its guest runs. A source told `cont` afterwards
//! must take them back first, which fails while the destination has them.

use crate::config::MachineConfig;
use crate::control::RunState;
use crate::{Machine, MachineError};
use ferrite_block::{Disk, DriveOptions, OpenedImage};
use std::path::Path;
use std::sync::Arc;

/// Opens a drive's image before the guest starts (a bad image is an error naming its file),
/// inactive on the destination of a migration.
pub(crate) fn open_image(cfg: &MachineConfig, opts: &DriveOptions) -> Result<OpenedImage, MachineError> {
    let opened = if cfg.incoming.is_some() { ferrite_block::open_image_inactive(opts)? } else { ferrite_block::open_image(opts)? };
    for w in &opened.warnings {
        eprintln!("ferrite: warning: {w}");
    }
    Ok(opened)
}

impl Machine {
    /// Every open image with its file.
    pub(crate) fn images(&self) -> Vec<(&Path, &Arc<dyn Disk>)> {
        let ide = self.drives.iter().filter_map(|d| Some((d.cfg.image.as_ref()?.path.as_path(), d.disk.as_ref()?)));
        ide.chain(self.virtio.images(&self.cfg)).collect()
    }

    /// Whether every image is ours to write (none handed over).
    pub(crate) fn images_active(&self) -> bool {
        self.images().iter().all(|(_, d)| d.is_active())
    }

    /// Hands every image over (the source, its guest stopped): finishes the disks' requests
    /// and stops their queues, which stay stopped while the images are inactive (a request
    /// the guest had queued would fail), then inactivates every image, or none if one cannot
    /// be (the disks then go on).
    pub(crate) fn hand_over_images(&mut self) -> Result<(), String> {
        self.quiesce_devices();
        let images = self.images();
        for (n, (path, disk)) in images.iter().enumerate() {
            if let Err(e) = disk.inactivate() {
                for (_, done) in &images[..n] {
                    // They were active a moment ago, and nobody else could take them since.
                    let _ = done.activate();
                }
                self.live_virtio.resume();
                return Err(format!("cannot hand over '{}': {e}", path.display()));
            }
        }
        Ok(())
    }

    /// Takes every inactive image: all of them, or none if one is still in use elsewhere.
    pub(crate) fn activate_images(&self) -> Result<(), String> {
        let inactive: Vec<_> = self.images().into_iter().filter(|(_, d)| !d.is_active()).collect();
        for (n, (_, disk)) in inactive.iter().enumerate() {
            if let Err(e) = disk.activate() {
                for (_, done) in &inactive[..n] {
                    // Nothing was written to them in between: nothing to write back.
                    let _ = done.inactivate();
                }
                return Err(format!("cannot take the disk images: {e}"));
            }
        }
        Ok(())
    }

    /// The source takes its images back to run on (`cont` after a migration), and restarts
    /// the disks' queues [`Machine::hand_over_images`] stopped.
    pub(crate) fn take_images_back(&mut self) -> Result<(), String> {
        if self.images_active() {
            return Ok(());
        }
        self.activate_images()?;
        self.live_virtio.resume();
        Ok(())
    }

    /// After a failed migration the source goes on as it was (`was`), with its images taken
    /// back. If the destination has them, the guest must not run: it stays paused (`cont`
    /// tries again), and the error `why` says so. Returns the error to report.
    pub(crate) fn recover_from_failed_migration(&mut self, was: RunState, why: String) -> String {
        match self.take_images_back() {
            Ok(()) => {
                self.control.set_run_state(was);
                why
            }
            Err(lost) => {
                self.control.set_run_state(if was == RunState::Running { RunState::Paused } else { was });
                format!("{why}; {lost}; the guest stays paused")
            }
        }
    }
}
