//! ATA commands (ATA/ATAPI-6 chapter 8): those of a hard disk, and the few both device
//! kinds share (SET FEATURES, power management).

use super::bmdma::DmaData;
use super::channel::{
    Blocks, Channel, Cont, DataIn, DataOut, DmaPlan, Kind, Phase, Target, DEV_LBA, ER_ABRT, ER_IDNF, ER_UNC,
    REG_FEATURE, REG_LBAH, REG_LBAL, REG_LBAM, REG_NSECT, ST_READY,
};
use super::identify::{self, Common, DiskParams, DEFAULT_HEADS, DEFAULT_SPT, MAX_MULTIPLE};
use super::io::Op;
use ferrite_block::{Disk, DiskError};
use std::sync::Arc;

const SECTOR: u64 = 512;

/// What an ATA disk remembers beyond the task file.
pub(crate) struct DiskState {
    pub disk: Arc<dyn Disk>,
    pub sectors: u64,
    /// Current CHS translation (INITIALIZE DEVICE PARAMETERS).
    pub heads: u8,
    pub spt: u8,
    /// READ/WRITE MULTIPLE block size in sectors; 0 when multiple mode is off.
    pub multiple: u8,
    pub write_cache: bool,
    pub look_ahead: bool,
    /// READ BUFFER / WRITE BUFFER contents.
    pub buffer: Vec<u8>,
}

impl DiskState {
    pub(crate) fn new(disk: Arc<dyn Disk>) -> Self {
        DiskState {
            sectors: disk.size() / SECTOR,
            disk,
            heads: DEFAULT_HEADS,
            spt: DEFAULT_SPT,
            multiple: MAX_MULTIPLE,
            write_cache: true,
            look_ahead: true,
            buffer: vec![0; SECTOR as usize],
        }
    }
}

/// Error register bits for a failed disk access.
pub(crate) fn error_bits(e: &DiskError, write: bool) -> u8 {
    match e {
        DiskError::OutOfRange { .. } => ER_IDNF | ER_ABRT,
        DiskError::Io(_) if !write => ER_UNC,
        _ => ER_ABRT,
    }
}

impl Channel {
    /// Runs command `cmd` on `unit` (present, not busy).
    pub(super) fn execute(&mut self, unit: usize, cmd: u8) {
        if self.common_command(unit, cmd) {
            return;
        }
        if self.devs[unit].is_cd() {
            return self.packet_device_command(unit, cmd);
        }
        match cmd {
            0x20 | 0x21 => self.read_pio(unit, false, false),
            0x24 => self.read_pio(unit, true, false),
            0xC4 => self.read_pio(unit, false, true),
            0x29 => self.read_pio(unit, true, true),
            0x30 | 0x31 => self.write_pio(unit, false, false),
            0x34 => self.write_pio(unit, true, false),
            0xC5 => self.write_pio(unit, false, true),
            0x39 => self.write_pio(unit, true, true),
            0xC8 | 0xC9 => self.dma_command(unit, false, false),
            0x25 => self.dma_command(unit, true, false),
            0xCA | 0xCB => self.dma_command(unit, false, true),
            0x35 => self.dma_command(unit, true, true),
            0x40 | 0x41 => self.verify(unit, false),
            0x42 => self.verify(unit, true),
            0xE7 | 0xEA => self.flush(unit),
            0xEC => self.identify_disk(unit),
            0xC6 => self.set_multiple(unit),
            0x91 => self.initialize_parameters(unit),
            0xE4 => {
                let buf = self.disk_state(unit).map(|d| d.buffer.clone()).unwrap_or_default();
                self.start_data_in(unit, DataIn::buffer(buf, Blocks::Ata(SECTOR as usize)));
            }
            0xE8 => self.start_data_out(unit, vec![0; SECTOR as usize], Target::Buffer),
            // RECALIBRATE (0x1x, obsolete) and SEEK: nothing to move.
            0x10..=0x1F | 0x70 => self.ok(unit),
            // NOP, DEVICE RESET, PACKET, IDENTIFY PACKET DEVICE and everything unknown.
            _ => self.fail(unit, ER_ABRT),
        }
    }

    /// SET FEATURES and the power management commands; false for any other command.
    fn common_command(&mut self, unit: usize, cmd: u8) -> bool {
        let d = &mut self.devs[unit];
        match cmd {
            0xEF => {
                self.set_features(unit);
                return true;
            }
            // STANDBY IMMEDIATE, STANDBY, SLEEP (treated as standby: no reset needed after).
            0xE0 | 0xE2 | 0xE6 => d.standby = true,
            // IDLE IMMEDIATE, IDLE.
            0xE1 | 0xE3 => d.standby = false,
            // CHECK POWER MODE: 00h standby, FFh active or idle.
            0xE5 => d.tf.cur[REG_NSECT] = if d.standby { 0x00 } else { 0xFF },
            _ => return false,
        }
        self.ok(unit);
        true
    }

    fn set_features(&mut self, unit: usize) {
        let d = &mut self.devs[unit];
        let value = d.tf.cur[REG_NSECT];
        let disk = match &mut d.kind {
            Kind::Disk(disk) => Some(disk),
            _ => None,
        };
        match (d.tf.cur[REG_FEATURE], disk) {
            (0x03, _) => {
                // Transfer mode: 00h/01h PIO default, 08h+n PIO n, 20h+n MW DMA n, 40h+n UDMA n.
                let mode = value & 7;
                match value >> 3 {
                    0 if mode <= 1 => {}
                    1 if mode <= 4 => {}
                    4 if mode <= 2 => (d.mwdma, d.udma) = (Some(mode), None),
                    8 if mode <= 5 => (d.mwdma, d.udma) = (None, Some(mode)),
                    _ => return self.fail(unit, ER_ABRT),
                }
            }
            (0x02, Some(disk)) => disk.write_cache = true,
            (0x82, Some(disk)) => {
                // Turning the cache off writes it out first.
                disk.write_cache = false;
                let op = Op::Flush { disk: disk.disk.clone() };
                d.phase = Phase::Busy(Cont::Flush);
                return self.submit(unit, op);
            }
            (0xAA, Some(disk)) => disk.look_ahead = true,
            (0x55, Some(disk)) => disk.look_ahead = false,
            // Revert to power-on defaults after reset: disable/enable (no saved settings).
            (0x66 | 0xCC, _) => {}
            _ => return self.fail(unit, ER_ABRT),
        }
        self.ok(unit);
    }

    fn disk_state(&self, unit: usize) -> Option<&DiskState> {
        match &self.devs[unit].kind {
            Kind::Disk(d) => Some(d),
            _ => None,
        }
    }

    /// First sector and count of a read/write command, from LBA28, CHS or LBA48 registers;
    /// the error bits if it does not lie on the disk.
    fn sector_range(&self, unit: usize, ext: bool) -> Result<(u64, u64), u8> {
        let d = &self.devs[unit];
        let disk = self.disk_state(unit).ok_or(ER_ABRT)?;
        let (cur, prev) = (&d.tf.cur, &d.tf.prev);
        let not_found = ER_IDNF | ER_ABRT;
        let (lba, count) = if ext {
            let lba = u64::from_le_bytes([
                cur[REG_LBAL],
                cur[REG_LBAM],
                cur[REG_LBAH],
                prev[REG_LBAL],
                prev[REG_LBAM],
                prev[REG_LBAH],
                0,
                0,
            ]);
            let count = u16::from_le_bytes([cur[REG_NSECT], prev[REG_NSECT]]);
            (lba, if count == 0 { 65536 } else { u64::from(count) })
        } else {
            let count = match cur[REG_NSECT] {
                0 => 256,
                n => u64::from(n),
            };
            let head = self.device & 0x0F;
            let lba = if self.device & DEV_LBA != 0 {
                u64::from_le_bytes([cur[REG_LBAL], cur[REG_LBAM], cur[REG_LBAH], head, 0, 0, 0, 0])
            } else {
                let cylinder = u64::from(u16::from_le_bytes([cur[REG_LBAM], cur[REG_LBAH]]));
                let sector = cur[REG_LBAL];
                if sector == 0 || sector > disk.spt || head >= disk.heads {
                    return Err(not_found);
                }
                (cylinder * u64::from(disk.heads) + u64::from(head)) * u64::from(disk.spt) + u64::from(sector)
                    - 1
            };
            (lba, count)
        };
        if lba + count > disk.sectors {
            return Err(not_found);
        }
        Ok((lba, count))
    }

    /// The DRQ block size of a PIO command; `None` for a MULTIPLE command with multiple mode
    /// off (ATA-6: aborted).
    fn block_size(&self, unit: usize, multiple: bool) -> Option<usize> {
        let disk = self.disk_state(unit)?;
        match (multiple, disk.multiple) {
            (false, _) => Some(SECTOR as usize),
            (true, 0) => None,
            (true, m) => Some(usize::from(m) * SECTOR as usize),
        }
    }

    /// Validates a read/write command: block size, range, and for writes a writable disk.
    fn transfer(&self, unit: usize, ext: bool, multiple: bool, write: bool) -> Result<(Arc<dyn Disk>, u64, u64, usize), u8> {
        let block = self.block_size(unit, multiple).ok_or(ER_ABRT)?;
        let disk = self.disk_state(unit).ok_or(ER_ABRT)?;
        if write && disk.disk.read_only() {
            return Err(ER_ABRT);
        }
        let (lba, count) = self.sector_range(unit, ext)?;
        Ok((disk.disk.clone(), lba * SECTOR, count * SECTOR, block))
    }

    fn write_through(&self, unit: usize) -> bool {
        self.disk_state(unit).is_some_and(|d| !d.write_cache)
    }

    fn read_pio(&mut self, unit: usize, ext: bool, multiple: bool) {
        match self.transfer(unit, ext, multiple, false) {
            Ok((disk, offset, len, block)) => {
                self.devs[unit].standby = false;
                self.start_data_in(unit, DataIn::from_disk(disk, offset, len, Blocks::Ata(block)));
            }
            Err(e) => self.fail(unit, e),
        }
    }

    fn write_pio(&mut self, unit: usize, ext: bool, multiple: bool) {
        match self.transfer(unit, ext, multiple, true) {
            Ok((disk, offset, left, block)) => {
                self.devs[unit].standby = false;
                let flush = self.write_through(unit);
                let first = vec![0; block.min(left as usize)];
                self.start_data_out(unit, first, Target::Disk { disk, offset, left, block, flush });
            }
            Err(e) => self.fail(unit, e),
        }
    }

    /// ATA-6 PIO data-out: DRQ for the first block without an interrupt.
    fn start_data_out(&mut self, unit: usize, buf: Vec<u8>, target: Target) {
        let d = &mut self.devs[unit];
        d.status = ST_READY;
        d.phase = Phase::Out(DataOut { buf, pos: 0, target });
    }

    /// The host filled a data-out block.
    pub(super) fn block_filled(&mut self, unit: usize, mut out: DataOut) {
        let op = match &mut out.target {
            Target::Buffer => {
                if let Kind::Disk(d) = &mut self.devs[unit].kind {
                    d.buffer = std::mem::take(&mut out.buf);
                }
                return self.ok(unit);
            }
            Target::Disk { disk, offset, flush, .. } => {
                Op::Write { disk: disk.clone(), offset: *offset, data: std::mem::take(&mut out.buf), flush: *flush }
            }
        };
        self.devs[unit].phase = Phase::Busy(Cont::Write(out));
        self.submit(unit, op);
    }

    /// A data-out block reached the disk: ask for the next one or finish, with an interrupt
    /// either way.
    pub(super) fn block_written(&mut self, unit: usize, mut out: DataOut, result: Result<(), DiskError>) {
        if let Err(e) = result {
            return self.fail(unit, error_bits(&e, true));
        }
        let Target::Disk { offset, left, block, .. } = &mut out.target else {
            return self.ok(unit);
        };
        let n = (*block as u64).min(*left);
        *offset += n;
        *left -= n;
        if *left == 0 {
            return self.ok(unit);
        }
        out.buf = vec![0; (*block as u64).min(*left) as usize];
        out.pos = 0;
        self.devs[unit].phase = Phase::Out(out);
        self.raise(unit);
    }

    fn dma_command(&mut self, unit: usize, ext: bool, write: bool) {
        match self.transfer(unit, ext, false, write) {
            Ok((disk, offset, len, _)) => {
                self.devs[unit].standby = false;
                let data = if write {
                    DmaData::DiskWrite { disk, offset, len, flush: self.write_through(unit) }
                } else {
                    DmaData::DiskRead { disk, offset, len }
                };
                self.start_dma(unit, DmaPlan { data, packet: false });
            }
            Err(e) => self.fail(unit, e),
        }
    }

    /// READ VERIFY SECTORS: the range is checked; the image itself needs no verifying.
    fn verify(&mut self, unit: usize, ext: bool) {
        match self.sector_range(unit, ext) {
            Ok(_) => self.ok(unit),
            Err(e) => self.fail(unit, e),
        }
    }

    /// FLUSH CACHE (EXT): completes only once the disk's flush has returned.
    fn flush(&mut self, unit: usize) {
        let Some(disk) = self.disk_state(unit).map(|d| d.disk.clone()) else {
            return self.fail(unit, ER_ABRT);
        };
        self.devs[unit].phase = Phase::Busy(Cont::Flush);
        self.submit(unit, Op::Flush { disk });
    }

    fn identify_disk(&mut self, unit: usize) {
        let d = &self.devs[unit];
        let Kind::Disk(disk) = &d.kind else {
            return self.fail(unit, ER_ABRT);
        };
        let common = Common { model: &d.model, serial: &d.serial, mwdma: d.mwdma, udma: d.udma, unit };
        let params = DiskParams {
            sectors: disk.sectors,
            heads: disk.heads,
            spt: disk.spt,
            multiple: disk.multiple,
            write_cache: disk.write_cache,
            look_ahead: disk.look_ahead,
        };
        let data = identify::identify_disk(&common, &params);
        self.start_data_in(unit, DataIn::buffer(data, Blocks::Ata(SECTOR as usize)));
    }

    /// SET MULTIPLE MODE: a power of two up to the maximum, or 0 to turn it off.
    fn set_multiple(&mut self, unit: usize) {
        let d = &mut self.devs[unit];
        let n = d.tf.cur[REG_NSECT];
        match &mut d.kind {
            Kind::Disk(disk) if n <= MAX_MULTIPLE && (n == 0 || n.is_power_of_two()) => {
                disk.multiple = n;
                self.ok(unit);
            }
            _ => self.fail(unit, ER_ABRT),
        }
    }

    /// INITIALIZE DEVICE PARAMETERS: the CHS translation, sectors per track from the sector
    /// count register and heads from the device register.
    fn initialize_parameters(&mut self, unit: usize) {
        let heads = (self.device & 0x0F) + 1;
        let d = &mut self.devs[unit];
        let spt = d.tf.cur[REG_NSECT];
        match &mut d.kind {
            Kind::Disk(disk) if spt != 0 => {
                (disk.heads, disk.spt) = (heads, spt);
                self.ok(unit);
            }
            _ => self.fail(unit, ER_ABRT),
        }
    }
}
