//! Interrupt state shared between the transport (vCPU threads) and a device's workers.
//!
//! Used buffer and configuration change notifications (virtio 1.2, 4.1.5.3 and 4.1.5.4): with
//! MSI-X enabled, the message of the queue's (or the configuration's) vector goes out unless
//! the vector is `VIRTIO_MSI_NO_VECTOR`; without MSI-X, the ISR status bit is set (bit 0 for a
//! queue, bit 1 for the configuration) and INTx is held asserted while ISR is non-zero and
//! Interrupt Disable is clear; reading ISR clears it (4.1.4.5). The configuration bit is set
//! whatever the MSI-X state ("before sending a device configuration change notification").
//!
//! Everything a worker thread needs lives here, behind one small lock that never calls back
//! into the transport: the ISR byte, the MSI-X table and the vector assignments, the INTx
//! line, plus atomics for `DEVICE_NEEDS_RESET`, "configuration changed" and the activation
//! epoch. A reset bumps the epoch, which disarms every [`Interrupt`] (and, through it, every
//! [`super::Queue`]) handed out before.

use crate::pci::{ConfigSpace, MsiSink, MsixTable, NoMsi};
use crate::IrqLine;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// `queue_msix_vector` / `config_msix_vector` value for "no vector" (4.1.5.1.2).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;
/// ISR status bit 0: a queue has used buffers.
pub const VIRTIO_ISR_QUEUE: u8 = 1;
/// ISR status bit 1: the device configuration changed.
pub const VIRTIO_ISR_CONFIG: u8 = 2;

pub(crate) struct IrqState {
    pub(crate) isr: u8,
    pub(crate) msix: Option<MsixTable>,
    pub(crate) queue_vectors: Vec<u16>,
    pub(crate) config_vector: u16,
    /// Command register bit 10, mirrored after every configuration write.
    pub(crate) intx_disabled: bool,
    intx_out: bool,
    intx: Option<Arc<dyn IrqLine + Send + Sync>>,
    msi: Option<Arc<dyn MsiSink>>,
}

impl IrqState {
    fn msix_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(|t| t.enabled())
    }

    /// Whether INTx is pending: ISR non-zero and MSI-X off (the PCI status bit 3).
    pub(crate) fn intx_pending(&self) -> bool {
        self.isr != 0 && !self.msix_enabled()
    }

    /// Re-drives INTx: asserted while pending and not disabled by the command register.
    pub(crate) fn update_intx(&mut self) {
        let level = self.intx_pending() && !self.intx_disabled;
        if level != self.intx_out {
            self.intx_out = level;
            if let Some(line) = &self.intx {
                line.set_level(level);
            }
        }
    }

    fn send_vector(&mut self, vector: u16) {
        let sink: &dyn MsiSink = match &self.msi {
            Some(s) => &**s,
            None => &NoMsi,
        };
        if let Some(t) = self.msix.as_mut() {
            if vector != VIRTIO_MSI_NO_VECTOR {
                t.notify(usize::from(vector), sink);
            }
        }
    }

    fn signal_queue(&mut self, index: u16) {
        if self.msix_enabled() {
            let vector = self.queue_vectors.get(usize::from(index)).copied().unwrap_or(VIRTIO_MSI_NO_VECTOR);
            self.send_vector(vector);
        } else {
            self.isr |= VIRTIO_ISR_QUEUE;
            self.update_intx();
        }
    }

    fn signal_config(&mut self) {
        self.isr |= VIRTIO_ISR_CONFIG;
        if self.msix_enabled() {
            self.send_vector(self.config_vector);
        } else {
            self.update_intx();
        }
    }

    /// Takes Enable and Function Mask from `cfg`'s MSI-X capability and Interrupt Disable from
    /// its command register, sends pending vectors that became deliverable and re-drives INTx.
    pub(crate) fn sync_config(&mut self, cfg: &ConfigSpace) {
        self.intx_disabled = cfg.intx_disabled();
        let sink: Arc<dyn MsiSink> = self.msi.clone().unwrap_or_else(|| Arc::new(NoMsi));
        if let Some(t) = self.msix.as_mut() {
            t.sync_control(cfg, &*sink);
        }
        self.update_intx();
    }

    /// Drives INTx to the level the state implies, whatever was driven before (restore).
    pub(crate) fn redrive_intx(&mut self) {
        self.intx_out = self.intx_pending() && !self.intx_disabled;
        if let Some(line) = &self.intx {
            line.set_level(self.intx_out);
        }
    }

    /// The MSI sink (or one that drops messages before the function is attached).
    pub(crate) fn sink(&self) -> Arc<dyn MsiSink> {
        self.msi.clone().unwrap_or_else(|| Arc::new(NoMsi))
    }
}

/// The state behind every [`Interrupt`] of one transport.
pub(crate) struct Shared {
    state: Mutex<IrqState>,
    epoch: AtomicU64,
    needs_reset: AtomicBool,
    config_changed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(queues: usize, msix: Option<MsixTable>) -> Self {
        Shared {
            state: Mutex::new(IrqState {
                isr: 0,
                msix,
                queue_vectors: vec![VIRTIO_MSI_NO_VECTOR; queues],
                config_vector: VIRTIO_MSI_NO_VECTOR,
                intx_disabled: false,
                intx_out: false,
                intx: None,
                msi: None,
            }),
            epoch: AtomicU64::new(0),
            needs_reset: AtomicBool::new(false),
            config_changed: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn attach(&self, intx: Arc<dyn IrqLine + Send + Sync>, msi: Arc<dyn MsiSink>) {
        let mut s = self.lock();
        s.intx = Some(intx);
        s.msi = Some(msi);
        s.intx_out = false;
        s.update_intx();
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Device reset: disarms the handles of the previous activation, clears ISR (dropping
    /// INTx), unmaps every vector (4.1.5.1.2: "all queue and configuration change events are
    /// unmapped upon reset") and the error and change flags. The MSI-X table itself is PCI
    /// state and stays.
    pub(crate) fn reset(&self) {
        let mut s = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        s.isr = 0;
        s.queue_vectors.fill(VIRTIO_MSI_NO_VECTOR);
        s.config_vector = VIRTIO_MSI_NO_VECTOR;
        s.update_intx();
        self.needs_reset.store(false, Ordering::Release);
        self.config_changed.store(false, Ordering::Release);
    }

    pub(crate) fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }

    /// (needs reset, configuration changed since the driver last read it), for saving.
    pub(crate) fn flags(&self) -> (bool, bool) {
        (self.needs_reset.load(Ordering::Acquire), self.config_changed.load(Ordering::Acquire))
    }

    pub(crate) fn restore_flags(&self, needs_reset: bool, config_changed: bool) {
        self.needs_reset.store(needs_reset, Ordering::Release);
        self.config_changed.store(config_changed, Ordering::Release);
    }

    /// Whether the configuration changed since the last call (for `config_generation`).
    pub(crate) fn take_config_changed(&self) -> bool {
        self.config_changed.swap(false, Ordering::AcqRel)
    }

    /// Reads and clears ISR, deasserting INTx.
    pub(crate) fn take_isr(&self) -> u8 {
        let mut s = self.lock();
        let v = std::mem::take(&mut s.isr);
        s.update_intx();
        v
    }

    /// Marks the device broken (transport side, e.g. a failed activation).
    pub(crate) fn set_needs_reset(&self, epoch: u64) {
        let mut s = self.lock();
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.needs_reset.store(true, Ordering::Release);
            self.config_changed.store(true, Ordering::Release);
            s.signal_config();
        }
    }
}

/// A device's interrupt handle: `Send + Sync + Clone`, usable from any thread. Handles from
/// before a device reset do nothing.
#[derive(Clone)]
pub struct Interrupt {
    shared: Arc<Shared>,
    epoch: u64,
}

impl Interrupt {
    pub(crate) fn new(shared: Arc<Shared>, epoch: u64) -> Self {
        Interrupt { shared, epoch }
    }

    /// Whether this handle belongs to the current activation (no reset since).
    pub fn is_active(&self) -> bool {
        self.shared.epoch() == self.epoch
    }

    /// Signals used buffers in queue `index` unconditionally (no suppression check; use
    /// [`super::Queue::notify`] for that): its MSI-X vector, or ISR bit 0 and INTx.
    pub fn signal_queue(&self, index: u16) {
        let mut s = self.shared.lock();
        if self.is_active() {
            s.signal_queue(index);
        }
    }

    /// Signals a device configuration change: `config_generation` will move, ISR bit 1 is set
    /// and the configuration vector (or INTx) fires.
    pub fn signal_config(&self) {
        let mut s = self.shared.lock();
        if self.is_active() {
            self.shared.config_changed.store(true, Ordering::Release);
            s.signal_config();
        }
    }

    /// The device hit an error it cannot recover from (a malformed ring): sets
    /// `DEVICE_NEEDS_RESET` in the device status and signals a configuration change (2.1.2).
    pub fn set_needs_reset(&self) {
        self.shared.set_needs_reset(self.epoch);
    }

    /// Whether the device is marked `DEVICE_NEEDS_RESET`.
    pub fn needs_reset(&self) -> bool {
        self.is_active() && self.shared.needs_reset()
    }
}
