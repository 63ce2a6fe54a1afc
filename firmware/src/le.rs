//! Little-endian field helpers for building and parsing firmware structures in byte buffers.
//! Every accessor is bounds-checked: out-of-range reads give `None`, out-of-range writes are
//! ignored (the builders size their buffers up front, and the tests check the results).

pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
}
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}
pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}
pub fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = off
        .checked_add(bytes.len())
        .and_then(|end| b.get_mut(off..end))
    {
        dst.copy_from_slice(bytes);
    }
}
pub fn put_u8(b: &mut [u8], off: usize, v: u8) {
    put(b, off, &[v]);
}
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    put(b, off, &v.to_le_bytes());
}
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}
