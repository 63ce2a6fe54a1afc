//! Tests for the PVH loader (kept beside `pvh.rs`).

use super::*;
use crate::boot_state::{BOOT_CS, CR0_PE, CR0_PG};
use crate::test_mem::{self, Slice};

const MIB: u64 = 1 << 20;

/// A 64-bit ELF kernel like Linux's vmlinux: one PT_LOAD at 16 MiB (file bytes then bss) and a
/// PT_NOTE with an unrelated note followed by the Xen PHYS32_ENTRY note (8-byte descriptor).
fn vmlinux(with_note: bool) -> Vec<u8> {
    let mut notes = Vec::new();
    let mut note = |name: &[u8], kind: u32, desc: &[u8]| {
        notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        notes.extend_from_slice(&kind.to_le_bytes());
        notes.extend_from_slice(name);
        notes.resize(notes.len().next_multiple_of(4), 0);
        notes.extend_from_slice(desc);
        notes.resize(notes.len().next_multiple_of(4), 0);
    };
    note(b"GNU\0", 3, &[1, 2, 3, 4, 5]);
    if with_note {
        note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &0x100_0040u64.to_le_bytes());
    }
    let code: Vec<u8> = (0..0x300).map(|i| (i % 253) as u8).collect();
    let (ph_off, code_off) = (64u64, 0x200u64);
    let notes_off = code_off + code.len() as u64;
    let mut img = vec![0u8; notes_off as usize];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 2;
    img[5] = 1;
    img[0x20..0x28].copy_from_slice(&ph_off.to_le_bytes());
    img[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    img[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    let mut ph = |i: usize, kind: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
        let p = &mut img[ph_off as usize + 56 * i..][..56];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&(paddr | 0xffff_ffff_8000_0000).to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
    };
    ph(0, PT_LOAD, code_off, 16 * MIB, code.len() as u64, 0x1000);
    ph(1, PT_NOTE, notes_off, 0, notes.len() as u64, notes.len() as u64);
    img[code_off as usize..][..code.len()].copy_from_slice(&code);
    img.extend_from_slice(&notes);
    img
}

#[test]
fn loads_segments_and_fills_the_start_info() {
    let mem = test_mem::ram(128 * MIB);
    // Garbage where the bss goes: the loader must zero it.
    mem.write(16 * MIB + 0x300, &[0xaa; 0x100]).unwrap();
    let initrd = vec![0x5a; 10_000];
    let cfg = PvhConfig { cmdline: "console=ttyS0", initrd: Some(&initrd), acpi_rsdp_addr: Some(0xe0000) };
    let img = vmlinux(true);
    let setup = load_pvh(&mem, &img, &cfg).unwrap();
    assert_eq!(setup.rip, 0x100_0040);
    assert_eq!(setup.rbx, START_INFO_ADDR);
    assert_eq!(setup.cr0 & (CR0_PE | CR0_PG), CR0_PE, "protected mode, paging off");
    assert_eq!(setup.cs.selector, BOOT_CS);
    assert_eq!(mem.slice(16 * MIB, 0x300).unwrap(), img[0x200..0x500]);
    assert!(mem.slice(16 * MIB + 0x300, 0xd00).unwrap().iter().all(|&b| b == 0));
    let info = mem.slice(START_INFO_ADDR, 56).unwrap();
    let u32_at = |o| le::u32_at(&info, o).unwrap();
    let u64_at = |o| le::u64_at(&info, o).unwrap();
    assert_eq!((u32_at(0), u32_at(4), u32_at(12)), (START_INFO_MAGIC, 1, 1));
    assert_eq!(mem.slice(u64_at(24), 14).unwrap(), b"console=ttyS0\0");
    assert_eq!(u64_at(32), 0xe0000);
    let module = mem.slice(u64_at(16), 32).unwrap();
    let (rd_addr, rd_size) = (le::u64_at(&module, 0).unwrap(), le::u64_at(&module, 8).unwrap());
    assert_eq!(rd_size, 10_000);
    assert_eq!(rd_addr % 4096, 0);
    assert!(rd_addr + rd_size <= 128 * MIB && rd_addr >= 16 * MIB + 0x1000);
    assert_eq!(mem.slice(rd_addr, 10_000).unwrap(), initrd);
    let layout = MemoryLayout::new(128 * MIB);
    let e820 = layout.e820();
    assert_eq!(u32_at(48) as usize, e820.len());
    let map = mem.slice(u64_at(40), 24 * e820.len()).unwrap();
    for (i, e) in e820.iter().enumerate() {
        assert_eq!(map[24 * i..24 * i + 20], e.to_bytes());
    }
}

#[test]
fn refuses_what_it_cannot_boot() {
    let mem = test_mem::ram(128 * MIB);
    let cfg = PvhConfig { cmdline: "", initrd: None, acpi_rsdp_addr: None };
    assert!(matches!(load_pvh(&mem, &vmlinux(false), &cfg), Err(PvhError::NoPvhEntry)));
    assert!(matches!(load_pvh(&mem, b"MZ not elf", &cfg), Err(PvhError::NotElf)));
    let img = vmlinux(true);
    for cut in [10, 70, 0x250, img.len() - 3] {
        assert!(load_pvh(&mem, &img[..cut], &cfg).is_err(), "truncated at {cut}");
    }
    // A kernel bigger than the RAM it is loaded into.
    let small = test_mem::ram(16 * MIB);
    assert!(matches!(load_pvh(&small, &img, &cfg), Err(PvhError::SegmentOutsideRam { .. })));
}
