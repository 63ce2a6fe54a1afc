//! The fw_cfg DMA interface (fw_cfg.rst, "Guest-side DMA Interface"), through the device's
//! [`Dma`] handle: a descriptor or buffer outside guest RAM fails the transfer with the
//! control field's error bit ([`FW_CFG_DMA_CTL_ERROR`]), as fw_cfg.rst specifies.

use super::*;
use ferrite_memory::Dma;

/// Bytes moved per memory call, so huge lengths never need a huge buffer.
const CHUNK: usize = 4096;

impl FwCfg {
    /// Runs the FWCfgDmaAccess at `addr`: optional select, then read, write or skip, then
    /// writes the control word back as 0 (done) or [`FW_CFG_DMA_CTL_ERROR`].
    pub(super) fn dma_transfer(&mut self, addr: u64, dma: &Dma) {
        let mut desc = [0u8; FW_CFG_DMA_ACCESS_LEN];
        if dma.read(addr, &mut desc).is_err() {
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
            self.dma_read(address, length, dma)
        } else if control & FW_CFG_DMA_CTL_WRITE != 0 {
            self.dma_write(address, length, dma)
        } else {
            if control & FW_CFG_DMA_CTL_SKIP != 0 {
                self.skip(length);
            }
            true
        };
        let status = if ok { 0 } else { FW_CFG_DMA_CTL_ERROR };
        // If even this fails there is nothing more to do.
        let _ = dma.write(addr, &status.to_be_bytes());
    }

    fn skip(&mut self, length: u32) {
        let len = self
            .lookup(self.selector)
            .map_or(0, |i| i.data.len() as u32);
        self.offset = self.offset.saturating_add(length).min(len);
    }

    /// Copies `length` bytes of the selected item into guest memory; bytes past the end of
    /// the item (or of a missing item) are zeros.
    fn dma_read(&mut self, address: u64, length: u32, dma: &Dma) -> bool {
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
            if dma.write(gpa, chunk).is_err() {
                return false;
            }
            done += n as u64;
        }
        true
    }

    /// Copies `length` bytes from guest memory into the selected item at the current
    /// offset. The item must be writable and the write must fit entirely, else nothing is
    /// written (fw_cfg.rst: truncated writes are dropped).
    fn dma_write(&mut self, address: u64, length: u32, dma: &Dma) -> bool {
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
            if dma.read(gpa, chunk).is_err() {
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
