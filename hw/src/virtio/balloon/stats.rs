//! Memory statistics from the guest (virtio 1.2, 5.5.6.3): the stats queue and what it carries.
//!
//! The driver posts one device-readable buffer of `{ tag: le16, val: le64 }` entries at start;
//! the device keeps it until it wants fresh figures, then returns it (used, length 0). The
//! driver refills and posts it again, which is when the device reads the new values. The
//! entries are little-endian for legacy drivers too (native endian on x86).

use crate::virtio::{DescriptorChain, Queue};
use ferrite_memory::Dma;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Stat tags (5.5.6.3).
pub const VIRTIO_BALLOON_S_SWAP_IN: u16 = 0;
pub const VIRTIO_BALLOON_S_SWAP_OUT: u16 = 1;
pub const VIRTIO_BALLOON_S_MAJFLT: u16 = 2;
pub const VIRTIO_BALLOON_S_MINFLT: u16 = 3;
pub const VIRTIO_BALLOON_S_MEMFREE: u16 = 4;
pub const VIRTIO_BALLOON_S_MEMTOT: u16 = 5;
pub const VIRTIO_BALLOON_S_AVAIL: u16 = 6;
pub const VIRTIO_BALLOON_S_CACHES: u16 = 7;
pub const VIRTIO_BALLOON_S_HTLB_PGALLOC: u16 = 8;
pub const VIRTIO_BALLOON_S_HTLB_PGFAIL: u16 = 9;

/// Bytes of one `{ tag, val }` entry.
const STAT_ENTRY_LEN: usize = 10;
/// Most entries read from one buffer (the spec defines ten tags; newer drivers send a few
/// more): a bound on the work a huge buffer can cause.
pub const MAX_STAT_ENTRIES: usize = 64;

/// The last statistics the guest sent. A tag the guest did not send is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalloonStats {
    /// Bytes swapped in.
    pub swap_in: Option<u64>,
    /// Bytes swapped out.
    pub swap_out: Option<u64>,
    /// Major page faults.
    pub major_faults: Option<u64>,
    /// Minor page faults.
    pub minor_faults: Option<u64>,
    /// Bytes of memory not in use at all.
    pub free_memory: Option<u64>,
    /// Bytes of memory the guest can use.
    pub total_memory: Option<u64>,
    /// Bytes available for new allocations without swapping (estimate).
    pub available_memory: Option<u64>,
    /// Bytes of disk caches the guest can drop.
    pub disk_caches: Option<u64>,
    /// Successful hugetlb page allocations.
    pub hugetlb_allocations: Option<u64>,
    /// Failed hugetlb page allocations.
    pub hugetlb_failures: Option<u64>,
    /// Tags this device has no name for, by number.
    pub other: BTreeMap<u16, u64>,
    /// When the guest's buffer arrived.
    pub updated: SystemTime,
}

impl BalloonStats {
    fn empty(updated: SystemTime) -> Self {
        BalloonStats {
            swap_in: None,
            swap_out: None,
            major_faults: None,
            minor_faults: None,
            free_memory: None,
            total_memory: None,
            available_memory: None,
            disk_caches: None,
            hugetlb_allocations: None,
            hugetlb_failures: None,
            other: BTreeMap::new(),
            updated,
        }
    }

    /// Records one entry; a repeated tag keeps its last value.
    fn set(&mut self, tag: u16, val: u64) {
        let field = match tag {
            VIRTIO_BALLOON_S_SWAP_IN => &mut self.swap_in,
            VIRTIO_BALLOON_S_SWAP_OUT => &mut self.swap_out,
            VIRTIO_BALLOON_S_MAJFLT => &mut self.major_faults,
            VIRTIO_BALLOON_S_MINFLT => &mut self.minor_faults,
            VIRTIO_BALLOON_S_MEMFREE => &mut self.free_memory,
            VIRTIO_BALLOON_S_MEMTOT => &mut self.total_memory,
            VIRTIO_BALLOON_S_AVAIL => &mut self.available_memory,
            VIRTIO_BALLOON_S_CACHES => &mut self.disk_caches,
            VIRTIO_BALLOON_S_HTLB_PGALLOC => &mut self.hugetlb_allocations,
            VIRTIO_BALLOON_S_HTLB_PGFAIL => &mut self.hugetlb_failures,
            _ => {
                self.other.insert(tag, val);
                return;
            }
        };
        *field = Some(val);
    }

    /// Parses the entries of a stats buffer (at most [`MAX_STAT_ENTRIES`]); a trailing partial
    /// entry, or anything after a buffer the device cannot read, is ignored.
    pub fn parse(chain: &DescriptorChain, dma: &Dma, updated: SystemTime) -> Self {
        let mut stats = Self::empty(updated);
        let mut reader = chain.reader(dma);
        let mut entry = [0u8; STAT_ENTRY_LEN];
        for _ in 0..MAX_STAT_ENTRIES {
            if reader.read_exact(&mut entry).is_err() {
                break;
            }
            let tag = u16::from_le_bytes([entry[0], entry[1]]);
            let val = u64::from_le_bytes(entry[2..].try_into().expect("8 bytes"));
            stats.set(tag, val);
        }
        stats
    }
}

/// The stats queue and the buffer the device holds on to.
pub(super) struct StatsQueue {
    queue: Queue,
    held: Option<u16>,
}

impl StatsQueue {
    pub(super) fn new(queue: Queue) -> Self {
        StatsQueue { queue, held: None }
    }

    /// Reads every newly posted buffer and keeps the newest (the driver posts one; an extra
    /// one is given back at once); returns the statistics of the newest, if any arrived.
    pub(super) fn receive(&mut self, dma: &Dma) -> Option<BalloonStats> {
        let mut latest = None;
        for _ in 0..self.queue.size() {
            let Some(chain) = self.queue.pop() else { break };
            latest = Some(BalloonStats::parse(&chain, dma, SystemTime::now()));
            if let Some(older) = self.held.replace(chain.head()) {
                self.queue.add_used(older, 0);
            }
        }
        self.queue.notify();
        latest
    }

    /// Gives the held buffer back so the driver refills it; `false` if the device holds none
    /// (the driver has not posted it yet, or has not re-posted it since the last request).
    pub(super) fn request(&mut self) -> bool {
        let Some(head) = self.held.take() else { return false };
        self.queue.add_used(head, 0);
        self.queue.notify();
        true
    }
}
