//! End to end, virtio-pci under abuse: the kernel of `guests/virtio` drives ferrite's five
//! virtio devices (blk, net, console, balloon, rng) through the modern interface the way no
//! sane driver would (buffers and rings outside RAM, impossible lengths, chain loops, indices
//! beyond the queue, every misuse of indirect tables, available indices far ahead, bad queue
//! sizes, negotiation out of order, garbage and random register writes), checking what the
//! transport promises after each case and that every device, reset, still serves a sane
//! request: virtio-blk must read back sector 0 of a disk image with a known pattern.
//!
//! The test checks the kernel's verdict and exit status, that the disk image is unchanged (no
//! case writes to it), and that ferrite's memory stays bounded.

mod common;
mod guests;

use guests::virtio::{abuse, disk_pattern, OK_LINE};
use common::rss_kib;
use guests::{boot_watched, exit_status, EXIT_OK};
use std::time::Duration;

/// The whole run; the kernel itself needs a few seconds.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Ferrite's resident set must stay below this (64 MiB of guest RAM plus the emulator).
const RSS_LIMIT_KIB: u64 = 300 * 1024;

#[test]
fn virtio_devices_survive_descriptor_abuse() {
    let kernel = abuse();
    // Short names: boot() names its directory after the arguments, within NAME_MAX.
    let disk = std::env::temp_dir().join(format!("fva-{}.raw", std::process::id()));
    std::fs::write(&disk, disk_pattern()).unwrap();
    let drive = format!("if=none,id=d0,file={},format=raw", disk.display());
    // boot() adds -m 64 and isa-debug-exit at 0xf4.
    #[rustfmt::skip]
    let args = [
        "-nodefaults",
        "-drive", &drive,
        "-device", "virtio-blk-pci,drive=d0",
        "-nic", "user,model=virtio-net-pci",
        "-device", "virtio-serial-pci",
        "-chardev", "null,id=c0",
        "-device", "virtconsole,chardev=c0",
        "-device", "virtio-balloon-pci,free-page-reporting=on",
        "-device", "virtio-rng-pci",
    ];

    let mut peak_kib = 0u64;
    let mut samples = 0u32;
    // Every 20 ms (the run is short); VmHWM holds the peak between samples.
    let run = boot_watched("virtio_abuse", &kernel, &args, TIMEOUT, |pid| {
        if let Some((rss, hwm)) = rss_kib(pid) {
            peak_kib = peak_kib.max(rss).max(hwm);
            samples += 1;
        }
    });
    let disk_after = std::fs::read(&disk).unwrap();
    let _ = std::fs::remove_file(&disk);

    print!("{}", run.serial);
    println!("kernel image {} KiB", kernel.len() / 1024);
    println!("ferrite peak RSS {} MiB over {samples} samples", peak_kib / 1024);
    let context = format!("{}\npeak RSS {} MiB", run.context, peak_kib / 1024);
    assert!(run.serial.contains(OK_LINE), "the kernel did not finish ({OK_LINE} missing)\n{context}");
    assert_eq!(run.status, Some(exit_status(EXIT_OK)), "{context}");
    assert!(disk_after == disk_pattern(), "the disk image changed, though no case writes to it\n{context}");
    assert!(samples > 0, "no RSS sample taken\n{context}");
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "ferrite's RSS peaked at {} MiB, above {} MiB: something grows without bound\n{context}",
        peak_kib / 1024,
        RSS_LIMIT_KIB / 1024
    );
}
