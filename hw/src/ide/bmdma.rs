//! Bus-master IDE (SFF-8038i rev 1.0): the per-channel registers in BAR4 and the transfer
//! engine that walks a Physical Region Descriptor table.
//!
//! Registers, 8 bytes per channel: +0 command (bit 0 start/stop, bit 3 direction: 1 = the
//! controller writes memory), +2 status (bit 0 active, bit 1 error and bit 2 interrupt,
//! both write-1-to-clear, bits 5/6 "drive 0/1 DMA capable" plain storage, bit 7 simplex 0),
//! +4 the PRD table address (dword aligned).
//!
//! A PRD entry is two dwords: the physical address of a memory region, then its byte count
//! in bits 15:0 (bit 0 ignored, 0 meaning 64 KiB) and end-of-table in bit 31.

use ferrite_block::{Disk, DiskError};
use ferrite_memory::{Dma, DmaError};
use std::sync::Arc;

pub(crate) const BM_CMD_START: u8 = 0x01;
pub(crate) const BM_CMD_TO_MEMORY: u8 = 0x08;
pub(crate) const BM_ST_ACTIVE: u8 = 0x01;
pub(crate) const BM_ST_ERROR: u8 = 0x02;
pub(crate) const BM_ST_INTERRUPT: u8 = 0x04;
const BM_ST_DRIVE_DMA: u8 = 0x60;

/// Largest piece of a transfer buffered at a time.
const CHUNK: usize = 128 * 1024;
/// A table with this many entries and no end-of-table bit is taken as ending there (it can
/// only be garbage: a real table lies within one 64 KiB page, 8192 entries).
const MAX_ENTRIES: u32 = 65536;

/// One channel's bus-master registers.
#[derive(Default)]
pub(crate) struct BusMaster {
    pub cmd: u8,
    pub status: u8,
    pub prd: u32,
    /// Set by starting the engine, cleared when a transfer takes it: one transfer per start.
    pub armed: bool,
}

impl BusMaster {
    pub(crate) fn read(&self, reg: u8) -> u8 {
        match reg {
            0 => self.cmd,
            2 => self.status,
            4..=7 => (self.prd >> (8 * (reg - 4))) as u8,
            _ => 0,
        }
    }

    /// A guest write; returns true if it started the engine.
    pub(crate) fn write(&mut self, reg: u8, value: u8) -> bool {
        match reg {
            0 => {
                let was = self.cmd & BM_CMD_START != 0;
                self.cmd = value & (BM_CMD_START | BM_CMD_TO_MEMORY);
                let now = self.cmd & BM_CMD_START != 0;
                if now && !was {
                    self.status |= BM_ST_ACTIVE;
                    self.armed = true;
                    return true;
                }
                if was && !now {
                    // Stopping the engine abandons the rest of the table.
                    self.status &= !BM_ST_ACTIVE;
                    self.armed = false;
                }
            }
            2 => {
                self.status = (self.status & !BM_ST_DRIVE_DMA) | (value & BM_ST_DRIVE_DMA);
                self.status &= !(value & (BM_ST_ERROR | BM_ST_INTERRUPT));
            }
            4..=7 => {
                let shift = 8 * u32::from(reg - 4);
                self.prd = (self.prd & !(0xFF << shift)) | u32::from(value) << shift;
                self.prd &= !3;
            }
            _ => {}
        }
        false
    }
}

/// What a DMA command moves.
pub(crate) enum DmaData {
    /// Device to memory from a buffer (ATAPI replies).
    Buffer(Vec<u8>),
    /// Device to memory, read from the disk.
    DiskRead { disk: Arc<dyn Disk>, offset: u64, len: u64 },
    /// Memory to device, written to the disk (`flush` with the write cache off).
    DiskWrite { disk: Arc<dyn Disk>, offset: u64, len: u64, flush: bool },
}

impl DmaData {
    fn len(&self) -> u64 {
        match self {
            DmaData::Buffer(b) => b.len() as u64,
            DmaData::DiskRead { len, .. } | DmaData::DiskWrite { len, .. } => *len,
        }
    }

    pub(crate) fn to_disk(&self) -> bool {
        matches!(self, DmaData::DiskWrite { .. })
    }
}

/// A transfer for the I/O thread.
pub(crate) struct DmaJob {
    pub dma: Dma,
    pub prd: u32,
    pub data: DmaData,
}

/// How a transfer ended.
pub(crate) enum DmaEnd {
    /// All data moved. `exhausted`: the table ended exactly with it (else Active stays set).
    Done { exhausted: bool },
    /// The table ended before the data did; the device still waits for the rest.
    Short,
    /// A table entry or region lies outside guest RAM.
    Bus,
    Disk(DiskError),
}

enum Stop {
    Short,
    Bus,
}

impl From<DmaError> for Stop {
    fn from(_: DmaError) -> Self {
        Stop::Bus
    }
}

/// A walk through a PRD table.
struct Prd<'a> {
    dma: &'a Dma,
    next: u64,
    entries: u32,
    addr: u64,
    left: u32,
    last: bool,
}

impl<'a> Prd<'a> {
    fn new(dma: &'a Dma, table: u32) -> Self {
        Prd { dma, next: u64::from(table), entries: 0, addr: 0, left: 0, last: false }
    }

    /// The next memory region, at most `max` bytes; `None` past the end of the table.
    fn region(&mut self, max: usize) -> Result<Option<(u64, usize)>, DmaError> {
        if self.left == 0 {
            if self.last || self.entries >= MAX_ENTRIES {
                return Ok(None);
            }
            let addr = self.dma.read_u32(self.next)?;
            let count = self.dma.read_u32(self.next + 4)?;
            self.next += 8;
            self.entries += 1;
            self.addr = u64::from(addr & !1);
            self.left = match count & 0xFFFE {
                0 => 0x10000,
                n => n,
            };
            self.last = count & 0x8000_0000 != 0;
        }
        let n = max.min(self.left as usize);
        let region = (self.addr, n);
        self.addr += n as u64;
        self.left -= n as u32;
        Ok(Some(region))
    }

    /// Copies `data` into the table's regions.
    fn scatter(&mut self, data: &[u8]) -> Result<(), Stop> {
        let mut done = 0;
        while done < data.len() {
            let (addr, n) = self.region(data.len() - done)?.ok_or(Stop::Short)?;
            self.dma.write(addr, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Fills `buf` from the table's regions.
    fn gather(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        let mut done = 0;
        while done < buf.len() {
            let (addr, n) = self.region(buf.len() - done)?.ok_or(Stop::Short)?;
            self.dma.read(addr, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn exhausted(&self) -> bool {
        self.left == 0 && self.last
    }
}

impl DmaJob {
    /// Moves the data in chunks, so a large command never needs a buffer of its size.
    pub(crate) fn run(self) -> DmaEnd {
        let mut prd = Prd::new(&self.dma, self.prd);
        let total = self.data.len();
        let mut buf = vec![0; CHUNK.min(total as usize)];
        let mut done = 0u64;
        while done < total {
            let n = CHUNK.min((total - done) as usize);
            let step = match &self.data {
                DmaData::Buffer(b) => prd.scatter(&b[done as usize..done as usize + n]),
                DmaData::DiskRead { disk, offset, .. } => {
                    if let Err(e) = disk.read_at(offset + done, &mut buf[..n]) {
                        return DmaEnd::Disk(e);
                    }
                    prd.scatter(&buf[..n])
                }
                DmaData::DiskWrite { disk, offset, .. } => {
                    let gathered = prd.gather(&mut buf[..n]);
                    if gathered.is_ok() {
                        if let Err(e) = disk.write_at(offset + done, &buf[..n]) {
                            return DmaEnd::Disk(e);
                        }
                    }
                    gathered
                }
            };
            match step {
                Ok(()) => done += n as u64,
                Err(Stop::Short) => return DmaEnd::Short,
                Err(Stop::Bus) => return DmaEnd::Bus,
            }
        }
        if let DmaData::DiskWrite { disk, flush: true, .. } = &self.data {
            if let Err(e) = disk.flush() {
                return DmaEnd::Disk(e);
            }
        }
        DmaEnd::Done { exhausted: prd.exhausted() }
    }
}
