//! Helpers shared by the backend tests: a card stand-in and frame builders.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ferrite_net::{NetBackend, NetdevOptions, Peer};

/// A card that forwards what it takes to the test, and takes frames only while `open`.
pub struct TestPeer {
    tx: mpsc::Sender<Vec<u8>>,
    pub open: AtomicBool,
}

impl Peer for TestPeer {
    fn deliver(&self, frame: &[u8]) -> bool {
        if !self.open.load(Ordering::SeqCst) {
            return false;
        }
        let _ = self.tx.send(frame.to_vec());
        true
    }
}

pub fn peer() -> (Arc<TestPeer>, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(TestPeer { tx, open: AtomicBool::new(true) }), rx)
}

pub fn open(spec: &str, peer: Arc<dyn Peer>) -> NetBackend {
    let (_, opts) = NetdevOptions::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    NetBackend::open(&opts, peer).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

pub fn open_err(spec: &str) -> String {
    let (_, opts) = NetdevOptions::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let (p, _rx) = peer();
    match NetBackend::open(&opts, p) {
        Ok(_) => panic!("{spec}: opened"),
        Err(e) => e.to_string(),
    }
}

/// A TCP port nothing listens on right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The next frame the card takes within `timeout` that `want` accepts (others skipped).
pub fn recv_where(rx: &mpsc::Receiver<Vec<u8>>, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let end = Instant::now() + timeout;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(f) if want(&f) => return Some(f),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// A test frame: broadcast, EtherType 0x88b5 (IEEE local experimental), `n` in the
/// payload, `len` bytes in all.
pub fn test_frame(n: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(18)];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&GUEST_MAC);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&n.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(n) as u8;
    }
    f
}

pub fn is_test_frame(f: &[u8]) -> bool {
    f.len() >= 18 && f[12..14] == 0x88b5u16.to_be_bytes()
}

pub fn test_frame_number(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14..18].try_into().unwrap())
}

pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;

pub fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet (no options, valid header checksum).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram without a checksum (0: none, allowed for IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// An ARP request from the guest: who has `target`? tell `sender`.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&GUEST_MAC);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    ethernet([0xff; 6], ETH_ARP, &a)
}

/// An ARP reply from the guest to `to_mac`/`to_ip`: `ip` is at GUEST_MAC.
pub fn arp_reply(ip: Ipv4Addr, to_mac: [u8; 6], to_ip: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 2];
    a.extend_from_slice(&GUEST_MAC);
    a.extend_from_slice(&ip.octets());
    a.extend_from_slice(&to_mac);
    a.extend_from_slice(&to_ip.octets());
    ethernet(to_mac, ETH_ARP, &a)
}

/// IPv4 fields of an Ethernet frame: (source, destination, protocol, payload).
pub fn parse_ipv4(f: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    if f.len() < 34 || ethertype(f) != ETH_IPV4 {
        return None;
    }
    let ip = &f[14..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Some((src, dst, ip[9], ip.get(hl..total)?))
}
