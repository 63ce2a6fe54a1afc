//! Handing an image over between two processes, as QEMU does across a migration (image
//! inactivation, BDRV_O_INACTIVE): the destination opens its images inactive, the source
//! inactivates its own once its guest has stopped for good, and the destination then
//! activates them. An inactive image holds only a shared consistent-read lock (see
//! [`crate::lock`]), so the active side may write meanwhile; it refuses writes itself, and a
//! flush has nothing to do (inactivating flushed).

use crate::lock::ImageLock;
use crate::{DiskError, OpenError};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// Whether an image is active, and its locks (with its backing files').
pub(crate) struct Activation {
    /// Modifying requests hold it shared while they run, so an inactivation waits for them
    /// and none starts on an inactive image.
    state: RwLock<State>,
}

/// Holds an image active while a request runs (see [`Activation::while_active`]).
pub(crate) type ActiveGuard<'a> = RwLockReadGuard<'a, State>;

pub(crate) struct State {
    active: bool,
    locks: Vec<ImageLock>,
}

impl Activation {
    pub(crate) fn new(locks: Vec<ImageLock>, active: bool) -> Self {
        Activation { state: RwLock::new(State { active, locks }) }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.state.read().unwrap_or_else(PoisonError::into_inner).active
    }

    /// `Some` while the image is active: hold it for the whole request, so the image is not
    /// inactivated under it.
    pub(crate) fn while_active(&self) -> Option<ActiveGuard<'_>> {
        Some(self.state.read().unwrap_or_else(PoisonError::into_inner)).filter(|s| s.active)
    }

    /// Like [`Activation::while_active`], for a request that must not run on an inactive image.
    pub(crate) fn for_write(&self) -> Result<ActiveGuard<'_>, DiskError> {
        self.while_active().ok_or(DiskError::Inactive)
    }

    /// Makes what was written durable (`write_back`), then keeps only an inactive image's
    /// locks. If `write_back` fails the image stays active.
    pub(crate) fn inactivate(&self, write_back: impl FnOnce() -> Result<(), DiskError>) -> Result<(), DiskError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.active {
            return Ok(());
        }
        write_back()?;
        state.locks.iter_mut().for_each(ImageLock::inactivate);
        state.active = false;
        Ok(())
    }

    /// Takes the locks again, with the checks of an open, then lets `reload` re-read what the
    /// image caches (the other side may have changed it). On failure the image stays inactive.
    pub(crate) fn activate(&self, reload: impl FnOnce() -> Result<(), OpenError>) -> Result<(), OpenError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.active {
            return Ok(());
        }
        let activated = state.locks.iter_mut().try_for_each(ImageLock::activate).and_then(|()| reload());
        if activated.is_err() {
            state.locks.iter_mut().for_each(ImageLock::inactivate);
            return activated;
        }
        state.active = true;
        Ok(())
    }
}
