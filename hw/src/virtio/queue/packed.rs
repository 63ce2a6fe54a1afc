//! The packed virtqueue layout (virtio 1.2, 2.8): the `impl Queue` methods the public
//! [`Queue`] API dispatches to when `VIRTIO_F_RING_PACKED` was negotiated.
//!
//! Layout (little-endian):
//! * Descriptor Ring (descriptor area): `size` x `{ addr: u64, len: u32, id: u16, flags: u16 }`.
//! * Driver Event Suppression (driver area, read by the device) and Device Event Suppression
//!   (device area, written by the device): `{ off_wrap: u16, flags: u16 }` (2.8.14).
//!
//! Both sides walk the ring in order with a wrap counter that starts at 1 and flips at each
//! end of the ring. Here a ring position and its wrap counter form one *phase* in
//! `0..2 * size`: slot `phase % size`, wrap counter 1 for `phase < size`. A descriptor is
//! available when its AVAIL bit equals the device's avail wrap counter and its USED bit does
//! not; the device marks a descriptor used by setting both to its used wrap counter (2.8.1).
//!
//! A chain takes consecutive slots (wrapping) linked by `VIRTQ_DESC_F_NEXT`, its buffer id in
//! its last descriptor (2.8.6). The device writes one used descriptor per chain at its own
//! next used position, in completion order, then skips as many slots as the chain took, so
//! it remembers that count per in-flight buffer id.
//!
//! # Validation (besides the rules shared with split rings)
//! * a chain longer than the queue size;
//! * a later descriptor of a chain not marked available;
//! * an indirect descriptor that is not alone in its chain (2.8.19);
//! * a buffer id outside the queue or already in flight.
//!
//! Inside an indirect table only `VIRTQ_DESC_F_WRITE` counts; other flags and the ids are
//! reserved and ignored (2.8.7). `RING_EVENT_FLAGS_DESC` without `VIRTIO_F_EVENT_IDX`, or the
//! reserved value 3, is read as "enabled": a spurious interrupt is harmless, a lost one is not.
//!
//! # Memory ordering
//! The device reads a head's flags, then (acquire fence) the chain; it writes a used
//! descriptor's length and id, then (release fence) its flags; a full fence separates
//! publishing used descriptors from reading the driver's event suppression, and publishing
//! the device's from re-checking the ring (2.8.21).

use super::{guest_add, ChainBuilder, Queue, QueueError, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::virtio::chain::DescriptorChain;
use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};

/// Descriptor flag: available (compared with the avail wrap counter).
pub const VIRTQ_DESC_F_AVAIL: u16 = 1 << 7;
/// Descriptor flag: used (compared with the used wrap counter).
pub const VIRTQ_DESC_F_USED: u16 = 1 << 15;
/// Event suppression flags (2.8.14).
pub const RING_EVENT_FLAGS_ENABLE: u16 = 0;
pub const RING_EVENT_FLAGS_DISABLE: u16 = 1;
pub const RING_EVENT_FLAGS_DESC: u16 = 2;
/// Wrap counter bit of `off_wrap`.
pub const RING_EVENT_WRAP: u16 = 1 << 15;

/// One packed descriptor as read from the ring or an indirect table.
#[derive(Clone, Copy, Debug)]
struct PackedDesc {
    addr: u64,
    len: u32,
    id: u16,
    flags: u16,
}

/// Device-side state of a packed ring.
pub(super) struct PackedRing {
    size: u16,
    /// Phase of the next descriptor to read.
    next_avail: u32,
    /// Phase where the next used descriptor goes.
    next_used: u32,
    /// `next_used` at the last notification decision.
    signalled_used: u32,
    /// Slots used since the last notification decision.
    unsignalled: u32,
    /// Ring slots each in-flight buffer id took (0: not in flight).
    in_flight: Vec<u16>,
    /// The latest pops as (id, slots), newest last, at most `size`: what `undo_pop` rewinds.
    recent: VecDeque<(u16, u16)>,
}

impl PackedRing {
    pub(super) fn new(size: u16) -> Self {
        PackedRing {
            size,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            unsignalled: 0,
            in_flight: vec![0; usize::from(size)],
            recent: VecDeque::new(),
        }
    }

    fn period(&self) -> u32 {
        2 * u32::from(self.size)
    }

    fn advance(&self, phase: u32, n: u32) -> u32 {
        (phase + n) % self.period()
    }

    fn slot(&self, phase: u32) -> u32 {
        phase % u32::from(self.size)
    }

    fn wrap(&self, phase: u32) -> bool {
        phase < u32::from(self.size)
    }

    fn off_wrap(&self, phase: u32) -> u16 {
        self.slot(phase) as u16 | if self.wrap(phase) { RING_EVENT_WRAP } else { 0 }
    }

    /// The phase an `off_wrap` names, or `None` for an offset outside the ring.
    fn phase_of(&self, off_wrap: u16) -> Option<u32> {
        let off = u32::from(off_wrap & !RING_EVENT_WRAP);
        let lap = if off_wrap & RING_EVENT_WRAP != 0 { 0 } else { u32::from(self.size) };
        (off < u32::from(self.size)).then_some(off + lap)
    }

    /// Puts back the last `count` chains popped (none of them used yet).
    pub(super) fn undo_pop(&mut self, count: u16) {
        for _ in 0..count {
            let Some((id, slots)) = self.recent.pop_back() else { break };
            self.next_avail = (self.next_avail + self.period() - u32::from(slots)) % self.period();
            self.in_flight[usize::from(id)] = 0;
        }
    }
}

fn is_available(flags: u16, wrap: bool) -> bool {
    (flags & VIRTQ_DESC_F_AVAIL != 0) == wrap && (flags & VIRTQ_DESC_F_USED != 0) != wrap
}

impl Queue {
    fn ring(&self) -> &PackedRing {
        self.packed.as_ref().expect("packed queue")
    }

    fn ring_mut(&mut self) -> &mut PackedRing {
        self.packed.as_mut().expect("packed queue")
    }

    fn read_packed_desc(&self, table: u64, index: u32) -> Result<PackedDesc, QueueError> {
        let b = self.read_raw_desc(table, index)?;
        Ok(PackedDesc {
            addr: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            id: u16::from_le_bytes([b[12], b[13]]),
            flags: u16::from_le_bytes([b[14], b[15]]),
        })
    }

    fn packed_available_at(&self, phase: u32) -> Result<bool, QueueError> {
        let ring = self.ring();
        let addr = guest_add(self.cfg.desc_table, 16 * u64::from(ring.slot(phase)) + 14);
        let flags = self.read_u16(addr, "descriptor flags")?;
        Ok(is_available(flags, ring.wrap(phase)))
    }

    pub(super) fn packed_has_available(&mut self) -> Result<bool, QueueError> {
        self.packed_available_at(self.ring().next_avail)
    }

    pub(super) fn packed_try_pop(&mut self) -> Result<Option<DescriptorChain>, QueueError> {
        let start = self.ring().next_avail;
        if !self.packed_available_at(start)? {
            if !(self.event_idx && self.notifications) {
                return Ok(None);
            }
            // Ask for a notification at this descriptor, then look again: the driver may
            // have made it available before it saw the request.
            self.packed_publish_wanted_event()?;
            fence(Ordering::SeqCst);
            if !self.packed_available_at(start)? {
                return Ok(None);
            }
        }
        // The chain is read after the head flags that published it.
        fence(Ordering::Acquire);
        let (chain, slots) = self.packed_walk(start)?;
        let ring = self.ring_mut();
        ring.in_flight[usize::from(chain.head)] = slots;
        ring.next_avail = ring.advance(start, u32::from(slots));
        ring.recent.push_back((chain.head, slots));
        if ring.recent.len() > usize::from(ring.size) {
            ring.recent.pop_front();
        }
        if self.event_idx && self.notifications {
            self.packed_publish_wanted_event()?;
        }
        Ok(Some(chain))
    }

    /// Reads the chain whose head is at `start`; returns it with the ring slots it takes.
    fn packed_walk(&self, start: u32) -> Result<(DescriptorChain, u16), QueueError> {
        let ring = self.ring();
        let size = u32::from(ring.size);
        let mut chain = ChainBuilder::default();
        let mut phase = start;
        let mut slots = 0u32;
        loop {
            if slots == size {
                return Err(QueueError::ChainTooLong { head: ring.slot(start) as u16, limit: size });
            }
            let d = self.read_packed_desc(self.cfg.desc_table, ring.slot(phase))?;
            if slots > 0 && !is_available(d.flags, ring.wrap(phase)) {
                return Err(QueueError::ChainNotAvailable { position: ring.slot(phase) as u16 });
            }
            slots += 1;
            phase = ring.advance(phase, 1);
            let next = d.flags & VIRTQ_DESC_F_NEXT != 0;
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                let entries = self.indirect_entries(d.len, next || slots > 1, false)?;
                for i in 0..entries {
                    let e = self.read_packed_desc(d.addr, i)?;
                    chain.add(e.addr, e.len, e.flags & VIRTQ_DESC_F_WRITE != 0)?;
                }
            } else {
                chain.add(d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE != 0)?;
            }
            if !next {
                if d.id >= ring.size || ring.in_flight[usize::from(d.id)] != 0 {
                    return Err(QueueError::BufferId { id: d.id, size: ring.size });
                }
                return Ok((chain.finish(d.id), slots as u16));
            }
        }
    }

    /// Writes the used descriptor for buffer `id` at the next used position (2.8.21.2).
    pub(super) fn packed_add_used(&mut self, id: u16, len: u32) -> Result<(), QueueError> {
        let ring = self.ring();
        let slots = ring.in_flight.get(usize::from(id)).copied().unwrap_or(0);
        if slots == 0 {
            return Err(QueueError::UnknownUsedId { id });
        }
        let phase = ring.next_used;
        let addr = guest_add(self.cfg.desc_table, 16 * u64::from(ring.slot(phase)) + 8);
        let mut len_id = [0u8; 6];
        len_id[..4].copy_from_slice(&len.to_le_bytes());
        len_id[4..].copy_from_slice(&id.to_le_bytes());
        self.dma
            .write(addr, &len_id)
            .map_err(|source| QueueError::RingWrite { what: "used descriptor", source })?;
        let wrap = if ring.wrap(phase) { VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED } else { 0 };
        // WRITE in a used descriptor says whether the device wrote anything (2.8.3).
        let flags = wrap | if len > 0 { VIRTQ_DESC_F_WRITE } else { 0 };
        // Length and id must be visible before the flags that publish them.
        fence(Ordering::Release);
        self.write_u16(guest_add(addr, 6), flags, "used descriptor flags")?;
        let ring = self.ring_mut();
        ring.in_flight[usize::from(id)] = 0;
        ring.next_used = ring.advance(phase, u32::from(slots));
        ring.unsignalled += u32::from(slots);
        Ok(())
    }

    /// Whether the driver wants a used buffer notification for the descriptors used since
    /// the last call (2.8.10): per the driver event suppression flags, and with
    /// `RING_EVENT_FLAGS_DESC` when a used descriptor went to the position it names.
    pub(super) fn packed_needs_notification(&mut self) -> Result<bool, QueueError> {
        let ring = self.ring_mut();
        let old = std::mem::replace(&mut ring.signalled_used, ring.next_used);
        let count = std::mem::take(&mut ring.unsignalled);
        if count == 0 {
            return Ok(false);
        }
        let mut b = [0u8; 4];
        self.dma
            .read(self.cfg.avail_ring, &mut b)
            .map_err(|source| QueueError::RingRead { what: "driver event suppression", source })?;
        let off_wrap = u16::from_le_bytes([b[0], b[1]]);
        let flags = u16::from_le_bytes([b[2], b[3]]) & 3;
        let ring = self.ring();
        Ok(match flags {
            RING_EVENT_FLAGS_DISABLE => false,
            RING_EVENT_FLAGS_DESC if self.event_idx => {
                let period = ring.period();
                // Wrote the event position when it lies in [old, old + count).
                count >= period || ring.phase_of(off_wrap).is_none_or(|event| (event + period - old) % period < count)
            }
            _ => true,
        })
    }

    /// Writes the device event suppression structure: `flags`, and the next descriptor to
    /// read as the position of interest.
    pub(super) fn packed_publish_device_event(&self, flags: u16) -> Result<(), QueueError> {
        let ring = self.ring();
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&ring.off_wrap(ring.next_avail).to_le_bytes());
        b[2..].copy_from_slice(&flags.to_le_bytes());
        self.dma
            .write(self.cfg.used_ring, &b)
            .map_err(|source| QueueError::RingWrite { what: "device event suppression", source })
    }

    /// Asks for available buffer notifications: with `VIRTIO_F_EVENT_IDX` only once the next
    /// descriptor to read is made available, else for every addition.
    pub(super) fn packed_publish_wanted_event(&self) -> Result<(), QueueError> {
        let flags = if self.event_idx { RING_EVENT_FLAGS_DESC } else { RING_EVENT_FLAGS_ENABLE };
        self.packed_publish_device_event(flags)
    }

    /// [`Queue::notify_on_more`]: notifications for any addition; whether the slot after
    /// everything available now was filled meanwhile.
    pub(super) fn packed_notify_on_more(&mut self) -> Result<bool, QueueError> {
        let ring = self.ring();
        let mut end = ring.next_avail;
        for _ in 0..ring.size {
            if !self.packed_available_at(end)? {
                break;
            }
            end = ring.advance(end, 1);
        }
        self.packed_publish_device_event(RING_EVENT_FLAGS_ENABLE)?;
        // Publishing the request must be ordered before looking again.
        fence(Ordering::SeqCst);
        self.packed_available_at(end)
    }
}
