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
    boot_with_initrds(kernel, &[], cmd, smp)
}

/// [`boot_kernel`] with `extra` initrd archives after the project's initramfs (QEMU's
/// `-initrd a,b`: the kernel unpacks them in turn).
fn boot_with_initrds(kernel: &str, extra: &[&std::path::Path], cmd: &str, smp: u32) -> Option<Boot> {
    boot_with(kernel, extra, &[], cmd, smp)
}

/// [`boot_with_initrds`] with more options for ferrite (`-cpu ...`).
fn boot_with(kernel: &str, extra: &[&std::path::Path], options: &[&str], cmd: &str, smp: u32) -> Option<Boot> {
    let [kernel, initramfs] = guest_files([kernel, "initramfs.cpio.gz"])?;
    let mut initrd = initramfs.display().to_string();
    for e in extra {
        initrd += &format!(",{}", e.display());
    }
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd={}", escape(cmd));
    let args: Vec<String> = ["-m", "512", "-smp", &smp.to_string(), "-nographic", "-no-reboot", "-serial", "stdio"]
        .iter()
        .map(|s| s.to_string())
        .chain(["-kernel".into(), kernel.display().to_string(), "-initrd".into(), initrd])
        .chain(["-append".into(), append])
        .chain(options.iter().map(|s| s.to_string()))
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
    let script = "cat /proc/cpuinfo; cat /proc/interrupts; echo written-to-tmpfs > /tmp/probe; cat /tmp/probe; uname -r; \
                  echo its: $(cat /sys/devices/system/cpu/vulnerabilities/indirect_target_selection)";
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
    // IA32_ARCH_CAPABILITIES says ITS_NO: the kernel keeps its plain returns.
    assert!(out.contains("its: Not affected"), "the kernel mitigates indirect target selection:\n{tail}");
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
/// QEMU's default CPU model, `-cpu qemu64` (AMD family 15, no TSC-deadline timer and no TSC
/// frequency in CPUID): Linux runs PREFETCHW, as on any 64-bit AMD CPU, and checks that the
/// 8254's rate generator ticks through IOAPIC pin 2, whose one-clock low phase must reach the
/// interrupt controllers as an edge (`check_timer` panics "IO-APIC + timer doesn't work!"
/// otherwise).
#[test]
fn debian_kernel_boots_on_qemus_default_cpu_model() {
    let cmd = "grep -m1 'model name' /proc/cpuinfo; cat /proc/interrupts";
    let Some(b) = boot_with("bzImage", &[], &["-cpu", "qemu64"], cmd, 1) else { return };
    let out = &b.output;
    let tail: String = out.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(!out.contains("Kernel panic"), "the kernel panicked:\n{tail}");
    assert!(out.contains("QEMU Virtual CPU"), "not the qemu64 model:\n{tail}");
    assert!(out.contains("FERRITE-CMD-EXIT=0"), "commands failed:\n{tail}");
    assert!(interrupt_count(out, "timer").is_some_and(|n| n > 0), "no timer interrupts through the IOAPIC:\n{tail}");
    assert_eq!(b.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
}

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

/// x86-64-v3 user space in Debian's guest under `-cpu max`: tests/programs/v3_userland.c, built
/// with `gcc -O2 -march=x86-64-v3 -static` (AVX2, FMA, BMI1/2, LZCNT in its own code; glibc's
/// string functions pick their AVX2 versions from CPUID), prints the same results in the guest
/// as on the host; /proc/cpuinfo shows the v3 flags; the host's glibc dynamic loader, run in
/// the guest, reports x86-64-v3 as supported. Skipped without gcc's static libc, cpio, or a host
/// CPU with x86-64-v3.
#[test]
fn x86_64_v3_user_space_in_the_debian_guest() {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        println!("SKIPPED: the host CPU lacks x86-64-v3, so the program cannot run natively to compare");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ferrite-v3-{}", std::process::id()));
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("opt")).unwrap();
    std::fs::create_dir_all(stage.join("lib64")).unwrap();
    let program = stage.join("opt/v3_userland");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/v3_userland.c");
    let built = std::process::Command::new("gcc")
        .args(["-O2", "-march=x86-64-v3", "-static", "-o"])
        .arg(&program)
        .arg(source)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("SKIPPED: gcc could not build a static x86-64-v3 program (gcc and libc6-dev are needed)");
        return;
    }
    let host = std::process::Command::new(&program).output().unwrap();
    assert!(host.status.success());
    let host_out = String::from_utf8(host.stdout).unwrap();
    // The host's dynamic loader, run as a program (it needs no other file for --help).
    let loader = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
    let has_loader = std::fs::copy(loader, stage.join("lib64/ld-linux-x86-64.so.2")).is_ok();
    let archive = dir.join("v3.cpio");
    let cpio = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd '{}' && find . | cpio -o -H newc -R 0:0 --quiet > '{}'", stage.display(), archive.display()))
        .status();
    if !cpio.is_ok_and(|s| s.success()) {
        println!("SKIPPED: cpio is missing (scripts/install-deps installs it)");
        return;
    }
    let cmd = "/opt/v3_userland; /lib64/ld-linux-x86-64.so.2 --help; grep -m1 ^flags /proc/cpuinfo";
    let Some(b) = boot_with_initrds("bzImage", &[&archive], cmd, 1) else { return };
    let _ = std::fs::remove_dir_all(&dir);
    let out = &b.output;
    let tail: String = out.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.contains("FERRITE-CMD-EXIT=0"), "the commands failed:\n{tail}");
    for line in host_out.lines() {
        assert!(out.lines().any(|l| l.trim_end() == line), "the guest's output lacks the host's line {line:?}:\n{tail}");
    }
    let flags = out.lines().find(|l| l.starts_with("flags")).unwrap_or_else(|| panic!("no flags line:\n{tail}"));
    for f in ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "xsave", "aes", "pclmulqdq", "sha_ni"] {
        assert!(flags.split_whitespace().any(|w| w == f), "/proc/cpuinfo lacks {f}: {flags}");
    }
    if has_loader {
        assert!(out.contains("x86-64-v3 (supported, searched)"), "ld.so does not call x86-64-v3 supported:\n{tail}");
        println!("ld.so: {}", out.lines().find(|l| l.contains("x86-64-v3 (supported")).unwrap_or(""));
    }
    println!("guest output matches the host's:\n{host_out}{flags}");
}
