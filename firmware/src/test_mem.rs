//! Guest memory for the tests: the real shared [`GuestMemory`], laid out like the machine lays
//! it out, and a read-back helper.

use crate::e820::MemoryLayout;
use ferrite_memory::GuestMemory;

/// `ram_bytes` of RAM split around the PCI hole as [`MemoryLayout::new`] splits it.
pub fn ram(ram_bytes: u64) -> GuestMemory {
    let layout = MemoryLayout::new(ram_bytes);
    GuestMemory::new(layout.below_4g, layout.above_4g).expect("test guest memory")
}

pub fn u64_at(mem: &GuestMemory, addr: u64) -> u64 {
    mem.read_u64(addr).expect("test read inside RAM")
}

/// `mem.slice(addr, len)`: the bytes at `addr` if they are all RAM (what the old `VecMemory`
/// offered, so the loader tests read naturally).
pub trait Slice {
    fn slice(&self, addr: u64, len: usize) -> Option<Vec<u8>>;
}

impl Slice for GuestMemory {
    fn slice(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut b = vec![0; len];
        self.read(addr, &mut b).ok()?;
        Some(b)
    }
}
