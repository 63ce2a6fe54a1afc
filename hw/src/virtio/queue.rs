//! A virtqueue driven from the device side through [`Dma`]: split (virtio 1.2, 2.7) here,
//! packed (2.8, with `VIRTIO_F_RING_PACKED`) in [`packed`], behind one [`Queue`] API so
//! devices work unchanged on either layout.
//!
//! Split layout (little-endian, 2.7):
//! * Descriptor Table: `size` x 16 bytes `{ addr: u64, len: u32, flags: u16, next: u16 }`.
//! * Available Ring (driver area): `flags: u16, idx: u16, ring: [u16; size], used_event: u16`.
//! * Used Ring (device area): `flags: u16, idx: u16, ring: [{ id: u32, len: u32 }; size],
//!   avail_event: u16`.
//!
//! Indices are free-running 16-bit counters; a slot is `idx % size` (size is a power of two).
//!
//! # Validation
//! Every address goes through [`Dma`]; the ring itself failing a DMA access, or any of the
//! following, is a driver error that breaks the queue: the device is marked
//! `DEVICE_NEEDS_RESET` with a configuration change interrupt (2.1.2) and the queue stops
//! (`pop` returns `None`) until the driver resets the device:
//! * the available index more than `size` ahead of the last one processed;
//! * a head or `next` index outside its table;
//! * a chain longer than the queue size (which a loop always is), or an indirect chain longer
//!   than its table;
//! * `VIRTQ_DESC_F_INDIRECT` without `VIRTIO_F_INDIRECT_DESC`, inside an indirect table, or
//!   together with `VIRTQ_DESC_F_NEXT`; an indirect table that is empty, not a multiple of 16
//!   bytes or longer than [`MAX_INDIRECT_DESCRIPTORS`];
//! * a device-readable descriptor after a device-writable one (2.7.4.2);
//! * for packed rings, the rules listed in [`packed`].
//!
//! Buffer addresses in the descriptors are not checked here: a device that cannot read or
//! write a buffer gets a [`super::ChainError`] and fails that request its own way.
//!
//! Work is bounded: a chain walk reads at most `size` (direct) plus
//! [`MAX_INDIRECT_DESCRIPTORS`] descriptors, and `pop` returns at most `size` chains per
//! driver update of the available index.
//!
//! # Memory ordering
//! The driver runs on other host threads (vCPUs). The device reads the available index, then
//! (acquire fence) the ring and descriptors; it writes used elements, then (release fence) the
//! used index; and a full fence separates publishing the used index from reading
//! `used_event`/`flags`, and writing `avail_event` from re-checking the available index
//! (2.7.13, 2.7.14).

use super::chain::{Buffer, DescriptorChain};
use super::interrupt::Interrupt;
use super::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED};
use packed::PackedRing;

pub mod packed;
use ferrite_memory::{Dma, DmaError};
use std::sync::atomic::{fence, Ordering};

/// Descriptor flag: the buffer continues in `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device write-only (else device read-only).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of descriptors (2.7.5.3).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver does not want used buffer notifications (without
/// `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device does not want available buffer notifications (without
/// `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
/// Bytes per descriptor.
pub const VIRTQ_DESC_SIZE: u64 = 16;
/// Bytes per used ring element.
pub const VIRTQ_USED_ELEM_SIZE: u64 = 8;
/// Largest queue size (2.7: "The maximum Queue Size value is 32768"; 2.8: "up to 2^15
/// entries").
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Most descriptors accepted in one indirect table (the spec lets a device set "a reasonable
/// limit", 2.7.4.1; QEMU's is the same).
pub const MAX_INDIRECT_DESCRIPTORS: u32 = 1024;

/// Where a queue lives and whether the driver enabled it, as programmed through the
/// transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue size (a power of two up to the device's maximum).
    pub size: u16,
    /// `queue_enable` (or a non-zero legacy queue PFN).
    pub ready: bool,
    /// Descriptor area (descriptor table).
    pub desc_table: u64,
    /// Driver area (available ring).
    pub avail_ring: u64,
    /// Device area (used ring).
    pub used_ring: u64,
}

/// A driver error that broke a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("reading the {what} failed")]
    RingRead {
        what: &'static str,
        #[source]
        source: DmaError,
    },
    #[error("writing the {what} failed")]
    RingWrite {
        what: &'static str,
        #[source]
        source: DmaError,
    },
    #[error("available index {idx} is more than the queue size {size} ahead of {last}")]
    AvailIndexJump { last: u16, idx: u16, size: u16 },
    #[error("descriptor index {index} is outside its table of {len} entries")]
    DescriptorIndex { index: u32, len: u32 },
    #[error("descriptor chain at head {head} is longer than {limit} descriptors (a loop?)")]
    ChainTooLong { head: u16, limit: u32 },
    #[error("indirect descriptor without VIRTIO_F_INDIRECT_DESC")]
    IndirectNotNegotiated,
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    #[error("indirect descriptor chained with VIRTQ_DESC_F_NEXT")]
    IndirectWithNext,
    #[error("indirect table of {len} bytes (empty, not a multiple of 16, or too long)")]
    IndirectLength { len: u32 },
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    #[error("packed ring descriptor {position} continues a chain but is not available")]
    ChainNotAvailable { position: u16 },
    #[error("packed ring buffer id {id} is outside the queue of {size} or already in flight")]
    BufferId { id: u16, size: u16 },
    #[error("the device returned buffer id {id}, which is not in flight")]
    UnknownUsedId { id: u16 },
}

/// `base + offset`, or an address no DMA reaches if that overflows (a ring placed at the top
/// of the address space must fail, not wrap around to guest page 0).
pub(crate) fn guest_add(base: u64, offset: u64) -> u64 {
    base.saturating_add(offset)
}

/// One descriptor as read from a table.
#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Collects a chain's buffers in the order the device reads them, enforcing the framing rule
/// both layouts share: device-readable buffers before device-writable ones (2.7.4.2, 2.8.17).
#[derive(Default)]
struct ChainBuilder {
    chain: DescriptorChain,
}

impl ChainBuilder {
    fn add(&mut self, addr: u64, len: u32, writable: bool) -> Result<(), QueueError> {
        let buf = Buffer { addr, len };
        if writable {
            self.chain.writable.push(buf);
        } else if self.chain.writable.is_empty() {
            self.chain.readable.push(buf);
        } else {
            return Err(QueueError::ReadableAfterWritable);
        }
        Ok(())
    }

    fn finish(mut self, head: u16) -> DescriptorChain {
        self.chain.head = head;
        self.chain
    }
}

/// A virtqueue, device side: split (2.7) or, with `VIRTIO_F_RING_PACKED`, packed (2.8).
/// Owned and `Send`: keep it in the device or move it to a worker thread.
pub struct Queue {
    index: u16,
    cfg: QueueConfig,
    dma: Dma,
    interrupt: Interrupt,
    event_idx: bool,
    indirect: bool,
    /// Next available ring entry to process.
    next_avail: u16,
    /// Next used ring entry to fill (the used index published to the driver).
    next_used: u16,
    /// Used index at the last notification decision.
    signalled_used: u16,
    /// Whether the device wants available buffer notifications.
    notifications: bool,
    error: Option<QueueError>,
    /// The packed ring's state when `VIRTIO_F_RING_PACKED` was negotiated (then the split
    /// indices above are unused).
    packed: Option<PackedRing>,
}

impl Queue {
    /// Queue `index` as the driver set it up, for a device that negotiated `features`.
    pub fn new(index: u16, cfg: QueueConfig, features: u64, dma: Dma, interrupt: Interrupt) -> Self {
        let packed = features & VIRTIO_F_RING_PACKED != 0;
        // Packed queue sizes need not be powers of two (2.8.10.1).
        let valid = (cfg.size.is_power_of_two() || (packed && cfg.size > 0)) && cfg.size <= MAX_QUEUE_SIZE;
        Queue {
            index,
            cfg: QueueConfig { ready: cfg.ready && valid, ..cfg },
            dma,
            interrupt,
            event_idx: features & VIRTIO_F_EVENT_IDX != 0,
            indirect: features & VIRTIO_F_INDIRECT_DESC != 0,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            notifications: true,
            error: None,
            packed: (packed && valid).then(|| PackedRing::new(cfg.size)),
        }
    }

    /// Puts a split ring's device-side positions at ring index `index` (next available
    /// entry to pop, next used entry to fill, last used index signalled): where a quiesced
    /// device stood when it was saved. No effect on a packed ring.
    pub(crate) fn set_split_position(&mut self, index: u16) {
        if self.packed.is_none() {
            (self.next_avail, self.next_used, self.signalled_used) = (index, index, index);
        }
    }

    /// The queue's index in the device.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The negotiated queue size.
    pub fn size(&self) -> u16 {
        self.cfg.size
    }

    /// The ring addresses and size.
    pub fn config(&self) -> QueueConfig {
        self.cfg
    }

    /// Whether the queue can be used: enabled by the driver, not broken, and no device reset
    /// since it was handed out.
    pub fn is_ready(&self) -> bool {
        self.cfg.ready && self.error.is_none() && self.interrupt.is_active()
    }

    /// The error that broke the queue, if any.
    pub fn error(&self) -> Option<QueueError> {
        self.error
    }

    /// The DMA handle the queue uses (for reading and writing chains).
    pub fn dma(&self) -> &Dma {
        &self.dma
    }

    /// The device's interrupt handle.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Breaks the queue and marks the device `DEVICE_NEEDS_RESET` (also for device-detected
    /// protocol errors).
    pub fn set_error(&mut self, e: QueueError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.interrupt.set_needs_reset();
        }
    }

    fn avail_addr(&self, offset: u64) -> u64 {
        guest_add(self.cfg.avail_ring, offset)
    }

    fn used_addr(&self, offset: u64) -> u64 {
        guest_add(self.cfg.used_ring, offset)
    }

    fn read_u16(&self, addr: u64, what: &'static str) -> Result<u16, QueueError> {
        let mut b = [0; 2];
        self.dma.read(addr, &mut b).map_err(|source| QueueError::RingRead { what, source })?;
        Ok(u16::from_le_bytes(b))
    }

    fn write_u16(&self, addr: u64, v: u16, what: &'static str) -> Result<(), QueueError> {
        self.dma.write(addr, &v.to_le_bytes()).map_err(|source| QueueError::RingWrite { what, source })
    }

    /// Reads the available index and checks it is at most `size` ahead.
    fn avail_idx(&self) -> Result<u16, QueueError> {
        let idx = self.read_u16(self.avail_addr(2), "available index")?;
        if idx.wrapping_sub(self.next_avail) > self.cfg.size {
            return Err(QueueError::AvailIndexJump { last: self.next_avail, idx, size: self.cfg.size });
        }
        Ok(idx)
    }

    fn avail_event_addr(&self) -> u64 {
        self.used_addr(4 + VIRTQ_USED_ELEM_SIZE * u64::from(self.cfg.size))
    }

    fn used_event_addr(&self) -> u64 {
        self.avail_addr(4 + 2 * u64::from(self.cfg.size))
    }

    /// Whether the driver has made buffers available that were not popped yet.
    pub fn has_available(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        if self.packed.is_some() {
            let r = self.packed_has_available();
            return r.unwrap_or_else(|e| {
                self.set_error(e);
                false
            });
        }
        match self.avail_idx() {
            Ok(idx) => idx != self.next_avail,
            Err(e) => {
                self.set_error(e);
                false
            }
        }
    }

    /// The next available descriptor chain, or `None` when there is none (or the queue is not
    /// ready or just broke).
    pub fn pop(&mut self) -> Option<DescriptorChain> {
        if !self.is_ready() {
            return None;
        }
        let r = if self.packed.is_some() { self.packed_try_pop() } else { self.try_pop() };
        match r {
            Ok(c) => c,
            Err(e) => {
                self.set_error(e);
                None
            }
        }
    }

    fn try_pop(&mut self) -> Result<Option<DescriptorChain>, QueueError> {
        let mut idx = self.avail_idx()?;
        if idx == self.next_avail {
            if !(self.event_idx && self.notifications) {
                return Ok(None);
            }
            // Ask for a notification at the next entry, then look again: the driver may
            // have added one after our read but before it saw the new avail_event.
            self.publish_avail_event()?;
            fence(Ordering::SeqCst);
            idx = self.avail_idx()?;
            if idx == self.next_avail {
                return Ok(None);
            }
        }
        // The ring entry and descriptors are read after the index that published them.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.cfg.size);
        let head = self.read_u16(self.avail_addr(4 + 2 * slot), "available ring")?;
        let chain = self.walk(head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        if self.event_idx && self.notifications {
            self.publish_avail_event()?;
        }
        Ok(Some(chain))
    }

    fn publish_avail_event(&self) -> Result<(), QueueError> {
        self.write_u16(self.avail_event_addr(), self.next_avail, "avail_event")
    }

    /// The 16 bytes of entry `index` of a descriptor table or ring.
    fn read_raw_desc(&self, table: u64, index: u32) -> Result<[u8; 16], QueueError> {
        let mut b = [0u8; 16];
        let addr = guest_add(table, VIRTQ_DESC_SIZE * u64::from(index));
        self.dma.read(addr, &mut b).map_err(|source| QueueError::RingRead { what: "descriptor", source })?;
        Ok(b)
    }

    fn read_desc(&self, table: u64, index: u32) -> Result<Desc, QueueError> {
        let b = self.read_raw_desc(table, index)?;
        Ok(Desc {
            addr: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        })
    }

    /// Walks the chain starting at `head` (2.7.5).
    fn walk(&self, head: u16) -> Result<DescriptorChain, QueueError> {
        let mut chain = ChainBuilder::default();
        let mut table = self.cfg.desc_table;
        let mut table_len = u32::from(self.cfg.size);
        let mut index = u32::from(head);
        let mut in_indirect = false;
        let mut steps = 0u32;
        loop {
            if index >= table_len {
                return Err(QueueError::DescriptorIndex { index, len: table_len });
            }
            // A table of n entries cannot hold a loop-free chain longer than n.
            steps += 1;
            if steps > table_len {
                return Err(QueueError::ChainTooLong { head, limit: table_len });
            }
            let d = self.read_desc(table, index)?;
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                // The write flag of the descriptor pointing at the table is ignored (2.7.5.3.2).
                table_len = self.indirect_entries(d.len, d.flags & VIRTQ_DESC_F_NEXT != 0, in_indirect)?;
                table = d.addr;
                index = 0;
                steps = 0;
                in_indirect = true;
                continue;
            }
            chain.add(d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE != 0)?;
            if d.flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(chain.finish(head));
            }
            index = u32::from(d.next);
        }
    }

    /// Checks an indirect descriptor of `len` bytes (chained to others if `chained`, found
    /// inside an indirect table if `nested`) and returns its table's entry count: the rules
    /// of 2.7.5.3 and 2.8.19 that both layouts share.
    fn indirect_entries(&self, len: u32, chained: bool, nested: bool) -> Result<u32, QueueError> {
        if !self.indirect {
            return Err(QueueError::IndirectNotNegotiated);
        }
        if nested {
            return Err(QueueError::NestedIndirect);
        }
        if chained {
            return Err(QueueError::IndirectWithNext);
        }
        let n = len / VIRTQ_DESC_SIZE as u32;
        if len == 0 || !len.is_multiple_of(VIRTQ_DESC_SIZE as u32) || n > MAX_INDIRECT_DESCRIPTORS {
            return Err(QueueError::IndirectLength { len });
        }
        Ok(n)
    }

    /// Returns the chain with head `head` to the driver, `len` bytes written into it
    /// (2.7.8). Call [`Self::notify`] after a batch.
    pub fn add_used(&mut self, head: u16, len: u32) {
        if !self.is_ready() {
            return;
        }
        let r = if self.packed.is_some() { self.packed_add_used(head, len) } else { self.try_add_used(head, len) };
        if let Err(e) = r {
            self.set_error(e);
        }
    }

    fn try_add_used(&mut self, head: u16, len: u32) -> Result<(), QueueError> {
        let slot = u64::from(self.next_used % self.cfg.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let addr = self.used_addr(4 + VIRTQ_USED_ELEM_SIZE * slot);
        self.dma.write(addr, &elem).map_err(|source| QueueError::RingWrite { what: "used ring", source })?;
        // The element must be visible before the index that publishes it.
        fence(Ordering::Release);
        let next = self.next_used.wrapping_add(1);
        self.write_u16(self.used_addr(2), next, "used index")?;
        self.next_used = next;
        Ok(())
    }

    /// Whether the driver wants a used buffer notification for what was added since the last
    /// call (2.7.7): with `VIRTIO_F_EVENT_IDX`, when the used index moved past `used_event`;
    /// otherwise unless `VIRTQ_AVAIL_F_NO_INTERRUPT` is set.
    pub fn needs_notification(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        // The used index must be visible before reading the driver's suppression state.
        fence(Ordering::SeqCst);
        if self.packed.is_some() {
            let r = self.packed_needs_notification();
            return r.unwrap_or_else(|e| {
                self.set_error(e);
                false
            });
        }
        let new = self.next_used;
        let old = std::mem::replace(&mut self.signalled_used, new);
        if new == old {
            return false;
        }
        let result = if self.event_idx {
            self.read_u16(self.used_event_addr(), "used_event")
                .map(|event| new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old))
        } else {
            self.read_u16(self.avail_addr(0), "available flags").map(|f| f & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        };
        result.unwrap_or_else(|e| {
            self.set_error(e);
            false
        })
    }

    /// Signals used buffers through the [`Interrupt`] if the driver wants it; returns whether
    /// it did.
    pub fn notify(&mut self) -> bool {
        let needed = self.needs_notification();
        if needed {
            self.interrupt.signal_queue(self.index);
        }
        needed
    }

    /// Puts back the last `count` chains popped (none of them returned with
    /// [`Self::add_used`] yet), so the next pops yield them again: for a device that needs
    /// several chains for one request and found too few (virtio-net's mergeable receive
    /// buffers). Follow with [`Self::notify_on_more`] to hear when the driver adds more.
    pub fn undo_pop(&mut self, count: u16) {
        if let Some(ring) = &mut self.packed {
            ring.undo_pop(count);
            return;
        }
        self.next_avail = self.next_avail.wrapping_sub(count);
    }

    /// Asks for a notification as soon as the driver makes one more buffer available, even
    /// though unprocessed ones are available already (too few for the device's request):
    /// with `VIRTIO_F_EVENT_IDX`, `avail_event` is set to the current available index rather
    /// than the next entry to process. Returns whether the driver added buffers meanwhile;
    /// then the caller should look again, since no notification will come for those.
    pub fn notify_on_more(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        self.notifications = true;
        let r = if self.packed.is_some() { self.packed_notify_on_more() } else { self.try_notify_on_more() };
        match r {
            Ok(more) => more,
            Err(e) => {
                self.set_error(e);
                false
            }
        }
    }

    fn try_notify_on_more(&mut self) -> Result<bool, QueueError> {
        let idx = self.avail_idx()?;
        if self.event_idx {
            self.write_u16(self.avail_event_addr(), idx, "avail_event")?;
        } else {
            self.write_u16(self.used_addr(0), 0, "used flags")?;
        }
        // Publishing the request must be ordered before re-reading the index (2.7.10).
        fence(Ordering::SeqCst);
        Ok(self.avail_idx()? != idx)
    }

    /// Asks the driver not to notify this queue (a worker that polls): sets
    /// `VIRTQ_USED_F_NO_NOTIFY`, or with `VIRTIO_F_EVENT_IDX` stops moving `avail_event`.
    pub fn disable_notifications(&mut self) {
        if !self.is_ready() || !self.notifications {
            return;
        }
        self.notifications = false;
        if self.packed.is_some() {
            if let Err(e) = self.packed_publish_device_event(packed::RING_EVENT_FLAGS_DISABLE) {
                self.set_error(e);
            }
        } else if !self.event_idx {
            if let Err(e) = self.write_u16(self.used_addr(0), VIRTQ_USED_F_NO_NOTIFY, "used flags") {
                self.set_error(e);
            }
        }
    }

    /// Asks the driver to notify again; returns whether buffers are already available (then
    /// the caller must process them: no notification will come for those).
    pub fn enable_notifications(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        self.notifications = true;
        let r = if self.packed.is_some() {
            self.packed_publish_wanted_event()
        } else if self.event_idx {
            self.publish_avail_event()
        } else {
            self.write_u16(self.used_addr(0), 0, "used flags")
        };
        if let Err(e) = r {
            self.set_error(e);
            return false;
        }
        fence(Ordering::SeqCst);
        self.has_available()
    }
}
