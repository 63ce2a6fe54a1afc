//! System control port A (port 0x92), the "fast A20 and reset" latch of PS/2-era chipsets.
//!
//! Reference: Intel 82371 PIIX3 datasheet section 4.7.1 ("Port 92h: system control
//! register"): bit 0 fast reset (a 0-to-1 transition resets the CPU), bit 1 fast A20 gate;
//! the other bits are kept as written here.

use crate::PioDevice;

/// The port.
pub const PORT92: u16 = 0x92;
/// Bit 0: fast reset, on a 0-to-1 transition.
pub const FAST_RESET: u8 = 0x01;
/// Bit 1: A20 gate.
pub const FAST_A20: u8 = 0x02;

/// Port 0x92.
#[derive(Clone, Debug, Default)]
pub struct Port92 {
    value: u8,
    reset_requested: bool,
}

impl Port92 {
    /// Power-on state: A20 gated off, no reset pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the register.
    pub fn read_reg(&self) -> u8 {
        self.value
    }

    /// Writes the register; a 0-to-1 transition of bit 0 requests a reset.
    pub fn write_reg(&mut self, value: u8) {
        if self.value & FAST_RESET == 0 && value & FAST_RESET != 0 {
            self.reset_requested = true;
        }
        self.value = value;
    }

    /// The A20 gate (bit 1).
    pub fn a20(&self) -> bool {
        self.value & FAST_A20 != 0
    }

    /// True once the guest asked for a fast reset.
    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }

    /// Returns and clears the reset request. The reset bit itself reads back until the guest
    /// or [`Port92::reset`] clears it.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_requested)
    }

    /// Machine reset: back to the power-on state.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl PioDevice for Port92 {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        self.read_reg() as u32
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) {
        self.write_reg(value as u8);
    }
}

/// Saved state of port 0x92 (snapshots and migration). After a restore the machine re-applies
/// [`Port92::a20`] to its memory map.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port92State {
    pub value: u8,
    /// A fast reset the guest asked for that the machine has not taken yet.
    pub reset_requested: bool,
}

impl ferrite_persist::Persist for Port92 {
    const SECTION: &'static str = "port92";
    const VERSION: u32 = 1;
    type State = Port92State;

    fn save(&self) -> Port92State {
        Port92State { value: self.value, reset_requested: self.reset_requested }
    }

    /// Every value is one the register can hold.
    fn restore(&mut self, s: Port92State) -> Result<(), ferrite_persist::RestoreError> {
        (self.value, self.reset_requested) = (s.value, s.reset_requested);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_port_carries_on_like_the_original() {
        let mut a = Port92::new();
        a.write_reg(FAST_A20 | FAST_RESET);
        let mut b = Port92::new();
        ferrite_persist::load(&mut b, &ferrite_persist::save(&a, "port92")).unwrap();
        assert!(b.a20() && b.reset_requested());
        assert_eq!(b.read_reg(), a.read_reg());
        // No new edge on bit 0 in either.
        a.take_reset_request();
        b.take_reset_request();
        a.write_reg(FAST_A20 | FAST_RESET);
        b.write_reg(FAST_A20 | FAST_RESET);
        assert_eq!((a.reset_requested(), b.reset_requested()), (false, false));
    }

    #[test]
    fn a20_bit() {
        let mut p = Port92::new();
        assert!(!p.a20());
        // The classic "fast A20" sequence: in al,0x92; or al,2; out 0x92,al.
        let v = p.read_reg();
        p.write_reg(v | FAST_A20);
        assert!(p.a20());
        assert_eq!(p.read_reg(), FAST_A20);
        assert!(!p.reset_requested());
        p.write_reg(0);
        assert!(!p.a20());
    }

    #[test]
    fn reset_on_rising_bit0() {
        let mut p = Port92::new();
        p.write_reg(FAST_A20 | FAST_RESET);
        assert!(p.reset_requested());
        assert!(p.take_reset_request());
        assert!(!p.reset_requested());
        // Still set: no new edge, no new request.
        p.write_reg(FAST_A20 | FAST_RESET);
        assert!(!p.reset_requested());
        p.write_reg(FAST_A20);
        p.write_reg(FAST_A20 | FAST_RESET);
        assert!(p.take_reset_request());
        p.reset();
        assert_eq!(p.read_reg(), 0);
    }

    #[test]
    fn any_value_any_width() {
        let mut p = Port92::new();
        for v in [0u32, 0xff, 0xffff_ffff, 0x1234_5602] {
            PioDevice::write(&mut p, 0, 4, v);
            assert_eq!(PioDevice::read(&mut p, 3, 2), v & 0xff);
        }
    }
}
