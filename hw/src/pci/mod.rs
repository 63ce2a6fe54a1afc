//! PCI: configuration mechanism #1, the device trait, bus 0, and the i440FX/PIIX3 chipset
//! functions (PCI Local Bus Specification 3.0; Intel 82441FX/82442FX and 82371SB datasheets).
//!
//! # Wiring (what the machine does)
//! * Build a [`PciBus`], add the [`I440fx`] at 00.0 and the [`Piix3`] at 01.0 (plus other
//!   devices), wrap it in a [`PciHost`] and map that at ports [`PCI_CONFIG_ADDRESS_PORT`]
//!   (0xCF8) to 0xCFF.
//! * After every access to those ports (and after [`PciBus::add`]), drain
//!   [`PciBus::drain_events`]: [`PciEvent::Bar`] tells which BAR moved, appeared or
//!   disappeared (command register enables and the expansion ROM included), so the
//!   machine remaps its I/O and MMIO buses; [`PciEvent::Pam`]/[`PciEvent::Smram`] tell it to
//!   remap the 0xA0000-0xFFFFF legacy windows; [`PciEvent::PirqRoute`] to rewire INTx.
//!   [`PciHost::take_reset_request`] reports a reset through port 0xCF9.
//! * INTx routing: a device in slot `s` raising pin `p` (1 = INTA#) drives PIRQ
//!   [`pirq_for_slot`]`(s, p)`; the PIIX3's [`Piix3::pirq_route`] names the ISA IRQ the
//!   PIRQ goes to (or none). Several devices on one PIRQ are wired-OR (level, active low on
//!   the board, asserted-high at the PIC/IOAPIC inputs). With an IOAPIC, PIRQA-D
//!   conventionally also reach IOAPIC pins 16-19 (the ACPI _PRT decides which the guest uses).
//!
//! * Functions are shared: the bus holds each as a [`SharedPciDevice`]
//!   (`Arc<Mutex<dyn PciDevice>>`), and the machine keeps its own clone to serve the BAR
//!   regions it mapped from [`PciEvent::Bar`] by locking only that function and calling
//!   [`PciDevice::bar_read`]/[`PciDevice::bar_write`] with the BAR index and the offset into
//!   it. A device that interrupts or does DMA is plugged with [`PciBus::plug`], which hands it
//!   its [`PciLink`] (INTx line, MSI sink, DMA handle) once.
//! * Lock order: the bus (config accesses) before a function; a function calls out to its
//!   INTx line and MSI sink while locked, so those must never call back into PCI.
//!
//! # Writing a device
//! Embed a [`ConfigSpace`], declare BARs with [`ConfigSpace::add_bar`], and implement
//! [`PciDevice`] by forwarding `config_read`/`config_write` to it (adding device-specific
//! behaviour where needed) and `bar` to [`ConfigSpace::bar_region`]. Interrupts: INTx through
//! [`ConfigSpace::set_intx`] (re-driven with [`ConfigSpace::refresh_intx`] after config
//! writes), MSI through [`ConfigSpace::add_msi_capability`] and [`ConfigSpace::msi_notify`],
//! MSI-X through [`ConfigSpace::add_msix_capability`] and the returned [`MsixTable`].

mod config;
mod host;
mod i440fx;
mod link;
mod msi;
mod msix;
mod piix3;
mod state;

#[cfg(test)]
mod irq_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;

pub use config::*;
pub use host::*;
pub use i440fx::*;
pub use link::*;
pub use msi::*;
pub use msix::*;
pub use piix3::*;
pub use state::*;

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Errors from building a PCI topology (programming errors of the machine, never guest
/// input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI device/function {0} is already occupied")]
    SlotOccupied(DevFn),
    #[error("invalid BAR {index} of size {size:#x}")]
    InvalidBar { index: usize, size: u64 },
    #[error("invalid capability offset {offset:#x}")]
    InvalidCapability { offset: u8 },
}

/// Device (bits 7:3) and function (bits 2:0) number on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevFn(pub u8);

impl DevFn {
    /// `device` 0-31, `function` 0-7.
    pub fn new(device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self(device << 3 | function))
    }

    pub fn device(self) -> u8 {
        self.0 >> 3
    }

    pub fn function(self) -> u8 {
        self.0 & 7
    }
}

impl std::fmt::Display for DevFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00:{:02x}.{}", self.device(), self.function())
    }
}

/// Address space and width of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32 { prefetchable: bool },
    Mem64 { prefetchable: bool },
}

/// A BAR as currently decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    /// BAR number 0-5, or [`PCI_ROM_SLOT`] (6) for the expansion ROM.
    pub index: usize,
    pub kind: BarKind,
    /// Port number (I/O) or physical address (memory).
    pub address: u64,
    pub size: u64,
}

impl BarRegion {
    pub fn is_io(&self) -> bool {
        self.kind == BarKind::Io
    }
}

/// A BAR that changed: `old` was decoded until now, `new` is decoded from now on (either
/// may be `None`). The machine unmaps `old` and maps `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarChange {
    pub devfn: DevFn,
    pub index: usize,
    pub old: Option<BarRegion>,
    pub new: Option<BarRegion>,
}

/// Something the machine must act on after a configuration write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciEvent {
    Bar(BarChange),
    /// i440FX PAM registers changed: remap 0xC0000-0xFFFFF.
    Pam(PamState),
    /// i440FX SMRAM register changed: remap 0xA0000-0xBFFFF.
    Smram(SmramState),
    /// PIIX3 PIRQ route register changed: `pirq` (0 = PIRQA) now goes to ISA `irq`.
    PirqRoute {
        pirq: u8,
        irq: Option<u8>,
    },
    /// PIIX4 PM function: the PM I/O block moved to `base` (or was disabled).
    PmIoBase {
        base: Option<u16>,
    },
}

/// A PCI function as seen through configuration space and its BARs.
///
/// Config accesses: `offset + size` never crosses a dword boundary and `size` is 1, 2 or 4.
pub trait PciDevice: Any + Send {
    fn config_read(&mut self, offset: u8, size: u8) -> u32;
    fn config_write(&mut self, offset: u8, size: u8, value: u32);
    /// The region BAR `index` (0-5, 6 = expansion ROM) decodes now, if any.
    fn bar(&self, _index: usize) -> Option<BarRegion> {
        None
    }
    /// A read of `data.len()` bytes (1, 2, 4 or 8, within the BAR) at `offset` into BAR
    /// `index` (as the machine mapped it from [`PciEvent::Bar`]). Default: all ones.
    fn bar_read(&mut self, _index: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
    }
    /// A write of `data` at `offset` into BAR `index`. Default: ignored.
    fn bar_write(&mut self, _index: usize, _offset: u64, _data: &[u8]) {}
    /// Hands the function its connections; called once, when it is plugged in with
    /// [`PciBus::plug`]. Default: ignored (functions that neither interrupt nor do DMA).
    fn attach(&mut self, _link: PciLink) {}
    /// Appends device-specific events (PAM, PIRQ, PM base) raised by the last write.
    fn take_events(&mut self, _out: &mut Vec<PciEvent>) {}
    /// Platform reset.
    fn reset(&mut self) {}
}

/// Swizzled INTx routing on bus 0 of the PIIX PC (as in QEMU's i440FX board and its ACPI
/// _PRT): slot `slot`, interrupt pin `pin` (1 = INTA# .. 4 = INTD#) drives PIRQ
/// `(slot + pin - 2) mod 4` (0 = PIRQA), so slot 1 INTA# is PIRQA and slot 0 INTA# PIRQD.
/// `None` for pin 0 (no interrupt) or a pin above 4.
pub fn pirq_for_slot(slot: u8, pin: u8) -> Option<u8> {
    (1..=4)
        .contains(&pin)
        .then(|| ((u32::from(slot) + u32::from(pin) + 2) % 4) as u8)
}

const NO_BARS: [Option<BarRegion>; 7] = [None; 7];

/// A function shared between the bus (configuration space) and the machine (its BARs).
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Locks a function; a panic in another holder does not make it unusable.
pub fn lock_device(dev: &SharedPciDevice) -> MutexGuard<'_, dyn PciDevice> {
    dev.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Slot {
    dev: SharedPciDevice,
    /// What the machine was last told is decoded, per BAR slot.
    mapped: [Option<BarRegion>; 7],
}

/// PCI bus 0: up to 32 devices x 8 functions.
pub struct PciBus {
    slots: Vec<Option<Slot>>,
    events: Vec<PciEvent>,
}

impl Default for PciBus {
    fn default() -> Self {
        Self::new()
    }
}

impl PciBus {
    pub fn new() -> Self {
        Self {
            slots: (0..256).map(|_| None).collect(),
            events: Vec::new(),
        }
    }

    /// Plugs `dev` in at `devfn` without connections (chipset functions that neither
    /// interrupt nor do DMA). BARs it already decodes are reported as events.
    pub fn add(&mut self, devfn: DevFn, dev: SharedPciDevice) -> Result<(), PciError> {
        let slot = &mut self.slots[usize::from(devfn.0)];
        if slot.is_some() {
            return Err(PciError::SlotOccupied(devfn));
        }
        *slot = Some(Slot {
            dev,
            mapped: NO_BARS,
        });
        self.sync(devfn);
        Ok(())
    }

    /// Plugs `dev` in at `devfn` after handing it `link` ([`PciDevice::attach`]).
    pub fn plug(&mut self, devfn: DevFn, dev: SharedPciDevice, link: PciLink) -> Result<(), PciError> {
        if self.contains(devfn) {
            return Err(PciError::SlotOccupied(devfn));
        }
        lock_device(&dev).attach(link);
        self.add(devfn, dev)
    }

    /// Wraps `dev`, adds it at `devfn` without connections and returns the typed handle.
    pub fn add_device<D: PciDevice>(&mut self, devfn: DevFn, dev: D) -> Result<Arc<Mutex<D>>, PciError> {
        let dev = Arc::new(Mutex::new(dev));
        self.add(devfn, dev.clone())?;
        Ok(dev)
    }

    /// Whether a function sits at `devfn`.
    pub fn contains(&self, devfn: DevFn) -> bool {
        self.slots[usize::from(devfn.0)].is_some()
    }

    /// The function at `devfn`, to reach its BARs.
    pub fn shared(&self, devfn: DevFn) -> Option<SharedPciDevice> {
        self.slots[usize::from(devfn.0)].as_ref().map(|s| s.dev.clone())
    }

    /// Runs `f` on the function at `devfn` (locked) if it is a `T`. Call [`Self::sync`]
    /// afterwards if the change can move its BARs.
    pub fn with_device<T: PciDevice, R>(&self, devfn: DevFn, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let slot = self.slots[usize::from(devfn.0)].as_ref()?;
        let mut guard = lock_device(&slot.dev);
        let dev: &mut dyn Any = &mut *guard;
        dev.downcast_mut().map(f)
    }

    /// Decoded BARs of `devfn` (as last reported through events).
    pub fn bars(&self, devfn: DevFn) -> [Option<BarRegion>; 7] {
        self.slots[usize::from(devfn.0)]
            .as_ref()
            .map_or(NO_BARS, |s| s.mapped)
    }

    /// Events for the machine, oldest first.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, PciEvent> {
        self.events.drain(..)
    }

    /// Configuration read. Absent functions read all ones. Function 0 of a device with
    /// other functions reports the multi-function bit in its header type.
    pub fn config_read(&mut self, devfn: DevFn, offset: u8, size: u8) -> u32 {
        let ones = if size >= 4 {
            u32::MAX
        } else {
            (1 << (8 * u32::from(size))) - 1
        };
        let multi = devfn.function() == 0 && self.has_other_functions(devfn.device());
        let Some(slot) = self.slots[usize::from(devfn.0)].as_mut() else {
            return ones;
        };
        let mut v = lock_device(&slot.dev).config_read(offset, size) & ones;
        let header = PCI_HEADER_TYPE as u8;
        if multi && offset <= header && header < offset.saturating_add(size) {
            v |= u32::from(PCI_HEADER_MULTI_FUNCTION) << (8 * (header - offset));
        }
        v
    }

    /// Configuration write, followed by event collection.
    pub fn config_write(&mut self, devfn: DevFn, offset: u8, size: u8, value: u32) {
        let Some(slot) = self.slots[usize::from(devfn.0)].as_mut() else {
            return;
        };
        lock_device(&slot.dev).config_write(offset, size, value);
        self.sync(devfn);
    }

    /// Compares the BARs of `devfn` with what was last reported and queues the changes,
    /// plus the device's own events.
    pub fn sync(&mut self, devfn: DevFn) {
        let Some(slot) = self.slots[usize::from(devfn.0)].as_mut() else {
            return;
        };
        let mut dev = lock_device(&slot.dev);
        for index in 0..7 {
            let new = dev.bar(index);
            let old = slot.mapped[index];
            if new != old {
                slot.mapped[index] = new;
                self.events.push(PciEvent::Bar(BarChange {
                    devfn,
                    index,
                    old,
                    new,
                }));
            }
        }
        dev.take_events(&mut self.events);
    }

    /// Platform reset of every function; BARs that stop decoding are reported.
    pub fn reset(&mut self) {
        for i in 0..=255u8 {
            if let Some(slot) = self.slots[usize::from(i)].as_mut() {
                lock_device(&slot.dev).reset();
                self.sync(DevFn(i));
            }
        }
    }

    fn has_other_functions(&self, device: u8) -> bool {
        (1..8).any(|f| self.slots[usize::from(device << 3 | f)].is_some())
    }
}
