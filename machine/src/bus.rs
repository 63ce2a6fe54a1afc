//! Address decoding for port I/O and MMIO: registered ranges map to devices; overlapping
//! registrations are rejected. Devices are added, moved and removed while the machine runs
//! (PCI BARs, the PM I/O block), from any thread: lookups take a read lock, changes a write
//! lock, and the device's own lock is taken only for the register access.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("{what}: range {base:#x}+{len:#x} overlaps an existing device at {other:#x}")]
    Overlap { what: String, base: u64, len: u64, other: u64 },
    #[error("{what}: empty range at {base:#x}")]
    Empty { what: String, base: u64 },
}

/// A device as the buses see it. Called from any vCPU thread; the device locks itself.
/// `addr` is the absolute port or physical address, `offset` the address within the range
/// the device was registered at; `size` is 1, 2, 4 or 8.
pub trait BusDevice: Send + Sync {
    fn read(&self, addr: u64, offset: u64, size: u8) -> u64;
    fn write(&self, addr: u64, offset: u64, size: u8, value: u64);
}

/// A map from named address ranges to values of type `T`.
#[derive(Debug)]
pub struct RangeMap<T: Clone> {
    /// base → (length, name, value); the names are for `info mtree`.
    ranges: BTreeMap<u64, (u64, String, T)>,
}

impl<T: Clone> Default for RangeMap<T> {
    fn default() -> Self {
        RangeMap { ranges: BTreeMap::new() }
    }
}

impl<T: Clone> RangeMap<T> {
    pub fn insert(&mut self, what: &str, base: u64, len: u64, value: T) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty { what: what.into(), base });
        }
        let end = base.saturating_add(len - 1);
        if let Some((&b, &(l, _, _))) = self.ranges.range(..=end).next_back() {
            if b.saturating_add(l - 1) >= base {
                return Err(BusError::Overlap { what: what.into(), base, len, other: b });
            }
        }
        self.ranges.insert(base, (len, what.into(), value));
        Ok(())
    }

    /// The value covering `addr`, the base of its range and the offset of `addr` within it.
    #[inline]
    pub fn lookup(&self, addr: u64) -> Option<(&T, u64)> {
        let (&b, (l, _, value)) = self.ranges.range(..=addr).next_back()?;
        (addr - b < *l).then_some((value, addr - b))
    }

    pub fn remove(&mut self, base: u64) -> Option<T> {
        self.ranges.remove(&base).map(|(_, _, v)| v)
    }

    /// Every range as (base, length, name), by address.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.ranges.iter().map(|(&b, (l, name, _))| (b, *l, name.as_str()))
    }
}

/// One address space (port I/O or memory) of devices.
#[derive(Default)]
pub struct Bus {
    map: RwLock<RangeMap<Arc<dyn BusDevice>>>,
}

impl Bus {
    pub fn insert(&self, what: &str, base: u64, len: u64, dev: Arc<dyn BusDevice>) -> Result<(), BusError> {
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(what, base, len, dev)
    }

    pub fn remove(&self, base: u64) -> Option<Arc<dyn BusDevice>> {
        self.map.write().unwrap_or_else(|e| e.into_inner()).remove(base)
    }

    /// Moves the range at `old_base` to `new_base` (length `len`); the device stays.
    pub fn relocate(&self, what: &str, old_base: u64, new_base: u64, len: u64) -> Result<(), BusError> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let Some(dev) = map.remove(old_base) else { return Ok(()) };
        match map.insert(what, new_base, len, dev.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Keep the device where it was rather than losing it.
                map.insert(what, old_base, len, dev).ok();
                Err(e)
            }
        }
    }

    /// Every device's range as (base, length, name), by address.
    pub fn regions(&self) -> Vec<(u64, u64, String)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.ranges().map(|(b, l, n)| (b, l, n.to_string())).collect()
    }

    fn device(&self, addr: u64) -> Option<(Arc<dyn BusDevice>, u64)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.lookup(addr).map(|(d, off)| (d.clone(), off))
    }

    /// Reads `size` bytes at `addr`; `None` when no device is there.
    pub fn read(&self, addr: u64, size: u8) -> Option<u64> {
        let (dev, off) = self.device(addr)?;
        Some(dev.read(addr, off, size))
    }

    /// Writes `size` bytes at `addr`; `false` when no device is there.
    pub fn write(&self, addr: u64, size: u8, value: u64) -> bool {
        match self.device(addr) {
            Some((dev, off)) => {
                dev.write(addr, off, size, value);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lookup_and_overlap() {
        let mut b = RangeMap::default();
        b.insert("uart", 0x3f8, 8, 1).unwrap();
        b.insert("pic", 0x20, 2, 2).unwrap();
        assert_eq!(b.lookup(0x3fd), Some((&1, 5)));
        assert_eq!(b.lookup(0x400), None);
        assert_eq!(b.lookup(0x21), Some((&2, 1)));
        assert!(matches!(b.insert("x", 0x3f0, 9, 3), Err(BusError::Overlap { other: 0x3f8, .. })));
        assert!(matches!(b.insert("x", 0x3ff, 1, 3), Err(BusError::Overlap { .. })));
        b.insert("x", 0x400, 1, 3).unwrap();
        let names: Vec<_> = b.ranges().collect();
        assert_eq!(names, [(0x20, 2, "pic"), (0x3f8, 8, "uart"), (0x400, 1, "x")]);
    }

    struct Reg(Mutex<u64>);
    impl BusDevice for Reg {
        fn read(&self, _: u64, offset: u64, _: u8) -> u64 {
            *self.0.lock().unwrap() + offset
        }
        fn write(&self, _: u64, _: u64, _: u8, value: u64) {
            *self.0.lock().unwrap() = value;
        }
    }

    #[test]
    fn devices_move_at_run_time() {
        let bus = Bus::default();
        bus.insert("reg", 0x1000, 0x10, Arc::new(Reg(Mutex::new(0)))).unwrap();
        assert!(bus.write(0x1004, 4, 40));
        assert_eq!(bus.read(0x1004, 4), Some(44));
        bus.relocate("reg", 0x1000, 0x2000, 0x10).unwrap();
        assert_eq!(bus.read(0x1004, 4), None);
        assert_eq!(bus.read(0x2001, 4), Some(41));
        bus.insert("other", 0x3000, 0x10, Arc::new(Reg(Mutex::new(7)))).unwrap();
        assert!(bus.relocate("reg", 0x2000, 0x3008, 0x10).is_err(), "overlap refused");
        assert_eq!(bus.read(0x2000, 4), Some(40), "device kept at its old place");
        assert!(bus.remove(0x2000).is_some());
        assert!(!bus.write(0x2000, 4, 1));
    }
}
