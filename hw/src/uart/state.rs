//! Saved state of the 16550A (snapshots and migration). The output backend is not state.

use super::*;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UartState {
    /// Received bytes not yet read, oldest first (at most 16 with FIFOs on, 1 with them off).
    pub rx_fifo: Vec<u8>,
    pub ier: u8,
    /// FCR as kept: enable, DMA mode and trigger level bits (the clear bits self-clear).
    pub fcr: u8,
    pub lcr: u8,
    pub mcr: u8,
    /// LSR error bits (OE, PE, FE, BI) latched until LSR is read.
    pub lsr_errors: u8,
    /// Modem status inputs driven from outside (MSR bits 7-4).
    pub external_modem_status: u8,
    /// MSR delta bits (3-0) accumulated until MSR is read.
    pub msr_deltas: u8,
    pub scr: u8,
    pub divisor: u16,
    /// The THR-empty interrupt is armed.
    pub thre_pending: bool,
}

impl<I: IrqLine, W: Write> Persist for Uart<I, W> {
    const SECTION: &'static str = "uart";
    const VERSION: u32 = 1;
    type State = UartState;

    fn save(&self) -> UartState {
        UartState {
            rx_fifo: self.rx.iter().copied().collect(),
            ier: self.ier,
            fcr: self.fcr,
            lcr: self.lcr,
            mcr: self.mcr,
            lsr_errors: self.lsr & LSR_ERRORS,
            external_modem_status: self.external_msr,
            msr_deltas: self.msr_deltas,
            scr: self.scr,
            divisor: self.divisor,
            thre_pending: self.thre_pending,
        }
    }

    fn restore(&mut self, s: UartState) -> Result<(), RestoreError> {
        let bits = |field, value: u8, mask: u8| {
            if value & !mask != 0 {
                return Err(RestoreError::invalid(field, format!("{value:#04x} sets bits outside {mask:#04x}")));
            }
            Ok(())
        };
        bits("ier", s.ier, IER_MASK)?;
        bits("fcr", s.fcr, FCR_ENABLE | FCR_TRIGGER_MASK | 0x08)?;
        if s.fcr & FCR_ENABLE == 0 && s.fcr != 0 {
            return Err(RestoreError::invalid("fcr", "trigger bits set with the FIFOs off"));
        }
        bits("mcr", s.mcr, MCR_MASK)?;
        bits("lsr_errors", s.lsr_errors, LSR_ERRORS)?;
        bits("external_modem_status", s.external_modem_status, 0xf0)?;
        bits("msr_deltas", s.msr_deltas, MSR_DELTAS)?;
        let capacity = if s.fcr & FCR_ENABLE != 0 { FIFO_SIZE } else { 1 };
        check_max("rx_fifo", s.rx_fifo.len(), capacity)?;
        self.rx.clear();
        self.rx.extend(&s.rx_fifo);
        self.ier = s.ier;
        self.fcr = s.fcr;
        self.lcr = s.lcr;
        self.mcr = s.mcr;
        self.lsr = LSR_THRE | LSR_TEMT | s.lsr_errors;
        self.external_msr = s.external_modem_status;
        self.msr_deltas = s.msr_deltas;
        self.scr = s.scr;
        self.divisor = s.divisor;
        self.thre_pending = s.thre_pending;
        self.irq_level = self.pending_interrupt() != IIR_NONE;
        self.irq.set_level(self.irq_level);
        Ok(())
    }
}
