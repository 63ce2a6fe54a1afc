//! Request counters of one virtio-blk device (for monitors, tests and benchmarks).

use super::request::{Completed, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES};
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub write_zeroes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests that completed with a status other than OK, or without a status byte.
    pub failed: u64,
}

#[derive(Default)]
pub(super) struct StatCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    discards: AtomicU64,
    write_zeroes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    failed: AtomicU64,
}

impl StatCounters {
    pub fn record(&self, done: &Completed) {
        let bump = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        if done.status != Some(VIRTIO_BLK_S_OK) {
            bump(&self.failed, 1);
        }
        match done.request_type {
            Some(VIRTIO_BLK_T_IN) => {
                bump(&self.reads, 1);
                bump(&self.bytes_read, done.bytes);
            }
            Some(VIRTIO_BLK_T_OUT) => {
                bump(&self.writes, 1);
                bump(&self.bytes_written, done.bytes);
            }
            Some(VIRTIO_BLK_T_FLUSH) => bump(&self.flushes, 1),
            Some(VIRTIO_BLK_T_DISCARD) => bump(&self.discards, 1),
            Some(VIRTIO_BLK_T_WRITE_ZEROES) => bump(&self.write_zeroes, 1),
            _ => {}
        }
    }

    pub fn snapshot(&self) -> BlkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BlkStats {
            reads: get(&self.reads),
            writes: get(&self.writes),
            flushes: get(&self.flushes),
            discards: get(&self.discards),
            write_zeroes: get(&self.write_zeroes),
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written),
            failed: get(&self.failed),
        }
    }
}
