//! `-netdev tap`: frames cross a real tap device. Needs /dev/net/tun and the right to create
//! a tap device (CAP_NET_ADMIN); without them the test says SKIPPED and passes.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use common::*;
use ferrite_net::{NetBackend, NetError, NetdevOptions};

const ETHERTYPE: u16 = 0x88b5;

/// A raw packet socket on interface `ifname`, seeing only our test EtherType.
fn packet_socket(ifname: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let proto = ETHERTYPE.to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll and the length is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
    // SAFETY: SO_RCVTIMEO takes a timeval, passed with its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    Ok(fd)
}

fn send_raw(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: `frame` is valid for its length for the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(n, frame.len() as isize, "{}", std::io::Error::last_os_error());
}

fn recv_raw(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is valid for its length for the call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n > 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[test]
fn frames_cross_a_tap_device_both_ways() {
    let ifname = format!("fttap{}", std::process::id() % 100_000);
    let (_, opts) = NetdevOptions::parse(&format!("tap,id=t,ifname={ifname},script=no,downscript=no")).unwrap();
    let (p, rx) = peer();
    let backend = match NetBackend::open(&opts, p) {
        Ok(b) => b,
        Err(e @ (NetError::TunMissing | NetError::TunDenied | NetError::TapDenied { .. })) => {
            println!("SKIPPED: tap test: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // A second user of the same device is refused, by name.
    let (p2, _rx2) = peer();
    let e = NetBackend::open(&opts, p2).err().expect("the device is taken").to_string();
    assert!(e.contains(&ifname) && e.contains("busy"), "{e}");

    match Command::new("ip").args(["link", "set", "dev", &ifname, "up"]).status() {
        Ok(s) if s.success() => {}
        other => {
            println!("SKIPPED: tap test: cannot bring {ifname} up with ip(8): {other:?}");
            return;
        }
    }
    let raw = packet_socket(&ifname).expect("packet socket on the tap device");

    // Host -> guest.
    for n in 0..5 {
        let f = test_frame(n, 60 + 100 * n as usize);
        send_raw(&raw, &f);
        let got = recv_where(&rx, Duration::from_secs(5), is_test_frame).expect("frame from the host");
        assert_eq!(got, f);
    }
    // Guest -> host.
    for n in 10..15 {
        let f = test_frame(n, 1514);
        backend.send(&f);
        let got = recv_raw(&raw).expect("frame from the card");
        assert_eq!(got, f);
    }
    assert_eq!(backend.stats().tx_dropped, 0);

    // The device lived as long as the backend.
    drop(backend);
    assert!(!std::path::Path::new(&format!("/sys/class/net/{ifname}")).exists());
}
