//! ATAPI CD/DVD-ROM: the PACKET command protocol (ATA/ATAPI-6 9.8 and 9.9) and the MMC-3 /
//! SPC-3 commands a CD-ROM drive answers, on 2048-byte sectors.
//!
//! Sense data follows SPC-3 fixed format; a medium change leaves a unit attention (6/28/00)
//! for the next command that reports one, and a media event for GET EVENT STATUS
//! NOTIFICATION. The drive has a tray: a guest eject opens it (the medium stays loaded and
//! comes back when the tray is closed), [`Channel::change_media`] swaps media as a user
//! would.

use super::bmdma::DmaData;
use super::channel::{
    Blocks, Channel, DataIn, DmaPlan, Kind, PacketIn, Phase, TaskFile, ER_ABRT, REG_FEATURE, REG_LBAH,
    REG_LBAM, REG_NSECT, ST_READY,
};
use super::identify::{self, Common, FIRMWARE};
use ferrite_block::{Disk, DiskError};
use std::sync::Arc;

const SECTOR: u64 = 2048;
/// Media larger than an 80-minute CD are presented as DVDs.
const CD_MAX_SECTORS: u64 = 80 * 60 * 75;

/// Interrupt reason register (the sector count register during PACKET): CoD and IO.
const REASON_COD: u8 = 0x01;
const REASON_IO: u8 = 0x02;

/// Sense key, additional sense code and qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

const fn sense(key: u8, asc: u8, ascq: u8) -> Sense {
    Sense { key, asc, ascq }
}

pub(crate) const SENSE_NONE: Sense = sense(0, 0, 0);
const SENSE_NO_MEDIUM_CLOSED: Sense = sense(2, 0x3A, 0x01);
const SENSE_NO_MEDIUM_OPEN: Sense = sense(2, 0x3A, 0x02);
const SENSE_READ_ERROR: Sense = sense(3, 0x11, 0x00);
const SENSE_INVALID_OPCODE: Sense = sense(5, 0x20, 0x00);
const SENSE_LBA_OUT_OF_RANGE: Sense = sense(5, 0x21, 0x00);
const SENSE_INVALID_FIELD: Sense = sense(5, 0x24, 0x00);
const SENSE_SAVING_UNSUPPORTED: Sense = sense(5, 0x39, 0x00);
const SENSE_REMOVAL_PREVENTED: Sense = sense(5, 0x53, 0x02);
const SENSE_ILLEGAL_MODE: Sense = sense(5, 0x64, 0x00);
const SENSE_MEDIUM_CHANGED: Sense = sense(6, 0x28, 0x00);
pub(crate) const SENSE_ABORTED: Sense = sense(0x0B, 0x00, 0x00);

/// MMC-3 media event codes (GET EVENT STATUS NOTIFICATION, media class).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MediaEvent {
    NewMedia = 2,
    MediaRemoval = 3,
}

pub(crate) struct CdState {
    pub media: Option<Arc<dyn Disk>>,
    pub tray_open: bool,
    pub locked: bool,
    pub sense: Sense,
    pub unit_attention: bool,
    pub event: Option<MediaEvent>,
}

impl CdState {
    pub(crate) fn new(media: Option<Arc<dyn Disk>>) -> Self {
        CdState { media, tray_open: false, locked: false, sense: SENSE_NONE, unit_attention: false, event: None }
    }

    pub(crate) fn after_reset(&mut self) {
        self.sense = SENSE_NONE;
    }

    pub(crate) fn power_on(&mut self) {
        *self = CdState::new(self.media.take());
    }

    /// The medium, if one is loaded and the tray closed.
    fn medium(&self) -> Option<&Arc<dyn Disk>> {
        self.media.as_ref().filter(|_| !self.tray_open)
    }

    fn sectors(&self) -> u64 {
        self.medium().map_or(0, |m| m.size() / SECTOR)
    }

    fn not_ready(&self) -> Sense {
        if self.tray_open {
            SENSE_NO_MEDIUM_OPEN
        } else {
            SENSE_NO_MEDIUM_CLOSED
        }
    }

    fn is_dvd(&self) -> bool {
        self.sectors() > CD_MAX_SECTORS
    }
}

/// The sense for a failed read of the medium.
pub(crate) fn sense_for(e: &DiskError) -> Sense {
    match e {
        DiskError::OutOfRange { .. } => SENSE_LBA_OUT_OF_RANGE,
        _ => SENSE_READ_ERROR,
    }
}

/// Bytes of the next data-in DRQ block with `rest` bytes buffered: at most the limit, and
/// whole sectors when the limit allows, so no block ends in a sliver.
pub(crate) fn block_bytes(limit: usize, rest: usize) -> usize {
    match limit.min(rest) {
        n if n < rest && n >= SECTOR as usize => n - n % SECTOR as usize,
        n => n,
    }
}

/// Sets the registers of an ATAPI data-in DRQ block of `n` bytes.
pub(crate) fn set_data_phase(tf: &mut TaskFile, n: usize) {
    tf.cur[REG_NSECT] = REASON_IO;
    tf.cur[REG_LBAM] = n as u8;
    tf.cur[REG_LBAH] = (n >> 8) as u8;
}

/// The byte count limit of a PACKET command: even, non-zero; 0 and FFFFh mean FFFEh.
fn byte_count_limit(tf: &TaskFile) -> usize {
    match u16::from_le_bytes([tf.cur[REG_LBAM], tf.cur[REG_LBAH]]) {
        0 | 0xFFFF => 0xFFFE,
        1 => 2,
        n => usize::from(n & !1),
    }
}

/// How a packet command answers.
enum Reply {
    Good,
    Data(Vec<u8>),
    /// `count` sectors of the medium from `lba` on.
    Read { disk: Arc<dyn Disk>, lba: u64, count: u64 },
    Check(Sense),
}

impl Channel {
    /// ATA commands to a packet device (those not shared with disks).
    pub(super) fn packet_device_command(&mut self, unit: usize, cmd: u8) {
        match cmd {
            0xA0 => self.packet_start(unit),
            0xA1 => {
                let d = &self.devs[unit];
                let common = Common { model: &d.model, serial: &d.serial, mwdma: d.mwdma, udma: d.udma, unit };
                let data = identify::identify_packet(&common);
                self.start_data_in(unit, DataIn::buffer(data, Blocks::Ata(512)));
            }
            // IDENTIFY DEVICE and READ SECTORS: aborted, with the signature so that the host
            // knows to use the packet interface (ATA-6 8.15, 8.27).
            0xEC | 0x20 | 0x21 => {
                self.devs[unit].tf.set_signature(true);
                self.fail(unit, ER_ABRT);
            }
            // FLUSH CACHE: nothing is ever written.
            0xE7 => self.ok(unit),
            _ => self.fail(unit, ER_ABRT),
        }
    }

    /// PACKET: DRQ for the 12-byte command packet (no interrupt: DRQ type "50 us").
    fn packet_start(&mut self, unit: usize) {
        let d = &mut self.devs[unit];
        let dma = d.tf.cur[REG_FEATURE] & 1 != 0;
        let limit = byte_count_limit(&d.tf);
        d.tf.cur[REG_NSECT] = REASON_COD;
        d.status = ST_READY;
        d.phase = Phase::Packet(PacketIn { cdb: [0; 12], pos: 0, dma, limit });
    }

    /// The packet arrived: run it and start its data phase or complete it.
    pub(super) fn packet_received(&mut self, unit: usize, p: PacketIn) {
        let d = &mut self.devs[unit];
        let Kind::Cd(cd) = &mut d.kind else {
            return self.fail(unit, ER_ABRT);
        };
        let reply = scsi_command(cd, &d.model, &p.cdb);
        let plan = |data| DmaPlan { data, packet: true };
        match reply {
            Reply::Good => self.packet_done(unit),
            Reply::Check(s) => self.check_condition(unit, s),
            Reply::Data(buf) if buf.is_empty() => self.packet_done(unit),
            Reply::Data(buf) if p.dma => self.start_dma(unit, plan(DmaData::Buffer(buf))),
            Reply::Data(buf) => self.start_data_in(unit, DataIn::buffer(buf, Blocks::Atapi(p.limit))),
            Reply::Read { count: 0, .. } => self.packet_done(unit),
            Reply::Read { disk, lba, count } => {
                let (offset, len) = (lba * SECTOR, count * SECTOR);
                if p.dma {
                    self.start_dma(unit, plan(DmaData::DiskRead { disk, offset, len }));
                } else {
                    self.start_data_in(unit, DataIn::from_disk(disk, offset, len, Blocks::Atapi(p.limit)));
                }
            }
        }
    }

    /// Good status: the interrupt reason says "command complete".
    pub(super) fn packet_done(&mut self, unit: usize) {
        self.devs[unit].tf.cur[REG_NSECT] = REASON_IO | REASON_COD;
        self.ok(unit);
    }

    /// CHECK CONDITION: the sense key in the error register, the sense for REQUEST SENSE.
    pub(super) fn check_condition(&mut self, unit: usize, s: Sense) {
        let d = &mut self.devs[unit];
        if let Kind::Cd(cd) = &mut d.kind {
            cd.sense = s;
        }
        d.tf.cur[REG_NSECT] = REASON_IO | REASON_COD;
        self.fail(unit, s.key << 4);
    }

    pub(crate) fn change_media(&mut self, unit: usize, media: Option<Arc<dyn Disk>>) -> bool {
        let Kind::Cd(cd) = &mut self.devs[unit].kind else {
            return false;
        };
        cd.tray_open = false;
        cd.unit_attention = media.is_some();
        cd.event = Some(if media.is_some() { MediaEvent::NewMedia } else { MediaEvent::MediaRemoval });
        cd.media = media;
        true
    }

    pub(crate) fn media_locked(&self, unit: usize) -> bool {
        matches!(&self.devs[unit].kind, Kind::Cd(cd) if cd.locked)
    }
}

// ---- Packet commands ----

const TEST_UNIT_READY: u8 = 0x00;
const REQUEST_SENSE: u8 = 0x03;
const INQUIRY: u8 = 0x12;
const START_STOP_UNIT: u8 = 0x1B;
const PREVENT_ALLOW: u8 = 0x1E;
const READ_CAPACITY: u8 = 0x25;
const READ_10: u8 = 0x28;
const SEEK_10: u8 = 0x2B;
const READ_TOC: u8 = 0x43;
const GET_CONFIGURATION: u8 = 0x46;
const GET_EVENT_STATUS: u8 = 0x4A;
const READ_DISC_INFO: u8 = 0x51;
const MODE_SENSE_10: u8 = 0x5A;
const READ_12: u8 = 0xA8;
const SET_CD_SPEED: u8 = 0xBB;
const MECHANISM_STATUS: u8 = 0xBD;
const READ_CD: u8 = 0xBE;

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be24(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([0, b[i], b[i + 1], b[i + 2]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Data truncated to the command's allocation length.
fn data(mut v: Vec<u8>, alloc: usize) -> Reply {
    v.truncate(alloc);
    Reply::Data(v)
}

/// Stores `v.len() - 2` big-endian at the start of `v` (the length field of most replies).
fn set_length16(v: &mut [u8]) {
    let len = (v.len() - 2) as u16;
    v[..2].copy_from_slice(&len.to_be_bytes());
}

fn scsi_command(cd: &mut CdState, model: &str, cdb: &[u8; 12]) -> Reply {
    let op = cdb[0];
    if op != REQUEST_SENSE {
        cd.sense = SENSE_NONE;
    }
    // MMC-3 4.1.6.1: these report status without consuming a unit attention.
    let ua_exempt = matches!(op, INQUIRY | REQUEST_SENSE | GET_CONFIGURATION | GET_EVENT_STATUS);
    if cd.unit_attention && !ua_exempt {
        cd.unit_attention = false;
        return Reply::Check(SENSE_MEDIUM_CHANGED);
    }
    let needs_medium = matches!(
        op,
        TEST_UNIT_READY | READ_CAPACITY | READ_10 | READ_12 | READ_CD | READ_TOC | READ_DISC_INFO | SEEK_10
    );
    if needs_medium && cd.medium().is_none() {
        return Reply::Check(cd.not_ready());
    }
    match op {
        TEST_UNIT_READY | SET_CD_SPEED | SEEK_10 => Reply::Good,
        REQUEST_SENSE => request_sense(cd, cdb),
        INQUIRY => inquiry(model, cdb),
        START_STOP_UNIT => start_stop(cd, cdb),
        PREVENT_ALLOW => {
            cd.locked = cdb[4] & 1 != 0;
            Reply::Good
        }
        READ_CAPACITY => {
            let mut v = cd.sectors().saturating_sub(1).min(u64::from(u32::MAX)).to_be_bytes()[4..].to_vec();
            v.extend_from_slice(&(SECTOR as u32).to_be_bytes());
            Reply::Data(v)
        }
        READ_10 => read(cd, be32(cdb, 2), u32::from(be16(cdb, 7))),
        READ_12 => read(cd, be32(cdb, 2), be32(cdb, 6)),
        READ_CD => read_cd(cd, cdb),
        READ_TOC => read_toc(cd, cdb),
        GET_CONFIGURATION => get_configuration(cd, cdb),
        GET_EVENT_STATUS => event_status(cd, cdb),
        READ_DISC_INFO => disc_information(cdb),
        MODE_SENSE_10 => mode_sense(cd, cdb),
        MECHANISM_STATUS => {
            let mut v = vec![0; 8];
            v[1] = if cd.tray_open { 0x10 } else { 0 };
            data(v, usize::from(be16(cdb, 8)))
        }
        _ => Reply::Check(SENSE_INVALID_OPCODE),
    }
}

/// Fixed-format sense data (SPC-3 4.5.3). With nothing stored, reports a pending unit
/// attention or the not-ready state, as a polling host expects.
fn request_sense(cd: &mut CdState, cdb: &[u8]) -> Reply {
    let s = if cd.sense != SENSE_NONE {
        cd.sense
    } else if cd.unit_attention {
        cd.unit_attention = false;
        SENSE_MEDIUM_CHANGED
    } else if cd.medium().is_none() {
        cd.not_ready()
    } else {
        SENSE_NONE
    };
    cd.sense = SENSE_NONE;
    let mut v = vec![0; 18];
    v[0] = 0x70; // current error, fixed format
    v[2] = s.key;
    v[7] = 10; // additional sense length
    v[12] = s.asc;
    v[13] = s.ascq;
    data(v, usize::from(cdb[4]))
}

/// Standard INQUIRY data: CD/DVD device, removable, SPC-3; vendor and product from the model.
fn inquiry(model: &str, cdb: &[u8]) -> Reply {
    if cdb[1] & 1 != 0 {
        return Reply::Check(SENSE_INVALID_FIELD); // no vital product data pages
    }
    let mut v = vec![0; 36];
    v[0] = 0x05;
    v[1] = 0x80;
    v[2] = 0x05;
    v[3] = 0x32; // ATAPI, response data format 2
    v[4] = 31;
    let vendor = model.split_whitespace().next().filter(|_| model.contains(' ')).unwrap_or("");
    put_ascii(&mut v[8..16], vendor);
    put_ascii(&mut v[16..32], model);
    put_ascii(&mut v[32..36], FIRMWARE);
    data(v, usize::from(be16(cdb, 3)))
}

fn put_ascii(dst: &mut [u8], s: &str) {
    let mut bytes = s.bytes().map(|b| if (0x20..0x7F).contains(&b) { b } else { b' ' });
    for d in dst {
        *d = bytes.next().unwrap_or(b' ');
    }
}

/// START STOP UNIT with LoEj: eject opens the tray unless the medium is locked in; load
/// closes it.
fn start_stop(cd: &mut CdState, cdb: &[u8]) -> Reply {
    let (start, load_eject) = (cdb[4] & 1 != 0, cdb[4] & 2 != 0);
    if !load_eject {
        return Reply::Good;
    }
    if start {
        if cd.tray_open {
            cd.tray_open = false;
            if cd.media.is_some() {
                cd.unit_attention = true;
                cd.event = Some(MediaEvent::NewMedia);
            }
        }
    } else {
        if cd.locked {
            return Reply::Check(SENSE_REMOVAL_PREVENTED);
        }
        if !cd.tray_open {
            cd.tray_open = true;
            cd.event = Some(MediaEvent::MediaRemoval);
        }
    }
    Reply::Good
}

fn read(cd: &CdState, lba: u32, count: u32) -> Reply {
    let (lba, count) = (u64::from(lba), u64::from(count));
    match cd.medium() {
        Some(disk) if lba + count <= cd.sectors() => Reply::Read { disk: disk.clone(), lba, count },
        _ => Reply::Check(SENSE_LBA_OUT_OF_RANGE),
    }
}

/// READ CD: user data only (the data area of Mode 1 / Mode 2 Form 1 sectors) or nothing.
fn read_cd(cd: &CdState, cdb: &[u8]) -> Reply {
    let sector_type = (cdb[1] >> 2) & 7;
    if !matches!(sector_type, 0 | 2) {
        return Reply::Check(SENSE_ILLEGAL_MODE);
    }
    match read(cd, be32(cdb, 2), be24(cdb, 6)) {
        Reply::Read { .. } if cdb[9] & 0xFE == 0 => Reply::Good,
        r @ Reply::Read { .. } if cdb[9] & 0xFE == 0x10 => r,
        Reply::Read { .. } => Reply::Check(SENSE_INVALID_FIELD),
        r => r,
    }
}

/// A TOC address: LBA, or minute/second/frame with the 2-second lead-in offset.
fn toc_address(lba: u64, msf: bool) -> [u8; 4] {
    if !msf {
        return (lba.min(u64::from(u32::MAX)) as u32).to_be_bytes();
    }
    let frames = lba + 150;
    [0, (frames / (75 * 60)).min(255) as u8, (frames / 75 % 60) as u8, (frames % 75) as u8]
}

/// READ TOC/PMA/ATIP formats 0 (TOC), 1 (session info) and 2 (full TOC) of a single-track,
/// single-session data disc.
fn read_toc(cd: &CdState, cdb: &[u8]) -> Reply {
    let msf = cdb[1] & 2 != 0;
    // Older hosts put the format in bits 7:6 of the control byte.
    let format = match cdb[2] & 0x0F {
        0 => cdb[9] >> 6,
        f => f,
    };
    let track = cdb[6];
    let sectors = cd.sectors();
    const DATA_TRACK: u8 = 0x14; // ADR 1, control: data track
    let mut v = vec![0, 0, 1, 1];
    match format {
        0 => {
            if track > 0xAA {
                return Reply::Check(SENSE_INVALID_FIELD);
            }
            if track <= 1 {
                v.extend_from_slice(&[0, DATA_TRACK, 1, 0]);
                v.extend_from_slice(&toc_address(0, msf));
            }
            v.extend_from_slice(&[0, DATA_TRACK, 0xAA, 0]);
            v.extend_from_slice(&toc_address(sectors, msf));
        }
        1 => {
            v.extend_from_slice(&[0, DATA_TRACK, 1, 0]);
            v.extend_from_slice(&toc_address(0, msf));
        }
        2 => {
            let lead_out = toc_address(sectors, true);
            // Session 1: first track (A0), last track (A1), lead-out (A2), track 1.
            for (point, p) in [(0xA0, [1, 0, 0]), (0xA1, [1, 0, 0]), (0xA2, [lead_out[1], lead_out[2], lead_out[3]]), (1, [0, 2, 0])] {
                v.extend_from_slice(&[1, DATA_TRACK, 0, point, 0, 0, 0, 0, p[0], p[1], p[2]]);
            }
        }
        _ => return Reply::Check(SENSE_INVALID_FIELD),
    }
    set_length16(&mut v);
    data(v, usize::from(be16(cdb, 7)))
}

/// A feature descriptor (MMC-3 5.2): code, version/persistent/current, then `body`.
fn feature(code: u16, version: u8, persistent: bool, current: bool, body: &[u8]) -> (u16, bool, Vec<u8>) {
    let mut v = code.to_be_bytes().to_vec();
    v.push(version << 2 | u8::from(persistent) << 1 | u8::from(current));
    v.push(body.len() as u8);
    v.extend_from_slice(body);
    (code, current, v)
}

/// GET CONFIGURATION: profile list (DVD-ROM, CD-ROM), core, morphing, removable medium,
/// random readable, CD read and DVD read features.
fn get_configuration(cd: &CdState, cdb: &[u8]) -> Reply {
    let rt = cdb[1] & 3;
    let start = be16(cdb, 2);
    if rt == 3 {
        return Reply::Check(SENSE_INVALID_FIELD);
    }
    let loaded = cd.medium().is_some();
    let (dvd, cdrom) = (loaded && cd.is_dvd(), loaded && !cd.is_dvd());
    let profile: u16 = if dvd { 0x0010 } else if cdrom { 0x0008 } else { 0 };
    let blocking: u16 = if dvd { 16 } else { 1 };
    let mut profiles = Vec::new();
    for (p, current) in [(0x0010u16, dvd), (0x0008, cdrom)] {
        profiles.extend_from_slice(&p.to_be_bytes());
        profiles.extend_from_slice(&[u8::from(current), 0]);
    }
    let mut random = (SECTOR as u32).to_be_bytes().to_vec();
    random.extend_from_slice(&blocking.to_be_bytes());
    random.extend_from_slice(&[0, 0]);
    let features = [
        feature(0x0000, 0, true, true, &profiles),
        feature(0x0001, 0, true, true, &[0, 0, 0, 2]), // physical interface: ATAPI
        feature(0x0002, 1, true, true, &[0x02, 0, 0, 0]), // OCEvent: polled events
        feature(0x0003, 0, true, true, &[0x29, 0, 0, 0]), // tray, eject, lock
        feature(0x0010, 0, false, loaded, &random),
        feature(0x001E, 0, false, cdrom, &[0, 0, 0, 0]),
        feature(0x001F, 0, false, dvd, &[]),
    ];
    let mut v = vec![0; 8];
    v[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, current, body) in features {
        let wanted = match rt {
            0 => code >= start,
            1 => code >= start && current,
            _ => code == start,
        };
        if wanted {
            v.extend_from_slice(&body);
        }
    }
    let len = (v.len() - 4) as u32;
    v[..4].copy_from_slice(&len.to_be_bytes());
    data(v, usize::from(be16(cdb, 7)))
}

/// GET EVENT STATUS NOTIFICATION, polled only, media class only.
fn event_status(cd: &mut CdState, cdb: &[u8]) -> Reply {
    if cdb[1] & 1 == 0 {
        return Reply::Check(SENSE_INVALID_FIELD); // asynchronous notification
    }
    const MEDIA_CLASS: u8 = 0x10;
    let v = if cdb[4] & MEDIA_CLASS != 0 {
        let code = cd.event.take().map_or(0, |e| e as u8);
        let status = u8::from(cd.medium().is_some()) << 1 | u8::from(cd.tray_open);
        vec![0, 6, 4, MEDIA_CLASS, code, status, 0, 0]
    } else {
        vec![0, 2, 0x80, MEDIA_CLASS] // no event available for the requested classes
    };
    data(v, usize::from(be16(cdb, 7)))
}

/// READ DISC INFORMATION, standard data: a complete, finalized single-session disc.
fn disc_information(cdb: &[u8]) -> Reply {
    if cdb[1] & 7 != 0 {
        return Reply::Check(SENSE_INVALID_FIELD);
    }
    let mut v = vec![0; 34];
    v[2] = 0x0E; // last session complete, disc finalized
    v[3] = 1; // first track
    v[4] = 1; // sessions
    v[5] = 1; // first track of the last session
    v[6] = 1; // last track of the last session
    v[16..24].fill(0xFF); // no lead-in / lead-out for a finalized disc
    set_length16(&mut v);
    data(v, usize::from(be16(cdb, 7)))
}

/// One mode page: current values, or for `changeable` the mask of changeable bits (none).
fn mode_page(cd: &CdState, page: u8, changeable: bool) -> Vec<u8> {
    let mut v = match page {
        // Read error recovery: retry count 5.
        0x01 => vec![0x01, 0x0A, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        // CD device parameters: 60 seconds a minute, 75 frames a second.
        0x0D => vec![0x0D, 0x06, 0, 0, 0, 60, 0, 75],
        // Capabilities and mechanical status.
        _ => {
            let mut v = vec![0; 22];
            v[0] = 0x2A;
            v[1] = 0x14;
            v[2] = 0x3B; // reads CD-R, CD-RW, method 2, DVD-ROM, DVD-R
            v[4] = 0x71; // audio play, mode 2 form 1/2, multisession
            v[6] = 0x29 | if cd.locked { 0x02 } else { 0 }; // tray, eject, lock (+ state)
            v[8..10].copy_from_slice(&5632u16.to_be_bytes()); // 32x, in kB/s
            v[10..12].copy_from_slice(&256u16.to_be_bytes()); // volume levels
            v[12..14].copy_from_slice(&512u16.to_be_bytes()); // buffer, KiB
            v[14..16].copy_from_slice(&5632u16.to_be_bytes());
            v
        }
    };
    if changeable {
        v[2..].fill(0);
    }
    v
}

/// MODE SENSE(10): pages 01h, 0Dh, 2Ah or all (3Fh), no block descriptors.
fn mode_sense(cd: &CdState, cdb: &[u8]) -> Reply {
    let (control, page) = (cdb[2] >> 6, cdb[2] & 0x3F);
    if control == 3 {
        return Reply::Check(SENSE_SAVING_UNSUPPORTED);
    }
    let pages: &[u8] = match page {
        0x01 => &[0x01],
        0x0D => &[0x0D],
        0x2A => &[0x2A],
        0x3F => &[0x01, 0x0D, 0x2A],
        _ => return Reply::Check(SENSE_INVALID_FIELD),
    };
    let mut v = vec![0; 8];
    for &p in pages {
        v.extend(mode_page(cd, p, control == 1));
    }
    set_length16(&mut v);
    data(v, usize::from(be16(cdb, 7)))
}
