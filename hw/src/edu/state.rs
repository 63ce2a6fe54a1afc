//! Saved state of the edu device (snapshots and migration). DMA and factorial computations
//! complete within the register write that starts them, so none is ever in flight.

use super::*;
use crate::pci::PciConfigState;
use ferrite_persist::{Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EduState {
    pub config: PciConfigState,
    pub liveness: u32,
    pub factorial: u32,
    pub status: u32,
    pub irq_status: u32,
    pub dma_source: u64,
    pub dma_destination: u64,
    pub dma_count: u64,
    pub dma_command: u64,
    /// The 4 KiB DMA buffer.
    pub buffer: Vec<u8>,
}

impl Persist for Edu {
    const SECTION: &'static str = "edu";
    const VERSION: u32 = 1;
    type State = EduState;

    fn save(&self) -> EduState {
        EduState {
            config: self.cfg.save_state(),
            liveness: self.liveness,
            factorial: self.factorial,
            status: self.status,
            irq_status: self.irq_status,
            dma_source: self.dma_src,
            dma_destination: self.dma_dst,
            dma_count: self.dma_count,
            dma_command: self.dma_cmd,
            buffer: self.buffer.to_vec(),
        }
    }

    fn restore(&mut self, s: EduState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        let buffer: [u8; EDU_DMA_BUFFER_SIZE] = s
            .buffer
            .as_slice()
            .try_into()
            .map_err(|_| RestoreError::invalid("buffer", format!("{} bytes, not {EDU_DMA_BUFFER_SIZE}", s.buffer.len())))?;
        if s.status & !(EDU_STATUS_COMPUTING | EDU_STATUS_IRQ_FACT) != 0 {
            return Err(RestoreError::invalid("status", format!("{:#x} sets undefined bits", s.status)));
        }
        if s.dma_command & EDU_DMA_START != 0 {
            return Err(RestoreError::invalid("dma_command", "a DMA in flight (transfers complete within the write)"));
        }
        self.cfg.restore_state(&s.config);
        self.liveness = s.liveness;
        self.factorial = s.factorial;
        self.status = s.status;
        self.irq_status = s.irq_status;
        self.dma_src = s.dma_source;
        self.dma_dst = s.dma_destination;
        self.dma_count = s.dma_count;
        self.dma_cmd = s.dma_command;
        *self.buffer = buffer;
        self.cfg.set_interrupt_status(self.irq_status != 0 && !self.cfg.msi_enabled());
        if let Some(link) = &self.link {
            self.cfg.redrive_intx(&*link.intx);
        }
        Ok(())
    }
}
