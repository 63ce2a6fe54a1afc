//! Virtio over PCI (virtio 1.2, 4.1): the modern interface through vendor-specific
//! capabilities in a memory BAR, the legacy interface in an I/O BAR (4.1.4, "Legacy
//! Interfaces: A Note on PCI Device Layout"), MSI-X or INTx.
//!
//! # Identity (4.1.2)
//! Vendor 0x1AF4. Transitional (legacy and modern, QEMU's default for a pc machine) and
//! legacy-only devices: the transitional device ID (0x1000 net, 0x1001 block, 0x1002 balloon,
//! 0x1003 console, 0x1004 SCSI, 0x1005 entropy, 0x1009 9P), revision 0, subsystem 0x1AF4:type.
//! Modern-only: device ID 0x1040 + type, revision 1, subsystem 0x1AF4:0x1100 (QEMU's).
//!
//! # BARs (QEMU's layout)
//! * BAR0, I/O, legacy interface (unless `disable_legacy`): the legacy header, then the
//!   device configuration (at 20, or 24 while MSI-X is enabled).
//! * BAR1, 4 KiB 32-bit memory: MSI-X table at 0, PBA at 0x800 (unless MSI-X is off).
//! * BAR4, 16 KiB 64-bit prefetchable memory (unless `disable_modern`): common configuration
//!   at 0x0000, ISR at 0x1000, device configuration at 0x2000, notifications at 0x3000 (queue
//!   `q` at 0x3000 + 4q: `queue_notify_off` = q, `notify_off_multiplier` = 4).
//!
//! # Capabilities (configuration space, in list order)
//! 0x40 common, 0x50 ISR, 0x60 device configuration (only if the device has one), 0x70 notify,
//! 0x84 PCI configuration access ("PCI configuration access capability"), 0x98 MSI-X. Legacy-only devices list only MSI-X.
//!
//! # Device status and negotiation (2.1, 3.1)
//! The driver's status bits accumulate until it writes 0, which resets the device: the device
//! model, every queue register, the features, ISR and the vector mapping (4.1.5.1.2), and
//! disarms every queue and interrupt handle given out. `FEATURES_OK` is refused (stays clear)
//! unless the driver accepted `VIRTIO_F_VERSION_1` and the device agrees. `DRIVER_OK` activates
//! the device: after `FEATURES_OK` with the modern layout, or without it through the legacy
//! interface (legacy drivers know no `FEATURES_OK`), where only feature bits 0-31 exist and
//! queues are placed by page frame number with the legacy layout (2.7.2, alignment 4096).
//! `VIRTIO_F_RING_PACKED` is offered only with [`VirtioPciOptions::packed`] and only through
//! the modern interface; once the driver accepted it, queue sizes need not be powers of two
//! and the three queue addresses are the descriptor ring and the driver and device event
//! suppression structures (2.8).
//! A modern `DRIVER_OK` without `FEATURES_OK`, or a device that fails to activate, is marked
//! `DEVICE_NEEDS_RESET`.
//!
//! # Access widths
//! Common configuration: reads of any width return the bytes of the structure; writes take
//! effect only with the field's natural width (32-bit halves or whole 64-bit addresses
//! included), others are dropped. Legacy header likewise. Device configuration: any width
//! within its length (the legacy layout note allows that), reads of the rest are 0. ISR: a read
//! covering its byte returns and clears it.
//!
//! Bus Master Enable is not enforced for virtio DMA (nor does QEMU's legacy path): the rings
//! live in guest RAM the driver handed over, and some firmware drivers never set it.

use super::interrupt::{Shared, VIRTIO_MSI_NO_VECTOR};
use super::queue::{Queue, QueueConfig, MAX_QUEUE_SIZE};
use super::{
    ActivateContext, Interrupt, VirtioDevice, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    TRANSPORT_FEATURES_MASK, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
    VIRTIO_F_VERSION_1,
};
use crate::pci::{BarKind, BarRegion, ConfigSpace, PciDevice, PciError, PciLink};
use std::sync::Arc;

mod state;
pub use state::{VirtioPciState, VirtioQueueState};

/// PCI vendor ID of every virtio device (4.1.2).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1AF4;
/// Modern device ID = this + device type.
pub const VIRTIO_PCI_MODERN_DEVICE_ID_BASE: u16 = 0x1040;
/// Subsystem ID of modern-only devices (QEMU's; 4.1.2.1 asks for 0x40 or more).
pub const VIRTIO_PCI_MODERN_SUBSYSTEM_ID: u16 = 0x1100;

/// Capability ID of a vendor-specific capability (PCI 3.0, appendix H).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` values of `struct virtio_pci_cap` (4.1.4).
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// Offsets within `struct virtio_pci_cap`: cap_len, cfg_type, bar, id, offset, length; then
/// `notify_off_multiplier` (notify) or `pci_cfg_data` (PCI configuration access).
pub const VIRTIO_PCI_CAP_LEN: u8 = 2;
pub const VIRTIO_PCI_CAP_CFG_TYPE: u8 = 3;
pub const VIRTIO_PCI_CAP_BAR: u8 = 4;
pub const VIRTIO_PCI_CAP_ID: u8 = 5;
pub const VIRTIO_PCI_CAP_OFFSET: u8 = 8;
pub const VIRTIO_PCI_CAP_LENGTH: u8 = 12;
pub const VIRTIO_PCI_CAP_EXTRA: u8 = 16;

/// Where the capabilities sit in configuration space.
pub const CAP_COMMON: u8 = 0x40;
pub const CAP_ISR: u8 = 0x50;
pub const CAP_DEVICE: u8 = 0x60;
pub const CAP_NOTIFY: u8 = 0x70;
pub const CAP_PCI_CFG: u8 = 0x84;
pub const CAP_MSIX: u8 = 0x98;

/// BAR numbers.
pub const LEGACY_BAR: usize = 0;
pub const MSIX_BAR: usize = 1;
pub const MODERN_BAR: usize = 4;
/// BAR sizes.
pub const MSIX_BAR_MIN_SIZE: u64 = 0x1000;
pub const MODERN_BAR_SIZE: u64 = 0x4000;
/// Regions in the modern BAR (each 4 KiB).
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
pub const ISR_CFG_OFFSET: u64 = 0x1000;
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
pub const NOTIFY_CFG_OFFSET: u64 = 0x3000;
pub const REGION_SIZE: u64 = 0x1000;
/// `notify_off_multiplier`: queue `q` is notified at `NOTIFY_CFG_OFFSET + 4 * q`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Most queues the notify region holds.
pub const MAX_QUEUES: usize = (REGION_SIZE / NOTIFY_OFF_MULTIPLIER as u64) as usize;

/// `struct virtio_pci_common_cfg` field offsets (4.1.4.3).
pub const COMMON_DFSELECT: u64 = 0x00;
pub const COMMON_DF: u64 = 0x04;
pub const COMMON_GFSELECT: u64 = 0x08;
pub const COMMON_GF: u64 = 0x0C;
pub const COMMON_MSIX: u64 = 0x10;
pub const COMMON_NUMQ: u64 = 0x12;
pub const COMMON_STATUS: u64 = 0x14;
pub const COMMON_CFGGENERATION: u64 = 0x15;
pub const COMMON_Q_SELECT: u64 = 0x16;
pub const COMMON_Q_SIZE: u64 = 0x18;
pub const COMMON_Q_MSIX: u64 = 0x1A;
pub const COMMON_Q_ENABLE: u64 = 0x1C;
pub const COMMON_Q_NOFF: u64 = 0x1E;
pub const COMMON_Q_DESCLO: u64 = 0x20;
pub const COMMON_Q_DESCHI: u64 = 0x24;
pub const COMMON_Q_AVAILLO: u64 = 0x28;
pub const COMMON_Q_AVAILHI: u64 = 0x2C;
pub const COMMON_Q_USEDLO: u64 = 0x30;
pub const COMMON_Q_USEDHI: u64 = 0x34;
pub const COMMON_Q_NDATA: u64 = 0x38;
pub const COMMON_Q_RESET: u64 = 0x3A;
/// Bytes of the structure (admin queue fields included, read as 0).
pub const COMMON_CFG_LEN: u64 = 0x40;

/// Legacy header offsets in BAR0 (4.1.4, "Legacy Interfaces: A Note on PCI Device Layout").
pub const LEGACY_HOST_FEATURES: u64 = 0;
pub const LEGACY_GUEST_FEATURES: u64 = 4;
pub const LEGACY_QUEUE_PFN: u64 = 8;
pub const LEGACY_QUEUE_NUM: u64 = 12;
pub const LEGACY_QUEUE_SEL: u64 = 14;
pub const LEGACY_QUEUE_NOTIFY: u64 = 16;
pub const LEGACY_STATUS: u64 = 18;
pub const LEGACY_ISR: u64 = 19;
/// Only while MSI-X is enabled.
pub const LEGACY_CONFIG_VECTOR: u64 = 20;
pub const LEGACY_QUEUE_VECTOR: u64 = 22;
/// Device configuration starts here without / with MSI-X enabled.
pub const LEGACY_CONFIG: u64 = 20;
pub const LEGACY_CONFIG_MSIX: u64 = 24;
/// Legacy queue placement: PFN in 4 KiB pages, rings aligned to 4 KiB (4.1.5.1.3.1).
pub const LEGACY_PFN_SHIFT: u32 = 12;
pub const LEGACY_QUEUE_ALIGN: u64 = 4096;

/// How the transport presents itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioPciOptions {
    /// No legacy I/O BAR (modern-only device ID and revision 1).
    pub disable_legacy: bool,
    /// No modern capabilities or BAR4 (legacy-only device).
    pub disable_modern: bool,
    /// MSI-X vectors (0: no MSI-X); `None` for one per queue plus one for configuration.
    pub msix_vectors: Option<u16>,
    /// Offer `VIRTIO_F_RING_PACKED` through the modern interface (QEMU's `packed=on`); the
    /// legacy interface never has it.
    pub packed: bool,
}

impl Default for VirtioPciOptions {
    /// QEMU's defaults on a pc machine: transitional, MSI-X with queues + 1 vectors.
    fn default() -> Self {
        VirtioPciOptions { disable_legacy: false, disable_modern: false, msix_vectors: None, packed: false }
    }
}

/// Why a transport could not be built (machine configuration errors, not guest input).
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("virtio-pci needs the legacy or the modern interface enabled")]
    NoInterface,
    #[error("virtio device type {0} has no transitional PCI device ID; set disable-legacy=on")]
    NoTransitionalId(u16),
    #[error("virtio device has {0} queues; 1 to {MAX_QUEUES} are supported")]
    QueueCount(usize),
    #[error("virtio queue {index} has maximum size {size}; a power of two up to 32768 is needed")]
    QueueSize { index: usize, size: u16 },
    #[error("virtio device configuration of {0} bytes is larger than 4096")]
    ConfigLen(usize),
    #[error("{0} MSI-X vectors requested; at most 2048 are supported")]
    MsixVectors(u16),
    #[error("building the virtio PCI configuration space failed")]
    Pci(#[source] PciError),
}

/// The transitional PCI device ID of a device type (4.1.2.1).
pub fn transitional_device_id(device_type: u16) -> Option<u16> {
    match device_type {
        super::VIRTIO_ID_NET => Some(0x1000),
        super::VIRTIO_ID_BLOCK => Some(0x1001),
        super::VIRTIO_ID_BALLOON => Some(0x1002),
        super::VIRTIO_ID_CONSOLE => Some(0x1003),
        super::VIRTIO_ID_SCSI => Some(0x1004),
        super::VIRTIO_ID_RNG => Some(0x1005),
        super::VIRTIO_ID_9P => Some(0x1009),
        _ => None,
    }
}

/// Queue registers as the driver programs them.
#[derive(Clone, Copy, Debug)]
struct QueueRegs {
    max: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
    /// Legacy queue address register (page frame number).
    pfn: u32,
}

impl QueueRegs {
    fn new(max: u16) -> Self {
        QueueRegs { max, size: max, enabled: false, desc: 0, driver: 0, device: 0, pfn: 0 }
    }
}

/// A virtio device on PCI. Keep it behind `Arc<Mutex<_>>` as the machine's
/// `SharedPciDevice`; BAR accesses come from vCPU threads.
pub struct VirtioPci<D: VirtioDevice> {
    cfg: ConfigSpace,
    device: D,
    opts: VirtioPciOptions,
    shared: Arc<Shared>,
    link: Option<PciLink>,
    device_type: u16,
    num_queues: usize,
    config_len: usize,
    msix_vectors: u16,
    legacy_bar_size: u64,
    /// Feature bits offered through the modern and the legacy interface.
    offered: u64,
    offered_legacy: u32,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueRegs>,
    activated: bool,
}

fn round_pow2(n: u64) -> u64 {
    n.max(1).next_power_of_two()
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// Wraps `device` with the interfaces `opts` asks for.
    pub fn new(device: D, opts: VirtioPciOptions) -> Result<Self, VirtioPciError> {
        if opts.disable_legacy && opts.disable_modern {
            return Err(VirtioPciError::NoInterface);
        }
        let device_type = device.device_type();
        let sizes = device.queue_max_sizes().to_vec();
        if sizes.is_empty() || sizes.len() > MAX_QUEUES {
            return Err(VirtioPciError::QueueCount(sizes.len()));
        }
        if let Some((index, &size)) =
            sizes.iter().enumerate().find(|(_, s)| !s.is_power_of_two() || **s > MAX_QUEUE_SIZE)
        {
            return Err(VirtioPciError::QueueSize { index, size });
        }
        let config_len = device.config_len();
        if config_len as u64 > REGION_SIZE {
            return Err(VirtioPciError::ConfigLen(config_len));
        }
        let msix_vectors = opts.msix_vectors.unwrap_or((sizes.len() + 1).min(2048) as u16);
        if msix_vectors > 2048 {
            return Err(VirtioPciError::MsixVectors(msix_vectors));
        }
        let legacy = !opts.disable_legacy;
        let modern = !opts.disable_modern;
        let (device_id, revision, subsystem) = if legacy {
            let id = transitional_device_id(device_type).ok_or(VirtioPciError::NoTransitionalId(device_type))?;
            (id, 0, device_type)
        } else {
            (VIRTIO_PCI_MODERN_DEVICE_ID_BASE + device_type, 1, VIRTIO_PCI_MODERN_SUBSYSTEM_ID)
        };
        let pci = VirtioPciError::Pci;
        let mut cfg = ConfigSpace::new(VIRTIO_PCI_VENDOR_ID, device_id, device.pci_class(), revision);
        cfg.set_subsystem(VIRTIO_PCI_VENDOR_ID, subsystem);
        cfg.set_interrupt_pin(1);
        let legacy_bar_size = round_pow2(LEGACY_CONFIG_MSIX + config_len as u64).max(32);
        if legacy {
            cfg.add_bar(LEGACY_BAR, BarKind::Io, legacy_bar_size).map_err(pci)?;
        }
        let mut msix = None;
        if msix_vectors > 0 {
            let table_len = u64::from(msix_vectors) * 16;
            let pba_offset = table_len.div_ceil(0x800) * 0x800;
            let bar_size = round_pow2(pba_offset + u64::from(msix_vectors).div_ceil(64) * 8).max(MSIX_BAR_MIN_SIZE);
            cfg.add_bar(MSIX_BAR, BarKind::Mem32 { prefetchable: false }, bar_size).map_err(pci)?;
            let table = cfg
                .add_msix_capability(CAP_MSIX, MSIX_BAR as u8, 0, MSIX_BAR as u8, pba_offset as u32, msix_vectors)
                .map_err(pci)?;
            msix = Some(table);
        }
        if modern {
            cfg.add_bar(MODERN_BAR, BarKind::Mem64 { prefetchable: true }, MODERN_BAR_SIZE).map_err(pci)?;
            // Added last to first: the list reads common, ISR, device, notify, PCI cfg, MSI-X.
            add_virtio_cap(&mut cfg, CAP_PCI_CFG, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20).map_err(pci)?;
            // The access window's bar, offset, length and data are the driver's to write.
            cfg.set_writable(usize::from(CAP_PCI_CFG + VIRTIO_PCI_CAP_BAR), &[0xFF]);
            cfg.set_writable(usize::from(CAP_PCI_CFG + VIRTIO_PCI_CAP_OFFSET), &[0xFF; 12]);
            add_virtio_cap(&mut cfg, CAP_NOTIFY, VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_CFG_OFFSET, REGION_SIZE, 20)
                .map_err(pci)?;
            cfg.set_u32(usize::from(CAP_NOTIFY + VIRTIO_PCI_CAP_EXTRA), NOTIFY_OFF_MULTIPLIER);
            if config_len > 0 {
                add_virtio_cap(&mut cfg, CAP_DEVICE, VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, config_len as u64, 16)
                    .map_err(pci)?;
            }
            add_virtio_cap(&mut cfg, CAP_ISR, VIRTIO_PCI_CAP_ISR_CFG, ISR_CFG_OFFSET, REGION_SIZE, 16).map_err(pci)?;
            add_virtio_cap(&mut cfg, CAP_COMMON, VIRTIO_PCI_CAP_COMMON_CFG, COMMON_CFG_OFFSET, REGION_SIZE, 16)
                .map_err(pci)?;
        }
        cfg.freeze_reset_state();

        let own = device.device_features() & !TRANSPORT_FEATURES_MASK;
        let transport = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
        // Packed rings exist only for modern drivers (a legacy one never sees bit 34).
        let packed = if opts.packed { VIRTIO_F_RING_PACKED } else { 0 };
        let modern_only = VIRTIO_F_VERSION_1 | packed;
        let offered = own | transport | if modern { modern_only } else { 0 };
        let offered_legacy = (own | transport | (device.device_features() & VIRTIO_F_ANY_LAYOUT)) as u32;
        let shared = Arc::new(Shared::new(sizes.len(), msix));
        Ok(VirtioPci {
            cfg,
            device,
            opts,
            shared,
            link: None,
            device_type,
            num_queues: sizes.len(),
            config_len,
            msix_vectors,
            legacy_bar_size,
            offered,
            offered_legacy,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queues: sizes.into_iter().map(QueueRegs::new).collect(),
            activated: false,
        })
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, mutably (the machine changing its configuration, tests).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The configuration header (tests, inspection).
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    /// The options the transport was built with.
    pub fn options(&self) -> VirtioPciOptions {
        self.opts
    }

    /// The virtio device type.
    pub fn device_type(&self) -> u16 {
        self.device_type
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u8 {
        let broken = if self.shared.needs_reset() { STATUS_DEVICE_NEEDS_RESET } else { 0 };
        self.status | broken
    }

    /// Whether the device is running (activated after `DRIVER_OK`).
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The features offered through the modern interface.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// The features the driver accepted so far.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn msix_enabled(&self) -> bool {
        self.shared.lock().msix.as_ref().is_some_and(|t| t.enabled())
    }

    fn selected(&self) -> Option<&QueueRegs> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn selected_mut(&mut self) -> Option<&mut QueueRegs> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// A vector the driver asked for, or NO_VECTOR if the table has no such entry (which the
    /// driver sees as a failed mapping, 4.1.5.1.2).
    fn valid_vector(&self, v: u16) -> u16 {
        if v < self.msix_vectors {
            v
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    fn set_queue_vector(&mut self, v: u16) {
        let v = self.valid_vector(v);
        let q = usize::from(self.queue_select);
        if let Some(slot) = self.shared.lock().queue_vectors.get_mut(q) {
            *slot = v;
        }
    }

    fn queue_vector(&self) -> u16 {
        let q = usize::from(self.queue_select);
        self.shared.lock().queue_vectors.get(q).copied().unwrap_or(VIRTIO_MSI_NO_VECTOR)
    }

    fn set_config_vector(&mut self, v: u16) {
        let v = self.valid_vector(v);
        self.shared.lock().config_vector = v;
    }

    fn config_vector(&self) -> u16 {
        self.shared.lock().config_vector
    }

    // ---- device status, reset, activation ----

    /// Device reset (status 0): 2.4, 4.1.4.3.1.
    fn virtio_reset(&mut self) {
        // Disarm the old activation's handles before the device joins its workers.
        self.shared.reset();
        self.device.reset();
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            *q = QueueRegs::new(q.max);
        }
        self.activated = false;
    }

    fn write_status(&mut self, value: u8, legacy: bool) {
        if value == 0 {
            self.virtio_reset();
            return;
        }
        let old = self.status;
        // Bits are only cleared by a reset; DEVICE_NEEDS_RESET is the device's to set.
        let mut new = old | (value & !STATUS_DEVICE_NEEDS_RESET);
        let rising = new & !old;
        if rising & STATUS_FEATURES_OK != 0 && !self.features_acceptable(legacy) {
            new &= !STATUS_FEATURES_OK;
        }
        self.status = new;
        if rising & STATUS_DRIVER_OK != 0 && !self.activated {
            self.activate(legacy);
        }
    }

    /// `FEATURES_OK` through the modern interface: `VIRTIO_F_VERSION_1` accepted and the device
    /// content. Through the legacy interface (which has no such bit) it is refused.
    fn features_acceptable(&mut self, legacy: bool) -> bool {
        if legacy || self.opts.disable_modern || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            return false;
        }
        self.device.accept_features(self.driver_features)
    }

    fn activate(&mut self, legacy: bool) {
        self.activate_at(legacy, &[]);
    }

    /// Activation with split-ring positions for the queues (`positions[i]` for queue `i`;
    /// missing or `None`: from the start), as a restore needs them.
    pub(super) fn activate_at(&mut self, legacy: bool, positions: &[Option<u16>]) {
        let epoch = self.shared.epoch();
        let interrupt = Interrupt::new(self.shared.clone(), epoch);
        let modern_ready = self.status & STATUS_FEATURES_OK != 0;
        let legacy_mode = !modern_ready && legacy && !self.opts.disable_legacy;
        let Some(link) = &self.link else {
            self.shared.set_needs_reset(epoch);
            return;
        };
        if !modern_ready && !legacy_mode {
            // A modern driver skipped feature negotiation.
            self.shared.set_needs_reset(epoch);
            return;
        }
        let features = if legacy_mode { self.driver_features & 0xFFFF_FFFF } else { self.driver_features };
        let dma = link.dma.clone();
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let cfg = QueueConfig {
                    size: if legacy_mode { q.max } else { q.size },
                    ready: q.enabled,
                    desc_table: q.desc,
                    avail_ring: q.driver,
                    used_ring: q.device,
                };
                let mut queue = Queue::new(i as u16, cfg, features, dma.clone(), interrupt.clone());
                if let Some(&Some(index)) = positions.get(i) {
                    queue.set_split_position(index);
                }
                queue
            })
            .collect();
        let ctx = ActivateContext { features, queues, interrupt, dma };
        match self.device.activate(ctx) {
            Ok(()) => self.activated = true,
            Err(_) => self.shared.set_needs_reset(epoch),
        }
    }

    fn notify_queue(&mut self, index: u64) {
        if self.activated && (index as usize) < self.num_queues {
            self.device.queue_notify(index as u16);
        }
    }

    // ---- modern interface (BAR4) ----

    fn common_bytes(&self) -> [u8; COMMON_CFG_LEN as usize] {
        let mut b = [0u8; COMMON_CFG_LEN as usize];
        let mut put = |off: u64, v: &[u8]| b[off as usize..off as usize + v.len()].copy_from_slice(v);
        let word = |f: u64, sel: u32| if sel < 2 { (f >> (32 * sel)) as u32 } else { 0 };
        put(COMMON_DFSELECT, &self.device_feature_select.to_le_bytes());
        put(COMMON_DF, &word(self.offered, self.device_feature_select).to_le_bytes());
        put(COMMON_GFSELECT, &self.driver_feature_select.to_le_bytes());
        put(COMMON_GF, &word(self.driver_features, self.driver_feature_select).to_le_bytes());
        put(COMMON_MSIX, &self.config_vector().to_le_bytes());
        put(COMMON_NUMQ, &(self.num_queues as u16).to_le_bytes());
        put(COMMON_STATUS, &[self.status(), self.config_generation]);
        put(COMMON_Q_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            put(COMMON_Q_SIZE, &q.size.to_le_bytes());
            put(COMMON_Q_MSIX, &self.queue_vector().to_le_bytes());
            put(COMMON_Q_ENABLE, &u16::from(q.enabled).to_le_bytes());
            put(COMMON_Q_NOFF, &self.queue_select.to_le_bytes());
            put(COMMON_Q_DESCLO, &q.desc.to_le_bytes());
            put(COMMON_Q_AVAILLO, &q.driver.to_le_bytes());
            put(COMMON_Q_USEDLO, &q.device.to_le_bytes());
            put(COMMON_Q_NDATA, &self.queue_select.to_le_bytes());
        }
        b
    }

    fn common_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let b = self.common_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            if let Some(v) = b.get(offset as usize + i) {
                *d = *v;
            }
        }
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let mut raw = [0u8; 8];
        raw[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(raw);
        match (offset, data.len()) {
            (COMMON_DFSELECT, 4) => self.device_feature_select = v as u32,
            (COMMON_GFSELECT, 4) => self.driver_feature_select = v as u32,
            (COMMON_GF, 4) => self.write_driver_features(v as u32),
            (COMMON_MSIX, 2) => self.set_config_vector(v as u16),
            (COMMON_STATUS, 1) => self.write_status(v as u8, false),
            (COMMON_Q_SELECT, 2) => self.queue_select = v as u16,
            (COMMON_Q_SIZE, 2) => {
                // Packed queue sizes need not be powers of two (2.8.10.1).
                let packed = self.driver_features & VIRTIO_F_RING_PACKED != 0;
                if let Some(q) = self.selected_mut() {
                    let size = v as u16;
                    if !q.enabled && (size.is_power_of_two() || (packed && size > 0)) && size <= q.max {
                        q.size = size;
                    }
                }
            }
            (COMMON_Q_MSIX, 2) => self.set_queue_vector(v as u16),
            (COMMON_Q_ENABLE, 2) => {
                // Writing 0 is forbidden to drivers (4.1.4.3.2) and ignored.
                if let Some(q) = self.selected_mut() {
                    if v == 1 {
                        q.enabled = true;
                    }
                }
            }
            (COMMON_Q_DESCLO..=COMMON_Q_USEDHI, 4 | 8) => {
                let Some(q) = self.selected_mut() else { return };
                if q.enabled {
                    return;
                }
                let field = match offset & !7 {
                    COMMON_Q_DESCLO => &mut q.desc,
                    COMMON_Q_AVAILLO => &mut q.driver,
                    _ => &mut q.device,
                };
                match (offset & 7, data.len()) {
                    (0, 8) => *field = v,
                    (0, 4) => *field = (*field & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF),
                    (4, 4) => *field = (*field & 0xFFFF_FFFF) | (v << 32),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The driver's feature word for the selected half; bits not offered are dropped, and
    /// nothing changes once `FEATURES_OK` is set.
    fn write_driver_features(&mut self, word: u32) {
        let sel = self.driver_feature_select;
        if sel >= 2 || self.status & STATUS_FEATURES_OK != 0 {
            return;
        }
        let shift = 32 * sel;
        let mask = 0xFFFF_FFFFu64 << shift;
        let accepted = (u64::from(word) << shift) & self.offered;
        self.driver_features = (self.driver_features & !mask) | accepted;
    }

    fn device_config_read(&mut self, offset: u64, data: &mut [u8]) {
        if self.shared.take_config_changed() {
            self.config_generation = self.config_generation.wrapping_add(1);
        }
        data.fill(0);
        if offset.checked_add(data.len() as u64).is_some_and(|end| end <= self.config_len as u64) {
            self.device.read_config(offset, data);
        }
    }

    fn device_config_write(&mut self, offset: u64, data: &[u8]) {
        if offset.checked_add(data.len() as u64).is_some_and(|end| end <= self.config_len as u64) {
            self.device.write_config(offset, data);
        }
    }

    fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        let (region, off) = (offset & !(REGION_SIZE - 1), offset & (REGION_SIZE - 1));
        match region {
            COMMON_CFG_OFFSET => self.common_read(off, data),
            ISR_CFG_OFFSET => {
                data.fill(0);
                if off == 0 {
                    data[0] = self.shared.take_isr();
                }
            }
            DEVICE_CFG_OFFSET => self.device_config_read(off, data),
            _ => data.fill(0),
        }
    }

    fn modern_write(&mut self, offset: u64, data: &[u8]) {
        let (region, off) = (offset & !(REGION_SIZE - 1), offset & (REGION_SIZE - 1));
        match region {
            COMMON_CFG_OFFSET => self.common_write(off, data),
            DEVICE_CFG_OFFSET => self.device_config_write(off, data),
            NOTIFY_CFG_OFFSET if off.is_multiple_of(u64::from(NOTIFY_OFF_MULTIPLIER)) => {
                self.notify_queue(off / u64::from(NOTIFY_OFF_MULTIPLIER));
            }
            _ => {}
        }
    }

    // ---- legacy interface (BAR0) ----

    fn legacy_config_base(&self) -> u64 {
        if self.msix_enabled() {
            LEGACY_CONFIG_MSIX
        } else {
            LEGACY_CONFIG
        }
    }

    fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let base = self.legacy_config_base();
        if offset >= base {
            self.device_config_read(offset - base, data);
            return;
        }
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.offered_legacy.to_le_bytes());
        b[4..8].copy_from_slice(&(self.driver_features as u32).to_le_bytes());
        if let Some(q) = self.selected() {
            b[8..12].copy_from_slice(&q.pfn.to_le_bytes());
            b[12..14].copy_from_slice(&q.max.to_le_bytes());
        }
        b[14..16].copy_from_slice(&self.queue_select.to_le_bytes());
        b[18] = self.status();
        let end = offset + data.len() as u64;
        if offset <= LEGACY_ISR && LEGACY_ISR < end {
            b[LEGACY_ISR as usize] = self.shared.take_isr();
        }
        if base == LEGACY_CONFIG_MSIX {
            b[20..22].copy_from_slice(&self.config_vector().to_le_bytes());
            b[22..24].copy_from_slice(&self.queue_vector().to_le_bytes());
        }
        for (i, d) in data.iter_mut().enumerate() {
            let o = offset as usize + i;
            if (o as u64) < base {
                *d = b[o];
            }
        }
    }

    fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        let base = self.legacy_config_base();
        if offset >= base {
            self.device_config_write(offset - base, data);
            return;
        }
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(raw);
        match (offset, data.len()) {
            (LEGACY_GUEST_FEATURES, 4) if self.status & STATUS_DRIVER_OK == 0 => {
                self.driver_features = u64::from(v & self.offered_legacy);
            }
            (LEGACY_QUEUE_PFN, 4) => self.legacy_set_pfn(v),
            (LEGACY_QUEUE_SEL, 2) => self.queue_select = v as u16,
            (LEGACY_QUEUE_NOTIFY, 2) => self.notify_queue(u64::from(v as u16)),
            (LEGACY_STATUS, 1) => self.write_status(v as u8, true),
            (LEGACY_CONFIG_VECTOR, 2) if base == LEGACY_CONFIG_MSIX => self.set_config_vector(v as u16),
            (LEGACY_QUEUE_VECTOR, 2) if base == LEGACY_CONFIG_MSIX => self.set_queue_vector(v as u16),
            _ => {}
        }
    }

    /// Legacy queue address: the rings at `pfn * 4096` in the legacy layout (2.7.2); 0 takes
    /// the queue away.
    fn legacy_set_pfn(&mut self, pfn: u32) {
        let Some(q) = self.selected_mut() else { return };
        q.pfn = pfn;
        if pfn == 0 {
            *q = QueueRegs::new(q.max);
            return;
        }
        let size = u64::from(q.max);
        let base = u64::from(pfn) << LEGACY_PFN_SHIFT;
        q.size = q.max;
        q.desc = base;
        q.driver = base + 16 * size;
        q.device = (q.driver + 6 + 2 * size).div_ceil(LEGACY_QUEUE_ALIGN) * LEGACY_QUEUE_ALIGN;
        q.enabled = true;
    }

    // ---- PCI configuration access capability (4.1.4, "PCI configuration access capability") ----

    fn pci_cfg_window(&self) -> Option<(usize, u64, usize)> {
        if self.opts.disable_modern {
            return None;
        }
        let c = usize::from(CAP_PCI_CFG);
        let bar = usize::from(self.cfg.u8(c + usize::from(VIRTIO_PCI_CAP_BAR)));
        let offset = u64::from(self.cfg.u32(c + usize::from(VIRTIO_PCI_CAP_OFFSET)));
        let len = self.cfg.u32(c + usize::from(VIRTIO_PCI_CAP_LENGTH)) as usize;
        let fits = offset.checked_add(len as u64).is_some_and(|end| end <= MODERN_BAR_SIZE);
        (bar == MODERN_BAR && matches!(len, 1 | 2 | 4) && offset.is_multiple_of(len as u64) && fits)
            .then_some((bar, offset, len))
    }

    fn touches_pci_cfg_data(&self, offset: u8, size: u8) -> bool {
        let start = CAP_PCI_CFG + VIRTIO_PCI_CAP_EXTRA;
        !self.opts.disable_modern && offset < start + 4 && start < offset.saturating_add(size)
    }

    fn sync_irq(&mut self) {
        self.shared.lock().sync_config(&self.cfg);
    }
}

/// Adds a `struct virtio_pci_cap` of `len` bytes at `at` pointing into the modern BAR.
fn add_virtio_cap(cfg: &mut ConfigSpace, at: u8, cfg_type: u8, offset: u64, length: u64, len: u8) -> Result<(), PciError> {
    cfg.add_capability(at, PCI_CAP_ID_VNDR)?;
    let o = usize::from(at);
    cfg.set_u8(o + usize::from(VIRTIO_PCI_CAP_LEN), len);
    cfg.set_u8(o + usize::from(VIRTIO_PCI_CAP_CFG_TYPE), cfg_type);
    cfg.set_u8(o + usize::from(VIRTIO_PCI_CAP_BAR), MODERN_BAR as u8);
    cfg.set_u8(o + usize::from(VIRTIO_PCI_CAP_ID), 0);
    cfg.set_u32(o + usize::from(VIRTIO_PCI_CAP_OFFSET), offset as u32);
    cfg.set_u32(o + usize::from(VIRTIO_PCI_CAP_LENGTH), length as u32);
    Ok(())
}

impl<D: VirtioDevice + 'static> PciDevice for VirtioPci<D> {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        if self.touches_pci_cfg_data(offset, size) {
            if let Some((bar, off, len)) = self.pci_cfg_window() {
                let mut buf = [0u8; 4];
                self.bar_read(bar, off, &mut buf[..len]);
                let data = usize::from(CAP_PCI_CFG + VIRTIO_PCI_CAP_EXTRA);
                self.cfg.set_u32(data, u32::from_le_bytes(buf));
            }
        }
        let pending = self.shared.lock().intx_pending();
        self.cfg.set_interrupt_status(pending);
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        if self.touches_pci_cfg_data(offset, size) {
            if let Some((bar, off, len)) = self.pci_cfg_window() {
                let data = self.cfg.u32(usize::from(CAP_PCI_CFG + VIRTIO_PCI_CAP_EXTRA)).to_le_bytes();
                self.bar_write(bar, off, &data[..len]);
            }
        }
        // Interrupt Disable, MSI-X Enable or Function Mask may have changed.
        self.sync_irq();
    }

    fn bar(&self, index: usize) -> Option<BarRegion> {
        self.cfg.bar_region(index)
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match index {
            LEGACY_BAR if !self.opts.disable_legacy && offset < self.legacy_bar_size => self.legacy_read(offset, data),
            MSIX_BAR if self.msix_vectors > 0 => {
                let s = self.shared.lock();
                if !s.msix.as_ref().is_some_and(|t| t.bar_read(index, offset, data)) {
                    data.fill(0);
                }
            }
            MODERN_BAR if !self.opts.disable_modern && offset < MODERN_BAR_SIZE => self.modern_read(offset, data),
            _ => data.fill(0xFF),
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        match index {
            LEGACY_BAR if !self.opts.disable_legacy && offset < self.legacy_bar_size => self.legacy_write(offset, data),
            MSIX_BAR if self.msix_vectors > 0 => {
                let mut s = self.shared.lock();
                let sink = s.sink();
                if let Some(t) = s.msix.as_mut() {
                    t.bar_write(index, offset, data, &*sink);
                }
            }
            MODERN_BAR if !self.opts.disable_modern && offset < MODERN_BAR_SIZE => self.modern_write(offset, data),
            _ => {}
        }
    }

    fn attach(&mut self, link: PciLink) {
        self.shared.attach(link.intx.clone(), link.msi.clone());
        self.link = Some(link);
        self.sync_irq();
    }

    fn reset(&mut self) {
        self.cfg.reset();
        {
            let mut s = self.shared.lock();
            if let Some(t) = s.msix.as_mut() {
                t.reset();
            }
        }
        self.virtio_reset();
        self.sync_irq();
    }
}
