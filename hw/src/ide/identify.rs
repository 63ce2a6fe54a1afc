//! IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data (ATA/ATAPI-6 8.15 and 8.16): 256 words,
//! sent little-endian through the data register.

/// Default CHS translation for IDENTIFY words 1, 3 and 6: 16 heads, 63 sectors per track.
pub(crate) const DEFAULT_HEADS: u8 = 16;
pub(crate) const DEFAULT_SPT: u8 = 63;
/// Most sectors CHS can address (ATA-6 6.2.1: 16383 x 16 x 63).
const CHS_MAX_SECTORS: u64 = 16_514_064;
/// Largest READ/WRITE MULTIPLE block, in sectors (word 47).
pub(crate) const MAX_MULTIPLE: u8 = 16;
/// Firmware revision (words 23-26, INQUIRY revision).
pub(crate) const FIRMWARE: &str = concat!("FRT", env!("CARGO_PKG_VERSION"));

/// Identity strings and the transfer modes the host selected with SET FEATURES.
pub(crate) struct Common<'a> {
    pub model: &'a str,
    pub serial: &'a str,
    /// Selected multiword DMA mode (word 63 bits 10:8).
    pub mwdma: Option<u8>,
    /// Selected Ultra DMA mode (word 88 bits 13:8).
    pub udma: Option<u8>,
    /// Device 1 (word 93 reports which device it is).
    pub unit: usize,
}

/// The state of an ATA disk that IDENTIFY DEVICE reports.
pub(crate) struct DiskParams {
    pub sectors: u64,
    /// Current CHS translation (INITIALIZE DEVICE PARAMETERS).
    pub heads: u8,
    pub spt: u8,
    pub multiple: u8,
    pub write_cache: bool,
    pub look_ahead: bool,
}

/// Cylinders of a translation with `heads` x `spt` over the CHS-addressable part of the disk
/// (16383 with the default translation once the disk exceeds 8.4 GB).
fn cylinders(sectors: u64, heads: u8, spt: u8) -> u64 {
    let per_cyl = u64::from(heads) * u64::from(spt);
    if per_cyl == 0 {
        return 0;
    }
    (sectors.min(CHS_MAX_SECTORS) / per_cyl).clamp(1, 0xFFFF)
}

/// Puts `s` into `words` as an ATA string: two characters a word, the first in the high
/// byte, padded with spaces; characters outside printable ASCII become spaces.
fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.bytes().map(|b| if (0x20..0x7F).contains(&b) { b } else { b' ' });
    for w in words {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}

fn put_u32(words: &mut [u16], v: u32) {
    words[0] = v as u16;
    words[1] = (v >> 16) as u16;
}

/// Words common to both commands: strings, timing and DMA modes, versions, word 93.
fn common(w: &mut [u16; 256], c: &Common<'_>) {
    put_string(&mut w[10..20], c.serial);
    put_string(&mut w[23..27], FIRMWARE);
    put_string(&mut w[27..47], c.model);
    w[50] = 0x4000;
    w[51] = 0x0200; // PIO timing mode 2 (obsolete word, still read by old drivers)
    w[63] = 0x0007 | c.mwdma.map_or(0, |m| 0x100 << m); // MW DMA 0-2
    w[64] = 0x0003; // PIO modes 3 and 4
    w[65] = 120; // MW DMA cycle times, ns
    w[66] = 120;
    w[67] = 120; // PIO cycle times, ns
    w[68] = 120;
    w[80] = 0x007E; // ATA-1 .. ATA/ATAPI-6
    w[88] = 0x003F | c.udma.map_or(0, |m| 0x100 << m); // UDMA 0-5
    // Hardware reset result: bit 14 set, 80-conductor cable detected (bit 13), and the
    // "shall be one" bit of this device's byte.
    w[93] = 0x6000 | if c.unit == 0 { 0x0001 } else { 0x0100 };
}

/// Word 255: signature 0xA5 and a checksum making all 512 bytes sum to 0.
fn checksum(w: &mut [u16; 256]) {
    w[255] = 0x00A5;
    let sum = w
        .iter()
        .fold(0u8, |s, &x| s.wrapping_add(x as u8).wrapping_add((x >> 8) as u8));
    w[255] |= u16::from(sum.wrapping_neg()) << 8;
}

fn to_bytes(w: &[u16; 256]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// IDENTIFY DEVICE for an ATA disk.
pub(crate) fn identify_disk(c: &Common<'_>, d: &DiskParams) -> Vec<u8> {
    let mut w = [0u16; 256];
    let lba28 = d.sectors.min(0x0FFF_FFFF) as u32;
    w[0] = 0x0040; // fixed, non-removable
    w[1] = cylinders(d.sectors, DEFAULT_HEADS, DEFAULT_SPT) as u16;
    w[3] = u16::from(DEFAULT_HEADS);
    w[6] = u16::from(DEFAULT_SPT);
    w[20] = 3; // retired: buffer type and size
    w[21] = 512;
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
    w[49] = 0x0F00; // IORDY (can be disabled), LBA, DMA
    w[53] = 0x0007; // words 54-58, 64-70 and 88 valid
    let cyl = cylinders(d.sectors, d.heads, d.spt);
    w[54] = cyl as u16;
    w[55] = u16::from(d.heads);
    w[56] = u16::from(d.spt);
    let chs_capacity = cyl * u64::from(d.heads) * u64::from(d.spt);
    put_u32(&mut w[57..59], chs_capacity as u32);
    w[59] = if d.multiple > 0 { 0x0100 | u16::from(d.multiple) } else { 0 };
    put_u32(&mut w[60..62], lba28);
    // Supported: NOP, READ/WRITE BUFFER, look-ahead, write cache, power management;
    // FLUSH CACHE (EXT) and the 48-bit feature set.
    w[82] = 0x7068;
    w[83] = 0x7400;
    w[84] = 0x4000;
    w[85] = 0x7008 | if d.write_cache { 0x0020 } else { 0 } | if d.look_ahead { 0x0040 } else { 0 };
    w[86] = 0x3400;
    w[87] = 0x4000;
    common(&mut w, c);
    for (i, word) in w[100..104].iter_mut().enumerate() {
        *word = (d.sectors >> (16 * i)) as u16;
    }
    checksum(&mut w);
    to_bytes(&w)
}

/// IDENTIFY PACKET DEVICE for an ATAPI CD/DVD-ROM.
pub(crate) fn identify_packet(c: &Common<'_>) -> Vec<u8> {
    let mut w = [0u16; 256];
    // ATAPI, CD-ROM device type, removable, DRQ within 50 us after PACKET, 12-byte packets.
    w[0] = 0x85C0;
    w[49] = 0x0F00; // IORDY (can be disabled), LBA, DMA
    w[53] = 0x0006; // words 64-70 and 88 valid
    // Supported and enabled: NOP, DEVICE RESET, PACKET, power management.
    w[82] = 0x4218;
    w[83] = 0x4000;
    w[84] = 0x4000;
    w[85] = 0x4218;
    w[87] = 0x4000;
    common(&mut w, c);
    checksum(&mut w);
    to_bytes(&w)
}
