//! The virtio block device (virtio 1.2, 5.2; QEMU's `virtio-blk-pci`).
//!
//! Device type 2 over a [`Disk`] the machine opened (raw or qcow2, any cache mode): reads,
//! writes, flushes, GET_ID, DISCARD and WRITE ZEROES, on one or more request queues
//! (`VIRTIO_BLK_F_MQ`). Each queue the driver enables gets its own worker thread
//! ([`worker`]), so host I/O never runs on a vCPU and queues proceed in parallel.
//!
//! Cache: the `writeback` configuration field starts as the drive's cache mode says
//! (writethrough and directsync: 0) and the driver may change it (`VIRTIO_BLK_F_CONFIG_WCE`).
//! With writeback off, or without `VIRTIO_BLK_F_FLUSH` negotiated, each write is made durable
//! before it completes.

mod config;
mod request;
mod stats;
mod worker;

#[cfg(test)]
mod tests;

pub use config::*;
pub use request::*;
pub use stats::BlkStats;

use super::{ActivateContext, ActivateError, VirtioDevice, VIRTIO_ID_BLOCK};
use ferrite_block::Disk;
use stats::StatCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use worker::{Shared, Worker};

/// Request queues' size unless configured (QEMU's `queue-size` default).
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Most request queues (QEMU's limit for `num-queues`).
pub const MAX_QUEUES: u16 = 16;

/// The `-device virtio-blk-pci` properties that shape the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioBlkOptions {
    /// Request queues (1 to [`MAX_QUEUES`]).
    pub num_queues: u16,
    /// Size of each queue (a power of two, 4 to 1024).
    pub queue_size: u16,
    /// What GET_ID answers (at most 20 bytes are used); empty as QEMU's default.
    pub serial: String,
    /// The drive's cache mode caches writes (`writeback`, `none`, `unsafe`).
    pub writeback: bool,
    /// The drive deallocates on discard (`discard=unmap`).
    pub discard_unmap: bool,
}

impl Default for VirtioBlkOptions {
    fn default() -> Self {
        VirtioBlkOptions { num_queues: 1, queue_size: DEFAULT_QUEUE_SIZE, serial: String::new(), writeback: true, discard_unmap: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VirtioBlkError {
    #[error("num-queues={0}: expected 1 to {MAX_QUEUES}")]
    NumQueues(u16),
    #[error("queue-size={0}: expected a power of two from 4 to 1024")]
    QueueSize(u16),
    #[error("the disk's size ({0} bytes) is not a multiple of 512")]
    Size(u64),
}

pub struct VirtioBlk {
    disk: Arc<dyn Disk>,
    geometry: BlkGeometry,
    serial: [u8; VIRTIO_BLK_ID_BYTES],
    queue_sizes: Vec<u16>,
    /// The configuration's `writeback`, shared with the workers.
    writeback: Arc<AtomicBool>,
    initial_writeback: bool,
    stats: Arc<StatCounters>,
    workers: Vec<Option<Worker>>,
}

impl VirtioBlk {
    pub fn new(disk: Arc<dyn Disk>, opts: &VirtioBlkOptions) -> Result<Self, VirtioBlkError> {
        if opts.num_queues == 0 || opts.num_queues > MAX_QUEUES {
            return Err(VirtioBlkError::NumQueues(opts.num_queues));
        }
        if !opts.queue_size.is_power_of_two() || !(4..=1024).contains(&opts.queue_size) {
            return Err(VirtioBlkError::QueueSize(opts.queue_size));
        }
        if !disk.size().is_multiple_of(SECTOR) {
            return Err(VirtioBlkError::Size(disk.size()));
        }
        let mut serial = [0u8; VIRTIO_BLK_ID_BYTES];
        let bytes = opts.serial.as_bytes();
        let n = bytes.len().min(VIRTIO_BLK_ID_BYTES);
        serial[..n].copy_from_slice(&bytes[..n]);
        let geometry = BlkGeometry {
            capacity_bytes: disk.size(),
            // Two descriptors of every chain hold the header and the status (QEMU's rule).
            seg_max: u32::from(opts.queue_size) - 2,
            num_queues: opts.num_queues,
            may_unmap: opts.discard_unmap,
        };
        Ok(VirtioBlk {
            disk,
            geometry,
            serial,
            queue_sizes: vec![opts.queue_size; usize::from(opts.num_queues)],
            writeback: Arc::new(AtomicBool::new(opts.writeback)),
            initial_writeback: opts.writeback,
            stats: Arc::default(),
            workers: Vec::new(),
        })
    }

    /// Request counters since the device was created.
    pub fn stats(&self) -> BlkStats {
        self.stats.snapshot()
    }

    /// Waits for the requests in progress and stops the queue threads (machine shutdown).
    pub fn quiesce(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            w.stop();
        }
        self.workers.clear();
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_BLOCK
    }

    fn device_features(&self) -> u64 {
        let mut f = VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_GEOMETRY
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_TOPOLOGY
            | VIRTIO_BLK_F_CONFIG_WCE
            | VIRTIO_BLK_F_DISCARD
            | VIRTIO_BLK_F_WRITE_ZEROES;
        if self.disk.read_only() {
            f |= VIRTIO_BLK_F_RO;
        }
        if self.geometry.num_queues > 1 {
            f |= VIRTIO_BLK_F_MQ;
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
        let bytes = config_bytes(&self.geometry, self.writeback.load(Ordering::Relaxed));
        let start = (offset as usize).min(CONFIG_LEN);
        let end = (start + data.len()).min(CONFIG_LEN);
        data.fill(0);
        data[..end - start].copy_from_slice(&bytes[start..end]);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // `writeback` is the only field a driver may write; the rest is read-only.
        let at = writeback_offset();
        if offset <= at && at < offset + data.len() as u64 {
            self.writeback.store(data[(at - offset) as usize] != 0, Ordering::Relaxed);
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if !ctx.queues.first().is_some_and(|q| q.is_ready()) {
            return Err(ActivateError::QueueNotReady(0));
        }
        let shared = Arc::new(Shared {
            disk: self.disk.clone(),
            dma: ctx.dma,
            features: ctx.features,
            serial: self.serial,
            may_unmap: self.geometry.may_unmap,
            writeback: self.writeback.clone(),
            flush_negotiated: ctx.features & VIRTIO_BLK_F_FLUSH != 0,
            stats: self.stats.clone(),
        });
        self.workers.clear();
        for queue in ctx.queues {
            // A driver uses as many queues as it has CPUs; the others stay disabled.
            let worker = if queue.is_ready() {
                let w = Worker::spawn(queue, shared.clone()).map_err(ActivateError::Backend)?;
                // Requests posted before DRIVER_OK.
                w.kick();
                Some(w)
            } else {
                None
            };
            self.workers.push(worker);
        }
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if let Some(Some(w)) = self.workers.get(usize::from(index)) {
            w.kick();
        }
    }

    fn reset(&mut self) {
        self.quiesce();
        self.writeback.store(self.initial_writeback, Ordering::Relaxed);
    }
}

/// Saved state of virtio-blk behind its transport (snapshots and migration): the write cache
/// mode the driver chose, and the capacity, so that a snapshot is not loaded over another
/// disk. Requests complete before a quiesced save (see the transport's state).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioBlkState {
    pub capacity_bytes: u64,
    pub writeback: bool,
}

impl ferrite_persist::Persist for VirtioBlk {
    const SECTION: &'static str = "virtio-blk";
    const VERSION: u32 = 1;
    type State = VirtioBlkState;

    fn save(&self) -> VirtioBlkState {
        VirtioBlkState { capacity_bytes: self.geometry.capacity_bytes, writeback: self.writeback.load(Ordering::Relaxed) }
    }

    fn restore(&mut self, s: VirtioBlkState) -> Result<(), ferrite_persist::RestoreError> {
        if s.capacity_bytes != self.geometry.capacity_bytes {
            return Err(ferrite_persist::RestoreError::invalid(
                "capacity_bytes",
                format!("saved for a {}-byte disk, this one has {}", s.capacity_bytes, self.geometry.capacity_bytes),
            ));
        }
        self.writeback.store(s.writeback, Ordering::Relaxed);
        Ok(())
    }
}
