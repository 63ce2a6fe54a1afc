//! A device's handle to guest RAM. DMA reaches RAM only: an address range outside it is an
//! error the device sees (and reports to its guest as the hardware would), never a host fault.

use crate::GuestMemory;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DMA to guest-physical {addr:#x}+{len:#x} is outside guest RAM")]
pub struct DmaError {
    pub addr: u64,
    pub len: u64,
}

/// Cloneable, `Send + Sync`: one per device, usable from its worker threads.
#[derive(Clone)]
pub struct Dma {
    mem: Arc<GuestMemory>,
}

impl Dma {
    pub fn new(mem: Arc<GuestMemory>) -> Self {
        Dma { mem }
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.mem.read(gpa, buf).map_err(|_| DmaError { addr: gpa, len: buf.len() as u64 })
    }

    /// Writes `data`, marking the pages dirty and dropping decoded code there on every vCPU.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError> {
        self.mem.write(gpa, data).map_err(|_| DmaError { addr: gpa, len: data.len() as u64 })
    }

    /// Gives whole guest pages back to the host ([`GuestMemory::discard`]): the range reads as
    /// zeros afterwards.
    pub fn discard(&self, gpa: u64, len: u64) -> Result<(), DmaError> {
        self.mem.discard(gpa, len).map_err(|_| DmaError { addr: gpa, len })
    }

    pub fn read_u32(&self, gpa: u64) -> Result<u32, DmaError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, gpa: u64) -> Result<u64, DmaError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<(), DmaError> {
        self.write(gpa, &v.to_le_bytes())
    }

    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<(), DmaError> {
        self.write(gpa, &v.to_le_bytes())
    }

    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.mem
    }
}
