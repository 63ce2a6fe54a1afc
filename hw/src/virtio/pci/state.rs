//! Saved state of the virtio PCI transport (snapshots and migration): configuration space
//! and MSI-X table, feature selectors and negotiated features, device status and config
//! generation, every queue's registers and MSI-X vector, the config vector, ISR and the
//! needs-reset/config-changed flags, whether the device was activated, and for an active
//! device each split ring's position.
//!
//! Preconditions and limits, for the machine:
//! - Save with the vCPUs stopped and the device quiesced: every descriptor chain the device
//!   took from a ring has been returned to the used ring, or is held in ring order (a
//!   balloon statistics buffer). A ring's position is then the used index in guest memory,
//!   which the save reads; after restore the device takes up again from there, taking held
//!   chains a second time, as QEMU's rewind to the used index does.
//! - Restore runs on a freshly built, plugged-in transport (its link attached) after guest
//!   RAM has been restored. An active device is re-activated inside `restore`, through the
//!   same [`super::VirtioDevice::activate`] a driver's DRIVER_OK reaches: its workers start
//!   on queues positioned as saved. The machine does nothing more.
//! - Packed rings of an active device are refused (their positions and wrap counters are
//!   not carried yet). Device-specific state behind the transport (virtio-net filters and
//!   MAC table, balloon target/actual, console port state, blk writeback mode) is not part
//!   of this section: each device saves its own, which the machine loads first, so that the
//!   re-activation here starts the device with it.

use super::super::interrupt::{VIRTIO_ISR_CONFIG, VIRTIO_ISR_QUEUE, VIRTIO_MSI_NO_VECTOR};
use super::super::queue::MAX_QUEUE_SIZE;
use super::*;
use crate::pci::{MsixState, PciConfigState};
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioQueueState {
    pub size: u16,
    pub enabled: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// Legacy QUEUE_PFN as written.
    pub legacy_pfn: u32,
    pub msix_vector: u16,
    /// Split ring of an active device: the used index in guest memory at save time, where
    /// the device takes up again. `None` for inactive queues, packed rings, or an unreadable
    /// ring.
    pub used_index: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioPciState {
    pub config: PciConfigState,
    pub msix: Option<MsixState>,
    /// Identifies the device behind the transport.
    pub device_type: u16,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    /// Device status as written by the driver (DEVICE_NEEDS_RESET is `needs_reset`).
    pub status: u8,
    pub config_generation: u8,
    pub queue_select: u16,
    pub queues: Vec<VirtioQueueState>,
    pub config_vector: u16,
    pub isr: u8,
    pub needs_reset: bool,
    /// The device configuration changed since the driver last read it.
    pub config_changed: bool,
    /// DRIVER_OK reached the device and it accepted the activation.
    pub activated: bool,
}

impl<D: VirtioDevice> Persist for VirtioPci<D> {
    const SECTION: &'static str = "virtio-pci";
    const VERSION: u32 = 1;
    type State = VirtioPciState;

    /// See the module documentation: quiesce first.
    fn save(&self) -> VirtioPciState {
        let irq = self.shared.lock();
        let (needs_reset, config_changed) = self.shared.flags();
        let split = self.driver_features & VIRTIO_F_RING_PACKED == 0;
        let used_index = |q: &QueueRegs| {
            let link = self.link.as_ref().filter(|_| self.activated && q.enabled && split)?;
            let mut b = [0u8; 2];
            link.dma.read(q.device.checked_add(2)?, &mut b).ok()?;
            Some(u16::from_le_bytes(b))
        };
        VirtioPciState {
            config: self.cfg.save_state(),
            msix: irq.msix.as_ref().map(|t| t.save_state()),
            device_type: self.device_type,
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            status: self.status,
            config_generation: self.config_generation,
            queue_select: self.queue_select,
            queues: self
                .queues
                .iter()
                .enumerate()
                .map(|(i, q)| VirtioQueueState {
                    size: q.size,
                    enabled: q.enabled,
                    desc_table: q.desc,
                    avail_ring: q.driver,
                    used_ring: q.device,
                    legacy_pfn: q.pfn,
                    msix_vector: irq.queue_vectors.get(i).copied().unwrap_or(VIRTIO_MSI_NO_VECTOR),
                    used_index: used_index(q),
                })
                .collect(),
            config_vector: irq.config_vector,
            isr: irq.isr,
            needs_reset,
            config_changed,
            activated: self.activated,
        }
    }

    fn restore(&mut self, s: VirtioPciState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        if s.device_type != self.device_type {
            return Err(RestoreError::invalid("device_type", format!("saved for virtio device type {}, this one is {}", s.device_type, self.device_type)));
        }
        if s.queues.len() != self.queues.len() {
            return Err(RestoreError::invalid("queues", format!("{} queues, this device has {}", s.queues.len(), self.queues.len())));
        }
        let packed = s.driver_features & VIRTIO_F_RING_PACKED != 0;
        let vector_ok = |v: u16| v == VIRTIO_MSI_NO_VECTOR || v < self.msix_vectors;
        for (q, regs) in s.queues.iter().zip(&self.queues) {
            check_max("queues.size", q.size, regs.max.min(MAX_QUEUE_SIZE))?;
            if q.size == 0 || !(packed || q.size.is_power_of_two()) {
                return Err(RestoreError::invalid("queues.size", format!("{} is not a valid ring size", q.size)));
            }
            if !vector_ok(q.msix_vector) {
                return Err(RestoreError::invalid("queues.msix_vector", format!("vector {} of {}", q.msix_vector, self.msix_vectors)));
            }
        }
        if !vector_ok(s.config_vector) {
            return Err(RestoreError::invalid("config_vector", format!("vector {} of {}", s.config_vector, self.msix_vectors)));
        }
        let offered = self.offered | u64::from(self.offered_legacy);
        if s.driver_features & !offered != 0 {
            return Err(RestoreError::invalid("driver_features", format!("{:#x} includes features never offered ({offered:#x})", s.driver_features)));
        }
        if s.status & STATUS_DEVICE_NEEDS_RESET != 0 {
            return Err(RestoreError::invalid("status", "DEVICE_NEEDS_RESET is carried by needs_reset"));
        }
        if s.activated && s.status & STATUS_DRIVER_OK == 0 {
            return Err(RestoreError::invalid("activated", "an activated device without DRIVER_OK"));
        }
        if s.activated && packed {
            return Err(RestoreError::invalid("driver_features", "an active device on packed rings (their positions are not carried yet)"));
        }
        check_max("isr", s.isr, VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG)?;
        {
            let irq = self.shared.lock();
            match (&irq.msix, &s.msix) {
                (Some(t), Some(m)) => t.check_state(m)?,
                (None, None) => {}
                _ => return Err(RestoreError::invalid("msix", "saved with a different MSI-X configuration")),
            }
        }

        if self.activated {
            self.virtio_reset();
        }
        self.cfg.restore_state(&s.config);
        self.device_feature_select = s.device_feature_select;
        self.driver_feature_select = s.driver_feature_select;
        self.driver_features = s.driver_features;
        self.status = s.status;
        self.config_generation = s.config_generation;
        self.queue_select = s.queue_select;
        for (regs, q) in self.queues.iter_mut().zip(&s.queues) {
            *regs = QueueRegs {
                max: regs.max,
                size: q.size,
                enabled: q.enabled,
                desc: q.desc_table,
                driver: q.avail_ring,
                device: q.used_ring,
                pfn: q.legacy_pfn,
            };
        }
        {
            let mut irq = self.shared.lock();
            if let (Some(t), Some(m)) = (irq.msix.as_mut(), &s.msix) {
                t.restore_state(m);
            }
            for (v, q) in irq.queue_vectors.iter_mut().zip(&s.queues) {
                *v = q.msix_vector;
            }
            irq.config_vector = s.config_vector;
            irq.isr = s.isr;
            irq.intx_disabled = self.cfg.intx_disabled();
        }
        if s.activated {
            let positions: Vec<Option<u16>> = s.queues.iter().map(|q| q.used_index).collect();
            let legacy = self.status & STATUS_FEATURES_OK == 0;
            self.activate_at(legacy, &positions);
        }
        let (activation_failed, _) = self.shared.flags();
        self.shared.restore_flags(s.needs_reset || activation_failed, s.config_changed);
        self.shared.lock().redrive_intx();
        Ok(())
    }
}
