//! `struct virtio_net_hdr` (virtio 1.2, 5.1.6): the header before every packet in both
//! directions, little-endian (legacy drivers use guest endianness, little on x86).

use super::VIRTIO_NET_F_MRG_RXBUF;
use crate::virtio::VIRTIO_F_VERSION_1;

/// `flags`: the driver left the checksum at `csum_start + csum_offset` for the device.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags` (receive): the checksum has been validated (never set by this device).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type` values.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the TCP packet has the ECN CWR flag set (HOST_ECN).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// The header without `num_buffers` (legacy, no mergeable buffers).
pub const HDR_LEN_LEGACY: usize = 10;
/// The header with `num_buffers` (`VIRTIO_F_VERSION_1` or `VIRTIO_NET_F_MRG_RXBUF`).
pub const HDR_LEN: usize = 12;

/// A decoded header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

/// The header length the driver uses with `features` (5.1.6: `num_buffers` is present with
/// either feature).
pub fn header_len(features: u64) -> usize {
    if features & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF) != 0 {
        HDR_LEN
    } else {
        HDR_LEN_LEGACY
    }
}

impl NetHdr {
    /// Decodes the first 10 or 12 bytes of `b` (`num_buffers` reads 0 when absent).
    pub fn parse(b: &[u8; HDR_LEN]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        }
    }

    /// Encodes all 12 bytes; a 10-byte header is the prefix.
    pub fn encode(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }
}
