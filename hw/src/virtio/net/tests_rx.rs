//! Receive: mergeable and single buffers, running out of buffers and getting them back,
//! filtering, link state, a backend thread racing transmit, and random abuse of every queue.

use super::ctrl::*;
use super::header::*;
use super::tests::*;
use super::*;
use crate::net::gso::tests::{build, Spec};
use crate::testing::XorShift;
use crate::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

const RXQ: usize = RX_QUEUE as usize;

/// A frame for `dst` with payload bytes derived from `seed`.
fn frame_to(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

fn header_at(n: &Net, addr: u64) -> NetHdr {
    let mut raw = [0u8; HDR_LEN];
    raw.copy_from_slice(&n.read(addr, HDR_LEN));
    NetHdr::parse(&raw)
}

fn rx_space(n: &Net) -> usize {
    n.sink.rx_space.load(Ordering::SeqCst)
}

#[test]
fn mergeable_frame_spans_chains() {
    let mut n = net(MODERN);
    let bufs: Vec<u64> = (0..4).map(|_| n.offer(RXQ, &[], &[1000])[0]).collect();
    let frame = frame_to(MAC, 2500, 1);
    assert!(n.rx.receive(&frame));
    let used = n.rings[RXQ].take_used();
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), vec![1000, 1000, 512]);
    let hdr = header_at(&n, bufs[0]);
    assert_eq!(hdr, NetHdr { num_buffers: 3, ..Default::default() });
    let mut got = n.read(bufs[0] + 12, 988);
    got.extend(n.read(bufs[1], 1000));
    got.extend(n.read(bufs[2], 512));
    assert_eq!(got, frame);
    assert!(n.line.level());
    // The fourth buffer is still there for the next frame.
    assert!(n.rx.receive(&frame_to(MAC, 60, 2)));
    assert_eq!(n.rings[RXQ].take_used(), vec![(3, 72)]);
    assert_eq!(n.rx.stats(), NetStats { rx_frames: 2, ..Default::default() });
}

#[test]
fn header_may_be_split_across_descriptors() {
    let mut n = net(MODERN);
    let bufs = n.offer(RXQ, &[], &[5, 4, 100]);
    let frame = frame_to(MAC, 60, 3);
    assert!(n.rx.receive(&frame));
    let mut raw = n.read(bufs[0], 5);
    raw.extend(n.read(bufs[1], 4));
    raw.extend(n.read(bufs[2], 63));
    assert_eq!(raw[10..12], [1, 0], "num_buffers");
    assert_eq!(raw[12..], frame[..]);
}

#[test]
fn too_few_buffers_consumes_nothing_and_waits_for_more() {
    let mut n = net(MODERN);
    n.offer(RXQ, &[], &[100]);
    let frame = frame_to(MAC, 1000, 4);
    assert!(!n.rx.receive(&frame), "no room: the backend holds the frame");
    assert!(n.rings[RXQ].take_used().is_empty());
    assert_eq!(n.rings[RXQ].avail_event(), 1, "kick when the next buffer is added");
    n.offer(RXQ, &[], &[2000]);
    let before = rx_space(&n);
    n.dev.queue_notify(RX_QUEUE);
    assert_eq!(rx_space(&n), before + 1);
    assert!(n.rx.receive(&frame));
    assert_eq!(n.rings[RXQ].take_used(), vec![(0, 100), (1, 912)]);
    assert_eq!(n.rx.stats(), NetStats { rx_frames: 1, ..Default::default() });

    assert!(!n.rx.receive(&frame), "empty ring");
    assert_eq!(n.rings[RXQ].avail_event(), 2);
}

#[test]
fn frame_larger_than_the_whole_ring_is_dropped() {
    let mut n = net(MODERN);
    for _ in 0..NET_QUEUE_SIZES[RXQ] {
        n.offer(RXQ, &[], &[64]);
    }
    assert!(n.rx.receive(&frame_to(MAC, 256 * 64, 5)));
    assert!(n.rings[RXQ].take_used().is_empty(), "buffers kept");
    assert_eq!(n.rx.stats().rx_dropped, 1);
    assert!(n.rx.receive(&frame_to(MAC, 100, 5)));
    assert_eq!(n.rings[RXQ].take_used().len(), 2);
}

#[test]
fn without_mergeable_buffers_one_chain_per_frame() {
    // Modern: 12-byte header, num_buffers 1.
    let mut n = net(MODERN & !VIRTIO_NET_F_MRG_RXBUF);
    let small = n.offer(RXQ, &[], &[100])[0];
    let big = n.offer(RXQ, &[], &[1600])[0];
    assert!(n.rx.receive(&frame_to(MAC, 1000, 6)), "does not fit the head chain: dropped");
    assert!(n.rings[RXQ].take_used().is_empty());
    assert!(n.rx.receive(&frame_to(MAC, 88, 6)));
    assert_eq!(n.rings[RXQ].take_used(), vec![(0, 100)]);
    assert_eq!(header_at(&n, small).num_buffers, 1);
    assert!(n.rx.receive(&frame_to(MAC, 1514, 7)));
    assert_eq!(n.rings[RXQ].take_used(), vec![(1, 1526)]);
    assert_eq!(n.read(big + 12, 1514), frame_to(MAC, 1514, 7));
    assert_eq!(n.rx.stats(), NetStats { rx_frames: 2, rx_dropped: 1, ..Default::default() });

    // Legacy: 10-byte header in its own descriptor.
    let mut n = net(LEGACY);
    let bufs = n.offer(RXQ, &[], &[10, 1514]);
    let frame = frame_to(MAC, 1514, 8);
    assert!(n.rx.receive(&frame));
    assert_eq!(n.rings[RXQ].take_used(), vec![(0, 1524)]);
    assert_eq!(n.read(bufs[0], 10), [0; 10]);
    assert_eq!(n.read(bufs[1], 1514), frame);
}

#[test]
fn frames_dropped_when_nobody_listens() {
    let mut n = idle(VirtioNetOptions::default());
    assert!(n.rx.receive(&frame_to(MAC, 60, 0)), "not started: dropped");
    n.activate(MODERN);
    n.offer(RXQ, &[], &[2000]);
    n.rx.set_link(false);
    assert!(n.rx.receive(&frame_to(MAC, 60, 0)), "link down: dropped");
    assert!(n.rx.receive(&[0; 13]), "runt");
    assert!(n.rx.receive(&vec![0; MAX_SEGMENT + 1]), "too long");
    n.rx.set_link(true);
    n.reset();
    assert!(n.rx.receive(&frame_to(MAC, 60, 0)), "after reset");
    assert_eq!(n.rx.stats(), NetStats { rx_dropped: 5, ..Default::default() });
}

const MAX_SEGMENT: usize = crate::net::gso::MAX_SEGMENT_FRAME;

#[test]
fn filtering_follows_the_control_queue() {
    let mut n = net(MODERN);
    for _ in 0..16 {
        n.offer(RXQ, &[], &[2048]);
    }
    let other = [0x52, 0x54, 0, 0, 0, 0x99];
    let multicast = [0x01, 0x00, 0x5E, 0, 0, 0xFB];
    let delivered = |n: &mut Net, dst: [u8; 6]| {
        assert!(n.rx.receive(&frame_to(dst, 60, 9)));
        n.rings[RXQ].take_used().len() == 1
    };
    assert!(delivered(&mut n, other), "promiscuous after reset, like QEMU");
    n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]);
    assert!(!delivered(&mut n, other));
    assert!(delivered(&mut n, MAC));
    assert!(delivered(&mut n, [0xFF; 6]), "broadcast");
    assert!(!delivered(&mut n, multicast));
    let mut table = 1u32.to_le_bytes().to_vec();
    table.extend_from_slice(&other);
    table.extend_from_slice(&1u32.to_le_bytes());
    table.extend_from_slice(&multicast);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &table), VIRTIO_NET_OK);
    assert!(delivered(&mut n, other));
    assert!(delivered(&mut n, multicast));
    assert!(!delivered(&mut n, [0x01, 0, 0x5E, 0, 0, 1]));
    n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &[1]);
    assert!(delivered(&mut n, [0x01, 0, 0x5E, 0, 0, 1]));
    let new_mac = [0x02, 0, 0, 0, 0, 7];
    n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &new_mac);
    assert!(delivered(&mut n, new_mac));
    assert!(!delivered(&mut n, MAC));
    assert_eq!(n.rx.stats().rx_dropped, 0, "filtered frames are not drops");
}

#[test]
fn backend_thread_receives_while_the_vcpu_transmits() {
    let mut n = net(MODERN);
    for _ in 0..200 {
        n.offer(RXQ, &[], &[1600]);
    }
    let rx = n.rx.clone();
    let backend = std::thread::spawn(move || {
        let mut delivered = 0;
        for i in 0..200u32 {
            while !rx.receive(&frame_to(MAC, 1000 + i as usize, i as u8)) {
                std::thread::yield_now();
            }
            delivered += 1;
        }
        delivered
    });
    let frame = frame_to([0xFF; 6], 500, 0);
    for _ in 0..200 {
        n.send(NetHdr::default(), &frame);
        n.rings[TX_QUEUE as usize].take_used();
    }
    assert_eq!(backend.join().unwrap(), 200);
    let stats = n.dev.stats();
    assert_eq!((stats.tx_frames, stats.rx_frames), (200, 200));
    assert_eq!(n.sink.take().len(), 200);
    let used = n.rings[RXQ].take_used();
    assert_eq!(used.len(), 200);
    assert!(used.iter().enumerate().all(|(i, &(_, len))| len as usize == 12 + 1000 + i));
}

/// Random chains on every queue: random descriptor layouts (readable/writable mixes,
/// indirect tables, addresses in and outside RAM), random headers and segmentation
/// parameters, random control commands, random frames received. Nothing may panic or hang.
#[test]
fn random_abuse_never_panics() {
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    let (mut sent, mut dropped, mut received) = (0, 0, 0);
    for round in 0..120 {
        let features = if round % 3 == 0 { LEGACY } else { MODERN & !(rng.next() & 0xFFFF) };
        let mut n = net(features);
        for _ in 0..40 {
            let q = rng.below(3);
            let size = NET_QUEUE_SIZES[q];
            // A chain of random descriptors written straight into the table.
            let head = rng.below(usize::from(size)) as u16;
            let len = 1 + rng.below(5);
            for k in 0..len {
                let index = (head + k as u16) % size;
                let addr = match rng.below(6) {
                    0 => rng.next(),
                    1 => crate::virtio::queue_tests::RAM - rng.below(64) as u64,
                    _ => 0x10_0000 + rng.below(0x2F_0000) as u64,
                };
                let blen = match rng.below(4) {
                    0 => rng.next() as u32,
                    1 => rng.below(16) as u32,
                    _ => rng.below(70_000) as u32,
                };
                // Sometimes a real TCP packet (a few bytes corrupted) to reach segmentation.
                let tcp = (addr < 0x30_0000 && rng.below(3) == 0).then(|| {
                    let spec = Spec {
                        v4: rng.below(2) == 0,
                        vlan: rng.below(4) == 0,
                        payload: rng.below(20_000),
                        ..Default::default()
                    };
                    let mut f = build(&spec);
                    for _ in 0..rng.below(3) {
                        let i = rng.below(f.len());
                        f[i] = rng.next() as u8;
                    }
                    f
                });
                let blen = tcp.as_ref().map_or(blen, |f| (12 + f.len()) as u32);
                let mut flags = if k + 1 < len { VIRTQ_DESC_F_NEXT } else { 0 };
                if rng.below(3) == 0 {
                    flags |= VIRTQ_DESC_F_WRITE;
                }
                if rng.below(20) == 0 {
                    flags = VIRTQ_DESC_F_INDIRECT;
                }
                let next = if rng.below(8) == 0 { rng.next() as u16 } else { (index + 1) % size };
                n.rings[q].set_desc(index, addr, blen, flags, next);
                // Random bytes where the chain points: headers, frames, commands.
                if addr < 0x40_0000 - 128 {
                    let junk: Vec<u8> = (0..128).map(|_| rng.next() as u8).collect();
                    n.dma.write(addr, &junk).unwrap();
                    if rng.below(2) == 0 {
                        let hdr = NetHdr {
                            flags: rng.next() as u8 & 3,
                            gso_type: [0, 1, 3, 4, 0x81, 0x84, rng.next() as u8][rng.below(7)],
                            hdr_len: rng.next() as u16,
                            gso_size: [0, 1, 536, 1448, rng.next() as u16][rng.below(5)],
                            csum_start: rng.below(100) as u16,
                            csum_offset: rng.below(40) as u16,
                            num_buffers: 0,
                        };
                        n.dma.write(addr, &hdr.encode()).unwrap();
                    }
                }
                if let Some(f) = &tcp {
                    n.dma.write(addr + 12, f).unwrap();
                }
            }
            n.rings[q].push(head);
            n.dev.queue_notify(q as u16);
            let frame_len = [0, 13, 14, 60, 1514, 9000, 70_000][rng.below(7)];
            let frame: Vec<u8> = (0..frame_len).map(|_| rng.next() as u8).collect();
            n.rx.receive(&frame);
            if rng.below(10) == 0 {
                n.rx.set_link(rng.below(2) == 0);
            }
            n.dev.queue_notify(rng.next() as u16);
        }
        if round % 5 == 0 {
            n.reset();
            n.rx.receive(&frame_to(MAC, 60, 0));
        }
        let stats = n.dev.stats();
        sent += stats.tx_frames;
        dropped += stats.tx_dropped;
        received += stats.rx_frames;
    }
    // The random input reached every path, not just the first validation.
    assert!(sent > 0 && dropped > 0 && received > 0, "{sent} {dropped} {received}");
}
