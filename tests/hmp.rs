//! End to end, human-monitor commands on a Debian guest: `info mtree` and `info irq` in
//! QEMU's layouts, `info jit` (the translator's counters), `screendump` refused (ferrite has no display), and `sendkey
//! ctrl-alt-delete`, which reaches Linux through the i8042 and its atkbd driver as the
//! three-finger salute: the kernel restarts the machine ("reboot: Restarting system") and,
//! under -no-reboot, ferrite exits 0.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::{base64, guest_files, monitor, Spawned};
use std::time::Duration;

#[test]
fn sendkey_ctrl_alt_delete_reboots_linux_through_the_ps2_keyboard() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs.cpio.gz"]) else { return };
    let dir = std::env::temp_dir().join(format!("ferrite-hmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mon = dir.join("mon");
    let script = "grep -q 'AT Translated Set 2 keyboard' /proc/bus/input/devices && echo KEYBOARD-READY; while :; do sleep 1; done";
    let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(script.as_bytes()));
    let mut args: Vec<String> = ["-m", "256", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot"].map(String::from).to_vec();
    args.extend(["-kernel".into(), kernel.display().to_string(), "-initrd".into(), initrd.display().to_string(), "-append".into(), append]);
    args.extend(["-monitor".into(), format!("unix:{},server=on,wait=off", mon.display())]);
    let mut guest = Spawned::start(&args);
    assert!(guest.wait_until(Duration::from_secs(180), |o| o.contains("KEYBOARD-READY")), "no keyboard in the guest:\n{}", guest.output());

    let mtree = monitor(&mon, "info mtree");
    for line in [
        "address-space: memory",
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
        "    0000000000000000-000000000fffffff (prio 0, ram): alias ram-below-4g @pc.ram 0000000000000000-000000000fffffff",
        "    00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic",
        "address-space: I/O",
        "  0000000000000000-000000000000ffff (prio 0, i/o): io",
        "    00000000000003f8-00000000000003ff (prio 0, i/o): com1",
        "    0000000000000060-0000000000000060 (prio 0, i/o): i8042 data",
    ] {
        assert!(mtree.lines().any(|l| l == line), "info mtree lacks '{line}':\n{mtree}");
    }
    let irq = monitor(&mon, "info irq");
    println!("{irq}");
    let (ioapic, pic) = irq.split_once("IRQ statistics for isa-i8259:\n").expect("the PIC's section");
    assert!(ioapic.starts_with("IRQ statistics for ioapic:\n"), "{irq}");
    let count = |section: &str, input: &str| section.lines().find_map(|l| l.strip_prefix(input)?.trim().parse::<u64>().ok());
    assert!(count(ioapic, " 4:").is_some_and(|n| n > 0), "the serial port's interrupts are not counted:\n{irq}");
    assert!(count(ioapic, " 1:").is_some_and(|n| n > 0), "the keyboard's interrupts (its probe) are not counted:\n{irq}");
    assert!(pic.lines().all(|l| l.len() > 4 && l.as_bytes()[2] == b':'), "{irq}");

    // The JIT's counters, live: a booted kernel ran mostly compiled code (unless the
    // environment turned the translator off).
    let jit = monitor(&mon, "info jit");
    println!("{jit}");
    assert!(jit.starts_with("CPU#0\ntranslator "), "{jit}");
    if !jit.contains("translator off") {
        let compiled = jit.lines().find_map(|l| l.split_once(" blocks (")?.0.parse::<u64>().ok());
        assert!(compiled.is_some_and(|n| n > 1000), "no blocks compiled:\n{jit}");
        let share = jit.lines().find_map(|l| l.split_once("% in compiled code")?.0.rsplit_once(", ")?.1.parse::<f64>().ok());
        assert!(share.is_some_and(|p| p > 50.0), "{jit}");
    }

    let shot = dir.join("shot.ppm");
    assert_eq!(monitor(&mon, &format!("screendump {}", shot.display())), "Error: There is no console to take a screendump from\n");
    assert!(!shot.exists());
    assert_eq!(monitor(&mon, "sendkey ctrl-foo"), "invalid parameter: foo\n");
    assert_eq!(monitor(&mon, "sendkey ctrl-alt-delete").trim(), "");
    let status = guest.wait(Duration::from_secs(60));
    let out = guest.output();
    assert!(out.contains("reboot: Restarting system"), "the guest did not restart:\n{out}");
    assert_eq!(status, Some(0), "ferrite exits 0 when the guest reboots under -no-reboot");
    let _ = std::fs::remove_dir_all(&dir);
}
