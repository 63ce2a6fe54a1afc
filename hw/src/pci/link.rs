//! What a plugged PCI function reaches outside itself: its INTx pin, the MSI path to the
//! interrupt controllers, and DMA into guest RAM. The machine builds one [`PciLink`] per
//! function and hands it over once through [`super::PciDevice::attach`].
//!
//! INTx follows PCI 3.0, 6.2.2 and 6.2.3: the function's interrupt state lives in status bit 3
//! (Interrupt Status) and the pin is asserted only while that bit is set and the command
//! register's Interrupt Disable bit (10) is clear; setting Interrupt Disable deasserts the pin
//! without changing the status bit.

use super::{ConfigSpace, PCI_STATUS, PCI_STATUS_INTERRUPT};
use crate::IrqLine;
use ferrite_memory::Dma;
use std::sync::Arc;

/// Where message-signalled interrupts go: the machine decodes the address (0xFEEx_xxxx) and
/// data (vector, delivery mode, trigger) for its local APICs (Intel SDM vol. 3, 11.11).
pub trait MsiSink: Send + Sync {
    /// One memory write of `data` (a dword) to `address`, as the function's MSI or MSI-X
    /// message.
    fn send_msi(&self, address: u64, data: u32);
}

/// A sink that drops every message (tests, machines without MSI).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMsi;

impl MsiSink for NoMsi {
    fn send_msi(&self, _address: u64, _data: u32) {}
}

/// A function's connections, given to it once when it is plugged in.
#[derive(Clone)]
pub struct PciLink {
    /// The function's INTx pin, after the board's swizzle and PIRQ routing (the machine's
    /// business); level-triggered, asserted high. Drive it through [`ConfigSpace::set_intx`].
    pub intx: Arc<dyn IrqLine + Send + Sync>,
    /// Where MSI and MSI-X messages go.
    pub msi: Arc<dyn MsiSink>,
    /// Bus-master access to guest RAM; addresses outside RAM are errors the device sees.
    pub dma: Dma,
}

impl ConfigSpace {
    /// Sets the function's interrupt state (status bit 3) to `level` and drives `line`
    /// accordingly: asserted only while the state is set and Interrupt Disable is clear. The
    /// line is driven only when its level changes.
    pub fn set_intx(&mut self, level: bool, line: &dyn IrqLine) {
        self.set_interrupt_status(level);
        self.refresh_intx(line);
    }

    /// Re-drives `line` from the current interrupt state and Interrupt Disable bit; call after
    /// configuration writes (the command register may have changed) and after [`Self::reset`].
    pub fn refresh_intx(&mut self, line: &dyn IrqLine) {
        let out = self.intx_asserted();
        if out != self.intx_out {
            self.intx_out = out;
            line.set_level(out);
        }
    }

    /// Whether the function's interrupt state is set (status bit 3).
    pub fn interrupt_status(&self) -> bool {
        self.u16(PCI_STATUS) & PCI_STATUS_INTERRUPT != 0
    }

    /// Whether INTx is asserted on the pin: interrupt state set and Interrupt Disable clear.
    pub fn intx_asserted(&self) -> bool {
        self.interrupt_status() && !self.intx_disabled()
    }
}
