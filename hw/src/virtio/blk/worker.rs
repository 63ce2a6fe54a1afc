//! One thread per request queue: it owns the [`Queue`], runs requests against the disk (which
//! may block on host I/O, so never on a vCPU) and completes them. The vCPU's notification only
//! unparks it; while it works it keeps driver notifications off and polls the ring instead.

use super::request::{execute, RequestContext, VIRTIO_BLK_ID_BYTES};
use super::stats::StatCounters;
use crate::virtio::Queue;
use ferrite_block::Disk;
use ferrite_memory::Dma;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Requests completed between interrupts during a long batch, so the guest can start on
/// finished requests while the rest run.
const NOTIFY_BATCH: u32 = 16;

/// What every queue of one device shares.
pub(super) struct Shared {
    pub disk: Arc<dyn Disk>,
    pub dma: Dma,
    pub features: u64,
    pub serial: [u8; VIRTIO_BLK_ID_BYTES],
    pub may_unmap: bool,
    /// The cache mode as the driver last set it (`writeback` in the configuration).
    pub writeback: Arc<AtomicBool>,
    /// Whether FLUSH was negotiated: without it the driver cannot ask for durability, so
    /// every write is made durable before it completes (5.2.5.1).
    pub flush_negotiated: bool,
    pub stats: Arc<StatCounters>,
}

pub(super) struct Worker {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    pub fn spawn(queue: Queue, shared: Arc<Shared>) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let name = format!("virtio-blk-q{}", queue.index());
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || run(queue, &shared, &flag))?;
        Ok(Worker { thread: Some(thread), stop })
    }

    /// The driver made requests available.
    pub fn kick(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Finishes the request in progress and ends the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut queue: Queue, shared: &Shared, stop: &AtomicBool) {
    let mut bounce = Vec::new();
    while !stop.load(Ordering::Acquire) {
        queue.disable_notifications();
        let mut unsignalled = 0;
        while let Some(chain) = queue.pop() {
            let mut ctx = RequestContext {
                disk: &*shared.disk,
                dma: &shared.dma,
                features: shared.features,
                serial: &shared.serial,
                writeback: shared.flush_negotiated && shared.writeback.load(Ordering::Relaxed),
                may_unmap: shared.may_unmap,
                bounce: &mut bounce,
            };
            let done = execute(&chain, &mut ctx);
            shared.stats.record(&done);
            queue.add_used(chain.head(), done.used_len);
            unsignalled += 1;
            if unsignalled == NOTIFY_BATCH {
                queue.notify();
                unsignalled = 0;
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
        }
        queue.notify();
        if !queue.enable_notifications() {
            // Nothing pending (or the queue broke): sleep until a kick or the stop.
            std::thread::park();
        }
    }
}
