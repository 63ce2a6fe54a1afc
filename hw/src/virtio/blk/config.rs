//! The virtio-blk configuration space (virtio 1.2, 5.2.4) and the feature bits (5.2.3).

/// Maximum size of any single segment is in `size_max` (not offered: no limit).
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// Maximum number of segments in a request is in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Disk-style geometry in `geometry`.
pub const VIRTIO_BLK_F_GEOMETRY: u64 = 1 << 4;
/// The device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Block size of the disk is in `blk_size`.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// Cache flush command support.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Optimal I/O alignment information in `topology`.
pub const VIRTIO_BLK_F_TOPOLOGY: u64 = 1 << 10;
/// The driver can switch the cache between writeback and writethrough through `writeback`.
pub const VIRTIO_BLK_F_CONFIG_WCE: u64 = 1 << 11;
/// More than one request queue (`num_queues`).
pub const VIRTIO_BLK_F_MQ: u64 = 1 << 12;
/// DISCARD command support.
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
/// WRITE ZEROES command support.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;

/// Bytes per sector: request sectors are always 512 bytes (5.2.6), whatever `blk_size` says.
pub const SECTOR: u64 = 512;
/// Largest DISCARD / WRITE ZEROES range in sectors (QEMU's default, about 2 GiB).
pub const MAX_DISCARD_SECTORS: u32 = 0x3F_FFFF;
/// Segments per DISCARD / WRITE ZEROES request.
pub const MAX_DISCARD_SEGMENTS: u32 = 1;

// Field offsets.
const CAPACITY: usize = 0;
const SEG_MAX: usize = 12;
const GEOMETRY: usize = 16;
const BLK_SIZE: usize = 20;
const PHYSICAL_BLOCK_EXP: usize = 24;
const MIN_IO_SIZE: usize = 26;
const WRITEBACK: usize = 32;
const NUM_QUEUES: usize = 34;
const MAX_DISCARD_SECTORS_AT: usize = 36;
const MAX_DISCARD_SEG: usize = 40;
const DISCARD_SECTOR_ALIGNMENT: usize = 44;
const MAX_WRITE_ZEROES_SECTORS: usize = 48;
const MAX_WRITE_ZEROES_SEG: usize = 52;
const WRITE_ZEROES_MAY_UNMAP: usize = 56;
/// Up to and including `unused1` (the secure-erase fields belong to a feature not offered).
pub const CONFIG_LEN: usize = 60;

/// What the configuration space describes.
#[derive(Clone, Copy, Debug)]
pub struct BlkGeometry {
    /// Disk size in bytes (a multiple of 512).
    pub capacity_bytes: u64,
    /// Most segments per request (`seg_max`).
    pub seg_max: u32,
    pub num_queues: u16,
    /// Whether write zeroes may deallocate (the drive's `discard=unmap`).
    pub may_unmap: bool,
}

/// The configuration bytes, with `writeback` as the driver last set it.
pub fn config_bytes(g: &BlkGeometry, writeback: bool) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let put16 = |c: &mut [u8; CONFIG_LEN], at: usize, v: u16| c[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |c: &mut [u8; CONFIG_LEN], at: usize, v: u32| c[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let sectors = g.capacity_bytes / SECTOR;
    c[CAPACITY..CAPACITY + 8].copy_from_slice(&sectors.to_le_bytes());
    put32(&mut c, SEG_MAX, g.seg_max);
    let (cylinders, heads, per_track) = chs(sectors);
    put16(&mut c, GEOMETRY, cylinders);
    c[GEOMETRY + 2] = heads;
    c[GEOMETRY + 3] = per_track;
    put32(&mut c, BLK_SIZE, SECTOR as u32);
    c[PHYSICAL_BLOCK_EXP] = 0;
    put16(&mut c, MIN_IO_SIZE, 1);
    c[WRITEBACK] = u8::from(writeback);
    put16(&mut c, NUM_QUEUES, g.num_queues);
    put32(&mut c, MAX_DISCARD_SECTORS_AT, MAX_DISCARD_SECTORS);
    put32(&mut c, MAX_DISCARD_SEG, MAX_DISCARD_SEGMENTS);
    put32(&mut c, DISCARD_SECTOR_ALIGNMENT, 1);
    put32(&mut c, MAX_WRITE_ZEROES_SECTORS, MAX_DISCARD_SECTORS);
    put32(&mut c, MAX_WRITE_ZEROES_SEG, MAX_DISCARD_SEGMENTS);
    c[WRITE_ZEROES_MAY_UNMAP] = u8::from(g.may_unmap);
    c
}

/// The offset of `writeback`, the one field a driver writes.
pub fn writeback_offset() -> u64 {
    WRITEBACK as u64
}

/// A BIOS-style geometry for the size (16 heads, 63 sectors per track, cylinders capped), as
/// disks report it: only informational for virtio drivers.
fn chs(sectors: u64) -> (u16, u8, u8) {
    const HEADS: u64 = 16;
    const PER_TRACK: u64 = 63;
    let cylinders = (sectors / (HEADS * PER_TRACK)).clamp(1, 16383);
    (cylinders as u16, HEADS as u8, PER_TRACK as u8)
}
