//! The device driven the way Linux's e1000 driver drives it, over real guest memory, with a
//! sink that records frames. Checksums are verified with a separate, naive implementation.

use super::regs::*;
use super::*;
use crate::pci::{PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use crate::testing::TestLink;
use ferrite_memory::Dma;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const RAM: u64 = 0x40_0000;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER: [u8; 6] = [0x52, 0x55, 0x0A, 0x00, 0x02, 0x02];
const TX_RING: u64 = 0x1_0000;
const RX_RING: u64 = 0x2_0000;
const TX_BUFS: u64 = 0x10_0000;
const RX_BUFS: u64 = 0x20_0000;
const SRC_IP: [u8; 4] = [10, 0, 2, 15];
const DST_IP: [u8; 4] = [10, 0, 2, 2];

#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<Vec<u8>>>,
    rx_space: AtomicUsize,
}

impl FrameSink for Recorder {
    fn send(&self, frame: &[u8]) {
        self.frames.lock().unwrap().push(frame.to_vec());
    }
    fn rx_space(&self) {
        self.rx_space.fetch_add(1, Ordering::SeqCst);
    }
}

impl Recorder {
    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.frames.lock().unwrap())
    }
}

struct Nic {
    dev: E1000,
    t: TestLink,
    dma: Dma,
    sink: Arc<Recorder>,
    tx_count: u64,
    rx_count: u64,
}

impl Nic {
    fn new() -> Self {
        let t = TestLink::new(RAM);
        let sink = Arc::new(Recorder::default());
        let mut dev = E1000::new(MAC, sink.clone());
        dev.attach(t.link());
        let cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER;
        dev.config_write(PCI_COMMAND as u8, 2, u32::from(cmd));
        let dma = Dma::new(t.mem.clone());
        Nic { dev, t, dma, sink, tx_count: 0, rx_count: 0 }
    }

    fn r(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }

    fn w(&mut self, off: u32, v: u32) {
        self.dev.bar_write(0, u64::from(off), &v.to_le_bytes());
    }

    fn set(&mut self, off: u32, bits: u32) {
        let v = self.r(off);
        self.w(off, v | bits);
    }

    fn clear(&mut self, off: u32, bits: u32) {
        let v = self.r(off);
        self.w(off, v & !bits);
    }

    fn mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.dma.read(addr, &mut b).unwrap();
        b
    }

    fn phy_read(&mut self, reg: u32) -> u32 {
        self.w(MDIC, reg << 16 | 1 << 21 | MDIC_OP_READ << 26);
        let v = self.r(MDIC);
        assert_ne!(v & MDIC_READY, 0);
        assert_eq!(v & MDIC_ERROR, 0);
        v & 0xFFFF
    }

    fn phy_write(&mut self, reg: u32, data: u32) {
        self.w(MDIC, data | reg << 16 | 1 << 21 | MDIC_OP_WRITE << 26);
        assert_ne!(self.r(MDIC) & MDIC_READY, 0);
    }

    /// Transmit setup as e1000_configure_tx plus the watchdog's TCTL.EN.
    fn setup_tx(&mut self, count: u64) {
        self.tx_count = count;
        self.w(TDLEN, (count * 16) as u32);
        self.w(TDBAH, 0);
        self.w(TDBAL, TX_RING as u32);
        self.w(TDT, 0);
        self.w(TDH, 0);
        self.w(TIPG, 0x0060_200A);
        self.w(TCTL, TCTL_EN | TCTL_PSP | 0x0F << 4 | 0x40 << 12);
    }

    /// Queues descriptors at TDT and writes the new tail.
    fn tx_push(&mut self, descs: &[[u8; 16]]) {
        let mut tdt = u64::from(self.r(TDT));
        for d in descs {
            self.dma.write(TX_RING + tdt * 16, d).unwrap();
            tdt = (tdt + 1) % self.tx_count;
        }
        self.w(TDT, tdt as u32);
    }

    /// Receive setup as e1000_configure_rx/e1000_setup_rctl with buffers of `bufsize`
    /// bytes: every descriptor but one handed to the hardware.
    fn setup_rx(&mut self, count: u64, rctl_size: u32) {
        self.rx_count = count;
        for i in 0..count {
            self.dma.write_u64(RX_RING + i * 16, RX_BUFS + i * 0x4000).unwrap();
            self.dma.write_u64(RX_RING + i * 16 + 8, 0).unwrap();
        }
        self.w(RCTL, 0);
        self.w(RDLEN, (count * 16) as u32);
        self.w(RDBAH, 0);
        self.w(RDBAL, RX_RING as u32);
        self.w(RDT, 0);
        self.w(RDH, 0);
        self.w(RXCSUM, RXCSUM_TUOFLD);
        self.w(RCTL, RCTL_EN | RCTL_BAM | rctl_size);
        self.w(RDT, (count - 1) as u32);
    }

    /// Descriptor `i` of the receive ring: (buffer, length, status, errors, special).
    fn rx_desc(&self, i: u64) -> (u64, u16, u8, u8, u16) {
        let d = self.mem(RX_RING + i * 16, 16);
        let buf = u64::from_le_bytes(d[0..8].try_into().unwrap());
        (buf, u16::from_le_bytes([d[8], d[9]]), d[12], d[13], u16::from_le_bytes([d[14], d[15]]))
    }
}

fn legacy(addr: u64, len: u16, cmd: u8, cso: u8, css: u8, special: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[10] = cso;
    d[11] = cmd;
    d[13] = css;
    d[14..16].copy_from_slice(&special.to_le_bytes());
    d
}

struct Ctx {
    ipcss: u8,
    ipcso: u8,
    ipcse: u16,
    tucss: u8,
    tucso: u8,
    tucse: u16,
    paylen: u32,
    tucmd: u8,
    hdr_len: u8,
    mss: u16,
}

fn context(c: &Ctx) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0] = c.ipcss;
    d[1] = c.ipcso;
    d[2..4].copy_from_slice(&c.ipcse.to_le_bytes());
    d[4] = c.tucss;
    d[5] = c.tucso;
    d[6..8].copy_from_slice(&c.tucse.to_le_bytes());
    let lower = (c.paylen & 0xF_FFFF) | u32::from(c.tucmd | TXD_CMD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = c.hdr_len;
    d[14..16].copy_from_slice(&c.mss.to_le_bytes());
    d
}

fn data_desc(addr: u64, len: u32, dcmd: u8, popts: u8, special: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    let lower = (len & 0xF_FFFF) | 1 << 20 | u32::from(dcmd | TXD_CMD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = popts;
    d[14..16].copy_from_slice(&special.to_le_bytes());
    d
}

/// RFC 1071 the slow way: 32-bit accumulation of 16-bit words, then fold and complement.
fn naive_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < data.len() {
        let hi = u32::from(data[i]) << 8;
        let lo = if i + 1 < data.len() { u32::from(data[i + 1]) } else { 0 };
        sum += hi | lo;
        i += 2;
    }
    while sum > 0xFFFF {
        sum = (sum >> 16) + (sum & 0xFFFF);
    }
    !(sum as u16)
}

/// Zero when the L4 segment's checksum (over the IPv4 pseudo-header) is right.
fn l4_check(ip: &[u8], proto: u8) -> u16 {
    let ihl = usize::from(ip[0] & 0xF) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[ihl..total];
    let mut p = Vec::new();
    p.extend_from_slice(&ip[12..20]);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(l4);
    naive_checksum(&p)
}

/// Ones' complement sum (folded, not complemented) of a pseudo-header, as Linux seeds it.
fn pseudo_seed(proto: u8, len: u16) -> u16 {
    let mut p = Vec::new();
    p.extend_from_slice(&SRC_IP);
    p.extend_from_slice(&DST_IP);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&len.to_be_bytes());
    !naive_checksum(&p)
}

fn eth(dst: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An IPv4 packet (header checksum left 0) in an Ethernet frame to PEER.
fn ipv4_frame(proto: u8, l4: &[u8], id: u16) -> Vec<u8> {
    let mut f = eth(PEER, 0x0800);
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&SRC_IP);
    f.extend_from_slice(&DST_IP);
    f.extend_from_slice(l4);
    f
}

fn tcp_segment(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&80u16.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn udp_datagram(payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&5353u16.to_be_bytes());
    u.extend_from_slice(&53u16.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn pci_header_and_bars() {
    let mut dev = E1000::new(MAC, Arc::new(crate::net::NoBackend));
    assert_eq!(dev.config_read(0, 4), 0x100E_8086);
    assert_eq!(dev.config_read(8, 4), 0x0200_0003, "class 02/00/00, revision 3");
    assert_eq!(dev.config_read(0x2C, 4), 0x001E_8086, "subsystem");
    assert_eq!(dev.config_read(0x3D, 1), 1, "INTA");
    dev.config_write(0x10, 4, u32::MAX);
    assert_eq!(dev.config_read(0x10, 4), 0xFFFE_0000, "128 KiB 32-bit memory");
    dev.config_write(0x14, 4, u32::MAX);
    assert_eq!(dev.config_read(0x14, 4), 0xFFFF_FFC1, "64-byte I/O");
    assert_eq!(dev.config_read(0x18, 4), 0);
    assert_eq!(dev.mac(), MAC);
}

#[test]
fn eeprom_through_eerd() {
    let mut n = Nic::new();
    let mut words = Vec::new();
    for a in 0..64u32 {
        n.w(EERD, a << 8 | EERD_START);
        let v = n.r(EERD);
        assert_ne!(v & EERD_DONE, 0);
        assert_eq!((v >> 8) & 0xFF, a);
        words.push((v >> 16) as u16);
    }
    assert_eq!(words.iter().fold(0u16, |s, &w| s.wrapping_add(w)), 0xBABA);
    assert_eq!(words[0..3], [0x5452, 0x1200, 0x5634]);
    assert_eq!(words[0x0B..0x0F], [0x001E, 0x8086, 0x100E, 0x8086]);
    assert_eq!(words[0x0A] >> 14, 1, "signature");
}

const EE_SK: u32 = 1;
const EE_CS: u32 = 2;
const EE_DI: u32 = 4;
const EE_DO: u32 = 8;
const EE_REQ: u32 = 0x40;
const EE_GNT: u32 = 0x80;

/// e1000_acquire_eeprom for Microwire: request, wait for the grant, select the part.
fn mw_acquire(n: &mut Nic) -> u32 {
    let mut eecd = n.r(EECD);
    assert_ne!(eecd & 0x100, 0, "EEPROM present");
    assert_eq!(eecd & 0x200, 0, "64-word part");
    n.w(EECD, eecd | EE_REQ);
    eecd = n.r(EECD);
    assert_ne!(eecd & EE_GNT, 0);
    eecd &= !(EE_DI | EE_SK);
    n.w(EECD, eecd);
    eecd |= EE_CS;
    n.w(EECD, eecd);
    eecd
}

/// e1000_shift_out_ee_bits: MSB first, DI set up before each rising clock edge.
fn mw_out(n: &mut Nic, eecd: &mut u32, data: u32, bits: u32) {
    for b in (0..bits).rev() {
        *eecd &= !EE_DI;
        if data >> b & 1 != 0 {
            *eecd |= EE_DI;
        }
        n.w(EECD, *eecd);
        n.w(EECD, *eecd | EE_SK);
        n.w(EECD, *eecd);
    }
    *eecd &= !EE_DI;
    n.w(EECD, *eecd);
}

/// e1000_shift_in_ee_bits: raise the clock, sample DO, lower the clock.
fn mw_in(n: &mut Nic, eecd: &mut u32) -> u16 {
    let mut data = 0u16;
    *eecd = n.r(EECD) & !(EE_DO | EE_DI);
    for _ in 0..16 {
        data <<= 1;
        n.w(EECD, *eecd | EE_SK);
        *eecd = n.r(EECD) & !EE_DI;
        if *eecd & EE_DO != 0 {
            data |= 1;
        }
        *eecd &= !(EE_DO | EE_SK);
        n.w(EECD, *eecd);
    }
    data
}

/// e1000_standby_eeprom: CS low, a clock pulse, CS high.
fn mw_standby(n: &mut Nic, eecd: &mut u32) {
    *eecd &= !(EE_CS | EE_SK);
    n.w(EECD, *eecd);
    *eecd |= EE_SK;
    n.w(EECD, *eecd);
    *eecd |= EE_CS;
    n.w(EECD, *eecd);
    *eecd &= !EE_SK;
    n.w(EECD, *eecd);
}

/// e1000_release_eeprom.
fn mw_release(n: &mut Nic, mut eecd: u32) {
    eecd &= !(EE_CS | EE_DI);
    n.w(EECD, eecd);
    n.w(EECD, eecd | EE_SK);
    n.w(EECD, eecd & !(EE_SK | EE_REQ));
    assert_eq!(n.r(EECD) & EE_GNT, 0);
}

/// Linux's e1000_read_eeprom for Microwire parts: per word, READ (110b) and the address,
/// 16 bits in, standby.
fn microwire_read(n: &mut Nic, first: u32, count: u32) -> Vec<u16> {
    let mut eecd = mw_acquire(n);
    let mut out = Vec::new();
    for i in 0..count {
        mw_out(n, &mut eecd, 0b110, 3);
        mw_out(n, &mut eecd, first + i, 6);
        out.push(mw_in(n, &mut eecd));
        mw_standby(n, &mut eecd);
    }
    mw_release(n, eecd);
    out
}

#[test]
fn eeprom_through_microwire() {
    let mut n = Nic::new();
    let words = microwire_read(&mut n, 0, 64);
    assert_eq!(words[0..3], [0x5452, 0x1200, 0x5634], "MAC");
    assert_eq!(words.iter().fold(0u16, |s, &w| s.wrapping_add(w)), 0xBABA, "checksum");
    assert_eq!(microwire_read(&mut n, 0x0D, 2), [0x100E, 0x8086]);
    // EWEN (100 11xxxx) then WRITE (101, address, data): accepted, not stored, and the part
    // reports ready (DO high) after the standby, as e1000_write_eeprom_microwire polls.
    let mut eecd = mw_acquire(&mut n);
    mw_out(&mut n, &mut eecd, 0b100, 3);
    mw_out(&mut n, &mut eecd, 0b11_0000, 6);
    mw_standby(&mut n, &mut eecd);
    mw_out(&mut n, &mut eecd, 0b101, 3);
    mw_out(&mut n, &mut eecd, 0x3F, 6);
    mw_out(&mut n, &mut eecd, 0x1234, 16);
    mw_standby(&mut n, &mut eecd);
    assert_ne!(n.r(EECD) & EE_DO, 0);
    mw_release(&mut n, eecd);
    assert_eq!(microwire_read(&mut n, 0x3F, 1)[0], words[0x3F]);
}

#[test]
fn phy_through_mdic() {
    let mut n = Nic::new();
    assert_eq!(n.phy_read(2), 0x0141);
    assert_eq!(n.phy_read(3) & 0xFFF0, 0x0C20);
    let status = n.phy_read(1);
    assert_ne!(status & 0x0004, 0, "link");
    assert_ne!(status & 0x0020, 0, "autoneg complete");
    assert_eq!(n.phy_read(17) & 0xEC00, 0xAC00, "M88: 1000 Mb/s, full duplex, resolved, link");
    assert_eq!(n.phy_read(10) & 0x3000, 0x3000, "1000T receivers OK");
    // Advertisement registers are writable; reset and restart self-clear.
    n.phy_write(4, 0x0DE1);
    assert_eq!(n.phy_read(4), 0x0DE1);
    n.phy_write(9, 0x0200);
    assert_eq!(n.phy_read(9), 0x0200);
    n.phy_write(0, 0x1140 | 0x0200);
    assert_eq!(n.phy_read(0), 0x1140);
    n.phy_write(0, 0x1140 | 0x8000);
    assert_eq!(n.phy_read(0), 0x1140, "software reset self-clears");
    assert_eq!(n.phy_read(4), 0x0DE1, "and keeps the advertisement");
    // e1000_phy_hw_reset: CTRL.PHY_RST pulsed restores the power-on registers.
    let ctrl = n.r(CTRL);
    n.w(CTRL, ctrl | CTRL_PHY_RST);
    n.w(CTRL, ctrl);
    assert_eq!(n.phy_read(4), 0x01E1);
    // Only PHY address 1 answers.
    n.w(MDIC, 2 << 16 | 2 << 21 | MDIC_OP_READ << 26);
    assert_ne!(n.r(MDIC) & MDIC_ERROR, 0);
    // MDIC interrupt on completion.
    n.w(IMS, ICR_MDAC);
    n.w(MDIC, 1 << 16 | 1 << 21 | MDIC_OP_READ << 26 | MDIC_INT_EN);
    assert!(n.t.line.level());
    assert_eq!(n.r(ICR), ICR_MDAC);
    assert!(!n.t.line.level());
}

#[test]
fn link_changes_and_phy_power_down() {
    let mut n = Nic::new();
    let s = n.r(STATUS);
    assert_eq!(s & (STATUS_LU | STATUS_FD), STATUS_LU | STATUS_FD);
    assert_eq!(s & 0xC0, STATUS_SPEED_1000);
    n.r(ICR);
    n.w(IMS, ICR_LSC);
    n.dev.set_link_up(false);
    assert_eq!(n.r(STATUS) & STATUS_LU, 0);
    assert!(n.t.line.level());
    assert_eq!(n.r(ICR), ICR_LSC);
    assert_eq!(n.phy_read(1) & 4, 0);
    n.dev.set_link_up(true);
    assert_ne!(n.r(STATUS) & STATUS_LU, 0);
    assert_eq!(n.r(ICR), ICR_LSC);
    // e1000_power_down_phy / e1000_power_up_phy.
    n.phy_write(0, 0x1140 | 0x0800);
    assert_eq!(n.r(STATUS) & STATUS_LU, 0);
    n.phy_write(0, 0x1140);
    assert_ne!(n.r(STATUS) & STATUS_LU, 0);
    assert_eq!(n.r(ICR), ICR_LSC);
}

#[test]
fn interrupt_registers_and_intx() {
    let mut n = Nic::new();
    n.w(IMC, u32::MAX);
    n.w(ICS, ICR_TXDW | ICR_RXT0);
    assert!(!n.t.line.level(), "masked");
    n.w(IMS, ICR_RXT0);
    assert!(n.t.line.level());
    assert_eq!(n.r(IMS), ICR_RXT0);
    // Writing 1s to ICR clears those causes.
    n.w(ICR, ICR_RXT0);
    assert!(!n.t.line.level());
    n.w(ICS, ICR_RXT0);
    assert!(n.t.line.level());
    n.w(IMC, ICR_RXT0);
    assert!(!n.t.line.level());
    n.w(IMS, ICR_RXT0);
    assert_eq!(n.r(ICR), ICR_TXDW | ICR_RXT0, "read returns all causes");
    assert_eq!(n.r(ICR), 0, "and clears them");
    assert!(!n.t.line.level());
    // Interrupt Disable in the command register gates the pin.
    n.w(ICS, ICR_RXT0);
    n.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | 0x400));
    assert!(!n.t.line.level());
    n.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    assert!(n.t.line.level());
}

#[test]
fn partial_and_io_window_accesses() {
    let mut n = Nic::new();
    let mut b = [0u8; 1];
    n.dev.bar_read(0, u64::from(RA) + 1, &mut b);
    assert_eq!(b[0], MAC[1]);
    let mut h = [0u8; 2];
    n.dev.bar_read(0, u64::from(RA) + 4, &mut h);
    assert_eq!(h, [MAC[4], MAC[5]]);
    // A 2-byte write merges into the register.
    n.w(FCAL, 0x1122_3344);
    n.dev.bar_write(0, u64::from(FCAL) + 2, &[0xAA, 0xBB]);
    assert_eq!(n.r(FCAL), 0xBBAA_3344);
    // 8-byte access: two dwords.
    let mut q = [0u8; 8];
    n.dev.bar_read(0, u64::from(RA), &mut q);
    assert_eq!(q[..6], MAC);
    assert_ne!(q[7] & 0x80, 0, "RAH0.AV");
    // IOADDR/IODATA on BAR1.
    n.dev.bar_write(1, 0, &STATUS.to_le_bytes());
    let mut d = [0u8; 4];
    n.dev.bar_read(1, 0, &mut d);
    assert_eq!(u32::from_le_bytes(d), STATUS);
    n.dev.bar_read(1, 4, &mut d);
    assert_eq!(u32::from_le_bytes(d), n.r(STATUS));
    n.dev.bar_write(1, 0, &IMS.to_le_bytes());
    n.dev.bar_write(1, 4, &ICR_LSC.to_le_bytes());
    assert_eq!(n.r(IMS), ICR_LSC);
    // Unknown registers read 0 and ignore writes.
    n.w(0x1_F000, 0xDEAD_BEEF);
    assert_eq!(n.r(0x1_F000), 0);
    n.w(STATUS, 0);
    assert_ne!(n.r(STATUS) & STATUS_LU, 0, "STATUS is read-only");
}

#[test]
fn device_reset_keeps_mac() {
    let mut n = Nic::new();
    n.w(RA, 0x0403_0201);
    n.w(RA + 4, 0x8000_0605);
    n.w(IMS, ICR_RXT0);
    n.w(RCTL, RCTL_EN);
    n.w(MTA + 8, 0xFFFF);
    n.set(CTRL, CTRL_RST);
    assert_eq!(n.r(CTRL) & CTRL_RST, 0, "self-clearing");
    assert_eq!(n.r(RA), 0x1200_5452);
    assert_eq!(n.r(RA + 4), 0x8000_5634);
    assert_eq!(n.r(IMS), 0);
    assert_eq!(n.r(RCTL), 0);
    assert_eq!(n.r(MTA + 8), 0);
    assert_eq!(n.r(VET), 0x8100);
    assert_ne!(n.r(STATUS) & STATUS_LU, 0, "the link survives a MAC reset");
    n.w(RA, 0);
    n.dev.reset();
    assert_eq!(n.r(RA), 0x1200_5452);
    // e1000_reset_hw issues the reset through the I/O window (IOADDR = CTRL, IODATA).
    n.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    n.w(IMS, ICR_RXT0);
    n.dev.bar_write(1, 0, &CTRL.to_le_bytes());
    let ctrl = n.r(CTRL) | CTRL_RST;
    n.dev.bar_write(1, 4, &ctrl.to_le_bytes());
    assert_eq!(n.r(IMS), 0);
    assert_eq!(n.r(CTRL) & CTRL_RST, 0);
}

#[test]
fn transmit_legacy_frames() {
    let mut n = Nic::new();
    n.setup_tx(8);
    n.w(IMS, ICR_TXDW | ICR_TXQE);
    let payload = pattern(100, 1);
    let mut f = eth(PEER, 0x88B5);
    f.extend_from_slice(&payload);
    // Split over two descriptors; RS only on the last, as Linux does.
    n.dma.write(TX_BUFS, &f[..20]).unwrap();
    n.dma.write(TX_BUFS + 0x1000, &f[20..]).unwrap();
    n.tx_push(&[
        legacy(TX_BUFS, 20, TXD_CMD_IFCS, 0, 0, 0),
        legacy(TX_BUFS + 0x1000, (f.len() - 20) as u16, TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS, 0, 0, 0),
    ]);
    assert_eq!(n.sink.take(), vec![f.clone()]);
    assert_eq!(n.r(TDH), 2);
    assert_eq!(n.mem(TX_RING + 12, 1)[0] & TXD_STAT_DD, 0, "no RS, no write-back");
    assert_eq!(n.mem(TX_RING + 16 + 12, 1)[0] & TXD_STAT_DD, TXD_STAT_DD);
    assert!(n.t.line.level());
    assert_eq!(n.r(ICR), ICR_TXDW | ICR_TXQE);
    // A short frame is padded (TCTL.PSP); legacy IC inserts a checksum from CSS to the end.
    let mut s = eth(PEER, 0x88B5);
    s.extend_from_slice(&[1, 2, 3, 4, 0, 0]);
    n.dma.write(TX_BUFS, &s).unwrap();
    n.tx_push(&[legacy(TX_BUFS, s.len() as u16, TXD_CMD_EOP | TXD_CMD_IC | TXD_CMD_RS, 18, 14, 0)]);
    let out = n.sink.take();
    assert_eq!(out[0].len(), 60);
    assert_eq!(naive_checksum(&out[0][14..20]), 0);
    // VLAN insertion needs CTRL.VME and VLE.
    n.set(CTRL, CTRL_VME);
    n.dma.write(TX_BUFS, &f).unwrap();
    n.tx_push(&[legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP | TXD_CMD_VLE, 0, 0, 0x2005)]);
    let out = n.sink.take();
    assert_eq!(out[0][12..16], [0x81, 0x00, 0x20, 0x05]);
    assert_eq!(out[0][..12], f[..12]);
    assert_eq!(out[0][16..], f[12..]);
    // Statistics: read-to-clear.
    assert_eq!(n.r(STATS_BASE + ST_GPTC), 3);
    assert_eq!(n.r(STATS_BASE + ST_GPTC), 0);
    assert_eq!(n.r(STATS_BASE + ST_TPT), 3);
    let octets = (f.len() + 4) + 64 + (f.len() + 8);
    assert_eq!(n.r(STATS_BASE + ST_GOTCL), octets as u32);
    assert_eq!(n.r(STATS_BASE + ST_GOTCL), octets as u32, "the low half does not clear");
    assert_eq!(n.r(STATS_BASE + ST_GOTCL + 4), 0);
    assert_eq!(n.r(STATS_BASE + ST_GOTCL), 0, "reading the high half clears both");
}

#[test]
fn transmit_waits_for_tctl_enable_and_link() {
    let mut n = Nic::new();
    n.setup_tx(8);
    n.w(TCTL, TCTL_PSP);
    let f = eth(PEER, 0x88B5).into_iter().chain(pattern(50, 3)).collect::<Vec<_>>();
    n.dma.write(TX_BUFS, &f).unwrap();
    n.tx_push(&[legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP | TXD_CMD_RS, 0, 0, 0)]);
    assert!(n.sink.take().is_empty());
    assert_eq!(n.r(TDH), 0);
    n.w(TCTL, TCTL_EN | TCTL_PSP);
    assert_eq!(n.sink.take(), vec![f.clone()]);
    // With the cable out the frame is lost but the descriptor completes.
    n.dev.set_link_up(false);
    n.tx_push(&[legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP | TXD_CMD_RS, 0, 0, 0)]);
    assert!(n.sink.take().is_empty());
    assert_eq!(n.r(TDH), 2);
    assert_ne!(n.mem(TX_RING + 16 + 12, 1)[0] & TXD_STAT_DD, 0);
}

#[test]
fn transmit_tcp_checksum_offload() {
    let mut n = Nic::new();
    n.setup_tx(16);
    let payload = pattern(333, 7);
    let mut seg = tcp_segment(0x1234_5678, 0x18, &payload);
    let seed = pseudo_seed(6, seg.len() as u16);
    seg[16..18].copy_from_slice(&seed.to_be_bytes());
    let mut f = ipv4_frame(6, &seg, 0x4242);
    // The stack computed the IP header checksum itself.
    let ipsum = naive_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ipsum.to_be_bytes());
    n.dma.write(TX_BUFS, &f).unwrap();
    // e1000_tx_csum: context with TUCSS/TUCSO only; data descriptor with TXSM.
    let ctx = Ctx {
        ipcss: 0,
        ipcso: 0,
        ipcse: 0,
        tucss: 34,
        tucso: 34 + 16,
        tucse: 0,
        paylen: 0,
        tucmd: TXD_CMD_TCP,
        hdr_len: 0,
        mss: 0,
    };
    n.tx_push(&[
        context(&ctx),
        data_desc(TX_BUFS, 54, TXD_CMD_IFCS, TXD_POPTS_TXSM, 0),
        data_desc(
            TX_BUFS + 54,
            (f.len() - 54) as u32,
            TXD_CMD_IFCS | TXD_CMD_EOP | TXD_CMD_RS,
            TXD_POPTS_TXSM,
            0,
        ),
    ]);
    let out = n.sink.take();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(o.len(), f.len());
    assert_eq!(naive_checksum(&o[14..34]), 0, "IP header untouched and valid");
    assert_eq!(l4_check(&o[14..], 6), 0, "TCP checksum");
    assert_eq!(o[54..], payload[..]);
    assert_ne!(n.mem(TX_RING + 2 * 16 + 12, 1)[0] & TXD_STAT_DD, 0);
}

#[test]
fn transmit_udp_and_ip_checksum_offload() {
    let mut n = Nic::new();
    n.setup_tx(16);
    let payload = pattern(99, 9);
    let mut dgram = udp_datagram(&payload);
    let seed = pseudo_seed(17, dgram.len() as u16);
    dgram[6..8].copy_from_slice(&seed.to_be_bytes());
    let f = ipv4_frame(17, &dgram, 7);
    n.dma.write(TX_BUFS, &f).unwrap();
    // IP checksum through IXSM too (IPCSE inclusive end of the IP header).
    let ctx = Ctx {
        ipcss: 14,
        ipcso: 24,
        ipcse: 33,
        tucss: 34,
        tucso: 40,
        tucse: 0,
        paylen: 0,
        tucmd: TXD_CMD_IP,
        hdr_len: 0,
        mss: 0,
    };
    n.tx_push(&[
        context(&ctx),
        data_desc(TX_BUFS, f.len() as u32, TXD_CMD_EOP | TXD_CMD_RS, TXD_POPTS_TXSM | TXD_POPTS_IXSM, 0),
    ]);
    let out = n.sink.take();
    assert_eq!(out.len(), 1);
    assert_eq!(naive_checksum(&out[0][14..34]), 0, "IP checksum");
    assert_ne!(out[0][24..26], [0, 0]);
    assert_eq!(l4_check(&out[0][14..], 17), 0, "UDP checksum");
}

/// A 20 000-byte TCP payload with MSS 1448, queued the way e1000_tso/e1000_tx_map queue it:
/// a context descriptor, the header plus data in descriptors of at most 4 KiB, and the
/// 4-byte sentinel descriptor at the end.
#[test]
fn transmit_tso() {
    let mut n = Nic::new();
    n.setup_tx(64);
    n.w(IMS, ICR_TXDW);
    const MSS: usize = 1448;
    let payload = pattern(20_000, 11);
    // FIN|PSH|ACK, and a sequence number that wraps.
    let mut seg = tcp_segment(0xFFFF_F000, 0x19, &payload);
    // e1000_tso: tot_len = 0, IP check = 0, TCP check = pseudo-header without length.
    seg[16..18].copy_from_slice(&pseudo_seed(6, 0).to_be_bytes());
    let mut f = ipv4_frame(6, &seg, 0xFFFE);
    f[16..18].copy_from_slice(&[0, 0]);
    n.dma.write(TX_BUFS, &f).unwrap();
    let hdr = 54;
    let ctx = Ctx {
        ipcss: 14,
        ipcso: 24,
        ipcse: 33,
        tucss: 34,
        tucso: 50,
        tucse: 0,
        paylen: payload.len() as u32,
        tucmd: TXD_CMD_IP | TXD_CMD_TCP | TXD_CMD_TSE,
        hdr_len: hdr as u8,
        mss: MSS as u16,
    };
    let dcmd = TXD_CMD_TSE | TXD_CMD_IFCS;
    let popts = TXD_POPTS_TXSM | TXD_POPTS_IXSM;
    let mut descs = vec![context(&ctx)];
    let body = f.len() - 4;
    let mut off = 0;
    while off < body {
        let len = (body - off).min(4096);
        descs.push(data_desc(TX_BUFS + off as u64, len as u32, dcmd, popts, 0));
        off += len;
    }
    descs.push(data_desc(TX_BUFS + body as u64, 4, dcmd | TXD_CMD_EOP | TXD_CMD_RS, popts, 0));
    n.tx_push(&descs);
    let out = n.sink.take();
    let count = payload.len().div_ceil(MSS);
    assert_eq!(out.len(), count);
    for (i, o) in out.iter().enumerate() {
        let last = i + 1 == count;
        let len = if last { payload.len() - i * MSS } else { MSS };
        assert_eq!(o.len(), hdr + len, "segment {i}");
        assert_eq!(o[..14], f[..14]);
        let ip = &o[14..];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, 40 + len, "IP total length");
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0xFFFEu16.wrapping_add(i as u16), "IP id");
        assert_eq!(naive_checksum(&ip[..20]), 0, "IP checksum of {i}");
        let seq = u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]);
        assert_eq!(seq, 0xFFFF_F000u32.wrapping_add((i * MSS) as u32));
        let flags = ip[33];
        assert_eq!(flags, if last { 0x19 } else { 0x10 }, "FIN/PSH only on the last");
        assert_eq!(l4_check(ip, 6), 0, "TCP checksum of {i}");
        assert_eq!(o[hdr..], payload[i * MSS..i * MSS + len]);
    }
    assert_eq!(n.r(STATS_BASE + ST_TSCTC), 1);
    assert_eq!(n.r(STATS_BASE + ST_GPTC), count as u32);
    let last = descs.len() as u64 - 1;
    assert_ne!(n.mem(TX_RING + last * 16 + 12, 1)[0] & TXD_STAT_DD, 0);
    assert_eq!(n.r(ICR) & ICR_TXDW, ICR_TXDW);
}

#[test]
fn transmit_tso_bad_contexts_are_dropped() {
    let mut n = Nic::new();
    n.setup_tx(16);
    let f = ipv4_frame(6, &tcp_segment(1, 0x10, &pattern(3000, 1)), 1);
    n.dma.write(TX_BUFS, &f).unwrap();
    let dcmd = TXD_CMD_TSE | TXD_CMD_EOP | TXD_CMD_RS;
    let popts = TXD_POPTS_TXSM | TXD_POPTS_IXSM;
    for (hdr_len, mss) in [(54u8, 0u16), (0, 1000), (255, 1000), (54, 0xFFFF)] {
        let ctx = Ctx {
            ipcss: 14,
            ipcso: 24,
            ipcse: 33,
            tucss: 34,
            tucso: 50,
            tucse: 0,
            paylen: 3000,
            tucmd: TXD_CMD_IP | TXD_CMD_TCP | TXD_CMD_TSE,
            hdr_len,
            mss,
        };
        let len = if hdr_len == 255 { 100 } else { f.len() as u32 };
        n.tx_push(&[context(&ctx), data_desc(TX_BUFS, len, dcmd, popts, 0)]);
    }
    assert!(n.sink.take().is_empty());
    assert_eq!(n.r(STATS_BASE + ST_TSCTFC), 4);
    // Offsets past the header are ignored rather than trusted.
    let ctx = Ctx {
        ipcss: 250,
        ipcso: 251,
        ipcse: 0,
        tucss: 252,
        tucso: 253,
        tucse: 0,
        paylen: 0,
        tucmd: TXD_CMD_IP | TXD_CMD_TCP,
        hdr_len: 54,
        mss: 100,
    };
    n.tx_push(&[context(&ctx), data_desc(TX_BUFS, f.len() as u32, dcmd, popts, 0)]);
    assert_eq!(n.sink.take().len(), 3000usize.div_ceil(100));
}

/// Receives `frame` and checks it was consumed.
fn rx_ok(n: &mut Nic, frame: &[u8]) {
    assert!(n.dev.receive(frame));
}

#[test]
fn receive_into_ring_with_fcs_and_checksums() {
    let mut n = Nic::new();
    n.setup_rx(8, 0); // 2048-byte buffers, SECRC clear: Linux's configuration.
    n.w(IMS, ICR_RXT0 | ICR_RXDMT0 | ICR_LSC);
    let mut f = ipv4_frame(6, &tcp_segment(5, 0x18, &pattern(200, 5)), 3);
    f[0..6].copy_from_slice(&MAC);
    let ipsum = naive_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ipsum.to_be_bytes());
    // With the field zero, the checksum is the complement of the sum.
    let tcpsum = l4_check(&f[14..], 6);
    f[50..52].copy_from_slice(&tcpsum.to_be_bytes());
    assert_eq!(l4_check(&f[14..], 6), 0);
    rx_ok(&mut n, &f);
    let (buf, len, status, errors, _) = n.rx_desc(0);
    assert_eq!(len as usize, f.len() + 4, "FCS included");
    assert_eq!(status & (RXD_STAT_DD | RXD_STAT_EOP), RXD_STAT_DD | RXD_STAT_EOP);
    assert_eq!(status & (RXD_STAT_TCPCS | RXD_STAT_IXSM), RXD_STAT_TCPCS);
    assert_eq!(errors, 0);
    let stored = n.mem(buf, len as usize);
    assert_eq!(stored[..f.len()], f[..]);
    let fcs = u32::from_le_bytes(stored[f.len()..].try_into().unwrap());
    assert_eq!(fcs, csum::crc32(&f));
    assert_eq!(n.r(RDH), 1);
    assert!(n.t.line.level());
    assert_eq!(n.r(ICR), ICR_RXT0);
    // A corrupted TCP checksum is reported, not dropped (the stack re-checks it).
    f[60] ^= 0xFF;
    rx_ok(&mut n, &f);
    let (_, _, status, errors, _) = n.rx_desc(1);
    assert_ne!(status & RXD_STAT_TCPCS, 0);
    assert_eq!(errors, RXD_ERR_TCPE);
    // Non-IP frames: nothing checked. SECRC: no FCS. Short frames: padded to 60.
    n.set(RCTL, RCTL_SECRC);
    let mut arp = eth([0xFF; 6], 0x0806);
    arp.extend_from_slice(&[0x11; 28]);
    rx_ok(&mut n, &arp);
    let (buf, len, status, _, _) = n.rx_desc(2);
    assert_eq!(len, 60);
    assert_ne!(status & RXD_STAT_IXSM, 0);
    let stored = n.mem(buf, 60);
    assert_eq!(stored[..42], arp[..]);
    assert_eq!(stored[42..], [0; 18]);
    assert_eq!(n.r(STATS_BASE + ST_GPRC), 3);
    assert_eq!(n.r(STATS_BASE + ST_BPRC), 1);
    assert_eq!(n.r(STATS_BASE + ST_GPRC), 0, "read-to-clear");
    assert_eq!(n.r(STATS_BASE + ST_TPR), 3);
    let octets = 2 * (f.len() + 4) + 64;
    assert_eq!(n.r(STATS_BASE + ST_GORCL), octets as u32);
    assert_eq!(n.r(STATS_BASE + ST_GORCL + 4), 0);
}

#[test]
fn receive_spans_small_buffers() {
    let mut n = Nic::new();
    n.setup_rx(8, 3 << RCTL_BSIZE_SHIFT); // 256-byte buffers
    let mut f = eth(MAC, 0x88B5);
    f.extend_from_slice(&pattern(586, 2));
    rx_ok(&mut n, &f); // 600 + 4 FCS = 256 + 256 + 92
    let lens: Vec<_> = (0..3).map(|i| n.rx_desc(i)).collect();
    assert_eq!(lens.iter().map(|d| d.1).collect::<Vec<_>>(), [256, 256, 92]);
    assert_eq!(lens.iter().map(|d| d.2 & (RXD_STAT_DD | RXD_STAT_EOP)).collect::<Vec<_>>(), [1, 1, 3]);
    let mut joined = Vec::new();
    for d in &lens {
        joined.extend(n.mem(d.0, usize::from(d.1)));
    }
    assert_eq!(joined[..600], f[..]);
    assert_eq!(joined[600..], csum::crc32(&f).to_le_bytes());
    assert_eq!(n.r(RDH), 3);
    // BSEX: 4096-byte buffers; with LPE a long frame fits one buffer.
    n.w(RCTL, RCTL_EN | RCTL_BSEX | 3 << RCTL_BSIZE_SHIFT | RCTL_LPE | RCTL_SECRC);
    let mut long = eth(MAC, 0x88B5);
    long.extend_from_slice(&pattern(4000, 4));
    rx_ok(&mut n, &long);
    assert_eq!(n.rx_desc(3).1 as usize, long.len());
    // Without LPE it is too long: consumed and counted, not stored.
    n.w(RCTL, RCTL_EN | RCTL_BSEX | 3 << RCTL_BSIZE_SHIFT);
    rx_ok(&mut n, &long);
    assert_eq!(n.r(RDH), 4);
    assert_eq!(n.r(STATS_BASE + ST_ROC), 1);
}

#[test]
fn receive_ring_full_and_interrupts() {
    let mut n = Nic::new();
    n.setup_rx(8, 0); // 7 descriptors usable; RXDMT0 at 8/2 = 4 free.
    n.w(IMS, ICR_RXT0 | ICR_RXDMT0 | ICR_RXO);
    let mut f = eth(MAC, 0x88B5);
    f.extend_from_slice(&pattern(100, 6));
    for i in 0..7 {
        rx_ok(&mut n, &f);
        let icr = n.r(ICR);
        assert_ne!(icr & ICR_RXT0, 0);
        // Free descriptors go 6, 5, 4 (threshold crossed), 3, ...
        assert_eq!(icr & ICR_RXDMT0 != 0, i == 2, "RXDMT0 after frame {i}");
    }
    assert!(!n.t.line.level());
    let spaces = n.sink.rx_space.load(Ordering::SeqCst);
    assert!(!n.dev.receive(&f), "ring full: the backend keeps the frame");
    assert_eq!(n.r(ICR), ICR_RXO);
    assert_eq!(n.r(STATS_BASE + ST_RNBC), 1);
    assert_eq!(n.r(STATS_BASE + ST_TPR), 7, "a refused frame is counted when it is taken");
    // The driver cleans one descriptor and returns it.
    n.w(RDT, 0);
    assert_eq!(n.sink.rx_space.load(Ordering::SeqCst), spaces + 1);
    rx_ok(&mut n, &f);
    assert!(n.t.line.level());
    assert_eq!(n.r(RDH), 0);
    assert!(!n.dev.receive(&f));
    // A frame needing more descriptors than the ring has is dropped, not refused forever.
    n.set(RCTL, 3 << RCTL_BSIZE_SHIFT | RCTL_LPE);
    n.w(RDT, 7);
    let mut big = eth(MAC, 0x88B5);
    big.extend_from_slice(&pattern(3000, 1));
    assert!(n.dev.receive(&big));
    assert_eq!(n.r(STATS_BASE + ST_MPC), 1);
    // Receiver disabled: frames are consumed and dropped.
    n.w(RCTL, 0);
    assert!(n.dev.receive(&f));
}

#[test]
fn receive_address_filters() {
    let mut n = Nic::new();
    n.setup_rx(32, 0);
    let frame = |dst: [u8; 6]| {
        let mut f = eth(dst, 0x88B5);
        f[6..12].copy_from_slice(&PEER);
        f.extend_from_slice(&pattern(50, 8));
        f
    };
    let stored = |n: &mut Nic| n.r(RDH);
    rx_ok(&mut n, &frame(MAC));
    assert_eq!(stored(&mut n), 1);
    rx_ok(&mut n, &frame(PEER));
    assert_eq!(stored(&mut n), 1, "other unicast filtered");
    rx_ok(&mut n, &frame([0xFF; 6]));
    assert_eq!(stored(&mut n), 2, "broadcast with BAM");
    n.clear(RCTL, RCTL_BAM);
    rx_ok(&mut n, &frame([0xFF; 6]));
    assert_eq!(stored(&mut n), 2, "broadcast without BAM");
    // Multicast through the table, MO = 0: hash = addr bits 47:36.
    let mc = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
    rx_ok(&mut n, &frame(mc));
    assert_eq!(stored(&mut n), 2);
    let hash = (u32::from(mc[4]) >> 4 | u32::from(mc[5]) << 4) & 0xFFF;
    n.w(MTA + 4 * (hash >> 5), 1 << (hash & 31));
    rx_ok(&mut n, &frame(mc));
    assert_eq!(stored(&mut n), 3);
    assert_ne!(n.rx_desc(2).2 & RXD_STAT_PIF, 0, "passed the inexact filter");
    // MO = 3 hashes other bits: the same table entry no longer matches.
    n.set(RCTL, 3 << RCTL_MO_SHIFT);
    rx_ok(&mut n, &frame(mc));
    assert_eq!(stored(&mut n), 3);
    // Another exact address in RA[5].
    n.w(RA + 5 * 8, u32::from_le_bytes([PEER[0], PEER[1], PEER[2], PEER[3]]));
    n.w(RA + 5 * 8 + 4, u32::from(u16::from_le_bytes([PEER[4], PEER[5]])) | RAH_AV);
    rx_ok(&mut n, &frame(PEER));
    assert_eq!(stored(&mut n), 4);
    // Promiscuous modes.
    let other = [0x02, 1, 2, 3, 4, 5];
    n.set(RCTL, RCTL_UPE);
    rx_ok(&mut n, &frame(other));
    assert_eq!(stored(&mut n), 5);
    n.set(RCTL, RCTL_MPE);
    rx_ok(&mut n, &frame([0x33, 0x33, 0, 0, 0, 1]));
    assert_eq!(stored(&mut n), 6);
    assert_eq!(n.r(STATS_BASE + ST_MPRC), 2);
    assert_eq!(n.r(STATS_BASE + ST_TPR), 10);
    assert_eq!(n.r(STATS_BASE + ST_GPRC), 6);
}

#[test]
fn receive_vlan_filter_and_strip() {
    let mut n = Nic::new();
    n.setup_rx(8, 0);
    let mut f = eth(MAC, 0x8100);
    f.extend_from_slice(&[0x20, 0x05, 0x88, 0xB5]);
    f.extend_from_slice(&pattern(80, 3));
    n.set(RCTL, RCTL_VFE | RCTL_SECRC);
    rx_ok(&mut n, &f);
    assert_eq!(n.r(RDH), 0, "VLAN 5 not in the VFTA");
    n.w(VFTA, 1 << 5);
    n.set(CTRL, CTRL_VME);
    rx_ok(&mut n, &f);
    let (buf, len, status, _, special) = n.rx_desc(0);
    assert_ne!(status & RXD_STAT_VP, 0);
    assert_eq!(special, 0x2005);
    assert_eq!(len as usize, f.len() - 4);
    let stored = n.mem(buf, usize::from(len));
    assert_eq!(stored[..12], f[..12]);
    assert_eq!(stored[12..], f[16..]);
}

#[test]
fn crc32_is_the_ethernet_crc() {
    assert_eq!(csum::crc32(b"123456789"), 0xCBF4_3926);
}

/// xorshift64*: a fixed-seed generator for the abuse test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn bad_rings_and_buffers_do_not_hurt() {
    let mut n = Nic::new();
    n.setup_tx(8);
    // Buffer outside RAM: nothing sent, descriptor completes.
    n.tx_push(&[legacy(0xFFFF_FFFF_0000, 100, TXD_CMD_EOP | TXD_CMD_RS, 0, 0, 0)]);
    assert!(n.sink.take().is_empty());
    assert_ne!(n.mem(TX_RING + 12, 1)[0] & TXD_STAT_DD, 0);
    // Zero lengths and null addresses.
    n.tx_push(&[legacy(0, 100, TXD_CMD_EOP, 0, 0, 0), legacy(TX_BUFS, 0, TXD_CMD_EOP, 0, 0, 0)]);
    assert!(n.sink.take().is_empty());
    // A ring outside RAM, an empty ring, a huge ring, a tail past the end.
    n.w(TDBAL, 0xFFFF_0000);
    n.w(TDBAH, 0xFFFF);
    n.w(TDT, 5);
    n.w(TDLEN, 0);
    n.w(TDT, 1);
    n.w(TDLEN, 0xF_FF80);
    n.w(TDH, 0);
    n.w(TDT, 0xFFFF);
    n.w(TDT, 0xFFE);
    assert_eq!(n.r(TDH), 0xFFE, "ran through unreadable descriptors");
    // A packet that never ends grows no further than the cap.
    n.w(TDBAL, TX_RING as u32);
    n.w(TDBAH, 0);
    n.w(TDLEN, 256 * 16);
    n.w(TDH, 0);
    n.w(TDT, 0);
    n.tx_count = 256;
    // End the packet the unreadable descriptors spoiled.
    n.tx_push(&[legacy(TX_BUFS, 0, TXD_CMD_EOP, 0, 0, 0)]);
    let d = legacy(TX_BUFS, 0xFFFF, 0, 0, 0, 0);
    n.tx_push(&vec![d; 255]);
    n.tx_push(&[legacy(TX_BUFS, 10, TXD_CMD_EOP, 0, 0, 0)]);
    assert!(n.sink.take().is_empty(), "an overlong packet is dropped");
    // Receive with a ring outside RAM: completes with errors nowhere, no panic.
    n.setup_rx(8, 0);
    n.w(RDBAL, 0xFFFF_F000);
    n.w(RDBAH, 0xFFFF_FFFF);
    let mut f = eth(MAC, 0x88B5);
    f.extend_from_slice(&[1; 100]);
    assert!(n.dev.receive(&f));
    // Buffers outside RAM: RXE on the descriptor.
    n.setup_rx(8, 0);
    n.dma.write_u64(RX_RING + 16, 0xFFFF_FFFF_FFFF_F000).unwrap();
    assert!(n.dev.receive(&f));
    assert!(n.dev.receive(&f));
    assert_eq!(n.rx_desc(0).3, 0);
    assert_eq!(n.rx_desc(1).3, RXD_ERR_RXE);
    // Head past the ring: refused (the backend waits) rather than trusted.
    n.w(RDH, 200);
    assert!(!n.dev.receive(&f));
    assert!(n.dev.receive(&[0; 5]), "a runt is consumed");
}

#[test]
fn random_operations_never_panic() {
    for seed in [0x9E37_79B9_7F4A_7C15, 0xD1B5_4A32_D192_ED03, 42] {
        random_run(seed);
    }
}

/// A few thousand random register writes, BAR accesses of any width, garbage descriptors,
/// ring moves, link flaps and random frames; then the device must still work.
fn random_run(seed: u64) {
    let mut n = Nic::new();
    let mut rng = Rng(seed);
    let (mut sent, mut stored) = (0, 0);
    n.setup_tx(32);
    n.setup_rx(32, 0);
    let interesting = [
        CTRL,
        STATUS,
        EECD,
        EERD,
        MDIC,
        ICR,
        ICS,
        IMS,
        IMC,
        RCTL,
        TCTL,
        RDBAL,
        RDBAH,
        RDLEN,
        RDH,
        RDT,
        TDBAL,
        TDBAH,
        TDLEN,
        TDH,
        TDT,
        RXCSUM,
        VET,
        RSRPD,
        MTA,
        RA,
        RA + 4,
        VFTA,
        STATS_BASE + ST_GORCL + 4,
    ];
    for step in 0..20_000 {
        match rng.below(10) {
            0 | 1 => {
                let off = interesting[rng.below(interesting.len() as u64) as usize];
                let mut v = rng.next() as u32;
                if off == CTRL && step % 7 != 0 {
                    v &= !CTRL_RST;
                }
                n.w(off, v);
            }
            2 => {
                // Any offset, any width, either BAR.
                let bar = rng.below(3) as usize;
                let width = [1, 2, 4, 8][rng.below(4) as usize];
                let off = rng.below(0x2_0000 - 8);
                let mut b = vec![0u8; width];
                if rng.below(2) == 0 {
                    n.dev.bar_read(bar, off, &mut b);
                } else {
                    b.iter_mut().for_each(|x| *x = rng.next() as u8);
                    n.dev.bar_write(bar, off, &b);
                }
            }
            3 | 4 => {
                // Garbage descriptors, sometimes with plausible buffer addresses.
                let ring = if rng.below(2) == 0 { TX_RING } else { RX_RING };
                let mut d = [0u8; 16];
                d.iter_mut().for_each(|x| *x = rng.next() as u8);
                if rng.below(2) == 0 {
                    d[0..8].copy_from_slice(&(TX_BUFS + rng.below(0x1000)).to_le_bytes());
                }
                let _ = n.dma.write(ring + rng.below(32) * 16, &d);
            }
            5 => {
                // A plausible ring, to let traffic through again.
                n.w(TDBAL, TX_RING as u32);
                n.w(TDBAH, 0);
                n.w(TDLEN, 32 * 16);
                n.w(TCTL, TCTL_EN | TCTL_PSP);
                n.w(TDT, rng.below(40) as u32);
                n.w(RDBAL, RX_RING as u32);
                n.w(RDBAH, 0);
                n.w(RDLEN, 32 * 16);
                n.w(RCTL, rng.next() as u32 | RCTL_EN);
                n.w(RDT, rng.below(40) as u32);
            }
            6 => n.dev.set_link_up(rng.below(4) != 0),
            7 => {
                let _ = n.dma.write(TX_BUFS + rng.below(0x1000), &(rng.next()).to_le_bytes());
            }
            _ => {
                let len = rng.below(2000) as usize;
                let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 6 && rng.below(2) == 0 {
                    f[..6].copy_from_slice(&MAC);
                }
                if len >= 14 && rng.below(3) == 0 {
                    f[12..14].copy_from_slice(&[0x08, 0x00]);
                    if len > 14 {
                        f[14] = 0x45;
                    }
                }
                let rdh = n.r(RDH);
                n.dev.receive(&f);
                stored += usize::from(n.r(RDH) != rdh);
            }
        }
        // Frames of garbage TSO contexts can be many: do not keep them.
        sent += n.sink.take().len();
        if step % 2000 == 0 {
            n.dev.reset();
            let cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER;
            n.dev.config_write(PCI_COMMAND as u8, 2, u32::from(cmd));
        }
    }
    assert!(sent > 0 && stored > 0, "traffic got through: {sent} sent, {stored} stored");
    // Still a working device afterwards (with the cable back in).
    n.dev.reset();
    n.dev.set_link_up(true);
    n.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    n.sink.take();
    n.setup_tx(8);
    let mut f = eth(PEER, 0x88B5);
    f.extend_from_slice(&pattern(64, 0));
    n.dma.write(TX_BUFS, &f).unwrap();
    n.tx_push(&[legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP, 0, 0, 0)]);
    assert_eq!(n.sink.take(), vec![f]);
}

#[test]
#[ignore]
fn random_stress_many_seeds() {
    for seed in 1..200u64 {
        random_run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
}

// ---- save and restore ----

/// A fresh NIC loaded with `a`'s state, and guest RAM copied as the machine restores it.
fn restored(a: &Nic) -> Nic {
    use ferrite_persist::{load, save};
    let mut b = Nic::new();
    let ram = a.mem(0, RAM as usize);
    b.dma.write(0, &ram).unwrap();
    load(&mut b.dev, &save(&a.dev, "00:03.0")).unwrap();
    b.tx_count = a.tx_count;
    b.rx_count = a.rx_count;
    b
}

#[test]
fn a_restored_nic_finishes_a_half_sent_packet_and_receives_like_the_original() {
    let mut a = Nic::new();
    a.setup_tx(8);
    a.setup_rx(4, 0);
    a.w(IMS, ICR_TXDW | ICR_RXT0 | ICR_LSC);
    a.w(ICS, ICR_LSC); // an interrupt pending across the save
    a.phy_write(4, 0x01e1);
    let mut f = eth(PEER, 0x88B5);
    f.extend_from_slice(&pattern(100, 1));
    a.dma.write(TX_BUFS, &f[..20]).unwrap();
    a.dma.write(TX_BUFS + 0x1000, &f[20..]).unwrap();
    a.tx_push(&[legacy(TX_BUFS, 20, TXD_CMD_IFCS, 0, 0, 0)]); // first half: no EOP yet
    assert!(a.t.line.level());

    let mut b = restored(&a);
    assert!(b.t.line.level(), "INTx is re-driven");
    for n in [&mut a, &mut b] {
        n.tx_push(&[legacy(TX_BUFS + 0x1000, (f.len() - 20) as u16, TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS, 0, 0, 0)]);
        assert_eq!(n.sink.take(), vec![f.clone()]);
        rx_ok(n, &f);
    }
    assert_eq!(b.rx_desc(0), a.rx_desc(0));
    assert_eq!(b.mem(RX_BUFS, f.len()), a.mem(RX_BUFS, f.len()));
    for reg in [TDH, TDT, RDH, RDT, STATUS, ICR, STATS_BASE + ST_GPTC, STATS_BASE + ST_GPRC] {
        assert_eq!(a.r(reg), b.r(reg), "register {reg:#x}");
        assert_eq!(a.t.line.level(), b.t.line.level());
    }
    assert_eq!(a.phy_read(4), b.phy_read(4));
}

#[test]
fn a_state_for_another_mac_or_with_corrupt_fields_is_refused() {
    use ferrite_persist::{Persist, RestoreError};
    let a = Nic::new();
    let mut other = E1000::new([0x52, 0x54, 0, 0, 0, 1], Arc::new(Recorder::default()));
    let e = other.restore(a.dev.save()).unwrap_err();
    assert!(matches!(e, RestoreError::Invalid { field: "mac", .. }) && e.to_string().contains("52:54:00:12:34:56"), "{e}");
    let mut b = Nic::new();
    let fresh = b.dev.save();
    let mut s = a.dev.save();
    s.registers.push((MMIO_SIZE as u32, 1));
    assert!(b.dev.restore(s).is_err());
    let mut s = a.dev.save();
    s.eeprom.wire = EepromWire::Read { word: 64, bit: 3 };
    assert!(b.dev.restore(s).is_err());
    let mut s = a.dev.save();
    s.tx.packet = vec![0; 0x2_0000];
    assert!(b.dev.restore(s).is_err());
    assert_eq!(b.dev.save(), fresh);
}
