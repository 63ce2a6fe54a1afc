//! Fakes for device tests: an interrupt line and an MSI sink that record what they saw, and a
//! [`PciLink`] over real guest memory.

use crate::pci::{MsiSink, PciLink};
use crate::IrqLine;
use ferrite_memory::{Dma, GuestMemory};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Records the level and how many times it was driven.
#[derive(Default)]
pub struct FakeLine {
    level: AtomicBool,
    drives: AtomicUsize,
}

impl FakeLine {
    pub fn level(&self) -> bool {
        self.level.load(Ordering::SeqCst)
    }
    pub fn drives(&self) -> usize {
        self.drives.load(Ordering::SeqCst)
    }
}

impl IrqLine for FakeLine {
    fn set_level(&self, level: bool) {
        self.level.store(level, Ordering::SeqCst);
        self.drives.fetch_add(1, Ordering::SeqCst);
    }
}

/// A cloneable handle on a [`FakeLine`], for devices that own their line by value: the test
/// keeps one clone to look at what the device drove.
#[derive(Clone, Default)]
pub struct SharedLine(pub Arc<FakeLine>);

impl SharedLine {
    pub fn level(&self) -> bool {
        self.0.level()
    }
    pub fn drives(&self) -> usize {
        self.0.drives()
    }
}

impl IrqLine for SharedLine {
    fn set_level(&self, level: bool) {
        self.0.set_level(level)
    }
}

/// Records every message.
#[derive(Default)]
pub struct FakeMsi(Mutex<Vec<(u64, u32)>>);

impl FakeMsi {
    /// The messages sent since the last call.
    pub fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl MsiSink for FakeMsi {
    fn send_msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

/// A link with fresh fakes and `ram` bytes of guest RAM at 0.
pub struct TestLink {
    pub line: Arc<FakeLine>,
    pub msi: Arc<FakeMsi>,
    pub mem: Arc<GuestMemory>,
}

impl TestLink {
    pub fn new(ram: u64) -> Self {
        TestLink {
            line: Arc::default(),
            msi: Arc::default(),
            mem: Arc::new(GuestMemory::new(ram, 0).unwrap()),
        }
    }

    pub fn link(&self) -> PciLink {
        PciLink { intx: self.line.clone(), msi: self.msi.clone(), dma: Dma::new(self.mem.clone()) }
    }
}

/// xorshift64*: deterministic pseudo-random numbers for the fuzz tests.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
