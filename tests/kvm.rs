//! End to end under `-accel kvm`: the test guests of the platform and SMP tests (multiboot
//! kernels through protected mode, COM1, isa-debug-exit, PIT-timed delays, the MADT, INIT-SIPI
//! and atomics across vCPUs, cross-modifying code, the EDU device's MMIO and DMA) give the same
//! output and exit status under KVM as under TCG, in the same run. Skipped, saying why, where
//! /dev/kvm cannot be used.
//!
//! On this project's CI machines /dev/kvm is a nested hypervisor that runs guests through the
//! host kernel's instruction emulator (about 2 million instructions per second), so the guests
//! here do little work; what is tested is that they behave the same.

mod guests;

use guests::pci::{edu, edu_result_line};
use guests::{boot, exit_status, smp, Run, EXIT_OK};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Why KVM cannot be used here, if it cannot.
fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm: {e}")),
    }
}

/// Boots `kernel` under TCG and then KVM with `args`, and checks both runs with `check`.
fn both(name: &str, kernel: &[u8], args: &[&str], check: impl Fn(&Run)) {
    let tcg = boot(name, kernel, &[args, &["-accel", "tcg"]].concat(), TIMEOUT);
    check(&tcg);
    if let Some(why) = kvm_unusable() {
        println!("SKIPPED under KVM: {why}");
        return;
    }
    let kvm = boot(name, kernel, &[args, &["-accel", "kvm"]].concat(), TIMEOUT);
    if kvm.status == Some(1) && kvm.context.contains("KVM internal error") {
        // This host's /dev/kvm emulates every guest instruction in the host kernel. What it
        // cannot emulate (IRET in protected mode, SSE) ferrite's own CPU runs; anything else
        // KVM gives up on must stop the machine with a report, with what the guest printed
        // until then matching TCG.
        assert!(kvm.context.contains("instruction bytes: "), "{}", kvm.context);
        assert!(tcg.serial.starts_with(&kvm.serial), "TCG: {}\nKVM: {}", tcg.context, kvm.context);
        println!("KVM on this host stopped with an internal error, reported as such: {}", kvm.context);
        return;
    }
    check(&kvm);
    assert_eq!(tcg.serial, kvm.serial, "TCG and KVM differ\nTCG: {}\nKVM: {}", tcg.context, kvm.context);
    assert_eq!(tcg.status, kvm.status);
}

/// A kernel that prints with `rep outsb` (string port I/O) and exits with a code.
#[test]
fn multiboot_string_io_and_exit_code_under_kvm() {
    let kernel = guests::multiboot_kernel(|a, d| {
        let msg = d.cstr("hello from KVM and TCG\n");
        let mut start = a.named_label("start");
        a.here(&mut start);
        guests::check_multiboot_magic(a);
        a.mov(iced_x86::code_asm::esi, msg).unwrap();
        a.mov(iced_x86::code_asm::ecx, 23u32).unwrap();
        a.mov(iced_x86::code_asm::dx, guests::COM1 as u32).unwrap();
        a.rep().outsb().unwrap();
        guests::exit(a, EXIT_OK);
    });
    both("kvm_hello", &kernel, &[], |r| {
        assert_eq!(r.serial, "hello from KVM and TCG\n", "{}", r.context);
        assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
    });
}

#[test]
fn smp_counters_and_init_sipi_under_kvm() {
    for cpus in [1u32, 2] {
        both("kvm_smp", &smp::atomic_counters(2_000), &["-smp", &cpus.to_string()], |r| {
            assert_eq!(r.serial, format!("smp: {cpus} cpus, counters ok\n"), "{}", r.context);
            assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
        });
    }
}

#[test]
fn cross_modifying_code_under_kvm() {
    both("kvm_xmc", &smp::cross_modifying_code(), &["-smp", "2"], |r| {
        assert_eq!(r.serial, "xmc: 2 cpus, every AP ran the new code\n", "{}", r.context);
        assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
    });
}

#[test]
fn edu_mmio_and_dma_under_kvm() {
    both("kvm_edu", &edu(), &["-device", "edu"], |r| {
        assert_eq!(r.serial, edu_result_line(2, 0), "{}", r.context);
        assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
    });
}
