//! One virtio-blk request (virtio 1.2, 5.2.6): a 16-byte header `{ type: le32, reserved: le32,
//! sector: le64 }` and any data the device reads in the device-readable part; data the device
//! writes and one status byte, last, in the device-writable part.
//!
//! Every request completes: a malformed one gets `VIRTIO_BLK_S_IOERR` (bad header, range
//! outside the disk, a length that is not whole sectors, a write to a read-only disk) or
//! `VIRTIO_BLK_S_UNSUPP` (unknown type, a feature not negotiated, flags not allowed). A chain
//! without even a status byte cannot be answered: it is returned with length 0.

use super::config::{MAX_DISCARD_SECTORS, MAX_DISCARD_SEGMENTS, SECTOR, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES};
use crate::virtio::{ChainReader, ChainWriter, DescriptorChain};
use ferrite_block::Disk;
use ferrite_memory::Dma;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_GET_LIFETIME: u32 = 10;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
pub const VIRTIO_BLK_T_SECURE_ERASE: u32 = 14;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Bytes of the GET_ID answer.
pub const VIRTIO_BLK_ID_BYTES: usize = 20;
/// `flags` bit of a write-zeroes segment: the range may be deallocated.
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;

/// Bytes moved between the disk and guest memory per step.
const BOUNCE_BYTES: usize = 1 << 20;
const HEADER_BYTES: usize = 16;
const SEGMENT_BYTES: u64 = 16;

/// What a request runs against (one queue worker's view of the device).
pub struct RequestContext<'a> {
    pub disk: &'a dyn Disk,
    pub dma: &'a Dma,
    /// Negotiated features.
    pub features: u64,
    /// The serial number GET_ID returns (zero-padded).
    pub serial: &'a [u8; VIRTIO_BLK_ID_BYTES],
    /// Writeback cache: `false` makes every write durable before it completes.
    pub writeback: bool,
    /// Whether write zeroes may deallocate (`write_zeroes_may_unmap`).
    pub may_unmap: bool,
    /// Reused staging buffer.
    pub bounce: &'a mut Vec<u8>,
}

/// Outcome counters of one request, for the device's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// Bytes written into the chain (the used element's length).
    pub used_len: u32,
    pub status: Option<u8>,
    pub request_type: Option<u32>,
    /// Bytes read from or written to the disk.
    pub bytes: u64,
}

/// Executes the request in `chain`; returns what to put in the used ring.
pub fn execute(chain: &DescriptorChain, ctx: &mut RequestContext) -> Completed {
    let mut done = Completed::default();
    if chain.writable_len() == 0 {
        return done;
    }
    let mut reader = chain.reader(ctx.dma);
    let mut writer = chain.writer(ctx.dma);
    // Everything writable except the final status byte.
    let data_in = chain.writable_len() - 1;
    let mut header = [0u8; HEADER_BYTES];
    let status = if reader.read_exact(&mut header).is_err() {
        VIRTIO_BLK_S_IOERR
    } else {
        let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        done.request_type = Some(kind);
        run(kind, sector, &mut reader, &mut writer, data_in, ctx, &mut done.bytes)
    };
    // The status byte is the last writable byte, whatever the data part received.
    writer.skip(writer.remaining().saturating_sub(1));
    let _ = writer.write(&[status]);
    done.status = Some(status);
    done.used_len = writer.written_u32();
    done
}

fn run(
    kind: u32,
    sector: u64,
    reader: &mut ChainReader,
    writer: &mut ChainWriter,
    data_in: u64,
    ctx: &mut RequestContext,
    bytes: &mut u64,
) -> u8 {
    match kind {
        VIRTIO_BLK_T_IN => status(read(sector, data_in, writer, ctx, bytes)),
        VIRTIO_BLK_T_OUT => status(write(sector, reader, ctx, bytes)),
        VIRTIO_BLK_T_FLUSH => status(ctx.disk.flush().map_err(|_| VIRTIO_BLK_S_IOERR)),
        VIRTIO_BLK_T_GET_ID => {
            let n = (data_in as usize).min(VIRTIO_BLK_ID_BYTES);
            status(writer.write(&ctx.serial[..n]).map(drop).map_err(|_| VIRTIO_BLK_S_IOERR))
        }
        VIRTIO_BLK_T_DISCARD if ctx.features & VIRTIO_BLK_F_DISCARD != 0 => status(ranges(kind, reader, ctx)),
        VIRTIO_BLK_T_WRITE_ZEROES if ctx.features & VIRTIO_BLK_F_WRITE_ZEROES != 0 => status(ranges(kind, reader, ctx)),
        // GET_LIFETIME, SECURE_ERASE and anything else: not offered.
        _ => VIRTIO_BLK_S_UNSUPP,
    }
}

fn status(r: Result<(), u8>) -> u8 {
    r.err().unwrap_or(VIRTIO_BLK_S_OK)
}

/// The byte range of `len` bytes at `sector`, if it is whole sectors inside the disk.
fn disk_range(sector: u64, len: u64, disk: &dyn Disk) -> Result<u64, u8> {
    let offset = sector.checked_mul(SECTOR).ok_or(VIRTIO_BLK_S_IOERR)?;
    if !len.is_multiple_of(SECTOR) || ferrite_block::check_range(offset, len, disk.size()).is_err() {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    Ok(offset)
}

fn read(sector: u64, len: u64, writer: &mut ChainWriter, ctx: &mut RequestContext, bytes: &mut u64) -> Result<(), u8> {
    let offset = disk_range(sector, len, ctx.disk)?;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(BOUNCE_BYTES as u64) as usize;
        ctx.bounce.resize(n, 0);
        ctx.disk.read_at(offset + done, ctx.bounce).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        writer.write_all(ctx.bounce).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        done += n as u64;
        *bytes += n as u64;
    }
    Ok(())
}

fn write(sector: u64, reader: &mut ChainReader, ctx: &mut RequestContext, bytes: &mut u64) -> Result<(), u8> {
    let len = reader.remaining();
    let offset = disk_range(sector, len, ctx.disk)?;
    if ctx.disk.read_only() {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    let mut done = 0;
    while done < len {
        let n = (len - done).min(BOUNCE_BYTES as u64) as usize;
        ctx.bounce.resize(n, 0);
        reader.read_exact(ctx.bounce).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        ctx.disk.write_at(offset + done, ctx.bounce).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        done += n as u64;
        *bytes += n as u64;
    }
    if !ctx.writeback {
        ctx.disk.flush().map_err(|_| VIRTIO_BLK_S_IOERR)?;
    }
    Ok(())
}

/// DISCARD and WRITE ZEROES: an array of `{ sector: le64, num_sectors: le32, flags: le32 }`.
fn ranges(kind: u32, reader: &mut ChainReader, ctx: &mut RequestContext) -> Result<(), u8> {
    let len = reader.remaining();
    let count = len / SEGMENT_BYTES;
    if !len.is_multiple_of(SEGMENT_BYTES) || count == 0 || count > u64::from(MAX_DISCARD_SEGMENTS) {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    if ctx.disk.read_only() {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    for _ in 0..count {
        let mut seg = [0u8; SEGMENT_BYTES as usize];
        reader.read_exact(&mut seg).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        let sector = u64::from_le_bytes(seg[0..8].try_into().expect("8 bytes"));
        let sectors = u32::from_le_bytes(seg[8..12].try_into().expect("4 bytes"));
        let flags = u32::from_le_bytes(seg[12..16].try_into().expect("4 bytes"));
        if sectors > MAX_DISCARD_SECTORS {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
        // Unknown flags, and the unmap flag on a discard, are not ours to guess (5.2.6.2).
        if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || (unmap && kind == VIRTIO_BLK_T_DISCARD) {
            return Err(VIRTIO_BLK_S_UNSUPP);
        }
        let bytes = u64::from(sectors) * SECTOR;
        let offset = disk_range(sector, bytes, ctx.disk)?;
        let r = if kind == VIRTIO_BLK_T_DISCARD {
            ctx.disk.discard(offset, bytes)
        } else {
            ctx.disk.write_zeroes(offset, bytes, unmap && ctx.may_unmap)
        };
        r.map_err(|_| VIRTIO_BLK_S_IOERR)?;
    }
    if !ctx.writeback && kind == VIRTIO_BLK_T_WRITE_ZEROES {
        ctx.disk.flush().map_err(|_| VIRTIO_BLK_S_IOERR)?;
    }
    Ok(())
}
