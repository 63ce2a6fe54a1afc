//! Raw images: I/O in every cache mode, probing and the sector-0 rule.

use crate::common::*;
use ferrite_block::{CacheMode, DiskError, ImageFormat};

const MODES: [CacheMode; 5] = [CacheMode::Writeback, CacheMode::None, CacheMode::Writethrough, CacheMode::Directsync, CacheMode::Unsafe];

#[test]
fn raw_read_write_flush_in_every_cache_mode() {
    let dir = TempDir::new();
    for cache in MODES {
        let path = dir.file(&format!("{cache:?}.raw"));
        let mut expected = pattern(1 << 20, 7);
        std::fs::write(&path, &expected).unwrap();
        let img = open(&path, |o| {
            o.format = Some(ImageFormat::Raw);
            o.cache = cache;
        })
        .unwrap();
        assert_eq!((img.size, img.format, img.probed, img.read_only), (1 << 20, ImageFormat::Raw, false, false));
        assert!(img.warnings.is_empty(), "{:?}", img.warnings);
        // Aligned, sector-aligned, and odd offsets and lengths (O_DIRECT read-modify-write).
        for (off, len, seed) in [(0, 4096, 1), (512, 1024, 2), (4095, 3, 3), (8191, 8194, 4), ((1 << 20) - 512, 512, 5)] {
            let data = pattern(len, seed);
            img.disk.write_at(off, &data).unwrap();
            expected[off as usize..off as usize + len].copy_from_slice(&data);
            let mut back = vec![0; len];
            img.disk.read_at(off, &mut back).unwrap();
            assert_eq!(back, data, "{cache:?} at {off:#x}");
        }
        let mut all = vec![0; 1 << 20];
        img.disk.read_at(0, &mut all).unwrap();
        assert_eq!(all, expected, "{cache:?}");
        img.disk.flush().unwrap();
        assert!(matches!(img.disk.write_at((1 << 20) - 1, &[0, 0]), Err(DiskError::OutOfRange { .. })));
        drop(img);
        assert_eq!(std::fs::read(&path).unwrap(), expected, "{cache:?}: file contents");
    }
}

#[test]
fn raw_read_only_refuses_writes() {
    let dir = TempDir::new();
    let path = dir.file("ro.raw");
    std::fs::write(&path, pattern(8192, 1)).unwrap();
    let img = open(&path, |o| o.read_only = true).unwrap();
    assert!(img.read_only && img.disk.read_only());
    assert!(matches!(img.disk.write_at(0, &[1]), Err(DiskError::ReadOnly)));
    // Read-only and probed: no sector-0 warning, nothing can be written anyway.
    assert!(img.warnings.is_empty(), "{:?}", img.warnings);
    // readonly=on wins over snapshot=on (a CD-ROM under -snapshot stays read-only).
    let img = open(&path, |o| {
        o.read_only = true;
        o.snapshot = true;
    })
    .unwrap();
    assert!(img.read_only && img.disk.read_only());
    assert!(matches!(img.disk.write_at(0, &[1]), Err(DiskError::ReadOnly)));
}

#[test]
fn raw_odd_length_is_rounded_down_and_falls_back_from_o_direct() {
    let dir = TempDir::new();
    let path = dir.file("odd.raw");
    std::fs::write(&path, pattern(5000, 9)).unwrap();
    let img = open(&path, |o| {
        o.format = Some(ImageFormat::Raw);
        o.cache = CacheMode::None;
    })
    .unwrap();
    assert_eq!(img.size, 4608);
    assert_eq!(img.warnings.len(), 2, "{:?}", img.warnings);
    assert!(img.warnings[0].contains("cache=none"), "{}", img.warnings[0]);
    img.disk.write_at(4096, &[0xaa; 512]).unwrap();
    drop(img);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 5000);
    assert_eq!(&bytes[4096..4608], &[0xaa; 512][..]);
}

#[test]
fn probed_raw_warns_and_keeps_sector_0_from_becoming_qcow2() {
    let dir = TempDir::new();
    let path = dir.file("probed.img");
    std::fs::write(&path, vec![0u8; 65536]).unwrap();
    let img = open(&path, |_| {}).unwrap();
    assert_eq!((img.format, img.probed), (ImageFormat::Raw, true));
    assert_eq!(img.warnings.len(), 1);
    assert!(img.warnings[0].contains("probed as raw") && img.warnings[0].contains(path.to_str().unwrap()), "{}", img.warnings[0]);
    let refused = |r: Result<(), DiskError>| matches!(r, Err(DiskError::ProbedFormatChange));
    // The whole magic at once, and assembled piecewise, are both refused.
    assert!(refused(img.disk.write_at(0, b"QFI\xfb\0\0\0\x03")));
    img.disk.write_at(0, b"QFI").unwrap();
    assert!(refused(img.disk.write_at(3, b"\xfb")));
    img.disk.write_at(3, b"x").unwrap();
    img.disk.write_at(512, b"QFI\xfb").unwrap();
    assert!(!std::fs::read(&path).unwrap().starts_with(b"QFI\xfb"));
    drop(img);
    // With the format given, the guest may write what it likes.
    let img = open(&path, |o| o.format = Some(ImageFormat::Raw)).unwrap();
    assert!(img.warnings.is_empty());
    img.disk.write_at(0, b"QFI\xfb").unwrap();
    drop(img);
    assert!(std::fs::read(&path).unwrap().starts_with(b"QFI\xfb"));
}

#[test]
fn snapshot_on_raw_never_writes_the_file() {
    let dir = TempDir::new();
    let path = dir.file("base.raw");
    let original = pattern(1 << 20, 3);
    std::fs::write(&path, &original).unwrap();
    let img = open(&path, |o| o.snapshot = true).unwrap();
    assert!(!img.read_only && !img.disk.read_only());
    assert!(img.warnings.is_empty(), "{:?}", img.warnings);
    const NEW: &[u8] = b"QFI\xfb overlay data";
    img.disk.write_at(0, NEW).unwrap();
    img.disk.write_at(300_000, &[0x55; 70_000]).unwrap();
    img.disk.flush().unwrap();
    let mut back = vec![0; 1 << 20];
    img.disk.read_at(0, &mut back).unwrap();
    assert_eq!(&back[..NEW.len()], NEW);
    assert_eq!(&back[300_000..370_000], &[0x55; 70_000][..]);
    assert_eq!(&back[NEW.len()..300_000], &original[NEW.len()..300_000]);
    drop(img);
    assert_eq!(std::fs::read(&path).unwrap(), original);
    // The overlay left nothing behind in $TMPDIR.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("ferrite-snapshot-{}-", std::process::id())))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn option_parsing() {
    assert_eq!(CacheMode::parse("none"), Ok(CacheMode::None));
    assert_eq!(CacheMode::parse("directsync"), Ok(CacheMode::Directsync));
    assert!(CacheMode::parse("fast").unwrap_err().to_string().contains("'fast'"));
    assert_eq!(ImageFormat::parse("qcow2"), Ok(ImageFormat::Qcow2));
    assert!(ImageFormat::parse("vmdk").unwrap_err().to_string().contains("'vmdk'"));
    let o = ferrite_block::DriveOptions::new("x");
    assert!(o.locking && !o.snapshot && !o.read_only && o.format.is_none() && o.cache == CacheMode::Writeback);
}
