//! virtio abuse kernel: a hostile driver for ferrite's virtio-pci devices (blk, net, console,
//! balloon, rng). For each device it finds the transitional function on bus 0, places BAR4 (the
//! modern interface) and BAR1 (MSI-X), walks the capability list to prove the modern regions
//! are where the scripts expect them, then runs a series of cases. Each case brings the device
//! up through the modern interface (reset, ACKNOWLEDGE|DRIVER, VERSION_1 + INDIRECT_DESC +
//! EVENT_IDX, FEATURES_OK, queues of [`QUEUE_SIZE`] in RAM, DRIVER_OK), does one malformed
//! thing (buffers outside RAM, impossible lengths, chain loops, bad indices, indirect misuse,
//! rings outside RAM, avail index jumps, garbage and random register writes), waits for what
//! the transport promises (`DEVICE_NEEDS_RESET` for a broken ring, a used element for a request
//! that fails on its own), then resets the device, brings it up again and proves it works with
//! one sane request (blk: sector 0 holds [`disk_pattern`]; rng: bytes; net: a frame sent;
//! console: bytes sent on port 0; balloon: one page inflated). At the end it prints [`OK_LINE`]
//! with the counts and exits with `EXIT_OK`; any failed check prints why and exits with
//! `EXIT_FAIL`.
//!
//! Layouts are virtio 1.2's: 4.1.4 (PCI capabilities, common configuration), 2.7 (split
//! virtqueues), 5.2 (block), 5.1 (network), 5.3 (console), 5.5 (balloon), 5.4 (entropy).
//!
//! As in the e1000 kernel, every step is data: scripts of MMIO writes, RAM copies and waits
//! that one interpreter routine runs, with sub-scripts (bring-up, sane request) called by
//! address so the data stays small. All addresses in scripts are absolute: each device's BAR4
//! sits at a fixed address ([`Dev::bar`]), its rings and buffers in its own MiB of scratch RAM.

use super::pci::{PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use super::rt::Rt;
use super::{exit, multiboot_kernel, Asm, Data, EXIT_OK};
use iced_x86::code_asm::*;

mod checks;
mod routines;
mod scripts;
mod setup;

use checks::*;
use routines::*;
use scripts::*;
use setup::*;

/// The kernel's verdict line (followed by the counts) when everything passed.
pub const OK_LINE: &str = "VIRTIO-ABUSE-OK";
/// Size of the disk image the test hands virtio-blk.
pub const DISK_BYTES: usize = 1 << 20;

/// The disk's content: sector n starts with "FERRITE SECTOR n", then a byte pattern.
pub fn disk_pattern() -> Vec<u8> {
    let mut disk: Vec<u8> = (0..DISK_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    for (n, sector) in disk.chunks_mut(SECTOR as usize).enumerate() {
        let tag = format!("FERRITE SECTOR {n}");
        sector[..tag.len()].copy_from_slice(tag.as_bytes());
    }
    disk
}
const SECTOR: u32 = 512;

/// Names (as printed) of cases known to crash or hang ferrite: skipped until the device code
/// is fixed.
/// (None so far: every case below runs.)
const KNOWN_BAD_CASES: &[&str] = &[];

// ---------------------------------------------------------------------------------------------
// The transport (virtio 1.2, 4.1).

/// Transitional PCI identities (4.1.2.3), as configuration dword 0.
const VENDOR: u32 = 0x1af4;
/// Capability walk: vendor-specific capability ID and `struct virtio_pci_cap` fields (4.1.4).
const PCI_CAP_PTR: u32 = 0x34;
const PCI_CAP_ID_VNDR: u32 = 0x09;
const CAP_BAR: u32 = 4;
const CAP_OFFSET: u32 = 8;
/// `cfg_type` values and where ferrite puts each region in BAR4 (checked by the walk).
const CFG_COMMON: u32 = 1;
const CFG_NOTIFY: u32 = 2;
const CFG_ISR: u32 = 3;
const CFG_DEVICE: u32 = 4;
const MODERN_BAR: u32 = 4;
const REGION_OFFSETS: [u32; 5] = [0, COMMON, NOTIFY, ISR, DEVICE_CFG];
/// Regions the walk must find (device configuration is absent on devices without one).
const REQUIRED_CAPS: u32 = (1 << CFG_COMMON) | (1 << CFG_NOTIFY) | (1 << CFG_ISR);
/// Capabilities a list may hold before we call it a loop.
const CAP_LIST_LIMIT: u32 = 48;
/// PCI configuration header (PCI 3.0 §6.2): command (from the PCI kernel), BAR1 (MSI-X),
/// BAR4/BAR5 (64-bit modern).
const PCI_BAR1: u32 = 0x14;
const PCI_BAR4: u32 = 0x20;
const PCI_BAR5: u32 = 0x24;

/// Regions in BAR4 (ferrite's layout, QEMU's too).
const COMMON: u32 = 0x0000;
const ISR: u32 = 0x1000;
const DEVICE_CFG: u32 = 0x2000;
const NOTIFY: u32 = 0x3000;
const MODERN_BAR_SIZE: u32 = 0x4000;
/// `notify_off_multiplier`: queue q is notified at NOTIFY + 4q.
const NOTIFY_STRIDE: u32 = 4;
/// `struct virtio_pci_common_cfg` (4.1.4.3).
const DFSELECT: u32 = 0x00;
const GFSELECT: u32 = 0x08;
const GF: u32 = 0x0c;
const STATUS: u32 = 0x14;
const Q_SELECT: u32 = 0x16;
const Q_SIZE: u32 = 0x18;
const Q_ENABLE: u32 = 0x1c;
const Q_DESC: u32 = 0x20;
const Q_AVAIL: u32 = 0x28;
const Q_USED: u32 = 0x30;
const COMMON_LEN: u32 = 0x40;
/// Device status bits (2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const NEEDS_RESET: u32 = 64;
/// Feature bits the kernel accepts: INDIRECT_DESC (28), EVENT_IDX (29) in word 0, VERSION_1
/// (32) in word 1 (6).
const FEATURES_LO: u32 = (1 << 28) | (1 << 29);
const FEATURES_HI: u32 = 1;

/// Descriptor flags (2.7.5).
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

// ---------------------------------------------------------------------------------------------
// Memory.

/// Guest RAM (`boot` passes -m 64).
const RAM_END: u32 = 64 << 20;
/// Every queue has this size: the smallest maximum of the five devices (rng's 8).
const QUEUE_SIZE: u16 = 8;
/// Scratch RAM: device slot i owns [SCRATCH + i MiB, + 1 MiB): queue q's rings at
/// `q * QUEUE_STRIDE` (descriptors, available ring, used ring, indirect tables a page apart),
/// buffers from `BUFFERS`.
const SCRATCH: u32 = 0x40_0000;
const SLOT_SIZE: u32 = 0x10_0000;
const QUEUE_STRIDE: u32 = 0x1_0000;
const AVAIL_OFFSET: u32 = 0x1000;
const USED_OFFSET: u32 = 0x2000;
const INDIRECT_OFFSET: u32 = 0x4000;
/// Bytes cleared per queue at bring-up (rings and indirect tables).
const RING_BYTES: u32 = 0x8000;
const BUFFERS: u32 = 0x8_0000;
/// The page the balloon inflates (nothing else lives there).
const BALLOON_PAGE: u32 = 0x3f_f000;
/// BAR4s from here, 16 KiB apart; BAR1s (MSI-X, 4 KiB) from `MSIX_BARS`.
const MODERN_BARS: u32 = 0xfe00_0000;
const MSIX_BARS: u32 = 0xfe10_0000;
/// Addresses no RAM backs: the top of the 64-bit space, just past RAM, the PCI hole.
const TOP_OF_SPACE: u64 = 0xffff_ffff_f000;
const PCI_HOLE: u64 = 0x8000_0000;

/// How long the kernel waits for a device (a used element, a status bit).
const WAIT_MS: u32 = 2_000;
/// How long a case that expects nothing in particular gives the device to act.
const SETTLE_MS: u32 = 2;
/// Random writes per device, and the seed of the first.
const FUZZ_WRITES: u32 = 4000;
const FUZZ_SEED: u32 = 0x2545_f491;
/// PIT ticks in 1 ms.
const TICKS_1MS: u32 = 1193;

// ---------------------------------------------------------------------------------------------
// Devices.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Blk,
    Net,
    Console,
    Balloon,
    Rng,
}

/// One device under test.
struct Dev {
    kind: Kind,
    name: &'static str,
    /// Configuration dword 0 of its transitional function.
    vendor_device: u32,
    /// Its slot: BAR4, BAR1 and scratch RAM.
    slot: u32,
    /// Queues the kernel sets up, and the one the cases abuse (the one the device processes
    /// when notified: blk's requestq, net's transmitq, port 0's transmitq, the inflateq,
    /// rng's requestq).
    queues: &'static [u16],
    abused: u16,
}

const DEVICES: [Dev; 5] = [
    Dev { kind: Kind::Blk, name: "virtio-blk", vendor_device: 0x1001 << 16 | VENDOR, slot: 0, queues: &[0], abused: 0 },
    Dev {
        kind: Kind::Net,
        name: "virtio-net",
        vendor_device: 0x1000 << 16 | VENDOR,
        slot: 1,
        queues: &[0, 1],
        abused: 1,
    },
    Dev {
        kind: Kind::Console,
        name: "virtio-console",
        vendor_device: 0x1003 << 16 | VENDOR,
        slot: 2,
        queues: &[0, 1],
        abused: 1,
    },
    Dev {
        kind: Kind::Balloon,
        name: "virtio-balloon",
        vendor_device: 0x1002 << 16 | VENDOR,
        slot: 3,
        queues: &[0, 1],
        abused: 0,
    },
    Dev { kind: Kind::Rng, name: "virtio-rng", vendor_device: 0x1005 << 16 | VENDOR, slot: 4, queues: &[0], abused: 0 },
];

impl Dev {
    fn bar(&self) -> u32 {
        MODERN_BARS + self.slot * MODERN_BAR_SIZE
    }
    fn msix_bar(&self) -> u32 {
        MSIX_BARS + self.slot * 0x1000
    }
    fn reg(&self, offset: u32) -> u32 {
        self.bar() + offset
    }
    fn status(&self) -> u32 {
        self.reg(STATUS)
    }
    fn notify(&self, q: u16) -> u32 {
        self.reg(NOTIFY + NOTIFY_STRIDE * q as u32)
    }
    fn scratch(&self) -> u32 {
        SCRATCH + self.slot * SLOT_SIZE
    }
    /// Buffer `n` (4 KiB each) of the device's scratch RAM.
    fn buffer(&self, n: u32) -> u32 {
        self.scratch() + BUFFERS + n * 0x1000
    }
    fn queue(&self, index: u16) -> Vq {
        let base = self.scratch() + index as u32 * QUEUE_STRIDE;
        Vq {
            index,
            notify: self.notify(index),
            desc: base,
            avail: base + AVAIL_OFFSET,
            used: base + USED_OFFSET,
            indirect: base + INDIRECT_OFFSET,
        }
    }
}

/// Where a queue's rings live in RAM.
#[derive(Clone, Copy)]
struct Vq {
    index: u16,
    /// Its notification address in BAR4.
    notify: u32,
    desc: u32,
    avail: u32,
    used: u32,
    /// Room for indirect tables (up to 1024 descriptors).
    indirect: u32,
}

/// A split-ring descriptor (2.7.5): address, length, flags, next.
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl Desc {
    fn new(addr: u64, len: u32, flags: u16) -> Desc {
        Desc { addr, len, flags, next: 0 }
    }
    fn bytes(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

/// A descriptor table: `parts` chained in order (NEXT set on all but the last).
fn chain(parts: &[Desc]) -> Vec<Desc> {
    let n = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i + 1 < n { Desc { flags: p.flags | NEXT, next: i as u16 + 1, ..*p } } else { *p })
        .collect()
}

fn table_bytes(t: &[Desc]) -> Vec<u8> {
    t.iter().flat_map(|d| d.bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Scripts.

/// Script operations; each entry is six dwords: the operation and its operands a-e. Addresses
/// are absolute (RAM or a BAR).
#[derive(Clone, Copy)]
#[repr(u32)]
enum Op {
    End = 0,
    /// [a] = b (byte, word, dword).
    W8,
    W16,
    W32,
    /// Read the dword at a (for its side effects, like clearing the ISR).
    R32,
    /// Copy c bytes from a to b.
    Copy,
    /// Fill b dwords at a with c.
    Fill,
    /// Wait a milliseconds.
    Delay,
    /// Print the string at a.
    Print,
    /// Wait until ([a] & b) == c (or != c) for up to [`WAIT_MS`]; else print the string at e
    /// and fail.
    WaitEq,
    WaitNe,
    /// Fail (printing the string at d) unless the c bytes at a and b are equal.
    Compare,
    /// If [a] & b is non-zero, increment the dword at c.
    Tally,
    /// Increment the dword at a.
    Inc,
    /// Run the script at a.
    Call,
    /// b random writes (and reads) of random widths into the 16 KiB window at a, xorshift32
    /// seeded with c; queue address fields only ever get addresses outside RAM.
    Fuzz,
}

const OP_WORDS: usize = 6;

/// One operation: its operands, and a string to place with the script as operand `.0`.
type ScriptOp = (Op, [u32; 5], Option<(usize, String)>);

#[derive(Default)]
struct Script {
    ops: Vec<ScriptOp>,
}

impl Script {
    fn op(&mut self, op: Op, args: &[u32]) -> &mut Self {
        let mut a = [0; 5];
        a[..args.len()].copy_from_slice(args);
        self.ops.push((op, a, None));
        self
    }
    /// An operation whose operand `at` is a string placed with the script.
    fn op_str(&mut self, op: Op, args: &[u32], at: usize, s: &str) -> &mut Self {
        self.op(op, args);
        self.ops.last_mut().unwrap().2 = Some((at, s.to_string()));
        self
    }
    fn w8(&mut self, addr: u32, v: u32) -> &mut Self {
        self.op(Op::W8, &[addr, v])
    }
    fn w16(&mut self, addr: u32, v: u32) -> &mut Self {
        self.op(Op::W16, &[addr, v])
    }
    fn w32(&mut self, addr: u32, v: u32) -> &mut Self {
        self.op(Op::W32, &[addr, v])
    }
    fn r32(&mut self, addr: u32) -> &mut Self {
        self.op(Op::R32, &[addr])
    }
    fn copy(&mut self, src: u32, dst: u32, len: u32) -> &mut Self {
        self.op(Op::Copy, &[src, dst, len])
    }
    /// Places `bytes` in the data section and copies them to `dst` at run time.
    fn put(&mut self, d: &mut Data, dst: u32, bytes: &[u8]) -> &mut Self {
        let src = d.bytes(bytes, 4);
        self.copy(src, dst, bytes.len() as u32)
    }
    fn fill(&mut self, dst: u32, dwords: u32, v: u32) -> &mut Self {
        self.op(Op::Fill, &[dst, dwords, v])
    }
    fn delay(&mut self, ms: u32) -> &mut Self {
        self.op(Op::Delay, &[ms])
    }
    fn print(&mut self, s: &str) -> &mut Self {
        self.op_str(Op::Print, &[], 0, s)
    }
    fn wait_eq(&mut self, addr: u32, mask: u32, v: u32, why: &str) -> &mut Self {
        self.op_str(Op::WaitEq, &[addr, mask, v], 4, why)
    }
    fn wait_ne(&mut self, addr: u32, mask: u32, v: u32, why: &str) -> &mut Self {
        self.op_str(Op::WaitNe, &[addr, mask, v], 4, why)
    }
    fn compare(&mut self, a: u32, b: u32, len: u32, why: &str) -> &mut Self {
        self.op_str(Op::Compare, &[a, b, len], 3, why)
    }
    fn tally(&mut self, addr: u32, mask: u32, counter: u32) -> &mut Self {
        self.op(Op::Tally, &[addr, mask, counter])
    }
    fn inc(&mut self, counter: u32) -> &mut Self {
        self.op(Op::Inc, &[counter])
    }
    fn call(&mut self, script: u32) -> &mut Self {
        self.op(Op::Call, &[script])
    }
    fn fuzz(&mut self, base: u32, writes: u32, seed: u32) -> &mut Self {
        self.op(Op::Fuzz, &[base, writes, seed])
    }

    /// Names the step on COM1 (its last line names the step that hung, if one does).
    fn step(&mut self, dev: &Dev, name: &str) -> &mut Self {
        self.print(&format!("{}: {name}\n", dev.name))
    }

    /// Places the script in the data section; returns its address.
    fn place(&self, d: &mut Data) -> u32 {
        let mut words = Vec::with_capacity((self.ops.len() + 1) * OP_WORDS);
        for (op, args, s) in &self.ops {
            let mut args = *args;
            if let Some((at, s)) = s {
                args[*at] = d.cstr(s);
            }
            words.push(*op as u32);
            words.extend_from_slice(&args);
        }
        words.extend_from_slice(&[Op::End as u32, 0, 0, 0, 0, 0]);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        d.bytes(&bytes, 4)
    }
}

/// Code labels of the kernel's routines and its counters.
struct K {
    rt: Rt,
    run: CodeLabel,
    puts: CodeLabel,
    rng: CodeLabel,
    map: CodeLabel,
    seed: u32,
    /// Cases run, sane requests that completed, cases after which the device reported
    /// DEVICE_NEEDS_RESET.
    cases: u32,
    sane: u32,
    needs_reset: u32,
}

impl K {
    /// Runs the script at `at`.
    fn run(&self, a: &mut Asm, at: u32) {
        a.mov(ebx, at).unwrap();
        a.call(self.run).unwrap();
    }
}

/// The abuse kernel (see the module documentation).
pub fn abuse() -> Vec<u8> {
    let kernel = multiboot_kernel(|a, d| {
        let k = K {
            rt: Rt::new(a, d),
            run: a.create_label(),
            puts: a.create_label(),
            rng: a.create_label(),
            map: a.create_label(),
            seed: d.var(),
            cases: d.var(),
            sane: d.var(),
            needs_reset: d.var(),
        };
        let rt = &k.rt;
        rt.bsp_entry(a);
        a.cli().unwrap();
        let region_offsets: Vec<u8> = REGION_OFFSETS.iter().flat_map(|o| o.to_le_bytes()).collect();
        let region_offsets = d.bytes(&region_offsets, 4);
        for dev in &DEVICES {
            find_and_map(a, d, &k, dev);
        }
        for dev in &DEVICES {
            let script = device_script(d, &k, dev);
            k.run(a, script);
        }
        rt.print(a, d, OK_LINE);
        for (label, var) in [(" cases ", k.cases), (" sane ", k.sane), (" needs-reset ", k.needs_reset)] {
            rt.print(a, d, label);
            a.mov(eax, dword_ptr(var)).unwrap();
            rt.print_dec(a);
        }
        rt.print(a, d, "\n");
        exit(a, EXIT_OK);

        emit_map(a, d, &k, region_offsets);
        emit_run(a, d, &k);
        super::rt::emit_puts(a, k.puts);
        super::rt::emit_xorshift(a, k.rng, k.seed);
        rt.emit(a, d);
    });
    // The scripts are data: they must end below the runtime's stacks.
    let end = super::LOAD + kernel.len() as u32;
    assert!(end <= super::rt::STACKS, "the kernel ends at 0x{end:x}, over the stacks at 0x{:x}", super::rt::STACKS);
    kernel
}

/// Every case for `dev`, each followed by a reset and a sane request, as one script.
fn device_script(d: &mut Data, k: &K, dev: &Dev) -> u32 {
    let up = bring_up(d, dev).place(d);
    let sane = sane_request(d, k, dev).place(d);
    let mut all = Script::default();
    for case in cases(d, dev, up) {
        if KNOWN_BAD_CASES.contains(&case.name.as_str()) {
            all.step(dev, &format!("SKIPPED (known to break ferrite): {}", case.name));
            continue;
        }
        let mut s = Script::default();
        s.step(dev, &case.name);
        s.ops.extend(case.script.ops);
        expect(&mut s, dev, case.expect, k);
        s.call(up).call(sane).inc(k.cases);
        all.call(s.place(d));
    }
    all.place(d)
}
