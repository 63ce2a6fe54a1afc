//! Saved state of PCI functions (snapshots and migration): the configuration space every
//! function embeds, MSI-X tables, and the chipset functions (i440FX, PIIX3, the host's
//! configuration mechanism).
//!
//! After restoring every function, the machine calls [`PciBus::sync_all`]: it reports the
//! BARs the restored functions decode and the chipset events (PAM, SMRAM, PIRQ routes, PM
//! base) as after guest writes, so the machine maps them as usual.

use super::msix::MSIX_VECTOR_MASKED;
use super::*;
use crate::IrqLine;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// One function's 256 bytes of configuration space (MSI capability state included). The
/// write masks and BAR sizes are configuration the device rebuilds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciConfigState {
    pub bytes: Vec<u8>,
}

/// Identity bytes a saved configuration space must share with the function it is loaded
/// into: vendor/device ID, revision and class, header type, subsystem IDs.
const IDENTITY: [(usize, usize); 4] = [(0x00, 4), (0x08, 4), (0x0E, 1), (0x2C, 4)];

impl ConfigSpace {
    pub fn save_state(&self) -> PciConfigState {
        PciConfigState { bytes: self.data.to_vec() }
    }

    /// Checks that `s` can be restored into this function: 256 bytes, same identity.
    pub fn check_state(&self, s: &PciConfigState) -> Result<(), RestoreError> {
        if s.bytes.len() != 256 {
            return Err(RestoreError::invalid("config", format!("{} bytes, not 256", s.bytes.len())));
        }
        for (start, len) in IDENTITY {
            if s.bytes[start..start + len] != self.data[start..start + len] {
                let id = |b: &[u8]| {
                    format!("{:04x}:{:04x} class {:02x}{:02x}{:02x}", u16::from_le_bytes([b[0], b[1]]), u16::from_le_bytes([b[2], b[3]]), b[11], b[10], b[9])
                };
                return Err(RestoreError::invalid(
                    "config",
                    format!("saved for {} (header {:#x}), this function is {} (header {:#x}) or differs at {start:#x}", id(&s.bytes), s.bytes[0x0E], id(&self.data), self.data[0x0E]),
                ));
            }
        }
        Ok(())
    }

    /// Takes `s` over; call [`Self::check_state`] first (lengths are assumed right).
    pub fn restore_state(&mut self, s: &PciConfigState) {
        self.data.copy_from_slice(&s.bytes);
    }

    /// Drives `line` from the restored interrupt state and Interrupt Disable, whatever level
    /// the fresh function had driven.
    pub fn redrive_intx(&mut self, line: &dyn IrqLine) {
        self.intx_out = self.intx_asserted();
        line.set_level(self.intx_out);
    }
}

/// One MSI-X table entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsixEntryState {
    pub address: u64,
    pub data: u32,
    /// Vector Control (bit 0: masked).
    pub control: u32,
}

/// An MSI-X table and its pending bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsixState {
    pub entries: Vec<MsixEntryState>,
    /// Pending bit array, 64 vectors per word.
    pub pending: Vec<u64>,
    pub enabled: bool,
    pub function_masked: bool,
}

impl MsixTable {
    pub fn save_state(&self) -> MsixState {
        MsixState {
            entries: self.entries.iter().map(|e| MsixEntryState { address: e.address, data: e.data, control: e.control }).collect(),
            pending: self.pending.clone(),
            enabled: self.enabled,
            function_masked: self.function_masked,
        }
    }

    pub fn check_state(&self, s: &MsixState) -> Result<(), RestoreError> {
        if s.entries.len() != self.entries.len() {
            return Err(RestoreError::invalid("msix.entries", format!("{} vectors, this function has {}", s.entries.len(), self.entries.len())));
        }
        if s.pending.len() != self.pending.len() {
            return Err(RestoreError::invalid("msix.pending", format!("{} words, the table needs {}", s.pending.len(), self.pending.len())));
        }
        if let Some(extra) = self.entries.len().checked_rem(64).filter(|&r| r != 0) {
            check_max("msix.pending", s.pending[s.pending.len() - 1], (1u64 << extra) - 1)?;
        }
        if let Some(v) = s.entries.iter().position(|e| e.control & !MSIX_VECTOR_MASKED != 0 || e.address & 3 != 0) {
            return Err(RestoreError::invalid("msix.entries", format!("vector {v} sets reserved bits")));
        }
        Ok(())
    }

    /// Takes `s` over (after [`Self::check_state`]). Sends nothing: pending vectors go out
    /// when the guest unmasks them, as before the save.
    pub fn restore_state(&mut self, s: &MsixState) {
        for (e, saved) in self.entries.iter_mut().zip(&s.entries) {
            (e.address, e.data, e.control) = (saved.address, saved.data, saved.control);
        }
        self.pending.copy_from_slice(&s.pending);
        self.enabled = s.enabled;
        self.function_masked = s.function_masked;
    }
}

impl PciBus {
    /// Reports every function's BARs and chipset events, as [`Self::sync`] does after a
    /// configuration write: for the machine after a restore.
    pub fn sync_all(&mut self) {
        for i in 0..=255u8 {
            self.sync(DevFn(i));
        }
    }
}

/// A chipset function whose only state is its configuration space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipsetState {
    pub config: PciConfigState,
}

impl Persist for I440fx {
    const SECTION: &'static str = "i440fx";
    const VERSION: u32 = 1;
    type State = ChipsetState;

    fn save(&self) -> ChipsetState {
        ChipsetState { config: self.cfg.save_state() }
    }

    /// PAM and SMRAM are reported again at the next [`PciBus::sync`].
    fn restore(&mut self, s: ChipsetState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        self.cfg.restore_state(&s.config);
        self.pam_dirty = true;
        self.smram_dirty = true;
        Ok(())
    }
}

impl Persist for Piix3 {
    const SECTION: &'static str = "piix3";
    const VERSION: u32 = 1;
    type State = ChipsetState;

    fn save(&self) -> ChipsetState {
        ChipsetState { config: self.cfg.save_state() }
    }

    /// The four PIRQ routes are reported again at the next [`PciBus::sync`].
    fn restore(&mut self, s: ChipsetState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        self.cfg.restore_state(&s.config);
        self.pending.clear();
        for pirq in 0..4 {
            let irq = self.pirq_route(pirq);
            self.routes[pirq] = irq;
            self.pending.push(PciEvent::PirqRoute { pirq: pirq as u8, irq });
        }
        Ok(())
    }
}

/// CONFIG_ADDRESS and the reset control register (port 0xCF9). The functions on the bus
/// are saved one by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciHostState {
    pub config_address: u32,
    pub reset_control: u8,
    /// A reset the guest asked for that the machine has not taken yet.
    pub reset_requested: bool,
}

impl Persist for PciHost {
    const SECTION: &'static str = "pci-host";
    const VERSION: u32 = 1;
    type State = PciHostState;

    fn save(&self) -> PciHostState {
        PciHostState { config_address: self.address, reset_control: self.reset_control, reset_requested: self.reset_requested }
    }

    fn restore(&mut self, s: PciHostState) -> Result<(), RestoreError> {
        if s.config_address & !CONFIG_ADDRESS_MASK != 0 {
            return Err(RestoreError::invalid("config_address", format!("{:#x} sets reserved bits", s.config_address)));
        }
        if s.reset_control & !(RC_SYSTEM_RESET | RC_FULL_RESET) != 0 {
            return Err(RestoreError::invalid("reset_control", format!("{:#x} sets bits that do not stay set", s.reset_control)));
        }
        self.address = s.config_address;
        self.reset_control = s.reset_control;
        self.reset_requested = s.reset_requested;
        Ok(())
    }
}
