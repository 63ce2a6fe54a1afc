//! The abuse cases. Each starts from a fresh bring-up and does one malformed thing to the
//! device's abused queue, its rings or its registers.

use super::*;

pub(super) struct Case {
    pub name: String,
    pub script: Script,
    pub expect: Expect,
}

/// Collects the cases of one device.
struct Cases<'a> {
    d: &'a mut Data,
    dev: &'a Dev,
    /// The device's bring-up script.
    up: u32,
    /// Its abused queue.
    q: Vq,
    out: Vec<Case>,
}

impl Cases<'_> {
    fn push(&mut self, name: String, script: Script, expect: Expect) {
        self.out.push(Case { name, script, expect });
    }

    /// A case that brings the device up and submits `table` (plus `blobs`) with `heads`.
    fn submit(&mut self, name: String, table: &[Desc], blobs: &[(u32, Vec<u8>)], heads: &[u16], expect: Expect) {
        let mut s = Script::default();
        s.call(self.up).submit(self.d, self.q, table, blobs, heads, heads.len() as u16);
        self.push(name, s, expect);
    }
}

/// Every case for `dev`; `up` is its bring-up script.
pub(super) fn cases(d: &mut Data, dev: &Dev, up: u32) -> Vec<Case> {
    let mut c = Cases { d, dev, up, q: dev.queue(dev.abused), out: Vec::new() };
    buffer_cases(&mut c);
    chain_cases(&mut c);
    indirect_cases(&mut c);
    ring_cases(&mut c);
    if dev.kind == Kind::Blk {
        blk_cases(&mut c);
    }
    register_cases(&mut c);
    c.out
}

/// Addresses no RAM backs, and where they are.
fn outside_ram(dev: &Dev) -> [(u64, &'static str); 5] {
    [
        (TOP_OF_SPACE, "at the top of the 64-bit space"),
        (RAM_END as u64, "just past the end of RAM"),
        (RAM_END as u64 - 8, "straddling the end of RAM"),
        (PCI_HOLE, "in the PCI hole"),
        (dev.bar() as u64, "in the device's own BAR4"),
    ]
}

/// Every part of the sane request in turn moved outside RAM, or given length 0 or 4 GiB - 1;
/// the request with every part device-readable, or every part device-writable. The ring is
/// sound, so each such request must fail on its own: returned used, no DEVICE_NEEDS_RESET.
fn buffer_cases(c: &mut Cases) {
    let req = request(c.dev);
    for i in 0..req.len() {
        let mut mangled = Vec::new();
        for (addr, what) in outside_ram(c.dev) {
            mangled.push((format!("part {i} {what} (0x{addr:x})"), Desc { addr, ..req[i] }));
        }
        for len in [0, u32::MAX] {
            mangled.push((format!("part {i} of length 0x{len:x}"), Desc { len, ..req[i] }));
        }
        for (name, part) in mangled {
            let mut r = req.clone();
            r[i] = part;
            c.submit(name, &chain(&r), &[], &[0], Expect::Used(1));
        }
    }
    for (what, set) in [("device-readable", false), ("device-writable", true)] {
        let r: Vec<_> =
            req.iter().map(|p| Desc { flags: if set { p.flags | WRITE } else { p.flags & !WRITE }, ..*p }).collect();
        c.submit(format!("every part {what}"), &chain(&r), &[], &[0], Expect::Used(1));
    }
}

/// Chains that loop, run past their table, start or continue outside it, put a readable part
/// after a writable one; available indices far ahead; one head made available eight times.
fn chain_cases(c: &mut Cases) {
    let req = request(c.dev);
    let part = |next: u16| Desc { flags: req[0].flags | NEXT, next, ..req[0] };
    let broken = Expect::NeedsReset;
    c.submit("a chain loop (0 -> 1 -> 0)".into(), &[part(1), part(0)], &[], &[0], broken);
    let long: Vec<_> = (0..QUEUE_SIZE).map(|i| part((i + 1) % QUEUE_SIZE)).collect();
    let name = format!("a chain of {} descriptors in a table of {QUEUE_SIZE} (back to the head)", QUEUE_SIZE + 1);
    c.submit(name, &long, &[], &[0], broken);
    for next in [QUEUE_SIZE, u16::MAX] {
        c.submit(format!("next index {next} in a table of {QUEUE_SIZE}"), &[part(next)], &[], &[0], broken);
    }
    for head in [QUEUE_SIZE, u16::MAX] {
        c.submit(format!("head index {head} in a table of {QUEUE_SIZE}"), &chain(&req), &[], &[head], broken);
    }
    let spare = c.dev.buffer(SPARE) as u64;
    let w_then_r = [Desc { next: 1, ..Desc::new(spare, 16, WRITE | NEXT) }, Desc::new(spare + 16, 16, 0)];
    c.submit("a device-readable part after a writable one".into(), &w_then_r, &[], &[0], broken);
    for idx in [QUEUE_SIZE + 1, 0x8000] {
        let mut s = Script::default();
        s.call(c.up).submit(c.d, c.q, &chain(&req), &[], &[0; QUEUE_SIZE as usize], idx);
        c.push(format!("available index {idx}, the used index at 0"), s, broken);
    }
    let name = format!("head 0 made available {QUEUE_SIZE} times at once");
    c.submit(name, &chain(&req), &[], &[0; QUEUE_SIZE as usize], Expect::Used(QUEUE_SIZE));
}

/// An indirect table holding the sane request (which must work), then every way to get
/// indirect descriptors wrong (2.7.5.3).
fn indirect_cases(c: &mut Cases) {
    let req = chain(&request(c.dev));
    let table = c.q.indirect;
    let len = 16 * req.len() as u32;
    let to = |addr: u64, len: u32| Desc::new(addr, len, INDIRECT);
    let broken = Expect::NeedsReset;
    let sane = vec![(table, table_bytes(&req))];
    let name = "the sane request through an indirect table".to_string();
    c.submit(name, &[to(table as u64, len)], &sane, &[0], Expect::Used(1));

    let inner = table + 0x1000;
    let nested = vec![(table, table_bytes(&[to(inner as u64, len)])), (inner, table_bytes(&req))];
    c.submit("an indirect table inside an indirect table".into(), &[to(table as u64, len)], &nested, &[0], broken);
    let with_next = [Desc { flags: INDIRECT | NEXT, next: 1, ..to(table as u64, len) }, req[req.len() - 1]];
    c.submit("an indirect descriptor with NEXT".into(), &with_next, &sane, &[0], broken);
    for bad_len in [0, 24, 16 * 1025, 0xffff_fff0] {
        c.submit(
            format!("an indirect table of 0x{bad_len:x} bytes"),
            &[to(table as u64, bad_len)],
            &sane,
            &[0],
            broken,
        );
    }
    for (addr, what) in outside_ram(c.dev) {
        if addr == RAM_END as u64 - 8 {
            continue; // straddling: below, with a first entry that leads out
        }
        c.submit(format!("an indirect table {what} (0x{addr:x})"), &[to(addr, len)], &[], &[0], broken);
    }
    // Its first entry in the last 16 bytes of RAM, the next one beyond.
    let edge = RAM_END - 16;
    let first = Desc { flags: req[0].flags | NEXT, next: 1, ..req[0] };
    let blobs = [(edge, first.bytes().to_vec())];
    c.submit("an indirect table straddling the end of RAM".into(), &[to(edge as u64, 64)], &blobs, &[0], broken);
    let part = |next: u16| Desc { flags: req[0].flags | NEXT, next, ..req[0] };
    for (what, entries) in
        [("a loop (0 -> 1 -> 0)", [part(1), part(0)]), ("a next index beyond it", [part(1), part(2)])]
    {
        let blobs = [(table, table_bytes(&entries))];
        c.submit(format!("an indirect table with {what}"), &[to(table as u64, 32)], &blobs, &[0], broken);
    }
}

/// The abused queue's descriptor table, available or used ring outside RAM or straddling its
/// end, with the sane request submitted.
fn ring_cases(c: &mut Cases) {
    let q = c.q;
    let req = chain(&request(c.dev));
    for (ring, name) in ["descriptor table", "available ring", "used ring"].into_iter().enumerate() {
        for (addr, what) in [
            (TOP_OF_SPACE, "at the top of the 64-bit space"),
            (RAM_END as u64 - 8, "straddling the end of RAM"),
            (PCI_HOLE, "in the PCI hole"),
        ] {
            let mut rings = [q.desc as u64, q.avail as u64, q.used as u64];
            rings[ring] = addr;
            let up = bring_up_with(c.d, c.dev, Some(rings)).place(c.d);
            let mut blobs = Vec::new();
            if ring == 1 && addr == RAM_END as u64 - 8 {
                // The index and the first entries fit in RAM: the device pops head 0 and fails
                // past the end.
                let avail: Vec<u8> = [0u16, 1, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
                blobs.push((addr as u32, avail));
            }
            let mut s = Script::default();
            s.call(up).submit(c.d, q, &req, &blobs, &[0], 1);
            c.push(format!("the {name} {what} (0x{addr:x})"), s, Expect::NeedsReset);
        }
    }
}

/// virtio-blk requests with a sector past the end, an unknown type, no status byte, no
/// writable part at all: each fails with the right status, or at least comes back.
fn blk_cases(c: &mut Cases) {
    let req = request(c.dev);
    for (header, status, what) in
        [(BAD_SECTOR_HEADER, BLK_S_IOERR, "sector 2^64 - 1"), (BAD_TYPE_HEADER, BLK_S_UNSUPP, "type 0xdead")]
    {
        let mut r = req.clone();
        r[0].addr = c.dev.buffer(header) as u64;
        let mut s = Script::default();
        s.call(c.up).submit(c.d, c.q, &chain(&r), &[], &[0], 1).wait_used(c.dev, c.q, 1).blk_status(c.dev, status);
        c.push(format!("a request for {what}"), s, Expect::Used(1));
    }
    c.submit("a request without a status byte".into(), &chain(&req[..2]), &[], &[0], Expect::Used(1));
    c.submit("a request with only its header".into(), &chain(&req[..1]), &[], &[0], Expect::Used(1));
}

/// Queue sizes the transport must refuse, negotiation out of order, garbage in every register,
/// notifications of queues that do not exist, random writes to the whole modern BAR.
fn register_cases(c: &mut Cases) {
    let dev = c.dev;
    let size_kept = format!("{}: queue_size changed by a bad write", dev.name);
    let mut s = Script::default();
    negotiate(&mut s, dev);
    s.w16(dev.reg(Q_SELECT), dev.abused as u32).w16(dev.reg(Q_SIZE), QUEUE_SIZE as u32);
    for bad in [0, 3, 12, 0x8000, 0xffff] {
        s.w16(dev.reg(Q_SIZE), bad).wait_eq(dev.reg(Q_SIZE), 0xffff, QUEUE_SIZE as u32, &size_kept);
    }
    s.w16(dev.reg(Q_ENABLE), 1).w16(dev.reg(Q_SIZE), 4).wait_eq(dev.reg(Q_SIZE), 0xffff, QUEUE_SIZE as u32, &size_kept);
    c.push("queue sizes 0, 3, 12, 0x8000, 0xffff, and a resize once enabled".into(), s, Expect::Any);

    let mut s = Script::default();
    reset(&mut s, dev);
    s.w8(dev.status(), ACKNOWLEDGE)
        .w8(dev.status(), ACKNOWLEDGE | DRIVER)
        .w8(dev.status(), ACKNOWLEDGE | DRIVER | DRIVER_OK);
    c.push("DRIVER_OK without FEATURES_OK".into(), s, Expect::NeedsReset);

    let mut s = Script::default();
    reset(&mut s, dev);
    s.w8(dev.status(), ACKNOWLEDGE | DRIVER)
        .w32(dev.reg(GFSELECT), 0)
        .w32(dev.reg(GF), FEATURES_LO)
        .w8(dev.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK)
        .wait_eq(dev.status(), FEATURES_OK, 0, &format!("{}: FEATURES_OK accepted without VERSION_1", dev.name));
    c.push("FEATURES_OK without VERSION_1".into(), s, Expect::Any);

    // The device runs, so its queues' addresses are fixed; queue_select ends up on queues
    // that do not exist (0xa5a5, 0xffff) before the queue fields get their garbage.
    let mut s = Script::default();
    s.call(c.up);
    for pattern in [0xa5a5_a5a5u32, u32::MAX] {
        for region in [COMMON, DEVICE_CFG] {
            for off in 0..COMMON_LEN {
                let at = dev.reg(region + off);
                s.w8(at, pattern & 0xff);
                if off % 2 == 0 {
                    s.w16(at, pattern & 0xffff);
                }
                if off % 4 == 0 {
                    s.w32(at, pattern).r32(at);
                }
            }
        }
        s.r32(dev.reg(ISR)).w8(dev.reg(ISR), pattern & 0xff).w32(dev.reg(ISR), pattern).r32(dev.reg(ISR));
        s.w32(dev.reg(ISR + 0xffc), pattern);
    }
    for q in [64, 100, 0x3ff] {
        s.w16(dev.notify(q), q as u32);
    }
    s.w16(dev.reg(NOTIFY + 2), 0).w8(dev.reg(NOTIFY + 1), 0).w32(dev.reg(NOTIFY), u32::MAX);
    let name =
        "garbage in every common and device configuration byte, the ISR, notifications of queues that do not exist";
    c.push(name.into(), s, Expect::Any);

    let mut s = Script::default();
    s.call(c.up).fuzz(dev.bar(), FUZZ_WRITES, FUZZ_SEED.wrapping_add(dev.slot.wrapping_mul(0x9e37_79b9)) | 1);
    c.push(format!("{FUZZ_WRITES} random accesses to the modern BAR"), s, Expect::Any);
}
