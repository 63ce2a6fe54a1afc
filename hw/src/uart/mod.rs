//! National Semiconductor PC16550D UART (the PC's COM ports).
//!
//! Why not rust-vmm's `vm-superio::Serial`: it does not model the FIFO control register
//! (FIFO enable, clear bits, receive trigger levels) nor the non-FIFO one-byte holding
//! register, and it signals interrupts through an edge-style `Trigger` rather than a level on
//! our `IrqLine`, so the interrupt priorities and the THR-empty re-arm below would have to be
//! rebuilt around it anyway.
//!
//! References: PC16550D datasheet (National Semiconductor, June 1995): section 8.1 (register
//! summary, table II), 8.3 (LSR), 8.4 (FCR), 8.5 (IIR and table IV: interrupt priorities and
//! reset control), 8.6 (IER), 8.7 (MCR, loopback), 8.8 (MSR), 8.9 (SCR).
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the output backend,
//! so THRE/TEMT always read as set and the THR-empty interrupt is raised again right after
//! each write. The character timeout interrupt is simplified: with FIFOs on, any received data
//! below the trigger level reports "character timeout" at once.
//!
//! The IRQ output is not gated by MCR OUT2 (as on many emulated boards); guests that leave
//! OUT2 clear while enabling interrupts in IER will still receive them.

use crate::{IrqLine, PioDevice};
use std::collections::VecDeque;
use std::io::Write;

/// COM1-COM4 base ports and their usual ISA IRQs.
pub const COM1_BASE: u16 = 0x3f8;
pub const COM2_BASE: u16 = 0x2f8;
pub const COM3_BASE: u16 = 0x3e8;
pub const COM4_BASE: u16 = 0x2e8;
pub const COM1_IRQ: u8 = 4;
pub const COM2_IRQ: u8 = 3;
/// Number of port offsets the UART decodes.
pub const UART_PORTS: u16 = 8;

/// Register offsets (table II).
pub const RBR_THR: u16 = 0;
pub const IER: u16 = 1;
pub const IIR_FCR: u16 = 2;
pub const LCR: u16 = 3;
pub const MCR: u16 = 4;
pub const LSR: u16 = 5;
pub const MSR: u16 = 6;
pub const SCR: u16 = 7;

/// IER bits (8.6).
pub const IER_RDA: u8 = 0x01;
pub const IER_THRE: u8 = 0x02;
pub const IER_RLS: u8 = 0x04;
pub const IER_MS: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

/// IIR values (table IV); bits 7-6 are set while the FIFOs are enabled.
pub const IIR_NONE: u8 = 0x01;
pub const IIR_MS: u8 = 0x00;
pub const IIR_THRE: u8 = 0x02;
pub const IIR_RDA: u8 = 0x04;
pub const IIR_RLS: u8 = 0x06;
pub const IIR_TIMEOUT: u8 = 0x0c;
pub const IIR_FIFO_ON: u8 = 0xc0;

/// FCR bits (8.4).
pub const FCR_ENABLE: u8 = 0x01;
pub const FCR_CLEAR_RX: u8 = 0x02;
pub const FCR_CLEAR_TX: u8 = 0x04;
pub const FCR_TRIGGER_MASK: u8 = 0xc0;

/// LCR bit 7: divisor latch access (8.2).
pub const LCR_DLAB: u8 = 0x80;

/// MCR bits (8.7).
pub const MCR_DTR: u8 = 0x01;
pub const MCR_RTS: u8 = 0x02;
pub const MCR_OUT1: u8 = 0x04;
pub const MCR_OUT2: u8 = 0x08;
pub const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

/// LSR bits (8.3).
pub const LSR_DR: u8 = 0x01;
pub const LSR_OE: u8 = 0x02;
pub const LSR_PE: u8 = 0x04;
pub const LSR_FE: u8 = 0x08;
pub const LSR_BI: u8 = 0x10;
pub const LSR_THRE: u8 = 0x20;
pub const LSR_TEMT: u8 = 0x40;
pub const LSR_FIFO_ERR: u8 = 0x80;
const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// MSR bits (8.8).
pub const MSR_DCTS: u8 = 0x01;
pub const MSR_DDSR: u8 = 0x02;
pub const MSR_TERI: u8 = 0x04;
pub const MSR_DDCD: u8 = 0x08;
pub const MSR_CTS: u8 = 0x10;
pub const MSR_DSR: u8 = 0x20;
pub const MSR_RI: u8 = 0x40;
pub const MSR_DCD: u8 = 0x80;
const MSR_DELTAS: u8 = 0x0f;

/// Receive FIFO depth.
pub const FIFO_SIZE: usize = 16;
/// Default divisor: 115200 / 12 = 9600 baud.
const DEFAULT_DIVISOR: u16 = 12;

/// A 16550A on an output backend `W` and interrupt line `I`.
pub struct Uart<I: IrqLine, W: Write> {
    rx: VecDeque<u8>,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    /// Modem status as seen from outside when not in loopback (CTS, DSR, RI, DCD).
    external_msr: u8,
    /// Accumulated MSR delta bits.
    msr_deltas: u8,
    scr: u8,
    divisor: u16,
    /// The THR-empty interrupt is armed (cleared by reading IIR while it is the source, or by
    /// writing THR).
    thre_pending: bool,
    irq: I,
    irq_level: bool,
    out: W,
}

impl<I: IrqLine, W: Write> Uart<I, W> {
    /// A UART in its reset state (table IV "reset" column), with carrier, DSR and CTS
    /// asserted by the attached terminal.
    pub fn new(irq: I, out: W) -> Self {
        Uart {
            rx: VecDeque::with_capacity(FIFO_SIZE),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr: LSR_THRE | LSR_TEMT,
            external_msr: MSR_DCD | MSR_DSR | MSR_CTS,
            msr_deltas: 0,
            scr: 0,
            divisor: DEFAULT_DIVISOR,
            thre_pending: false,
            irq,
            irq_level: false,
            out,
        }
    }

    /// The output backend.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// The output backend, mutably.
    pub fn output_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The interrupt line.
    pub fn irq(&self) -> &I {
        &self.irq
    }

    /// The divisor latch (baud rate = 115200 / divisor).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// How many bytes [`Uart::receive`] would take now: the free receive FIFO space (one byte
    /// of holding register with FIFOs off), or 0 in loopback mode, where the serial input is
    /// disconnected.
    pub fn rx_space(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.rx.len())
        }
    }

    /// True when at least one byte can be received.
    pub fn can_receive(&self) -> bool {
        self.rx_space() > 0
    }

    /// Delivers bytes from the outside world; returns how many were taken (at most
    /// [`Uart::rx_space`]). Bytes beyond the space are dropped and flag an overrun.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.loopback() {
            return 0;
        }
        let taken = bytes.len().min(self.rx_space());
        self.rx.extend(&bytes[..taken]);
        if taken < bytes.len() {
            self.lsr |= LSR_OE;
        }
        self.sync_irq();
        taken
    }

    /// Sets the modem status inputs as driven by the outside (MSR bits 4-7: CTS, DSR, RI,
    /// DCD), recording deltas as the chip would.
    pub fn set_modem_status(&mut self, status: u8) {
        let old = self.msr_inputs();
        self.external_msr = status & 0xf0;
        let new = self.msr_inputs();
        self.note_msr_change(old, new);
        self.sync_irq();
    }

    /// The modem status inputs (MSR bits 4-7): looped back from MCR in loopback mode.
    fn msr_inputs(&self) -> u8 {
        if self.loopback() {
            let m = self.mcr;
            let mut v = 0;
            if m & MCR_RTS != 0 {
                v |= MSR_CTS;
            }
            if m & MCR_DTR != 0 {
                v |= MSR_DSR;
            }
            if m & MCR_OUT1 != 0 {
                v |= MSR_RI;
            }
            if m & MCR_OUT2 != 0 {
                v |= MSR_DCD;
            }
            v
        } else {
            self.external_msr
        }
    }

    fn note_msr_change(&mut self, old: u8, new: u8) {
        let changed = old ^ new;
        if changed & MSR_CTS != 0 {
            self.msr_deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_deltas |= MSR_DDSR;
        }
        // TERI: trailing edge of RI only.
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            self.msr_deltas |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            self.msr_deltas |= MSR_DDCD;
        }
    }

    /// Line status as read: DR from the FIFO, THRE/TEMT always set, error bits latched.
    fn lsr_value(&self) -> u8 {
        let mut v = (self.lsr & LSR_ERRORS) | LSR_THRE | LSR_TEMT;
        if !self.rx.is_empty() {
            v |= LSR_DR;
        }
        if self.fifo_enabled() && self.lsr & LSR_ERRORS != 0 {
            v |= LSR_FIFO_ERR;
        }
        v
    }

    fn trigger_level(&self) -> usize {
        match self.fcr & FCR_TRIGGER_MASK {
            0x00 => 1,
            0x40 => 4,
            0x80 => 8,
            _ => 14,
        }
    }

    /// The highest-priority pending interrupt's IIR code (table IV), or `IIR_NONE`.
    fn pending_interrupt(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr & LSR_ERRORS != 0 {
            return IIR_RLS;
        }
        if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            if self.fifo_enabled() && self.rx.len() < self.trigger_level() {
                return IIR_TIMEOUT;
            }
            return IIR_RDA;
        }
        if self.ier & IER_THRE != 0 && self.thre_pending {
            return IIR_THRE;
        }
        if self.ier & IER_MS != 0 && self.msr_deltas != 0 {
            return IIR_MS;
        }
        IIR_NONE
    }

    fn sync_irq(&mut self) {
        let level = self.pending_interrupt() != IIR_NONE;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.loopback() {
            if self.rx.len() < self.rx_capacity() {
                self.rx.push_back(byte);
            } else {
                self.lsr |= LSR_OE;
            }
        } else {
            // A failing backend loses the byte, as a disconnected line would.
            let _ = self.out.write_all(&[byte]).and_then(|_| self.out.flush());
        }
        // The byte left the THR at once: THR empty again.
        self.thre_pending = true;
    }

    /// Reads the register at `offset` (0-7).
    pub fn read_reg(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        let value = match offset & 7 {
            RBR_THR if dlab => self.divisor as u8,
            RBR_THR => self.rx.pop_front().unwrap_or(0),
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let code = self.pending_interrupt();
                if code == IIR_THRE {
                    // Reading IIR with THRE as the source clears it (table IV).
                    self.thre_pending = false;
                }
                code | if self.fifo_enabled() { IIR_FIFO_ON } else { 0 }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let v = self.lsr_value();
                self.lsr &= !LSR_ERRORS;
                v
            }
            MSR => {
                let v = self.msr_inputs() | (self.msr_deltas & MSR_DELTAS);
                self.msr_deltas = 0;
                v
            }
            _ => self.scr,
        };
        self.sync_irq();
        value
    }

    /// Writes `value` to the register at `offset` (0-7).
    pub fn write_reg(&mut self, offset: u16, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset & 7 {
            RBR_THR if dlab => self.divisor = (self.divisor & 0xff00) | value as u16,
            RBR_THR => self.transmit(value),
            IER if dlab => self.divisor = (self.divisor & 0x00ff) | (value as u16) << 8,
            IER => {
                let old = self.ier;
                self.ier = value & IER_MASK;
                // Enabling the THRE interrupt while THR is empty raises it at once; Linux's
                // 8250 driver depends on this to start transmitting.
                if old & IER_THRE == 0 && self.ier & IER_THRE != 0 {
                    self.thre_pending = true;
                }
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                let old = self.msr_inputs();
                self.mcr = value & MCR_MASK;
                let new = self.msr_inputs();
                self.note_msr_change(old, new);
            }
            // LSR and MSR are read-only here (factory test registers on real parts).
            LSR | MSR => {}
            _ => self.scr = value,
        }
        self.sync_irq();
    }

    fn write_fcr(&mut self, value: u8) {
        let was = self.fifo_enabled();
        let on = value & FCR_ENABLE != 0;
        if was != on {
            // Changing FCR0 resets both FIFOs (8.4).
            self.rx.clear();
        }
        if on && value & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        // Bits 1-2 self-clear; TX has no FIFO to clear since transmission is instantaneous.
        self.fcr = if on {
            value & (FCR_ENABLE | FCR_TRIGGER_MASK | 0x08)
        } else {
            0
        };
        if !on {
            // The holding register keeps at most one byte.
            self.rx.truncate(1);
        }
    }
}

impl<I: IrqLine, W: Write> PioDevice for Uart<I, W> {
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        self.read_reg(offset) as u32
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        self.write_reg(offset, value as u8);
    }
}

mod state;
pub use state::UartState;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
