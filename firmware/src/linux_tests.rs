//! Tests for the Linux boot protocol loader (kept beside `linux.rs`).

use super::*;
use crate::boot_state::{BOOT_CS, BOOT_DS, CR0_PG, CR4_PAE, EFER_LMA, GDT_ADDR, PML4_ADDR};
use crate::e820::{E820Entry, E820Type, MemoryLayout};
use crate::test_mem::{self, Slice};
use ferrite_memory::GuestMemory;

const MIB: u64 = 1 << 20;

/// A synthetic bzImage: `setup_sects` setup sectors, then `kernel_len` bytes of payload.
fn image(version: u16, kernel_len: usize) -> Vec<u8> {
    let setup_sects = 27u8;
    let setup = (setup_sects as usize + 1) * 512;
    let mut img = vec![0u8; setup + kernel_len];
    for (i, b) in img[setup..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    img[hdr::SETUP_SECTS] = setup_sects;
    img[hdr::BOOT_FLAG..hdr::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x200] = 0xeb;
    img[hdr::JUMP_OFFSET] = 0x6a; // header ends at 0x26c, like 6.x kernels
    img[hdr::HEADER..hdr::HEADER + 4].copy_from_slice(b"HdrS");
    img[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&version.to_le_bytes());
    img[hdr::LOADFLAGS] = LOADED_HIGH;
    let syssize = (kernel_len / 16) as u32;
    img[hdr::SYSSIZE..hdr::SYSSIZE + 4].copy_from_slice(&syssize.to_le_bytes());
    img[hdr::INITRD_ADDR_MAX..hdr::INITRD_ADDR_MAX + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[hdr::KERNEL_ALIGNMENT..hdr::KERNEL_ALIGNMENT + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
    img[hdr::RELOCATABLE_KERNEL] = 1;
    img[hdr::XLOADFLAGS..hdr::XLOADFLAGS + 2]
        .copy_from_slice(&(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes());
    img[hdr::CMDLINE_SIZE..hdr::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
    img[hdr::PREF_ADDRESS..hdr::PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
    img[hdr::INIT_SIZE..hdr::INIT_SIZE + 4].copy_from_slice(&(8u32 << 20).to_le_bytes());
    img
}

fn zp_u32(m: &GuestMemory, off: usize) -> u32 {
    u32::from_le_bytes(m.slice(ZERO_PAGE_ADDR + off as u64, 4).unwrap().try_into().unwrap())
}

#[test]
fn parses_header_fields() {
    let h = SetupHeader::parse(&image(0x020f, 4096)).unwrap();
    assert_eq!(h.version, 0x020f);
    assert_eq!(h.setup_sects, 27);
    assert_eq!(h.syssize, 256);
    assert_eq!(h.kernel_offset(), 28 * 512);
    assert!(h.has_64bit_entry() && h.relocatable);
    assert_eq!(h.pref_address, 0x100_0000);
    assert_eq!(h.init_size, 8 << 20);
    assert_eq!(h.kernel_alignment, 0x20_0000);
    assert_eq!(h.initrd_addr_max, 0x7fff_ffff);
    assert_eq!(h.cmdline_size, 2047);
    assert_eq!(h.raw.len(), 0x26c - 0x1f1);
    // A relocatable kernel at 1 MiB decompresses at pref_address (LOAD_PHYSICAL_ADDR).
    assert_eq!(h.runtime_start(KERNEL_LOAD_ADDR), 0x100_0000);
}

#[test]
fn rejects_bad_images() {
    assert!(matches!(SetupHeader::parse(&[]), Err(LinuxError::TooSmall { len: 0 })));
    assert!(matches!(SetupHeader::parse(&[0u8; 0x300]), Err(LinuxError::MissingMagic)));

    let old = image(0x0205, 4096);
    let err = SetupHeader::parse(&old).unwrap_err();
    assert!(matches!(err, LinuxError::ProtocolTooOld { version: 0x0205 }));
    assert_eq!(err.to_string(), "Linux boot protocol 2.05 is too old: 2.06 or newer is required");

    let mut zimage = image(0x020f, 4096);
    zimage[hdr::LOADFLAGS] = 0;
    assert!(matches!(SetupHeader::parse(&zimage), Err(LinuxError::NotBzImage)));

    let full = image(0x020f, 4096);
    assert!(matches!(SetupHeader::parse(&full[..0x250]), Err(LinuxError::Truncated { .. })));
    // Missing setup sectors are refused; a short protected-mode part is not (below).
    let setup_end = SetupHeader::parse(&full).unwrap().kernel_offset();
    assert!(matches!(SetupHeader::parse(&full[..setup_end - 1]), Err(LinuxError::Truncated { .. })));

    let mut align = image(0x020f, 4096);
    align[hdr::KERNEL_ALIGNMENT..hdr::KERNEL_ALIGNMENT + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(SetupHeader::parse(&align), Err(LinuxError::BadAlignment { align: 3 })));
}

#[test]
fn never_panics_on_damaged_images() {
    let full = image(0x020f, 2048);
    for len in 0..full.len() {
        let _ = SetupHeader::parse(&full[..len]);
    }
    let mem = test_mem::ram(32 * MIB);
    for i in 0x1f0..0x270 {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut img = full.clone();
            img[i] = v;
            let cfg = LinuxBootConfig { cmdline: "x", initrd: Some(&[1, 2, 3]), ..Default::default() };
            let _ = load_linux(&mem, &img, &cfg);
        }
    }
}

#[test]
fn loads_64bit_kernel() {
    let img = image(0x020f, 64 * 1024);
    let initrd = vec![0x5a; 3 * 4096 + 17];
    let mem = test_mem::ram(256 * MIB);
    let cfg = LinuxBootConfig {
        cmdline: "console=ttyS0 panic=-1",
        initrd: Some(&initrd),
        acpi_rsdp_addr: Some(0xe0000),
        ..Default::default()
    };
    let boot = load_linux(&mem, &img, &cfg).unwrap();

    // Kernel bytes at 1 MiB.
    assert_eq!(boot.kernel_addr, 0x10_0000);
    assert_eq!(mem.slice(0x10_0000, 64 * 1024).unwrap(), &img[28 * 512..]);
    assert_eq!(boot.kernel_end, 0x100_0000 + (8 << 20));

    // Entry state.
    let s = boot.setup;
    assert_eq!(s.mode, CpuMode::Long64);
    assert_eq!(s.rip, 0x10_0200);
    assert_eq!(s.rsi, ZERO_PAGE_ADDR);
    assert_eq!(s.cr3, PML4_ADDR);
    assert!(s.cr0 & CR0_PG != 0 && s.cr4 & CR4_PAE != 0 && s.efer & EFER_LMA != 0);
    assert_eq!((s.cs.selector, s.ds.selector, s.ss.selector), (BOOT_CS, BOOT_DS, BOOT_DS));
    assert!(s.cs.l);
    assert_eq!(s.gdt.base, GDT_ADDR);
    assert_eq!(s.rflags & (1 << 9), 0, "interrupts off");

    // Zero page: header copied, loader fields set.
    let zp = mem.slice(ZERO_PAGE_ADDR, 4096).unwrap();
    assert_eq!(&zp[hdr::HEADER..hdr::HEADER + 4], b"HdrS");
    assert_eq!(zp[hdr::TYPE_OF_LOADER], 0xff);
    assert_eq!(zp[hdr::SETUP_SECTS], 27);
    assert_eq!(zp_u32(&mem, hdr::CMD_LINE_PTR) as u64, CMDLINE_ADDR);
    assert_eq!(zp_u32(&mem, zp::EXT_CMD_LINE_PTR), 0);
    assert_eq!(mem.slice(CMDLINE_ADDR, 23).unwrap(), b"console=ttyS0 panic=-1\0");
    assert_eq!(u64::from_le_bytes(zp[0x70..0x78].try_into().unwrap()), 0xe0000);
    assert_eq!(zp[0x1ef], 0, "sentinel must stay clear");

    // Initrd: top of RAM, page aligned.
    let (rd, rd_size) = boot.initrd.unwrap();
    assert_eq!(rd_size, initrd.len() as u64);
    assert_eq!(rd % 4096, 0);
    assert!(rd + rd_size <= 256 * MIB && rd + rd_size + 4096 > 256 * MIB);
    assert_eq!(zp_u32(&mem, hdr::RAMDISK_IMAGE) as u64, rd);
    assert_eq!(zp_u32(&mem, hdr::RAMDISK_SIZE) as u64, rd_size);
    assert_eq!(mem.slice(rd, initrd.len()).unwrap(), &initrd[..]);

    // e820 table.
    let map = MemoryLayout::new(256 * MIB).e820();
    assert_eq!(zp[zp::E820_ENTRIES] as usize, map.len());
    let e1 = &zp[zp::E820_TABLE + 20 * 3..zp::E820_TABLE + 20 * 4];
    assert_eq!(e1, &E820Entry::new(MIB, 255 * MIB, E820Type::Ram).to_bytes());

    // GDT and page tables in memory.
    let gdt = mem.slice(GDT_ADDR + 0x10, 8).unwrap();
    assert_eq!(u64::from_le_bytes(gdt.try_into().unwrap()), s.cs.descriptor);
    let pml4e = u64::from_le_bytes(mem.slice(PML4_ADDR, 8).unwrap().try_into().unwrap());
    assert_eq!(pml4e & 1, 1);
}

/// QEMU loads a bzImage shorter than its header's `syssize` paragraphs: whatever follows the
/// setup sectors is the kernel.
#[test]
fn loads_a_file_shorter_than_syssize() {
    let full = image(0x020f, 64 * 1024);
    let short = &full[..full.len() - 100];
    let mem = test_mem::ram(256 * MIB);
    let boot = load_linux(&mem, short, &LinuxBootConfig::default()).unwrap();
    assert_eq!(boot.kernel_size, 64 * 1024 - 100);
    assert_eq!(mem.slice(0x10_0000, 64 * 1024 - 100).unwrap(), &short[28 * 512..]);
}

#[test]
fn initrd_respects_initrd_addr_max() {
    let mut img = image(0x020f, 4096);
    img[hdr::INITRD_ADDR_MAX..hdr::INITRD_ADDR_MAX + 4].copy_from_slice(&(0x200_0000u32 - 1).to_le_bytes());
    img[hdr::INIT_SIZE..hdr::INIT_SIZE + 4].copy_from_slice(&0u32.to_le_bytes());
    let mem = test_mem::ram(128 * MIB);
    let rd = [1u8; 5000];
    let cfg = LinuxBootConfig { initrd: Some(&rd), ..Default::default() };
    let boot = load_linux(&mem, &img, &cfg).unwrap();
    let (addr, size) = boot.initrd.unwrap();
    assert_eq!(addr, (0x200_0000 - 5000) & !0xfff);
    assert!(addr + size <= 0x200_0000);
}

#[test]
fn falls_back_to_32bit_entry() {
    let mut img = image(0x020b, 4096);
    img[hdr::XLOADFLAGS] = 0;
    let mem = test_mem::ram(64 * MIB);
    let boot = load_linux(&mem, &img, &LinuxBootConfig::default()).unwrap();
    let s = boot.setup;
    assert_eq!(s.mode, CpuMode::Protected32);
    assert_eq!(s.rip, KERNEL_LOAD_ADDR);
    assert_eq!(s.rsi, ZERO_PAGE_ADDR);
    assert_eq!(s.cr0 & CR0_PG, 0);
    assert!(s.cs.db && !s.cs.l);
    assert_eq!(boot.initrd, None);

    let cfg = LinuxBootConfig { entry: EntryMode::Long64, ..Default::default() };
    assert!(matches!(load_linux(&mem, &img, &cfg), Err(LinuxError::No64BitEntry)));

    // Forcing 32-bit on a 64-bit-capable kernel works too.
    let img64 = image(0x020f, 4096);
    let cfg = LinuxBootConfig { entry: EntryMode::Protected32, ..Default::default() };
    assert_eq!(load_linux(&mem, &img64, &cfg).unwrap().setup.rip, KERNEL_LOAD_ADDR);
}

#[test]
fn vga_text_screen_info() {
    let mem = test_mem::ram(64 * MIB);
    let cfg = LinuxBootConfig { video: VideoMode::VgaText, ..Default::default() };
    load_linux(&mem, &image(0x020f, 4096), &cfg).unwrap();
    let si = mem.slice(ZERO_PAGE_ADDR, 0x12).unwrap();
    assert_eq!((si[6], si[7], si[0xe], si[0xf]), (3, 80, 25, 0x22));
    let mem = test_mem::ram(64 * MIB);
    load_linux(&mem, &image(0x020f, 4096), &LinuxBootConfig::default()).unwrap();
    assert!(mem.slice(ZERO_PAGE_ADDR, 0x40).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn memory_errors() {
    let img = image(0x020f, 4096);
    // init_size puts the kernel's needs at 16 MiB + 8 MiB.
    let small = test_mem::ram(20 * MIB);
    let err = load_linux(&small, &img, &LinuxBootConfig::default()).unwrap_err();
    assert!(matches!(err, LinuxError::KernelTooLarge { end: 0x180_0000, ram_end: 0x140_0000 }));
    assert!(err.to_string().contains("give the guest more memory"));

    let mem = test_mem::ram(32 * MIB);
    let big = vec![0u8; 9 * MIB as usize];
    let cfg = LinuxBootConfig { initrd: Some(&big), ..Default::default() };
    let err = load_linux(&mem, &img, &cfg).unwrap_err();
    assert!(
        matches!(err, LinuxError::InitrdTooLarge { available, .. } if available == 8 * MIB),
        "{err:?}"
    );
}

#[test]
fn command_line_limits() {
    let img = image(0x020f, 4096);
    let mem = test_mem::ram(64 * MIB);
    let long = "a".repeat(2048);
    let cfg = LinuxBootConfig { cmdline: &long, ..Default::default() };
    assert!(matches!(
        load_linux(&mem, &img, &cfg),
        Err(LinuxError::CmdlineTooLong { len: 2048, max: 2047 })
    ));
    let cfg = LinuxBootConfig { cmdline: "a\0b", ..Default::default() };
    assert!(matches!(load_linux(&mem, &img, &cfg), Err(LinuxError::CmdlineNul { offset: 1 })));
    let ok = "b".repeat(2047);
    let cfg = LinuxBootConfig { cmdline: &ok, ..Default::default() };
    load_linux(&mem, &img, &cfg).unwrap();
}

/// Loads the real Debian kernel fetched by `scripts/fetch-guests`, when it is there.
#[test]
fn loads_fetched_debian_kernel_if_present() {
    let dir = std::env::var_os("FERRITE_GUEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/ferrite/guests")));
    let Some(img) = dir.and_then(|d| std::fs::read(d.join("bzImage")).ok()) else {
        eprintln!("no fetched bzImage; skipping");
        return;
    };
    let h = SetupHeader::parse(&img).unwrap();
    assert!(h.version >= 0x020c && h.has_64bit_entry() && h.relocatable);
    let mem = test_mem::ram(512 * MIB);
    let rd = vec![0u8; 4 * MIB as usize];
    let cfg = LinuxBootConfig { cmdline: "console=ttyS0", initrd: Some(&rd), ..Default::default() };
    let boot = load_linux(&mem, &img, &cfg).unwrap();
    assert_eq!(boot.setup.rip, 0x10_0200);
    assert!(boot.initrd.unwrap().0 >= boot.kernel_end);
}
