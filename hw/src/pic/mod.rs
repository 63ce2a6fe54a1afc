//! Intel 8259A programmable interrupt controller, as the master/slave pair of a PC.
//!
//! References: Intel 8259A datasheet (order 231468), sections "Initialization Command Words"
//! (ICW1-ICW4), "Operation Command Words" (OCW1-OCW3), "Interrupt sequence" and "Special mask
//! mode"; Intel 82371 PIIX3 datasheet section 4.1.2 ("ELCR1/ELCR2 edge/level control").
//!
//! The slave's INT output drives the master's IR2 (cascade). The master's INT output is the
//! CPU's INTR pin, driven through the generic `IrqLine` given to [`PicPair::new`].
//!
//! Ports (absolute): master 0x20-0x21, slave 0xa0-0xa1, ELCR 0x4d0-0x4d1. The device takes
//! offsets within each window together with a [`PicPort`] selecting the window, or absolute
//! port numbers through [`PicPair::read_port`]/[`PicPair::write_port`].

use crate::IrqLine;

/// Base port of the master PIC (offsets 0 and 1).
pub const MASTER_BASE: u16 = 0x20;
/// Base port of the slave PIC (offsets 0 and 1).
pub const SLAVE_BASE: u16 = 0xa0;
/// Base port of the edge/level control registers (offset 0 = master, 1 = slave).
pub const ELCR_BASE: u16 = 0x4d0;

/// Command register offset (A0 = 0): ICW1, OCW2, OCW3 writes; IRR/ISR/poll reads.
pub const OFFSET_COMMAND: u16 = 0;
/// Data register offset (A0 = 1): ICW2-ICW4, OCW1 (IMR) writes; IMR reads.
pub const OFFSET_DATA: u16 = 1;

/// ICW1 marker: D4 = 1 on an A0 = 0 write (datasheet "ICW1").
const ICW1: u8 = 0x10;
/// ICW1 IC4: ICW4 will be written.
const ICW1_IC4: u8 = 0x01;
/// ICW1 SNGL: single 8259A, no ICW3.
const ICW1_SNGL: u8 = 0x02;
/// ICW1 LTIM: level-triggered mode for all inputs.
const ICW1_LTIM: u8 = 0x08;
/// ICW4 AEOI: automatic end of interrupt.
const ICW4_AEOI: u8 = 0x02;
/// ICW4 SFNM: special fully nested mode.
const ICW4_SFNM: u8 = 0x10;
/// OCW3 marker: D4 = 0, D3 = 1 (datasheet "OCW3").
const OCW3: u8 = 0x08;
/// OCW3 RIS: read ISR (with RR) instead of IRR.
const OCW3_RIS: u8 = 0x01;
/// OCW3 RR: the RIS bit is valid.
const OCW3_RR: u8 = 0x02;
/// OCW3 P: poll command.
const OCW3_POLL: u8 = 0x04;
/// OCW3 SMM: special mask mode value (valid with ESMM).
const OCW3_SMM: u8 = 0x20;
/// OCW3 ESMM: the SMM bit is valid.
const OCW3_ESMM: u8 = 0x40;
/// Poll word bit 7: an interrupt was pending (datasheet "The Poll Command").
const POLL_INT: u8 = 0x80;

/// Cascade input of the master (IR2).
const CASCADE_IRQ: u8 = 2;
/// Spurious interrupt level reported when nothing is pending at INTA (IR7 of each chip).
const SPURIOUS_IRQ: u8 = 7;
/// ELCR1 writable bits: IRQ0-2 are always edge (PIIX3 4.1.2).
const ELCR_MASTER_MASK: u8 = 0xf8;
/// ELCR2 writable bits: IRQ8 and IRQ13 are always edge (PIIX3 4.1.2).
const ELCR_SLAVE_MASK: u8 = 0xde;

/// Which register window of the pair an offset refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicPort {
    /// 0x20-0x21.
    Master,
    /// 0xa0-0xa1.
    Slave,
    /// 0x4d0-0x4d1.
    Elcr,
}

/// Where the initialization sequence stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InitStep {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
struct Chip {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// Current levels of the IR inputs, for edge detection.
    lines: u8,
    /// Edge/level control: a set bit makes that input level-sensitive.
    elcr: u8,
    elcr_mask: u8,
    /// Vector base from ICW2 (T7-T3).
    vector_base: u8,
    /// The IR level that currently has the lowest priority (rotation).
    lowest: u8,
    init: InitStep,
    icw1: u8,
    icw3: u8,
    icw4: u8,
    rotate_on_aeoi: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            elcr_mask,
            vector_base: 0,
            lowest: 7,
            init: InitStep::Ready,
            icw1: 0,
            icw3: 0,
            icw4: 0,
            rotate_on_aeoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
        }
    }

    fn level_mask(&self) -> u8 {
        if self.icw1 & ICW1_LTIM != 0 {
            0xff
        } else {
            self.elcr
        }
    }

    /// Drives input `irq` (0-7) to `level`.
    fn set_line(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << (irq & 7);
        if level {
            if self.level_mask() & bit != 0 || self.lines & bit == 0 {
                self.irr |= bit;
            }
            self.lines |= bit;
        } else {
            if self.level_mask() & bit != 0 {
                self.irr &= !bit;
            }
            self.lines &= !bit;
        }
    }

    /// Priority rank of `irq`: 0 is the highest.
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// Highest-priority level set in `mask`.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8u8)
            .map(|i| (self.lowest.wrapping_add(1).wrapping_add(i)) & 7)
            .find(|irq| mask & (1 << irq) != 0)
    }

    /// The level this chip would present at the next INTA, if any (datasheet "Fully nested
    /// mode", "Special fully nested mode", "Special mask mode").
    fn pending(&self, is_master: bool) -> Option<u8> {
        let req = self.irr & !self.imr;
        if self.special_mask {
            // Only a level's own in-service bit inhibits it.
            return self.highest(req & !self.isr);
        }
        let irq = self.highest(req)?;
        match self.highest(self.isr) {
            None => Some(irq),
            Some(busy) if self.rank(irq) < self.rank(busy) => Some(irq),
            Some(busy)
                if is_master
                    && self.icw4 & ICW4_SFNM != 0
                    && irq == CASCADE_IRQ
                    && busy == CASCADE_IRQ =>
            {
                Some(irq)
            }
            Some(_) => None,
        }
    }

    /// The INTA bookkeeping for `irq` on this chip: IRR edge latch, ISR or auto-EOI.
    fn accept(&mut self, irq: u8) {
        let bit = 1u8 << irq;
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
        if self.icw4 & ICW4_AEOI != 0 {
            if self.rotate_on_aeoi {
                self.lowest = irq;
            }
        } else {
            self.isr |= bit;
        }
    }

    /// Resets what ICW1 resets (datasheet "Initialization Command Words", a-f).
    fn icw1(&mut self, value: u8) {
        self.icw1 = value;
        self.init = InitStep::Icw2;
        self.imr = 0;
        self.isr = 0;
        // The edge sense latch is reset: an edge input needs a fresh low-to-high transition.
        self.irr = self.lines & self.level_mask();
        self.lowest = 7;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_on_aeoi = false;
        self.icw3 = 0;
        if value & ICW1_IC4 == 0 {
            self.icw4 = 0;
        }
    }

    /// OCW2: EOI and rotation commands (datasheet "OCW2", R/SL/EOI bits).
    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Non-specific EOI, with or without rotation.
            0b001 | 0b101 => {
                if let Some(irq) = self.highest(self.isr) {
                    self.isr &= !(1 << irq);
                    if value >> 5 == 0b101 {
                        self.lowest = irq;
                    }
                }
            }
            // Specific EOI, with or without rotation.
            0b011 | 0b111 => {
                self.isr &= !(1 << level);
                if value >> 5 == 0b111 {
                    self.lowest = level;
                }
            }
            0b100 => self.rotate_on_aeoi = true,
            0b000 => self.rotate_on_aeoi = false,
            // Set priority: `level` becomes the lowest.
            0b110 => self.lowest = level,
            _ => {}
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & OCW3_ESMM != 0 {
            self.special_mask = value & OCW3_SMM != 0;
        }
        if value & OCW3_RR != 0 {
            self.read_isr = value & OCW3_RIS != 0;
        }
        if value & OCW3_POLL != 0 {
            self.poll = true;
        }
    }

    fn write(&mut self, offset: u16, value: u8) {
        if offset & 1 == 0 {
            if value & ICW1 != 0 {
                self.icw1(value);
            } else if value & OCW3 != 0 {
                self.ocw3(value);
            } else {
                self.ocw2(value);
            }
            return;
        }
        match self.init {
            InitStep::Ready => self.imr = value,
            InitStep::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = if self.icw1 & ICW1_SNGL == 0 {
                    InitStep::Icw3
                } else if self.icw1 & ICW1_IC4 != 0 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = value;
                self.init = if self.icw1 & ICW1_IC4 != 0 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw4 => {
                self.icw4 = value;
                self.init = InitStep::Ready;
            }
        }
    }

    fn read(&self, offset: u16) -> u8 {
        if offset & 1 == 1 {
            self.imr
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }
}

/// The two cascaded 8259As of a PC, with the PIIX3 ELCR registers.
#[derive(Clone, Debug)]
pub struct PicPair<I: IrqLine> {
    master: Chip,
    slave: Chip,
    /// Level of an external device line wired to IR2 (normally nothing on a PC).
    ext_irq2: bool,
    intr: I,
    intr_level: bool,
}

impl<I: IrqLine> PicPair<I> {
    /// A pair in its power-on state, with `intr` as the CPU's INTR input.
    pub fn new(intr: I) -> Self {
        PicPair {
            master: Chip::new(ELCR_MASTER_MASK),
            slave: Chip::new(ELCR_SLAVE_MASK),
            ext_irq2: false,
            intr,
            intr_level: false,
        }
    }

    /// The INTR output line.
    pub fn intr(&self) -> &I {
        &self.intr
    }

    /// Drives ISA interrupt line `line` (0-15) to `level`. Out-of-range lines are ignored.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 if line == CASCADE_IRQ => self.ext_irq2 = level,
            0..=7 => self.master.set_line(line, level),
            8..=15 => self.slave.set_line(line - 8, level),
            _ => return,
        }
        self.update();
    }

    /// True when the master's INT output is asserted (the CPU would take an interrupt).
    pub fn has_interrupt(&self) -> bool {
        self.master.pending(true).is_some()
    }

    /// The INTA cycle: returns the vector and updates IRR/ISR. With nothing pending this is
    /// a spurious interrupt: the vector of IR7 (master) or IR15 (slave, with IR2 in service
    /// on the master), without setting the spurious level's ISR bit.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending(true) {
            None => self.master.vector_base | SPURIOUS_IRQ,
            Some(irq) => {
                self.master.accept(irq);
                if irq == CASCADE_IRQ && self.master.icw1 & ICW1_SNGL == 0 {
                    match self.slave.pending(false) {
                        Some(sirq) => {
                            self.slave.accept(sirq);
                            self.slave.vector_base | sirq
                        }
                        None => self.slave.vector_base | SPURIOUS_IRQ,
                    }
                } else {
                    self.master.vector_base | irq
                }
            }
        };
        self.update();
        vector
    }

    /// Reads the register at `offset` in window `port`.
    pub fn read(&mut self, port: PicPort, offset: u16) -> u8 {
        let value = match port {
            PicPort::Elcr if offset & 1 == 0 => self.master.elcr,
            PicPort::Elcr => self.slave.elcr,
            PicPort::Master | PicPort::Slave => {
                let is_master = port == PicPort::Master;
                let chip = if is_master {
                    &mut self.master
                } else {
                    &mut self.slave
                };
                if chip.poll {
                    chip.poll = false;
                    match chip.pending(is_master) {
                        Some(irq) => {
                            chip.accept(irq);
                            POLL_INT | irq
                        }
                        None => 0,
                    }
                } else {
                    chip.read(offset)
                }
            }
        };
        self.update();
        value
    }

    /// Writes `value` to the register at `offset` in window `port`.
    pub fn write(&mut self, port: PicPort, offset: u16, value: u8) {
        match port {
            PicPort::Master => self.master.write(offset, value),
            PicPort::Slave => self.slave.write(offset, value),
            PicPort::Elcr => {
                let chip = if offset & 1 == 0 {
                    &mut self.master
                } else {
                    &mut self.slave
                };
                chip.elcr = value & chip.elcr_mask;
                // Inputs that became level-sensitive now follow their line.
                let level = chip.elcr;
                chip.irr = (chip.irr & !level) | (chip.lines & level);
            }
        }
        self.update();
    }

    /// Decodes an absolute port number (0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1).
    pub fn decode(port: u16) -> Option<(PicPort, u16)> {
        match port {
            MASTER_BASE..=0x21 => Some((PicPort::Master, port - MASTER_BASE)),
            SLAVE_BASE..=0xa1 => Some((PicPort::Slave, port - SLAVE_BASE)),
            ELCR_BASE..=0x4d1 => Some((PicPort::Elcr, port - ELCR_BASE)),
            _ => None,
        }
    }

    /// Reads an absolute port; ports outside the pair read as 0xff.
    pub fn read_port(&mut self, port: u16) -> u8 {
        match Self::decode(port) {
            Some((window, offset)) => self.read(window, offset),
            None => 0xff,
        }
    }

    /// Writes an absolute port; ports outside the pair are ignored.
    pub fn write_port(&mut self, port: u16, value: u8) {
        if let Some((window, offset)) = Self::decode(port) {
            self.write(window, offset, value);
        }
    }

    /// Propagates the slave's INT to the master's IR2 and the master's INT to INTR.
    fn update(&mut self) {
        // IR2 latches the slave's INT like an edge input (so a request the slave withdraws
        // before INTA becomes a spurious IRQ15, as on hardware), but is re-latched whenever
        // the slave still presents a request, so a second slave request is never lost.
        let cascade = self.slave.pending(false).is_some() || self.ext_irq2;
        let bit = 1u8 << CASCADE_IRQ;
        if cascade {
            self.master.irr |= bit;
            self.master.lines |= bit;
        } else {
            self.master.lines &= !bit;
        }
        let level = self.has_interrupt();
        if level != self.intr_level {
            self.intr_level = level;
            self.intr.set_level(level);
        }
    }
}

impl Default for PicPair<crate::NoIrq> {
    fn default() -> Self {
        Self::new(crate::NoIrq)
    }
}

mod state;
pub use state::{PicChipState, PicState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
