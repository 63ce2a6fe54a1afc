//! The fw_cfg DMA interface (fw_cfg.rst, "Guest-side DMA Interface").

use super::*;

/// Guest-physical memory as the DMA engine sees it; implemented by the machine.
/// Each call returns `false` if any byte of the range is not RAM (the transfer then fails
/// with the error bit).
pub trait DmaMemory {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool;
}

/// A flat byte slice as guest memory starting at address 0 (tests, tiny machines).
impl DmaMemory for [u8] {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        match range(gpa, buf.len(), self.len()) {
            Some(r) => {
                buf.copy_from_slice(&self[r]);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match range(gpa, data.len(), self.len()) {
            Some(r) => {
                self[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

fn range(gpa: u64, len: usize, size: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(gpa).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

/// Bytes moved per memory call, so huge lengths never need a huge buffer.
const CHUNK: usize = 4096;

impl FwCfg {
    /// Runs the FWCfgDmaAccess at `addr`: optional select, then read, write or skip, then
    /// writes the control word back as 0 (done) or [`FW_CFG_DMA_CTL_ERROR`].
    pub(super) fn dma_transfer<M: DmaMemory + ?Sized>(&mut self, addr: u64, mem: &mut M) {
        let mut desc = [0u8; FW_CFG_DMA_ACCESS_LEN];
        if !mem.read(addr, &mut desc) {
            return; // Nowhere to report the error.
        }
        let control = u32::from_be_bytes([desc[0], desc[1], desc[2], desc[3]]);
        let length = u32::from_be_bytes([desc[4], desc[5], desc[6], desc[7]]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&desc[8..16]);
        let address = u64::from_be_bytes(a);

        if control & FW_CFG_DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let ok = if control & FW_CFG_DMA_CTL_READ != 0 {
            self.dma_read(address, length, mem)
        } else if control & FW_CFG_DMA_CTL_WRITE != 0 {
            self.dma_write(address, length, mem)
        } else {
            if control & FW_CFG_DMA_CTL_SKIP != 0 {
                self.skip(length);
            }
            true
        };
        let status = if ok { 0 } else { FW_CFG_DMA_CTL_ERROR };
        // If even this fails there is nothing more to do.
        let _ = mem.write(addr, &status.to_be_bytes());
    }

    fn skip(&mut self, length: u32) {
        let len = self
            .lookup(self.selector)
            .map_or(0, |i| i.data.len() as u32);
        self.offset = self.offset.saturating_add(length).min(len);
    }

    /// Copies `length` bytes of the selected item into guest memory; bytes past the end of
    /// the item (or of a missing item) are zeros.
    fn dma_read<M: DmaMemory + ?Sized>(&mut self, address: u64, length: u32, mem: &mut M) -> bool {
        let mut done: u64 = 0;
        let total = u64::from(length);
        let mut buf = [0u8; CHUNK];
        while done < total {
            let n = (total - done).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            chunk.fill(0);
            let offset = self.offset as usize;
            if let Some(item) = self.lookup(self.selector) {
                let avail = item.data.len().saturating_sub(offset).min(n);
                chunk[..avail].copy_from_slice(&item.data[offset..offset + avail]);
                self.offset += avail as u32;
            }
            let Some(gpa) = address.checked_add(done) else {
                return false;
            };
            if !mem.write(gpa, chunk) {
                return false;
            }
            done += n as u64;
        }
        true
    }

    /// Copies `length` bytes from guest memory into the selected item at the current
    /// offset. The item must be writable and the write must fit entirely, else nothing is
    /// written (fw_cfg.rst: truncated writes are dropped).
    fn dma_write<M: DmaMemory + ?Sized>(&mut self, address: u64, length: u32, mem: &mut M) -> bool {
        let offset = self.offset as usize;
        let selector = self.selector;
        let Some(item) = self.lookup(selector) else {
            return false;
        };
        let end = offset.saturating_add(length as usize);
        if !item.writable || end > item.data.len() {
            return false;
        }
        let mut staged = vec![0u8; length as usize];
        for (i, chunk) in staged.chunks_mut(CHUNK).enumerate() {
            let Some(gpa) = address.checked_add((i * CHUNK) as u64) else {
                return false;
            };
            if !mem.read(gpa, chunk) {
                return false;
            }
        }
        if let Some(item) = self.lookup_mut(selector) {
            item.data[offset..end].copy_from_slice(&staged);
        }
        self.offset = end as u32;
        true
    }
}
