//! Segmentation checked against a naive, independent checksum and header reader.

use super::*;

/// RFC 1071 the slow way: 32-bit accumulation of big-endian words, folded at the end.
pub(crate) fn naive_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let hi = u32::from(bytes[i]) << 8;
        let lo = if i + 1 < bytes.len() { u32::from(bytes[i + 1]) } else { 0 };
        sum += hi | lo;
        i += 2;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether the IP header and TCP checksums of a segment verify (a checksum over data
/// including a correct checksum field is 0).
pub(crate) fn assert_checksums(seg: &[u8], l3: usize, v4: bool) {
    let (l4, pseudo) = if v4 {
        let ihl = usize::from(seg[l3] & 0xF) * 4;
        assert_eq!(naive_checksum(&[&seg[l3..l3 + ihl]]), 0, "IPv4 header checksum");
        let tcp_len = (seg.len() - l3 - ihl) as u16;
        let mut p = seg[l3 + 12..l3 + 20].to_vec();
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&tcp_len.to_be_bytes());
        (l3 + ihl, p)
    } else {
        let tcp_len = (seg.len() - l3 - 40) as u32;
        let mut p = seg[l3 + 8..l3 + 40].to_vec();
        p.extend_from_slice(&tcp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 6]);
        (l3 + 40, p)
    };
    assert_eq!(naive_checksum(&[&pseudo, &seg[l4..]]), 0, "TCP checksum");
}

pub(crate) struct Spec {
    pub v4: bool,
    pub vlan: bool,
    pub ip_options: usize,
    pub tcp_options: usize,
    pub payload: usize,
    pub flags: u8,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { v4: true, vlan: false, ip_options: 0, tcp_options: 0, payload: 3000, flags: 0x18 }
    }
}

/// An Ethernet/IP/TCP frame with payload bytes 0, 1, 2, ... and garbage checksums (as a
/// driver leaves them for offload).
pub(crate) fn build(s: &Spec) -> Vec<u8> {
    let mut f = vec![0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x52, 0x54, 0, 0xAB, 0xCD, 0xEF];
    if s.vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    let tcp_len = 20 + s.tcp_options + s.payload;
    if s.v4 {
        f.extend_from_slice(&[0x08, 0x00]);
        let ihl = 20 + s.ip_options;
        let total = (ihl + tcp_len).min(0xFFFF) as u16;
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 6, 0xDE, 0xAD]);
        f.extend_from_slice(&[10, 0, 2, 15, 93, 184, 216, 34]);
        f.extend(std::iter::repeat_n(1u8, s.ip_options));
    } else {
        f.extend_from_slice(&[0x86, 0xDD, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((tcp_len.min(0xFFFF)) as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend((0..32).map(|i| 0x20 + i as u8));
    }
    f.extend_from_slice(&[0x04, 0xD2, 0x00, 0x50]);
    f.extend_from_slice(&0xFFFF_FF00u32.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1]);
    f.push((((20 + s.tcp_options) / 4) as u8) << 4);
    f.push(s.flags);
    f.extend_from_slice(&[0xFF, 0xFF, 0xBE, 0xEF, 0, 0]);
    f.extend(std::iter::repeat_n(1u8, s.tcp_options));
    f.extend((0..s.payload).map(|i| i as u8));
    f
}

fn segments(frame: &[u8], ip: IpVersion, mss: usize) -> Result<Vec<Vec<u8>>, GsoError> {
    let mut out = Vec::new();
    let n = segment_tcp(frame, ip, mss, &mut |s| out.push(s.to_vec()))?;
    assert_eq!(n, out.len());
    Ok(out)
}

/// Checks every segment of `s` cut at `mss`.
fn check(s: &Spec, mss: usize) -> Vec<Vec<u8>> {
    let ip = if s.v4 { IpVersion::V4 } else { IpVersion::V6 };
    let segs = segments(&build(s), ip, mss).unwrap();
    check_segments(s, mss, &segs);
    segs
}

/// Checks that `segs` are the frame built from `s` cut at `mss`: headers, lengths,
/// identification, sequence numbers, flags, checksums and the payload.
pub(crate) fn check_segments(s: &Spec, mss: usize, segs: &[Vec<u8>]) {
    let frame = build(s);
    let l3 = 14 + if s.vlan { 4 } else { 0 };
    let l4 = l3 + if s.v4 { 20 + s.ip_options } else { 40 };
    let hdrs = l4 + 20 + s.tcp_options;
    assert_eq!(segs.len(), s.payload.div_ceil(mss).max(1));
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        assert_eq!(&seg[..l3], &frame[..l3], "link header copied");
        assert_checksums(seg, l3, s.v4);
        let ip_len = u16::from_be_bytes([seg[l3 + 2], seg[l3 + 3]]) as usize;
        if s.v4 {
            assert_eq!(ip_len, seg.len() - l3);
            assert_eq!(u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]), 0x1234 + i as u16);
        } else {
            let plen = u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]) as usize;
            assert_eq!(plen, seg.len() - l3 - 40);
        }
        let seq = u32::from_be_bytes(seg[l4 + 4..l4 + 8].try_into().unwrap());
        assert_eq!(seq, 0xFFFF_FF00u32.wrapping_add((i * mss) as u32), "sequence wraps");
        let flags = seg[l4 + 13];
        assert_eq!(flags & (TCP_FIN | TCP_PSH), if last { s.flags & (TCP_FIN | TCP_PSH) } else { 0 });
        assert_eq!(flags & TCP_CWR, if i == 0 { s.flags & TCP_CWR } else { 0 });
        assert!(seg.len() - hdrs <= mss);
        joined.extend_from_slice(&seg[hdrs..]);
    }
    assert_eq!(joined, frame[hdrs..], "payload preserved in order");
}

#[test]
fn ipv4_cut_at_mss_with_short_last_segment() {
    let segs = check(&Spec { flags: 0x19 | TCP_CWR, ..Default::default() }, 1448);
    assert_eq!(segs.iter().map(Vec::len).collect::<Vec<_>>(), vec![54 + 1448, 54 + 1448, 54 + 104]);
}

#[test]
fn ipv4_exact_multiple_and_single_segment() {
    check(&Spec { payload: 4000, ..Default::default() }, 1000);
    check(&Spec { payload: 500, ..Default::default() }, 1000);
    check(&Spec { payload: 0, flags: 0x11, ..Default::default() }, 1000);
}

#[test]
fn ipv4_with_ip_and_tcp_options() {
    check(&Spec { ip_options: 8, tcp_options: 12, payload: 5001, ..Default::default() }, 536);
}

#[test]
fn ipv6_with_vlan_tag() {
    check(&Spec { v4: false, vlan: true, payload: 9000, flags: 0x19 | TCP_CWR, ..Default::default() }, 1440);
}

#[test]
fn largest_super_packet() {
    let segs = check(&Spec { payload: 65535 - 40, ..Default::default() }, 1460);
    assert_eq!(segs.len(), 45);
    check(&Spec { v4: false, payload: 65535 - 20, ..Default::default() }, 9000);
}

#[test]
fn parse_finds_offsets() {
    let f = build(&Spec { vlan: true, ip_options: 4, tcp_options: 8, ..Default::default() });
    assert_eq!(parse_tcp(&f), Ok(TcpLayout { ip: IpVersion::V4, l3: 18, l4: 42, payload: 70 }));
}

#[test]
fn refuses_what_it_cannot_segment() {
    let v4 = build(&Spec::default());
    assert_eq!(segments(&v4, IpVersion::V4, 0), Err(GsoError::ZeroSegmentSize));
    assert!(matches!(segments(&v4, IpVersion::V6, 1000), Err(GsoError::WrongIpVersion { .. })));
    assert!(matches!(segments(&v4[..40], IpVersion::V4, 1000), Err(GsoError::Truncated { .. })));
    let mut udp = v4.clone();
    udp[23] = 17;
    assert_eq!(segments(&udp, IpVersion::V4, 1000), Err(GsoError::NotTcp(17)));
    let mut frag = v4.clone();
    frag[20] = 0x20;
    assert_eq!(segments(&frag, IpVersion::V4, 1000), Err(GsoError::Ipv4Fragment));
    let mut ihl = v4.clone();
    ihl[14] = 0x44;
    assert_eq!(segments(&ihl, IpVersion::V4, 1000), Err(GsoError::Ipv4HeaderLength(16)));
    let mut doff = v4.clone();
    doff[46] = 0x40;
    assert_eq!(segments(&doff, IpVersion::V4, 1000), Err(GsoError::TcpHeaderLength(16)));
    let mut arp = v4.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(segments(&arp, IpVersion::V4, 1000), Err(GsoError::NotIp(0x0806)));
    let mut ext = build(&Spec { v4: false, ..Default::default() });
    ext[20] = 0; // hop-by-hop options header
    assert_eq!(segments(&ext, IpVersion::V6, 1000), Err(GsoError::NotTcp(0)));
    let big = build(&Spec { payload: 70_000, ..Default::default() });
    assert_eq!(segments(&big, IpVersion::V4, 70_000), Err(GsoError::SegmentTooLong(54 + 70_000)));
}

#[test]
fn random_frames_never_panic() {
    let mut rng = crate::testing::XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..4000 {
        let mut f =
            build(&Spec { v4: round % 2 == 0, vlan: round % 3 == 0, payload: rng.below(3000), ..Default::default() });
        // Corrupt a few header bytes and maybe cut the frame short.
        for _ in 0..rng.below(4) {
            let i = rng.below(80.min(f.len()));
            f[i] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            f.truncate(rng.below(f.len() + 1));
        }
        let ip = if rng.below(2) == 0 { IpVersion::V4 } else { IpVersion::V6 };
        let mss = rng.below(2000);
        let mut total = 0;
        if segment_tcp(&f, ip, mss, &mut |s| total += s.len()).is_ok() {
            assert!(total >= f.len().min(1));
        }
    }
}
