//! Board-level interrupt routing: the PIT's IRQ0 reaches the CPU through the PIC (virtual
//! wire) and through IOAPIC pin 2 and the local APIC, as Linux sets them up.

use super::PcBoard;
use crate::memory::GuestMemory;
use ferrite_cpu::bus::CpuBus;

fn board() -> PcBoard {
    let mem = GuestMemory::new(16 << 20, 0).unwrap();
    PcBoard::new(mem, Box::new(std::io::sink()), None).unwrap()
}

/// Programs PIT channel 0 as a rate generator with a 1 ms period.
fn start_pit(b: &mut PcBoard) {
    b.io_write(0x43, 1, 0x34);
    b.io_write(0x40, 1, (1193 & 0xff) as u32);
    b.io_write(0x40, 1, (1193 >> 8) as u32);
}

fn wait_for_interrupt(b: &mut PcBoard) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while std::time::Instant::now() < deadline {
        b.update_timers();
        if b.interrupt_pending() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    false
}

#[test]
fn pit_through_pic() {
    let mut b = board();
    // ICW1-4: edge, cascade, vector base 0x20/0x28, 8086 mode; unmask IRQ0.
    for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 2), (0xa1, 1)] {
        b.io_write(port, 1, v);
    }
    b.io_write(0x21, 1, 0xfe);
    start_pit(&mut b);
    assert!(wait_for_interrupt(&mut b), "no IRQ0 through the PIC");
    assert_eq!(b.acknowledge_interrupt(), Some(0x20));
}

#[test]
fn pit_through_ioapic_and_lapic() {
    let mut b = board();
    // Mask everything on the PIC, as Linux does in symmetric I/O mode.
    b.io_write(0x21, 1, 0xff);
    b.io_write(0xa1, 1, 0xff);
    // LAPIC: software enable (SVR bit 8), LINT0 masked.
    b.mmio_write(0xfee0_00f0, 4, 0x1ff);
    b.mmio_write(0xfee0_0350, 4, 1 << 16);
    // IOAPIC pin 2: vector 0x30, fixed, physical destination 0, edge, unmasked.
    b.mmio_write(0xfec0_0000, 4, 0x10 + 2 * 2);
    b.mmio_write(0xfec0_0010, 4, 0x30);
    b.mmio_write(0xfec0_0000, 4, 0x10 + 2 * 2 + 1);
    b.mmio_write(0xfec0_0010, 4, 0);
    start_pit(&mut b);
    assert!(wait_for_interrupt(&mut b), "no IRQ0 through the IOAPIC");
    assert_eq!(b.acknowledge_interrupt(), Some(0x30));
}

/// Linux's PIT calibration: channel 2 in mode 0 gated through port 0x61; the counter must
/// count down in real time and OUT2 (port 0x61 bit 5) must rise at terminal count.
#[test]
fn pit_channel2_counts_in_real_time() {
    let mut b = board();
    // Gate on, speaker off.
    let v = b.io_read(0x61, 1);
    b.io_write(0x61, 1, (v & !0x02) | 0x01);
    // Channel 2, lobyte/hibyte, mode 0, binary; count 0xffff (~55 ms).
    b.io_write(0x43, 1, 0xb0);
    b.io_write(0x42, 1, 0xff);
    b.io_write(0x42, 1, 0xff);
    let read_count = |b: &mut PcBoard| {
        b.io_write(0x43, 1, 0x80); // latch channel 2
        let lo = b.io_read(0x42, 1);
        let hi = b.io_read(0x42, 1);
        (hi << 8) | lo
    };
    let c1 = read_count(&mut b);
    std::thread::sleep(std::time::Duration::from_millis(10));
    let c2 = read_count(&mut b);
    // 10 ms at 1.193182 MHz is about 11932 ticks.
    assert!(c1 > c2, "counter did not count down: {c1:#x} then {c2:#x}");
    assert!((8000..30000).contains(&(c1 - c2)), "counted {} ticks in 10 ms", c1 - c2);
    assert_eq!(b.io_read(0x61, 1) & 0x20, 0, "OUT2 high before terminal count");
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_ne!(b.io_read(0x61, 1) & 0x20, 0, "OUT2 low after terminal count");
}
