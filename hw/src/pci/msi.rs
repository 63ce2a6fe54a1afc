//! The MSI capability (PCI Local Bus Specification 3.0, 6.8.1) as part of a function's
//! [`ConfigSpace`].
//!
//! Layout from the capability offset:
//!
//! | offset | 32-bit capability  | 64-bit capability  |
//! |--------|--------------------|--------------------|
//! | +0     | ID 0x05, next      | ID 0x05, next      |
//! | +2     | Message Control    | Message Control    |
//! | +4     | Message Address    | Message Address    |
//! | +8     | Message Data       | Message Upper Addr |
//! | +0xC   | Mask Bits (PVM)    | Message Data       |
//! | +0x10  | Pending Bits (PVM) | Mask Bits (PVM)    |
//! | +0x14  |                    | Pending Bits (PVM) |
//!
//! A function with `2^m` allocated vectors (Multiple Message Enable) signals vector `v` by
//! writing the Message Data with its low `m` bits replaced by `v` (6.8.1.6). With per-vector
//! masking, a masked vector's message is held as a pending bit and sent when it is unmasked
//! (6.8.1.7, 6.8.1.8).

use super::{ConfigSpace, MsiSink, PciError};

/// Capability ID of MSI (PCI 3.0, appendix H).
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// Offset of Message Control from the capability.
pub const MSI_CONTROL: usize = 2;
/// Offset of Message Address (bits 31:2; bits 1:0 read 0).
pub const MSI_ADDRESS_LO: usize = 4;
/// Offset of Message Upper Address in a 64-bit capability.
pub const MSI_ADDRESS_HI: usize = 8;
/// Message Control bit 0: MSI Enable (the function may not use INTx while set).
pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
/// Message Control bits 3:1: Multiple Message Capable, log2 of the vectors requested.
pub const MSI_CTRL_MMC_SHIFT: u16 = 1;
/// Message Control bits 6:4: Multiple Message Enable, log2 of the vectors allocated.
pub const MSI_CTRL_MME_SHIFT: u16 = 4;
/// Message Control bit 7: 64-bit address capable.
pub const MSI_CTRL_64BIT: u16 = 1 << 7;
/// Message Control bit 8: per-vector masking capable.
pub const MSI_CTRL_PVM: u16 = 1 << 8;
/// Most vectors a function can request: 32 (log2 5).
pub const MSI_MAX_VECTORS_LOG2: u8 = 5;

/// Where the capability sits and what it can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MsiCap {
    offset: usize,
    mmc_log2: u8,
    is_64bit: bool,
    pvm: bool,
}

impl MsiCap {
    fn data(&self) -> usize {
        self.offset + if self.is_64bit { 0xC } else { 8 }
    }
    fn mask(&self) -> usize {
        self.data() + 4
    }
    fn pending(&self) -> usize {
        self.data() + 8
    }
    fn len(&self) -> usize {
        match (self.is_64bit, self.pvm) {
            (false, false) => 0x0C,
            (true, false) => 0x10,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }
}

impl ConfigSpace {
    /// Adds an MSI capability at `offset` requesting `2^multiple_message_capable_log2`
    /// vectors (0-5), with a 64-bit address if `is_64bit` and mask/pending bits if
    /// `per_vector_masking`. MSI starts disabled with every vector unmasked.
    pub fn add_msi_capability(
        &mut self,
        offset: u8,
        multiple_message_capable_log2: u8,
        is_64bit: bool,
        per_vector_masking: bool,
    ) -> Result<(), PciError> {
        let mmc = multiple_message_capable_log2;
        let cap = MsiCap { offset: usize::from(offset), mmc_log2: mmc, is_64bit, pvm: per_vector_masking };
        if mmc > MSI_MAX_VECTORS_LOG2 || cap.offset + cap.len() > 256 || self.msi.is_some() {
            return Err(PciError::InvalidCapability { offset });
        }
        self.add_capability(offset, PCI_CAP_ID_MSI)?;
        let mut control = u16::from(mmc) << MSI_CTRL_MMC_SHIFT;
        if is_64bit {
            control |= MSI_CTRL_64BIT;
        }
        if per_vector_masking {
            control |= MSI_CTRL_PVM;
        }
        let o = cap.offset;
        self.set_u16(o + MSI_CONTROL, control);
        let enable_and_mme = MSI_CTRL_ENABLE | 7 << MSI_CTRL_MME_SHIFT;
        self.set_writable(o + MSI_CONTROL, &enable_and_mme.to_le_bytes());
        self.set_writable(o + MSI_ADDRESS_LO, &0xFFFF_FFFCu32.to_le_bytes());
        if is_64bit {
            self.set_writable(o + MSI_ADDRESS_HI, &[0xFF; 4]);
        }
        self.set_writable(cap.data(), &[0xFF; 2]);
        if per_vector_masking {
            let implemented = (1u64 << (1u32 << mmc)) - 1;
            self.set_writable(cap.mask(), &(implemented as u32).to_le_bytes());
        }
        self.msi = Some(cap);
        Ok(())
    }

    fn msi_control(&self) -> u16 {
        self.msi.map_or(0, |c| self.u16(c.offset + MSI_CONTROL))
    }

    /// Whether the guest enabled MSI (then the function must not use INTx).
    pub fn msi_enabled(&self) -> bool {
        self.msi_control() & MSI_CTRL_ENABLE != 0
    }

    /// Vectors allocated by the guest: `2^min(Multiple Message Enable, Capable)`; 0 without
    /// an MSI capability.
    pub fn msi_vectors(&self) -> u32 {
        let Some(cap) = self.msi else { return 0 };
        let mme = ((self.msi_control() >> MSI_CTRL_MME_SHIFT) & 7) as u8;
        1 << mme.min(cap.mmc_log2)
    }

    /// Whether `vector` is masked by its mask bit (always false without per-vector masking).
    pub fn msi_masked(&self, vector: u32) -> bool {
        match self.msi {
            Some(cap) if cap.pvm && vector < 32 => self.u32(cap.mask()) & (1 << vector) != 0,
            _ => false,
        }
    }

    /// Whether `vector`'s pending bit is set.
    pub fn msi_pending(&self, vector: u32) -> bool {
        match self.msi {
            Some(cap) if cap.pvm && vector < 32 => self.u32(cap.pending()) & (1 << vector) != 0,
            _ => false,
        }
    }

    /// The `(address, data)` the function writes to signal `vector`, if MSI is enabled, the
    /// vector is allocated and not masked.
    pub fn msi_message(&self, vector: u32) -> Option<(u64, u32)> {
        let cap = self.msi?;
        let vectors = self.msi_vectors();
        if !self.msi_enabled() || vector >= vectors || self.msi_masked(vector) {
            return None;
        }
        let mut address = u64::from(self.u32(cap.offset + MSI_ADDRESS_LO) & !3);
        if cap.is_64bit {
            address |= u64::from(self.u32(cap.offset + MSI_ADDRESS_HI)) << 32;
        }
        let data = u32::from(self.u16(cap.data()));
        Some((address, (data & !(vectors - 1)) | vector))
    }

    /// Signals `vector` through MSI: sends its message, or sets its pending bit if it is
    /// masked. Returns whether a message went out; `false` also when MSI is disabled or the
    /// vector is not allocated (then nothing happens).
    pub fn msi_notify(&mut self, vector: u32, sink: &dyn MsiSink) -> bool {
        let Some(cap) = self.msi else { return false };
        if !self.msi_enabled() || vector >= self.msi_vectors() {
            return false;
        }
        if self.msi_masked(vector) {
            let pending = self.u32(cap.pending()) | 1 << vector;
            self.set_u32(cap.pending(), pending);
            return false;
        }
        match self.msi_message(vector) {
            Some((address, data)) => {
                sink.send_msi(address, data);
                true
            }
            None => false,
        }
    }

    /// Sends the messages of pending vectors that are no longer masked and clears their
    /// pending bits; call after configuration writes (the guest may have unmasked one).
    pub fn msi_flush_pending(&mut self, sink: &dyn MsiSink) {
        let Some(cap) = self.msi else { return };
        if !cap.pvm || !self.msi_enabled() {
            return;
        }
        let pending = self.u32(cap.pending());
        for vector in 0..self.msi_vectors() {
            if pending & (1 << vector) != 0 && !self.msi_masked(vector) {
                let left = self.u32(cap.pending()) & !(1 << vector);
                self.set_u32(cap.pending(), left);
                if let Some((address, data)) = self.msi_message(vector) {
                    sink.send_msi(address, data);
                }
            }
        }
    }
}
