//! Saved state of the PIIX3 IDE function (snapshots and migration): configuration space,
//! per channel the selected device, device control and bus-master registers, per drive the
//! task file, status, error, pending interrupt, transfer modes, PIO/packet/DMA phase with its
//! buffer, and the disk (geometry, multiple count, buffer) or CD (tray, lock, sense, media
//! event) state.
//!
//! Precondition: the machine calls [`PiixIde::drain`] with the vCPUs stopped before saving,
//! so no disk or DMA job is running. Saving stays infallible: a drive caught with a job in
//! flight is saved as [`IdePhase::InFlight`], which restore refuses. A DMA command the guest
//! has issued but not yet started with the bus master ([`IdePhase::DmaReady`]) is ordinary
//! state and carries over.
//!
//! Disks and CD media are backends: the machine builds the restored function with the same
//! drives (and inserts the same CD media) first; a different disk size, drive model/serial
//! or media presence is refused.

use super::atapi::{MediaEvent, Sense};
use super::bmdma::{BusMaster, DmaData, BM_CMD_START, BM_CMD_TO_MEMORY};
use super::channel::{Blocks, Channel, DataIn, DataOut, Device, DmaPlan, Fetch, Kind, PacketIn, Phase, Target};
use super::identify::MAX_MULTIPLE;
use super::{lock, PiixIde};
use crate::pci::PciConfigState;
use ferrite_block::Disk;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiixIdeState {
    pub config: PciConfigState,
    pub channels: [IdeChannelState; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeChannelState {
    /// Device/head register (bit 4 selects the drive).
    pub device_register: u8,
    pub device_control: u8,
    pub bus_master: IdeBusMasterState,
    pub drives: [IdeDriveState; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeBusMasterState {
    pub command: u8,
    pub status: u8,
    /// PRD table address.
    pub prd_address: u32,
    /// Started and not yet used by a DMA command.
    pub armed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeDriveState {
    pub model: String,
    pub serial: String,
    pub media: IdeMediaState,
    /// Feature/error, sector count, LBA low/mid/high as last written (index 0 unused).
    pub task_file: [u8; 6],
    /// The previous value of each (the HOB bytes of 48-bit commands).
    pub task_file_previous: [u8; 6],
    pub status: u8,
    pub error: u8,
    pub interrupt_pending: bool,
    pub phase: IdePhase,
    pub multiword_dma_mode: Option<u8>,
    pub ultra_dma_mode: Option<u8>,
    pub standby: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum IdeMediaState {
    Absent,
    Disk(IdeDiskState),
    Cdrom(IdeCdState),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeDiskState {
    /// Disk size in sectors (identifies the disk).
    pub sectors: u64,
    /// CHS translation set by INITIALIZE DEVICE PARAMETERS.
    pub heads: u8,
    pub sectors_per_track: u8,
    /// READ/WRITE MULTIPLE block size; 0 when off.
    pub multiple_sectors: u8,
    pub write_cache: bool,
    pub look_ahead: bool,
    /// The READ/WRITE BUFFER sector.
    pub buffer: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeCdState {
    /// Size of the inserted medium, `None` for an empty drive (identifies the medium).
    pub media_bytes: Option<u64>,
    pub tray_open: bool,
    pub locked: bool,
    /// Sense key, additional sense code and qualifier.
    pub sense: [u8; 3],
    pub unit_attention: bool,
    /// GET EVENT STATUS NOTIFICATION media event not yet reported: 2 new media, 3 removal.
    pub media_event: Option<u8>,
}

/// How the data of a PIO data-in phase is cut into DRQ blocks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum IdeBlocks {
    Ata { block_bytes: usize },
    Atapi { byte_count_limit: usize },
}

/// A stretch of the drive's medium still to be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeDiskRange {
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum IdeWriteTarget {
    Disk { rest: IdeDiskRange, block_bytes: usize, flush: bool },
    /// WRITE BUFFER.
    Buffer,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum IdeDmaData {
    Buffer { data: Vec<u8> },
    DiskRead { range: IdeDiskRange },
    DiskWrite { range: IdeDiskRange, flush: bool },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum IdePhase {
    Idle,
    /// PIO data to the host: `buffer[pos..end]` is the current DRQ block; `fetch` is what
    /// remains to be read from the medium after the buffer.
    DataIn { buffer: Vec<u8>, pos: usize, end: usize, fetch: Option<IdeDiskRange>, blocks: IdeBlocks },
    /// PIO data from the host into `buffer` (one DRQ block).
    DataOut { buffer: Vec<u8>, pos: usize, target: IdeWriteTarget },
    /// ATAPI command packet being written.
    Packet { cdb: [u8; 12], pos: usize, dma: bool, byte_count_limit: usize },
    /// A DMA command waiting for the bus master to start.
    DmaReady { data: IdeDmaData, packet: bool },
    /// A DMA that ran out of PRD entries, waiting for the guest to stop the engine.
    Stalled,
    /// A disk or DMA job was running at save time (the machine did not drain): refused.
    InFlight,
}

fn range_of(offset: u64, bytes: u64) -> IdeDiskRange {
    IdeDiskRange { offset, bytes }
}

fn save_phase(phase: &Phase) -> IdePhase {
    match phase {
        Phase::Idle => IdePhase::Idle,
        Phase::Busy(_) => IdePhase::InFlight,
        Phase::Stalled => IdePhase::Stalled,
        Phase::In(d) => IdePhase::DataIn {
            buffer: d.buf.clone(),
            pos: d.pos,
            end: d.end,
            fetch: d.fetch.as_ref().map(|f| range_of(f.offset, f.left)),
            blocks: match d.blocks {
                Blocks::Ata(n) => IdeBlocks::Ata { block_bytes: n },
                Blocks::Atapi(n) => IdeBlocks::Atapi { byte_count_limit: n },
            },
        },
        Phase::Out(o) => IdePhase::DataOut {
            buffer: o.buf.clone(),
            pos: o.pos,
            target: match &o.target {
                Target::Disk { offset, left, block, flush, .. } => {
                    IdeWriteTarget::Disk { rest: range_of(*offset, *left), block_bytes: *block, flush: *flush }
                }
                Target::Buffer => IdeWriteTarget::Buffer,
            },
        },
        Phase::Packet(p) => IdePhase::Packet { cdb: p.cdb, pos: p.pos, dma: p.dma, byte_count_limit: p.limit },
        Phase::DmaReady(plan) => IdePhase::DmaReady {
            packet: plan.packet,
            data: match &plan.data {
                DmaData::Buffer(b) => IdeDmaData::Buffer { data: b.clone() },
                DmaData::DiskRead { offset, len, .. } => IdeDmaData::DiskRead { range: range_of(*offset, *len) },
                DmaData::DiskWrite { offset, len, flush, .. } => IdeDmaData::DiskWrite { range: range_of(*offset, *len), flush: *flush },
            },
        },
    }
}

fn save_drive(d: &Device) -> IdeDriveState {
    let media = match &d.kind {
        Kind::Absent => IdeMediaState::Absent,
        Kind::Disk(disk) => IdeMediaState::Disk(IdeDiskState {
            sectors: disk.sectors,
            heads: disk.heads,
            sectors_per_track: disk.spt,
            multiple_sectors: disk.multiple,
            write_cache: disk.write_cache,
            look_ahead: disk.look_ahead,
            buffer: disk.buffer.clone(),
        }),
        Kind::Cd(cd) => IdeMediaState::Cdrom(IdeCdState {
            media_bytes: cd.media.as_ref().map(|m| m.size()),
            tray_open: cd.tray_open,
            locked: cd.locked,
            sense: [cd.sense.key, cd.sense.asc, cd.sense.ascq],
            unit_attention: cd.unit_attention,
            media_event: cd.event.map(|e| e as u8),
        }),
    };
    IdeDriveState {
        model: d.model.clone(),
        serial: d.serial.clone(),
        media,
        task_file: d.tf.cur,
        task_file_previous: d.tf.prev,
        status: d.status,
        error: d.error,
        interrupt_pending: d.intrq,
        phase: save_phase(&d.phase),
        multiword_dma_mode: d.mwdma,
        ultra_dma_mode: d.udma,
        standby: d.standby,
    }
}

fn save_channel(ch: &Channel) -> IdeChannelState {
    IdeChannelState {
        device_register: ch.device,
        device_control: ch.devctl,
        bus_master: IdeBusMasterState { command: ch.bm.cmd, status: ch.bm.status, prd_address: ch.bm.prd, armed: ch.bm.armed },
        drives: [save_drive(&ch.devs[0]), save_drive(&ch.devs[1])],
    }
}

/// The medium data transfers of `d` go to.
fn medium(d: &Device) -> Option<Arc<dyn Disk>> {
    match &d.kind {
        Kind::Disk(disk) => Some(disk.disk.clone()),
        Kind::Cd(cd) => cd.media.clone(),
        Kind::Absent => None,
    }
}

/// Checks `range` against the drive's medium and returns that medium.
fn check_range(d: &Device, range: &IdeDiskRange, field: &'static str) -> Result<Arc<dyn Disk>, RestoreError> {
    let disk = medium(d).ok_or_else(|| RestoreError::invalid(field, "a transfer on a drive without a medium"))?;
    match range.offset.checked_add(range.bytes) {
        Some(end) if end <= disk.size() => Ok(disk),
        _ => Err(RestoreError::invalid(field, format!("{} bytes at {} run past the {}-byte medium", range.bytes, range.offset, disk.size()))),
    }
}

fn nonzero(field: &'static str, n: usize) -> Result<usize, RestoreError> {
    if n == 0 {
        return Err(RestoreError::invalid(field, "zero block size"));
    }
    Ok(n)
}

/// Validates `s` against the fresh drive `d` and builds its phase.
fn check_phase(d: &Device, s: &IdePhase) -> Result<Phase, RestoreError> {
    Ok(match s {
        IdePhase::Idle => Phase::Idle,
        IdePhase::Stalled => Phase::Stalled,
        IdePhase::InFlight => {
            return Err(RestoreError::invalid("phase", "saved with a disk job in flight (the machine must drain IDE before saving)"))
        }
        IdePhase::DataIn { buffer, pos, end, fetch, blocks } => {
            if !(pos <= end && *end <= buffer.len()) {
                return Err(RestoreError::invalid("phase", format!("data-in block {pos}..{end} outside a {}-byte buffer", buffer.len())));
            }
            let fetch = match fetch {
                Some(r) => Some(Fetch { disk: check_range(d, r, "phase")?, offset: r.offset, left: r.bytes }),
                None => None,
            };
            let blocks = match *blocks {
                IdeBlocks::Ata { block_bytes } => Blocks::Ata(nonzero("phase", block_bytes)?),
                IdeBlocks::Atapi { byte_count_limit } => Blocks::Atapi(nonzero("phase", byte_count_limit)?),
            };
            Phase::In(DataIn { buf: buffer.clone(), pos: *pos, end: *end, fetch, blocks })
        }
        IdePhase::DataOut { buffer, pos, target } => {
            check_max("phase", *pos, buffer.len())?;
            let target = match target {
                IdeWriteTarget::Buffer => Target::Buffer,
                IdeWriteTarget::Disk { rest, block_bytes, flush } => Target::Disk {
                    disk: check_range(d, rest, "phase")?,
                    offset: rest.offset,
                    left: rest.bytes,
                    block: nonzero("phase", *block_bytes)?,
                    flush: *flush,
                },
            };
            Phase::Out(DataOut { buf: buffer.clone(), pos: *pos, target })
        }
        IdePhase::Packet { cdb, pos, dma, byte_count_limit } => {
            if !d.is_cd() {
                return Err(RestoreError::invalid("phase", "an ATAPI packet phase on a drive that is not a CD"));
            }
            check_max("phase", *pos, cdb.len())?;
            Phase::Packet(PacketIn { cdb: *cdb, pos: *pos, dma: *dma, limit: *byte_count_limit })
        }
        IdePhase::DmaReady { data, packet } => {
            let data = match data {
                IdeDmaData::Buffer { data } => DmaData::Buffer(data.clone()),
                IdeDmaData::DiskRead { range } => DmaData::DiskRead { disk: check_range(d, range, "phase")?, offset: range.offset, len: range.bytes },
                IdeDmaData::DiskWrite { range, flush } => {
                    DmaData::DiskWrite { disk: check_range(d, range, "phase")?, offset: range.offset, len: range.bytes, flush: *flush }
                }
            };
            Phase::DmaReady(DmaPlan { data, packet: *packet })
        }
    })
}

/// Validates `s` against the fresh drive `d`; returns the phase to install.
fn check_drive(d: &Device, s: &IdeDriveState) -> Result<Phase, RestoreError> {
    if (s.model.as_str(), s.serial.as_str()) != (d.model.as_str(), d.serial.as_str()) {
        return Err(RestoreError::invalid("model", format!("saved for drive {:?}/{:?}, this one is {:?}/{:?}", s.model, s.serial, d.model, d.serial)));
    }
    match (&d.kind, &s.media) {
        (Kind::Absent, IdeMediaState::Absent) => {}
        (Kind::Disk(disk), IdeMediaState::Disk(sd)) => {
            if sd.sectors != disk.sectors {
                return Err(RestoreError::invalid("sectors", format!("saved for a {}-sector disk, this one has {}", sd.sectors, disk.sectors)));
            }
            if !(1..=16).contains(&sd.heads) || sd.sectors_per_track == 0 {
                return Err(RestoreError::invalid("heads", format!("geometry {}/{} is not one the drive accepts", sd.heads, sd.sectors_per_track)));
            }
            if sd.multiple_sectors > MAX_MULTIPLE || !(sd.multiple_sectors == 0 || sd.multiple_sectors.is_power_of_two()) {
                return Err(RestoreError::invalid("multiple_sectors", format!("{} is not 0 or a power of two up to {MAX_MULTIPLE}", sd.multiple_sectors)));
            }
            if sd.buffer.len() != disk.buffer.len() {
                return Err(RestoreError::invalid("buffer", format!("{} bytes, not {}", sd.buffer.len(), disk.buffer.len())));
            }
        }
        (Kind::Cd(cd), IdeMediaState::Cdrom(sc)) => {
            let here = cd.media.as_ref().map(|m| m.size());
            if sc.media_bytes != here {
                return Err(RestoreError::invalid("media_bytes", format!("saved with medium {:?} bytes, this drive holds {here:?}", sc.media_bytes)));
            }
            if !matches!(sc.media_event, None | Some(2) | Some(3)) {
                return Err(RestoreError::invalid("media_event", format!("{:?} is not 2 (new media) or 3 (removal)", sc.media_event)));
            }
        }
        _ => return Err(RestoreError::invalid("media", "saved for another kind of drive (disk, CD or none)")),
    }
    check_phase(d, &s.phase)
}

fn restore_drive(d: &mut Device, s: IdeDriveState, phase: Phase) {
    match (&mut d.kind, s.media) {
        (Kind::Disk(disk), IdeMediaState::Disk(sd)) => {
            disk.heads = sd.heads;
            disk.spt = sd.sectors_per_track;
            disk.multiple = sd.multiple_sectors;
            disk.write_cache = sd.write_cache;
            disk.look_ahead = sd.look_ahead;
            disk.buffer = sd.buffer;
        }
        (Kind::Cd(cd), IdeMediaState::Cdrom(sc)) => {
            cd.tray_open = sc.tray_open;
            cd.locked = sc.locked;
            let [key, asc, ascq] = sc.sense;
            cd.sense = Sense { key, asc, ascq };
            cd.unit_attention = sc.unit_attention;
            cd.event = match sc.media_event {
                Some(2) => Some(MediaEvent::NewMedia),
                Some(3) => Some(MediaEvent::MediaRemoval),
                _ => None,
            };
        }
        _ => {}
    }
    d.tf.cur = s.task_file;
    d.tf.prev = s.task_file_previous;
    d.status = s.status;
    d.error = s.error;
    d.intrq = s.interrupt_pending;
    // Completions of jobs the fresh device might have started are ignored.
    d.gen = d.gen.wrapping_add(1);
    d.phase = phase;
    d.mwdma = s.multiword_dma_mode;
    d.udma = s.ultra_dma_mode;
    d.standby = s.standby;
}

fn check_channel(ch: &Channel, s: &IdeChannelState) -> Result<[Phase; 2], RestoreError> {
    let bm = &s.bus_master;
    if bm.command & !(BM_CMD_START | BM_CMD_TO_MEMORY) != 0 {
        return Err(RestoreError::invalid("bus_master.command", format!("{:#x} sets undefined bits", bm.command)));
    }
    if bm.prd_address & 3 != 0 {
        return Err(RestoreError::invalid("bus_master.prd_address", format!("{:#x} is not dword aligned", bm.prd_address)));
    }
    Ok([check_drive(&ch.devs[0], &s.drives[0])?, check_drive(&ch.devs[1], &s.drives[1])?])
}

fn restore_channel(ch: &mut Channel, s: IdeChannelState, phases: [Phase; 2], bus_master: bool) {
    ch.device = s.device_register;
    ch.devctl = s.device_control;
    let bm = s.bus_master;
    ch.bm = BusMaster { cmd: bm.command, status: bm.status, prd: bm.prd_address, armed: bm.armed };
    let [s0, s1] = s.drives;
    let [p0, p1] = phases;
    restore_drive(&mut ch.devs[0], s0, p0);
    restore_drive(&mut ch.devs[1], s1, p1);
    // Set directly: a DMA waiting for the engine starts on the guest's next bus-master or
    // command write, not from the restore.
    ch.bus_master = bus_master;
    ch.redrive_irq();
}

impl Persist for PiixIde {
    const SECTION: &'static str = "piix-ide";
    const VERSION: u32 = 1;
    type State = PiixIdeState;

    /// See the module documentation: drain first.
    fn save(&self) -> PiixIdeState {
        PiixIdeState {
            config: self.cfg.save_state(),
            channels: [save_channel(&lock(&self.channels[0].chan)), save_channel(&lock(&self.channels[1].chan))],
        }
    }

    fn restore(&mut self, s: PiixIdeState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        let mut c0 = lock(&self.channels[0].chan);
        let mut c1 = lock(&self.channels[1].chan);
        let p0 = check_channel(&c0, &s.channels[0])?;
        let p1 = check_channel(&c1, &s.channels[1])?;
        self.cfg.restore_state(&s.config);
        let bus_master = self.cfg.bus_master();
        let [s0, s1] = s.channels;
        restore_channel(&mut c0, s0, p0, bus_master);
        restore_channel(&mut c1, s1, p1, bus_master);
        Ok(())
    }
}
