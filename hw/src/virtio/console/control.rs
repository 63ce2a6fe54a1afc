//! The control protocol of a multiport console (virtio 1.2, 5.3.6.2): 8-byte messages
//! `{ id: le32, event: le16, value: le16 }`, some followed by a payload (the port name), sent
//! by the driver on the control transmitq and by the device into buffers the driver posts on
//! the control receiveq.
//!
//! Device messages wait in an [`Outbox`] until the driver posts receive buffers. The outbox
//! is bounded ([`MAX_PENDING_CONTROL`]); a host that toggles a port's connection repeatedly
//! updates the one pending `PORT_OPEN` of that port instead of queueing more.

use crate::virtio::Queue;
use std::collections::VecDeque;

/// Driver -> device: the driver is ready (`value` 1) or failed to initialise (0).
pub const VIRTIO_CONSOLE_DEVICE_READY: u16 = 0;
/// Device -> driver: port `id` exists.
pub const VIRTIO_CONSOLE_DEVICE_ADD: u16 = 1;
/// Device -> driver: port `id` is gone (hot-unplug; never sent).
pub const VIRTIO_CONSOLE_DEVICE_REMOVE: u16 = 2;
/// Driver -> device: port `id` is set up (`value` 1) or failed (0).
pub const VIRTIO_CONSOLE_PORT_READY: u16 = 3;
/// Device -> driver: port `id` is a console.
pub const VIRTIO_CONSOLE_CONSOLE_PORT: u16 = 4;
/// Device -> driver: console size changed (never sent: `VIRTIO_CONSOLE_F_SIZE` not offered).
pub const VIRTIO_CONSOLE_RESIZE: u16 = 5;
/// Both ways: port `id` opened (`value` 1) or closed (0) on the sender's side.
pub const VIRTIO_CONSOLE_PORT_OPEN: u16 = 6;
/// Device -> driver: the payload is port `id`'s name.
pub const VIRTIO_CONSOLE_PORT_NAME: u16 = 7;

/// Bytes of a message header.
pub const CONTROL_HEADER_LEN: usize = 8;
/// Most device messages waiting for control receive buffers; more are dropped. Far above
/// what a well-behaved driver causes (4 per port), low enough that a driver repeating
/// `DEVICE_READY` without posting buffers cannot grow the device's memory.
pub const MAX_PENDING_CONTROL: usize = 1024;

/// One control message.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMsg {
    pub id: u32,
    pub event: u16,
    pub value: u16,
    /// Bytes after the header (`PORT_NAME` only).
    pub payload: Vec<u8>,
}

impl ControlMsg {
    pub fn new(id: u32, event: u16, value: u16) -> Self {
        ControlMsg { id, event, value, payload: Vec::new() }
    }

    pub fn header(&self) -> [u8; CONTROL_HEADER_LEN] {
        let mut b = [0; CONTROL_HEADER_LEN];
        b[0..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..6].copy_from_slice(&self.event.to_le_bytes());
        b[6..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    /// The message a header holds (a driver's payload is never needed).
    pub fn parse(b: &[u8; CONTROL_HEADER_LEN]) -> Self {
        ControlMsg::new(
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
        )
    }
}

/// Device messages not yet delivered, oldest first.
#[derive(Default)]
pub(super) struct Outbox {
    pending: VecDeque<ControlMsg>,
}

impl Outbox {
    /// Queues `msg`; returns `false` if the outbox is full and it was dropped.
    pub fn push(&mut self, msg: ControlMsg) -> bool {
        if msg.event == VIRTIO_CONSOLE_PORT_OPEN {
            let same_port = |m: &&mut ControlMsg| m.event == VIRTIO_CONSOLE_PORT_OPEN && m.id == msg.id;
            if let Some(queued) = self.pending.iter_mut().find(same_port) {
                queued.value = msg.value;
                return true;
            }
        }
        if self.pending.len() >= MAX_PENDING_CONTROL {
            return false;
        }
        self.pending.push_back(msg);
        true
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The messages waiting, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &ControlMsg> {
        self.pending.iter()
    }

    /// Puts `msgs` in place of what waits (a restored state, checked by the caller).
    pub fn replace(&mut self, msgs: Vec<ControlMsg>) {
        self.pending = msgs.into();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Delivers pending messages, one per chain of `queue`, and signals the driver. A chain too
    /// small for a header is returned empty and the message waits for the next one; a payload
    /// that does not fit is cut.
    pub fn flush(&mut self, queue: &mut Queue) {
        if self.pending.is_empty() {
            return;
        }
        // `pop` yields at most a queue's worth of chains per driver update; the bound keeps
        // one flush's work fixed whatever the driver does meanwhile.
        for _ in 0..queue.size() {
            let Some(msg) = self.pending.front() else {
                break;
            };
            let Some(chain) = queue.pop() else { break };
            let mut writer = chain.writer(queue.dma());
            // A chain too short (or unwritable) for the header goes back with what was
            // written, and the message waits for the next chain.
            if writer.write_all(&msg.header()).is_ok() {
                let _ = writer.write(&msg.payload);
                self.pending.pop_front();
            }
            queue.add_used(chain.head(), writer.written_u32());
        }
        queue.notify();
    }
}
