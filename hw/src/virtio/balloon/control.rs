//! The host's handle on the balloon ([`BalloonControl`]) and the state it shares with the
//! device.
//!
//! Threads: the device runs on a vCPU thread with the transport lock held; the control handle
//! is used from anywhere (a monitor thread). Both go through one mutex around [`State`], which
//! sits between the transport lock and the interrupt state's lock: the control handle never
//! takes the transport lock, and nothing under the state lock calls back into the transport.

use super::stats::{BalloonStats, StatsQueue};
use super::BALLOON_PAGE_SIZE;
use crate::virtio::Interrupt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the device and its control handle share.
#[derive(Default)]
pub(super) struct State {
    /// `num_pages`: the balloon size the host asks for, in 4 KiB pages.
    pub target_pages: u32,
    /// `actual`: the balloon size the driver reports, in 4 KiB pages.
    pub actual_pages: u32,
    /// Pages the device has seen inflated and not deflated since the driver started.
    pub inflated_pages: u64,
    /// PFNs the driver sent that were not RAM (inflate) or not in the balloon (deflate).
    pub ignored_pfns: u64,
    /// Bytes given back through free page reporting since the device was created.
    pub reported_bytes: u64,
    pub stats: Option<BalloonStats>,
    /// The stats queue while the driver runs (here rather than in the device so a request
    /// from the host needs no transport lock).
    pub stats_queue: Option<StatsQueue>,
    /// The interrupt handle of the current activation, for configuration changes.
    pub interrupt: Option<Interrupt>,
}

pub(super) type SharedState = Arc<Mutex<State>>;

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Controls a balloon from any thread: `Clone + Send + Sync`, valid for the device's lifetime
/// (and after, with no effect).
#[derive(Clone)]
pub struct BalloonControl {
    state: SharedState,
}

impl BalloonControl {
    pub(super) fn new(state: SharedState) -> Self {
        BalloonControl { state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Asks the guest for a balloon of `bytes` (rounded down to 4 KiB pages, at most
    /// `u32::MAX` pages): the memory the guest should give up, not the memory it keeps (a
    /// QEMU-style `balloon <size>` asks for `ram_size - size`). Raises a configuration change
    /// interrupt while the driver runs; the driver then inflates or deflates towards it.
    pub fn set_target(&self, bytes: u64) {
        let mut s = self.lock();
        s.target_pages = (bytes / BALLOON_PAGE_SIZE).min(u64::from(u32::MAX)) as u32;
        if let Some(interrupt) = &s.interrupt {
            interrupt.signal_config();
        }
    }

    /// The balloon size asked for, in bytes (kept across device resets).
    pub fn target_bytes(&self) -> u64 {
        u64::from(self.lock().target_pages) * BALLOON_PAGE_SIZE
    }

    /// The balloon size the driver reports (`actual`), in bytes: memory the guest has given
    /// up. The guest keeps `ram_size - actual_bytes()` (what QEMU's `info balloon` shows).
    pub fn actual_bytes(&self) -> u64 {
        u64::from(self.lock().actual_pages) * BALLOON_PAGE_SIZE
    }

    /// Pages the device itself has taken through the inflate queue and not seen deflated.
    pub fn inflated_pages(&self) -> u64 {
        self.lock().inflated_pages
    }

    /// PFNs from the guest the device ignored (outside RAM, or deflating pages not inflated).
    pub fn ignored_pfns(&self) -> u64 {
        self.lock().ignored_pfns
    }

    /// Bytes given back to the host through free page reporting, in total.
    pub fn reported_bytes(&self) -> u64 {
        self.lock().reported_bytes
    }

    /// The last statistics the guest sent, if any (kept across device resets).
    pub fn stats(&self) -> Option<BalloonStats> {
        self.lock().stats.clone()
    }

    /// Asks the guest for fresh statistics by giving back the buffer the device holds; they
    /// show in [`Self::stats`] once the driver posts it again. `false` if there is nothing to
    /// give back (no stats queue, or the previous request is still being answered). A
    /// periodic poll (QEMU's `guest-stats-polling-interval`) is the caller's timer calling
    /// this.
    pub fn request_stats(&self) -> bool {
        self.lock().stats_queue.as_mut().is_some_and(StatsQueue::request)
    }
}
