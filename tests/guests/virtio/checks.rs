//! Each device's sane request (the template the cases mangle), its buffers, the proof that
//! the device still works, and what a case may expect of the device afterwards.

use super::*;

/// virtio-blk request header (5.2.6): type, reserved, sector; types IN and an unknown one,
/// and the status values OK, IOERR, UNSUPP.
const BLK_T_IN: u32 = 0;
const BLK_T_BOGUS: u32 = 0xdead;
const BLK_S_OK: u32 = 0;
pub(super) const BLK_S_IOERR: u32 = 1;
pub(super) const BLK_S_UNSUPP: u32 = 2;
/// virtio-net header with VERSION_1 (5.1.6): 12 bytes, all zero (no offloads).
const NET_HDR_LEN: u32 = 12;
const FRAME_LEN: u32 = 60;
const RX_BUF_LEN: u32 = NET_HDR_LEN + 1514;
/// Bytes rng is asked for.
const RNG_BYTES: u32 = 64;
const CONSOLE_TEXT: [&str; 2] = ["ferrite ", "virtio abuse\n"];

/// Buffer numbers in a device's scratch RAM ([`Dev::buffer`]).
const HEADER: u32 = 0;
const DATA: u32 = 1;
const STATUS_BYTE: u32 = 2;
pub(super) const BAD_SECTOR_HEADER: u32 = 3;
pub(super) const BAD_TYPE_HEADER: u32 = 4;
const RX_BUFFER: u32 = 2;
/// Room for the cases' own descriptors to point at.
pub(super) const SPARE: u32 = 8;

fn blk_header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

/// What bring-up writes into the device's buffers (so every case starts from the same bytes).
pub(super) fn buffers(dev: &Dev) -> Vec<(u32, Vec<u8>)> {
    let b = |n| dev.buffer(n);
    match dev.kind {
        Kind::Blk => vec![
            (b(HEADER), blk_header(BLK_T_IN, 0)),
            (b(DATA), vec![0xcc; SECTOR as usize]),
            (b(STATUS_BYTE), vec![0xff; 4]),
            (b(BAD_SECTOR_HEADER), blk_header(BLK_T_IN, u64::MAX)),
            (b(BAD_TYPE_HEADER), blk_header(BLK_T_BOGUS, 0)),
        ],
        Kind::Net => {
            // Broadcast, from a locally administered address, IEEE 802 local experimental type.
            let mut frame = vec![0xff; 6];
            frame.extend_from_slice(&[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x88, 0xb5]);
            frame.extend_from_slice(b"FERRITE-VIRTIO-ABUSE");
            frame.resize(FRAME_LEN as usize, 0);
            vec![(b(HEADER), vec![0; NET_HDR_LEN as usize]), (b(DATA), frame)]
        }
        Kind::Console => vec![(b(HEADER), CONSOLE_TEXT[0].into()), (b(DATA), CONSOLE_TEXT[1].into())],
        Kind::Balloon => vec![(b(HEADER), (BALLOON_PAGE >> 12).to_le_bytes().to_vec())],
        Kind::Rng => vec![(b(HEADER), vec![0; RNG_BYTES as usize])],
    }
}

/// The parts of the device's sane request on its abused queue, in chain order.
pub(super) fn request(dev: &Dev) -> Vec<Desc> {
    let b = |n| dev.buffer(n) as u64;
    match dev.kind {
        Kind::Blk => {
            vec![Desc::new(b(HEADER), 16, 0), Desc::new(b(DATA), SECTOR, WRITE), Desc::new(b(STATUS_BYTE), 1, WRITE)]
        }
        Kind::Net => vec![Desc::new(b(HEADER), NET_HDR_LEN, 0), Desc::new(b(DATA), FRAME_LEN, 0)],
        Kind::Console => {
            CONSOLE_TEXT.iter().enumerate().map(|(i, t)| Desc::new(b(i as u32), t.len() as u32, 0)).collect()
        }
        Kind::Balloon => vec![Desc::new(b(HEADER), 4, 0)],
        Kind::Rng => vec![Desc::new(b(HEADER), RNG_BYTES, WRITE)],
    }
}

impl Script {
    /// Puts `table` at the queue's descriptor table, `blobs` where they say, then publishes
    /// `heads` with available index `avail_idx` and notifies the queue.
    pub(super) fn submit(
        &mut self,
        d: &mut Data,
        q: Vq,
        table: &[Desc],
        blobs: &[(u32, Vec<u8>)],
        heads: &[u16],
        avail_idx: u16,
    ) -> &mut Self {
        self.put(d, q.desc, &table_bytes(table));
        for (addr, bytes) in blobs {
            self.put(d, *addr, bytes);
        }
        // flags (0: interrupts wanted, not that the kernel takes them), idx, ring.
        let mut avail = 0u16.to_le_bytes().to_vec();
        avail.extend_from_slice(&avail_idx.to_le_bytes());
        avail.extend(heads.iter().flat_map(|h| h.to_le_bytes()));
        self.put(d, q.avail, &avail).w16(q.notify, q.index as u32)
    }

    /// Waits for the device to publish used index `n` on `q`.
    pub(super) fn wait_used(&mut self, dev: &Dev, q: Vq, n: u16) -> &mut Self {
        let why = format!("{}: queue {} never returns chain {n} (used index stuck)", dev.name, q.index);
        self.wait_eq(q.used, 0xffff_0000, (n as u32) << 16, &why)
    }

    /// Waits for the blk status byte of the sane request to read `status`.
    pub(super) fn blk_status(&mut self, dev: &Dev, status: u32) -> &mut Self {
        let why = format!("{}: request status is not {status}", dev.name);
        self.wait_eq(dev.buffer(STATUS_BYTE), 0xff, status, &why)
    }
}

/// After a fresh bring-up: one sane request, and proof that it did what it should.
pub(super) fn sane_request(d: &mut Data, k: &K, dev: &Dev) -> Script {
    let mut s = Script::default();
    let q = dev.queue(dev.abused);
    if dev.kind == Kind::Net {
        // A receive buffer for whatever the backend has, before the frame goes out.
        let rx = dev.queue(0);
        let buf = Desc::new(dev.buffer(RX_BUFFER) as u64, RX_BUF_LEN, WRITE);
        s.submit(d, rx, &[buf], &[], &[0], 1);
    }
    s.submit(d, q, &chain(&request(dev)), &[], &[0], 1).wait_used(dev, q, 1);
    match dev.kind {
        Kind::Blk => {
            let sector0 = d.bytes(&disk_pattern()[..SECTOR as usize], 4);
            s.blk_status(dev, BLK_S_OK).compare(
                dev.buffer(DATA),
                sector0,
                SECTOR,
                "virtio-blk: sector 0 differs from the disk image",
            );
        }
        Kind::Rng => {
            // The used element's length: bytes written.
            s.wait_ne(q.used + 8, u32::MAX, 0, "virtio-rng: no entropy written");
        }
        Kind::Net | Kind::Console | Kind::Balloon => {}
    }
    s.inc(k.sane);
    s
}

/// What a case expects of the device once it did its thing.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    /// DEVICE_NEEDS_RESET: the transport promises it for a broken ring (2.1.2).
    NeedsReset,
    /// The abused queue returns this many chains and the device does not need a reset.
    Used(u16),
    /// Anything but a crash or a hang: the device gets a moment, then is reset.
    Any,
}

/// Checks `e`, then counts a DEVICE_NEEDS_RESET.
pub(super) fn expect(s: &mut Script, dev: &Dev, e: Expect, k: &K) {
    let st = dev.status();
    match e {
        Expect::NeedsReset => {
            s.wait_eq(st, NEEDS_RESET, NEEDS_RESET, &format!("{}: DEVICE_NEEDS_RESET never set", dev.name));
        }
        Expect::Used(n) => {
            s.wait_used(dev, dev.queue(dev.abused), n).wait_eq(
                st,
                NEEDS_RESET,
                0,
                &format!("{}: DEVICE_NEEDS_RESET after a request that should just be served", dev.name),
            );
        }
        Expect::Any => {
            s.delay(SETTLE_MS);
        }
    }
    s.tally(st, NEEDS_RESET, k.needs_reset);
}
