use super::*;
use ferrite_memory::{Dma, GuestMemory};
use ferrite_persist::{load, save, Persist, RestoreError};
use std::sync::Arc;

fn device() -> FwCfg {
    let mut f = FwCfg::new();
    f.add_file("etc/e820", vec![7u8; 40]).unwrap();
    f.add_file_writable("etc/scratch", vec![0u8; 4]).unwrap();
    f
}

fn dma() -> Dma {
    Dma::new(Arc::new(GuestMemory::new(0x1_0000, 0).unwrap()))
}

#[test]
fn a_restored_fw_cfg_reads_on_from_the_same_place() {
    let dma = dma();
    let mut a = device();
    let key = a.file_key("etc/e820").unwrap();
    a.write(FW_CFG_SEL_OFFSET, 2, u32::from(key), &dma);
    a.read(FW_CFG_DATA_OFFSET, 4);
    a.write(FW_CFG_DMA_HIGH_OFFSET, 4, 0x1234_5678, &dma);
    a.files[1].1.data = b"abcd".to_vec(); // as a guest DMA write would leave it
    let mut b = device();
    load(&mut b, &save(&a, "fw_cfg")).unwrap();
    assert_eq!(b.selected(), key);
    assert_eq!(b.file_data("etc/scratch"), Some(&b"abcd"[..]));
    for _ in 0..12 {
        assert_eq!(a.read(FW_CFG_DATA_OFFSET, 4), b.read(FW_CFG_DATA_OFFSET, 4));
    }
    assert_eq!(b.save(), a.save());
}

#[test]
fn a_writable_file_this_machine_lacks_or_sizes_differently_is_refused() {
    let a = device();
    let mut b = FwCfg::new();
    let e = b.restore(a.save()).unwrap_err();
    assert!(matches!(e, RestoreError::Invalid { field: "writable_files", .. }), "{e}");
    let mut s = a.save();
    s.writable_files[0].data.push(0);
    let mut b = device();
    assert!(b.restore(s).is_err());
    let mut s = a.save();
    s.selector = 0x4000 | 0x19;
    s.writable_files[0].data = b"wxyz".to_vec();
    assert!(b.restore(s).is_err());
    assert_eq!(b.file_data("etc/scratch"), Some(&[0u8; 4][..]), "unchanged");
}
