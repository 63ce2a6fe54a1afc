//! The virtio memory balloon (virtio 1.2, 5.5; QEMU's `virtio-balloon-pci`).
//!
//! Device type 5. The host sets a target balloon size (`num_pages`, 4 KiB pages) through
//! [`BalloonControl`]; the driver inflates the balloon by sending page frame numbers of pages
//! it gives up (the device hands the host pages behind them back to the host kernel, see
//! `ferrite_memory::GuestMemory::discard`) and deflates it by sending the ones it takes back,
//! and reports the balloon size in `actual`.
//!
//! # Features
//! * `VIRTIO_BALLOON_F_STATS_VQ`: always offered; memory statistics through the stats queue.
//! * `VIRTIO_BALLOON_F_DEFLATE_ON_OOM` ([`VirtioBalloonOptions::deflate_on_oom`], off by
//!   default as in QEMU): the guest deflates on its own under memory pressure. Nothing changes
//!   on the device side.
//! * `VIRTIO_BALLOON_F_FREE_PAGE_REPORTING` ([`VirtioBalloonOptions::free_page_reporting`],
//!   off by default as in QEMU): the guest reports free memory ranges, which the device gives
//!   back to the host.
//!
//! Not offered: `MUST_TELL_HOST` (so the guest may reuse deflated pages at once: they read as
//! zeros), `FREE_PAGE_HINT` (migration hints), `PAGE_POISON`.
//!
//! # Queues
//! inflateq (0), deflateq (1), then statsq if `STATS_VQ` was negotiated and reporting_vq if
//! `FREE_PAGE_REPORTING` was: a queue that does not exist takes no index (5.5.2), so the
//! reporting queue is 2 without the stats queue and 3 with it. The transport always lists
//! the stats queue and, when the option is on, a fourth queue; [`queue_roles`] decides at
//! activation which index plays which role. Each notification serves at most one queue's
//! worth of chains, each inflate or deflate buffer at most
//! [`MAX_PFNS_PER_BUFFER`] PFNs, so its cost is bounded.
//!
//! # Configuration space (5.5.4)
//! `num_pages: le32` (host-written) and `actual: le32` (driver-written); the later fields
//! belong to features not offered, so the space is 8 bytes. Legacy drivers use little-endian
//! here too (5.5.4.1).
//!
//! # Reset
//! The target stays (the host's request outlives the driver: after a reboot the new driver
//! inflates to it again), as do the last statistics and the reporting total. `actual`, the
//! set of inflated pages and the held stats buffer go. Pages the balloon gave back stay
//! given back: they read as zeros, which is what the next driver sees of memory it never
//! wrote anyway.

mod control;
mod pages;
mod reporting;
mod stats;
#[cfg(test)]
mod tests;

pub use control::BalloonControl;
pub use pages::MAX_PFNS_PER_BUFFER;
pub use stats::{BalloonStats, MAX_STAT_ENTRIES};

use super::{ActivateContext, ActivateError, Queue, VirtioDevice, VIRTIO_ID_BALLOON};
use control::{lock, SharedState, State};
use ferrite_memory::Dma;
use pages::{read_pfns, PageSet, PfnOutcome};
use stats::StatsQueue;
use std::sync::{Arc, Mutex};

/// Feature bits (5.5.3).
/// The driver must tell the host before reusing deflated pages (not offered).
pub const VIRTIO_BALLOON_F_MUST_TELL_HOST: u64 = 1 << 0;
/// A virtqueue for reporting guest memory statistics.
pub const VIRTIO_BALLOON_F_STATS_VQ: u64 = 1 << 1;
/// The guest deflates the balloon when it runs out of memory.
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u64 = 1 << 2;
/// Free page hinting for migration (not offered).
pub const VIRTIO_BALLOON_F_FREE_PAGE_HINT: u64 = 1 << 3;
/// The guest poisons free pages with `poison_val` (not offered).
pub const VIRTIO_BALLOON_F_PAGE_POISON: u64 = 1 << 4;
/// A virtqueue for reporting free guest memory ranges.
pub const VIRTIO_BALLOON_F_FREE_PAGE_REPORTING: u64 = 1 << 5;

/// The balloon's page size, whatever the guest's (5.5.6: PFNs count 4096-byte pages).
pub const BALLOON_PAGE_SIZE: u64 = 4096;
/// Size of the inflate, deflate and stats queues (QEMU's).
pub const BALLOON_QUEUE_SIZE: u16 = 128;
/// Size of the fourth queue, the reporting queue when the stats queue exists (QEMU's).
pub const REPORTING_QUEUE_SIZE: u16 = 32;

/// Configuration space offsets (5.5.4).
const CONFIG_NUM_PAGES: usize = 0;
const CONFIG_ACTUAL: usize = 4;
const CONFIG_LEN: usize = 8;

const INFLATE_QUEUE: u16 = 0;
const DEFLATE_QUEUE: u16 = 1;

/// Device options (QEMU's `-device virtio-balloon-pci` properties of the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioBalloonOptions {
    /// Offer `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`.
    pub deflate_on_oom: bool,
    /// Offer `VIRTIO_BALLOON_F_FREE_PAGE_REPORTING`.
    pub free_page_reporting: bool,
}

/// Which queue index plays the optional roles, for the negotiated features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRoles {
    pub stats: Option<u16>,
    pub reporting: Option<u16>,
}

/// Queue indexes are given to existing queues only (5.5.2).
pub fn queue_roles(features: u64) -> QueueRoles {
    let stats = (features & VIRTIO_BALLOON_F_STATS_VQ != 0).then_some(2);
    let next = stats.map_or(2, |s| s + 1);
    let reporting = (features & VIRTIO_BALLOON_F_FREE_PAGE_REPORTING != 0).then_some(next);
    QueueRoles { stats, reporting }
}

/// The queues the device itself serves while the driver runs (the stats queue lives in the
/// shared state).
struct Running {
    dma: Dma,
    inflate: Queue,
    deflate: Queue,
    reporting: Option<Queue>,
    reporting_index: Option<u16>,
    stats_index: Option<u16>,
    pages: PageSet,
    pfns: Vec<u32>,
}

/// The balloon device.
pub struct VirtioBalloon {
    opts: VirtioBalloonOptions,
    queue_sizes: Vec<u16>,
    state: SharedState,
    running: Option<Running>,
}

impl VirtioBalloon {
    /// A balloon with target 0, and the handle that controls it.
    pub fn new(opts: VirtioBalloonOptions) -> (Self, BalloonControl) {
        let mut queue_sizes = vec![BALLOON_QUEUE_SIZE; 3];
        if opts.free_page_reporting {
            queue_sizes.push(REPORTING_QUEUE_SIZE);
        }
        let state = Arc::new(Mutex::new(State::default()));
        let control = BalloonControl::new(state.clone());
        (VirtioBalloon { opts, queue_sizes, state, running: None }, control)
    }

    /// Serves the inflate (`inflate == true`) or deflate queue.
    fn process_pfn_queue(&mut self, inflate: bool) {
        let Some(r) = self.running.as_mut() else { return };
        let queue = if inflate { &mut r.inflate } else { &mut r.deflate };
        let mut total = PfnOutcome::default();
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop() else { break };
            read_pfns(&chain, &r.dma, &mut r.pfns);
            let out = if inflate { r.pages.inflate(&r.dma, &r.pfns) } else { r.pages.deflate(&r.pfns) };
            total.ignored += out.ignored;
            queue.add_used(chain.head(), 0);
        }
        queue.notify();
        let mut s = lock(&self.state);
        s.inflated_pages = r.pages.len();
        s.ignored_pfns += total.ignored;
    }

    fn process_reporting(&mut self) {
        let Some(r) = self.running.as_mut() else { return };
        let Some(queue) = r.reporting.as_mut() else { return };
        let mut bytes = 0;
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop() else { break };
            bytes += reporting::discard_reported(&chain, &r.dma);
            queue.add_used(chain.head(), 0);
        }
        queue.notify();
        lock(&self.state).reported_bytes += bytes;
    }

    fn process_stats(&mut self) {
        let Some(r) = self.running.as_ref() else { return };
        let mut s = lock(&self.state);
        let received = s.stats_queue.as_mut().and_then(|q| q.receive(&r.dma));
        if received.is_some() {
            s.stats = received;
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let s = lock(&self.state);
        let mut b = [0u8; CONFIG_LEN];
        b[CONFIG_NUM_PAGES..CONFIG_NUM_PAGES + 4].copy_from_slice(&s.target_pages.to_le_bytes());
        b[CONFIG_ACTUAL..CONFIG_ACTUAL + 4].copy_from_slice(&s.actual_pages.to_le_bytes());
        b
    }
}

/// The queue at `index` if it exists and the driver enabled it.
fn take_ready(queues: &mut [Option<Queue>], index: Option<u16>) -> Option<Queue> {
    let q = queues.get_mut(usize::from(index?))?.take()?;
    q.is_ready().then_some(q)
}

impl VirtioDevice for VirtioBalloon {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_BALLOON
    }

    fn device_features(&self) -> u64 {
        let mut f = VIRTIO_BALLOON_F_STATS_VQ;
        if self.opts.deflate_on_oom {
            f |= VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
        }
        if self.opts.free_page_reporting {
            f |= VIRTIO_BALLOON_F_FREE_PAGE_REPORTING;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.config_bytes();
        let start = (offset as usize).min(CONFIG_LEN);
        let end = start.saturating_add(data.len()).min(CONFIG_LEN);
        data.fill(0);
        data[..end - start].copy_from_slice(&bytes[start..end]);
    }

    /// Only `actual` is the driver's to write; writes to `num_pages` are dropped.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = self.config_bytes();
        let start = (offset as usize).min(CONFIG_LEN);
        let end = start.saturating_add(data.len()).min(CONFIG_LEN);
        bytes[start..end].copy_from_slice(&data[..end - start]);
        let actual = u32::from_le_bytes(bytes[CONFIG_ACTUAL..CONFIG_ACTUAL + 4].try_into().expect("4 bytes"));
        lock(&self.state).actual_pages = actual;
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let roles = queue_roles(ctx.features);
        let mut queues: Vec<Option<Queue>> = ctx.queues.into_iter().map(Some).collect();
        let inflate =
            take_ready(&mut queues, Some(INFLATE_QUEUE)).ok_or(ActivateError::QueueNotReady(INFLATE_QUEUE))?;
        let deflate =
            take_ready(&mut queues, Some(DEFLATE_QUEUE)).ok_or(ActivateError::QueueNotReady(DEFLATE_QUEUE))?;
        // The optional queues are used if the driver enabled them.
        let stats = take_ready(&mut queues, roles.stats);
        let reporting = take_ready(&mut queues, roles.reporting);
        {
            let mut s = lock(&self.state);
            s.stats_queue = stats.map(StatsQueue::new);
            s.interrupt = Some(ctx.interrupt);
        }
        self.running = Some(Running {
            pages: PageSet::for_memory(ctx.dma.memory()),
            dma: ctx.dma,
            inflate,
            deflate,
            reporting,
            reporting_index: roles.reporting,
            stats_index: roles.stats,
            pfns: Vec::with_capacity(MAX_PFNS_PER_BUFFER),
        });
        // Buffers posted (and notified) before DRIVER_OK.
        self.process_pfn_queue(true);
        self.process_pfn_queue(false);
        self.process_stats();
        self.process_reporting();
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        let Some(r) = self.running.as_ref() else { return };
        let (stats, reporting) = (r.stats_index, r.reporting_index);
        match index {
            INFLATE_QUEUE => self.process_pfn_queue(true),
            DEFLATE_QUEUE => self.process_pfn_queue(false),
            i if Some(i) == stats => self.process_stats(),
            i if Some(i) == reporting => self.process_reporting(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.running = None;
        let mut s = lock(&self.state);
        s.actual_pages = 0;
        s.inflated_pages = 0;
        s.stats_queue = None;
        s.interrupt = None;
    }
}

/// Saved state of the balloon behind its transport (snapshots and migration): the size the
/// host asked for and the size the driver reported. The device's own counters (pages seen
/// inflated, reported bytes, last statistics) are not carried.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioBalloonState {
    pub target_pages: u32,
    pub actual_pages: u32,
}

impl ferrite_persist::Persist for VirtioBalloon {
    const SECTION: &'static str = "virtio-balloon";
    const VERSION: u32 = 1;
    type State = VirtioBalloonState;

    fn save(&self) -> VirtioBalloonState {
        let s = lock(&self.state);
        VirtioBalloonState { target_pages: s.target_pages, actual_pages: s.actual_pages }
    }

    /// Any sizes are ones the registers can hold.
    fn restore(&mut self, s: VirtioBalloonState) -> Result<(), ferrite_persist::RestoreError> {
        let mut st = lock(&self.state);
        (st.target_pages, st.actual_pages) = (s.target_pages, s.actual_pages);
        Ok(())
    }
}
