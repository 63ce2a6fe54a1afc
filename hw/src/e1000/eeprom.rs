//! The 82540EM's serial EEPROM: a 64-word Microwire part (93C46 class) read either by
//! bit-banging EECD (SDM 5.3, 13.4.3), as Linux's e1000 driver does for the 82540, or through
//! the EERD register (13.4.4). The image follows the EEPROM map of SDM 5.6: MAC address in
//! words 0-2, IDs in 0x0B-0x0E, and a checksum word 0x3F making words 0-0x3F sum to 0xBABA.
//! Writes are accepted on the wire but not stored (the image is rebuilt from the MAC on
//! every reset anyway, and no driver needs to change it).

/// Number of 16-bit words (EECD.EE_SIZE clear: 64 words, 6 address bits).
pub const EEPROM_WORDS: usize = 64;
pub(super) const ADDR_BITS: u32 = 6;
/// Words 0x00-0x3F sum to this (SDM 5.6.35).
pub const EEPROM_SUM: u16 = 0xBABA;

/// Word offsets (SDM table 5-2).
pub const EE_ID_LED: usize = 0x04;
pub const EE_INIT_CTRL1: usize = 0x0A;
pub const EE_SUBSYSTEM_ID: usize = 0x0B;
pub const EE_SUBSYSTEM_VENDOR: usize = 0x0C;
pub const EE_DEVICE_ID: usize = 0x0D;
pub const EE_VENDOR_ID: usize = 0x0E;
pub const EE_INIT_CTRL2: usize = 0x0F;
pub const EE_CHECKSUM: usize = 0x3F;

/// Initialization Control Word 1: signature 01b (bits 15:14, required for the image to be
/// used), full duplex (bit 10), load subsystem IDs (bit 1) and vendor/device IDs (bit 0).
pub const INIT_CTRL1: u16 = 0x4403;
/// Initialization Control Word 2: PAUSE and ASM_DIR advertised (bits 13:12), so Linux's
/// driver defaults to symmetric flow control as on a shipping adapter.
pub const INIT_CTRL2: u16 = 0x3000;

// EECD bits (13.4.3).
pub const EECD_SK: u32 = 1 << 0;
pub const EECD_CS: u32 = 1 << 1;
pub const EECD_DI: u32 = 1 << 2;
pub const EECD_DO: u32 = 1 << 3;
pub const EECD_FWE: u32 = 3 << 4;
pub const EECD_REQ: u32 = 1 << 6;
pub const EECD_GNT: u32 = 1 << 7;
pub const EECD_PRES: u32 = 1 << 8;
/// Software-driven EECD bits.
pub(super) const EECD_WRITABLE: u32 = EECD_SK | EECD_CS | EECD_DI | EECD_FWE | EECD_REQ;
/// Power-on FWE: flash writes disabled (01b).
const EECD_FWE_DISABLED: u32 = 1 << 4;

/// Microwire READ opcode (after the start bit).
const OP_READ: u32 = 0b10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Wire {
    /// Waiting for the start bit (a 1 on DI).
    Idle,
    /// Collecting the 2 opcode bits and the address bits.
    Command { bits: u32, value: u32 },
    /// Shifting out `word`; `bit` is the next bit (15 = MSB).
    Read { word: usize, bit: u32 },
    /// A command this model does not perform (write, erase, enable); ignored until CS drops.
    Ignore,
}

pub struct Eeprom {
    pub(super) words: [u16; EEPROM_WORDS],
    /// Software-driven EECD bits as last written.
    pub(super) ctrl: u32,
    pub(super) data_out: bool,
    pub(super) wire: Wire,
    /// EERD as last completed.
    pub(super) eerd: u32,
}

impl Eeprom {
    /// The image for `mac`, with the 82540EM's IDs and subsystem `subsystem_id`.
    pub fn new(mac: [u8; 6], subsystem_id: u16) -> Self {
        let mut words = [0u16; EEPROM_WORDS];
        for (i, pair) in mac.chunks(2).enumerate() {
            words[i] = u16::from_le_bytes([pair[0], pair[1]]);
        }
        // 0xFFFF: no custom LED settings, the driver uses its defaults.
        words[EE_ID_LED] = 0xFFFF;
        words[EE_INIT_CTRL1] = INIT_CTRL1;
        words[EE_SUBSYSTEM_ID] = subsystem_id;
        words[EE_SUBSYSTEM_VENDOR] = super::E1000_VENDOR_ID;
        words[EE_DEVICE_ID] = super::E1000_DEVICE_ID;
        words[EE_VENDOR_ID] = super::E1000_VENDOR_ID;
        words[EE_INIT_CTRL2] = INIT_CTRL2;
        let sum = words[..EE_CHECKSUM].iter().fold(0u16, |a, &w| a.wrapping_add(w));
        words[EE_CHECKSUM] = EEPROM_SUM.wrapping_sub(sum);
        Eeprom { words, ctrl: EECD_FWE_DISABLED, data_out: true, wire: Wire::Idle, eerd: 0 }
    }

    pub fn word(&self, index: usize) -> u16 {
        self.words.get(index).copied().unwrap_or(0)
    }

    /// Power-on state of the interface (the contents never change).
    pub fn reset(&mut self) {
        self.ctrl = EECD_FWE_DISABLED;
        self.data_out = true;
        self.wire = Wire::Idle;
        self.eerd = 0;
    }

    /// EECD as read: the driven bits, DO from the part, GNT following REQ at once (no other
    /// agent competes for the EEPROM), and EEPROM present.
    pub fn eecd(&self) -> u32 {
        let mut v = self.ctrl | EECD_PRES;
        if self.ctrl & EECD_REQ != 0 {
            v |= EECD_GNT;
        }
        if self.data_out {
            v |= EECD_DO;
        }
        v
    }

    /// EECD write: CS low resets the part; a rising SK with CS high clocks DI in or the next
    /// data bit out (Microwire: inputs are latched on the rising edge, output changes on it).
    pub fn write_eecd(&mut self, value: u32) {
        let old = self.ctrl;
        self.ctrl = value & EECD_WRITABLE;
        if self.ctrl & EECD_CS == 0 {
            self.wire = Wire::Idle;
            self.data_out = true;
            return;
        }
        if old & EECD_SK == 0 && self.ctrl & EECD_SK != 0 {
            self.clock(self.ctrl & EECD_DI != 0);
        }
    }

    fn clock(&mut self, di: bool) {
        self.wire = match self.wire {
            Wire::Idle if di => Wire::Command { bits: 0, value: 0 },
            Wire::Idle => Wire::Idle,
            Wire::Command { bits, value } => {
                let value = value << 1 | u32::from(di);
                let bits = bits + 1;
                if bits < 2 + ADDR_BITS {
                    Wire::Command { bits, value }
                } else if value >> ADDR_BITS == OP_READ {
                    // The dummy 0 bit precedes the data.
                    self.data_out = false;
                    Wire::Read { word: (value as usize) & (EEPROM_WORDS - 1), bit: 15 }
                } else {
                    self.data_out = true;
                    Wire::Ignore
                }
            }
            Wire::Read { word, bit } => {
                self.data_out = self.words[word] >> bit & 1 != 0;
                // Sequential read: the part continues with the next word.
                if bit == 0 {
                    Wire::Read { word: (word + 1) % EEPROM_WORDS, bit: 15 }
                } else {
                    Wire::Read { word, bit: bit - 1 }
                }
            }
            Wire::Ignore => Wire::Ignore,
        };
    }

    pub fn eerd(&self) -> u32 {
        self.eerd
    }

    /// EERD write: START reads the addressed word at once (DONE set, data in 31:16).
    /// Addresses past the part read as zero.
    pub fn write_eerd(&mut self, value: u32) {
        if value & super::regs::EERD_START == 0 {
            return;
        }
        use super::regs::{EERD_ADDR_SHIFT, EERD_DATA_SHIFT, EERD_DONE};
        let addr = (value >> EERD_ADDR_SHIFT) & 0xFF;
        let data = u32::from(self.word(addr as usize));
        self.eerd = data << EERD_DATA_SHIFT | addr << EERD_ADDR_SHIFT | EERD_DONE;
    }
}
