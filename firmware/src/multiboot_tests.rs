//! Tests for the multiboot loader (kept beside `multiboot.rs`).

use super::*;
use crate::boot_state::{BOOT_CS, CR0_PG};
use crate::e820::MemoryLayout;
use crate::test_mem::{self, Slice};
use ferrite_memory::GuestMemory;

const MIB: u64 = 1 << 20;

fn mb_header(flags: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&(0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags)).to_le_bytes());
    h
}

fn put32(v: &mut [u8], off: usize, x: u32) {
    v[off..off + 4].copy_from_slice(&x.to_le_bytes());
}

/// An ELF32 image: one PT_LOAD at paddr 0x100000 (vaddr 0xC0100000) with 0x100 bytes of code
/// from file offset 0x1000 and 0x400 bytes of memory, and a multiboot header at 0x1000.
fn elf32() -> Vec<u8> {
    let mut img = vec![0u8; 0x1100];
    img[0..4].copy_from_slice(b"\x7fELF");
    img[4] = 1; // ELFCLASS32
    img[5] = 1; // little-endian
    img[6] = 1;
    img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    img[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    put32(&mut img, 24, 0xc010_0010); // e_entry (virtual)
    put32(&mut img, 28, 52); // e_phoff
    img[42..44].copy_from_slice(&32u16.to_le_bytes());
    img[44..46].copy_from_slice(&2u16.to_le_bytes());
    // PT_LOAD
    let ph = 52;
    put32(&mut img, ph, 1);
    put32(&mut img, ph + 4, 0x1000);
    put32(&mut img, ph + 8, 0xc010_0000);
    put32(&mut img, ph + 12, 0x10_0000);
    put32(&mut img, ph + 16, 0x100);
    put32(&mut img, ph + 20, 0x400);
    // PT_NOTE, ignored
    put32(&mut img, ph + 32, 4);
    let h = mb_header(HF_PAGE_ALIGN | HF_MEMORY_INFO);
    img[0x1000..0x100c].copy_from_slice(&h);
    for b in &mut img[0x100c..0x1100] {
        *b = 0x90;
    }
    img
}

fn read32(m: &GuestMemory, addr: u64) -> u32 {
    u32::from_le_bytes(m.slice(addr, 4).unwrap().try_into().unwrap())
}

fn cstr(m: &GuestMemory, addr: u64) -> String {
    let mut s = Vec::new();
    let mut a = addr;
    while let Some(&[b]) = m.slice(a, 1).as_deref() {
        if b == 0 {
            break;
        }
        s.push(b);
        a += 1;
    }
    String::from_utf8(s).unwrap()
}

#[test]
fn finds_header() {
    let img = elf32();
    assert_eq!(find_header(&img).unwrap(), MultibootHeader { offset: 0x1000, flags: 3 });
    let mut bad = img.clone();
    bad[0x1008] ^= 1;
    assert!(matches!(find_header(&bad), Err(MultibootError::BadChecksum { offset: 0x1000 })));
    assert!(matches!(find_header(&[0u8; 100]), Err(MultibootError::NoHeader)));
    // Beyond 8 KiB it does not count.
    let mut far = vec![0u8; 0x2100];
    far[0x2000..0x200c].copy_from_slice(&mb_header(0));
    assert!(matches!(find_header(&far), Err(MultibootError::NoHeader)));
    // Not 4-byte aligned does not count either.
    let mut odd = vec![0u8; 64];
    odd[2..14].copy_from_slice(&mb_header(0));
    assert!(matches!(find_header(&odd), Err(MultibootError::NoHeader)));
}

#[test]
fn loads_elf32_with_modules() {
    let img = elf32();
    let mem = test_mem::ram(64 * MIB);
    // Dirty the bss area to check it is zeroed.
    mem.write(0x10_0100, &[0xee; 0x300]).unwrap();
    let initrd = vec![0xab; 5000];
    let mods = [
        MultibootModule { data: &initrd, cmdline: "initrd.img" },
        MultibootModule { data: b"second", cmdline: "two args" },
    ];
    let cfg = MultibootConfig { cmdline: "kernel.elf console=com1", modules: &mods };
    let boot = load_multiboot(&mem, &img, &cfg).unwrap();

    assert_eq!(boot.entry, 0x10_0010, "virtual entry translated to physical");
    assert_eq!((boot.kernel_start, boot.kernel_end), (0x10_0000, 0x10_0400));
    assert_eq!(mem.slice(0x10_0000, 0x100).unwrap(), &img[0x1000..0x1100]);
    assert!(mem.slice(0x10_0100, 0x300).unwrap().iter().all(|&b| b == 0));

    let s = boot.setup;
    assert_eq!(s.rax, 0x2bad_b002);
    assert_eq!(s.rbx, INFO_ADDR);
    assert_eq!(s.rip, 0x10_0010);
    assert_eq!(s.mode, CpuMode::Protected32);
    assert_eq!(s.cr0 & CR0_PG, 0);
    assert_eq!(s.cs.selector, BOOT_CS);
    assert!(s.cs.db);

    let i = INFO_ADDR;
    let flags = read32(&mem, i);
    assert_eq!(flags, INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME);
    assert_eq!(read32(&mem, i + 4), 639);
    assert_eq!(read32(&mem, i + 8), 63 * 1024);
    assert_eq!(cstr(&mem, read32(&mem, i + 16) as u64), "kernel.elf console=com1");
    assert_eq!(cstr(&mem, read32(&mem, i + 64) as u64), "ferrite");

    assert_eq!(read32(&mem, i + 20), 2);
    let mods_addr = read32(&mem, i + 24) as u64;
    let (m0s, m0e) = (read32(&mem, mods_addr), read32(&mem, mods_addr + 4));
    assert_eq!((m0s, m0e), (0x10_1000, 0x10_1000 + 5000));
    assert_eq!(mem.slice(m0s as u64, 5000).unwrap(), &initrd[..]);
    assert_eq!(cstr(&mem, read32(&mem, mods_addr + 8) as u64), "initrd.img");
    let m1s = read32(&mem, mods_addr + 16);
    assert_eq!(m1s, 0x10_3000);
    assert_eq!(mem.slice(m1s as u64, 6).unwrap(), b"second");
    assert_eq!(cstr(&mem, read32(&mem, mods_addr + 24) as u64), "two args");
    assert_eq!(boot.modules, vec![(0x10_1000, 0x10_1000 + 5000), (0x10_3000, 0x10_3006)]);

    // Memory map: 24-byte entries matching e820.
    let map = MemoryLayout::new(64 * MIB).e820();
    let (len, addr) = (read32(&mem, i + 44), read32(&mem, i + 48) as u64);
    assert_eq!(len as usize, map.len() * 24);
    for (n, e) in map.iter().enumerate() {
        let at = addr + n as u64 * 24;
        assert_eq!(read32(&mem, at), 20);
        assert_eq!(mem.slice(at + 4, 20).unwrap(), &e.to_bytes());
    }
}

#[test]
fn loads_aout_kludge() {
    // Header at file offset 0x40, describing a load of the whole file at 0x200000 with bss.
    let mut img = vec![0x90u8; 0x300];
    let h = mb_header(HF_AOUT_KLUDGE | HF_MEMORY_INFO);
    img[0x40..0x4c].copy_from_slice(&h);
    put32(&mut img, 0x4c, 0x20_0040); // header_addr
    put32(&mut img, 0x50, 0x20_0000); // load_addr
    put32(&mut img, 0x54, 0x20_0200); // load_end_addr
    put32(&mut img, 0x58, 0x20_1000); // bss_end_addr
    put32(&mut img, 0x5c, 0x20_0080); // entry_addr
    let mem = test_mem::ram(16 * MIB);
    mem.write(0x20_0200, &[1; 0xe00]).unwrap();
    let boot = load_multiboot(&mem, &img, &MultibootConfig::default()).unwrap();
    assert_eq!(boot.entry, 0x20_0080);
    assert_eq!(boot.kernel_end, 0x20_1000);
    assert_eq!(mem.slice(0x20_0000, 0x200).unwrap(), &img[..0x200]);
    assert!(mem.slice(0x20_0200, 0xe00).unwrap().iter().all(|&b| b == 0));
    assert_eq!(read32(&mem, INFO_ADDR + 20), 0, "no modules");

    // load_end_addr 0 means the rest of the file.
    put32(&mut img, 0x54, 0);
    put32(&mut img, 0x58, 0);
    let boot = load_multiboot(&mem, &img, &MultibootConfig::default()).unwrap();
    assert_eq!(boot.kernel_end, 0x20_0300);

    // Inconsistent fields.
    let mut bad = img.clone();
    put32(&mut bad, 0x4c, 0x1f_0000);
    assert!(matches!(load_multiboot(&mem, &bad, &MultibootConfig::default()), Err(MultibootError::BadAddresses(_))));
    let mut bad = img.clone();
    put32(&mut bad, 0x54, 0x20_1000);
    assert!(matches!(load_multiboot(&mem, &bad, &MultibootConfig::default()), Err(MultibootError::Truncated { .. })));
    let mut bad = img.clone();
    put32(&mut bad, 0x54, 0x20_0100);
    put32(&mut bad, 0x58, 0x20_0010);
    assert!(matches!(load_multiboot(&mem, &bad, &MultibootConfig::default()), Err(MultibootError::BadAddresses(_))));
    // Loading over the firmware area or outside RAM is refused.
    let mut low = img.clone();
    put32(&mut low, 0x4c, 0x8040);
    put32(&mut low, 0x50, 0x8000);
    assert!(matches!(
        load_multiboot(&mem, &low, &MultibootConfig::default()),
        Err(MultibootError::SegmentOutsideRam { start: 0x8000, .. })
    ));
    let mut high = img.clone();
    put32(&mut high, 0x4c, 0x4000_0040);
    put32(&mut high, 0x50, 0x4000_0000);
    assert!(matches!(load_multiboot(&mem, &high, &MultibootConfig::default()), Err(MultibootError::SegmentOutsideRam { .. })));
}

#[test]
fn elf64_below_4g_is_accepted() {
    let mut img = vec![0u8; 0x1100];
    img[0..4].copy_from_slice(b"\x7fELF");
    img[4] = 2;
    img[5] = 1;
    img[18..20].copy_from_slice(&62u16.to_le_bytes());
    img[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    img[32..40].copy_from_slice(&64u64.to_le_bytes());
    img[54..56].copy_from_slice(&56u16.to_le_bytes());
    img[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    put32(&mut img, ph, 1);
    img[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
    img[ph + 16..ph + 24].copy_from_slice(&0x10_0000u64.to_le_bytes());
    img[ph + 24..ph + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    img[ph + 32..ph + 40].copy_from_slice(&0x100u64.to_le_bytes());
    img[ph + 40..ph + 48].copy_from_slice(&0x100u64.to_le_bytes());
    img[0x1000..0x100c].copy_from_slice(&mb_header(0));
    let mem = test_mem::ram(16 * MIB);
    let boot = load_multiboot(&mem, &img, &MultibootConfig::default()).unwrap();
    assert_eq!(boot.entry, 0x10_0000);

    // Entry above 4 GiB.
    img[24..32].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    assert!(matches!(load_multiboot(&mem, &img, &MultibootConfig::default()), Err(MultibootError::EntryAbove4G { .. })));
}

#[test]
fn rejects_malformed_images() {
    let mem = test_mem::ram(16 * MIB);
    let cfg = MultibootConfig::default();

    let mut flags = elf32();
    let h = mb_header(1 << 5);
    flags[0x1000..0x100c].copy_from_slice(&h);
    assert!(matches!(load_multiboot(&mem, &flags, &cfg), Err(MultibootError::UnsupportedFlags { flags: 0x20 })));

    let mut not_elf = elf32();
    not_elf[0] = 0;
    assert!(matches!(load_multiboot(&mem, &not_elf, &cfg), Err(MultibootError::NotElf)));

    let mut machine = elf32();
    machine[18] = 40;
    assert!(matches!(load_multiboot(&mem, &machine, &cfg), Err(MultibootError::BadElf(_))));

    let mut phdrs = elf32();
    phdrs[44..46].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(matches!(load_multiboot(&mem, &phdrs, &cfg), Err(MultibootError::Truncated { .. })));

    let mut seg = elf32();
    put32(&mut seg, 52 + 16, 0x10_0000); // filesz past the end of the file and > memsz
    assert!(matches!(load_multiboot(&mem, &seg, &cfg), Err(MultibootError::BadElf(_))));

    let mut none = elf32();
    put32(&mut none, 52, 6);
    assert!(matches!(load_multiboot(&mem, &none, &cfg), Err(MultibootError::NoLoadableSegments)));

    let big = vec![0u8; 15 * MIB as usize];
    let mods = [MultibootModule { data: &big, cmdline: "big" }];
    let cfg_big = MultibootConfig { cmdline: "", modules: &mods };
    assert!(matches!(load_multiboot(&mem, &elf32(), &cfg_big), Err(MultibootError::ModulesTooLarge { .. })));

    let long = "x".repeat(40000);
    let cfg_long = MultibootConfig { cmdline: &long, modules: &[] };
    assert!(matches!(load_multiboot(&mem, &elf32(), &cfg_long), Err(MultibootError::InfoTooLarge { .. })));
    let cfg_nul = MultibootConfig { cmdline: "a\0", modules: &[] };
    assert!(matches!(load_multiboot(&mem, &elf32(), &cfg_nul), Err(MultibootError::CmdlineNul)));
}

#[test]
fn never_panics_on_damaged_images() {
    let mem = test_mem::ram(8 * MIB);
    let base = elf32();
    for len in (0..base.len()).step_by(7) {
        let _ = load_multiboot(&mem, &base[..len], &MultibootConfig::default());
    }
    for i in 0..0x80 {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut img = base.clone();
            img[i] = v;
            let _ = load_multiboot(&mem, &img, &MultibootConfig::default());
        }
    }
}
