//! `-netdev user`: libslirp answers the guest's DHCP and ARP as QEMU's user networking
//! does, and host forwards reach the guest.

mod common;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use ferrite_net::NetBackend;

const WAIT: Duration = Duration::from_secs(5);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn dhcp_discover(xid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 548];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10] = 0x80; // broadcast reply
    b[28..34].copy_from_slice(&GUEST_MAC);
    b[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]); // magic cookie
    b[240..246].copy_from_slice(&[53, 1, 1, 55, 1, 1]); // DHCPDISCOVER; asks for the netmask
    b[246] = 255;
    let ip = ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, &udp(68, 67, &b));
    ethernet([0xff; 6], ETH_IPV4, &ip)
}

/// The DHCP options of a BOOTP message (after the magic cookie).
fn dhcp_option(bootp: &[u8], code: u8) -> Option<&[u8]> {
    let mut opts = bootp.get(240..)?;
    while let [c, rest @ ..] = opts {
        match *c {
            0 => opts = rest,
            255 => return None,
            _ => {
                let len = usize::from(*rest.first()?);
                let value = rest.get(1..1 + len)?;
                if *c == code {
                    return Some(value);
                }
                opts = &rest[1 + len..];
            }
        }
    }
    None
}

#[test]
fn dhcp_discover_gets_an_offer_of_10_0_2_15_from_10_0_2_2() {
    let (p, rx) = peer();
    let backend = open("user,id=u", p);
    backend.send(&dhcp_discover(0x1234_5678));
    let offer = recv_where(&rx, WAIT, |f| matches!(parse_ipv4(f), Some((_, _, 17, _)))).expect("no DHCP reply");
    let (src, _, _, udp) = parse_ipv4(&offer).unwrap();
    assert_eq!(src, GATEWAY);
    assert_eq!((u16::from_be_bytes([udp[0], udp[1]]), u16::from_be_bytes([udp[2], udp[3]])), (67, 68));
    let bootp = &udp[8..];
    assert_eq!(bootp[0], 2, "BOOTREPLY");
    assert_eq!(bootp[4..8], 0x1234_5678u32.to_be_bytes());
    assert_eq!(Ipv4Addr::new(bootp[16], bootp[17], bootp[18], bootp[19]), GUEST, "yiaddr");
    assert_eq!(dhcp_option(bootp, 53), Some(&[2][..]), "DHCPOFFER");
    assert_eq!(dhcp_option(bootp, 54), Some(&GATEWAY.octets()[..]), "server identifier");
    assert_eq!(dhcp_option(bootp, 1), Some(&[255, 255, 255, 0][..]), "netmask");
}

#[test]
fn dhcp_follows_net_and_dhcpstart() {
    let (p, rx) = peer();
    let backend = open("user,id=u,net=192.168.77.0/24,dhcpstart=192.168.77.100", p);
    backend.send(&dhcp_discover(7));
    let offer = recv_where(&rx, WAIT, |f| matches!(parse_ipv4(f), Some((_, _, 17, _)))).expect("no DHCP reply");
    let (src, _, _, udp) = parse_ipv4(&offer).unwrap();
    assert_eq!(src, Ipv4Addr::new(192, 168, 77, 2));
    assert_eq!(udp[8 + 16..8 + 20], [192, 168, 77, 100]);
}

fn arp_reply_from(rx: &Receiver<Vec<u8>>, ip: Ipv4Addr) -> Option<Vec<u8>> {
    recv_where(rx, WAIT, |f| f.len() >= 42 && ethertype(f) == ETH_ARP && f[20..22] == [0, 2] && f[28..32] == ip.octets())
}

#[test]
fn arp_request_for_the_gateway_gets_a_reply() {
    let (p, rx) = peer();
    let backend = open("user,id=u", p);
    backend.send(&arp_request(GUEST, GATEWAY));
    let reply = arp_reply_from(&rx, GATEWAY).expect("no ARP reply");
    assert_eq!(reply[..6], GUEST_MAC, "sent to the asker");
    assert_eq!(reply[32..38], GUEST_MAC, "target hardware address");
    assert_eq!(reply[38..42], GUEST.octets(), "target protocol address");
    // The DNS address answers too.
    backend.send(&arp_request(GUEST, Ipv4Addr::new(10, 0, 2, 3)));
    assert!(arp_reply_from(&rx, Ipv4Addr::new(10, 0, 2, 3)).is_some());
}

#[test]
fn a_host_connection_to_a_forwarded_port_reaches_the_guest_as_a_syn() {
    let port = free_tcp_port();
    let (p, rx) = peer();
    let backend = open(&format!("user,id=u,hostfwd=tcp:127.0.0.1:{port}-:22"), p);
    // The guest makes itself known (libslirp learns its MAC from the ARP request).
    backend.send(&arp_request(GUEST, GATEWAY));
    arp_reply_from(&rx, GATEWAY).expect("no ARP reply");
    let _conn = TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port listens");
    let end = Instant::now() + WAIT;
    let syn = loop {
        assert!(Instant::now() < end, "no SYN reached the guest");
        let Ok(f) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
        // Should libslirp ask for the guest's address anyway, answer.
        if ethertype(&f) == ETH_ARP && f[20..22] == [0, 1] && f[38..42] == GUEST.octets() {
            backend.send(&arp_reply(GUEST, f[22..28].try_into().unwrap(), GATEWAY));
            continue;
        }
        if let Some((src, dst, 6, tcp)) = parse_ipv4(&f) {
            break (src, dst, tcp.to_vec());
        }
    };
    let (src, dst, tcp) = syn;
    assert_eq!(dst, GUEST);
    assert_eq!(src, GATEWAY, "forwarded connections come from the gateway");
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 22, "destination port");
    assert_eq!(tcp[13] & 0x12, 0x02, "SYN without ACK");
}

#[test]
fn a_forwarded_port_in_use_is_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = open_err(&format!("user,id=u,hostfwd=tcp:127.0.0.1:{port}-:22"));
    assert!(e.contains(&format!("host port {port}")), "{e}");
    assert!(e.to_lowercase().contains("in use"), "{e}");
    assert!(e.starts_with(&format!("hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:22")), "{e}");
    let udp_taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp_taken.local_addr().unwrap().port();
    let e = open_err(&format!("user,id=u,hostfwd=udp:127.0.0.1:{port}-:53"));
    assert!(e.contains(&format!("host port {port}")) && e.to_lowercase().contains("in use"), "{e}");
}

#[test]
fn the_card_holding_back_delays_replies_without_losing_them() {
    let (p, rx) = peer();
    p.open.store(false, std::sync::atomic::Ordering::SeqCst);
    let backend = open("user,id=u", p.clone());
    backend.send(&arp_request(GUEST, GATEWAY));
    backend.send(&dhcp_discover(9));
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err());
    p.open.store(true, std::sync::atomic::Ordering::SeqCst);
    backend.rx_space();
    assert!(arp_reply_from(&rx, GATEWAY).is_some());
    assert!(recv_where(&rx, WAIT, |f| matches!(parse_ipv4(f), Some((_, _, 17, _)))).is_some());
    assert_eq!(backend.stats().rx_dropped, 0);
}

#[test]
fn user_variants_open_and_drop_promptly() {
    for spec in ["user,id=u", "user,id=u,ipv6=off", "user,id=u,ipv4=off", "user,id=u,restrict=on,hostname=g,dnssearch=example.org"] {
        let (p, _rx) = peer();
        let backend: NetBackend = open(spec, p.clone());
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(backend);
        assert!(start.elapsed() < Duration::from_millis(500), "{spec}: drop took {:?}", start.elapsed());
        assert_eq!(std::sync::Arc::strong_count(&p), 1, "{spec}: the thread let go of the card");
    }
}

/// The ICMPv6 checksum over the IPv6 pseudo-header and `body`.
fn icmpv6_checksum(src: &[u8; 16], dst: &[u8; 16], body: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(src);
    data.extend_from_slice(dst);
    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(body);
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn ipv6_is_on_by_default_and_advertises_fec0_64() {
    let (p, rx) = peer();
    let backend = open("user,id=u", p);
    // Router Solicitation from the guest's link-local address to all-routers.
    let src: [u8; 16] = "fe80::5054:ff:fe12:3456".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "ff02::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&GUEST_MAC);
    let c = icmpv6_checksum(&src, &dst, &rs);
    rs[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend_from_slice(&(rs.len() as u16).to_be_bytes());
    ip6.extend_from_slice(&[58, 255]);
    ip6.extend_from_slice(&src);
    ip6.extend_from_slice(&dst);
    ip6.extend_from_slice(&rs);
    backend.send(&ethernet([0x33, 0x33, 0, 0, 0, 2], 0x86dd, &ip6));
    // A Router Advertisement (ICMPv6 type 134) carrying the prefix fec0::/64.
    let ra = recv_where(&rx, WAIT, |f| f.len() > 62 && ethertype(f) == 0x86dd && f[20] == 58 && f[54] == 134)
        .expect("no router advertisement");
    let fec0: Vec<u8> = "fec0::".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    let has_prefix = ra.windows(16).any(|w| w == fec0.as_slice());
    assert!(has_prefix, "RA without the fec0:: prefix: {ra:02x?}");
}
