//! MSI-X (PCI Local Bus Specification 3.0, 6.8.2): the capability in configuration space and
//! the vector table and Pending Bit Array that live in the function's memory BARs.
//!
//! Capability (12 bytes): ID 0x11, next; Message Control (bits 10:0 table size - 1, RO; bit 14
//! Function Mask; bit 15 MSI-X Enable); Table Offset/BIR (bits 2:0 the BAR, 31:3 the offset);
//! PBA Offset/BIR likewise.
//!
//! Table entry (16 bytes): Message Address (bits 1:0 read 0), Message Upper Address, Message
//! Data, Vector Control (bit 0 Mask, set at reset). PBA: one bit per vector in QWORDs,
//! read-only. Software uses aligned DWORD or QWORD accesses only (6.8.2); anything else reads
//! as all ones and writes are dropped here.
//!
//! A vector is delivered only with MSI-X enabled and neither the function nor the vector
//! masked; otherwise its pending bit is set, and the message goes out as soon as both masks are
//! clear (6.8.2.9).
//!
//! [`MsixTable`] keeps its own copy of Enable and Function Mask: call
//! [`MsixTable::sync_control`] after every configuration write.

use super::{ConfigSpace, MsiSink, PciError};

/// Capability ID of MSI-X (PCI 3.0, appendix H).
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Offset of Message Control from the capability.
pub const MSIX_CONTROL: usize = 2;
/// Offset of Table Offset/Table BIR from the capability.
pub const MSIX_TABLE: usize = 4;
/// Offset of PBA Offset/PBA BIR from the capability.
pub const MSIX_PBA: usize = 8;
/// Message Control bits 10:0: table size minus one.
pub const MSIX_CTRL_TABLE_SIZE: u16 = 0x07FF;
/// Message Control bit 14: Function Mask.
pub const MSIX_CTRL_FUNCTION_MASK: u16 = 1 << 14;
/// Message Control bit 15: MSI-X Enable.
pub const MSIX_CTRL_ENABLE: u16 = 1 << 15;
/// Most vectors a function can have.
pub const MSIX_MAX_ENTRIES: u16 = 2048;
/// Bytes per table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Entry offsets: Message Address, Upper Address, Data, Vector Control.
pub const MSIX_ENTRY_ADDR_LO: u64 = 0;
pub const MSIX_ENTRY_ADDR_HI: u64 = 4;
pub const MSIX_ENTRY_DATA: u64 = 8;
pub const MSIX_ENTRY_VECTOR_CTRL: u64 = 12;
/// Vector Control bit 0: the vector is masked.
pub const MSIX_VECTOR_MASKED: u32 = 1;

impl ConfigSpace {
    /// Adds an MSI-X capability at `offset` for `entries` vectors (1-2048) whose table sits at
    /// `table_offset` in BAR `table_bar` and whose PBA sits at `pba_offset` in BAR `pba_bar`
    /// (offsets 8-byte aligned; the BARs must already be declared memory BARs large enough).
    /// Returns the table model the device keeps and serves from its BAR accesses.
    pub fn add_msix_capability(
        &mut self,
        offset: u8,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
        entries: u16,
    ) -> Result<MsixTable, PciError> {
        let bad_cap = PciError::InvalidCapability { offset };
        if !(1..=MSIX_MAX_ENTRIES).contains(&entries)
            || usize::from(offset) + 12 > 256
            || self.msix_cap.is_some()
            || !table_offset.is_multiple_of(8)
            || !pba_offset.is_multiple_of(8)
        {
            return Err(bad_cap);
        }
        let table_len = u64::from(entries) * MSIX_ENTRY_SIZE;
        let pba_len = u64::from(entries).div_ceil(64) * 8;
        let fits = |bar: u8, start: u32, len: u64| {
            self.bars.get(usize::from(bar)).copied().flatten().is_some_and(|b| {
                b.kind != super::BarKind::Io && u64::from(start) + len <= b.size
            })
        };
        if !fits(table_bar, table_offset, table_len) || !fits(pba_bar, pba_offset, pba_len) {
            return Err(bad_cap);
        }
        let overlap = table_bar == pba_bar
            && u64::from(table_offset) < u64::from(pba_offset) + pba_len
            && u64::from(pba_offset) < u64::from(table_offset) + table_len;
        if overlap {
            return Err(bad_cap);
        }
        self.add_capability(offset, PCI_CAP_ID_MSIX)?;
        let o = usize::from(offset);
        self.set_u16(o + MSIX_CONTROL, entries - 1);
        let writable = MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK;
        self.set_writable(o + MSIX_CONTROL, &writable.to_le_bytes());
        self.set_u32(o + MSIX_TABLE, table_offset | u32::from(table_bar));
        self.set_u32(o + MSIX_PBA, pba_offset | u32::from(pba_bar));
        self.msix_cap = Some(offset);
        Ok(MsixTable::new(
            usize::from(table_bar),
            u64::from(table_offset),
            usize::from(pba_bar),
            u64::from(pba_offset),
            entries,
        ))
    }

    fn msix_control(&self) -> u16 {
        self.msix_cap.map_or(0, |o| self.u16(usize::from(o) + MSIX_CONTROL))
    }

    /// Whether the guest enabled MSI-X (then the function must not use INTx).
    pub fn msix_enabled(&self) -> bool {
        self.msix_control() & MSIX_CTRL_ENABLE != 0
    }

    /// Whether the guest set the MSI-X Function Mask.
    pub fn msix_function_masked(&self) -> bool {
        self.msix_control() & MSIX_CTRL_FUNCTION_MASK != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) address: u64,
    pub(super) data: u32,
    pub(super) control: u32,
}

const RESET_ENTRY: Entry = Entry { address: 0, data: 0, control: MSIX_VECTOR_MASKED };

/// The MSI-X vector table and PBA of one function.
#[derive(Clone, Debug)]
pub struct MsixTable {
    pub(super) entries: Vec<Entry>,
    pub(super) pending: Vec<u64>,
    table_bar: usize,
    table_offset: u64,
    pba_bar: usize,
    pba_offset: u64,
    pub(super) enabled: bool,
    pub(super) function_masked: bool,
}

impl MsixTable {
    fn new(table_bar: usize, table_offset: u64, pba_bar: usize, pba_offset: u64, entries: u16) -> Self {
        MsixTable {
            entries: vec![RESET_ENTRY; usize::from(entries)],
            pending: vec![0; usize::from(entries).div_ceil(64)],
            table_bar,
            table_offset,
            pba_bar,
            pba_offset,
            enabled: false,
            function_masked: false,
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Power-on state: every vector masked with a zero message, nothing pending, disabled.
    pub fn reset(&mut self) {
        self.entries.fill(RESET_ENTRY);
        self.pending.fill(0);
        self.enabled = false;
        self.function_masked = false;
    }

    /// Takes Enable and Function Mask from the capability in `cfg`, then sends the pending
    /// vectors that are deliverable now. Call after every configuration write.
    pub fn sync_control(&mut self, cfg: &ConfigSpace, sink: &dyn MsiSink) {
        self.enabled = cfg.msix_enabled();
        self.function_masked = cfg.msix_function_masked();
        for vector in 0..self.entries.len() {
            self.deliver_if_pending(vector, sink);
        }
    }

    /// Whether MSI-X is enabled (as of the last [`Self::sync_control`]).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `vector` is masked by its own Mask bit or by the Function Mask.
    pub fn masked(&self, vector: usize) -> bool {
        self.function_masked || self.entries.get(vector).is_none_or(|e| e.control & MSIX_VECTOR_MASKED != 0)
    }

    /// Whether `vector`'s pending bit is set.
    pub fn pending(&self, vector: usize) -> bool {
        self.pending.get(vector / 64).is_some_and(|w| w & (1 << (vector % 64)) != 0)
    }

    fn set_pending(&mut self, vector: usize, on: bool) {
        if let Some(w) = self.pending.get_mut(vector / 64) {
            if on {
                *w |= 1 << (vector % 64);
            } else {
                *w &= !(1 << (vector % 64));
            }
        }
    }

    /// `vector`'s `(address, data)`, whatever its masks.
    pub fn message(&self, vector: usize) -> Option<(u64, u32)> {
        self.entries.get(vector).map(|e| (e.address, e.data))
    }

    /// Signals `vector`: sends its message if MSI-X is enabled and it is not masked, else
    /// (enabled but masked) sets its pending bit. Returns whether a message went out; `false`
    /// also when MSI-X is disabled or the vector does not exist (then nothing happens).
    pub fn notify(&mut self, vector: usize, sink: &dyn MsiSink) -> bool {
        if !self.enabled || vector >= self.entries.len() {
            return false;
        }
        if self.masked(vector) {
            self.set_pending(vector, true);
            return false;
        }
        let e = self.entries[vector];
        sink.send_msi(e.address, e.data);
        true
    }

    fn deliver_if_pending(&mut self, vector: usize, sink: &dyn MsiSink) {
        if self.enabled && self.pending(vector) && !self.masked(vector) {
            self.set_pending(vector, false);
            let e = self.entries[vector];
            sink.send_msi(e.address, e.data);
        }
    }

    /// Serves a read of BAR `bar` at `offset` if it falls in the table or the PBA; returns
    /// whether it did.
    pub fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        if bar == self.table_bar && in_range(offset, data.len(), self.table_offset, self.table_len()) {
            self.table_read(offset - self.table_offset, data);
            true
        } else if bar == self.pba_bar && in_range(offset, data.len(), self.pba_offset, self.pba_len()) {
            self.pba_read(offset - self.pba_offset, data);
            true
        } else {
            false
        }
    }

    /// Serves a write to BAR `bar` at `offset` if it falls in the table or the PBA (which is
    /// read-only); returns whether it did. Unmasking a pending vector sends it through `sink`.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], sink: &dyn MsiSink) -> bool {
        if bar == self.table_bar && in_range(offset, data.len(), self.table_offset, self.table_len()) {
            self.table_write(offset - self.table_offset, data, sink);
            true
        } else {
            bar == self.pba_bar && in_range(offset, data.len(), self.pba_offset, self.pba_len())
        }
    }

    fn table_len(&self) -> u64 {
        self.entries.len() as u64 * MSIX_ENTRY_SIZE
    }

    fn pba_len(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    fn table_dword(&self, offset: u64) -> u32 {
        let Some(e) = self.entries.get((offset / MSIX_ENTRY_SIZE) as usize) else {
            return u32::MAX;
        };
        match offset % MSIX_ENTRY_SIZE {
            MSIX_ENTRY_ADDR_LO => e.address as u32,
            MSIX_ENTRY_ADDR_HI => (e.address >> 32) as u32,
            MSIX_ENTRY_DATA => e.data,
            _ => e.control,
        }
    }

    /// Read at `offset` into the table: an aligned dword or qword.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        match dword_access(offset, data.len()) {
            Some(n) => {
                for i in 0..n {
                    let v = self.table_dword(offset + 4 * i as u64);
                    data[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            None => data.fill(0xFF),
        }
    }

    /// Write at `offset` into the table: an aligned dword or qword (others are dropped).
    pub fn table_write(&mut self, offset: u64, data: &[u8], sink: &dyn MsiSink) {
        let Some(n) = dword_access(offset, data.len()) else { return };
        for i in 0..n {
            let off = offset + 4 * i as u64;
            let v = u32::from_le_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]);
            let vector = (off / MSIX_ENTRY_SIZE) as usize;
            let Some(e) = self.entries.get_mut(vector) else { return };
            match off % MSIX_ENTRY_SIZE {
                MSIX_ENTRY_ADDR_LO => e.address = (e.address & !0xFFFF_FFFF) | u64::from(v & !3),
                MSIX_ENTRY_ADDR_HI => e.address = (e.address & 0xFFFF_FFFF) | u64::from(v) << 32,
                MSIX_ENTRY_DATA => e.data = v,
                _ => {
                    // Only the Mask bit is implemented; the rest is reserved (reads 0).
                    e.control = v & MSIX_VECTOR_MASKED;
                    self.deliver_if_pending(vector, sink);
                }
            }
        }
    }

    /// Read at `offset` into the PBA: an aligned dword or qword.
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        match dword_access(offset, data.len()) {
            Some(n) => {
                for i in 0..n {
                    let off = offset + 4 * i as u64;
                    let word = self.pending.get((off / 8) as usize).copied().unwrap_or(0);
                    let v = (word >> (8 * (off % 8))) as u32;
                    data[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            None => data.fill(0xFF),
        }
    }
}

/// Number of dwords in an aligned dword or qword access.
fn dword_access(offset: u64, len: usize) -> Option<usize> {
    match len {
        4 if offset.is_multiple_of(4) => Some(1),
        8 if offset.is_multiple_of(8) => Some(2),
        _ => None,
    }
}

fn in_range(offset: u64, len: usize, start: u64, region_len: u64) -> bool {
    offset >= start && offset.checked_add(len as u64).is_some_and(|end| end <= start + region_len)
}
