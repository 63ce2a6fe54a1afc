//! The device driven the way a virtio-net driver drives it, over real guest memory and
//! without the PCI transport: transmit with every offload, the control queue, configuration
//! space, features and reset. Receive is in `tests_rx.rs`.

use super::ctrl::*;
use super::header::*;
use super::*;
use crate::net::gso::tests::{assert_checksums, build, check_segments, Spec};
use crate::testing::FakeLine;
use crate::testing::FakeMsi;
use crate::virtio::interrupt::{Shared, VIRTIO_ISR_CONFIG};
use crate::virtio::queue::{QueueConfig, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::virtio::queue_tests::{restored_rings, GuestRing, RAM};
use crate::virtio::{Interrupt, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use ferrite_memory::{Dma, GuestMemory};
use std::sync::atomic::AtomicUsize;

pub(super) const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Everything offered plus the transport's features, as a modern Linux driver accepts.
pub(super) const MODERN: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_F_INDIRECT_DESC
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_HOST_ECN
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_CTRL_VQ
    | VIRTIO_NET_F_CTRL_RX
    | VIRTIO_NET_F_CTRL_MAC_ADDR;
/// A legacy driver without mergeable buffers: 10-byte header.
pub(super) const LEGACY: u64 =
    VIRTIO_NET_F_MAC | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX;

/// Where each queue's rings and buffers live.
const RING_BASE: [u64; 3] = [0x1_0000, 0x4_0000, 0x7_0000];
const BUF_BASE: [u64; 3] = [0x10_0000, 0x20_0000, 0x30_0000];
const BUF_AREA: u64 = 0x10_0000;

/// Records what the card put on the wire and how often it reported receive space.
#[derive(Default)]
pub(super) struct Sink {
    frames: Mutex<Vec<Vec<u8>>>,
    pub rx_space: AtomicUsize,
}

impl Sink {
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.frames.lock().unwrap())
    }
}

impl FrameSink for Sink {
    fn send(&self, frame: &[u8]) {
        self.frames.lock().unwrap().push(frame.to_vec());
    }
    fn rx_space(&self) {
        self.rx_space.fetch_add(1, Ordering::SeqCst);
    }
}

/// A card and the driver side of its three queues.
pub(super) struct Net {
    pub dev: VirtioNet,
    pub rx: VirtioNetRx,
    pub sink: Arc<Sink>,
    pub shared: Arc<Shared>,
    pub line: Arc<FakeLine>,
    pub rings: Vec<GuestRing>,
    pub dma: Dma,
    pub features: u64,
    next_desc: [u16; 3],
    next_buf: [u64; 3],
}

/// A running card that negotiated `features`.
pub(super) fn net(features: u64) -> Net {
    net_with(features, VirtioNetOptions::default())
}

pub(super) fn net_with(features: u64, opts: VirtioNetOptions) -> Net {
    let mut n = idle(opts);
    n.activate(features);
    n
}

/// A card the driver has not started yet.
pub(super) fn idle(opts: VirtioNetOptions) -> Net {
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    let shared = Arc::new(Shared::new(3, None));
    let line = Arc::new(FakeLine::default());
    shared.attach(line.clone(), Arc::new(FakeMsi::default()));
    let sink = Arc::new(Sink::default());
    let (dev, rx) = VirtioNet::new(MAC, sink.clone(), opts);
    Net { dev, rx, sink, shared, line, rings: Vec::new(), dma, features: 0, next_desc: [0; 3], next_buf: BUF_BASE }
}

impl Net {
    /// Sets up the rings as a driver does and sets DRIVER_OK.
    pub fn activate(&mut self, features: u64) {
        let (queues, interrupt) = self.setup_rings(features);
        self.start(features, queues, interrupt);
    }

    /// Fresh rings for every queue, and the queues and interrupt handle the transport would
    /// pass at DRIVER_OK.
    pub fn setup_rings(&mut self, features: u64) -> (Vec<Queue>, Interrupt) {
        let interrupt = Interrupt::new(self.shared.clone(), self.shared.epoch());
        self.rings.clear();
        let mut queues = Vec::new();
        for (i, &size) in NET_QUEUE_SIZES.iter().enumerate() {
            let base = RING_BASE[i];
            let (desc, avail, used) = (base, base + 0x1000, base + 0x2000);
            self.rings.push(GuestRing::new(self.dma.clone(), size, desc, avail, used));
            let cfg = QueueConfig { size, ready: true, desc_table: desc, avail_ring: avail, used_ring: used };
            queues.push(Queue::new(i as u16, cfg, features, self.dma.clone(), interrupt.clone()));
        }
        self.features = features;
        self.next_desc = [0; 3];
        self.next_buf = BUF_BASE;
        (queues, interrupt)
    }

    /// DRIVER_OK.
    pub fn start(&mut self, features: u64, queues: Vec<Queue>, interrupt: Interrupt) {
        let ctx = ActivateContext { features, queues, interrupt, dma: self.dma.clone() };
        self.dev.activate(ctx).unwrap();
    }

    /// A freshly built card with a copy of this one's guest RAM, loaded as a machine loads
    /// a snapshot: the device's section first, then the transport's, whose restore
    /// re-activates the device with every ring where its used index stands. The driver side
    /// carries on with the same rings.
    pub fn restored(&self) -> Net {
        let mut b = idle(VirtioNetOptions::default());
        let interrupt = Interrupt::new(b.shared.clone(), b.shared.epoch());
        let (queues, rings) = restored_rings(&self.rings, &b.dma, self.features, &interrupt);
        ferrite_persist::load(&mut b.dev, &ferrite_persist::save(&self.dev, "00:03.0 part0")).unwrap();
        b.rings = rings;
        (b.next_desc, b.next_buf, b.features) = (self.next_desc, self.next_buf, self.features);
        b.start(self.features, queues, interrupt);
        b
    }

    /// Device reset as the transport does it.
    pub fn reset(&mut self) {
        self.shared.reset();
        self.dev.reset();
    }

    fn alloc(&mut self, q: usize, len: u64) -> u64 {
        if self.next_buf[q] + len > BUF_BASE[q] + BUF_AREA {
            self.next_buf[q] = BUF_BASE[q];
        }
        let addr = self.next_buf[q];
        self.next_buf[q] += len.max(1).div_ceil(16) * 16;
        addr
    }

    /// Makes a chain of readable buffers holding `readable` and writable buffers of the
    /// given sizes available on queue `q`; returns the writable buffers' addresses.
    pub fn offer(&mut self, q: usize, readable: &[&[u8]], writable: &[u32]) -> Vec<u64> {
        let size = NET_QUEUE_SIZES[q];
        let total = readable.len() + writable.len();
        let head = self.next_desc[q];
        let mut out = Vec::new();
        for i in 0..total {
            let index = (head + i as u16) % size;
            let next = (index + 1) % size;
            let flags = if i + 1 < total { VIRTQ_DESC_F_NEXT } else { 0 };
            let (addr, len, flags) = if let Some(data) = readable.get(i) {
                let addr = self.alloc(q, data.len() as u64);
                self.dma.write(addr, data).unwrap();
                (addr, data.len() as u32, flags)
            } else {
                let len = writable[i - readable.len()];
                let addr = self.alloc(q, u64::from(len));
                out.push(addr);
                (addr, len, flags | VIRTQ_DESC_F_WRITE)
            };
            self.rings[q].set_desc(index, addr, len, flags, next);
        }
        self.next_desc[q] = (head + total as u16) % size;
        self.rings[q].push(head);
        out
    }

    /// Transmits `hdr` + `frame`, cut into descriptors at the byte offsets in `cuts`.
    pub fn send_split(&mut self, hdr: &[u8], frame: &[u8], cuts: &[usize]) {
        let packet: Vec<u8> = hdr.iter().chain(frame).copied().collect();
        let mut pieces = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&packet.len())) {
            let cut = cut.clamp(start, packet.len());
            if cut > start {
                pieces.push(&packet[start..cut]);
            }
            start = cut;
        }
        self.offer(TX_QUEUE as usize, &pieces, &[]);
        self.dev.queue_notify(TX_QUEUE);
    }

    /// Transmits `frame` after `hdr` (encoded at the negotiated header length).
    pub fn send(&mut self, hdr: NetHdr, frame: &[u8]) {
        let len = header_len(self.features);
        self.send_split(&hdr.encode()[..len], frame, &[]);
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.dma.read(addr, &mut b).unwrap();
        b
    }

    /// Sends a control command; returns the ack byte.
    pub fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> u8 {
        let ack = self.offer(CTRL_QUEUE as usize, &[&[class, cmd], data], &[1])[0];
        self.dma.write(ack, &[0xEE]).unwrap();
        self.dev.queue_notify(CTRL_QUEUE);
        let used = self.rings[CTRL_QUEUE as usize].take_used();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].1, 1, "one byte written");
        self.read(ack, 1)[0]
    }

    pub fn config(&self) -> Vec<u8> {
        let mut b = vec![0; config::CONFIG_LEN];
        self.dev.read_config(0, &mut b);
        b
    }
}

fn plain_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0xFF; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x88, 0xB5]);
    f.extend((0..len.saturating_sub(14)).map(|i| (i * 7) as u8));
    f
}

// ---- transmit ----

#[test]
fn transmits_with_the_header_split_anywhere() {
    let mut n = net(MODERN);
    let frame = plain_frame(100);
    let hdr = NetHdr::default().encode();
    for cuts in [&[][..], &[5], &[12], &[3, 11, 12, 13, 60]] {
        n.send_split(&hdr, &frame, cuts);
        assert_eq!(n.sink.take(), vec![frame.clone()], "cuts {cuts:?}");
    }
    let used = n.rings[TX_QUEUE as usize].take_used();
    assert_eq!(used.len(), 4);
    assert!(used.iter().all(|&(_, len)| len == 0), "nothing written into transmit chains");
    assert!(n.line.level(), "used buffer interrupt");
    assert_eq!(n.dev.stats(), NetStats { tx_frames: 4, ..Default::default() });
}

#[test]
fn legacy_header_is_ten_bytes() {
    let mut n = net(LEGACY);
    let frame = plain_frame(64);
    n.send_split(&[0; 10], &frame, &[10]);
    assert_eq!(n.sink.take(), vec![frame]);
}

/// The TCP frame of `spec` with its checksum field holding the pseudo-header sum, as a
/// driver leaves it with NEEDS_CSUM; and the offsets to put in the header.
fn partial_checksum_frame(spec: &Spec) -> (Vec<u8>, u16, u16) {
    let mut f = build(spec);
    let (l3, l4) = (14, 34);
    let tcp_len = (f.len() - l4) as u16;
    let mut pseudo = f[l3 + 12..l3 + 20].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    // The driver stores the folded sum, not its complement: the complement of the
    // complement computed by the naive helper.
    let partial = !crate::net::gso::tests::naive_checksum(&[&pseudo]);
    f[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
    // The IPv4 header checksum is the driver's job; make it right.
    f[l3 + 10..l3 + 12].fill(0);
    let ip = crate::net::gso::tests::naive_checksum(&[&f[l3..l4]]);
    f[l3 + 10..l3 + 12].copy_from_slice(&ip.to_be_bytes());
    (f, l4 as u16, 16)
}

#[test]
fn completes_a_partial_checksum() {
    let mut n = net(MODERN);
    let spec = Spec { payload: 777, ..Default::default() };
    let (frame, csum_start, csum_offset) = partial_checksum_frame(&spec);
    let hdr = NetHdr { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start, csum_offset, ..Default::default() };
    n.send(hdr, &frame);
    let sent = n.sink.take();
    assert_eq!(sent.len(), 1);
    assert_checksums(&sent[0], 14, true);
    assert_eq!(sent[0][..50], frame[..50], "only the checksum changed");
}

#[test]
fn checksum_zero_goes_out_as_ffff() {
    let mut n = net(MODERN);
    // Sum of the range is 0xFFFF (all ones), so the checksum would be 0.
    let mut frame = plain_frame(14);
    frame.extend_from_slice(&[0xFF, 0xFF, 0, 0]);
    let hdr = NetHdr { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start: 14, csum_offset: 2, ..Default::default() };
    n.send(hdr, &frame);
    let sent = n.sink.take();
    assert_eq!(&sent[0][16..18], &[0xFF, 0xFF]);
}

#[test]
fn bad_checksum_offsets_drop_the_packet() {
    let mut n = net(MODERN);
    let frame = plain_frame(60);
    for (start, offset) in [(60, 0), (58, 1), (0, 59), (u16::MAX, u16::MAX)] {
        let hdr =
            NetHdr { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start: start, csum_offset: offset, ..Default::default() };
        n.send(hdr, &frame);
    }
    assert!(n.sink.take().is_empty());
    n.send(NetHdr { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start: 58, csum_offset: 0, ..Default::default() }, &frame);
    assert_eq!(n.sink.take().len(), 1, "the last two bytes can hold the checksum");
    assert_eq!(n.dev.stats(), NetStats { tx_frames: 1, tx_dropped: 4, ..Default::default() });
    assert_eq!(n.rings[TX_QUEUE as usize].take_used().len(), 5, "dropped packets are returned too");
}

fn gso_hdr(gso_type: u8, gso_size: u16) -> NetHdr {
    NetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        gso_size,
        hdr_len: 54,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    }
}

#[test]
fn segments_tcp_over_ipv4() {
    let mut n = net(MODERN);
    let spec = Spec { payload: 60_000, flags: 0x19, ..Default::default() };
    n.send_split(&gso_hdr(VIRTIO_NET_HDR_GSO_TCPV4, 1448).encode(), &build(&spec), &[12, 66, 3000]);
    let sent = n.sink.take();
    check_segments(&spec, 1448, &sent);
    assert_eq!(n.dev.stats().tx_frames, sent.len() as u64);
}

#[test]
fn segments_tcp_over_ipv6_with_ecn() {
    let mut n = net(MODERN);
    let spec = Spec { v4: false, vlan: true, payload: 10_000, flags: 0x18 | 0x80, ..Default::default() };
    n.send(gso_hdr(VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN, 1400), &build(&spec));
    check_segments(&spec, 1400, &n.sink.take());
}

#[test]
fn refuses_packets_it_cannot_finish() {
    let mut n = net(MODERN);
    let tcp4 = build(&Spec::default());
    n.send(gso_hdr(VIRTIO_NET_HDR_GSO_TCPV4, 0), &tcp4);
    n.send(gso_hdr(VIRTIO_NET_HDR_GSO_TCPV6, 1000), &tcp4);
    n.send(gso_hdr(VIRTIO_NET_HDR_GSO_UDP, 1000), &tcp4);
    n.send(gso_hdr(0x7F, 1000), &tcp4);
    n.send(NetHdr::default(), &plain_frame(14)[..13]);
    n.send(NetHdr::default(), &plain_frame(tx::MAX_TX_PACKET + 1));
    n.send(NetHdr::default(), &plain_frame(0x1_0000));
    n.send_split(&[0; 11], &[], &[]);
    assert!(n.sink.take().is_empty());
    assert_eq!(n.dev.stats(), NetStats { tx_dropped: 8, ..Default::default() });
    assert_eq!(n.rings[TX_QUEUE as usize].take_used().len(), 8);
    n.send(NetHdr::default(), &plain_frame(0xFFFF));
    assert_eq!(n.sink.take()[0].len(), 0xFFFF, "the largest frame goes out");
}

#[test]
fn link_down_drops_transmitted_packets() {
    let mut n = net(MODERN);
    n.rx.set_link(false);
    n.send(NetHdr::default(), &plain_frame(60));
    assert!(n.sink.take().is_empty());
    n.rx.set_link(true);
    n.send(NetHdr::default(), &plain_frame(60));
    assert_eq!(n.sink.take().len(), 1);
    assert_eq!(n.dev.stats(), NetStats { tx_frames: 1, tx_dropped: 1, ..Default::default() });
}

#[test]
fn packets_posted_before_driver_ok_go_out_at_activation() {
    let mut n = idle(VirtioNetOptions::default());
    let (queues, interrupt) = n.setup_rings(LEGACY);
    n.offer(TX_QUEUE as usize, &[&[0; 10], &plain_frame(60)], &[]);
    n.offer(CTRL_QUEUE as usize, &[&[VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0]], &[1]);
    assert_eq!(n.sink.rx_space.load(Ordering::SeqCst), 0);
    n.start(LEGACY, queues, interrupt);
    assert_eq!(n.sink.take().len(), 1);
    assert_eq!(n.rings[CTRL_QUEUE as usize].take_used().len(), 1, "control command answered");
    assert_eq!(n.sink.rx_space.load(Ordering::SeqCst), 1, "receive buffers may be waiting too");
}

// ---- control queue ----

#[test]
fn receive_mode_commands() {
    let mut n = net(MODERN);
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]), VIRTIO_NET_OK);
    assert!(!n.rx.shared.lock().filter.promisc);
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &[1]), VIRTIO_NET_OK);
    assert!(n.rx.shared.lock().filter.allmulti);
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[]), VIRTIO_NET_ERR, "data missing");
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, 2, &[1]), VIRTIO_NET_ERR, "ALLUNI needs CTRL_RX_EXTRA");
    assert_eq!(n.command(9, 0, &[]), VIRTIO_NET_ERR, "unknown class");
    assert_eq!(n.command(2, 0, &[0, 1]), VIRTIO_NET_ERR, "VLAN class not offered");
}

#[test]
fn commands_need_their_features() {
    let mut n = net(MODERN & !(VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_CTRL_MAC_ADDR));
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]), VIRTIO_NET_ERR);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &[2; 6]), VIRTIO_NET_ERR);
    assert!(n.rx.shared.lock().filter.promisc);
    assert_eq!(n.dev.mac(), MAC);
}

fn mac_table(list: &[[u8; 6]]) -> Vec<u8> {
    let mut b = (list.len() as u32).to_le_bytes().to_vec();
    list.iter().for_each(|m| b.extend_from_slice(m));
    b
}

#[test]
fn mac_table_and_address() {
    let mut n = net(MODERN);
    let uni = [[0x52, 0x54, 0, 0, 0, 1]];
    let multi = [[0x01, 0x00, 0x5E, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]];
    let mut data = mac_table(&uni);
    data.extend(mac_table(&multi));
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &data), VIRTIO_NET_OK);
    {
        let st = n.rx.shared.lock();
        assert_eq!(st.filter.unicast.entries, uni);
        assert_eq!(st.filter.multicast.entries, multi);
    }
    let mut long = mac_table(&[[0x01, 0, 0, 0, 0, 9]; 65]);
    long.splice(0..0, mac_table(&[]));
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &long), VIRTIO_NET_OK);
    assert!(n.rx.shared.lock().filter.multicast.overflow, "too many entries: accept all");
    let mut lying = 1000u32.to_le_bytes().to_vec();
    lying.extend_from_slice(&[0; 12]);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &lying), VIRTIO_NET_ERR);
    assert_eq!(
        n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &mac_table(&uni)),
        VIRTIO_NET_ERR,
        "multicast part missing"
    );

    let new_mac = [0x02, 0, 0, 0, 0, 0x42];
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &new_mac), VIRTIO_NET_OK);
    assert_eq!(n.dev.mac(), new_mac);
    assert_eq!(n.config()[..6], new_mac);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &[1, 2, 3]), VIRTIO_NET_ERR);
    assert_eq!(n.dev.mac(), new_mac);
}

#[test]
fn control_chain_without_room_for_the_ack() {
    let mut n = net(MODERN);
    n.offer(CTRL_QUEUE as usize, &[&[VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0]], &[]);
    n.offer(CTRL_QUEUE as usize, &[], &[4]);
    n.dev.queue_notify(CTRL_QUEUE);
    assert_eq!(n.rings[CTRL_QUEUE as usize].take_used().iter().map(|u| u.1).collect::<Vec<_>>(), vec![0, 1]);
}

// ---- configuration, features, reset ----

#[test]
fn configuration_space() {
    let mut n = net_with(MODERN, VirtioNetOptions { mtu: Some(1500) });
    let cfg = n.config();
    assert_eq!(cfg[..6], MAC);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), VIRTIO_NET_S_LINK_UP);
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 1, "one queue pair");
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 1500);
    let mut status = [0; 2];
    n.dev.read_config(6, &mut status);
    assert_eq!(status, [1, 0]);
    let mut past = [0xAA; 4];
    n.dev.read_config(10, &mut past);
    assert_eq!(past, [0xDC, 0x05, 0, 0], "bytes past the end read 0");
    // A legacy driver writes its MAC byte by byte; other fields are read-only.
    for (i, b) in [2u8, 4, 6, 8, 10, 12].iter().enumerate() {
        n.dev.write_config(i as u64, &[*b]);
    }
    n.dev.write_config(6, &[0, 0, 5, 5]);
    assert_eq!(n.config()[..10], [2, 4, 6, 8, 10, 12, 1, 0, 1, 0]);
    n.dev.write_config(4, &[0xA, 0xB, 0xC]);
    assert_eq!(n.dev.mac(), [2, 4, 6, 8, 0xA, 0xB]);
}

#[test]
fn offered_features() {
    let (dev, _) = VirtioNet::new(MAC, Arc::new(Sink::default()), VirtioNetOptions::default());
    let f = dev.device_features();
    assert_eq!(f & VIRTIO_NET_F_MTU, 0);
    for not in [
        VIRTIO_NET_F_MQ,
        VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_CTRL_VLAN,
        VIRTIO_NET_F_GUEST_ANNOUNCE,
    ] {
        assert_eq!(f & not, 0);
    }
    assert_eq!(f & MODERN, MODERN & !(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC));
    assert_eq!(f & crate::virtio::TRANSPORT_FEATURES_MASK, VIRTIO_F_ANY_LAYOUT);
    assert!(features_consistent(f));
    let (dev, _) = VirtioNet::new(MAC, Arc::new(Sink::default()), VirtioNetOptions { mtu: Some(9000) });
    assert_ne!(dev.device_features() & VIRTIO_NET_F_MTU, 0);
    assert_eq!(dev.device_type(), crate::virtio::VIRTIO_ID_NET);
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 64]);
}

#[test]
fn feature_dependencies() {
    let (mut dev, _) = VirtioNet::new(MAC, Arc::new(Sink::default()), VirtioNetOptions::default());
    assert!(dev.accept_features(MODERN));
    assert!(dev.accept_features(0));
    assert!(!dev.accept_features(VIRTIO_NET_F_HOST_TSO4), "TSO without CSUM");
    assert!(!dev.accept_features(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_ECN), "ECN without TSO");
    assert!(!dev.accept_features(VIRTIO_NET_F_CTRL_RX), "CTRL_RX without the control queue");
    assert!(!dev.accept_features(VIRTIO_NET_F_CTRL_MAC_ADDR));
}

#[test]
fn reset_restores_the_configured_mac_and_filter() {
    let mut n = net(MODERN);
    n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &[2; 6]);
    n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]);
    n.reset();
    assert_eq!(n.dev.mac(), MAC);
    assert!(n.rx.shared.lock().filter.promisc);
    n.dev.queue_notify(TX_QUEUE);
    n.send(NetHdr::default(), &plain_frame(60));
    assert!(n.sink.take().is_empty(), "nothing runs after reset");
    n.activate(MODERN);
    n.send(NetHdr::default(), &plain_frame(60));
    assert_eq!(n.sink.take().len(), 1);
}

#[test]
fn link_change_interrupts_only_with_status() {
    let n = net(MODERN);
    n.rx.set_link(false);
    assert_eq!(n.config()[6], 0);
    assert_eq!(n.shared.take_isr() & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG);
    n.rx.set_link(false);
    assert_eq!(n.shared.take_isr(), 0, "no change, no interrupt");
    n.rx.set_link(true);
    assert_eq!(n.shared.take_isr() & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG);
    assert_eq!(n.config()[6], 1);

    let n = net(MODERN & !VIRTIO_NET_F_STATUS);
    n.rx.set_link(false);
    assert_eq!(n.shared.take_isr(), 0);
    assert!(!n.rx.link_up());
}
