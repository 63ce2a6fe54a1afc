//! One IDE channel: two device slots behind a shared task file interface (ATA-6 chapter 7),
//! device selection and control (nIEN, SRST, HOB), the interrupt line, PIO data phases, and
//! the hand-over of disk work and DMA to the I/O thread.
//!
//! Each device keeps its own copy of the features, sector count and LBA registers (their
//! signatures and command outputs differ): writes go to both (ATA-6 9.16), reads come from
//! the selected one. The device register is the same in both, so it is kept once. A device's
//! BSY and DRQ bits follow its [`Phase`]; the other status bits are stored.

use super::ata::DiskState;
use super::atapi::CdState;
use super::bmdma::{BusMaster, DmaData, DmaEnd, DmaJob, BM_ST_ACTIVE, BM_ST_ERROR, BM_ST_INTERRUPT};
use super::io::{Op, Outcome, Request};
use super::{DriveKind, IdeDrive};
use crate::IrqLine;
use ferrite_block::{Disk, DiskError};
use ferrite_memory::Dma;
use std::sync::Arc;

pub(crate) const ST_BSY: u8 = 0x80;
pub(crate) const ST_DRDY: u8 = 0x40;
/// Device seek complete (obsolete in ATA-6, still expected set by old drivers).
pub(crate) const ST_DSC: u8 = 0x10;
pub(crate) const ST_DRQ: u8 = 0x08;
pub(crate) const ST_ERR: u8 = 0x01;
/// Status of a device ready for commands.
pub(crate) const ST_READY: u8 = ST_DRDY | ST_DSC;

pub(crate) const ER_UNC: u8 = 0x40;
pub(crate) const ER_IDNF: u8 = 0x10;
pub(crate) const ER_ABRT: u8 = 0x04;

const DC_NIEN: u8 = 0x02;
const DC_SRST: u8 = 0x04;
const DC_HOB: u8 = 0x80;

pub(crate) const DEV_LBA: u8 = 0x40;
const DEV_DEV1: u8 = 0x10;

/// Command block register numbers (the offset from 0x1F0/0x170).
pub(crate) const REG_FEATURE: usize = 1;
pub(crate) const REG_NSECT: usize = 2;
pub(crate) const REG_LBAL: usize = 3;
pub(crate) const REG_LBAM: usize = 4;
pub(crate) const REG_LBAH: usize = 5;

/// EXECUTE DEVICE DIAGNOSTIC, run by both devices whichever is selected.
const CMD_DIAGNOSTIC: u8 = 0x90;
/// DEVICE RESET, accepted by a packet device even while it is busy.
const CMD_DEVICE_RESET: u8 = 0x08;

/// Bytes read from the disk at a time for a PIO data-in command.
const FETCH_CHUNK: u64 = 64 * 1024;

/// Features/sector count/LBA registers (indexed by register number 1-5), each with the
/// previous value written, which 48-bit commands use as the high-order byte (ATA-6 6.20).
#[derive(Default, Clone, Copy)]
pub(crate) struct TaskFile {
    pub cur: [u8; 6],
    pub prev: [u8; 6],
}

impl TaskFile {
    fn write(&mut self, reg: usize, value: u8) {
        self.prev[reg] = self.cur[reg];
        self.cur[reg] = value;
    }

    /// The signature a device leaves after reset and diagnostics (ATA-6 9.12).
    pub(crate) fn set_signature(&mut self, packet: bool) {
        self.cur[REG_NSECT] = 1;
        self.cur[REG_LBAL] = 1;
        let (mid, high) = if packet { (0x14, 0xEB) } else { (0, 0) };
        self.cur[REG_LBAM] = mid;
        self.cur[REG_LBAH] = high;
    }
}

pub(crate) enum Kind {
    Absent,
    Disk(DiskState),
    Cd(CdState),
}

/// Where a command is.
#[derive(Default)]
pub(crate) enum Phase {
    #[default]
    Idle,
    /// BSY: a disk job is running; what to do with its result.
    Busy(Cont),
    /// DRQ, device to host.
    In(DataIn),
    /// DRQ, host to device.
    Out(DataOut),
    /// DRQ, receiving an ATAPI command packet.
    Packet(PacketIn),
    /// BSY: a DMA command waits for the bus master to be started.
    DmaReady(DmaPlan),
    /// BSY: the bus master ran out of PRD entries before the data; only a reset ends this.
    Stalled,
}

impl Phase {
    fn busy(&self) -> bool {
        matches!(self, Phase::Busy(_) | Phase::DmaReady(_) | Phase::Stalled)
    }
}

/// What a job's completion continues.
pub(crate) enum Cont {
    Fetch(DataIn),
    Write(DataOut),
    Flush,
    Dma { packet: bool, to_disk: bool },
}

/// DRQ block sizing: ATA blocks of a fixed size (a sector or the multiple count), ATAPI
/// blocks up to the byte count limit.
#[derive(Clone, Copy)]
pub(crate) enum Blocks {
    Ata(usize),
    Atapi(usize),
}

/// A PIO data-in phase: data already read, and what is still to be read from the disk.
pub(crate) struct DataIn {
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// End of the current DRQ block in `buf`.
    pub(super) end: usize,
    pub(super) fetch: Option<Fetch>,
    pub(super) blocks: Blocks,
}

pub(super) struct Fetch {
    pub(super) disk: Arc<dyn Disk>,
    pub(super) offset: u64,
    pub(super) left: u64,
}

impl DataIn {
    pub(crate) fn buffer(buf: Vec<u8>, blocks: Blocks) -> Self {
        DataIn { buf, pos: 0, end: 0, fetch: None, blocks }
    }

    pub(crate) fn from_disk(disk: Arc<dyn Disk>, offset: u64, len: u64, blocks: Blocks) -> Self {
        DataIn { buf: Vec::new(), pos: 0, end: 0, fetch: Some(Fetch { disk, offset, left: len }), blocks }
    }
}

/// A PIO data-out phase: the block being filled and where it goes.
pub(crate) struct DataOut {
    pub buf: Vec<u8>,
    pub pos: usize,
    pub target: Target,
}

pub(crate) enum Target {
    /// `left` bytes from `offset` on, the current block included.
    Disk { disk: Arc<dyn Disk>, offset: u64, left: u64, block: usize, flush: bool },
    /// WRITE BUFFER.
    Buffer,
}

pub(crate) struct PacketIn {
    pub cdb: [u8; 12],
    pub pos: usize,
    pub dma: bool,
    /// Byte count limit, even and non-zero.
    pub limit: usize,
}

pub(crate) struct DmaPlan {
    pub data: DmaData,
    pub packet: bool,
}

/// One device slot.
pub(crate) struct Device {
    pub kind: Kind,
    pub model: String,
    pub serial: String,
    pub tf: TaskFile,
    /// DRDY, DSC and ERR; BSY and DRQ come from `phase`.
    pub status: u8,
    pub error: u8,
    /// The device's interrupt request (INTRQ before nIEN gating).
    pub intrq: bool,
    /// Bumped whenever a command is abandoned, so its job's completion is dropped.
    pub gen: u64,
    pub phase: Phase,
    pub mwdma: Option<u8>,
    pub udma: Option<u8>,
    pub standby: bool,
}

impl Device {
    fn new(drive: Option<IdeDrive>) -> Self {
        let (kind, model, serial) = match drive {
            None => (Kind::Absent, String::new(), String::new()),
            Some(d) => {
                let kind = match d.kind {
                    DriveKind::Disk(disk) => Kind::Disk(DiskState::new(disk)),
                    DriveKind::Cdrom(media) => Kind::Cd(CdState::new(media)),
                };
                (kind, d.model, d.serial)
            }
        };
        let mut dev = Device {
            kind,
            model,
            serial,
            tf: TaskFile::default(),
            status: 0,
            error: 0,
            intrq: false,
            gen: 0,
            phase: Phase::Idle,
            mwdma: None,
            udma: None,
            standby: false,
        };
        dev.after_reset();
        dev
    }

    pub(crate) fn present(&self) -> bool {
        !matches!(self.kind, Kind::Absent)
    }

    pub(crate) fn is_cd(&self) -> bool {
        matches!(self.kind, Kind::Cd(_))
    }

    /// Drops the command in progress.
    fn abandon(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        self.phase = Phase::Idle;
        self.intrq = false;
    }

    /// State after a reset or diagnostics: signature, diagnostic code 01h (passed), and DRDY
    /// for ATA devices only (packet devices leave it clear).
    fn after_reset(&mut self) {
        self.tf.set_signature(self.is_cd());
        self.error = 0x01;
        self.status = if self.is_cd() { 0 } else { ST_READY };
        if let Kind::Cd(cd) = &mut self.kind {
            cd.after_reset();
        }
    }

    /// Power-on state: also forgets every setting made with SET FEATURES and friends.
    fn power_on(&mut self) {
        self.abandon();
        self.mwdma = None;
        self.udma = None;
        self.standby = false;
        match &mut self.kind {
            Kind::Disk(d) => *d = DiskState::new(d.disk.clone()),
            Kind::Cd(cd) => cd.power_on(),
            Kind::Absent => {}
        }
        self.tf = TaskFile::default();
        self.after_reset();
    }

    fn status(&self) -> u8 {
        match self.phase {
            Phase::Idle => self.status,
            Phase::In(_) | Phase::Out(_) | Phase::Packet(_) => self.status | ST_DRQ,
            _ => ST_BSY | (self.status & ST_READY),
        }
    }
}

pub(crate) struct Channel {
    pub(super) devs: [Device; 2],
    /// Device/head register, as written (SeaBIOS reads it back and compares).
    pub(super) device: u8,
    pub(super) devctl: u8,
    pub(super) bm: BusMaster,
    pub(super) dma: Option<Dma>,
    pub(super) bus_master: bool,
    pub(super) irq: Arc<dyn IrqLine + Send + Sync>,
    pub(super) irq_out: bool,
    requests: Vec<Request>,
}

impl Channel {
    pub(crate) fn new(irq: Arc<dyn IrqLine + Send + Sync>, drives: [Option<IdeDrive>; 2]) -> Self {
        let [d0, d1] = drives;
        Channel {
            devs: [Device::new(d0), Device::new(d1)],
            device: 0,
            devctl: 0,
            bm: BusMaster::default(),
            dma: None,
            bus_master: false,
            irq,
            irq_out: false,
            requests: Vec::new(),
        }
    }

    pub(crate) fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    fn sel(&self) -> usize {
        usize::from(self.device & DEV_DEV1 != 0)
    }

    fn any_present(&self) -> bool {
        self.devs.iter().any(Device::present)
    }

    fn in_reset(&self) -> bool {
        self.devctl & DC_SRST != 0
    }

    fn status(&self, unit: usize) -> u8 {
        let d = &self.devs[unit];
        match (d.present(), self.in_reset()) {
            (false, _) => 0,
            (true, true) => ST_BSY,
            (true, false) => d.status(),
        }
    }

    // ---- Guest register accesses ----

    pub(crate) fn command_read(&mut self, reg: u16, size: u8) -> u32 {
        if !self.any_present() {
            return 0;
        }
        let unit = self.sel();
        let reg = usize::from(reg);
        if reg == 0 {
            let (lo, ended) = self.read_data_word();
            let lo = u32::from(lo);
            return match size {
                // A dword access is two word cycles, but never reaches into the next block:
                // between blocks a drive drops DRQ, so the second cycle reads nothing.
                4 if !ended => lo | u32::from(self.read_data_word().0) << 16,
                4 => lo | 0xFFFF << 16,
                1 => lo & 0xFF,
                _ => lo,
            };
        }
        let d = &self.devs[unit];
        let v = match reg {
            REG_FEATURE if d.present() => d.error,
            REG_FEATURE => 0,
            REG_NSECT..=REG_LBAH if self.devctl & DC_HOB != 0 => d.tf.prev[reg],
            REG_NSECT..=REG_LBAH => d.tf.cur[reg],
            6 => self.device,
            _ => {
                let s = self.status(unit);
                self.devs[unit].intrq = false;
                self.update_irq();
                s
            }
        };
        u32::from(v)
    }

    pub(crate) fn command_write(&mut self, reg: u16, size: u8, value: u32) {
        if !self.any_present() {
            return;
        }
        let reg = usize::from(reg);
        if reg == 0 {
            if !self.write_data_word(value as u16) && size == 4 {
                self.write_data_word((value >> 16) as u16);
            }
            return;
        }
        // ATA-6: a write to any command block register clears HOB.
        self.devctl &= !DC_HOB;
        match reg {
            REG_FEATURE..=REG_LBAH => {
                for d in &mut self.devs {
                    d.tf.write(reg, value as u8);
                }
            }
            6 => {
                self.device = value as u8;
                self.update_irq();
            }
            _ => self.write_command(value as u8),
        }
    }

    pub(crate) fn alt_status(&self) -> u8 {
        self.status(self.sel())
    }

    pub(crate) fn control_write(&mut self, value: u8) {
        if !self.any_present() {
            return;
        }
        let was = self.in_reset();
        self.devctl = value & (DC_HOB | DC_SRST | DC_NIEN);
        match (was, self.in_reset()) {
            (false, true) => self.devs.iter_mut().for_each(Device::abandon),
            (true, false) => {
                self.devs.iter_mut().for_each(Device::after_reset);
                self.device = 0;
            }
            _ => {}
        }
        self.update_irq();
    }

    pub(crate) fn bm_read(&self, reg: u8) -> u8 {
        self.bm.read(reg)
    }

    pub(crate) fn bm_write(&mut self, reg: u8, value: u8) {
        if self.bm.write(reg, value) {
            self.try_dma();
        }
    }

    pub(crate) fn set_dma(&mut self, dma: Dma) {
        self.dma = Some(dma);
        self.try_dma();
    }

    pub(crate) fn set_bus_master(&mut self, on: bool) {
        self.bus_master = on;
        self.try_dma();
    }

    /// Platform reset: devices as at power-on, bus master idle, interrupt low.
    pub(crate) fn hard_reset(&mut self) {
        self.devs.iter_mut().for_each(Device::power_on);
        self.device = 0;
        self.devctl = 0;
        self.bm = BusMaster::default();
        self.update_irq();
    }

    fn write_command(&mut self, cmd: u8) {
        if self.in_reset() {
            return;
        }
        if cmd == CMD_DIAGNOSTIC {
            return self.diagnose();
        }
        let unit = self.sel();
        let d = &mut self.devs[unit];
        if !d.present() {
            return;
        }
        if d.is_cd() && cmd == CMD_DEVICE_RESET {
            // ATA-6 9.3: no interrupt after DEVICE RESET.
            d.abandon();
            d.after_reset();
            return self.update_irq();
        }
        if d.phase.busy() {
            // The host may not write a command while BSY is set; ignoring it keeps the
            // running command intact.
            return;
        }
        d.abandon();
        d.status &= !ST_ERR;
        self.update_irq();
        self.execute(unit, cmd);
    }

    /// EXECUTE DEVICE DIAGNOSTIC: both devices reset their registers; device 0 interrupts.
    fn diagnose(&mut self) {
        for d in self.devs.iter_mut().filter(|d| d.present()) {
            d.abandon();
            d.after_reset();
        }
        self.device = 0;
        let unit = if self.devs[0].present() { 0 } else { 1 };
        self.raise(unit);
    }

    // ---- Interrupts and command completion ----

    pub(super) fn raise(&mut self, unit: usize) {
        self.devs[unit].intrq = true;
        self.update_irq();
    }

    /// The level the selected device's INTRQ and nIEN put on the line.
    fn irq_level(&self) -> bool {
        let d = &self.devs[self.sel()];
        d.present() && d.intrq && self.devctl & DC_NIEN == 0 && !self.in_reset()
    }

    /// Drives the IRQ line to the level the registers imply, whatever was driven before
    /// (after a restore); unlike `update_irq` it leaves the bus master status alone.
    pub(super) fn redrive_irq(&mut self) {
        self.irq_out = self.irq_level();
        self.irq.set_level(self.irq_out);
    }

    /// Drives the line from the selected device's INTRQ and nIEN. The bus master's
    /// interrupt bit latches each assertion (SFF-8038i).
    fn update_irq(&mut self) {
        let level = self.irq_level();
        if level != self.irq_out {
            if level {
                self.bm.status |= BM_ST_INTERRUPT;
            }
            self.irq_out = level;
            self.irq.set_level(level);
        }
    }

    /// Completes a command successfully, with an interrupt.
    pub(super) fn ok(&mut self, unit: usize) {
        let d = &mut self.devs[unit];
        d.phase = Phase::Idle;
        d.status = ST_READY;
        self.raise(unit);
    }

    /// Completes a command with ERR and `error`, with an interrupt.
    pub(super) fn fail(&mut self, unit: usize, error: u8) {
        let d = &mut self.devs[unit];
        d.phase = Phase::Idle;
        d.status = ST_READY | ST_ERR;
        d.error = error;
        self.raise(unit);
    }

    /// Queues disk work for the I/O thread on behalf of `unit`'s current command.
    pub(super) fn submit(&mut self, unit: usize, op: Op) {
        self.requests.push(Request { unit, gen: self.devs[unit].gen, op });
    }

    /// A job finished: continue the command it belongs to, unless that was abandoned.
    pub(crate) fn complete(&mut self, unit: usize, gen: u64, outcome: Outcome) {
        let d = &mut self.devs[unit];
        if d.gen != gen || !matches!(d.phase, Phase::Busy(_)) {
            return;
        }
        let Phase::Busy(cont) = std::mem::take(&mut d.phase) else {
            return;
        };
        match (cont, outcome) {
            (Cont::Fetch(mut din), Outcome::Read(Ok(data))) => {
                din.buf = data;
                din.pos = 0;
                self.start_data_in(unit, din);
            }
            (Cont::Fetch(_), Outcome::Read(Err(e))) => self.io_failed(unit, &e, false),
            (Cont::Write(out), Outcome::Done(result)) => self.block_written(unit, out, result),
            (Cont::Flush, Outcome::Done(Ok(()))) => self.ok(unit),
            (Cont::Flush, Outcome::Done(Err(e))) => self.io_failed(unit, &e, true),
            (Cont::Dma { packet, to_disk }, Outcome::Dma(end)) => self.dma_done(unit, packet, to_disk, end),
            // Each continuation is only ever paired with its own kind of job.
            _ => {}
        }
    }

    /// Reports a failed disk access the way the device kind does.
    fn io_failed(&mut self, unit: usize, e: &DiskError, write: bool) {
        if self.devs[unit].is_cd() {
            self.check_condition(unit, super::atapi::sense_for(e));
        } else {
            self.fail(unit, super::ata::error_bits(e, write));
        }
    }

    // ---- PIO ----

    /// Enters (or continues) a data-in phase: the next block if data is buffered, else a
    /// fetch from the disk, else the end of the command.
    pub(super) fn start_data_in(&mut self, unit: usize, mut din: DataIn) {
        if din.pos < din.buf.len() {
            return self.present_block(unit, din);
        }
        if let Some(f) = din.fetch.as_mut().filter(|f| f.left > 0) {
            let len = FETCH_CHUNK.min(f.left);
            let op = Op::Read { disk: f.disk.clone(), offset: f.offset, len: len as usize };
            f.offset += len;
            f.left -= len;
            din.buf = Vec::new();
            din.pos = 0;
            self.devs[unit].phase = Phase::Busy(Cont::Fetch(din));
            return self.submit(unit, op);
        }
        match din.blocks {
            // ATA-6 PIO data-in: no interrupt after the last block.
            Blocks::Ata(_) => {
                let d = &mut self.devs[unit];
                d.phase = Phase::Idle;
                d.status = ST_READY;
            }
            Blocks::Atapi(_) => self.packet_done(unit),
        }
    }

    /// Offers the next DRQ block to the host, with an interrupt.
    fn present_block(&mut self, unit: usize, mut din: DataIn) {
        let rest = din.buf.len() - din.pos;
        let d = &mut self.devs[unit];
        let n = match din.blocks {
            Blocks::Ata(block) => block.min(rest),
            Blocks::Atapi(limit) => {
                let n = super::atapi::block_bytes(limit, rest);
                super::atapi::set_data_phase(&mut d.tf, n);
                n
            }
        };
        din.end = din.pos + n;
        d.phase = Phase::In(din);
        d.status = ST_READY;
        self.raise(unit);
    }

    /// One word from the data register; true if it ended the DRQ block.
    fn read_data_word(&mut self) -> (u16, bool) {
        let unit = self.sel();
        let Phase::In(din) = &mut self.devs[unit].phase else {
            return (0xFFFF, false);
        };
        let byte = |i: usize| din.buf.get(i).copied().unwrap_or(0);
        let word = u16::from_le_bytes([byte(din.pos), byte(din.pos + 1)]);
        din.pos += 2;
        if din.pos < din.end {
            return (word, false);
        }
        if let Phase::In(mut din) = std::mem::take(&mut self.devs[unit].phase) {
            // An odd-sized ATAPI block ends with a pad byte.
            din.pos = din.end;
            self.start_data_in(unit, din);
        }
        (word, true)
    }

    /// One word into the data register; true if it completed the block or packet.
    fn write_data_word(&mut self, word: u16) -> bool {
        let unit = self.sel();
        let bytes = word.to_le_bytes();
        match &mut self.devs[unit].phase {
            Phase::Out(out) => {
                for (i, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = out.buf.get_mut(out.pos + i) {
                        *slot = b;
                    }
                }
                out.pos += 2;
                if out.pos < out.buf.len() {
                    return false;
                }
                if let Phase::Out(out) = std::mem::take(&mut self.devs[unit].phase) {
                    self.block_filled(unit, out);
                }
                true
            }
            Phase::Packet(p) => {
                for (i, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = p.cdb.get_mut(p.pos + i) {
                        *slot = b;
                    }
                }
                p.pos += 2;
                if p.pos < p.cdb.len() {
                    return false;
                }
                if let Phase::Packet(p) = std::mem::take(&mut self.devs[unit].phase) {
                    self.packet_received(unit, p);
                }
                true
            }
            _ => false,
        }
    }

    // ---- DMA ----

    /// Accepts a DMA command: it runs once the bus master is started.
    pub(super) fn start_dma(&mut self, unit: usize, plan: DmaPlan) {
        self.devs[unit].phase = Phase::DmaReady(plan);
        self.try_dma();
    }

    /// Starts the transfer if a device waits for one and the bus master is armed, allowed to
    /// master the bus and connected to memory.
    fn try_dma(&mut self) {
        if !self.bm.armed || !self.bus_master {
            return;
        }
        let Some(dma) = self.dma.clone() else {
            return;
        };
        let Some(unit) = (0..2).find(|&u| matches!(self.devs[u].phase, Phase::DmaReady(_))) else {
            return;
        };
        let Phase::DmaReady(plan) = std::mem::take(&mut self.devs[unit].phase) else {
            return;
        };
        self.bm.armed = false;
        let cont = Cont::Dma { packet: plan.packet, to_disk: plan.data.to_disk() };
        self.devs[unit].phase = Phase::Busy(cont);
        let job = DmaJob { dma, prd: self.bm.prd, data: plan.data };
        self.submit(unit, Op::Dma(job));
    }

    /// SFF-8038i status after a transfer: Interrupt with the device's INTRQ; Active cleared
    /// when the table ran out (exactly, or too early: then without an interrupt).
    fn dma_done(&mut self, unit: usize, packet: bool, to_disk: bool, end: DmaEnd) {
        match end {
            DmaEnd::Done { exhausted } => {
                if exhausted {
                    self.bm.status &= !BM_ST_ACTIVE;
                }
                if packet {
                    self.packet_done(unit);
                } else {
                    self.ok(unit);
                }
            }
            DmaEnd::Short => {
                self.bm.status &= !BM_ST_ACTIVE;
                self.devs[unit].phase = Phase::Stalled;
            }
            DmaEnd::Bus => {
                self.bm.status = (self.bm.status & !BM_ST_ACTIVE) | BM_ST_ERROR;
                if packet {
                    self.check_condition(unit, super::atapi::SENSE_ABORTED);
                } else {
                    self.fail(unit, ER_ABRT);
                }
            }
            DmaEnd::Disk(e) => self.io_failed(unit, &e, to_disk),
        }
    }
}
