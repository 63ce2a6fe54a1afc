use super::*;
use crate::pci::{PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use crate::testing::TestLink;
use ferrite_persist::{load, save, Persist, RestoreError};
use super::tests::{attached, r32, w32};

/// Factorial interrupts on, one raised and unacknowledged (INTx), data in the buffer.
fn busy() -> (Edu, TestLink) {
    let (mut e, t) = attached();
    e.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    w32(&mut e, EDU_REG_LIVENESS, 0x1234);
    w32(&mut e, EDU_REG_STATUS, EDU_STATUS_IRQ_FACT);
    w32(&mut e, EDU_REG_FACTORIAL, 10);
    e.bar_write(0, EDU_DMA_BUFFER + 8, b"snapshot");
    e.bar_write(0, EDU_REG_DMA_SRC, &0x1000u64.to_le_bytes());
    assert!(t.line.level());
    (e, t)
}

#[test]
fn a_restored_edu_carries_on_like_the_original() {
    let (mut a, at) = busy();
    let (mut b, bt) = attached();
    load(&mut b, &save(&a, "00:04.0")).unwrap();
    assert!(bt.line.level(), "INTx is re-driven");
    for off in [EDU_REG_LIVENESS, EDU_REG_FACTORIAL, EDU_REG_STATUS, EDU_REG_IRQ_STATUS, EDU_REG_DMA_SRC] {
        assert_eq!(r32(&mut a, off), r32(&mut b, off), "register {off:#x}");
    }
    // DMA the buffer out to RAM in both and acknowledge.
    for (e, t) in [(&mut a, &at), (&mut b, &bt)] {
        e.bar_write(0, EDU_REG_DMA_DST, &0x2000u64.to_le_bytes());
        e.bar_write(0, EDU_REG_DMA_SRC, &(EDU_DMA_BUFFER + 8).to_le_bytes());
        e.bar_write(0, EDU_REG_DMA_COUNT, &8u64.to_le_bytes());
        e.bar_write(0, EDU_REG_DMA_CMD, &(EDU_DMA_START | EDU_DMA_TO_RAM).to_le_bytes());
        let mut got = [0u8; 8];
        t.mem.read(0x2000, &mut got).unwrap();
        assert_eq!(&got, b"snapshot");
        w32(e, EDU_REG_IRQ_ACK, EDU_IRQ_FACT);
        assert!(!t.line.level());
    }
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy();
    let (mut b, bt) = attached();
    let fresh = b.save();
    let mut s = a.save();
    s.buffer.pop();
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "buffer", .. })));
    let mut s = a.save();
    s.dma_command = EDU_DMA_START;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
    assert!(!bt.line.level());
}
