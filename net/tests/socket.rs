//! `-netdev socket`: TCP with QEMU's framing, multicast, unicast UDP, and the hold-back
//! queue's backpressure, seen from the card's side and from the wire.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ferrite_net::{NetBackend, Peer};

const WAIT: Duration = Duration::from_secs(5);

/// Sends `frames` from `from` and checks `rx` gets them all, in order, intact.
fn check_flow(from: &NetBackend, rx: &std::sync::mpsc::Receiver<Vec<u8>>, frames: &[Vec<u8>]) {
    for f in frames {
        from.send(f);
    }
    for f in frames {
        let got = recv_where(rx, WAIT, is_test_frame).expect("frame not delivered");
        assert_eq!(test_frame_number(&got), test_frame_number(f));
        assert_eq!(&got, f);
    }
}

fn sizes() -> Vec<Vec<u8>> {
    [60usize, 1514, 9018, 42, 64 * 1024]
        .iter()
        .enumerate()
        .map(|(i, &len)| test_frame(i as u32, len))
        .collect()
}

#[test]
fn listen_and_connect_exchange_frames_both_ways() {
    let port = free_tcp_port();
    let (pa, rxa) = peer();
    let (pb, rxb) = peer();
    let a = open(&format!("socket,id=a,listen=127.0.0.1:{port}"), pa);
    let b = open(&format!("socket,id=b,connect=127.0.0.1:{port}"), pb);
    // b is connected once open returns; a accepts when b's first frame arrives.
    check_flow(&b, &rxa, &sizes());
    check_flow(&a, &rxb, &sizes());
    let many: Vec<_> = (100..400).map(|n| test_frame(n, 60 + n as usize)).collect();
    check_flow(&b, &rxa, &many);
    check_flow(&a, &rxb, &many);
    assert_eq!(a.stats().rx_frames, 305);
    assert_eq!(b.stats().tx_frames, 305);
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f).unwrap();
    f
}

fn framed(f: &[u8]) -> Vec<u8> {
    let mut v = (f.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(f);
    v
}

#[test]
fn wire_format_is_a_4_byte_big_endian_length_then_the_frame() {
    let port = free_tcp_port();
    let (p, rx) = peer();
    let backend = open(&format!("socket,id=s,listen=127.0.0.1:{port}"), p);
    // Nobody connected: frames from the card are dropped.
    backend.send(&test_frame(0, 60));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.stats().tx_dropped, 1);

    for round in 0..2u32 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        // Two frames in one write, then one split across three writes.
        let (f1, f2, f3) = (test_frame(round * 10 + 1, 60), test_frame(round * 10 + 2, 1514), test_frame(round * 10 + 3, 300));
        s.write_all(&[framed(&f1), framed(&f2)].concat()).unwrap();
        let w3 = framed(&f3);
        s.write_all(&w3[..2]).unwrap();
        thread::sleep(Duration::from_millis(50));
        s.write_all(&w3[2..100]).unwrap();
        thread::sleep(Duration::from_millis(50));
        s.write_all(&w3[100..]).unwrap();
        for want in [&f1, &f2, &f3] {
            assert_eq!(&recv_where(&rx, WAIT, is_test_frame).expect("frame from the wire"), want);
        }
        // And the other way: exactly the length prefix and the bytes.
        let out = test_frame(round * 10 + 4, 1000);
        backend.send(&out);
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        assert_eq!(len, [0, 0, 0x03, 0xe8]);
        let mut body = vec![0u8; 1000];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body, out);
        backend.send(&test_frame(99, 70));
        assert_eq!(read_frame(&mut s), test_frame(99, 70));
        // Round 2: this peer vanishes; the backend accepts the next one.
    }
}

#[test]
fn a_listener_serves_one_peer_at_a_time() {
    let port = free_tcp_port();
    let (p, rx) = peer();
    let backend = open(&format!("socket,id=s,listen=127.0.0.1:{port}"), p);
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.write_all(&framed(&test_frame(1, 60))).unwrap();
    recv_where(&rx, WAIT, is_test_frame).unwrap();
    // A second client waits in the backlog, unserved, while the first is connected.
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.write_all(&framed(&test_frame(2, 60))).unwrap();
    assert!(recv_where(&rx, Duration::from_millis(300), is_test_frame).is_none());
    drop(first);
    let got = recv_where(&rx, WAIT, is_test_frame).expect("second peer served after the first left");
    assert_eq!(test_frame_number(&got), 2);
    second.set_read_timeout(Some(WAIT)).unwrap();
    backend.send(&test_frame(3, 60));
    assert_eq!(test_frame_number(&read_frame(&mut second)), 3);
}

#[test]
fn a_connecting_backend_reconnects_after_its_peer_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (p, _rx) = peer();
    let backend = open(&format!("socket,id=s,connect=127.0.0.1:{port}"), p);
    let (first, _) = listener.accept().unwrap();
    drop(first);
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let second = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if start.elapsed() < WAIT => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no reconnection: {e}"),
        }
    };
    second.set_nonblocking(false).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    // Frames sent before the backend noticed may be lost; keep sending until one arrives.
    let mut s = second.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for n in 0..50 {
            backend.send(&test_frame(n, 60));
            thread::sleep(Duration::from_millis(50));
        }
        backend
    });
    let f = read_frame(&mut s);
    assert!(is_test_frame(&f));
    drop(sender.join().unwrap());
}

#[test]
fn open_errors_name_the_address_and_port() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = open_err(&format!("socket,id=s,listen=127.0.0.1:{port}"));
    assert!(e.contains(&format!("cannot listen on 127.0.0.1:{port}")) && e.to_lowercase().contains("in use"), "{e}");
    let closed = free_tcp_port();
    let e = open_err(&format!("socket,id=s,connect=127.0.0.1:{closed}"));
    assert!(e.contains(&format!("cannot connect to 127.0.0.1:{closed}")) && e.contains("refused"), "{e}");
    let e = open_err("socket,id=s,connect=no-such-host.invalid:1234");
    assert!(e.contains("cannot resolve 'no-such-host.invalid:1234'"), "{e}");
}

#[test]
fn held_frames_stop_reading_and_come_through_in_order_after_rx_space() {
    let port = free_tcp_port();
    let (p, rx) = peer();
    p.open.store(false, Ordering::SeqCst);
    let backend = open(&format!("socket,id=s,listen=127.0.0.1:{port}"), p.clone());
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Far more than the hold-back queue's 256 frames: reading stops instead of dropping.
    let frames: Vec<_> = (0..2000).map(|n| test_frame(n, 200)).collect();
    let wire: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
    let writer = thread::spawn(move || {
        s.write_all(&wire).unwrap();
        s
    });
    thread::sleep(Duration::from_millis(300));
    assert!(rx.try_recv().is_err(), "the card refused everything so far");
    p.open.store(true, Ordering::SeqCst);
    backend.rx_space();
    for n in 0..2000 {
        let got = recv_where(&rx, WAIT, is_test_frame).unwrap_or_else(|| panic!("frame {n} missing"));
        assert_eq!(test_frame_number(&got), n);
    }
    let _s = writer.join().unwrap();
    assert_eq!(backend.stats().rx_dropped, 0);
    assert_eq!(backend.stats().rx_frames, 2000);
}

/// A card whose deliver calls back into the backend, as a card's interrupt path might.
struct Echo {
    backend: Mutex<Weak<NetBackend>>,
    seen: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Peer for Echo {
    fn deliver(&self, frame: &[u8]) -> bool {
        let b = self.backend.lock().unwrap().upgrade();
        if let Some(b) = b {
            let mut reply = frame.to_vec();
            reply[14] ^= 0x80;
            b.send(&reply);
            b.rx_space();
        }
        let _ = self.seen.send(frame.to_vec());
        true
    }
}

#[test]
fn deliver_may_call_send_and_rx_space() {
    let port = free_tcp_port();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let echo = Arc::new(Echo { backend: Mutex::new(Weak::new()), seen: seen_tx });
    let backend = Arc::new(open(&format!("socket,id=s,listen=127.0.0.1:{port}"), echo.clone()));
    *echo.backend.lock().unwrap() = Arc::downgrade(&backend);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for n in 0..20 {
        s.write_all(&framed(&test_frame(n, 100))).unwrap();
    }
    for n in 0..20 {
        let back = read_frame(&mut s);
        assert_eq!(u32::from_be_bytes(back[14..18].try_into().unwrap()), n | 0x8000_0000);
    }
    assert_eq!(seen.iter().take(20).count(), 20);
    // Dropping the last reference while deliver may hold a temporary one must not hang.
    let start = Instant::now();
    drop(backend);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn dropping_a_backend_stops_it_promptly_and_closes_its_sockets() {
    let port = free_tcp_port();
    let (p, _rx) = peer();
    let backend = open(&format!("socket,id=s,listen=127.0.0.1:{port}"), p.clone());
    let start = Instant::now();
    drop(backend);
    assert!(start.elapsed() < Duration::from_millis(500), "drop took {:?}", start.elapsed());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the listening socket is closed");
    assert_eq!(Arc::strong_count(&p), 1, "the thread let go of the card");
}

#[test]
fn multicast_backends_see_each_other_but_not_themselves() {
    let port = free_udp_port();
    let group = format!("230.0.0.{}:{port}", 1 + port % 200);
    let (pa, rxa) = peer();
    let (pb, rxb) = peer();
    let a = open(&format!("socket,id=a,mcast={group},localaddr=127.0.0.1"), pa);
    let b = open(&format!("socket,id=b,mcast={group},localaddr=127.0.0.1"), pb);
    let frames: Vec<_> = (0..20).map(|n| test_frame(n, 100 + n as usize * 50)).collect();
    check_flow(&a, &rxb, &frames);
    check_flow(&b, &rxa, &frames);
    // Neither got its own frames back.
    assert!(recv_where(&rxa, Duration::from_millis(200), is_test_frame).is_none());
    assert!(recv_where(&rxb, Duration::from_millis(200), is_test_frame).is_none());
}

#[test]
fn unicast_udp_backends_exchange_frames() {
    let (pa_port, pb_port) = (free_udp_port(), free_udp_port());
    let (pa, rxa) = peer();
    let (pb, rxb) = peer();
    let a = open(&format!("socket,id=a,udp=127.0.0.1:{pb_port},localaddr=127.0.0.1:{pa_port}"), pa);
    let b = open(&format!("socket,id=b,udp=127.0.0.1:{pa_port},localaddr=127.0.0.1:{pb_port}"), pb);
    check_flow(&a, &rxb, &sizes()[..4]);
    check_flow(&b, &rxa, &sizes()[..4]);
}
