//! TCP segmentation in software: a card whose driver hands it one large TCP packet (virtio's
//! `GSO_TCPV4`/`GSO_TCPV6`) cuts it into wire-sized frames here, since every ferrite
//! backend wants complete frames with correct checksums.
//!
//! The headers are found by parsing the frame, not taken from the driver: Ethernet II with at
//! most one VLAN tag (802.1Q or 802.1ad), IPv4 (RFC 791, options allowed, not a fragment) or
//! IPv6 (RFC 8200, TCP directly after the fixed header: extension headers are refused), then
//! TCP (RFC 9293, data offset). Each segment gets the headers with the IP length, IPv4
//! identification and header checksum, TCP sequence number and flags (FIN and PSH only on the
//! last segment, CWR only on the first, as RFC 3168 segmentation does) and a TCP checksum
//! over the pseudo header. Everything is validated before the first segment goes out, so a
//! packet is either sent whole or not at all.

use super::csum;

/// Ethernet II header without a VLAN tag.
pub const ETH_HLEN: usize = 14;
/// Largest frame a segment may become (IP lengths are 16 bits; what [`super::FrameSink`]
/// accepts).
pub const MAX_SEGMENT_FRAME: usize = 0xFFFF;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;
const IPPROTO_TCP: u8 = 6;
/// IPv4 flags/fragment offset: More Fragments and the offset bits.
const IPV4_MF_OFFSET_MASK: u16 = 0x3FFF;

/// TCP flag bits (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_CWR: u8 = 0x80;

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// Where the headers of an Ethernet/IP/TCP frame start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLayout {
    pub ip: IpVersion,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP header.
    pub l4: usize,
    /// Offset of the TCP payload (the end of all headers).
    pub payload: usize,
}

/// Why a frame cannot be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    #[error("the frame of {len} bytes ends inside its headers")]
    Truncated { len: usize },
    #[error("ethertype {0:#06x} is neither IPv4 nor IPv6")]
    NotIp(u16),
    #[error("the frame is {found:?}, the driver said {expected:?}")]
    WrongIpVersion { expected: IpVersion, found: IpVersion },
    #[error("IPv4 header length {0} is invalid")]
    Ipv4HeaderLength(usize),
    #[error("the IPv4 packet is a fragment")]
    Ipv4Fragment,
    #[error("the transport protocol (or IPv6 next header) {0} is not TCP")]
    NotTcp(u8),
    #[error("TCP header length {0} is invalid")]
    TcpHeaderLength(usize),
    #[error("segment size 0")]
    ZeroSegmentSize,
    #[error("a segment would be a {0}-byte frame")]
    SegmentTooLong(usize),
}

/// Finds the IP and TCP headers of `frame`.
pub fn parse_tcp(frame: &[u8]) -> Result<TcpLayout, GsoError> {
    let truncated = GsoError::Truncated { len: frame.len() };
    let mut l3 = ETH_HLEN;
    let mut ethertype = csum::be16(frame, 12).ok_or(truncated)?;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = csum::be16(frame, 16).ok_or(truncated)?;
        l3 += VLAN_HLEN;
    }
    let (ip, l4, protocol) = match ethertype {
        ETHERTYPE_IPV4 => {
            let first = *frame.get(l3).ok_or(truncated)?;
            let ihl = usize::from(first & 0x0F) * 4;
            if first >> 4 != 4 || ihl < IPV4_MIN_HLEN {
                return Err(GsoError::Ipv4HeaderLength(ihl));
            }
            if csum::be16(frame, l3 + 6).ok_or(truncated)? & IPV4_MF_OFFSET_MASK != 0 {
                return Err(GsoError::Ipv4Fragment);
            }
            (IpVersion::V4, l3 + ihl, *frame.get(l3 + 9).ok_or(truncated)?)
        }
        ETHERTYPE_IPV6 => (IpVersion::V6, l3 + IPV6_HLEN, *frame.get(l3 + 6).ok_or(truncated)?),
        other => return Err(GsoError::NotIp(other)),
    };
    if protocol != IPPROTO_TCP {
        return Err(GsoError::NotTcp(protocol));
    }
    let data_offset = usize::from(*frame.get(l4 + 12).ok_or(truncated)? >> 4) * 4;
    if data_offset < TCP_MIN_HLEN {
        return Err(GsoError::TcpHeaderLength(data_offset));
    }
    let payload = l4 + data_offset;
    if payload > frame.len() {
        return Err(truncated);
    }
    Ok(TcpLayout { ip, l3, l4, payload })
}

/// Cuts the TCP packet in `frame` (of IP version `ip`) into segments of at most `mss` payload
/// bytes and hands each complete frame to `emit`; returns how many. The payload runs to the
/// end of the frame (a segmentation request carries no Ethernet padding).
pub fn segment_tcp(frame: &[u8], ip: IpVersion, mss: usize, emit: &mut dyn FnMut(&[u8])) -> Result<usize, GsoError> {
    let layout = parse_tcp(frame)?;
    if layout.ip != ip {
        return Err(GsoError::WrongIpVersion { expected: ip, found: layout.ip });
    }
    if mss == 0 {
        return Err(GsoError::ZeroSegmentSize);
    }
    let (headers, payload) = frame.split_at(layout.payload);
    let largest = headers.len() + mss.min(payload.len());
    if largest > MAX_SEGMENT_FRAME {
        return Err(GsoError::SegmentTooLong(largest));
    }
    let count = payload.len().div_ceil(mss).max(1);
    let ip_id = csum::be16(headers, layout.l3 + 4).unwrap_or(0);
    let seq = csum::be32(headers, layout.l4 + 4).unwrap_or(0);
    let flags = headers[layout.l4 + 13];
    let mut segment = Vec::with_capacity(largest);
    for i in 0..count {
        let start = i * mss;
        let chunk = &payload[start..(start + mss).min(payload.len())];
        segment.clear();
        segment.extend_from_slice(headers);
        segment.extend_from_slice(chunk);
        let mut seg_flags = flags;
        if i + 1 != count {
            seg_flags &= !(TCP_FIN | TCP_PSH);
        }
        if i != 0 {
            seg_flags &= !TCP_CWR;
        }
        segment[layout.l4 + 13] = seg_flags;
        csum::put_be32(&mut segment, layout.l4 + 4, seq.wrapping_add(start as u32));
        fix_ip_header(&mut segment, &layout, ip_id.wrapping_add(i as u16));
        fill_tcp_checksum(&mut segment, &layout);
        emit(&segment);
    }
    Ok(count)
}

/// Sets the IP length fields for the segment's size; IPv4 also gets `id` and a fresh header
/// checksum.
fn fix_ip_header(segment: &mut [u8], layout: &TcpLayout, id: u16) {
    let l3 = layout.l3;
    match layout.ip {
        IpVersion::V4 => {
            csum::put_be16(segment, l3 + 2, (segment.len() - l3) as u16);
            csum::put_be16(segment, l3 + 4, id);
            csum::put_be16(segment, l3 + 10, 0);
            csum::insert(segment, l3, layout.l4 - 1, l3 + 10, 0);
        }
        IpVersion::V6 => {
            csum::put_be16(segment, l3 + 4, (segment.len() - l3 - IPV6_HLEN) as u16);
        }
    }
}

/// The sum of the TCP pseudo header (RFC 9293 3.1, RFC 8200 8.1) for `tcp_len` bytes.
fn pseudo_header_sum(packet: &[u8], layout: &TcpLayout, tcp_len: usize) -> u64 {
    let addresses = match layout.ip {
        IpVersion::V4 => &packet[layout.l3 + 12..layout.l3 + 20],
        IpVersion::V6 => &packet[layout.l3 + 8..layout.l3 + 40],
    };
    let len = tcp_len as u64;
    csum::sum16(addresses, u64::from(IPPROTO_TCP) + (len >> 16) + (len & 0xFFFF))
}

/// Computes the TCP checksum of the segment from scratch.
fn fill_tcp_checksum(segment: &mut [u8], layout: &TcpLayout) {
    let at = layout.l4 + 16;
    csum::put_be16(segment, at, 0);
    let pseudo = pseudo_header_sum(segment, layout, segment.len() - layout.l4);
    let end = segment.len() - 1;
    csum::insert(segment, layout.l4, end, at, pseudo);
}

#[cfg(test)]
#[path = "gso_tests.rs"]
pub(crate) mod tests;
