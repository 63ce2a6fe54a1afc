//! QEMU's `isa-debug-exit` device: a guest write of value V asks the emulator to exit with
//! status (V << 1) | 1, so a test guest can report success or failure.
//!
//! Reference: QEMU's documented `-device isa-debug-exit,iobase=...,iosize=...` interface
//! (defaults iobase 0x501, iosize 2). The host process status keeps only the low 8 bits of
//! the code; the device reports the full value truncated to 32 bits as QEMU's `exit()` does.

use crate::PioDevice;

/// Default base port.
pub const DEFAULT_IOBASE: u16 = 0x501;
/// Default window size in bytes.
pub const DEFAULT_IOSIZE: u16 = 2;

/// The debug-exit port window.
#[derive(Clone, Debug)]
pub struct DebugExit {
    iobase: u16,
    iosize: u16,
    exit_code: Option<u32>,
}

impl DebugExit {
    /// A device at `iobase` spanning `iosize` ports (clamped to 1-4, the widest access).
    pub fn new(iobase: u16, iosize: u16) -> Self {
        DebugExit {
            iobase,
            iosize: iosize.clamp(1, 4),
            exit_code: None,
        }
    }

    /// Base port, for the machine's bus registration.
    pub fn iobase(&self) -> u16 {
        self.iobase
    }

    /// Number of ports, for the machine's bus registration.
    pub fn iosize(&self) -> u16 {
        self.iosize
    }

    /// The exit status the guest requested, if it wrote the port.
    pub fn exit_code(&self) -> Option<u32> {
        self.exit_code
    }

    /// Records a guest write of `value` (already masked to the access width by the bus).
    pub fn write_value(&mut self, value: u32) {
        self.exit_code = Some((value << 1) | 1);
    }
}

/// Saved state of the debug-exit port (snapshots and migration). The window is configuration,
/// carried only so that a snapshot taken with another window is refused.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExitState {
    pub iobase: u16,
    pub iosize: u16,
    /// The exit status the guest requested, if it wrote the port.
    pub exit_code: Option<u32>,
}

impl ferrite_persist::Persist for DebugExit {
    const SECTION: &'static str = "debug-exit";
    const VERSION: u32 = 1;
    type State = DebugExitState;

    fn save(&self) -> DebugExitState {
        DebugExitState { iobase: self.iobase, iosize: self.iosize, exit_code: self.exit_code }
    }

    fn restore(&mut self, s: DebugExitState) -> Result<(), ferrite_persist::RestoreError> {
        use ferrite_persist::RestoreError;
        if s.iobase != self.iobase {
            return Err(RestoreError::invalid("iobase", format!("saved at {:#x}, this machine has it at {:#x}", s.iobase, self.iobase)));
        }
        if s.iosize != self.iosize {
            return Err(RestoreError::invalid("iosize", format!("saved with {} ports, this machine has {}", s.iosize, self.iosize)));
        }
        self.exit_code = s.exit_code;
        Ok(())
    }
}

impl Default for DebugExit {
    fn default() -> Self {
        Self::new(DEFAULT_IOBASE, DEFAULT_IOSIZE)
    }
}

impl PioDevice for DebugExit {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        0
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        if offset >= self.iosize {
            return;
        }
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        self.write_value(value & mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_restored_and_another_window_refused() {
        let mut a = DebugExit::default();
        PioDevice::write(&mut a, 0, 1, 0x10);
        let saved = ferrite_persist::save(&a, "debug-exit");
        let mut b = DebugExit::default();
        ferrite_persist::load(&mut b, &saved).unwrap();
        assert_eq!(b.exit_code(), Some(0x21));
        let mut other = DebugExit::new(0xf4, 4);
        let e = ferrite_persist::load(&mut other, &saved).unwrap_err().to_string();
        assert!(e.contains("iobase"), "{e}");
        assert_eq!(other.exit_code(), None);
    }

    #[test]
    fn write_requests_exit_code() {
        let mut d = DebugExit::default();
        assert_eq!((d.iobase(), d.iosize()), (0x501, 2));
        assert_eq!(d.exit_code(), None);
        // The usual test-harness convention: 0x10 -> 33 means "pass".
        PioDevice::write(&mut d, 0, 1, 0x10);
        assert_eq!(d.exit_code(), Some(0x21));
        PioDevice::write(&mut d, 0, 1, 0);
        assert_eq!(d.exit_code(), Some(1));
    }

    #[test]
    fn width_masks_and_wraps() {
        let mut d = DebugExit::new(0xf4, 4);
        PioDevice::write(&mut d, 0, 1, 0x1ff);
        assert_eq!(d.exit_code(), Some(0x1ff));
        PioDevice::write(&mut d, 0, 2, 0xffff_ffff);
        assert_eq!(d.exit_code(), Some(0x1_ffff));
        PioDevice::write(&mut d, 0, 4, 0xffff_ffff);
        assert_eq!(d.exit_code(), Some(0xffff_ffff));
        assert_eq!(PioDevice::read(&mut d, 0, 4), 0);
    }

    #[test]
    fn iosize_is_clamped_and_out_of_window_ignored() {
        let mut d = DebugExit::new(0x501, 0);
        assert_eq!(d.iosize(), 1);
        PioDevice::write(&mut d, 1, 1, 5);
        assert_eq!(d.exit_code(), None);
        assert_eq!(DebugExit::new(0, 100).iosize(), 4);
    }
}
