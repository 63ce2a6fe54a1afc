//! The virtio entropy device (virtio 1.2, 5.4; QEMU's `virtio-rng-pci`).
//!
//! Device type 4, one queue (`requestq`), no feature bits, no configuration space. The driver
//! posts device-writable buffers; the device fills them with random bytes from the host and
//! returns them with the number of bytes written. The spec lets the device use less than the
//! whole buffer (5.4.6.2): each chain gets at most [`RNG_MAX_BYTES_PER_REQUEST`] bytes, and a
//! notification is served synchronously on the vCPU thread, at most one queue's worth of
//! chains (the queue size, [`RNG_QUEUE_SIZE`], as in QEMU), so its cost is bounded.
//!
//! A chain the device cannot fill (no writable buffer, an address outside RAM, the host source
//! failing) is returned with the bytes actually written, possibly 0; drivers check the length
//! (5.4.6.1).
//!
//! The bytes come from an [`EntropySource`]: [`HostEntropy`] reads the host's `/dev/urandom`
//! (the kernel's CSPRNG, which is what getrandom(2) returns; the crate has no libc
//! dependency to call it directly).

use super::{ActivateContext, ActivateError, Queue, VirtioDevice, VIRTIO_ID_RNG};
use ferrite_memory::Dma;
use std::fs::File;
use std::io::Read;

/// Size of the request queue (QEMU's).
pub const RNG_QUEUE_SIZE: u16 = 8;
/// Most bytes placed into one chain.
pub const RNG_MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

/// Where random bytes come from.
pub trait EntropySource: Send {
    /// Fills all of `buf`.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()>;
}

/// The host kernel's random number generator, through `/dev/urandom`.
pub struct HostEntropy {
    file: File,
}

impl HostEntropy {
    pub fn new() -> std::io::Result<Self> {
        Ok(HostEntropy { file: File::open("/dev/urandom")? })
    }
}

impl EntropySource for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact(buf)
    }
}

/// The entropy device.
pub struct VirtioRng {
    source: Box<dyn EntropySource>,
    queue: Option<Queue>,
    dma: Option<Dma>,
    scratch: Vec<u8>,
}

impl VirtioRng {
    /// An entropy device fed by the host's random number generator.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self::with_source(Box::new(HostEntropy::new()?)))
    }

    /// An entropy device fed by `source`.
    pub fn with_source(source: Box<dyn EntropySource>) -> Self {
        VirtioRng { source, queue: None, dma: None, scratch: Vec::new() }
    }

    /// The request queue while the device runs (tests, inspection).
    pub fn queue(&self) -> Option<&Queue> {
        self.queue.as_ref()
    }

    /// Fills every available chain, then signals the driver once.
    fn process(&mut self) {
        let (Some(queue), Some(dma)) = (self.queue.as_mut(), self.dma.as_ref()) else { return };
        // `pop` never yields more than the queue size per update of the available index; the
        // explicit bound keeps one notification's work fixed even if the driver keeps adding.
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop() else { break };
            let want = chain.writable_len().min(RNG_MAX_BYTES_PER_REQUEST as u64) as usize;
            self.scratch.resize(want, 0);
            let mut writer = chain.writer(dma);
            if self.source.fill(&mut self.scratch).is_ok() {
                // A DMA error leaves `written` at what reached guest RAM.
                let _ = writer.write(&self.scratch);
            }
            queue.add_used(chain.head(), writer.written_u32());
        }
        queue.notify();
    }
}

impl VirtioDevice for VirtioRng {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[RNG_QUEUE_SIZE]
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let queue = ctx.queues.into_iter().next().ok_or(ActivateError::QueueNotReady(0))?;
        if !queue.is_ready() {
            return Err(ActivateError::QueueNotReady(0));
        }
        self.queue = Some(queue);
        self.dma = Some(ctx.dma);
        // Buffers posted (and notified) before DRIVER_OK.
        self.process();
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index == 0 {
            self.process();
        }
    }

    fn reset(&mut self) {
        self.queue = None;
        self.dma = None;
        self.scratch = Vec::new();
    }
}
