//! Internet checksums (RFC 1071) and the Ethernet FCS (IEEE 802.3 CRC-32), with bounds-checked
//! big-endian field access for editing packet headers that the guest laid out.

/// Adds `data` as big-endian 16-bit words (an odd last byte padded with zero) to `sum`.
/// 64 bits cannot overflow for any packet this device handles.
pub fn sum16(data: &[u8], mut sum: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits with end-around carry (the one's complement sum).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// The checksum of `buf[start..=end]` plus `extra` (end clamped to the buffer), stored
/// big-endian at `at`: the complement of the one's complement sum, the checksum field itself
/// included in the range as it stands (SDM 3.5.8). Does nothing when `start` or the 2-byte
/// field at `at` lies outside `buf`.
pub fn insert(buf: &mut [u8], start: usize, end: usize, at: usize, extra: u64) {
    if start >= buf.len() || at.checked_add(2).is_none_or(|e| e > buf.len()) {
        return;
    }
    let end = end.min(buf.len() - 1);
    if end < start {
        return;
    }
    let sum = !fold(sum16(&buf[start..=end], extra));
    put_be16(buf, at, sum);
}

pub fn be16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at.checked_add(1)?)?]))
}

pub fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Stores `v` big-endian at `at` if the field lies inside `buf`.
pub fn put_be16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(b) = at.checked_add(2).and_then(|e| buf.get_mut(at..e)) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

pub fn put_be32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(b) = at.checked_add(4).and_then(|e| buf.get_mut(at..e)) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// IEEE 802.3 CRC-32 (reflected, polynomial 0x04C11DB7); the FCS on the wire is its
/// little-endian bytes.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8))
}
