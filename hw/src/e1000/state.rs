//! Saved state of the e1000 (snapshots and migration): config space, the register file
//! (RX/TX ring bases, heads and tails, interrupt cause and mask, filters, ...), statistics,
//! the EEPROM's Microwire sequencing and EERD, the PHY registers and link, the packet being
//! assembled from TX descriptors, and the I/O-window address register. The EEPROM contents
//! follow from the MAC address, which must match. Transmission and reception happen within
//! register writes and `receive` calls, so nothing is in flight between them.

use super::eeprom::{Wire, ADDR_BITS, EECD_WRITABLE, EEPROM_WORDS};
use super::tx::{TxContext, TxState, MAX_TX_BYTES};
use super::*;
use crate::pci::PciConfigState;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E1000State {
    pub config: PciConfigState,
    /// Identifies the NIC: the EEPROM and RAL0/RAH0 reset values derive from it.
    pub mac: [u8; 6],
    /// Non-zero registers as (byte offset, value), offsets ascending.
    pub registers: Vec<(u32, u32)>,
    /// Statistics registers from 0x4000, one dword each.
    pub statistics: Vec<u32>,
    pub eeprom: E1000EepromState,
    pub phy_registers: [u16; 32],
    pub phy_link_up: bool,
    /// The cable is plugged in (`set_link_up`).
    pub cable_connected: bool,
    pub tx: E1000TxState,
    /// IOADDR of the I/O window.
    pub io_address: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E1000EepromState {
    /// EECD bits as driven by software.
    pub control: u32,
    pub data_out: bool,
    pub wire: Wire,
    pub eerd: u32,
}

/// The TCP/IP context descriptor fields (3.3.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E1000TxContext {
    pub ipcss: u8,
    pub ipcso: u8,
    pub ipcse: u16,
    pub tucss: u8,
    pub tucso: u8,
    pub tucse: u16,
    pub tucmd: u8,
    pub hdr_len: u8,
    pub mss: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E1000TxState {
    pub context: E1000TxContext,
    /// The packet assembled so far (descriptors up to, not including, EOP).
    pub packet: Vec<u8>,
    pub started: bool,
    pub popts: u8,
    pub tse: bool,
    pub tse_vlan: Option<u16>,
    /// Too long or partly unreadable: dropped at EOP.
    pub bad: bool,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl Persist for E1000 {
    const SECTION: &'static str = "e1000";
    const VERSION: u32 = 1;
    type State = E1000State;

    fn save(&self) -> E1000State {
        let c = &self.tx.ctx;
        E1000State {
            config: self.cfg.save_state(),
            mac: self.mac,
            registers: self.regs.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, &v)| (4 * i as u32, v)).collect(),
            statistics: self.stats.to_vec(),
            eeprom: E1000EepromState {
                control: self.eeprom.ctrl,
                data_out: self.eeprom.data_out,
                wire: self.eeprom.wire,
                eerd: self.eeprom.eerd,
            },
            phy_registers: self.phy.regs,
            phy_link_up: self.phy.link,
            cable_connected: self.cable,
            tx: E1000TxState {
                context: E1000TxContext {
                    ipcss: c.ipcss,
                    ipcso: c.ipcso,
                    ipcse: c.ipcse,
                    tucss: c.tucss,
                    tucso: c.tucso,
                    tucse: c.tucse,
                    tucmd: c.tucmd,
                    hdr_len: c.hdr_len,
                    mss: c.mss,
                },
                packet: self.tx.buf.clone(),
                started: self.tx.started,
                popts: self.tx.popts,
                tse: self.tx.tse,
                tse_vlan: self.tx.tse_vlan,
                bad: self.tx.bad,
            },
            io_address: self.io_addr,
        }
    }

    fn restore(&mut self, s: E1000State) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        if s.mac != self.mac {
            return Err(RestoreError::invalid("mac", format!("saved for {}, this machine has {}", fmt_mac(&s.mac), fmt_mac(&self.mac))));
        }
        let mut regs = vec![0u32; REG_WORDS].into_boxed_slice();
        for &(off, v) in &s.registers {
            if off % 4 != 0 || off / 4 >= REG_WORDS as u32 {
                return Err(RestoreError::invalid("registers", format!("offset {off:#x} is not a register")));
            }
            regs[(off / 4) as usize] = v;
        }
        let stats: [u32; STATS_WORDS] = s
            .statistics
            .as_slice()
            .try_into()
            .map_err(|_| RestoreError::invalid("statistics", format!("{} registers, not {STATS_WORDS}", s.statistics.len())))?;
        let e = &s.eeprom;
        check_max("eeprom.control", e.control & !EECD_WRITABLE, 0)?;
        match e.wire {
            Wire::Command { bits, .. } if bits >= 2 + ADDR_BITS => {
                return Err(RestoreError::invalid("eeprom.wire", format!("{bits} command bits, a command has {}", 2 + ADDR_BITS)))
            }
            Wire::Read { word, bit } if word >= EEPROM_WORDS || bit > 15 => {
                return Err(RestoreError::invalid("eeprom.wire", format!("bit {bit} of word {word} is past the EEPROM")))
            }
            _ => {}
        }
        check_max("tx.packet", s.tx.packet.len(), MAX_TX_BYTES)?;
        self.regs = regs;
        self.stats = stats;
        (self.eeprom.ctrl, self.eeprom.data_out, self.eeprom.wire, self.eeprom.eerd) = (e.control, e.data_out, e.wire, e.eerd);
        self.phy.regs = s.phy_registers;
        self.phy.link = s.phy_link_up;
        self.cable = s.cable_connected;
        let t = s.tx;
        let c = t.context;
        self.tx = TxState {
            ctx: TxContext {
                ipcss: c.ipcss,
                ipcso: c.ipcso,
                ipcse: c.ipcse,
                tucss: c.tucss,
                tucso: c.tucso,
                tucse: c.tucse,
                tucmd: c.tucmd,
                hdr_len: c.hdr_len,
                mss: c.mss,
            },
            buf: t.packet,
            started: t.started,
            popts: t.popts,
            tse: t.tse,
            tse_vlan: t.tse_vlan,
            bad: t.bad,
        };
        self.io_addr = s.io_address;
        self.cfg.restore_state(&s.config);
        let level = self.reg(ICR) & self.reg(IMS) != 0;
        self.cfg.set_interrupt_status(level);
        if let Some(link) = &self.link {
            self.cfg.redrive_intx(&*link.intx);
        }
        Ok(())
    }
}
