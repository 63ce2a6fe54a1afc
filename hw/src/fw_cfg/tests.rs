use super::*;
use ferrite_memory::{Dma, GuestMemory};
use std::sync::Arc;

/// Guest memory for the tests: 64 KiB of RAM at address 0 (and `high` bytes at 4 GiB), seen
/// through a DMA handle like the device's.
struct Ram(Dma);

impl Ram {
    fn new(high: u64) -> Self {
        Ram(Dma::new(Arc::new(GuestMemory::new(0x1_0000, high).unwrap())))
    }
    fn put(&self, addr: u64, data: &[u8]) {
        self.0.write(addr, data).unwrap();
    }
    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.0.read(addr, &mut b).unwrap();
        b
    }
    fn fill(&self, addr: u64, len: usize, v: u8) {
        self.put(addr, &vec![v; len]);
    }
}

fn ram() -> Ram {
    Ram::new(0)
}

/// SeaBIOS-style port read of `len` bytes of item `key`.
fn read_item(f: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
    let mem = ram();
    f.write(FW_CFG_SEL_OFFSET, 2, u32::from(key), &mem.0);
    (0..len)
        .map(|_| f.read(FW_CFG_DATA_OFFSET, 1) as u8)
        .collect()
}

/// Writes an FWCfgDmaAccess at `desc` and triggers it with the guest's `outl`s
/// (`cpu_to_be32` of each half); returns the control word read back.
fn dma(f: &mut FwCfg, mem: &Ram, desc: u64, control: u32, length: u32, address: u64) -> u32 {
    let mut d = Vec::new();
    d.extend_from_slice(&control.to_be_bytes());
    d.extend_from_slice(&length.to_be_bytes());
    d.extend_from_slice(&address.to_be_bytes());
    mem.put(desc, &d);
    f.write(
        FW_CFG_DMA_HIGH_OFFSET,
        4,
        ((desc >> 32) as u32).swap_bytes(),
        &mem.0,
    );
    f.write(FW_CFG_DMA_LOW_OFFSET, 4, (desc as u32).swap_bytes(), &mem.0);
    u32::from_be_bytes(mem.get(desc, 4).try_into().unwrap())
}

#[test]
fn signature_and_id() {
    let mut f = FwCfg::new();
    assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 4), b"QEMU");
    assert_eq!(
        read_item(&mut f, FW_CFG_ID, 4),
        [3, 0, 0, 0],
        "traditional + DMA"
    );
    // Reading past the end gives zeros.
    assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
    // Unknown keys read zeros.
    assert_eq!(read_item(&mut f, 0x3FFF, 2), [0, 0]);
}

#[test]
fn dma_register_reads_the_signature() {
    let mut f = FwCfg::new();
    assert_eq!(f.read(4, 4).to_le_bytes(), *b"QEMU");
    assert_eq!(f.read(8, 4).to_le_bytes(), *b" CFG");
    assert_eq!(f.read(4, 1), u32::from(b'Q'));
    assert_eq!(f.read(0, 2), 0, "selector is write-only");
}

#[test]
fn numeric_items_are_little_endian() {
    let mut f = FwCfg::new();
    f.add_u64(FW_CFG_RAM_SIZE, 512 << 20).unwrap();
    f.add_u16(FW_CFG_NB_CPUS, 2).unwrap();
    f.add_u16(FW_CFG_MAX_CPUS, 4).unwrap();
    f.add_u32(FW_CFG_SETUP_SIZE, 0x4200).unwrap();
    assert_eq!(
        read_item(&mut f, FW_CFG_RAM_SIZE, 8),
        (512u64 << 20).to_le_bytes()
    );
    assert_eq!(read_item(&mut f, FW_CFG_NB_CPUS, 2), [2, 0]);
    assert_eq!(f.item(FW_CFG_MAX_CPUS), Some(&[4u8, 0][..]));
    assert_eq!(read_item(&mut f, FW_CFG_SETUP_SIZE, 4), [0, 0x42, 0, 0]);
    // Wide data reads return consecutive bytes.
    let mem = ram();
    f.write(0, 2, u32::from(FW_CFG_SETUP_SIZE), &mem.0);
    assert_eq!(f.read(1, 2), 0x4200);
    // The write-channel bit selects the same item.
    assert_eq!(
        read_item(&mut f, FW_CFG_NB_CPUS | FW_CFG_WRITE_CHANNEL, 2),
        [2, 0]
    );
    // Data port writes are ignored.
    f.write(0, 2, u32::from(FW_CFG_NB_CPUS), &mem.0);
    f.write(1, 1, 0x77, &mem.0);
    assert_eq!(f.item(FW_CFG_NB_CPUS), Some(&[2u8, 0][..]));
}

#[test]
fn file_directory_sorted_by_name() {
    let mut f = FwCfg::new();
    let e820 = e820_file(&[
        E820Entry {
            address: 0,
            length: 0x9_FC00,
            kind: 1,
        },
        E820Entry {
            address: 0x10_0000,
            length: 0x1FF0_0000,
            kind: 1,
        },
    ]);
    assert_eq!(e820.len(), 40);
    f.add_file(FW_CFG_FILE_E820, e820.clone()).unwrap();
    f.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\0".to_vec())
        .unwrap();
    f.add_file("etc/acpi/tables", vec![0xAA; 300]).unwrap();
    assert_eq!(f.file_key("bootorder"), Some(0x20));
    assert_eq!(f.file_key("etc/acpi/tables"), Some(0x21));
    assert_eq!(f.file_key("etc/e820"), Some(0x22));
    assert_eq!(f.file_key("nope"), None);

    let dir = read_item(&mut f, FW_CFG_FILE_DIR, 4 + 3 * 64);
    assert_eq!(u32::from_be_bytes(dir[0..4].try_into().unwrap()), 3);
    let entry = |i: usize| &dir[4 + 64 * i..4 + 64 * (i + 1)];
    let e = entry(2);
    assert_eq!(u32::from_be_bytes(e[0..4].try_into().unwrap()), 40);
    assert_eq!(u16::from_be_bytes(e[4..6].try_into().unwrap()), 0x22);
    assert_eq!(&e[6..8], &[0, 0]);
    assert_eq!(&e[8..16], b"etc/e820");
    assert!(e[16..].iter().all(|&b| b == 0), "NUL padded");
    assert_eq!(&entry(0)[8..17], b"bootorder");
    assert_eq!(read_item(&mut f, 0x22, 40), e820);

    f.modify_file("bootorder", b"x".to_vec()).unwrap();
    assert_eq!(f.file_data("bootorder"), Some(&b"x"[..]));
    let dir = read_item(&mut f, FW_CFG_FILE_DIR, 8);
    assert_eq!(u32::from_be_bytes(dir[4..8].try_into().unwrap()), 1);
}

#[test]
fn content_errors() {
    let mut f = FwCfg::new();
    assert_eq!(
        f.add_file("", vec![]),
        Err(FwCfgError::BadFileName(String::new()))
    );
    let long = "x".repeat(56);
    assert!(matches!(
        f.add_file(&long, vec![]),
        Err(FwCfgError::BadFileName(_))
    ));
    f.add_file(&"y".repeat(55), vec![1]).unwrap();
    f.add_file("a", vec![1]).unwrap();
    assert_eq!(
        f.add_file("a", vec![2]),
        Err(FwCfgError::DuplicateFile("a".into()))
    );
    assert_eq!(
        f.add_bytes(FW_CFG_SIGNATURE, vec![0]),
        Err(FwCfgError::ReservedKey(0))
    );
    assert_eq!(
        f.add_bytes(FW_CFG_FILE_DIR, vec![0]),
        Err(FwCfgError::ReservedKey(0x19))
    );
    assert_eq!(
        f.add_bytes(0x20, vec![0]),
        Err(FwCfgError::ReservedKey(0x20))
    );
    assert_eq!(
        f.add_bytes(0x4003, vec![0]),
        Err(FwCfgError::ReservedKey(0x4003))
    );
    f.add_bytes(FW_CFG_E820_TABLE, vec![0]).unwrap();
    f.add_bytes(FW_CFG_ARCH_LOCAL | 0x20, vec![5]).unwrap();
    assert_eq!(read_item(&mut f, 0x8020, 1), [5], "arch keys are not files");
}

#[test]
fn dma_read_with_select() {
    let mut f = FwCfg::new();
    f.add_file("etc/table", (0..=255u8).collect::<Vec<_>>())
        .unwrap();
    let key = f.file_key("etc/table").unwrap();
    let mem = ram();
    let ctl = u32::from(key) << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    assert_eq!(
        dma(&mut f, &mem, 0x1000, ctl, 16, 0x2000),
        0,
        "control cleared: done"
    );
    assert_eq!(mem.get(0x2000, 16), (0..16u8).collect::<Vec<_>>());
    // Continue from the current offset, skip, read again.
    assert_eq!(
        dma(&mut f, &mem, 0x1000, FW_CFG_DMA_CTL_SKIP, 100, 0),
        0
    );
    assert_eq!(
        dma(&mut f, &mem, 0x1000, FW_CFG_DMA_CTL_READ, 4, 0x3000),
        0
    );
    assert_eq!(mem.get(0x3000, 4), [116, 117, 118, 119]);
    // The port interface sees the same offset.
    assert_eq!(f.read(1, 1), 120);
    // Past the end: zero-filled.
    mem.fill(0x4000, 0x200, 0xEE);
    assert_eq!(
        dma(&mut f, &mem, 0x1000, FW_CFG_DMA_CTL_READ, 0x200, 0x4000),
        0
    );
    let got = mem.get(0x4000, 0x200);
    assert_eq!(got[134], 255);
    assert!(got[135..].iter().all(|&b| b == 0));
}

#[test]
fn dma_signature_check_as_seabios_does() {
    let mut f = FwCfg::new();
    let mem = ram();
    let ctl = u32::from(FW_CFG_ID) << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    assert_eq!(dma(&mut f, &mem, 0x500, ctl, 4, 0x600), 0);
    assert_eq!(mem.get(0x600, 4), [3, 0, 0, 0]);
}

#[test]
fn dma_errors() {
    let mut f = FwCfg::new();
    f.add_file("ro", vec![1, 2, 3, 4]).unwrap();
    let key = f.file_key("ro").unwrap();
    let mem = ram();
    // Destination outside RAM.
    let ctl = u32::from(key) << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    assert_eq!(
        dma(&mut f, &mem, 0x100, ctl, 4, 0x1_0000_0000),
        FW_CFG_DMA_CTL_ERROR
    );
    // Writing a read-only item.
    let ctl = u32::from(key) << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE;
    assert_eq!(
        dma(&mut f, &mem, 0x100, ctl, 4, 0x200),
        FW_CFG_DMA_CTL_ERROR
    );
    assert_eq!(f.file_data("ro"), Some(&[1u8, 2, 3, 4][..]));
    // A descriptor outside RAM: nothing happens, nothing panics.
    f.write(4, 4, 0x0100_0000u32.swap_bytes(), &mem.0);
    f.write(8, 4, 0, &mem.0);
}

#[test]
fn dma_write_to_a_writable_file() {
    let mut f = FwCfg::new();
    f.add_file_writable("etc/ramfb", vec![0; 8]).unwrap();
    let key = f.file_key("etc/ramfb").unwrap();
    let mem = ram();
    mem.put(0x800, &[9, 8, 7, 6, 5, 4, 3, 2]);
    let sel = u32::from(key) << 16 | FW_CFG_DMA_CTL_SELECT;
    assert_eq!(
        dma(
            &mut f,
            &mem,
            0x100,
            sel | FW_CFG_DMA_CTL_WRITE,
            4,
            0x800
        ),
        0
    );
    assert_eq!(
        dma(&mut f, &mem, 0x100, FW_CFG_DMA_CTL_WRITE, 2, 0x804),
        0
    );
    assert_eq!(
        f.file_data("etc/ramfb"),
        Some(&[9u8, 8, 7, 6, 5, 4, 0, 0][..])
    );
    // A write running past the end is dropped entirely.
    assert_eq!(
        dma(&mut f, &mem, 0x100, FW_CFG_DMA_CTL_WRITE, 4, 0x800),
        FW_CFG_DMA_CTL_ERROR
    );
    assert_eq!(
        f.file_data("etc/ramfb"),
        Some(&[9u8, 8, 7, 6, 5, 4, 0, 0][..])
    );
}

#[test]
fn dma_address_above_4g() {
    let mem = Ram::new(0x1000);
    let mut f = FwCfg::new();
    let high = 1u64 << 32;
    let ctl = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ; // key 0: signature
    let mut d = Vec::new();
    d.extend_from_slice(&ctl.to_be_bytes());
    d.extend_from_slice(&4u32.to_be_bytes());
    d.extend_from_slice(&(high + 0x100).to_be_bytes());
    mem.put(high, &d);
    f.write(4, 4, 1u32.swap_bytes(), &mem.0);
    f.write(8, 4, 0, &mem.0);
    assert_eq!(mem.get(high + 0x100, 4), b"QEMU");
    assert_eq!(mem.get(high, 4), [0, 0, 0, 0]);
    // The high half resets after each transfer: a 32-bit trigger now addresses below 4 GiB.
    f.write(8, 4, 0, &mem.0);
}

#[test]
fn dma_outside_ram_sets_the_error_bit() {
    let mem = ram();
    let mut f = FwCfg::new();
    let ctl = FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    // Into the PCI hole, across the end of RAM, and at the top of the address space.
    for address in [0xFEB0_0000, 0xFFFE, u64::MAX - 1] {
        assert_eq!(dma(&mut f, &mem, 0x100, ctl, 4, address), FW_CFG_DMA_CTL_ERROR, "{address:#x}");
    }
    assert_eq!(mem.get(0xFFFE, 2), [0, 0], "nothing written at the end of RAM");
    // The device still works afterwards.
    assert_eq!(dma(&mut f, &mem, 0x100, ctl, 4, 0x200), 0);
    assert_eq!(mem.get(0x200, 4), b"QEMU");
}

#[test]
fn no_guest_access_panics() {
    let mut f = FwCfg::new();
    f.add_file_writable("w", vec![0; 3]).unwrap();
    let mem = ram();
    for offset in 0..16u16 {
        for size in [0u8, 1, 2, 3, 4, 8] {
            for v in [0u32, u32::MAX, 0x0020, 0x1000_0000, 0x00F0_0000] {
                f.write(offset, size, v, &mem.0);
                f.read(offset, size);
            }
        }
    }
    // Descriptors with every control bit and huge lengths.
    for ctl in [u32::MAX, 0xFFFF_0000 | 0x1E, 0x0020_0012, 0x0020_0014] {
        for len in [0u32, 1, 0xFFFF, u32::MAX] {
            dma(&mut f, &mem, 0xFF00, ctl, len, u64::MAX - 2);
            dma(&mut f, &mem, 0xFF00, ctl, len, 0x100);
        }
    }
    dma(&mut f, &mem, 0xFFF0, FW_CFG_DMA_CTL_READ, 4, 0);
}
