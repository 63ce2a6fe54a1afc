//! `info mtree`: the guest-physical memory map and the port I/O space in the layout of QEMU's
//! memory-region tree, one region a line (`START-END (prio P, KIND): NAME`, children indented
//! under their container), so scripts that read QEMU's output read ferrite's. The regions
//! are ferrite's own: RAM, the firmware ROMs, the PAM segments as the i440FX sets them now,
//! every device on the MMIO bus (the IOAPIC, PCI BARs) and the port bus, and the local APICs'
//! window.

use crate::Machine;
use ferrite_memory::{segment_range, LEGACY_SEGMENTS};
use std::fmt::Write;

const FOUR_GIB: u64 = 1 << 32;
/// The local APICs' and MSIs' window (QEMU's `apic-msi`).
const APIC_MSI: (u64, u64) = (0xfee0_0000, 0x10_0000);

/// One line for `[start, start + len)` (`len` 0: to the end of the 64-bit space), `depth`
/// levels deep (the address space's root is 1).
fn region(out: &mut String, depth: usize, start: u64, len: u64, prio: i32, kind: &str, name: &str) {
    let end = if len == 0 { u64::MAX } else { start.saturating_add(len - 1) };
    let _ = writeln!(out, "{:indent$}{start:016x}-{end:016x} (prio {prio}, {kind}): {name}", "", indent = 2 * depth);
}

impl Machine {
    pub(crate) fn info_mtree(&self) -> String {
        let mem = &self.board.mem;
        let mut out = String::from("address-space: memory\n");
        region(&mut out, 1, 0, 0, 0, "i/o", "system");
        let (below, above) = (mem.below_4g(), mem.above_4g());
        if below > 0 {
            region(&mut out, 2, 0, below, 0, "ram", &format!("alias ram-below-4g @pc.ram {:016x}-{:016x}", 0, below - 1));
        }
        if above > 0 {
            region(&mut out, 2, FOUR_GIB, above, 0, "ram", &format!("alias ram-above-4g @pc.ram {below:016x}-{:016x}", below + above - 1));
        }
        // The PCI address space under everything else: firmware and the BARs.
        region(&mut out, 2, 0, 0, -1, "i/o", "pci");
        let mmio = self.board.mmio.regions();
        let mut pci: Vec<(u64, u64, i32, &str, String)> = mem
            .roms()
            .into_iter()
            .map(|(base, len)| match base < ferrite_memory::LEGACY_END {
                true => (base, len, 1, "rom", "isa-bios".to_string()),
                false => (base, len, 0, "rom", "pc.bios".to_string()),
            })
            .collect();
        pci.extend(mmio.iter().filter(|r| r.2.starts_with("PCI")).map(|(b, l, n)| (*b, *l, 1, "i/o", n.clone())));
        pci.sort_by_key(|r| r.0);
        for (base, len, prio, kind, name) in &pci {
            region(&mut out, 3, *base, *len, *prio, kind, name);
        }
        // The BIOS window's segments, as the PAM registers route them.
        let mut segments: Vec<(u64, u64, usize)> = (0..LEGACY_SEGMENTS).map(|i| (segment_range(i).0, segment_range(i).1, i)).collect();
        segments.sort();
        for (base, len, index) in segments {
            let attr = mem.legacy_attr(index);
            let name = match (attr.read_ram, attr.write_ram) {
                (true, true) => "pam-ram @pc.ram",
                (true, false) => "pam-rom @pc.ram",
                _ => "pam-pci @pci",
            };
            region(&mut out, 2, base, len, 1, "i/o", &format!("alias {name} {base:016x}-{:016x}", base + len - 1));
        }
        for (base, len, name) in mmio.iter().filter(|r| !r.2.starts_with("PCI")) {
            region(&mut out, 2, *base, *len, 0, "i/o", name);
        }
        region(&mut out, 2, APIC_MSI.0, APIC_MSI.1, 4096, "i/o", "apic-msi");
        out.push_str("\naddress-space: I/O\n");
        region(&mut out, 1, 0, 0x1_0000, 0, "i/o", "io");
        for (base, len, name) in self.board.io.regions() {
            region(&mut out, 2, base, len, 0, "i/o", &name);
        }
        out.push('\n');
        out
    }
}
