//! The PC memory map: how RAM is split around the PCI hole, and the BIOS e820 table that
//! describes it to the guest.
//!
//! The split follows QEMU's i440FX `pc` machine, so guests see the same map as there:
//! RAM sizes below 3.5 GiB are mapped entirely below 4 GiB (`[0, ram)`); from 3.5 GiB on, only
//! the first 3 GiB stay low and the rest is mapped from 4 GiB up, which keeps a 1 GiB window
//! `[0xC000_0000, 0xFEC0_0000)` free for 32-bit PCI BARs. Either way the PCI hole starts where low
//! RAM ends (`below_4g`) and runs up to the IOAPIC at 0xFEC0_0000.
//!
//! The e820 table (ACPI 6.5 §15, "System Address Map Interfaces"):
//!
//! | range                           | type     | why                                            |
//! |---------------------------------|----------|------------------------------------------------|
//! | 0 – 0x9FC00                     | RAM      | conventional memory                            |
//! | 0x9FC00 – 0xA0000               | reserved | EBDA (1 KiB, as SeaBIOS reserves it)           |
//! | 0xE0000 – 0x100000              | reserved | ACPI tables (direct boot) and the BIOS ROM     |
//! | 1 MiB – `below_4g`              | RAM      | extended memory                                |
//! | 0xFEC00000 – 4 GiB              | reserved | IOAPIC, HPET, LAPIC and the BIOS flash alias   |
//! | 4 GiB – 4 GiB + `above_4g`      | RAM      | memory above the PCI hole                      |
//!
//! 0xA0000–0xDFFFF (VGA window and option ROMs) is left out of the table, as on real PCs.
//! The reserved entry at 0xE0000 starts 64 KiB lower than the classic 0xF0000 BIOS segment
//! because [`crate::acpi`] places its tables for direct kernel boot at 0xE0000; the RSDP must lie
//! in 0xE0000–0xFFFFF for the OS to find it, and marking the range reserved keeps the OS from
//! treating it as RAM.

/// Where RAM above the PCI hole starts.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// End of conventional memory usable by the OS (start of the 1 KiB EBDA).
pub const EBDA_START: u64 = 0x9_fc00;
/// End of the EBDA / start of the VGA window.
pub const VGA_START: u64 = 0xa_0000;
/// Start of the reserved BIOS area (ACPI tables at 0xE0000, BIOS ROM at 0xF0000).
pub const BIOS_AREA_START: u64 = 0xe_0000;
/// Start of extended memory.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// IOAPIC MMIO base; the reserved region from here to 4 GiB also holds HPET, LAPIC and BIOS flash.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// RAM sizes from this one on are split at [`LOW_RAM_SPLIT`] (QEMU pc: `max-ram-below-4g`).
pub const LOW_RAM_LIMIT: u64 = 0xe000_0000;
/// Low RAM size when RAM is split (QEMU pc with gigabyte alignment).
pub const LOW_RAM_SPLIT: u64 = 0xc000_0000;
/// Most entries the zero page's e820 table holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX_ZEROPAGE_ENTRIES: usize = 128;

/// How much RAM sits below and above 4 GiB for a given RAM size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total RAM in bytes.
    pub ram_size: u64,
    /// RAM mapped at `[0, below_4g)`.
    pub below_4g: u64,
    /// RAM mapped at `[4 GiB, 4 GiB + above_4g)`.
    pub above_4g: u64,
}

impl MemoryLayout {
    /// The QEMU-pc-like split for `ram_bytes` of RAM (see the module documentation).
    pub fn new(ram_bytes: u64) -> Self {
        let below_4g = if ram_bytes >= LOW_RAM_LIMIT {
            LOW_RAM_SPLIT
        } else {
            ram_bytes
        };
        MemoryLayout {
            ram_size: ram_bytes,
            below_4g,
            above_4g: ram_bytes - below_4g,
        }
    }

    /// The layout `mem` actually has (its own split around the PCI hole, which the machine
    /// made with [`MemoryLayout::new`]).
    pub fn of(mem: &ferrite_memory::GuestMemory) -> Self {
        MemoryLayout { ram_size: mem.ram_size(), below_4g: mem.below_4g(), above_4g: mem.above_4g() }
    }

    /// First address of the 32-bit PCI MMIO hole (the end of low RAM).
    pub fn pci_hole_start(&self) -> u64 {
        self.below_4g
    }

    /// The guest-physical RAM regions `(start, size)` the machine must map, in address order.
    pub fn ram_regions(&self) -> Vec<(u64, u64)> {
        let mut regions = vec![(0, self.below_4g)];
        if self.above_4g > 0 {
            regions.push((HIGH_RAM_START, self.above_4g));
        }
        regions
    }

    /// The BIOS e820 map for this layout, sorted by address, with no overlaps.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut map = Vec::with_capacity(6);
        let low = self.below_4g;
        map.push(E820Entry::new(0, low.min(EBDA_START), E820Type::Ram));
        if low > EBDA_START {
            map.push(E820Entry::new(EBDA_START, VGA_START - EBDA_START, E820Type::Reserved));
        }
        map.push(E820Entry::new(
            BIOS_AREA_START,
            HIGH_MEMORY_START - BIOS_AREA_START,
            E820Type::Reserved,
        ));
        if low > HIGH_MEMORY_START {
            map.push(E820Entry::new(HIGH_MEMORY_START, low - HIGH_MEMORY_START, E820Type::Ram));
        }
        map.push(E820Entry::new(IOAPIC_START, HIGH_RAM_START - IOAPIC_START, E820Type::Reserved));
        if self.above_4g > 0 {
            map.push(E820Entry::new(HIGH_RAM_START, self.above_4g, E820Type::Ram));
        }
        map.retain(|e| e.size > 0);
        map
    }

    /// Conventional memory in KiB below 1 MiB usable by the OS (multiboot `mem_lower`).
    pub fn mem_lower_kib(&self) -> u32 {
        (self.below_4g.min(EBDA_START) / 1024) as u32
    }

    /// Contiguous RAM in KiB from 1 MiB up to the first hole (multiboot `mem_upper`).
    pub fn mem_upper_kib(&self) -> u32 {
        (self.below_4g.saturating_sub(HIGH_MEMORY_START) / 1024).min(u32::MAX as u64) as u32
    }
}

/// Address range type of an e820 entry (ACPI 6.5 table 15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    /// AddressRangeMemory: usable RAM.
    Ram = 1,
    /// AddressRangeReserved.
    Reserved = 2,
    /// AddressRangeACPI: ACPI tables, reclaimable after reading.
    Acpi = 3,
    /// AddressRangeNVS.
    Nvs = 4,
    /// AddressRangeUnusable.
    Unusable = 5,
}

/// One e820 entry: 20 bytes in the zero page (`struct boot_e820_entry`), 24 in a multiboot map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte of the range.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Type,
}

impl E820Entry {
    /// An entry for `[addr, addr + size)`.
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        E820Entry { addr, size, kind }
    }

    /// The 20-byte `{u64 addr, u64 size, u32 type}` little-endian form.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn assert_sorted_disjoint(map: &[E820Entry]) {
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{map:x?}");
        }
    }

    #[test]
    fn small_ram_is_all_low() {
        let l = MemoryLayout::new(512 * MIB);
        assert_eq!((l.below_4g, l.above_4g), (512 * MIB, 0));
        assert_eq!(l.pci_hole_start(), 512 * MIB);
        assert_eq!(l.ram_regions(), vec![(0, 512 * MIB)]);
        let map = l.e820();
        assert_eq!(
            map,
            vec![
                E820Entry::new(0, 0x9fc00, E820Type::Ram),
                E820Entry::new(0x9fc00, 0x400, E820Type::Reserved),
                E820Entry::new(0xe0000, 0x20000, E820Type::Reserved),
                E820Entry::new(MIB, 511 * MIB, E820Type::Ram),
                E820Entry::new(0xfec0_0000, 0x140_0000, E820Type::Reserved),
            ]
        );
        assert_eq!(l.mem_lower_kib(), 639);
        assert_eq!(l.mem_upper_kib(), 511 * 1024);
    }

    #[test]
    fn just_below_split_stays_low() {
        let l = MemoryLayout::new(LOW_RAM_LIMIT - MIB);
        assert_eq!((l.below_4g, l.above_4g), (LOW_RAM_LIMIT - MIB, 0));
    }

    #[test]
    fn large_ram_splits_at_3g() {
        let l = MemoryLayout::new(8 * GIB);
        assert_eq!((l.below_4g, l.above_4g), (3 * GIB, 5 * GIB));
        assert_eq!(l.ram_regions(), vec![(0, 3 * GIB), (4 * GIB, 5 * GIB)]);
        let map = l.e820();
        assert_sorted_disjoint(&map);
        let ram: u64 = map.iter().filter(|e| e.kind == E820Type::Ram).map(|e| e.size).sum();
        // Everything but the EBDA and the 640K-1M window is reported as RAM.
        assert_eq!(ram, 8 * GIB - (MIB - 0x9fc00));
        assert_eq!(map.last().unwrap(), &E820Entry::new(4 * GIB, 5 * GIB, E820Type::Ram));
    }

    #[test]
    fn tiny_ram_has_no_empty_entries() {
        let map = MemoryLayout::new(0x8000).e820();
        assert!(map.iter().all(|e| e.size > 0));
        assert_eq!(map[0], E820Entry::new(0, 0x8000, E820Type::Ram));
        assert_sorted_disjoint(&map);
        assert!(MemoryLayout::new(0).e820().iter().all(|e| e.kind != E820Type::Ram));
    }

    #[test]
    fn entry_bytes() {
        let b = E820Entry::new(0x1122_3344_5566_7788, 0x10, E820Type::Acpi).to_bytes();
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[8..16], &0x10u64.to_le_bytes());
        assert_eq!(&b[16..20], &3u32.to_le_bytes());
    }
}
