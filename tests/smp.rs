//! End to end, SMP: multiboot kernels built here (see `guests/`) start the APs through the MADT
//! and INIT-SIPI-SIPI, then check atomic instructions across vCPUs, cross-modifying code, and that
//! a reset through port 0xCF9 stops the guest at once. Each guest reports on COM1 and leaves
//! through isa-debug-exit; every run has a watchdog, so a hung guest fails instead of hanging.

mod guests;

use guests::{exit_status, smp, Run, EXIT_OK};
use std::sync::Mutex;
use std::time::Duration;

/// The counter guests contend on purpose; with more vCPUs than host cores a preempted lock
/// holder stalls the others, so they get the most time. QEMU 7.2 TCG took 2-10 s for either
/// configuration on two busy host cores.
const COUNTERS_TIMEOUT: Duration = Duration::from_secs(120);
const TIMEOUT: Duration = Duration::from_secs(60);
/// Rounds per CPU of the counter guest, per CPU count (fewer with more vCPUs, for the same reason).
const ITERATIONS_2_CPUS: u32 = 2_000_000;
const ITERATIONS_4_CPUS: u32 = 500_000;

/// SMP guests want the host's cores to themselves: run them one at a time.
static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Boots `kernel` with `-smp cpus` (see [`guests::boot`]), one guest at a time.
fn run(name: &str, kernel: &[u8], cpus: u32, timeout: Duration) -> Run {
    let _one = ONE_GUEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    guests::boot(name, kernel, &["-smp", &cpus.to_string()], timeout)
}

fn atomic_counters(cpus: u32, iterations: u32) {
    let r = run("smp_atomic_counters", &smp::atomic_counters(iterations), cpus, COUNTERS_TIMEOUT);
    assert_eq!(r.serial, format!("smp: {cpus} cpus, counters ok\n"), "{}", r.context);
    assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
}

#[test]
fn smp_atomic_counters_2_cpus() {
    atomic_counters(2, ITERATIONS_2_CPUS);
}

#[test]
fn smp_atomic_counters_4_cpus() {
    atomic_counters(4, ITERATIONS_4_CPUS);
}

fn cross_modifying_code(cpus: u32) {
    let r = run("cross_modifying_code", &smp::cross_modifying_code(), cpus, TIMEOUT);
    assert_eq!(r.serial, format!("xmc: {cpus} cpus, every AP ran the new code\n"), "{}", r.context);
    assert_eq!(r.status, Some(exit_status(EXIT_OK)), "{}", r.context);
}

#[test]
fn cross_modifying_code_2_cpus() {
    cross_modifying_code(2);
}

#[test]
fn cross_modifying_code_4_cpus() {
    cross_modifying_code(4);
}

#[test]
fn reset_through_cf9_is_immediate() {
    let r = run("reset_through_cf9", &smp::reset_through_cf9(), 1, TIMEOUT);
    assert!(r.serial.contains(smp::BEFORE_RESET), "the guest did not run: {}", r.context);
    assert!(!r.serial.contains(smp::AFTER_RESET as char), "the guest ran on after the reset: {}", r.context);
    // Under -no-reboot a guest reset ends the emulator with status 0, as QEMU does.
    assert_eq!(r.status, Some(0), "{}", r.context);
}
