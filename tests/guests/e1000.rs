//! e1000 abuse kernel: a hostile driver for ferrite's Intel 82540EM (`-device e1000`). It finds
//! the card on bus 0, maps BAR0, checks the MAC through EERD, then feeds the card every ring and
//! descriptor a careless or malicious driver could (rings and buffers outside RAM, in MMIO, at
//! addresses that wrap the 64-bit space; zero and oversized lengths; head and tail beyond the
//! ring; TSO with MSS 0; checksum offsets past the frame; a receive ring it never empties while
//! the host floods the card; thousands of random register writes), reading STATUS after every
//! step to prove the card still answers. At last it resets the card, sends one broadcast frame
//! carrying [`DONE_MARKER`] and waits for the host's [`ack_frame`] on a fresh receive ring, which
//! proves both directions still work; then prints [`OK_LINE`] and exits with `EXIT_OK`.
//!
//! Register offsets, bits and descriptor layouts are those of Intel's "PCI/PCI-X Family of
//! Gigabit Ethernet Controllers Software Developer's Manual" (8254x, rev. 4.0): §13 registers,
//! §3.2.3 receive descriptors, §3.3.3 legacy transmit descriptors, §3.3.6 context descriptors,
//! §3.3.7 data descriptors, §5.3.1 EERD.
//!
//! Most steps are data: a "script" of register writes, RAM copies, delays and checks that one
//! interpreter routine in the kernel runs (the kernel's code must fit in 12 KiB). Memory the
//! card may write (descriptor write-back, received frames) is scratch RAM from 4 MiB up, well
//! away from the kernel at 1 MiB; the random-write phase keeps the ring base registers outside
//! RAM so the card never writes over the kernel.

use super::rt::Rt;
use super::{exit, multiboot_kernel, Asm, Data, COM1, EXIT_OK};
use iced_x86::code_asm::*;

/// The card's address, as the test passes it (`-device e1000,mac=...`).
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
pub const MAC_ARG: &str = "52:54:00:ab:cd:ef";
/// The kernel's last line on COM1 when everything passed.
pub const OK_LINE: &str = "E1000-ABUSE-OK";
/// Carried by the frame the kernel sends at the end.
pub const DONE_MARKER: &[u8; 18] = b"FERRITE-ABUSE-DONE";
/// The host answers the done frame with [`ack_frame`], which carries this right after the
/// Ethernet header.
pub const ACK_MARKER: &[u8; 16] = b"FERRITE-HOST-ACK";
/// IEEE 802 local experimental ethertype, for the frames both sides make up.
pub const ETHERTYPE: u16 = 0x88b5;
/// Source address of the host's frames.
pub const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The broadcast frame the host sends when it sees [`DONE_MARKER`].
pub fn ack_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(ACK_MARKER);
    f.resize(60, 0);
    f
}

/// The kernel's final frame: broadcast, from [`MAC`], [`DONE_MARKER`] as payload, 64 bytes.
fn done_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(DONE_MARKER);
    f.resize(DONE_FRAME_LEN as usize, 0);
    f
}
const DONE_FRAME_LEN: u32 = 64;

/// 82540EM PCI identity as the first configuration dword.
const E1000_VENDOR_DEVICE: u32 = 0x100e_8086;
const E1000_BAR0_SIZE: u32 = 0x2_0000;

/// Configuration header (PCI Local Bus Specification 3.0 §6.1, §6.2).
const PCI_COMMAND: u32 = 0x04;
const PCI_COMMAND_MEMORY: u32 = 1 << 1;
const PCI_COMMAND_MASTER: u32 = 1 << 2;
const PCI_BAR0: u32 = 0x10;
const PCI_BAR_IO: u32 = 1 << 0;
const PCI_BAR_TYPE: u32 = 0b11 << 1;
const PCI_BAR_MEM_MASK: u32 = !0xf;

/// Where BAR0 goes: the start of the top of the PCI hole (128 KiB aligned), as pci.rs puts edu.
const BAR: u32 = 0xfe00_0000;

/// Registers (8254x SDM §13.1, table 13-2).
const CTRL: u32 = 0x0000;
const STATUS: u32 = 0x0008;
const EECD: u32 = 0x0010;
const EERD: u32 = 0x0014;
const MDIC: u32 = 0x0020;
const VET: u32 = 0x0038;
const ICR: u32 = 0x00c0;
const ITR: u32 = 0x00c4;
const ICS: u32 = 0x00c8;
const IMS: u32 = 0x00d0;
const IMC: u32 = 0x00d8;
const RCTL: u32 = 0x0100;
const TCTL: u32 = 0x0400;
const TIPG: u32 = 0x0410;
const RDBAL: u32 = 0x2800;
const RDBAH: u32 = 0x2804;
const RDLEN: u32 = 0x2808;
const RDH: u32 = 0x2810;
const RDT: u32 = 0x2818;
const TDBAL: u32 = 0x3800;
const TDBAH: u32 = 0x3804;
const TDLEN: u32 = 0x3808;
const TDH: u32 = 0x3810;
const TDT: u32 = 0x3818;
const MTA: u32 = 0x5200;
const RAL0: u32 = 0x5400;
const RAH0: u32 = 0x5404;
/// Statistics: missed packets, receive no buffers, good packets received/transmitted.
const MPC: u32 = 0x4010;
const GPRC: u32 = 0x4074;
const GPTC: u32 = 0x4080;
const RNBC: u32 = 0x40a0;

const CTRL_ASDE: u32 = 1 << 5;
const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const CTRL_VME: u32 = 1 << 30;
const CTRL_PHY_RST: u32 = 1 << 31;
const STATUS_LU: u32 = 1 << 1;
const EERD_START: u32 = 1 << 0;
const EERD_DONE: u32 = 1 << 4;
const EERD_ADDR_SHIFT: u32 = 8;
const EERD_DATA_SHIFT: u32 = 16;
const RAH_AV: u32 = 1 << 31;
const RCTL_EN: u32 = 1 << 1;
const RCTL_UPE: u32 = 1 << 3;
const RCTL_MPE: u32 = 1 << 4;
const RCTL_LPE: u32 = 1 << 5;
const RCTL_BAM: u32 = 1 << 15;
/// Buffer size field (bits 17:16): with BSEX clear 0 = 2048, 3 = 256; with BSEX 1 = 16384,
/// 0 is reserved.
const RCTL_BSIZE_256: u32 = 3 << 16;
const RCTL_BSIZE_16K: u32 = 1 << 16;
const RCTL_BSEX: u32 = 1 << 25;
const RCTL_SECRC: u32 = 1 << 26;
/// Everything accepted, jumbo frames too.
const RCTL_ABUSE: u32 = RCTL_EN | RCTL_UPE | RCTL_MPE | RCTL_LPE | RCTL_BAM;
/// What a driver would set: broadcasts, 2 KiB buffers, CRC stripped.
const RCTL_NORMAL: u32 = RCTL_EN | RCTL_BAM | RCTL_SECRC;
/// TCTL: enable, pad short packets, collision threshold 0x10, collision distance 0x40.
const TCTL_ON: u32 = (1 << 1) | (1 << 3) | (0x10 << 4) | (0x40 << 12);
/// The TIPG value the manual recommends for the 82540EM (IPGT 10, IPGR1 8, IPGR2 6).
const TIPG_VALUE: u32 = 0x0060_200a;

/// Transmit descriptor command bits (legacy CMD / extended DCMD and TUCMD).
const CMD_EOP: u8 = 0x01;
const CMD_IFCS: u8 = 0x02;
const CMD_IC: u8 = 0x04; // legacy: insert checksum
const CMD_TSE: u8 = 0x04; // extended: TCP segmentation
const CMD_RS: u8 = 0x08;
const CMD_DEXT: u8 = 0x20;
const CMD_VLE: u8 = 0x40;
/// Context descriptor TUCMD: TCP (vs UDP), IPv4.
const TUCMD_TCP: u8 = 0x01;
const TUCMD_IP: u8 = 0x02;
/// Data descriptor POPTS: insert IP and TCP/UDP checksums.
const POPTS_IXSM: u8 = 0x01;
const POPTS_TXSM: u8 = 0x02;
/// Descriptor status bit 0: descriptor done (transmit and receive).
const DESC_DD: u32 = 1;

/// Scratch RAM for rings and buffers (the guest has 64 MiB; the kernel sits at 1-2 MiB).
const RAM_END: u32 = 64 << 20;
const TX_RING: u32 = 0x40_0000;
/// RX rings the card may walk past their end: 1 MiB of zeroes (descriptors with buffer
/// address 0) follows the 256 descriptors set up there, and nothing else lives in it.
const RX_RING: u32 = 0x50_0000;
/// 1 MiB of transmit buffer, a plausible Ethernet/IPv4/TCP header at its start.
const TX_BUF: u32 = 0x80_0000;
/// 256 receive buffers of 2 KiB.
const RX_BUFS: u32 = 0x90_0000;
/// The never-emptied ring: 16 descriptors, 256-byte buffers every 512 bytes, canaries between.
const CANARY_RING: u32 = 0xa0_0000;
const CANARY_BUFS: u32 = 0xa1_0000;
const CANARY: u32 = 0xdead_beef;
const CANARY_DESCS: u32 = 16;
/// The final rings.
const FINAL_TX_RING: u32 = 0xb0_0000;
const FINAL_TX_DESCS: u32 = 8;
const FINAL_RX_RING: u32 = 0xb0_1000;
const FINAL_RX_DESCS: u32 = 32;
const FINAL_RX_BUFS: u32 = 0xb1_0000;
/// A ring in the last page of RAM, whose walk leaves RAM.
const TOP_RING: u32 = RAM_END - 0x1000;
/// Ring bases at or above 2 GiB are never RAM here.
const OUTSIDE_RAM: u32 = 0x8000_0000;

/// The random phase: writes of whole dwords, then of bytes, words and unaligned dwords.
const FUZZ_DWORDS: u32 = 3000;
const FUZZ_SMALL: u32 = 1500;
const FUZZ_SEED: u32 = 0x2545_f491;

/// PIT ticks in 1 ms.
const TICKS_1MS: u32 = 1193;
/// How long the kernel waits for the host's first frame (the host connects once ferrite
/// listens), for EERD, for a transmit, for the ack.
const FIRST_FRAME_TIMEOUT_MS: u32 = 30_000;
const EERD_TIMEOUT_MS: u32 = 100;
const RESET_TIMEOUT_MS: u32 = 1_000;
const LINK_TIMEOUT_MS: u32 = 2_000;
const TX_TIMEOUT_MS: u32 = 2_000;
const ACK_WAIT_MS: u32 = 1_000;
const ACK_TRIES: u32 = 15;

// ---------------------------------------------------------------------------------------------
// Descriptors.

/// Legacy transmit descriptor (§3.3.3): buffer address, length, CSO, CMD, STA, CSS, special.
fn legacy(addr: u64, len: u16, cso: u8, cmd: u8, css: u8, special: u16) -> [u8; 16] {
    let mut d = [0; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[10] = cso;
    d[11] = cmd;
    d[13] = css;
    d[14..16].copy_from_slice(&special.to_le_bytes());
    d
}

/// A frame the usual way: EOP, insert FCS, report status.
fn frame(addr: u64, len: u16) -> [u8; 16] {
    legacy(addr, len, 0, CMD_EOP | CMD_IFCS | CMD_RS, 0, 0)
}

/// TCP/IP context descriptor (§3.3.6): DEXT with DTYP 0.
struct Ctx {
    ipcss: u8,
    ipcso: u8,
    ipcse: u16,
    tucss: u8,
    tucso: u8,
    tucse: u16,
    paylen: u32,
    tucmd: u8,
    hdrlen: u8,
    mss: u16,
}

/// The offsets of a plain Ethernet/IPv4/TCP frame ([`tcp_header`]), TSO off.
const CTX: Ctx =
    Ctx { ipcss: 14, ipcso: 24, ipcse: 33, tucss: 34, tucso: 50, tucse: 0, paylen: 0, tucmd: TUCMD_IP | TUCMD_TCP, hdrlen: 54, mss: 0 };

fn ctx(c: Ctx) -> [u8; 16] {
    let mut d = [0; 16];
    d[0] = c.ipcss;
    d[1] = c.ipcso;
    d[2..4].copy_from_slice(&c.ipcse.to_le_bytes());
    d[4] = c.tucss;
    d[5] = c.tucso;
    d[6..8].copy_from_slice(&c.tucse.to_le_bytes());
    let dw = (c.paylen & 0xf_ffff) | ((c.tucmd | CMD_DEXT) as u32) << 24; // DTYP 0
    d[8..12].copy_from_slice(&dw.to_le_bytes());
    d[13] = c.hdrlen;
    d[14..16].copy_from_slice(&c.mss.to_le_bytes());
    d
}

/// TCP/IP data descriptor (§3.3.7): DEXT with DTYP `dtyp` (1 for a data descriptor), a 20-bit
/// length, DCMD, POPTS, VLAN.
fn data_typed(addr: u64, len: u32, dtyp: u32, dcmd: u8, popts: u8, vlan: u16) -> [u8; 16] {
    let mut d = [0; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    let dw = (len & 0xf_ffff) | (dtyp & 0xf) << 20 | ((dcmd | CMD_DEXT) as u32) << 24;
    d[8..12].copy_from_slice(&dw.to_le_bytes());
    d[13] = popts;
    d[14..16].copy_from_slice(&vlan.to_le_bytes());
    d
}

fn data(addr: u64, len: u32, dcmd: u8, popts: u8) -> [u8; 16] {
    data_typed(addr, len, 1, dcmd, popts, 0)
}

/// Receive descriptor (§3.2.3): buffer address; the card writes length, checksum, status,
/// errors and special.
fn rxd(addr: u64) -> [u8; 16] {
    let mut d = [0; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d
}

fn ring(descs: &[[u8; 16]]) -> Vec<u8> {
    descs.concat()
}

/// Broadcast Ethernet, IPv4 (20 bytes, TCP, total length 1500) and TCP (20 bytes): 54 bytes at
/// [`TX_BUF`] for the offload paths to parse.
fn tcp_header() -> Vec<u8> {
    let mut h = vec![0xff; 6];
    h.extend_from_slice(&MAC);
    h.extend_from_slice(&0x0800u16.to_be_bytes());
    h.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2]);
    h.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(h.len(), 54);
    h
}

// ---------------------------------------------------------------------------------------------
// Scripts.

/// Script operations; each entry is six dwords: the operation and its operands a-e.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Op {
    End = 0,
    /// BAR0[a] = b (dword, word, byte).
    W32,
    W16,
    W8,
    /// Read BAR0[a] (dword, word, byte).
    R32,
    R16,
    R8,
    /// Wait a milliseconds.
    Delay,
    /// Read STATUS and the configuration ID: the card still answers.
    Alive,
    /// For i in 0..b: BAR0[a] = ((i * c) & d) | e, then read STATUS.
    Hammer,
    /// Copy c bytes of RAM from a to b.
    Copy,
    /// Fill b dwords of RAM at a with c.
    Fill,
    /// Print the string at a.
    Print,
    /// Print the string at a, then BAR0[b] in hex.
    PrintReg,
    /// Fail unless RAM dword a has every bit of b clear / some bit of b set.
    CheckClear,
    CheckSet,
    /// Fail unless the b dwords at a all hold c.
    CheckFill,
    /// Fail if any of the b receive descriptors at a that the card completed has a length
    /// above c.
    CheckRxLens,
}

const OP_WORDS: usize = 6;

/// A step's operations, in order.
#[derive(Default)]
struct Script {
    ops: Vec<(Op, [u32; 5], Option<String>)>,
}

impl Script {
    fn op(&mut self, op: Op, args: &[u32]) -> &mut Self {
        let mut a = [0; 5];
        a[..args.len()].copy_from_slice(args);
        self.ops.push((op, a, None));
        self
    }
    fn w(&mut self, reg: u32, v: u32) -> &mut Self {
        self.op(Op::W32, &[reg, v])
    }
    fn w16(&mut self, reg: u32, v: u32) -> &mut Self {
        self.op(Op::W16, &[reg, v])
    }
    fn w8(&mut self, reg: u32, v: u32) -> &mut Self {
        self.op(Op::W8, &[reg, v])
    }
    fn r(&mut self, reg: u32) -> &mut Self {
        self.op(Op::R32, &[reg])
    }
    fn r16(&mut self, reg: u32) -> &mut Self {
        self.op(Op::R16, &[reg])
    }
    fn r8(&mut self, reg: u32) -> &mut Self {
        self.op(Op::R8, &[reg])
    }
    fn delay(&mut self, ms: u32) -> &mut Self {
        self.op(Op::Delay, &[ms])
    }
    fn alive(&mut self) -> &mut Self {
        self.op(Op::Alive, &[])
    }
    fn hammer(&mut self, reg: u32, n: u32, mul: u32, mask: u32, or: u32) -> &mut Self {
        self.op(Op::Hammer, &[reg, n, mul, mask, or])
    }
    fn copy(&mut self, src: u32, dst: u32, len: u32) -> &mut Self {
        self.op(Op::Copy, &[src, dst, len])
    }
    fn fill(&mut self, dst: u32, dwords: u32, v: u32) -> &mut Self {
        self.op(Op::Fill, &[dst, dwords, v])
    }
    fn print(&mut self, s: &str) -> &mut Self {
        self.ops.push((Op::Print, [0; 5], Some(s.to_string())));
        self
    }
    fn print_reg(&mut self, s: &str, reg: u32) -> &mut Self {
        self.ops.push((Op::PrintReg, [0, reg, 0, 0, 0], Some(s.to_string())));
        self
    }
    fn check_clear(&mut self, addr: u32, mask: u32) -> &mut Self {
        self.op(Op::CheckClear, &[addr, mask])
    }
    fn check_set(&mut self, addr: u32, mask: u32) -> &mut Self {
        self.op(Op::CheckSet, &[addr, mask])
    }
    fn check_fill(&mut self, addr: u32, dwords: u32, v: u32) -> &mut Self {
        self.op(Op::CheckFill, &[addr, dwords, v])
    }
    fn check_rx_lens(&mut self, ring: u32, n: u32, max: u32) -> &mut Self {
        self.op(Op::CheckRxLens, &[ring, n, max])
    }

    /// Names the step on COM1 (its last line names the step that hung, if one does).
    fn step(&mut self, name: &str) -> &mut Self {
        self.print(&format!("e1000: {name}\n"))
    }

    /// Transmit ring at `bah:bal`, `len` bytes, head and tail 0, transmitter enabled.
    fn tx_ring(&mut self, bal: u32, bah: u32, len: u32) -> &mut Self {
        self.w(TCTL, 0).w(TDBAL, bal).w(TDBAH, bah).w(TDLEN, len).w(TDH, 0).w(TDT, 0).w(TCTL, TCTL_ON)
    }

    /// Copies `descs` to [`TX_RING`] and makes it the transmit ring (`ring_len` bytes).
    fn tx_descs(&mut self, d: &mut Data, descs: &[[u8; 16]], ring_len: u32) -> &mut Self {
        let t = ring(descs);
        let src = d.bytes(&t, 16);
        self.copy(src, TX_RING, t.len() as u32).tx_ring(TX_RING, 0, ring_len)
    }

    /// Receive ring at `bah:bal`, `len` bytes, head 0, tail `rdt`, receiver on with `rctl`.
    fn rx_ring(&mut self, bal: u32, bah: u32, len: u32, rdt: u32, rctl: u32) -> &mut Self {
        self.w(RCTL, 0).w(RDBAL, bal).w(RDBAH, bah).w(RDLEN, len).w(RDH, 0).w(RDT, rdt).w(RCTL, rctl)
    }

    /// Places the script in the data section.
    fn place(&self, d: &mut Data) -> u32 {
        let mut words = Vec::with_capacity((self.ops.len() + 1) * OP_WORDS);
        for (op, args, s) in &self.ops {
            let mut args = *args;
            if let Some(s) = s {
                args[0] = d.cstr(s);
            }
            words.push(*op as u32);
            words.extend_from_slice(&args);
        }
        words.extend_from_slice(&[Op::End as u32, 0, 0, 0, 0, 0]);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        d.bytes(&bytes, 4)
    }
}

/// Code labels of the kernel's own routines.
struct K {
    rt: Rt,
    run: CodeLabel,
    alive: CodeLabel,
    puts: CodeLabel,
    rng: CodeLabel,
    rebase: CodeLabel,
    /// e1000's configuration address (device << 11 | function << 8).
    cfg: u32,
    seed: u32,
    alive_count: u32,
}

impl K {
    /// Runs `s` (through the interpreter).
    fn run(&self, a: &mut Asm, d: &mut Data, s: &Script) {
        let at = s.place(d);
        a.push(ebx).unwrap();
        a.mov(ebx, at).unwrap();
        a.call(self.run).unwrap();
        a.pop(ebx).unwrap();
    }
}

/// The abuse kernel (see the module documentation).
pub fn abuse() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let k = K {
            rt: Rt::new(a, d),
            run: a.create_label(),
            alive: a.create_label(),
            puts: a.create_label(),
            rng: a.create_label(),
            rebase: a.create_label(),
            cfg: d.var(),
            seed: d.var(),
            alive_count: d.var(),
        };
        let rt = &k.rt;
        rt.bsp_entry(a);
        a.cli().unwrap();
        find_and_map(a, d, &k);
        a.mov(esi, BAR).unwrap(); // BAR0, everywhere from here on
        check_mac(a, d, &k);
        first_frame(a, d, &k);
        for s in tx_ring_abuse(d) {
            k.run(a, d, &s);
        }
        for s in tx_descriptor_abuse(d) {
            k.run(a, d, &s);
        }
        for s in rx_abuse(d) {
            k.run(a, d, &s);
        }
        for s in misc_abuse() {
            k.run(a, d, &s);
        }
        fuzz(a, d, &k);
        final_frame(a, d, &k);
        rt.print(a, d, "e1000: ");
        a.mov(eax, dword_ptr(k.alive_count)).unwrap();
        rt.print_dec(a);
        rt.print(a, d, &format!(" liveness checks passed\n{OK_LINE}\n"));
        exit(a, EXIT_OK);

        emit_run(a, d, &k);
        emit_alive(a, d, &k);
        emit_puts(a, &k);
        emit_rng(a, &k);
        emit_rebase(a, &k);
        rt.emit(a, d);
    })
}

// ---------------------------------------------------------------------------------------------
// Set-up and sanity.

/// Finds 8086:100e on bus 0, places its 128 KiB memory BAR0 at [`BAR`], enables memory decoding
/// and bus mastering.
fn find_and_map(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    rt.pci_find(a, d, E1000_VENDOR_DEVICE, "e1000: no 8086:100e on bus 0\n");
    a.mov(dword_ptr(k.cfg), ebx).unwrap();
    rt.print(a, d, "e1000: 82540EM at 00:");
    a.mov(eax, ebx).unwrap();
    a.shr(eax, 11).unwrap();
    rt.print_hex2(a);
    rt.print(a, d, ".");
    a.mov(eax, ebx).unwrap();
    a.shr(eax, 8).unwrap();
    a.and(eax, 7u32).unwrap();
    rt.print_dec(a);

    // Decoding off while sizing BAR0.
    a.lea(eax, ptr(ebx + PCI_COMMAND)).unwrap();
    a.xor(edx, edx).unwrap();
    rt.pci_write(a, 2);
    a.lea(eax, ptr(ebx + PCI_BAR0)).unwrap();
    a.mov(edx, u32::MAX).unwrap();
    rt.pci_write(a, 4);
    rt.pci_read(a);
    let mut bad = a.create_label();
    let mut sized = a.create_label();
    a.test(eax, PCI_BAR_IO | PCI_BAR_TYPE).unwrap();
    a.jnz(bad).unwrap(); // an I/O BAR, or a 64-bit one
    a.and(eax, PCI_BAR_MEM_MASK).unwrap();
    a.cmp(eax, 0u32.wrapping_sub(E1000_BAR0_SIZE)).unwrap();
    a.je(sized).unwrap();
    a.here(&mut bad);
    rt.print(a, d, "\ne1000: BAR0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, " after writing all ones, expected a 32-bit 128 KiB memory BAR (0xfffe0000)\n");
    a.here(&mut sized);
    a.lea(eax, ptr(ebx + PCI_BAR0)).unwrap();
    a.mov(edx, BAR).unwrap();
    rt.pci_write(a, 4);
    rt.pci_read(a);
    a.and(eax, PCI_BAR_MEM_MASK).unwrap();
    let mut placed = a.create_label();
    a.cmp(eax, BAR).unwrap();
    a.je(placed).unwrap();
    rt.print(a, d, "\ne1000: BAR0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, &format!(" after writing 0x{BAR:08x}\n"));
    a.here(&mut placed);
    a.lea(eax, ptr(ebx + PCI_COMMAND)).unwrap();
    a.mov(edx, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER).unwrap();
    rt.pci_write(a, 2);
    rt.print(a, d, &format!(", BAR0 at 0x{BAR:08x}\n"));
}

/// STATUS, then the MAC address from EEPROM words 0-2 through EERD (§5.3.1, §13.4.4).
fn check_mac(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    rt.print(a, d, "e1000: status 0x");
    a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
    rt.print_hex(a);
    let mut dead = a.create_label();
    let mut answers = a.create_label();
    a.cmp(eax, u32::MAX).unwrap();
    a.jne(answers).unwrap();
    a.here(&mut dead);
    rt.fail(a, d, "\ne1000: STATUS reads all ones before anything was done to the card\n");
    a.here(&mut answers);
    rt.print(a, d, ", mac ");
    let mut late = a.create_label();
    let mut wrong = a.create_label();
    let mut good = a.create_label();
    for w in 0..3u32 {
        a.mov(dword_ptr(esi + EERD), (w << EERD_ADDR_SHIFT) | EERD_START).unwrap();
        rt.wait_until(a, EERD_TIMEOUT_MS, late, |a, ok| {
            a.test(dword_ptr(esi + EERD), EERD_DONE).unwrap();
            a.jnz(ok).unwrap();
        });
        a.mov(eax, dword_ptr(esi + EERD)).unwrap();
        a.shr(eax, EERD_DATA_SHIFT).unwrap();
        rt.print_hex2(a);
        rt.print(a, d, ":");
        a.push(eax).unwrap();
        a.mov(al, ah).unwrap();
        rt.print_hex2(a);
        if w < 2 {
            rt.print(a, d, ":");
        }
        a.pop(eax).unwrap();
        let expect = u16::from_le_bytes([MAC[2 * w as usize], MAC[2 * w as usize + 1]]) as u32;
        a.cmp(eax, expect).unwrap();
        a.jne(wrong).unwrap();
    }
    a.jmp(good).unwrap();
    a.here(&mut late);
    rt.fail(a, d, "\ne1000: EERD never reports done\n");
    a.here(&mut wrong);
    rt.fail(a, d, &format!("\ne1000: the EEPROM's MAC address differs from -device e1000,mac={MAC_ARG}\n"));
    a.here(&mut good);
    rt.print(a, d, "\n");
}

/// A sane receive ring of 8 and a wait for the host's first frame: the host is connected and
/// its flood reaches the card before the abuse starts.
fn first_frame(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut s = Script::default();
    let rx: Vec<_> = (0..256).map(|i| rxd((RX_BUFS + i * 2048) as u64)).collect();
    let rx = d.bytes(&ring(&rx), 16);
    let hdr = d.bytes(&tcp_header(), 4);
    s.step("waiting for the host's first frame")
        .w(IMC, u32::MAX)
        .r(ICR)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(RAL0, u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]))
        .w(RAH0, u16::from_le_bytes([MAC[4], MAC[5]]) as u32 | RAH_AV)
        .copy(hdr, TX_BUF, 54)
        .copy(rx, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_NORMAL);
    k.run(a, d, &s);
    let mut late = a.create_label();
    let mut got = a.create_label();
    rt.wait_until(a, FIRST_FRAME_TIMEOUT_MS, late, |a, ok| {
        a.test(byte_ptr(RX_RING + 12), DESC_DD).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(got).unwrap();
    a.here(&mut late);
    rt.fail(a, d, &format!("e1000: no frame from the host in {} s\n", FIRST_FRAME_TIMEOUT_MS / 1000));
    a.here(&mut got);
    rt.print(a, d, "e1000: first frame received, length ");
    a.movzx(eax, word_ptr(RX_RING + 8)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, "\n");
    let mut s = Script::default();
    s.w(RCTL, 0).alive();
    k.run(a, d, &s);
}

// ---------------------------------------------------------------------------------------------
// The abuse, as scripts.

/// Transmit rings in the wrong places and of the wrong sizes, the tail hammered.
fn tx_ring_abuse(d: &mut Data) -> Vec<Script> {
    let mut out = Vec::new();
    // 256 ordinary 60-byte frames: whatever part of a bogus ring lies in RAM sends something.
    let sane: Vec<_> = (0..256).map(|_| frame(TX_BUF as u64, 60)).collect();
    let sane = d.bytes(&ring(&sane), 16);
    for (bal, bah, what) in [
        (0xfff0_0000, 0, "0xfff00000 (below 4 GiB, not RAM)"),
        (0x8000_0000, 0, "0x80000000 (the PCI hole, nothing there)"),
        (BAR, 0, "the card's own BAR0"),
        (0xfee0_0000, 0, "the local APIC page"),
        (0, 0x1_0000, "0x1000000000000 (TDBAH)"),
        (0xffff_ff80, 0xffff_ffff, "0xffffffffffffff80 (wraps the 64-bit space)"),
        (RAM_END - 0x40, 0, "the last 64 bytes of RAM (straddles its end)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("tx ring at {what}"))
            .copy(sane, RAM_END - 0x40, 0x40)
            .tx_ring(bal, bah, 4096)
            .hammer(TDT, 64, 1, 0xff, 0)
            .hammer(TDT, 16, 0x1111, 0xffff, 0)
            .w(TDT, 0xffff_fff0)
            .w(TDT, 0)
            .delay(1)
            .print_reg("e1000:   TDH 0x", TDH)
            .print("\n")
            .alive();
        out.push(s);
    }
    for (len, what) in [
        (0, "TDLEN 0"),
        (8, "TDLEN 8 (half a descriptor)"),
        (0x50, "TDLEN 0x50 (not a multiple of 128)"),
        (0x88, "TDLEN 0x88 (not a multiple of 128)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("{what}, tail 5"))
            .copy(sane, TX_RING, 4096)
            .tx_ring(TX_RING, 0, len)
            .w(TDT, 5)
            .hammer(TDT, 32, 3, 0xf, 0)
            .alive();
        out.push(s);
    }
    let mut s = Script::default();
    s.step("TDLEN 0xffffff80 (a ring of 2^28 descriptors, most outside RAM)")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 0xffff_ff80)
        .w(TDT, 16)
        .w(TDH, 0x0fff_ff00)
        .w(TDT, 0x0fff_ff10)
        .w(TDH, 0xfff0)
        .w(TDT, 0xffff)
        .delay(1)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("tail beyond an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDT, 9)
        .w(TDT, 0xffff)
        .w(TDT, 0x1234_5678)
        .w(TDT, 0xffff_ffff)
        .delay(1)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("head beyond an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDH, 100)
        .w(TDT, 3)
        .w(TDH, 0xffff)
        .w(TDT, 0)
        .w(TDH, 0x8000_0001)
        .w(TDT, 1)
        .delay(1)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("tail equal to head, then the tail hammered round an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDH, 3)
        .w(TDT, 3)
        .hammer(TDT, 512, 1, 7, 0)
        .hammer(TDT, 256, 5, 7, 0)
        .delay(1)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("transmitter toggled while the tail moves")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 4096)
        .hammer(TCTL, 64, TCTL_ON, TCTL_ON, 0)
        .hammer(TDT, 64, 7, 0xff, 0)
        .w(TCTL, 0)
        .w(TDT, 200)
        .w(TDH, 5)
        .w(TCTL, TCTL_ON)
        .delay(1)
        .alive();
    out.push(s);
    out
}

/// Transmit descriptors in RAM that lie: buffers outside RAM, zero and oversized lengths, a
/// packet that never ends, segmentation and checksum offloads with impossible parameters.
fn tx_descriptor_abuse(d: &mut Data) -> Vec<Script> {
    let buf = TX_BUF as u64;
    let mut out = Vec::new();
    // The descriptors, then the tail right after them (the ring has room for one more).
    let step = |d: &mut Data, name: &str, descs: Vec<[u8; 16]>, pre: &dyn Fn(&mut Script)| {
        let n = descs.len() as u32;
        let ring_len = ((n + 1) * 16).next_multiple_of(128);
        let mut s = Script::default();
        s.step(name);
        pre(&mut s);
        s.tx_descs(d, &descs, ring_len).w(TDT, n).delay(2).print_reg("e1000:   TDH 0x", TDH).print("\n").alive();
        s
    };
    let none = &|_: &mut Script| {};
    out.push(step(
        d,
        "tx buffers outside RAM",
        vec![
            frame(0xfff0_0000, 1514),
            frame(1 << 48, 60),
            frame(BAR as u64, 64),
            frame(0xfee0_0000, 64),
            frame(0xfec0_0000, 64),
            frame(0xffff_ffff_ffff_fff0, 0xffff),
            frame(u64::MAX, 1),
            frame((RAM_END - 16) as u64, 0x100),
            frame(RAM_END as u64, 60),
            data(0xffff_ffff_ffff_ff00, 0xf_ffff, CMD_EOP | CMD_IFCS | CMD_RS, 0),
        ],
        none,
    ));
    out.push(step(
        d,
        "zero-length tx descriptors",
        vec![
            frame(buf, 0),
            frame(0, 0),
            legacy(buf, 0, 0, CMD_IFCS, 0, 0),
            legacy(buf, 0, 0, CMD_IFCS, 0, 0),
            frame(buf, 0),
            data(buf, 0, CMD_EOP | CMD_RS, POPTS_IXSM | POPTS_TXSM),
        ],
        none,
    ));
    out.push(step(
        d,
        "tx lengths 0xffff and 0xfffff, one packet of 3 x 0xffff",
        vec![
            frame(buf, 0xffff),
            legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0),
            legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0),
            frame(buf, 0xffff),
            data(buf, 0xf_ffff, CMD_EOP | CMD_IFCS | CMD_RS, 0),
        ],
        none,
    ));
    // 256 descriptors of 64 KiB without EOP, the ring walked 32 times: 512 MiB of packet that
    // never ends (a card that keeps it all shows in ferrite's RSS).
    let chain: Vec<_> = (0..256).map(|_| legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0)).collect();
    let chain = d.bytes(&ring(&chain), 16);
    let mut s = Script::default();
    s.step("a packet of 256 x 64 KiB descriptors without EOP, round the ring 32 times")
        .copy(chain, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 4096)
        .hammer(TDT, 65, 128, 0xff, 0)
        .delay(2)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let tse = CMD_TSE | CMD_EOP | CMD_IFCS | CMD_RS;
    let both = POPTS_IXSM | POPTS_TXSM;
    let tso = TUCMD_IP | TUCMD_TCP | CMD_TSE;
    out.push(step(
        d,
        "TSO with MSS 0",
        vec![ctx(Ctx { paylen: 1000, tucmd: tso, mss: 0, ..CTX }), data(buf, 1054, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 255, more than the whole packet",
        vec![
            ctx(Ctx { paylen: 10, tucmd: tso, hdrlen: 255, mss: 100, ..CTX }),
            data(buf, 60, tse, both),
            ctx(Ctx { paylen: 0, tucmd: tso, hdrlen: 200, mss: 1, ..CTX }),
            data(buf, 10, tse, both),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO with MSS 1 and PAYLEN 0xfffff (2000 bytes of data)",
        vec![ctx(Ctx { paylen: 0xf_ffff, tucmd: tso, mss: 1, ..CTX }), data(buf, 2000, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 0 and MSS 0xffff over 1 MiB of data",
        vec![
            ctx(Ctx { paylen: 0xf_ffff, tucmd: tso, hdrlen: 0, mss: 0xffff, ..CTX }),
            data(buf, 0xf_ffff, tse & !CMD_EOP, both),
            data(buf, 0xffff, tse, both),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 0 and MSS 1",
        vec![ctx(Ctx { paylen: 100, tucmd: tso, hdrlen: 0, mss: 1, ..CTX }), data(buf, 100, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "checksum offsets beyond the frame",
        vec![
            ctx(Ctx { ipcss: 0, ipcso: 250, ipcse: 0, tucss: 200, tucso: 254, tucse: 5, ..CTX }),
            data(buf, 42, CMD_EOP | CMD_IFCS | CMD_RS, both),
            ctx(Ctx { ipcss: 255, ipcso: 41, ipcse: 1, tucss: 41, tucso: 41, tucse: 0xffff, ..CTX }),
            data(buf, 42, CMD_EOP | CMD_RS, both),
            ctx(Ctx { ipcss: 14, ipcso: 255, ipcse: 0xffff, tucss: 255, tucso: 255, tucse: 0, ..CTX }),
            data(buf, 0, CMD_EOP | CMD_RS, both),
            legacy(buf, 20, 200, CMD_EOP | CMD_IFCS | CMD_IC | CMD_RS, 190, 0),
            legacy(buf, 20, 19, CMD_EOP | CMD_IC | CMD_RS, 0, 0),
            legacy(buf, 20, 2, CMD_EOP | CMD_IC | CMD_RS, 18, 0),
            legacy(buf, 0, 0, CMD_EOP | CMD_IC | CMD_RS, 0, 0),
            legacy(buf, 1, 255, CMD_EOP | CMD_IC | CMD_RS, 255, 0),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO data descriptor with no context since reset",
        vec![data(buf, 100, tse, both), data(buf, 0xffff, tse, both), data(buf, 1, tse, 0)],
        &|s: &mut Script| {
            s.w(TCTL, 0).w(CTRL, CTRL_RST).delay(2).w(CTRL, CTRL_SLU | CTRL_ASDE).w(IMC, u32::MAX);
        },
    ));
    out.push(step(
        d,
        "reserved descriptor types (DTYP 2-15)",
        (2..16).map(|t| data_typed(buf, 64, t, CMD_EOP | CMD_RS | if t % 2 == 0 { CMD_TSE } else { 0 }, both, 0)).collect(),
        none,
    ));
    out.push(step(
        d,
        "VLAN tag insertion into runt frames",
        vec![
            legacy(buf, 5, 0, CMD_EOP | CMD_IFCS | CMD_VLE | CMD_RS, 0, 0xffff),
            legacy(buf, 0, 0, CMD_EOP | CMD_VLE | CMD_RS, 0, 0x0123),
            legacy(buf, 12, 0, CMD_EOP | CMD_VLE | CMD_RS, 0, 0x0123),
            legacy(buf, 11, 10, CMD_EOP | CMD_VLE | CMD_IC | CMD_RS, 0, 0x0123),
            data_typed(buf, 3, 1, CMD_EOP | CMD_VLE | CMD_RS, both, 0x1234),
            ctx(Ctx { paylen: 3, tucmd: tso, hdrlen: 10, mss: 1, ..CTX }),
            data_typed(buf, 13, 1, tse | CMD_VLE, both, 0x1234),
        ],
        &|s: &mut Script| {
            s.w(CTRL, CTRL_SLU | CTRL_ASDE | CTRL_VME).w(VET, 0xffff);
        },
    ));
    let mut s = Script::default();
    s.step("back to a plain transmitter").w(TCTL, 0).w(CTRL, CTRL_SLU | CTRL_ASDE).w(VET, 0x8100).alive();
    out.push(s);
    out
}

/// Receive rings and buffers in the wrong places, of the wrong sizes, never emptied, with the
/// host flooding the card all along.
fn rx_abuse(d: &mut Data) -> Vec<Script> {
    let mut out = Vec::new();
    let sane: Vec<_> = (0..256).map(|i| rxd((RX_BUFS + i * 2048) as u64)).collect();
    let sane = d.bytes(&ring(&sane), 16);
    for (bal, bah, what) in [
        (0xfff0_0000, 0, "0xfff00000"),
        (0x8000_0000, 0, "0x80000000 (the PCI hole)"),
        (BAR, 0, "the card's own BAR0"),
        (0, 0x1_0000, "0x1000000000000 (RDBAH)"),
        (0xffff_ff80, 0xffff_ffff, "0xffffffffffffff80 (wraps the 64-bit space)"),
        (RAM_END - 0x40, 0, "the last 64 bytes of RAM (straddles its end)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("rx ring at {what}, frames arriving"))
            .copy(sane, RAM_END - 0x40, 0x40)
            .rx_ring(bal, bah, 4096, 255, RCTL_ABUSE)
            .delay(20)
            .hammer(RDT, 64, 17, 0xff, 0)
            .delay(10)
            .print_reg("e1000:   RDH 0x", RDH)
            .print("\n")
            .w(RCTL, 0)
            .alive();
        out.push(s);
    }
    for (len, what) in [(0, "RDLEN 0"), (8, "RDLEN 8"), (0x50, "RDLEN 0x50"), (0x88, "RDLEN 0x88")] {
        let mut s = Script::default();
        s.step(&format!("{what}, tail 5, frames arriving"))
            .copy(sane, RX_RING, 4096)
            .rx_ring(RX_RING, 0, len, 5, RCTL_ABUSE)
            .delay(20)
            .hammer(RDT, 32, 3, 0xf, 0)
            .delay(10)
            .w(RCTL, 0)
            .alive();
        out.push(s);
    }
    let mut s = Script::default();
    s.step("RDLEN 0xffffff80 from the last page of RAM, tail far away")
        .copy(sane, TOP_RING, 4096)
        .rx_ring(TOP_RING, 0, 0xffff_ff80, 0x0fff_fff0, RCTL_ABUSE)
        .delay(30)
        .w(RDT, 0xffff)
        .delay(20)
        .print_reg("e1000:   RDH 0x", RDH)
        .print("\n")
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx tail beyond an 8-descriptor ring")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 9, RCTL_ABUSE)
        .delay(20)
        .w(RDT, 0xffff)
        .delay(20)
        .w(RDT, u32::MAX)
        .delay(20)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx head beyond an 8-descriptor ring")
        .copy(sane, RX_RING, 4096)
        .w(RCTL, 0)
        .w(RDBAL, RX_RING)
        .w(RDBAH, 0)
        .w(RDLEN, 128)
        .w(RDH, 50)
        .w(RDT, 3)
        .w(RCTL, RCTL_ABUSE)
        .delay(20)
        .w(RDH, 0xffff_fff0)
        .delay(20)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx tail equal to head (no buffers), frames arriving")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 4096, 0, RCTL_ABUSE)
        .delay(30)
        .w(RCTL, 0)
        .alive();
    out.push(s);

    // Never emptied: 15 usable 256-byte buffers, jumbo frames allowed, 500 ms of flood (a card
    // or backend that queued what it cannot deliver would grow by hundreds of MiB meanwhile). The
    // card must stop at the tail and keep to the buffer size; what does not fit is dropped.
    let canary: Vec<_> = (0..CANARY_DESCS).map(|i| rxd((CANARY_BUFS + i * 512) as u64)).collect();
    let canary = d.bytes(&ring(&canary), 16);
    let mut s = Script::default();
    s.step("a 16 x 256-byte rx ring the driver never empties, jumbo frames on")
        .copy(canary, CANARY_RING, CANARY_DESCS * 16)
        .fill(CANARY_BUFS, CANARY_DESCS * 512 / 4, CANARY)
        .rx_ring(CANARY_RING, 0, CANARY_DESCS * 16, CANARY_DESCS - 1, RCTL_ABUSE | RCTL_BSIZE_256)
        .delay(400)
        .print_reg("e1000:   RDH 0x", RDH)
        .print_reg(", MPC 0x", MPC)
        .print_reg(", RNBC 0x", RNBC)
        .print_reg(", GPRC 0x", GPRC)
        .print("\n")
        .delay(100)
        .check_set(CANARY_RING + 12, DESC_DD)
        .check_clear(CANARY_RING + (CANARY_DESCS - 1) * 16 + 12, DESC_DD)
        .check_rx_lens(CANARY_RING, CANARY_DESCS, 256);
    for i in 0..CANARY_DESCS {
        s.check_fill(CANARY_BUFS + i * 512 + 256, 64, CANARY);
    }
    s.w(RCTL, 0).alive();
    out.push(s);

    let bad: Vec<_> = [
        0xfff0_0000u64,
        1 << 48,
        BAR as u64,
        0xffff_ffff_ffff_f800,
        (RAM_END - 100) as u64,
        RAM_END as u64,
        0xfec0_0000,
        u64::MAX,
    ]
    .iter()
    .cycle()
    .take(16)
    .map(|&a| rxd(a))
    .collect();
    let mut s = Script::default();
    s.step("rx buffers outside RAM, frames arriving")
        .copy(d.bytes(&ring(&bad), 16), RX_RING, 256)
        .rx_ring(RX_RING, 0, 256, 15, RCTL_ABUSE)
        .delay(30)
        .hammer(RDT, 64, 3, 0xf, 0)
        .delay(10)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("reserved rx buffer size (BSEX with BSIZE 0), then 16 KiB buffers")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_ABUSE | RCTL_BSEX)
        .delay(30)
        .w(RCTL, 0)
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_ABUSE | RCTL_BSEX | RCTL_BSIZE_16K)
        .delay(30)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("receiver toggled while frames arrive")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 4096, 255, RCTL_ABUSE)
        .hammer(RCTL, 256, RCTL_EN, RCTL_EN, RCTL_UPE | RCTL_BAM)
        .hammer(RDT, 256, 1, 0xff, 0)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    out
}

/// Interrupt registers, EEPROM, PHY and sub-dword accesses.
fn misc_abuse() -> Vec<Script> {
    let mut out = Vec::new();
    let mut s = Script::default();
    s.step("interrupt registers hammered (interrupts off in the CPU, INTx live)")
        .w(IMS, u32::MAX)
        .w(ICS, u32::MAX)
        .r(ICR)
        .r(ICR)
        .w(ICR, u32::MAX)
        .hammer(ICS, 300, 0x9e37_79b9, u32::MAX, 0)
        .hammer(IMS, 300, 0x7f4a_7c15, u32::MAX, 0)
        .r(ICR)
        .hammer(IMC, 300, 0x6a09_e667, u32::MAX, 0)
        .hammer(ICR, 300, 0xbb67_ae85, u32::MAX, 0)
        .w(ITR, 0)
        .w(ITR, 1)
        .w(ITR, 0xffff)
        .w(ITR, u32::MAX)
        .w(IMS, u32::MAX)
        .w(ICS, u32::MAX)
        .delay(20)
        .r(ICR)
        .w(ITR, 1)
        .w(ICS, u32::MAX)
        .delay(5)
        .w(ITR, 0)
        .w(IMC, u32::MAX)
        .r(ICR)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("EERD over all 256 word addresses, EECD bit-banged, MDIC over every PHY address")
        .hammer(EERD, 256, 1 << EERD_ADDR_SHIFT, 0xff << EERD_ADDR_SHIFT, EERD_START)
        .hammer(EERD, 16, 0x1111_1111, u32::MAX, 0)
        .hammer(EECD, 512, 0x4d, 0xff, 0)
        .w(EECD, 0)
        .hammer(MDIC, 1024, 1 << 16, 0x03ff_0000, 0x0800_0000) // read, every PHY and register
        .hammer(MDIC, 16, 0x0002_0000, 0x001e_0000, 0x0421_0000 | 0x1234) // write, PHY 1, odd registers
        .hammer(MDIC, 16, 0x1357_9bdf, 0xf3ff_ffff, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("byte, word and unaligned accesses")
        .w8(CTRL + 3, (CTRL_RST >> 24) | 0x40) // the RST bit through its byte
        .delay(2)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(RDBAL, OUTSIDE_RAM)
        .w(TDBAL, OUTSIDE_RAM)
        .r8(STATUS + 1)
        .r16(STATUS + 2)
        .r(STATUS + 1)
        .r(STATUS + 3)
        .w16(TDT, 0xffff)
        .w16(TDT + 2, 0xffff)
        .w16(TDLEN + 1, 0xffff)
        .w8(TCTL, TCTL_ON)
        .w(TDT + 2, 0x1234_5678)
        .w(TDH + 1, u32::MAX)
        .w8(RCTL + 1, RCTL_BAM >> 8)
        .w8(RCTL, RCTL_EN)
        .w16(RDT + 1, 0xffff)
        .w(RDLEN + 3, u32::MAX)
        .w8(ICS + 3, 0xff)
        .r8(ICR + 3)
        .r16(ICR + 1)
        .w(IMS + 2, u32::MAX)
        .w8(RAL0 + 5, 0xff)
        .w16(MTA + 0x7f, 0xffff)
        .r16(EERD + 1)
        .r8(0x1_fffc)
        .w(TCTL, 0)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("accesses straddling the end of BAR0")
        .w16(0x1_ffff, 0xffff)
        .w(0x1_fffe, u32::MAX)
        .w(0x1_fffd, u32::MAX)
        .r(0x1_fffe)
        .r16(0x1_ffff)
        .r(0x1_fffd)
        .alive();
    out.push(s);
    out
}

// ---------------------------------------------------------------------------------------------
// Random writes.

/// `FUZZ_DWORDS` random values to random dword registers (every 64th to CTRL with RST set), each
/// followed by a random read; then `FUZZ_SMALL` byte, word and unaligned dword accesses. Writes
/// that could point a ring into RAM are defused: the low dword of every base address register
/// (the dword at offsets 0-3 mod 8 in 0x100-0x4FF and 0x2800-0x3FFF) gets bit 31 set, and
/// after a write to 0x0-0xFF (a reset may have zeroed them) the bases move back to 2 GiB.
fn fuzz(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut s = Script::default();
    s.step(&format!("{FUZZ_DWORDS} random register writes, then {FUZZ_SMALL} random byte/word/unaligned accesses"))
        .w(RCTL, 0)
        .w(TCTL, 0)
        .w(RDBAL, OUTSIDE_RAM)
        .w(TDBAL, OUTSIDE_RAM);
    k.run(a, d, &s);
    a.mov(dword_ptr(k.seed), FUZZ_SEED).unwrap();

    // Is ECX a dangerous offset? Jumps to `safe` if not.
    let guard = |a: &mut Asm, safe: CodeLabel| {
        let mut check = a.create_label();
        a.mov(eax, ecx).unwrap();
        a.sub(eax, RCTL).unwrap();
        a.cmp(eax, 0x400u32).unwrap();
        a.jb(check).unwrap();
        a.mov(eax, ecx).unwrap();
        a.sub(eax, RDBAL).unwrap();
        a.cmp(eax, 0x1800u32).unwrap();
        a.jae(safe).unwrap();
        a.here(&mut check);
        a.test(ecx, 4u32).unwrap();
        a.jnz(safe).unwrap();
    };

    // Whole dwords.
    let mut next = a.create_label();
    let mut not_ctrl = a.create_label();
    let mut safe = a.create_label();
    let mut no_rebase = a.create_label();
    let mut no_check = a.create_label();
    a.push(ebx).unwrap();
    a.mov(ebx, FUZZ_DWORDS).unwrap();
    a.here(&mut next);
    a.call(k.rng).unwrap();
    a.mov(ecx, eax).unwrap();
    a.and(ecx, 0x1_fffcu32).unwrap();
    a.call(k.rng).unwrap();
    a.mov(edx, eax).unwrap();
    a.test(ebx, 63u32).unwrap();
    a.jnz(not_ctrl).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.or(edx, CTRL_RST).unwrap();
    a.here(&mut not_ctrl);
    guard(a, safe);
    a.or(edx, OUTSIDE_RAM).unwrap();
    a.here(&mut safe);
    a.mov(dword_ptr(esi + ecx), edx).unwrap();
    a.cmp(ecx, 0x100u32).unwrap();
    a.jae(no_rebase).unwrap();
    a.call(k.rebase).unwrap();
    a.here(&mut no_rebase);
    a.call(k.rng).unwrap();
    a.and(eax, 0x1_fffcu32).unwrap();
    a.mov(eax, dword_ptr(esi + eax)).unwrap();
    a.test(ebx, 255u32).unwrap();
    a.jnz(no_check).unwrap();
    a.call(k.alive).unwrap();
    a.here(&mut no_check);
    a.dec(ebx).unwrap();
    a.jnz(next).unwrap();
    a.call(k.alive).unwrap();

    // Bytes (kind 0), words (1), unaligned dwords (2) and reads of all three (3).
    let mut next = a.create_label();
    let mut in_bar = a.create_label();
    let mut not_ctrl = a.create_label();
    let mut read = a.create_label();
    let mut word = a.create_label();
    let mut dword = a.create_label();
    let mut written = a.create_label();
    let mut no_rebase = a.create_label();
    let mut no_check = a.create_label();
    a.mov(ebx, FUZZ_SMALL).unwrap();
    a.here(&mut next);
    a.call(k.rng).unwrap();
    a.mov(ecx, eax).unwrap();
    a.and(ecx, 0x1_ffffu32).unwrap();
    a.cmp(ecx, 0x1_fffcu32).unwrap();
    a.jbe(in_bar).unwrap();
    a.sub(ecx, 4u32).unwrap();
    a.here(&mut in_bar);
    a.call(k.rng).unwrap();
    a.mov(edx, eax).unwrap();
    a.test(ebx, 63u32).unwrap();
    a.jnz(not_ctrl).unwrap();
    a.mov(ecx, CTRL + 3).unwrap(); // the byte holding RST
    a.or(edx, CTRL_RST >> 24).unwrap();
    a.mov(byte_ptr(esi + ecx), dl).unwrap();
    a.call(k.rebase).unwrap();
    a.jmp(no_rebase).unwrap();
    a.here(&mut not_ctrl);
    let mut write = a.create_label();
    guard(a, write);
    a.jmp(read).unwrap(); // could point a ring into RAM: read instead
    a.here(&mut write);
    a.call(k.rng).unwrap();
    a.and(eax, 3u32).unwrap();
    a.cmp(eax, 3u32).unwrap();
    a.je(read).unwrap();
    a.cmp(eax, 1u32).unwrap();
    a.je(word).unwrap();
    a.ja(dword).unwrap();
    a.mov(byte_ptr(esi + ecx), dl).unwrap();
    a.jmp(written).unwrap();
    a.here(&mut word);
    a.mov(word_ptr(esi + ecx), dx).unwrap();
    a.jmp(written).unwrap();
    a.here(&mut dword);
    a.mov(dword_ptr(esi + ecx), edx).unwrap();
    a.here(&mut written);
    a.cmp(ecx, 0x100u32).unwrap();
    a.jae(no_rebase).unwrap();
    a.call(k.rebase).unwrap();
    a.jmp(no_rebase).unwrap();
    a.here(&mut read);
    a.mov(al, byte_ptr(esi + ecx)).unwrap();
    a.mov(ax, word_ptr(esi + ecx)).unwrap();
    a.mov(eax, dword_ptr(esi + ecx)).unwrap();
    a.here(&mut no_rebase);
    a.test(ebx, 127u32).unwrap();
    a.jnz(no_check).unwrap();
    a.call(k.alive).unwrap();
    a.here(&mut no_check);
    a.dec(ebx).unwrap();
    a.jnz(next).unwrap();
    a.pop(ebx).unwrap();
    let mut s = Script::default();
    s.w(RCTL, 0).w(TCTL, 0).w(IMC, u32::MAX).r(ICR).alive();
    k.run(a, d, &s);
    rt.print(a, d, "e1000: random writes done\n");
}

// ---------------------------------------------------------------------------------------------
// The card still works.

/// Resets the card, sets up fresh rings, sends the done frame and waits for the host's ack
/// (resending the frame every [`ACK_WAIT_MS`], up to [`ACK_TRIES`] times).
fn final_frame(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let tx_idx = d.var();
    let rx_idx = d.var();
    let rx_frames = d.var();
    let tries = d.var();
    let frame_addr = d.bytes(&done_frame(), 16);

    rt.print(a, d, "e1000: reset, then a frame to the host and its answer back\n");
    a.mov(dword_ptr(esi + CTRL), CTRL_RST).unwrap();
    let mut stuck = a.create_label();
    let mut reset = a.create_label();
    rt.wait_until(a, RESET_TIMEOUT_MS, stuck, |a, ok| {
        a.test(dword_ptr(esi + CTRL), CTRL_RST).unwrap();
        a.jz(ok).unwrap();
    });
    a.jmp(reset).unwrap();
    a.here(&mut stuck);
    rt.fail(a, d, "e1000: CTRL.RST never clears\n");
    a.here(&mut reset);

    let rx: Vec<_> = (0..FINAL_RX_DESCS).map(|i| rxd((FINAL_RX_BUFS + i * 2048) as u64)).collect();
    let rx = d.bytes(&ring(&rx), 16);
    let tx = d.zeroed(FINAL_TX_DESCS * 16, 16);
    let mut s = Script::default();
    // The random phase wrote PHY registers too: reset the PHY as a driver would.
    s.w(CTRL, CTRL_PHY_RST | CTRL_SLU | CTRL_ASDE)
        .delay(10)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(IMC, u32::MAX)
        .r(ICR)
        .w(RAL0, u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]))
        .w(RAH0, u16::from_le_bytes([MAC[4], MAC[5]]) as u32 | RAH_AV)
        .copy(rx, FINAL_RX_RING, FINAL_RX_DESCS * 16)
        .rx_ring(FINAL_RX_RING, 0, FINAL_RX_DESCS * 16, FINAL_RX_DESCS - 1, RCTL_NORMAL)
        .copy(tx, FINAL_TX_RING, FINAL_TX_DESCS * 16)
        .w(TIPG, TIPG_VALUE)
        .tx_ring(FINAL_TX_RING, 0, FINAL_TX_DESCS * 16);
    k.run(a, d, &s);
    let mut link = a.create_label();
    let mut no_link = a.create_label();
    rt.wait_until(a, LINK_TIMEOUT_MS, no_link, |a, ok| {
        a.test(dword_ptr(esi + STATUS), STATUS_LU).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(link).unwrap();
    a.here(&mut no_link);
    rt.print(a, d, "e1000: warning: STATUS.LU still clear after the reset; sending anyway\n");
    a.here(&mut link);

    a.mov(dword_ptr(tries), ACK_TRIES).unwrap();
    let mut send = a.create_label();
    let mut no_dd = a.create_label();
    let mut sent = a.create_label();
    let mut no_ack = a.create_label();
    let mut acked = a.create_label();
    a.here(&mut send);
    a.mov(eax, dword_ptr(tx_idx)).unwrap();
    a.mov(ecx, eax).unwrap();
    a.shl(ecx, 4).unwrap();
    a.add(ecx, FINAL_TX_RING).unwrap();
    let cmd = (CMD_EOP | CMD_IFCS | CMD_RS) as u32;
    a.mov(dword_ptr(ecx), frame_addr).unwrap();
    a.mov(dword_ptr(ecx + 4), 0).unwrap();
    a.mov(dword_ptr(ecx + 8), (cmd << 24) | DONE_FRAME_LEN).unwrap();
    a.mov(dword_ptr(ecx + 12), 0).unwrap();
    a.inc(eax).unwrap();
    a.and(eax, FINAL_TX_DESCS - 1).unwrap();
    a.mov(dword_ptr(tx_idx), eax).unwrap();
    a.mov(dword_ptr(esi + TDT), eax).unwrap();
    rt.wait_until(a, TX_TIMEOUT_MS, no_dd, |a, ok| {
        a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(sent).unwrap();
    a.here(&mut no_dd);
    rt.print(a, d, "e1000: the done frame was never transmitted (no DD); TDH 0x");
    a.mov(eax, dword_ptr(esi + TDH)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, ", TDT 0x");
    a.mov(eax, dword_ptr(esi + TDT)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, "\n");
    a.here(&mut sent);
    // Take frames off the receive ring, giving each descriptor back, until the ack.
    rt.wait_until(a, ACK_WAIT_MS, no_ack, |a, ok| {
        let mut not_yet = a.create_label();
        a.mov(eax, dword_ptr(rx_idx)).unwrap();
        a.mov(ecx, eax).unwrap();
        a.shl(ecx, 4).unwrap();
        a.add(ecx, FINAL_RX_RING).unwrap();
        a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
        a.jz(not_yet).unwrap();
        a.inc(dword_ptr(rx_frames)).unwrap();
        a.mov(edx, dword_ptr(ecx)).unwrap();
        a.mov(dword_ptr(ecx + 8), 0).unwrap();
        a.mov(dword_ptr(ecx + 12), 0).unwrap();
        a.mov(dword_ptr(esi + RDT), eax).unwrap();
        a.inc(eax).unwrap();
        a.and(eax, FINAL_RX_DESCS - 1).unwrap();
        a.mov(dword_ptr(rx_idx), eax).unwrap();
        for (i, w) in ACK_MARKER.chunks(4).enumerate() {
            a.cmp(dword_ptr(edx + 14 + 4 * i as i32), u32::from_le_bytes(w.try_into().unwrap())).unwrap();
            a.jne(not_yet).unwrap();
        }
        a.jmp(ok).unwrap();
        a.here(&mut not_yet);
    });
    a.jmp(acked).unwrap();
    a.here(&mut no_ack);
    a.dec(dword_ptr(tries)).unwrap();
    a.jnz(send).unwrap();
    rt.print(a, d, "e1000: no ack from the host; frames received meanwhile: ");
    a.mov(eax, dword_ptr(rx_frames)).unwrap();
    rt.print_dec(a);
    rt.fail(a, d, "\n");
    a.here(&mut acked);
    rt.print(a, d, "e1000: done frame sent ");
    a.mov(eax, ACK_TRIES + 1).unwrap();
    a.sub(eax, dword_ptr(tries)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, " time(s), host ack received after ");
    a.mov(eax, dword_ptr(rx_frames)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, " frames; GPTC 0x");
    a.mov(eax, dword_ptr(esi + GPTC)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, ", GPRC 0x");
    a.mov(eax, dword_ptr(esi + GPRC)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, "\n");
    let mut s = Script::default();
    s.w(RCTL, 0).w(TCTL, 0).alive();
    k.run(a, d, &s);
}

// ---------------------------------------------------------------------------------------------
// Routines.

/// run: EBX = script; ESI = BAR0. Preserves every register.
fn emit_run(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut l = k.run;
    let mut next = a.create_label();
    let mut end = a.create_label();
    let mut check_fail = a.create_label();
    let mut fill_fail = a.create_label();
    a.here(&mut l);
    a.pushad().unwrap();
    a.here(&mut next);
    a.mov(eax, dword_ptr(ebx)).unwrap();
    a.mov(ecx, dword_ptr(ebx + 4)).unwrap();
    a.mov(edx, dword_ptr(ebx + 8)).unwrap();
    a.mov(ebp, dword_ptr(ebx + 12)).unwrap();
    a.add(ebx, (OP_WORDS * 4) as u32).unwrap();
    // Operands d and e are now at [EBX - 8] and [EBX - 4].
    let mut labels: Vec<(Op, CodeLabel)> = Vec::new();
    for op in [
        Op::End,
        Op::W32,
        Op::W16,
        Op::W8,
        Op::R32,
        Op::R16,
        Op::R8,
        Op::Delay,
        Op::Alive,
        Op::Hammer,
        Op::Copy,
        Op::Fill,
        Op::Print,
        Op::PrintReg,
        Op::CheckClear,
        Op::CheckSet,
        Op::CheckFill,
        Op::CheckRxLens,
    ] {
        let l = a.create_label();
        a.cmp(eax, op as u32).unwrap();
        a.je(l).unwrap();
        labels.push((op, l));
    }
    rt.print(a, d, "\ne1000: bad script operation 0x");
    rt.print_hex(a);
    rt.fail(a, d, "\n");
    for (op, mut l) in labels {
        a.here(&mut l);
        match op {
            Op::End => {
                a.jmp(end).unwrap();
            }
            Op::W32 => a.mov(dword_ptr(esi + ecx), edx).unwrap(),
            Op::W16 => a.mov(word_ptr(esi + ecx), dx).unwrap(),
            Op::W8 => a.mov(byte_ptr(esi + ecx), dl).unwrap(),
            Op::R32 => a.mov(eax, dword_ptr(esi + ecx)).unwrap(),
            Op::R16 => a.mov(ax, word_ptr(esi + ecx)).unwrap(),
            Op::R8 => a.mov(al, byte_ptr(esi + ecx)).unwrap(),
            Op::Delay => {
                let mut ms = a.create_label();
                a.test(ecx, ecx).unwrap();
                a.jz(next).unwrap();
                a.here(&mut ms);
                rt.delay(a, TICKS_1MS);
                a.dec(ecx).unwrap();
                a.jnz(ms).unwrap();
            }
            Op::Alive => a.call(k.alive).unwrap(),
            Op::Hammer => {
                let mut again = a.create_label();
                a.xor(eax, eax).unwrap();
                a.test(edx, edx).unwrap();
                a.jz(next).unwrap();
                a.here(&mut again);
                a.push(eax).unwrap();
                a.and(eax, dword_ptr(ebx - 8)).unwrap();
                a.or(eax, dword_ptr(ebx - 4)).unwrap();
                a.mov(dword_ptr(esi + ecx), eax).unwrap();
                a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
                a.pop(eax).unwrap();
                a.add(eax, ebp).unwrap();
                a.dec(edx).unwrap();
                a.jnz(again).unwrap();
            }
            Op::Copy => {
                a.push(esi).unwrap();
                a.mov(esi, ecx).unwrap();
                a.mov(edi, edx).unwrap();
                a.mov(ecx, ebp).unwrap();
                a.rep().movsb().unwrap();
                a.pop(esi).unwrap();
            }
            Op::Fill => {
                a.mov(edi, ecx).unwrap();
                a.mov(ecx, edx).unwrap();
                a.mov(eax, ebp).unwrap();
                a.rep().stosd().unwrap();
            }
            Op::Print => a.call(k.puts).unwrap(),
            Op::PrintReg => {
                a.call(k.puts).unwrap();
                a.mov(eax, dword_ptr(esi + edx)).unwrap();
                rt.print_hex(a);
            }
            Op::CheckClear => {
                a.test(dword_ptr(ecx), edx).unwrap();
                a.jnz(check_fail).unwrap();
            }
            Op::CheckSet => {
                a.test(dword_ptr(ecx), edx).unwrap();
                a.jz(check_fail).unwrap();
            }
            Op::CheckFill => {
                a.mov(edi, ecx).unwrap();
                a.mov(ecx, edx).unwrap();
                a.mov(eax, ebp).unwrap();
                a.repe().scasd().unwrap();
                a.jne(fill_fail).unwrap();
            }
            Op::CheckRxLens => {
                let mut desc = a.create_label();
                let mut skip = a.create_label();
                a.here(&mut desc);
                a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
                a.jz(skip).unwrap();
                a.movzx(eax, word_ptr(ecx + 8)).unwrap();
                a.cmp(eax, ebp).unwrap();
                a.ja(check_fail).unwrap();
                a.here(&mut skip);
                a.add(ecx, 16u32).unwrap();
                a.dec(edx).unwrap();
                a.jnz(desc).unwrap();
            }
        }
        a.jmp(next).unwrap();
    }
    a.here(&mut end);
    a.popad().unwrap();
    a.ret().unwrap();

    a.here(&mut fill_fail);
    a.lea(ecx, ptr(edi - 4)).unwrap();
    a.here(&mut check_fail);
    rt.print(a, d, "\ne1000: check failed: RAM at 0x");
    a.mov(eax, ecx).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " holds 0x");
    a.mov(eax, dword_ptr(ecx)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " (operation ");
    a.mov(eax, dword_ptr(ebx - 24)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, ", operands 0x");
    a.mov(eax, dword_ptr(ebx - 20)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " 0x");
    a.mov(eax, dword_ptr(ebx - 16)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " 0x");
    a.mov(eax, dword_ptr(ebx - 12)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, ")\n");
}

/// alive: STATUS must not read all ones and the configuration ID must still be 8086:100e.
fn emit_alive(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut l = k.alive;
    let mut dead = a.create_label();
    let mut gone = a.create_label();
    a.here(&mut l);
    a.push(eax).unwrap();
    a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
    a.cmp(eax, u32::MAX).unwrap();
    a.je(dead).unwrap();
    a.mov(eax, dword_ptr(k.cfg)).unwrap();
    k.rt.pci_read(a);
    a.cmp(eax, E1000_VENDOR_DEVICE).unwrap();
    a.jne(gone).unwrap();
    a.inc(dword_ptr(k.alive_count)).unwrap();
    a.pop(eax).unwrap();
    a.ret().unwrap();
    a.here(&mut dead);
    rt.fail(a, d, "\ne1000: STATUS reads 0xffffffff: the card stopped answering\n");
    a.here(&mut gone);
    rt.print(a, d, "\ne1000: configuration dword 0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, ", no longer 8086:100e\n");
}

/// puts: ECX = NUL-terminated string, to COM1. Preserves every register.
fn emit_puts(a: &mut Asm, k: &K) {
    let mut l = k.puts;
    let mut next = a.create_label();
    let mut end = a.create_label();
    a.here(&mut l);
    a.push(eax).unwrap();
    a.push(ecx).unwrap();
    a.push(edx).unwrap();
    a.mov(edx, COM1 as u32).unwrap();
    a.here(&mut next);
    a.mov(al, byte_ptr(ecx)).unwrap();
    a.test(al, al).unwrap();
    a.jz(end).unwrap();
    a.out(dx, al).unwrap();
    a.inc(ecx).unwrap();
    a.jmp(next).unwrap();
    a.here(&mut end);
    a.pop(edx).unwrap();
    a.pop(ecx).unwrap();
    a.pop(eax).unwrap();
    a.ret().unwrap();
}

/// rng: EAX = the next xorshift32 value (Marsaglia's 13, 17, 5). Preserves everything else.
fn emit_rng(a: &mut Asm, k: &K) {
    let mut l = k.rng;
    a.here(&mut l);
    a.push(ecx).unwrap();
    a.mov(eax, dword_ptr(k.seed)).unwrap();
    for (left, n) in [(true, 13), (false, 17), (true, 5)] {
        a.mov(ecx, eax).unwrap();
        if left {
            a.shl(ecx, n).unwrap();
        } else {
            a.shr(ecx, n).unwrap();
        }
        a.xor(eax, ecx).unwrap();
    }
    a.mov(dword_ptr(k.seed), eax).unwrap();
    a.pop(ecx).unwrap();
    a.ret().unwrap();
}

/// rebase: both ring bases back to [`OUTSIDE_RAM`] (after a write that may have reset them).
fn emit_rebase(a: &mut Asm, k: &K) {
    let mut l = k.rebase;
    a.here(&mut l);
    a.mov(dword_ptr(esi + RDBAL), OUTSIDE_RAM).unwrap();
    a.mov(dword_ptr(esi + TDBAL), OUTSIDE_RAM).unwrap();
    a.ret().unwrap();
}
