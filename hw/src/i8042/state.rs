//! Saved state of the 8042 and its keyboard (snapshots and migration).
//!
//! The A20 gate lives in the output port: after a restore the machine re-applies
//! [`I8042::a20`] to its memory map, as it does after a guest write.

use super::*;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// A byte for the output buffer with who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputByte {
    pub byte: u8,
    pub source: Source,
    /// Status bit 6 (transmission timeout) goes with it.
    pub timeout: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyboardState {
    pub scanning: bool,
    /// A keyboard command (0xed, 0xf0 or 0xf3) waiting for its argument byte.
    pub pending_command: Option<u8>,
    pub leds: u8,
    pub scancode_set: u8,
    /// The last byte sent, for 0xfe (resend).
    pub last_sent: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: Vec<u8>,
    pub system_flag: bool,
    /// Status bit 3: the last write went to the command port.
    pub last_write_was_command: bool,
    pub output_port: u8,
    /// The output buffer (port 0x60).
    pub output_buffer: Option<OutputByte>,
    /// Controller replies queued behind the output buffer.
    pub controller_queue: Vec<OutputByte>,
    /// Bytes the keyboard has buffered.
    pub keyboard_queue: Vec<u8>,
    /// A controller command waiting for its data byte.
    pub pending_command: Option<u8>,
    pub keyboard: KeyboardState,
    /// A system reset the guest asked for that the machine has not taken yet.
    pub reset_requested: bool,
}

impl From<Entry> for OutputByte {
    fn from(e: Entry) -> Self {
        OutputByte { byte: e.byte, source: e.source, timeout: e.timeout }
    }
}

impl From<OutputByte> for Entry {
    fn from(o: OutputByte) -> Self {
        Entry { byte: o.byte, source: o.source, timeout: o.timeout }
    }
}

impl<K: IrqLine, A: IrqLine> Persist for I8042<K, A> {
    const SECTION: &'static str = "i8042";
    const VERSION: u32 = 1;
    type State = I8042State;

    fn save(&self) -> I8042State {
        I8042State {
            ram: self.ram.to_vec(),
            system_flag: self.sys_flag,
            last_write_was_command: self.last_was_command,
            output_port: self.output_port,
            output_buffer: self.out.map(Into::into),
            controller_queue: self.ctrl_q.iter().map(|&e| e.into()).collect(),
            keyboard_queue: self.kbd_q.iter().copied().collect(),
            pending_command: self.pending,
            keyboard: KeyboardState {
                scanning: self.kbd.scanning,
                pending_command: self.kbd.pending,
                leds: self.kbd.leds,
                scancode_set: self.kbd.scancode_set,
                last_sent: self.kbd.last_sent,
            },
            reset_requested: self.reset_requested,
        }
    }

    fn restore(&mut self, s: I8042State) -> Result<(), RestoreError> {
        let ram: [u8; 32] =
            s.ram.as_slice().try_into().map_err(|_| RestoreError::invalid("ram", format!("{} bytes, not 32", s.ram.len())))?;
        check_max("controller_queue", s.controller_queue.len(), CTRL_QUEUE)?;
        check_max("keyboard_queue", s.keyboard_queue.len(), KBD_QUEUE)?;
        if let Some(cmd) = s.pending_command {
            if !matches!(cmd, CMD_WRITE_RAM..=0x7f | CMD_WRITE_OUTPUT..=CMD_WRITE_AUX) {
                return Err(RestoreError::invalid("pending_command", format!("{cmd:#04x} takes no data byte")));
            }
        }
        let k = &s.keyboard;
        if let Some(cmd) = k.pending_command {
            if !matches!(cmd, KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_TYPEMATIC) {
                return Err(RestoreError::invalid("keyboard.pending_command", format!("{cmd:#04x} takes no argument")));
            }
        }
        check_max("keyboard.leds", k.leds, 7)?;
        if !(1..=3).contains(&k.scancode_set) {
            return Err(RestoreError::invalid("keyboard.scancode_set", format!("{} is not 1, 2 or 3", k.scancode_set)));
        }
        self.ram = ram;
        self.sys_flag = s.system_flag;
        self.last_was_command = s.last_write_was_command;
        self.output_port = s.output_port;
        self.out = s.output_buffer.map(Into::into);
        self.ctrl_q = s.controller_queue.into_iter().map(Into::into).collect();
        self.kbd_q = s.keyboard_queue.into();
        self.pending = s.pending_command;
        self.kbd = Keyboard {
            scanning: k.scanning,
            pending: k.pending_command,
            leds: k.leds,
            scancode_set: k.scancode_set,
            last_sent: k.last_sent,
        };
        self.reset_requested = s.reset_requested;
        // Drive both lines whatever the fresh device had: sync() then finds them current.
        (self.kbd_level, self.aux_level) = self.irq_levels();
        self.kbd_irq.set_level(self.kbd_level);
        self.aux_irq.set_level(self.aux_level);
        Ok(())
    }
}
