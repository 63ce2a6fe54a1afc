//! Intel 8042 keyboard controller with an MF2 keyboard and an empty auxiliary (mouse) port.
//!
//! References: IBM PC/AT Technical Reference, "Keyboard controller" (status register, command
//! byte, controller commands 0x20-0xff, output port) and "Keyboard" (keyboard commands and
//! responses); IBM PS/2 Hardware Interface Technical Reference, "Auxiliary device" commands
//! (0xa7-0xa9, 0xd3, 0xd4).
//!
//! Ports: data 0x60 (offset [`OFFSET_DATA`]) and status/command 0x64 (offset
//! [`OFFSET_STATUS`]) from a base of 0x60; port 0x61 in between belongs to the PIT's port B.
//!
//! The auxiliary port exists on the controller (0xa7/0xa8/0xa9 and 0xd3 work) but no device
//! is plugged in: every byte sent to it with 0xd4 is answered by 0xfe with the status timeout
//! bit set, which Linux's psmouse reads as "no mouse" without waiting.
//!
//! Keystrokes are injected as ready-made scancode bytes ([`I8042::push_scancodes`]); the
//! caller picks set 1 or set 2 from [`I8042::translation`]. [`I8042::key_event`] does that
//! for a [`keys::Key`]: the keyboard's set, through the controller's translation.

use crate::{IrqLine, PioDevice};
use std::collections::VecDeque;

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status (read) / command (write) port.
pub const COMMAND_PORT: u16 = 0x64;
/// Offset of the data port from 0x60.
pub const OFFSET_DATA: u16 = 0;
/// Offset of the status/command port from 0x60.
pub const OFFSET_STATUS: u16 = 4;
/// ISA IRQs of the two ports.
pub const KBD_IRQ: u8 = 1;
pub const AUX_IRQ: u8 = 12;

/// Status register bits (AT TechRef "Status register").
pub const STATUS_OBF: u8 = 0x01;
pub const STATUS_IBF: u8 = 0x02;
pub const STATUS_SYS: u8 = 0x04;
/// Last write went to the command port (A2).
pub const STATUS_CMD: u8 = 0x08;
/// Keyboard not inhibited by the key lock.
pub const STATUS_UNLOCKED: u8 = 0x10;
/// The output buffer holds auxiliary-port data.
pub const STATUS_AUX_OBF: u8 = 0x20;
pub const STATUS_TIMEOUT: u8 = 0x40;
pub const STATUS_PARITY: u8 = 0x80;

/// Command byte (controller RAM 0) bits.
pub const CTR_KBD_INT: u8 = 0x01;
pub const CTR_AUX_INT: u8 = 0x02;
pub const CTR_SYS: u8 = 0x04;
pub const CTR_KBD_DISABLE: u8 = 0x10;
pub const CTR_AUX_DISABLE: u8 = 0x20;
pub const CTR_XLATE: u8 = 0x40;

/// Output port bits (AT TechRef "Output port").
pub const OUT_RESET: u8 = 0x01;
pub const OUT_A20: u8 = 0x02;
pub const OUT_KBD_OBF: u8 = 0x10;
pub const OUT_AUX_OBF: u8 = 0x20;

/// Controller commands written to port 0x64.
pub const CMD_READ_RAM: u8 = 0x20;
pub const CMD_WRITE_RAM: u8 = 0x60;
pub const CMD_PASSWORD_INSTALLED: u8 = 0xa4;
pub const CMD_AUX_DISABLE: u8 = 0xa7;
pub const CMD_AUX_ENABLE: u8 = 0xa8;
pub const CMD_AUX_TEST: u8 = 0xa9;
pub const CMD_SELF_TEST: u8 = 0xaa;
pub const CMD_KBD_TEST: u8 = 0xab;
pub const CMD_KBD_DISABLE: u8 = 0xad;
pub const CMD_KBD_ENABLE: u8 = 0xae;
pub const CMD_READ_INPUT: u8 = 0xc0;
pub const CMD_READ_OUTPUT: u8 = 0xd0;
pub const CMD_WRITE_OUTPUT: u8 = 0xd1;
pub const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
pub const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
pub const CMD_WRITE_AUX: u8 = 0xd4;
pub const CMD_A20_OFF: u8 = 0xdd;
pub const CMD_A20_ON: u8 = 0xdf;
pub const CMD_READ_TEST: u8 = 0xe0;
/// 0xf0-0xff pulse output port bits 0-3 low where the command's low nibble is 0; 0xfe pulses
/// the reset line.
pub const CMD_PULSE_RESET: u8 = 0xfe;
/// Self-test passed.
pub const SELF_TEST_OK: u8 = 0x55;
/// Password check: none installed.
const NO_PASSWORD: u8 = 0xf1;
/// Input port: keyboard not inhibited (bit 7).
const INPUT_PORT: u8 = 0x80;

/// Keyboard commands and replies (AT TechRef "Commands from the system").
pub const KBD_SET_LEDS: u8 = 0xed;
pub const KBD_ECHO: u8 = 0xee;
pub const KBD_SCANCODE_SET: u8 = 0xf0;
pub const KBD_IDENTIFY: u8 = 0xf2;
pub const KBD_TYPEMATIC: u8 = 0xf3;
pub const KBD_ENABLE: u8 = 0xf4;
pub const KBD_DISABLE: u8 = 0xf5;
pub const KBD_DEFAULTS: u8 = 0xf6;
pub const KBD_RESEND: u8 = 0xfe;
pub const KBD_RESET: u8 = 0xff;
pub const KBD_ACK: u8 = 0xfa;
pub const KBD_BAT_OK: u8 = 0xaa;
/// MF2 keyboard identity: 0xab then 0x83 (0x41 through the controller's translation).
pub const KBD_ID: [u8; 2] = [0xab, 0x83];
const KBD_ID_XLATED: u8 = 0x41;

/// Bytes the keyboard buffers before dropping (its own FIFO).
const KBD_QUEUE: usize = 16;
/// Bytes of controller replies or loop-back data queued at most.
const CTRL_QUEUE: usize = 16;

/// Who put a byte into the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    Controller,
    Keyboard,
    Aux,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    byte: u8,
    source: Source,
    timeout: bool,
}

/// The MF2 keyboard behind the controller.
#[derive(Clone, Debug)]
struct Keyboard {
    scanning: bool,
    /// A command waiting for its argument (0xed, 0xf0, 0xf3).
    pending: Option<u8>,
    leds: u8,
    scancode_set: u8,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Keyboard {
            scanning: true,
            pending: None,
            leds: 0,
            scancode_set: 2,
            last_sent: KBD_ACK,
        }
    }

    fn defaults(&mut self) {
        self.leds = 0;
        self.scancode_set = 2;
    }
}

/// The 8042 with IRQ1 (`K`) and IRQ12 (`A`) lines.
pub struct I8042<K: IrqLine, A: IrqLine> {
    ram: [u8; 32],
    sys_flag: bool,
    last_was_command: bool,
    output_port: u8,
    out: Option<Entry>,
    ctrl_q: VecDeque<Entry>,
    kbd_q: VecDeque<u8>,
    /// A controller command waiting for its data byte.
    pending: Option<u8>,
    kbd: Keyboard,
    reset_requested: bool,
    kbd_irq: K,
    aux_irq: A,
    kbd_level: bool,
    aux_level: bool,
}

impl<K: IrqLine, A: IrqLine> I8042<K, A> {
    /// A controller at power-on: keyboard interrupt and translation enabled, A20 enabled,
    /// output buffer empty.
    pub fn new(kbd_irq: K, aux_irq: A) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_KBD_INT | CTR_XLATE;
        I8042 {
            ram,
            sys_flag: false,
            last_was_command: false,
            output_port: OUT_RESET | OUT_A20,
            out: None,
            ctrl_q: VecDeque::new(),
            kbd_q: VecDeque::new(),
            pending: None,
            kbd: Keyboard::new(),
            reset_requested: false,
            kbd_irq,
            aux_irq,
            kbd_level: false,
            aux_level: false,
        }
    }

    /// Back to the power-on state (after a machine reset), lowering both lines.
    pub fn reset(&mut self) {
        self.ram = [0; 32];
        self.ram[0] = CTR_KBD_INT | CTR_XLATE;
        self.sys_flag = false;
        self.last_was_command = false;
        self.output_port = OUT_RESET | OUT_A20;
        self.out = None;
        self.ctrl_q.clear();
        self.kbd_q.clear();
        self.pending = None;
        self.kbd = Keyboard::new();
        self.reset_requested = false;
        self.sync();
    }

    /// True once the guest asked for a system reset (0xfe pulse or output port bit 0 low).
    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }

    /// Returns and clears the reset request.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_requested)
    }

    /// The A20 gate from output port bit 1.
    pub fn a20(&self) -> bool {
        self.output_port & OUT_A20 != 0
    }

    /// True when the controller translates set-2 scancodes to set 1 (command byte bit 6):
    /// injected keystrokes should then be set-1 bytes.
    pub fn translation(&self) -> bool {
        self.ctr() & CTR_XLATE != 0
    }

    /// The scancode set the guest selected on the keyboard (1-3).
    pub fn scancode_set(&self) -> u8 {
        self.kbd.scancode_set
    }

    /// Keyboard LED state from the last 0xed command (bit 0 scroll, 1 num, 2 caps lock).
    pub fn leds(&self) -> u8 {
        self.kbd.leds
    }

    /// Queues keystroke bytes from the keyboard; returns how many were taken (none while the
    /// guest has scanning disabled, at most the keyboard's 16-byte buffer).
    pub fn push_scancodes(&mut self, bytes: &[u8]) -> usize {
        if !self.kbd.scanning {
            return 0;
        }
        let room = KBD_QUEUE.saturating_sub(self.kbd_q.len());
        let taken = bytes.len().min(room);
        self.kbd_q.extend(&bytes[..taken]);
        self.refill();
        taken
    }

    /// A key goes down (`down`) or up: the keyboard sends its codes in the scancode set the
    /// guest chose (set 3 is not modelled: set 2 then), which reach the system translated
    /// to set 1 while the command byte's translation bit is on. Returns whether the
    /// keyboard's buffer took them all (nothing is queued while scanning is off).
    pub fn key_event(&mut self, key: keys::Key, down: bool) -> bool {
        let set = self.kbd.scancode_set;
        let mut bytes = key.scancodes(set, down);
        if self.translation() && set != 1 {
            bytes = keys::translate(&bytes);
        }
        self.push_scancodes(&bytes) == bytes.len()
    }

    /// The IRQ1 and IRQ12 lines.
    pub fn irqs(&self) -> (&K, &A) {
        (&self.kbd_irq, &self.aux_irq)
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    /// Reads the status register (port 0x64).
    pub fn read_status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if self.sys_flag {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        if let Some(e) = self.out {
            s |= STATUS_OBF;
            if e.source == Source::Aux {
                s |= STATUS_AUX_OBF;
            }
            if e.timeout {
                s |= STATUS_TIMEOUT;
            }
        }
        s
    }

    /// Reads the output buffer (port 0x60). An empty buffer reads as its last value would on
    /// hardware; here 0.
    pub fn read_data(&mut self) -> u8 {
        let byte = self.out.take().map_or(0, |e| e.byte);
        // Drop the line first, so the next byte makes a fresh edge.
        self.sync();
        self.refill();
        byte
    }

    /// Writes the data port (port 0x60): a controller command's parameter or a keyboard
    /// command.
    pub fn write_data(&mut self, value: u8) {
        self.last_was_command = false;
        match self.pending.take() {
            Some(cmd @ CMD_WRITE_RAM..=0x7f) => {
                self.ram[(cmd & 0x1f) as usize] = value;
                if cmd == CMD_WRITE_RAM {
                    self.sys_flag = value & CTR_SYS != 0;
                }
            }
            Some(CMD_WRITE_OUTPUT) => self.write_output_port(value),
            Some(CMD_WRITE_KBD_OBUF) => self.reply(value, Source::Keyboard, false),
            Some(CMD_WRITE_AUX_OBUF) => self.reply(value, Source::Aux, false),
            // Nothing on the aux port: the transmission times out.
            Some(CMD_WRITE_AUX) => self.reply(KBD_RESEND, Source::Aux, true),
            _ => {
                // Sending to the keyboard re-enables its interface.
                self.ram[0] &= !CTR_KBD_DISABLE;
                self.keyboard_command(value);
            }
        }
        self.refill();
    }

    /// Writes the command port (port 0x64).
    pub fn write_command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.pending = None;
        match cmd {
            CMD_READ_RAM..=0x3f => {
                self.reply(self.ram[(cmd & 0x1f) as usize], Source::Controller, false)
            }
            CMD_WRITE_RAM..=0x7f | CMD_WRITE_OUTPUT..=CMD_WRITE_AUX => self.pending = Some(cmd),
            CMD_PASSWORD_INSTALLED => self.reply(NO_PASSWORD, Source::Controller, false),
            CMD_AUX_DISABLE => self.ram[0] |= CTR_AUX_DISABLE,
            CMD_AUX_ENABLE => self.ram[0] &= !CTR_AUX_DISABLE,
            CMD_AUX_TEST | CMD_KBD_TEST | CMD_READ_TEST => {
                self.reply(0x00, Source::Controller, false)
            }
            CMD_SELF_TEST => {
                self.sys_flag = true;
                self.reply(SELF_TEST_OK, Source::Controller, false);
            }
            CMD_KBD_DISABLE => self.ram[0] |= CTR_KBD_DISABLE,
            CMD_KBD_ENABLE => self.ram[0] &= !CTR_KBD_DISABLE,
            CMD_READ_INPUT => self.reply(INPUT_PORT, Source::Controller, false),
            CMD_READ_OUTPUT => {
                let mut v = self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF);
                match self.out.map(|e| e.source) {
                    Some(Source::Aux) => v |= OUT_AUX_OBF,
                    Some(_) => v |= OUT_KBD_OBF,
                    None => {}
                }
                self.reply(v, Source::Controller, false);
            }
            CMD_A20_OFF => self.output_port &= !OUT_A20,
            CMD_A20_ON => self.output_port |= OUT_A20,
            // Pulse commands whose bit 0 is clear pulse the reset line.
            0xf0..=0xff if cmd & OUT_RESET == 0 => self.reset_requested = true,
            _ => {}
        }
        self.refill();
    }

    fn write_output_port(&mut self, value: u8) {
        self.output_port = value;
        if value & OUT_RESET == 0 {
            // Bit 0 drives the CPU's reset line (active low); it springs back once the
            // machine resets.
            self.reset_requested = true;
            self.output_port |= OUT_RESET;
        }
    }

    fn reply(&mut self, byte: u8, source: Source, timeout: bool) {
        if self.ctrl_q.len() < CTRL_QUEUE {
            self.ctrl_q.push_back(Entry {
                byte,
                source,
                timeout,
            });
        }
    }

    fn kbd_send(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.kbd_q.len() < KBD_QUEUE {
                self.kbd_q.push_back(b);
            }
            self.kbd.last_sent = b;
        }
    }

    fn keyboard_command(&mut self, value: u8) {
        // An argument byte (commands are 0xed and up; a command aborts a pending one).
        if let Some(cmd) = self.kbd.pending.take() {
            if value < KBD_SET_LEDS {
                match cmd {
                    KBD_SET_LEDS => self.kbd.leds = value & 7,
                    KBD_SCANCODE_SET if value == 0 => {
                        let set = if self.translation() && self.kbd.scancode_set == 2 {
                            KBD_ID_XLATED
                        } else {
                            self.kbd.scancode_set
                        };
                        self.kbd_send(&[KBD_ACK, set]);
                        return;
                    }
                    KBD_SCANCODE_SET if value <= 3 => self.kbd.scancode_set = value,
                    _ => {}
                }
                self.kbd_send(&[KBD_ACK]);
                return;
            }
        }
        match value {
            KBD_RESET => {
                self.kbd_q.clear();
                self.kbd = Keyboard::new();
                self.kbd_send(&[KBD_ACK, KBD_BAT_OK]);
            }
            KBD_RESEND => {
                let last = self.kbd.last_sent;
                self.kbd_send(&[last]);
            }
            KBD_IDENTIFY => {
                let second = if self.translation() {
                    KBD_ID_XLATED
                } else {
                    KBD_ID[1]
                };
                self.kbd_send(&[KBD_ACK, KBD_ID[0], second]);
            }
            KBD_ENABLE => {
                self.kbd.scanning = true;
                self.kbd_send(&[KBD_ACK]);
            }
            KBD_DISABLE => {
                self.kbd.scanning = false;
                self.kbd.defaults();
                self.kbd_send(&[KBD_ACK]);
            }
            KBD_DEFAULTS => {
                self.kbd.defaults();
                self.kbd_send(&[KBD_ACK]);
            }
            KBD_ECHO => self.kbd_send(&[KBD_ECHO]),
            KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_TYPEMATIC => {
                self.kbd.pending = Some(value);
                self.kbd_send(&[KBD_ACK]);
            }
            // Scancode-set-3 key attribute commands: acknowledged and ignored.
            0xf7..=0xfd => self.kbd_send(&[KBD_ACK]),
            // Unknown: ask for a resend.
            _ => self.kbd_send(&[KBD_RESEND]),
        }
    }

    /// Moves the next byte into an empty output buffer: controller replies first, then the
    /// keyboard's bytes unless its interface is disabled.
    fn refill(&mut self) {
        if self.out.is_none() {
            if let Some(e) = self.ctrl_q.pop_front() {
                self.out = Some(e);
            } else if self.ctr() & CTR_KBD_DISABLE == 0 {
                if let Some(byte) = self.kbd_q.pop_front() {
                    self.out = Some(Entry {
                        byte,
                        source: Source::Keyboard,
                        timeout: false,
                    });
                }
            }
        }
        self.sync();
    }

    /// The levels IRQ1 and IRQ12 should have.
    fn irq_levels(&self) -> (bool, bool) {
        let source = self.out.map(|e| e.source);
        let kbd = source.is_some_and(|s| s != Source::Aux) && self.ctr() & CTR_KBD_INT != 0;
        let aux = source == Some(Source::Aux) && self.ctr() & CTR_AUX_INT != 0;
        (kbd, aux)
    }

    fn sync(&mut self) {
        let (kbd, aux) = self.irq_levels();
        if kbd != self.kbd_level {
            self.kbd_level = kbd;
            self.kbd_irq.set_level(kbd);
        }
        if aux != self.aux_level {
            self.aux_level = aux;
            self.aux_irq.set_level(aux);
        }
    }
}

impl<K: IrqLine, A: IrqLine> PioDevice for I8042<K, A> {
    /// Offset 0 is port 0x60, offset 4 is port 0x64; other offsets read 0xff.
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        match offset {
            OFFSET_DATA => self.read_data() as u32,
            OFFSET_STATUS => self.read_status() as u32,
            _ => 0xff,
        }
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        match offset {
            OFFSET_DATA => self.write_data(value as u8),
            OFFSET_STATUS => self.write_command(value as u8),
            _ => {}
        }
    }
}

impl Default for I8042<crate::NoIrq, crate::NoIrq> {
    fn default() -> Self {
        Self::new(crate::NoIrq, crate::NoIrq)
    }
}

pub mod keys;
mod state;
pub use state::{I8042State, KeyboardState, OutputByte};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
