//! End to end: Debian's stock kernel with the busybox initramfs boots under the interpreter,
//! runs commands on the serial console and powers off; ferrite exits 0. With `-smp 4` every
//! CPU comes online (one host thread per vCPU).
//!
//! Needs the images from `scripts/fetch-guests` (skips, saying so, without them).

mod common;

use common::{escape, guest_files, run_ferrite};
use std::time::Duration;

/// Generous: the interpreter boots the kernel in well under this on the CI machine.
const TIMEOUT: Duration = Duration::from_secs(900);

struct Boot {
    output: String,
    status: Option<i32>,
    /// Seconds from start to the init marker and to exit.
    to_marker: Option<f64>,
    to_exit: f64,
}

fn boot(cmd: &str, smp: u32) -> Option<Boot> {
    boot_kernel("bzImage", cmd, smp)
}

/// [`boot`] with the kernel file `kernel` from the guest cache.
fn boot_kernel(kernel: &str, cmd: &str, smp: u32) -> Option<Boot> {
    let [kernel, initrd] = guest_files([kernel, "initramfs.cpio.gz"])?;
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd={}", escape(cmd));
    let args: Vec<String> = ["-m", "512", "-smp", &smp.to_string(), "-nographic", "-no-reboot", "-serial", "stdio"]
        .iter()
        .map(|s| s.to_string())
        .chain(["-kernel".into(), kernel.display().to_string(), "-initrd".into(), initrd.display().to_string()])
        .chain(["-append".into(), append])
        .collect();
    let run = run_ferrite(&args, TIMEOUT, &["FERRITE-INIT-OK"], None);
    Some(Boot { output: run.output, status: run.status, to_marker: run.marks[0], to_exit: run.elapsed })
}

/// The CPU0 count of the /proc/interrupts line named `name` (its label, like `LOC`, or its
/// last column, like `ttyS0`).
fn interrupt_count(output: &str, name: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let (label, rest) = l.trim().split_once(':')?;
        let mut cols = rest.split_whitespace();
        let count = cols.next()?.parse().ok()?;
        (label == name || rest.trim_end().ends_with(name)).then_some(count)
    })
}

#[test]
fn debian_kernel_boots_to_busybox_and_powers_off() {
    let script = "cat /proc/cpuinfo; cat /proc/interrupts; echo written-to-tmpfs > /tmp/probe; cat /tmp/probe; uname -r";
    let Some(b) = boot(script, 1) else { return };
    println!(
        "boot: init marker after {:.1} s, exit after {:.1} s",
        b.to_marker.unwrap_or(f64::NAN),
        b.to_exit
    );
    let out = &b.output;
    let tail: String = out.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.contains("Linux version"), "no kernel banner:\n{tail}");
    assert!(out.contains("FERRITE-INIT-OK"), "init never ran:\n{tail}");
    assert!(out.contains("model name\t: ferrite"), "cpuinfo does not show ferrite's CPU:\n{tail}");
    assert!(out.contains("written-to-tmpfs"), "tmpfs round trip failed:\n{tail}");
    let timer = interrupt_count(out, "LOC").unwrap_or(0);
    let serial = interrupt_count(out, "ttyS0").unwrap_or(0);
    assert!(timer > 0, "no local timer interrupts in /proc/interrupts:\n{tail}");
    assert!(serial > 0, "no serial interrupts in /proc/interrupts:\n{tail}");
    assert!(out.contains("FERRITE-CMD-EXIT=0"), "commands failed:\n{tail}");
    assert_eq!(b.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
}

#[test]
fn debian_kernel_brings_up_four_cpus() {
    let script = "echo nproc=$(nproc); echo online=$(cat /sys/devices/system/cpu/online); \
                  grep -c ^processor /proc/cpuinfo; cat /proc/interrupts";
    let Some(b) = boot(script, 4) else { return };
    println!("boot -smp 4: init marker after {:.1} s, exit after {:.1} s", b.to_marker.unwrap_or(f64::NAN), b.to_exit);
    let out = &b.output;
    let tail: String = out.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.contains("smp: Brought up 1 node, 4 CPUs"), "not every CPU came up:\n{tail}");
    assert!(out.contains("nproc=4"), "nproc does not print 4:\n{tail}");
    assert!(out.contains("online=0-3"), "CPUs 0-3 are not all online:\n{tail}");
    // Every CPU takes its own local timer interrupts.
    let loc = out.lines().find(|l| l.trim_start().starts_with("LOC:")).unwrap_or_default();
    let counts: Vec<u64> = loc.split_whitespace().skip(1).take(4).filter_map(|c| c.parse().ok()).collect();
    assert!(counts.len() == 4 && counts.iter().all(|&c| c > 0), "local timer interrupts per CPU: {loc}\n{tail}");
    assert!(out.contains("FERRITE-CMD-EXIT=0"), "commands failed:\n{tail}");
    assert_eq!(b.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
}

/// PVH: the uncompressed vmlinux ELF, entered at its XEN_ELFNOTE_PHYS32_ENTRY with the
/// hvm_start_info (command line, initrd module, memory map, RSDP) as QEMU, Firecracker and
/// cloud-hypervisor boot it.
#[test]
fn debian_kernel_boots_through_pvh() {
    let Some(b) = boot_kernel("vmlinux", "cat /proc/cmdline; grep -c ^processor /proc/cpuinfo", 1) else { return };
    println!("PVH boot: init marker after {:.1} s, exit after {:.1} s", b.to_marker.unwrap_or(f64::NAN), b.to_exit);
    let out = &b.output;
    let tail: String = out.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.contains("Booting paravirtualized kernel") || out.contains("Linux version"), "no kernel banner:\n{tail}");
    assert!(out.contains("FERRITE-INIT-OK"), "init never ran (the initrd module):\n{tail}");
    assert!(out.contains("console=ttyS0 panic=-1 ferrite.cmd="), "the command line did not arrive:\n{tail}");
    assert!(out.contains("ACPI: RSDP"), "no ACPI tables:\n{tail}");
    assert!(out.contains("FERRITE-CMD-EXIT=0"), "commands failed:\n{tail}");
    assert_eq!(b.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
}
