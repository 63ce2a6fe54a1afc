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

/// Configuration header registers, as the PCI test kernel names them.
use super::pci::{PCI_BAR0, PCI_BAR_IO, PCI_BAR_MEM_MASK, PCI_BAR_TYPE, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};

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
        super::rt::emit_puts(a, k.puts);
        super::rt::emit_xorshift(a, k.rng, k.seed);
        emit_rebase(a, &k);
        rt.emit(a, d);
    })
}
