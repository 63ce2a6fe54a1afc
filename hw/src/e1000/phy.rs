//! The 82540EM's internal copper PHY, register-compatible with the Marvell 88E1011 (Linux
//! matches it by ID 0x01410C2x as M88E1011_I_PHY_ID), reached through MDIC at PHY address 1
//! (SDM 8.2 and 13.4.7; IEEE 802.3 clause 22 for registers 0-15).
//!
//! Auto-negotiation completes instantly: with the cable connected the link is up at
//! 1000 Mb/s full duplex against a partner advertising everything, which is what the MAC's
//! STATUS register reports too. Powering the PHY down (PHY_CTRL bit 11) takes the link down.

/// The MDIO address the PHY answers at.
pub const PHY_ADDR: u32 = 1;

// Register numbers.
pub const PHY_CTRL: usize = 0;
pub const PHY_STATUS: usize = 1;
pub const PHY_ID1: usize = 2;
pub const PHY_ID2: usize = 3;
pub const PHY_AUTONEG_ADV: usize = 4;
pub const PHY_LP_ABILITY: usize = 5;
pub const PHY_AUTONEG_EXP: usize = 6;
pub const PHY_NEXT_PAGE_TX: usize = 7;
pub const PHY_LP_NEXT_PAGE: usize = 8;
pub const PHY_1000T_CTRL: usize = 9;
pub const PHY_1000T_STATUS: usize = 10;
pub const PHY_EXT_STATUS: usize = 15;
/// M88 PHY Specific Control/Status, interrupt enable/status, extended control, RX errors.
pub const M88_PHY_SPEC_CTRL: usize = 16;
pub const M88_PHY_SPEC_STATUS: usize = 17;
pub const M88_INT_STATUS: usize = 19;
pub const M88_EXT_PHY_SPEC_CTRL: usize = 20;
pub const M88_RX_ERR_CNTR: usize = 21;

// PHY_CTRL bits.
pub const MII_CR_RESTART_AUTO_NEG: u16 = 1 << 9;
pub const MII_CR_POWER_DOWN: u16 = 1 << 11;
pub const MII_CR_RESET: u16 = 1 << 15;
/// Auto-negotiation enabled, full duplex, 1000 Mb/s (speed bits 6 and 13 = 10b).
const CTRL_DEFAULT: u16 = 0x1140;

// PHY_STATUS bits: 100BASE-X and 10BASE-T full/half capable, extended status, preamble
// suppression, autoneg able, extended capabilities; link and autoneg complete vary.
const STATUS_BASE: u16 = 0x7949;
pub const MII_SR_LINK_STATUS: u16 = 1 << 2;
pub const MII_SR_AUTONEG_COMPLETE: u16 = 1 << 5;

/// PHY identifier of the M88E1011 (revision 0).
pub const M88E1011_ID1: u16 = 0x0141;
pub const M88E1011_ID2: u16 = 0x0C20;

/// Advertised: 10/100 half and full, IEEE 802.3 selector.
const ADV_DEFAULT: u16 = 0x01E1;
/// Link partner: ACK, symmetric pause, 10/100 half and full.
const LP_ABILITY_UP: u16 = 0x45E1;
/// Advertise 1000BASE-T full and half duplex.
const GIG_CTRL_DEFAULT: u16 = 0x0300;
/// Local and remote receiver OK, partner 1000BASE-T full and half capable.
const GIG_STATUS_UP: u16 = 0x3C00;
/// 1000BASE-T full and half duplex capable.
const EXT_STATUS: u16 = 0x3000;
/// Automatic MDI/MDI-X crossover, CRS asserted on transmit.
const SPEC_CTRL_DEFAULT: u16 = 0x0068;
/// Speed 1000 (15:14 = 10b), full duplex, speed and duplex resolved, real-time link.
const SPEC_STATUS_UP: u16 = 0xAC00;
/// Downshift counters at their power-on values.
const EXT_SPEC_CTRL_DEFAULT: u16 = 0x0C60;

pub struct Phy {
    pub(super) regs: [u16; 32],
    pub(super) link: bool,
}

impl Phy {
    pub fn new(link: bool) -> Self {
        let mut p = Phy { regs: [0; 32], link };
        p.reset();
        p
    }

    /// Power-on register values; the link (the cable) is kept.
    pub fn reset(&mut self) {
        self.regs = [0; 32];
        self.regs[PHY_CTRL] = CTRL_DEFAULT;
        self.regs[PHY_AUTONEG_ADV] = ADV_DEFAULT;
        self.regs[PHY_NEXT_PAGE_TX] = 0x2001;
        self.regs[PHY_1000T_CTRL] = GIG_CTRL_DEFAULT;
        self.regs[M88_PHY_SPEC_CTRL] = SPEC_CTRL_DEFAULT;
        self.regs[M88_EXT_PHY_SPEC_CTRL] = EXT_SPEC_CTRL_DEFAULT;
    }

    pub fn link(&self) -> bool {
        self.link
    }

    pub fn set_link(&mut self, up: bool) {
        self.link = up;
    }

    pub fn powered_down(&self) -> bool {
        self.regs[PHY_CTRL] & MII_CR_POWER_DOWN != 0
    }

    /// Register `reg` (0-31); link-dependent registers are computed.
    pub fn read(&mut self, reg: usize) -> u16 {
        let up = self.link;
        let when_up = |v: u16| if up { v } else { 0 };
        match reg {
            PHY_STATUS => STATUS_BASE | when_up(MII_SR_LINK_STATUS | MII_SR_AUTONEG_COMPLETE),
            PHY_ID1 => M88E1011_ID1,
            PHY_ID2 => M88E1011_ID2,
            PHY_LP_ABILITY => when_up(LP_ABILITY_UP),
            PHY_AUTONEG_EXP => when_up(1),
            PHY_LP_NEXT_PAGE => 0,
            PHY_1000T_STATUS => when_up(GIG_STATUS_UP),
            PHY_EXT_STATUS => EXT_STATUS,
            M88_PHY_SPEC_STATUS => when_up(SPEC_STATUS_UP),
            // Read-to-clear; nothing is ever pending.
            M88_INT_STATUS | M88_RX_ERR_CNTR => 0,
            _ => self.regs.get(reg).copied().unwrap_or(0),
        }
    }

    /// Writes register `reg`. Software reset and restart-autoneg complete at once and
    /// self-clear; as on the M88, a software reset keeps the configuration registers (the
    /// driver writes them first and resets to apply them). Hardware reset is [`Self::reset`].
    pub fn write(&mut self, reg: usize, value: u16) {
        match reg {
            PHY_CTRL => self.regs[PHY_CTRL] = value & !(MII_CR_RESET | MII_CR_RESTART_AUTO_NEG),
            PHY_STATUS | PHY_ID1 | PHY_ID2 | PHY_LP_ABILITY | PHY_AUTONEG_EXP | PHY_LP_NEXT_PAGE
            | PHY_1000T_STATUS | PHY_EXT_STATUS | M88_PHY_SPEC_STATUS | M88_INT_STATUS | M88_RX_ERR_CNTR => {}
            _ => {
                if let Some(r) = self.regs.get_mut(reg) {
                    *r = value;
                }
            }
        }
    }
}
