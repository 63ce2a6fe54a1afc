//! End to end, virtio: Debian's kernel drives `-device virtio-rng-pci` with its own
//! `virtio_pci` and `virtio_rng` modules, through the modern interface and, with
//! `disable-modern=on`, through the legacy one, and reads host entropy from /dev/hwrng.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::{base64, guest_files, run_ferrite};
use std::time::Duration;

#[test]
fn linux_reads_hwrng_from_modern_and_legacy_virtio_rng() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    // For each hwrng: 64 KiB read, its size and how many distinct byte values it holds.
    let script = "r=/sys/class/misc/hw_random; echo available=$(cat $r/rng_available); \
        for dev in $(cat $r/rng_available); do echo $dev > $r/rng_current; \
        dd if=/dev/hwrng of=/tmp/e bs=1024 count=64 2>/dev/null; \
        echo $dev-bytes=$(wc -c < /tmp/e); \
        echo $dev-distinct=$(od -An -v -tu1 /tmp/e | tr -s ' ' '\\n' | sort -u | grep -c .); done";
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd64={}", base64(script.as_bytes()));
    let args: Vec<String> = [
        "-m", "256", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append,
        "-device", "virtio-rng-pci", "-device", "virtio-rng-pci,disable-modern=on",
    ]
    .map(String::from)
    .to_vec();
    let run = run_ferrite(&args, Duration::from_secs(600), &["FERRITE-INIT-OK"], None);
    let tail = run.tail(3000);
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a module failed to load:\n{tail}");
    let printed = |key: &str| run.output.lines().find_map(|l| l.trim().strip_prefix(&format!("{key}=")).map(str::trim));
    assert_eq!(printed("available"), Some("virtio_rng.0 virtio_rng.1"), "Linux did not bind both devices:\n{tail}");
    for dev in ["virtio_rng.0", "virtio_rng.1"] {
        assert_eq!(printed(&format!("{dev}-bytes")), Some("65536"), "{dev}:\n{tail}");
        let distinct: u32 = printed(&format!("{dev}-distinct")).and_then(|v| v.parse().ok()).unwrap_or(0);
        // 64 KiB of random bytes hold all 256 values with overwhelming probability.
        assert_eq!(distinct, 256, "{dev} does not look random:\n{tail}");
    }
    assert_eq!(run.status, Some(0), "{tail}");
}
