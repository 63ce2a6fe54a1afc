//! Saved state of the 8259A pair (snapshots and migration).

use super::{Chip, InitStep, PicPair};
use crate::IrqLine;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// One 8259A's registers and sequencing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PicChipState {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// Current levels of the IR inputs (edge detection).
    pub input_levels: u8,
    pub elcr: u8,
    /// ICW2 (T7-T3).
    pub vector_base: u8,
    /// The IR level with the lowest priority (0-7).
    pub lowest_priority_irq: u8,
    pub init_step: InitStep,
    pub icw1: u8,
    pub icw3: u8,
    pub icw4: u8,
    pub rotate_on_aeoi: bool,
    pub special_mask_mode: bool,
    /// OCW3 RR/RIS: command-port reads return ISR instead of IRR.
    pub read_isr: bool,
    /// OCW3 P: the next command-port read is a poll.
    pub poll_pending: bool,
}

/// The master/slave pair with the ELCRs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PicState {
    pub master: PicChipState,
    pub slave: PicChipState,
    /// Level of an external line wired to the master's IR2.
    pub external_irq2_level: bool,
}

impl Chip {
    fn save(&self) -> PicChipState {
        PicChipState {
            irr: self.irr,
            isr: self.isr,
            imr: self.imr,
            input_levels: self.lines,
            elcr: self.elcr,
            vector_base: self.vector_base,
            lowest_priority_irq: self.lowest,
            init_step: self.init,
            icw1: self.icw1,
            icw3: self.icw3,
            icw4: self.icw4,
            rotate_on_aeoi: self.rotate_on_aeoi,
            special_mask_mode: self.special_mask,
            read_isr: self.read_isr,
            poll_pending: self.poll,
        }
    }

    fn check(&self, s: &PicChipState) -> Result<(), RestoreError> {
        check_max("lowest_priority_irq", s.lowest_priority_irq, 7)?;
        if s.elcr & !self.elcr_mask != 0 {
            return Err(RestoreError::invalid("elcr", format!("{:#04x} sets bits fixed to edge ({:#04x})", s.elcr, !self.elcr_mask)));
        }
        if s.vector_base & 7 != 0 {
            return Err(RestoreError::invalid("vector_base", format!("{:#04x} has low bits set", s.vector_base)));
        }
        Ok(())
    }

    fn restore(&mut self, s: PicChipState) {
        self.irr = s.irr;
        self.isr = s.isr;
        self.imr = s.imr;
        self.lines = s.input_levels;
        self.elcr = s.elcr;
        self.vector_base = s.vector_base;
        self.lowest = s.lowest_priority_irq;
        self.init = s.init_step;
        self.icw1 = s.icw1;
        self.icw3 = s.icw3;
        self.icw4 = s.icw4;
        self.rotate_on_aeoi = s.rotate_on_aeoi;
        self.special_mask = s.special_mask_mode;
        self.read_isr = s.read_isr;
        self.poll = s.poll_pending;
    }
}

impl<I: IrqLine> Persist for PicPair<I> {
    const SECTION: &'static str = "pic";
    const VERSION: u32 = 1;
    type State = PicState;

    fn save(&self) -> PicState {
        PicState { master: self.master.save(), slave: self.slave.save(), external_irq2_level: self.ext_irq2 }
    }

    fn restore(&mut self, s: PicState) -> Result<(), RestoreError> {
        self.master.check(&s.master)?;
        self.slave.check(&s.slave)?;
        self.master.restore(s.master);
        self.slave.restore(s.slave);
        self.ext_irq2 = s.external_irq2_level;
        // INTR follows the restored registers, driven even if unchanged from the fresh device.
        self.intr_level = self.has_interrupt();
        self.intr.set_level(self.intr_level);
        Ok(())
    }
}
