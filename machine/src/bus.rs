//! Address decoding for port I/O and MMIO: ranges map to device slots; overlapping
//! registrations are rejected (a wiring bug, reported at machine build time).

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("{what}: range {base:#x}+{len:#x} overlaps an existing device at {other:#x}")]
    Overlap { what: &'static str, base: u64, len: u64, other: u64 },
    #[error("{what}: empty range at {base:#x}")]
    Empty { what: &'static str, base: u64 },
}

/// A map from address ranges to device slots of type `T` (an index or a small enum).
#[derive(Debug)]
pub struct Bus<T: Copy> {
    /// base → (length, slot)
    ranges: BTreeMap<u64, (u64, T)>,
}

impl<T: Copy> Default for Bus<T> {
    fn default() -> Self {
        Bus { ranges: BTreeMap::new() }
    }
}

impl<T: Copy> Bus<T> {
    pub fn insert(&mut self, what: &'static str, base: u64, len: u64, slot: T) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty { what, base });
        }
        let end = base.saturating_add(len - 1);
        if let Some((&b, &(l, _))) = self.ranges.range(..=end).next_back() {
            if b.saturating_add(l - 1) >= base {
                return Err(BusError::Overlap { what, base, len, other: b });
            }
        }
        self.ranges.insert(base, (len, slot));
        Ok(())
    }

    /// The slot covering `addr` and the offset of `addr` within its range.
    #[inline]
    pub fn lookup(&self, addr: u64) -> Option<(T, u64)> {
        let (&b, &(l, slot)) = self.ranges.range(..=addr).next_back()?;
        (addr - b < l).then_some((slot, addr - b))
    }

    pub fn remove(&mut self, base: u64) -> Option<T> {
        self.ranges.remove(&base).map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_overlap() {
        let mut b = Bus::default();
        b.insert("uart", 0x3f8, 8, 1).unwrap();
        b.insert("pic", 0x20, 2, 2).unwrap();
        assert_eq!(b.lookup(0x3fd), Some((1, 5)));
        assert_eq!(b.lookup(0x400), None);
        assert_eq!(b.lookup(0x21), Some((2, 1)));
        assert!(matches!(b.insert("x", 0x3f0, 9, 3), Err(BusError::Overlap { other: 0x3f8, .. })));
        assert!(matches!(b.insert("x", 0x3ff, 1, 3), Err(BusError::Overlap { .. })));
        b.insert("x", 0x400, 1, 3).unwrap();
    }
}
