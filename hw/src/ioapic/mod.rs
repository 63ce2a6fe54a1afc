//! Intel 82093AA I/O APIC (datasheet 290566-001, "82093AA I/O Advanced Programmable
//! Interrupt Controller").
//!
//! Registers are reached indirectly: write the register index to IOREGSEL (offset 0x00),
//! then read/write the 32-bit IOWIN (offset 0x10). The machine maps the 4 KiB window at
//! [`IOAPIC_BASE`] and routes ISA/PCI lines to [`Ioapic::set_irq`].
//!
//! # Messages
//! Whatever the IOAPIC sends (from [`Ioapic::set_irq`], [`Ioapic::eoi`] re-delivering a
//! still-asserted level line, or a register write unmasking one) is queued; after each
//! of those calls the machine drains [`Ioapic::drain_messages`] and hands every
//! [`InterruptMessage`] to each LAPIC whose `matches_destination(destination, logical)`
//! is true (for lowest-priority mode, to one of them). Level-triggered EOIs come back from
//! the LAPICs as `LapicOutput::Eoi(vector)` and go to [`Ioapic::eoi`].
//!
//! # Polarity
//! `set_irq` takes the *logical* state of a line (true = asserted). The polarity bit is
//! stored and read back but not applied: the board presents every source as
//! active-when-true, and the firmware's MADT/_PRT describe the polarity the guest
//! programs, as on QEMU's PC.

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
mod state;
pub use state::IoapicState;

use crate::lapic::{DeliveryMode, InterruptMessage};
use crate::MmioDevice;

/// Default physical base of the IOAPIC (82093AA datasheet 3.0, "Register Description").
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
/// Size of the MMIO window the machine maps.
pub const IOAPIC_SIZE: u64 = 0x1000;

/// I/O register select (datasheet 3.1.1), 8 bits of register index.
pub const IOREGSEL: u64 = 0x00;
/// I/O window: the 32-bit register selected by IOREGSEL (datasheet 3.1.2).
pub const IOWIN: u64 = 0x10;

/// IOAPIC identification register index (datasheet 3.2.1): ID in bits 27:24.
pub const IOAPICID: u8 = 0x00;
/// IOAPIC version register index (datasheet 3.2.2).
pub const IOAPICVER: u8 = 0x01;
/// IOAPIC arbitration ID register index (datasheet 3.2.3): arbitration ID in bits 27:24.
pub const IOAPICARB: u8 = 0x02;
/// First redirection table register index; entry `n` is at 0x10 + 2n (low) and
/// 0x11 + 2n (high) (datasheet 3.2.4).
pub const IOREDTBL: u8 = 0x10;

/// Number of interrupt input pins / redirection entries.
pub const IOAPIC_PINS: usize = 24;
/// Version register: version 0x11, maximum redirection entry 0x17 (datasheet 3.2.2).
pub const IOAPIC_VERSION: u32 = 0x0017_0011;

/// Redirection entry bits 7:0: interrupt vector (datasheet 3.2.4).
pub const RTE_VECTOR: u64 = 0xFF;
/// Bits 10:8: delivery mode.
pub const RTE_DELIVERY_MODE_SHIFT: u32 = 8;
/// Bit 11: destination mode, 1 = logical.
pub const RTE_DEST_LOGICAL: u64 = 1 << 11;
/// Bit 12: delivery status (read-only; always idle here, delivery is immediate).
pub const RTE_DELIVERY_PENDING: u64 = 1 << 12;
/// Bit 13: interrupt input pin polarity, 1 = active low.
pub const RTE_POLARITY_LOW: u64 = 1 << 13;
/// Bit 14: remote IRR (read-only): a level interrupt was accepted, awaiting EOI.
pub const RTE_REMOTE_IRR: u64 = 1 << 14;
/// Bit 15: trigger mode, 1 = level.
pub const RTE_LEVEL: u64 = 1 << 15;
/// Bit 16: interrupt mask.
pub const RTE_MASKED: u64 = 1 << 16;
/// Bits 63:56: destination field (APIC ID or logical set).
pub const RTE_DEST_SHIFT: u32 = 56;
/// Bits software can write (everything but delivery status, remote IRR and reserved).
pub const RTE_WRITABLE: u64 = 0xFF00_0000_0000_0000 | 0x1_AFFF;

/// Messages kept before new ones are dropped (a machine drains after every call).
pub const MESSAGE_QUEUE_LIMIT: usize = 256;

/// One 82093AA IOAPIC.
#[derive(Clone, Debug)]
pub struct Ioapic {
    id: u8,
    ioregsel: u8,
    redir: [u64; IOAPIC_PINS],
    /// Current logical level of each input pin.
    lines: u32,
    messages: Vec<InterruptMessage>,
}

impl Ioapic {
    /// An IOAPIC after reset with APIC ID `id` (bits 3:0): every entry masked.
    pub fn new(id: u8) -> Self {
        Self {
            id: id & 0xF,
            ioregsel: 0,
            redir: [RTE_MASKED; IOAPIC_PINS],
            lines: 0,
            messages: Vec::new(),
        }
    }

    /// Back to the power-on state (the ID survives, as the BIOS programmed it).
    pub fn reset(&mut self) {
        *self = Self::new(self.id);
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// Redirection entry of `pin` (0 for pins that do not exist).
    pub fn redirection(&self, pin: usize) -> u64 {
        self.redir.get(pin).copied().unwrap_or(0)
    }

    /// Messages for the LAPICs, oldest first.
    pub fn drain_messages(&mut self) -> std::vec::Drain<'_, InterruptMessage> {
        self.messages.drain(..)
    }

    /// Sets input `pin` to `level` (true = asserted). Edge-triggered entries send on a
    /// rising edge (masked edges are lost, datasheet 3.2.4 bit 16); level-triggered
    /// entries send while asserted, once per EOI (remote IRR). Pins past 23 are ignored.
    pub fn set_irq(&mut self, pin: usize, level: bool) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let bit = 1u32 << pin;
        let was = self.lines & bit != 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if Self::level_triggered(self.redir[pin]) {
            self.service(pin);
        } else if level && !was && self.redir[pin] & RTE_MASKED == 0 {
            self.send(pin);
        }
    }

    /// EOI broadcast from a LAPIC for `vector`: clears remote IRR of every level entry with
    /// that vector, and re-sends those whose line is still asserted.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..IOAPIC_PINS {
            let rte = self.redir[pin];
            if rte & RTE_VECTOR == u64::from(vector) && rte & RTE_REMOTE_IRR != 0 {
                self.redir[pin] &= !RTE_REMOTE_IRR;
                self.service(pin);
            }
        }
    }

    /// Only fixed and lowest-priority entries can be level-triggered; NMI, SMI, INIT and
    /// ExtINT are treated as edge (datasheet 3.2.4, delivery mode).
    fn level_triggered(rte: u64) -> bool {
        rte & RTE_LEVEL != 0
            && matches!(
                DeliveryMode::from_bits((rte >> RTE_DELIVERY_MODE_SHIFT) as u32),
                Some(DeliveryMode::Fixed | DeliveryMode::LowestPriority)
            )
    }

    /// Sends a level-triggered pin if it is asserted, unmasked and not awaiting an EOI.
    fn service(&mut self, pin: usize) {
        let rte = self.redir[pin];
        if Self::level_triggered(rte)
            && self.lines & (1 << pin) != 0
            && rte & (RTE_MASKED | RTE_REMOTE_IRR) == 0
            && self.send(pin)
        {
            self.redir[pin] |= RTE_REMOTE_IRR;
        }
    }

    /// The message `pin`'s entry sends (whether masked or not); `None` for a reserved
    /// delivery mode or a pin that does not exist.
    pub fn message(&self, pin: usize) -> Option<InterruptMessage> {
        let rte = *self.redir.get(pin)?;
        Some(InterruptMessage {
            vector: rte as u8,
            mode: DeliveryMode::from_bits((rte >> RTE_DELIVERY_MODE_SHIFT) as u32)?,
            logical: rte & RTE_DEST_LOGICAL != 0,
            destination: (rte >> RTE_DEST_SHIFT) as u32,
            level_triggered: Self::level_triggered(rte),
        })
    }

    /// Queues the message of `pin`'s entry. Returns false for a reserved delivery mode.
    fn send(&mut self, pin: usize) -> bool {
        let Some(msg) = self.message(pin) else {
            return false;
        };
        if self.messages.len() < MESSAGE_QUEUE_LIMIT {
            self.messages.push(msg);
        }
        true
    }

    /// Reads the indirect register `index`.
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            IOAPICID | IOAPICARB => u32::from(self.id) << 24,
            IOAPICVER => IOAPIC_VERSION,
            0x10..=0x3F => {
                let rte = self.redir[usize::from((index - IOREDTBL) / 2)];
                if index & 1 == 0 {
                    rte as u32
                } else {
                    (rte >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    /// Writes the indirect register `index` (read-only and reserved ones ignore it).
    pub fn write_register(&mut self, index: u8, value: u32) {
        match index {
            IOAPICID => self.id = ((value >> 24) & 0xF) as u8,
            0x10..=0x3F => {
                let pin = usize::from((index - IOREDTBL) / 2);
                let old = self.redir[pin];
                let merged = if index & 1 == 0 {
                    (old & 0xFFFF_FFFF_0000_0000) | u64::from(value)
                } else {
                    (old & 0xFFFF_FFFF) | (u64::from(value) << 32)
                };
                let mut new = (merged & RTE_WRITABLE) | (old & RTE_REMOTE_IRR);
                if !Self::level_triggered(new) {
                    new &= !RTE_REMOTE_IRR;
                }
                self.redir[pin] = new;
                // Unmasking (or switching to level) an asserted level line delivers it.
                self.service(pin);
            }
            _ => {}
        }
    }

    /// IOREGSEL value.
    pub fn ioregsel(&self) -> u8 {
        self.ioregsel
    }
}

impl MmioDevice for Ioapic {
    /// IOREGSEL at 0x00 and IOWIN at 0x10 read as dwords; narrower reads return the
    /// addressed bytes of the dword. Everything else reads 0.
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let dword = match offset & !3 {
            IOREGSEL => u32::from(self.ioregsel),
            IOWIN => self.read_register(self.ioregsel),
            _ => return 0,
        };
        let v = u64::from(dword >> ((offset & 3) * 8));
        match size {
            1 => v & 0xFF,
            2 => v & 0xFFFF,
            _ => v,
        }
    }

    /// IOREGSEL takes the low byte of any write at 0x00. IOWIN writes of 1, 2 or 4 bytes
    /// (8 bytes: the low dword) update the addressed bytes of the selected register.
    fn write(&mut self, offset: u64, size: u8, value: u64) {
        match offset & !3 {
            IOREGSEL if offset == IOREGSEL => self.ioregsel = value as u8,
            IOWIN => {
                let shift = (offset & 3) * 8;
                let mask: u64 = match size {
                    1 => 0xFF,
                    2 => 0xFFFF,
                    4 | 8 => 0xFFFF_FFFF,
                    _ => return,
                };
                let mask = ((mask << shift) & 0xFFFF_FFFF) as u32;
                let bits = ((value << shift) & 0xFFFF_FFFF) as u32;
                let old = self.read_register(self.ioregsel);
                self.write_register(self.ioregsel, (old & !mask) | (bits & mask));
            }
            _ => {}
        }
    }
}
