//! Virtio 1.2 (OASIS "Virtual I/O Device (VIRTIO) Version 1.2"): split virtqueues, the PCI
//! transport (modern, transitional and legacy), and the devices that sit on it.
//!
//! # Layers
//! * [`queue`]: a split virtqueue (spec 2.7) read and written through the device's
//!   [`ferrite_memory::Dma`] handle: descriptor chains (direct and indirect), the used ring,
//!   `VIRTIO_F_EVENT_IDX` suppression in both directions. Every guest value is checked: a
//!   malformed ring marks the device `DEVICE_NEEDS_RESET` (2.1.2) instead of panicking or
//!   looping.
//! * [`chain`]: what a popped descriptor chain offers a device: its device-readable and
//!   device-writable buffer lists and cursors that copy across them.
//! * [`interrupt`]: the [`Interrupt`] handle (`Send + Sync + Clone`) a device uses from any
//!   thread to signal "used buffers in queue q" (MSI-X vector of the queue, or INTx + ISR bit 0)
//!   and "configuration changed".
//! * [`pci`]: [`VirtioPci`], the virtio-over-PCI transport (4.1) that wraps one
//!   [`VirtioDevice`] and implements [`crate::pci::PciDevice`].
//! * [`rng`]: the entropy device (5.4), the first device on the transport.
//!
//! # Writing a device
//! Implement [`VirtioDevice`]; wrap it with [`VirtioPci::new`]; plug the result into the PCI bus
//! with `PciBus::plug`. The transport does feature negotiation, the status state machine,
//! queue setup and interrupts; the device sees:
//! 1. [`VirtioDevice::activate`] when the driver sets `DRIVER_OK`, with the negotiated features,
//!    one [`Queue`] per entry of [`VirtioDevice::queue_max_sizes`] (check [`Queue::is_ready`]:
//!    a driver need not enable every queue), the [`Interrupt`] handle and the [`Dma`] handle.
//!    Queues are plain owned values (`Send`): keep them in the device, move them to a worker
//!    thread, or wrap them in `Arc<Mutex<_>>` when two threads share one. Process what is
//!    already available at activation: legacy drivers may post buffers and notify before
//!    `DRIVER_OK`.
//! 2. [`VirtioDevice::queue_notify`] on the vCPU thread (transport lock held) when the driver
//!    notifies a queue. Do bounded work there or wake a worker; never block.
//! 3. [`VirtioDevice::reset`] when the driver writes 0 to the device status (or the machine
//!    resets): drop the queues, stop and join workers, return to the power-on state. The
//!    transport invalidates every [`Queue`] and [`Interrupt`] of the old activation first, so
//!    a worker that still holds one can no longer touch guest memory or raise interrupts
//!    through it (each access checks an epoch), but it must still be stopped.
//!
//! A worker processes a queue as: `while let Some(chain) = queue.pop() { ...read
//! chain.reader(dma), write chain.writer(dma)...; queue.add_used(chain.head(), written) }`
//! then `queue.notify()` once per batch (it applies `VIRTIO_F_EVENT_IDX` /
//! `VRING_AVAIL_F_NO_INTERRUPT` and signals through the queue's [`Interrupt`]). Keep popping
//! until `pop` returns `None`, or come back later on your own: with `EVENT_IDX` the driver
//! only notifies again once the device has caught up.
//!
//! Lock order: transport (vCPU threads) -> device -> [`Interrupt`] state. A worker thread
//! holds its queues and takes only the interrupt state's lock (inside [`Queue::notify`] and
//! [`Interrupt`]); it must never lock the transport, so a vCPU holding the transport lock
//! while calling into the device can always make progress.
//!
//! # Why not rust-vmm's `virtio-queue`
//! That crate reads rings through `vm-memory`'s `GuestMemory`/`GuestAddressSpace` traits.
//! Ferrite's guest memory is `ferrite_memory::GuestMemory` behind the bounded [`Dma`] handle
//! (dirty logging and translated-code invalidation on every write, errors for addresses
//! outside RAM), which those traits do not model: using the crate would mean an adapter
//! implementing `vm-memory`'s region, bitmap and atomic-access traits over `Dma`, a second
//! memory abstraction for devices to learn and new dependencies, to save what is a few hundred
//! lines of ring walking. So the queue here is our own, small, over `Dma`.
//!
//! # Packed virtqueues
//! [`Queue`] also drives the packed layout (2.8) when the driver negotiated
//! `VIRTIO_F_RING_PACKED`, behind the same API: [`DescriptorChain::head`] is then the buffer
//! id. The transport offers the bit only with [`VirtioPciOptions::packed`] (QEMU's `packed=on`,
//! off by default) and only through the modern interface.

pub mod balloon;
pub mod blk;
pub mod chain;
pub mod console;
pub mod interrupt;
pub mod net;
pub mod pci;
pub mod queue;
pub mod rng;

#[cfg(test)]
mod packed_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

pub use balloon::{BalloonControl, BalloonStats, VirtioBalloon, VirtioBalloonOptions};
pub use blk::{BlkStats, VirtioBlk, VirtioBlkOptions};
pub use chain::{Buffer, ChainError, ChainReader, ChainWriter, DescriptorChain};
pub use console::{ConsoleError, PortConfig, PortHandle, PortOutput, VirtioConsole, VirtioConsoleOptions};
pub use interrupt::Interrupt;
pub use net::{NetStats, VirtioNet, VirtioNetOptions, VirtioNetRx};
pub use pci::{VirtioPci, VirtioPciError, VirtioPciOptions};
pub use queue::{Queue, QueueConfig, QueueError};
pub use rng::{EntropySource, HostEntropy, VirtioRng};

use ferrite_memory::Dma;

/// Device IDs (spec 5, "Device Types").
pub const VIRTIO_ID_NET: u16 = 1;
pub const VIRTIO_ID_BLOCK: u16 = 2;
pub const VIRTIO_ID_CONSOLE: u16 = 3;
pub const VIRTIO_ID_RNG: u16 = 4;
pub const VIRTIO_ID_BALLOON: u16 = 5;
pub const VIRTIO_ID_SCSI: u16 = 8;
pub const VIRTIO_ID_9P: u16 = 9;

/// Device status bits (spec 2.1).
/// The guest OS has found the device and recognised it as a virtio device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// The guest OS knows how to drive the device.
pub const STATUS_DRIVER: u8 = 2;
/// The driver is set up and ready to drive the device.
pub const STATUS_DRIVER_OK: u8 = 4;
/// The driver has acknowledged the features it understands; negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 8;
/// The device has hit an error it cannot recover from; the driver must reset it.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 64;
/// The driver has given up on the device.
pub const STATUS_FAILED: u8 = 128;

/// Reserved feature bits (spec 6, "Reserved Feature Bits").
/// Legacy: notify even when suppressed once the available ring is empty (not offered).
pub const VIRTIO_F_NOTIFY_ON_EMPTY: u64 = 1 << 24;
/// Legacy: the device makes no assumptions about message framing.
pub const VIRTIO_F_ANY_LAYOUT: u64 = 1 << 27;
/// Descriptors with `VIRTQ_DESC_F_INDIRECT` (2.7.5.3).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// `used_event` / `avail_event` notification suppression (2.7.7, 2.7.10).
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
/// Compliance with this specification (not the legacy interface).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// The device sits behind an IOMMU (not offered).
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
/// Packed virtqueue layout (2.8; offered with [`VirtioPciOptions::packed`]).
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;
/// Buffers used in the order they were made available (not offered).
pub const VIRTIO_F_IN_ORDER: u64 = 1 << 35;
/// Per-queue reset (not offered).
pub const VIRTIO_F_RING_RESET: u64 = 1 << 40;
/// Bits 24 to 41 belong to the transport and queue mechanisms: a device's own
/// [`VirtioDevice::device_features`] may use only [`VIRTIO_F_ANY_LAYOUT`] among them.
pub const TRANSPORT_FEATURES_MASK: u64 = ((1 << 42) - 1) & !((1 << 24) - 1);

/// What a device gets when the driver sets `DRIVER_OK`.
pub struct ActivateContext {
    /// The features the driver accepted (device and transport bits; `VIRTIO_F_VERSION_1` set
    /// unless the driver uses the legacy interface).
    pub features: u64,
    /// One queue per entry of [`VirtioDevice::queue_max_sizes`], in order.
    pub queues: Vec<Queue>,
    /// Signals queue and configuration interrupts, from any thread.
    pub interrupt: Interrupt,
    /// Bus-master access to guest RAM (the same handle the queues use).
    pub dma: Dma,
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("virtio queue {0} is required but the driver did not enable it")]
    QueueNotReady(u16),
    #[error("the feature set {0:#x} is not supported")]
    Features(u64),
    #[error("the device backend could not start")]
    Backend(#[source] std::io::Error),
}

/// A virtio device type (the part below the transport): rng now, blk/net/console/balloon next.
///
/// Threads: all methods run on the thread that accesses the transport (a vCPU), with the
/// transport's lock held. Work that blocks goes to the device's own threads, which get their
/// [`Queue`]s and [`Interrupt`] at [`Self::activate`].
pub trait VirtioDevice: Send {
    /// Virtio device ID ([`VIRTIO_ID_RNG`] etc.).
    fn device_type(&self) -> u16;

    /// Device-specific feature bits offered (bits 0-23 and from 42 up; of the transport's bits
    /// 24-41 only [`VIRTIO_F_ANY_LAYOUT`] is passed on). The transport adds
    /// [`VIRTIO_F_VERSION_1`], [`VIRTIO_F_INDIRECT_DESC`] and [`VIRTIO_F_EVENT_IDX`].
    fn device_features(&self) -> u64 {
        0
    }

    /// Called when the driver sets `FEATURES_OK` through the modern interface, with the
    /// features it accepted (always a subset of what was offered); `false` refuses them and the
    /// driver sees `FEATURES_OK` stay clear.
    fn accept_features(&mut self, _features: u64) -> bool {
        true
    }

    /// The maximum size of each queue (a power of two, 1-32768); its length is the number of
    /// queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// Bytes of device-specific configuration space (at most 4096).
    fn config_len(&self) -> usize {
        0
    }

    /// Reads `data.len()` bytes of the device configuration at `offset` (within
    /// [`Self::config_len`]; the transport checks bounds).
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    /// Writes `data` into the device configuration at `offset` (within [`Self::config_len`]).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    /// `DRIVER_OK`: the device starts with its queues. An error marks the device
    /// `DEVICE_NEEDS_RESET`.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;

    /// The driver notified queue `index` (only after a successful [`Self::activate`]).
    fn queue_notify(&mut self, index: u16);

    /// Device reset: drop the queues, stop workers, return to the power-on state.
    fn reset(&mut self);

    /// PCI class code (base << 16 | sub << 8 | prog-if); by default QEMU's choice for the type.
    fn pci_class(&self) -> u32 {
        default_pci_class(self.device_type())
    }
}

impl<T: VirtioDevice + ?Sized> VirtioDevice for Box<T> {
    fn device_type(&self) -> u16 {
        (**self).device_type()
    }
    fn device_features(&self) -> u64 {
        (**self).device_features()
    }
    fn accept_features(&mut self, features: u64) -> bool {
        (**self).accept_features(features)
    }
    fn queue_max_sizes(&self) -> &[u16] {
        (**self).queue_max_sizes()
    }
    fn config_len(&self) -> usize {
        (**self).config_len()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        (**self).write_config(offset, data)
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        (**self).activate(ctx)
    }
    fn queue_notify(&mut self, index: u16) {
        (**self).queue_notify(index)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn pci_class(&self) -> u32 {
        (**self).pci_class()
    }
}

/// The class code QEMU gives each virtio PCI device type: network/Ethernet, storage/SCSI,
/// communication/other, and "unclassified/other" for the rest.
pub fn default_pci_class(device_type: u16) -> u32 {
    match device_type {
        VIRTIO_ID_NET => 0x02_00_00,
        VIRTIO_ID_BLOCK | VIRTIO_ID_SCSI => 0x01_00_00,
        VIRTIO_ID_CONSOLE => 0x07_80_00,
        _ => 0x00_FF_00,
    }
}
