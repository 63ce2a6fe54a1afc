//! The device configuration space (5.1.4): `mac[6]`, `status`, `max_virtqueue_pairs`, `mtu`,
//! little-endian.

use super::{NetState, VIRTIO_NET_S_LINK_UP};

const MAC_OFFSET: usize = 0;
const STATUS_OFFSET: usize = 6;
const MAX_VIRTQUEUE_PAIRS_OFFSET: usize = 8;
const MTU_OFFSET: usize = 10;
/// Bytes of configuration space (through `mtu`; later fields belong to features not offered).
pub const CONFIG_LEN: usize = 12;

/// The configuration bytes as they stand.
pub(super) fn layout(st: &NetState, mtu: Option<u16>) -> [u8; CONFIG_LEN] {
    let mut b = [0u8; CONFIG_LEN];
    b[MAC_OFFSET..MAC_OFFSET + 6].copy_from_slice(&st.mac);
    let status = if st.link_up { VIRTIO_NET_S_LINK_UP } else { 0 };
    b[STATUS_OFFSET..STATUS_OFFSET + 2].copy_from_slice(&status.to_le_bytes());
    b[MAX_VIRTQUEUE_PAIRS_OFFSET..MAX_VIRTQUEUE_PAIRS_OFFSET + 2].copy_from_slice(&1u16.to_le_bytes());
    b[MTU_OFFSET..MTU_OFFSET + 2].copy_from_slice(&mtu.unwrap_or(0).to_le_bytes());
    b
}

/// Copies `data.len()` bytes from `offset`; bytes past the end read 0.
pub(super) fn copy_out(bytes: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
        *out = at.and_then(|a| bytes.get(a)).copied().unwrap_or(0);
    }
}

/// A configuration write: only the MAC is writable (legacy drivers set it this way, 5.1.4.2);
/// the bytes of `data` that fall into it are applied, the rest ignored.
pub(super) fn write_mac(mac: &mut [u8; 6], offset: u64, data: &[u8]) {
    for (i, &byte) in data.iter().enumerate() {
        let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
        if let Some(slot) = at.and_then(|a| a.checked_sub(MAC_OFFSET)).and_then(|a| mac.get_mut(a)) {
            *slot = byte;
        }
    }
}
