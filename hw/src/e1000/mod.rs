//! The Intel 82540EM Gigabit Ethernet controller (QEMU's `e1000`, the "PRO/1000 MT Desktop"),
//! following the PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's Manual
//! (8254x SDM) closely enough for Linux's stock `e1000` driver and other 8254x drivers.
//!
//! # PCI
//! Vendor 8086, device 100E, subsystem 8086:001E, class 02/00/00, revision 3, INTx pin A, no
//! capabilities. BAR0: 128 KiB 32-bit non-prefetchable memory, the register file. BAR1: 64
//! bytes of I/O, the IOADDR/IODATA window onto the same registers (SDM 13.2.1; Linux finds
//! it by type). Registers are 32 bits wide; 1- and 2-byte accesses reach the bytes of the
//! containing dword (a read has the whole register's side effects, a write merges into the
//! current value), 8-byte accesses are two dword accesses.
//!
//! # Model
//! * Transmit (`tx.rs`): the ring runs when TDT or TCTL is written with TCTL.EN set and bus
//!   mastering on: legacy descriptors (with IC checksum insertion), context and data
//!   descriptors (IP and TCP/UDP checksum insertion, TCP segmentation), VLAN insertion.
//!   Frames go to the [`FrameSink`] as they are completed.
//! * Receive (`rx.rs`): [`E1000::receive`] runs the address and VLAN filters, strips VLAN tags
//!   (CTRL.VME), computes the IPv4 header and TCP/UDP checksums for RXCSUM (the host does it
//!   much faster than an emulated guest would), appends an FCS unless RCTL.SECRC (Linux's
//!   driver always removes 4 bytes) and spreads the frame over as many buffers as it needs.
//! * Interrupts: INTx is asserted while ICR & IMS is non-zero. Delay timers (RDTR, RADV,
//!   TIDV, TADV) count as expired at once and ITR does not throttle: there is no clock in a
//!   register model, and an interrupt per completed batch is what a driver copes with anyway.
//! * EEPROM (`eeprom.rs`), Microwire and EERD; PHY (`phy.rs`), M88E1011 through MDIC.
//! * Statistics: the counters Linux reads are kept (0x4000-0x40FF, read-to-clear, 64-bit
//!   pairs cleared by reading the high half, saturating).
//! * Every guest value is checked: bad rings, lengths and offsets are dropped or ignored, DMA
//!   outside RAM completes descriptors with errors instead of panicking, and the work per
//!   register write is bounded by the ring size.
//!
//! # Threads
//! The machine keeps the device in an `Arc<Mutex<E1000>>`: vCPUs call `bar_read`/`bar_write`,
//! the backend thread calls `receive`. `FrameSink::send` and `rx_space` run with that lock
//! held, so the sink must never call back into the device synchronously.

mod eeprom;
mod phy;
pub mod regs;
mod rx;
mod tx;
mod state;
pub use eeprom::Wire as EepromWire;
pub use state::*;

#[cfg(test)]
mod tests;

use crate::net::{csum, FrameSink};
use crate::pci::{BarKind, BarRegion, ConfigSpace, PciDevice, PciLink};
use eeprom::Eeprom;
use phy::Phy;
use regs::*;
use std::sync::Arc;

/// PCI vendor ID (Intel).
pub const E1000_VENDOR_ID: u16 = 0x8086;
/// PCI device ID of the 82540EM.
pub const E1000_DEVICE_ID: u16 = 0x100E;
/// Subsystem ID of the PRO/1000 MT Desktop adapter (subsystem vendor 8086).
pub const E1000_SUBSYSTEM_ID: u16 = 0x001E;
/// Class code: network controller, Ethernet.
pub const E1000_CLASS: u32 = 0x02_00_00;
/// Revision ID.
pub const E1000_REVISION: u8 = 0x03;

/// Register file size in dwords.
const REG_WORDS: usize = (MMIO_SIZE / 4) as usize;
/// Statistics registers, in dwords.
const STATS_WORDS: usize = ((STATS_END - STATS_BASE) / 4) as usize;
/// Low halves of the 64-bit counters.
const STATS_64: [u32; 4] = [ST_GORCL, ST_GOTCL, ST_TORL, ST_TOTL];

/// The 82540EM.
pub struct E1000 {
    cfg: ConfigSpace,
    link: Option<PciLink>,
    sink: Arc<dyn FrameSink>,
    mac: [u8; 6],
    /// Plain register storage by dword index; registers with behaviour keep their value here
    /// too where that is what reads return.
    regs: Box<[u32]>,
    stats: [u32; STATS_WORDS],
    eeprom: Eeprom,
    phy: Phy,
    tx: tx::TxState,
    /// Cable connected, as the backend or management says.
    cable: bool,
    /// IOADDR of the I/O window.
    io_addr: u32,
}

impl E1000 {
    /// A card with permanent address `mac` whose transmitted frames go to `sink`; the cable
    /// starts connected.
    pub fn new(mac: [u8; 6], sink: Arc<dyn FrameSink>) -> Self {
        let mut cfg = ConfigSpace::new(E1000_VENDOR_ID, E1000_DEVICE_ID, E1000_CLASS, E1000_REVISION);
        cfg.set_subsystem(E1000_VENDOR_ID, E1000_SUBSYSTEM_ID);
        cfg.set_interrupt_pin(1);
        cfg.add_bar(0, BarKind::Mem32 { prefetchable: false }, MMIO_SIZE)
            .expect("a 128 KiB memory BAR is valid");
        cfg.add_bar(1, BarKind::Io, IO_SIZE).expect("a 64-byte I/O BAR is valid");
        cfg.freeze_reset_state();
        let mut dev = E1000 {
            cfg,
            link: None,
            sink,
            mac,
            regs: vec![0; REG_WORDS].into_boxed_slice(),
            stats: [0; STATS_WORDS],
            eeprom: Eeprom::new(mac, E1000_SUBSYSTEM_ID),
            phy: Phy::new(true),
            tx: tx::TxState::default(),
            cable: true,
            io_addr: 0,
        };
        dev.device_reset();
        dev
    }

    /// The permanent MAC address (EEPROM words 0-2, loaded into RAL0/RAH0 on reset).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Connects or disconnects the cable: the link follows (unless the PHY is powered down),
    /// STATUS.LU and the PHY status change and LSC is raised.
    pub fn set_link_up(&mut self, up: bool) {
        self.cable = up;
        self.update_link();
    }

    /// The configuration header (tests, inspection).
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    fn reg(&self, off: u32) -> u32 {
        self.regs.get((off / 4) as usize).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, off: u32, v: u32) {
        if let Some(r) = self.regs.get_mut((off / 4) as usize) {
            *r = v;
        }
    }

    /// Power-on (and CTRL.RST) state of the MAC: registers, EEPROM interface, statistics,
    /// transmit state, interrupts. The PHY and the PCI header are reset separately.
    fn device_reset(&mut self) {
        self.regs.fill(0);
        self.set_reg(CTRL, CTRL_FD | CTRL_ASDE | CTRL_SLU | CTRL_SPEED_1000);
        self.set_reg(VET, 0x8100);
        self.set_reg(LEDCTL, 0x0706_8302);
        // 48 KiB receive, 16 KiB transmit packet buffer.
        self.set_reg(PBA, 0x0010_0030);
        self.set_reg(RXDCTL, 0x0001_0000);
        // RAL0/RAH0 come from the EEPROM.
        let m = self.mac;
        self.set_reg(RA, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.set_reg(RA + 4, u32::from(u16::from_le_bytes([m[4], m[5]])) | RAH_AV);
        self.stats = [0; STATS_WORDS];
        self.eeprom.reset();
        self.tx = tx::TxState::default();
        self.update_irq();
    }

    /// Brings STATUS.LU and the PHY in line with the cable and PHY power; LSC on a change.
    fn update_link(&mut self) {
        let up = self.cable && !self.phy.powered_down();
        if up != self.phy.link() {
            self.phy.set_link(up);
            self.raise(ICR_LSC);
        }
    }

    fn link_up(&self) -> bool {
        self.phy.link()
    }

    fn status(&self) -> u32 {
        let lu = if self.link_up() { STATUS_LU } else { 0 };
        STATUS_FD | lu | STATUS_SPEED_1000 | STATUS_ASDV_1000
    }

    /// Sets interrupt causes and re-drives INTx.
    fn raise(&mut self, causes: u32) {
        let icr = self.reg(ICR) | (causes & ICR_VALID);
        self.set_reg(ICR, icr);
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let level = self.reg(ICR) & self.reg(IMS) != 0;
        match &self.link {
            Some(link) => self.cfg.set_intx(level, &*link.intx),
            None => self.cfg.set_interrupt_status(level),
        }
    }

    fn stat_index(off: u32) -> usize {
        ((off - STATS_BASE) / 4) as usize
    }

    /// Whether `off` (relative to STATS_BASE) is the high half of a 64-bit counter.
    fn stat_is_high(off: u32) -> bool {
        STATS_64.iter().any(|&low| off == low + 4)
    }

    /// Adds to a 32-bit counter, saturating.
    fn count(&mut self, stat: u32, n: u32) {
        if let Some(c) = self.stats.get_mut((stat / 4) as usize) {
            *c = c.saturating_add(n);
        }
    }

    /// Adds to a 64-bit counter (low half at `stat`), saturating.
    fn count64(&mut self, stat: u32, n: u64) {
        let i = (stat / 4) as usize;
        if i + 1 >= STATS_WORDS {
            return;
        }
        let v = (u64::from(self.stats[i + 1]) << 32 | u64::from(self.stats[i])).saturating_add(n);
        self.stats[i] = v as u32;
        self.stats[i + 1] = (v >> 32) as u32;
    }

    /// Counts a frame of `len` bytes (FCS included) into the size bins starting at `bin64`
    /// (64, 65-127, 128-255, 256-511, 512-1023, 1024-1522).
    fn count_size(&mut self, bin64: u32, len: usize) {
        let bin = match len {
            0..=64 => 0,
            65..=127 => 1,
            128..=255 => 2,
            256..=511 => 3,
            512..=1023 => 4,
            1024..=1522 => 5,
            _ => return,
        };
        self.count(bin64 + 4 * bin, 1);
    }

    /// Write mask of a plain storage register, `None` for unimplemented offsets (read 0,
    /// writes ignored) and for registers handled in `write_reg`.
    fn storage_mask(off: u32) -> Option<u32> {
        Some(match off {
            CTRL_EXT | FLA | FCAL | TXCW | RXCW | LEDCTL | RDBAH | TDBAH | RXDCTL | TXDCTL | TSPMT | WUC
            | WUFC | WUS | MANC | IPAV | WUPL => u32::MAX,
            FCAH | FCT | VET | ITR | FCTTV | AIT | RADV | TIDV | TADV | FCRTH | PBA => 0xFFFF,
            FCRTL => 0x8000_FFF8,
            TIPG => 0x3FFF_FFFF,
            RDTR => 0x8000_FFFF,
            RDBAL | TDBAL => 0xFFFF_FFF0,
            RDLEN | TDLEN => 0x000F_FF80,
            RDH | TDH => 0xFFFF,
            RSRPD => RSRPD_SIZE,
            TXDMAC => 1,
            RXCSUM => 0x7FF,
            // Reserved bit 0 of both.
            RCTL | TCTL => !1,
            RDFH..=RDFPC | TDFH..=TDFPC => 0xFFFF,
            _ if (MTA..MTA_END).contains(&off) || (VFTA..VFTA_END).contains(&off) => u32::MAX,
            _ if (RA..RA_END).contains(&off) => {
                if off & 4 == 0 {
                    u32::MAX
                } else {
                    0xFFFF | RAH_AS | RAH_AV
                }
            }
            _ if (IP4AT..IP4AT_END).contains(&off)
                || (IP6AT..IP6AT_END).contains(&off)
                || (WUPM..WUPM_END).contains(&off)
                || (FFLT..FFLT_END).contains(&off)
                || (FFMT..FFMT_END).contains(&off)
                || (FFVT..FFVT_END).contains(&off) =>
            {
                u32::MAX
            }
            _ => return None,
        })
    }

    /// The register at dword offset `off` without read side effects.
    fn peek(&self, off: u32) -> u32 {
        match off {
            STATUS => self.status(),
            EECD => self.eeprom.eecd(),
            EERD => self.eeprom.eerd(),
            // Write-only.
            ICS | IMC => 0,
            STATS_BASE..STATS_END => self.stats[Self::stat_index(off)],
            _ => self.reg(off),
        }
    }

    /// A guest read of the register at dword offset `off`.
    fn read_reg(&mut self, off: u32) -> u32 {
        match off {
            ICR => {
                // Read-to-clear (13.4.17).
                let v = self.reg(ICR);
                self.set_reg(ICR, 0);
                self.update_irq();
                v
            }
            STATS_BASE..STATS_END => {
                let i = Self::stat_index(off);
                let v = self.stats[i];
                let rel = off - STATS_BASE;
                if Self::stat_is_high(rel) {
                    self.stats[i - 1] = 0;
                    self.stats[i] = 0;
                } else if !STATS_64.contains(&rel) {
                    self.stats[i] = 0;
                }
                v
            }
            _ => self.peek(off),
        }
    }

    /// A guest write of `v` to the register at dword offset `off`.
    fn write_reg(&mut self, off: u32, v: u32) {
        match off {
            CTRL => self.write_ctrl(v),
            EECD => self.eeprom.write_eecd(v),
            EERD => self.eeprom.write_eerd(v),
            MDIC => self.write_mdic(v),
            ICR => {
                // Writing 1s also clears causes.
                let icr = self.reg(ICR) & !v;
                self.set_reg(ICR, icr);
                self.update_irq();
            }
            ICS => self.raise(v),
            IMS => {
                let ims = self.reg(IMS) | (v & ICR_VALID);
                self.set_reg(IMS, ims);
                self.update_irq();
            }
            IMC => {
                let ims = self.reg(IMS) & !v;
                self.set_reg(IMS, ims);
                self.update_irq();
            }
            RCTL => {
                let was = self.reg(RCTL);
                self.set_reg(RCTL, v & !1);
                if was & RCTL_EN == 0 && v & RCTL_EN != 0 {
                    self.sink.rx_space();
                }
            }
            TCTL => {
                self.set_reg(TCTL, v & !1);
                self.process_tx();
            }
            TDT => {
                self.set_reg(TDT, v & 0xFFFF);
                self.process_tx();
            }
            RDT => {
                self.set_reg(RDT, v & 0xFFFF);
                // The driver gave buffers: frames the backend held back may fit now.
                self.sink.rx_space();
            }
            _ => {
                if let Some(mask) = Self::storage_mask(off) {
                    let r = (self.reg(off) & !mask) | (v & mask);
                    self.set_reg(off, r);
                }
            }
        }
    }

    fn write_ctrl(&mut self, v: u32) {
        if v & CTRL_RST != 0 {
            // Global reset: everything but the PCI header and the PHY; self-clearing.
            self.device_reset();
            return;
        }
        self.set_reg(CTRL, v);
        if v & CTRL_PHY_RST != 0 {
            self.phy.reset();
            self.update_link();
        }
    }

    /// MDIC: the access completes at once (READY); only PHY address 1 answers, others and
    /// bad opcodes complete with ERROR.
    fn write_mdic(&mut self, v: u32) {
        let reg = ((v >> MDIC_REG_SHIFT) & 0x1F) as usize;
        let addr = (v >> MDIC_PHY_SHIFT) & 0x1F;
        let op = (v >> MDIC_OP_SHIFT) & 3;
        let mut out = v & !(MDIC_READY | MDIC_ERROR);
        match op {
            _ if addr != phy::PHY_ADDR => out |= MDIC_ERROR,
            MDIC_OP_WRITE => {
                self.phy.write(reg, (v & MDIC_DATA) as u16);
                // Power-down or reset may have moved the link.
                self.update_link();
            }
            MDIC_OP_READ => out = (out & !MDIC_DATA) | u32::from(self.phy.read(reg)),
            _ => out |= MDIC_ERROR,
        }
        self.set_reg(MDIC, out | MDIC_READY);
        if v & MDIC_INT_EN != 0 {
            self.raise(ICR_MDAC);
        }
    }

    /// Dwords covered by an access of `len` bytes at `offset`, each with the byte range
    /// (within the dword) and the position in the access buffer.
    fn dword_spans(offset: u64, len: usize) -> impl Iterator<Item = (u32, usize, usize, usize)> {
        let end = offset + len as u64;
        let first = offset & !3;
        (first..end).step_by(4).map(move |dw| {
            let lo = offset.max(dw);
            let hi = end.min(dw + 4);
            (dw as u32, (lo - dw) as usize, (hi - lo) as usize, (lo - offset) as usize)
        })
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > MMIO_SIZE) {
            data.fill(0xFF);
            return;
        }
        for (dw, start, n, pos) in Self::dword_spans(offset, data.len()) {
            let v = self.read_reg(dw).to_le_bytes();
            data[pos..pos + n].copy_from_slice(&v[start..start + n]);
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > MMIO_SIZE) {
            return;
        }
        for (dw, start, n, pos) in Self::dword_spans(offset, data.len()) {
            if n == 4 {
                let v = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
                self.write_reg(dw, v);
                continue;
            }
            // Partial: merge into the current value, except for the command-like interrupt
            // registers where unwritten bytes must not act.
            let mut bytes = match dw {
                ICR | ICS | IMS | IMC => [0; 4],
                _ => self.peek(dw).to_le_bytes(),
            };
            bytes[start..start + n].copy_from_slice(&data[pos..pos + n]);
            self.write_reg(dw, u32::from_le_bytes(bytes));
        }
    }

    /// IOADDR/IODATA: IODATA reaches the register IOADDR selects (dword-aligned); the rest
    /// of the window reads 0.
    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > IO_SIZE) {
            return;
        }
        for (dw, start, n, pos) in Self::dword_spans(offset, data.len()) {
            let out = &mut data[pos..pos + n];
            match u64::from(dw) {
                IOADDR => out.copy_from_slice(&self.io_addr.to_le_bytes()[start..start + n]),
                IODATA => self.mmio_read(self.io_target(start), out),
                _ => {}
            }
        }
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > IO_SIZE) {
            return;
        }
        for (dw, start, n, pos) in Self::dword_spans(offset, data.len()) {
            let bytes = &data[pos..pos + n];
            match u64::from(dw) {
                IOADDR => {
                    let mut a = self.io_addr.to_le_bytes();
                    a[start..start + n].copy_from_slice(bytes);
                    self.io_addr = u32::from_le_bytes(a);
                }
                IODATA => self.mmio_write(self.io_target(start), bytes),
                _ => {}
            }
        }
    }

    fn io_target(&self, byte: usize) -> u64 {
        u64::from(self.io_addr & 0x1_FFFC) + byte as u64
    }
}

impl PciDevice for E1000 {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        // Interrupt Disable may have changed.
        if let Some(link) = &self.link {
            self.cfg.refresh_intx(&*link.intx);
        }
    }

    fn bar(&self, index: usize) -> Option<BarRegion> {
        self.cfg.bar_region(index)
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match index {
            0 => self.mmio_read(offset, data),
            1 => self.io_read(offset, data),
            _ => data.fill(0xFF),
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        match index {
            0 => self.mmio_write(offset, data),
            1 => self.io_write(offset, data),
            _ => {}
        }
    }

    fn attach(&mut self, link: PciLink) {
        self.link = Some(link);
        self.update_irq();
    }

    fn reset(&mut self) {
        self.cfg.reset();
        self.io_addr = 0;
        self.phy.reset();
        self.device_reset();
        self.update_link();
        if let Some(link) = &self.link {
            self.cfg.refresh_intx(&*link.intx);
        }
    }
}
