//! Port 0x80, the POST diagnostic port: BIOSes write progress codes there and Linux writes
//! it as an I/O delay. A sink that remembers the last code for debugging output.
//!
//! Reference: IBM PC/AT BIOS convention ("manufacturing test port"); reads return the last
//! value written, as on chipsets that latch it.

use crate::PioDevice;

/// The port.
pub const POST_PORT: u16 = 0x80;

/// The POST code latch.
#[derive(Clone, Debug, Default)]
pub struct PostCode {
    last: Option<u8>,
    writes: u64,
}

impl PostCode {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code written, if any.
    pub fn last(&self) -> Option<u8> {
        self.last
    }

    /// How many writes the port has seen.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Records a code.
    pub fn write_code(&mut self, code: u8) {
        self.last = Some(code);
        self.writes = self.writes.wrapping_add(1);
    }
}

impl PioDevice for PostCode {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        self.last.unwrap_or(0xff) as u32
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) {
        self.write_code(value as u8);
    }
}

/// Saved state of the POST port (snapshots and migration).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostCodeState {
    /// The last code written (reads return it), if any.
    pub last_code: Option<u8>,
    pub writes: u64,
}

impl ferrite_persist::Persist for PostCode {
    const SECTION: &'static str = "post";
    const VERSION: u32 = 1;
    type State = PostCodeState;

    fn save(&self) -> PostCodeState {
        PostCodeState { last_code: self.last, writes: self.writes }
    }

    /// Every value is one the latch can hold.
    fn restore(&mut self, s: PostCodeState) -> Result<(), ferrite_persist::RestoreError> {
        (self.last, self.writes) = (s.last_code, s.writes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_latch_reads_back_the_same() {
        let mut a = PostCode::new();
        PioDevice::write(&mut a, 0, 1, 0x3c);
        let mut b = PostCode::new();
        ferrite_persist::load(&mut b, &ferrite_persist::save(&a, "post")).unwrap();
        assert_eq!(PioDevice::read(&mut b, 0, 1), PioDevice::read(&mut a, 0, 1));
        assert_eq!(b.writes(), 1);
    }

    #[test]
    fn records_the_last_code() {
        let mut p = PostCode::new();
        assert_eq!(p.last(), None);
        assert_eq!(PioDevice::read(&mut p, 0, 1), 0xff);
        PioDevice::write(&mut p, 0, 1, 0x55);
        PioDevice::write(&mut p, 0, 4, 0x1234_56aa);
        assert_eq!(p.last(), Some(0xaa));
        assert_eq!(p.writes(), 2);
        assert_eq!(PioDevice::read(&mut p, 0, 1), 0xaa);
    }
}
