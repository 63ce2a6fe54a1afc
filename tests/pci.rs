//! End to end, PCI: a multiboot kernel built here (see `guests/pci.rs`) drives QEMU's `edu`
//! device (`-device edu`) the way a driver would: finds it on bus 0 through configuration
//! mechanism #1, sizes and maps BAR0, checks the identification and liveness registers, computes
//! a factorial, DMAs a pattern into the device and back, then takes one INTx interrupt (PIIX3
//! PIRQ routing, ELCR, 8259) and one MSI (local APIC), each acknowledged at the device. It prints
//! one line on COM1 and leaves through isa-debug-exit; every run has a watchdog.
//!
//! The same kernel passes under QEMU 7.2 (`qemu-system-x86_64 -accel tcg -m 64 -nographic
//! -no-reboot -kernel K -serial file:F -device isa-debug-exit,iobase=0xf4,iosize=0x04 -device
//! edu`), where SeaBIOS runs first and edu lands in slot 4 (after VGA and the default NIC).

mod guests;

use guests::pci::{edu, edu_result_line};
use guests::{boot, exit_status, EXIT_OK};
use std::time::Duration;

/// QEMU 7.2 TCG took about 0.5 s (DMA alone waits 2 x 100 ms of virtual time there).
const TIMEOUT: Duration = Duration::from_secs(60);

fn edu_at(args: &[&str], slot: u8, func: u8) {
    let r = boot("pci_edu", &edu(), args, TIMEOUT);
    assert_eq!(r.serial, edu_result_line(slot, func), "{}", r.context);
    assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
}

/// `-device edu` goes to the first free slot: 2 on ferrite's board (no VGA, no NIC), so its
/// INTA is PIIX3 PIRQB.
#[test]
fn edu_in_the_first_free_slot() {
    edu_at(&["-device", "edu"], 2, 0);
}

/// At slot 5 INTA is PIRQA: another PIRQ route and IOAPIC/PIC input than the default slot's.
#[test]
fn edu_at_slot_5() {
    edu_at(&["-device", "edu,addr=5"], 5, 0);
}

