//! End to end, named snapshots through the human monitor: a Debian guest counting on its
//! serial port is saved with `savevm`, counts on, and `loadvm` in the same process takes it
//! back to the saved count, from where it counts on; `info snapshots` lists it; a fresh
//! process started with `-loadvm` goes on from the same count; `delvm` removes it. A missing
//! or corrupted snapshot is refused with the guest running on; one that fails midway leaves
//! the machine stopped in `restore-vm` until another `loadvm`; a writable disk refuses
//! savevm and loadvm. Under KVM, a guest counting timer interrupts goes back the same way.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;
mod guests;

use common::{base64, guest_files, kvm_unusable, monitor, Spawned};
use guests::ticker::{self, rounds};
use guests::{exit_status, EXIT_OK};
use std::path::{Path, PathBuf};
use std::time::Duration;

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo count=$i; sleep 0.1; done";
const BOOT: Duration = Duration::from_secs(180);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-savevm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The counting guest with a monitor at `dir/mon` and its snapshots in `dir/snapshots`.
fn counter_args(dir: &Path) -> Option<Vec<String>> {
    let [kernel, initrd] = guest_files(["bzImage", "initramfs.cpio.gz"])?;
    let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(COUNTER.as_bytes()));
    let mut args: Vec<String> = ["-m", "256", "-smp", "2", "-nographic", "-nodefaults", "-serial", "stdio"].map(String::from).to_vec();
    args.extend(["-kernel".into(), kernel.display().to_string(), "-initrd".into(), initrd.display().to_string(), "-append".into(), append]);
    args.extend(["-monitor".into(), format!("unix:{},server=on,wait=off", dir.join("mon").display())]);
    args.extend(["-snapshot-dir".into(), dir.join("snapshots").display().to_string()]);
    Some(args)
}

/// The numbers the guest printed as `count=N` on lines of their own, in order.
fn counts(output: &str) -> Vec<u64> {
    output.lines().filter_map(|l| l.trim().strip_prefix("count=")?.parse().ok()).collect()
}

fn last_count(output: &str) -> u64 {
    counts(output).last().copied().unwrap_or(0)
}

/// Counts from where the guest went back (the first count lower than the one before it),
/// and the highest count before that.
fn after_going_back(counts: &[u64]) -> Option<(u64, &[u64])> {
    let at = counts.windows(2).position(|w| w[1] < w[0])?;
    Some((counts[at], &counts[at + 1..]))
}

fn consecutive(counts: &[u64]) -> bool {
    counts.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn loadvm_takes_a_running_guest_back_to_its_savevm_and_a_fresh_process_starts_there_with_loadvm() {
    let dir = scratch("cycle");
    let Some(args) = counter_args(&dir) else { return };
    let mon = dir.join("mon");
    let guest = Spawned::start(&args);
    assert!(guest.wait_until(BOOT, |o| last_count(o) >= 10), "the guest did not count:\n{}", guest.output());
    // Stopped, the count the snapshot holds is the last one printed.
    assert_eq!(monitor(&mon, "stop").trim(), "");
    std::thread::sleep(Duration::from_millis(300));
    let saved = last_count(&guest.output());
    assert_eq!(monitor(&mon, "savevm first").trim(), "", "savevm answers nothing when it works");
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: paused", "savevm keeps a stopped guest stopped");
    assert_eq!(monitor(&mon, "cont").trim(), "");
    assert!(guest.wait_until(Duration::from_secs(60), |o| last_count(o) >= saved + 15), "the guest did not count on after savevm");

    let started = std::time::Instant::now();
    assert_eq!(monitor(&mon, "loadvm first").trim(), "", "loadvm answers nothing when it works");
    println!("saved at count={saved}; loadvm took {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: running", "a running guest runs on after loadvm");
    assert!(guest.wait_until(Duration::from_secs(60), |o| after_going_back(&counts(o)).is_some_and(|(_, a)| a.len() >= 10)));
    let all = counts(&guest.output());
    let (high, after) = after_going_back(&all).unwrap();
    println!("went back from count={high} to count={}", after[0]);
    assert!(high >= saved + 15);
    assert!((saved + 1..=saved + 2).contains(&after[0]), "after loadvm the guest went on from {} (saved at {saved})", after[0]);
    assert!(consecutive(after), "the count skipped or repeated after loadvm: {after:?}");

    let list = monitor(&mon, "info snapshots");
    println!("{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.first().copied(), Some("List of snapshots present on all disks:"), "{list}");
    assert_eq!(lines.get(1).copied(), Some("ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT"));
    assert!(lines.get(2).is_some_and(|l| l.starts_with("--        first ") && l.contains(" MiB ")), "{list}");
    assert_eq!(lines.len(), 3, "{list}");
    monitor(&mon, "quit");
    drop(guest);

    // A fresh process starts from the snapshot, without booting.
    let mut fresh = args.clone();
    fresh.extend(["-loadvm".to_string(), "first".to_string()]);
    let resumed = Spawned::start(&fresh);
    assert!(resumed.wait_until(Duration::from_secs(60), |o| counts(o).len() >= 10), "-loadvm: no count:\n{}", resumed.output());
    let out = resumed.output();
    let after = counts(&out);
    println!("-loadvm went on from count={}", after[0]);
    assert!((saved + 1..=saved + 2).contains(&after[0]), "-loadvm went on from {} (saved at {saved})", after[0]);
    assert!(consecutive(&after), "{after:?}");
    assert!(!out.contains("FERRITE-INIT-OK"), "-loadvm booted the guest again");

    assert_eq!(monitor(&mon, "delvm first").trim(), "");
    assert_eq!(monitor(&mon, "info snapshots"), "There is no snapshot available.\n");
    assert!(!dir.join("snapshots/first.ferrite-vm").exists(), "delvm left the file");
    monitor(&mon, "quit");
    drop(resumed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// FNV-1a, 64-bit: the stream's checksum.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `stream` with section `id`'s version changed to one no ferrite has, and a checksum that
/// matches again: a snapshot that passes every check made before loading starts, and
/// fails when that section loads.
fn with_unloadable_section(stream: &[u8], id: &str) -> Vec<u8> {
    // The device state is the last block: its u64 length, the JSON, then the checksum.
    let body = &stream[..stream.len() - 8];
    let at = (0..body.len() - 8)
        .rev()
        .find(|&p| u64::from_le_bytes(body[p..p + 8].try_into().unwrap()) == (body.len() - p - 8) as u64)
        .expect("the device state's block");
    let json = String::from_utf8(body[at + 8..].to_vec()).unwrap();
    let key = format!("\"id\":\"{id}\",\"version\":");
    let from = json.find(&key).expect("the section") + key.len();
    let to = from + json[from..].find(|c: char| !c.is_ascii_digit()).unwrap();
    let json = format!("{}999{}", &json[..from], &json[to..]);
    let mut out = body[..at].to_vec();
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json.as_bytes());
    out.extend(fnv1a(&out).to_le_bytes());
    out
}

#[test]
fn bad_snapshots_are_refused_with_the_guest_running_on_and_one_failing_midway_stops_it_until_the_next_loadvm() {
    let dir = scratch("refused");
    let Some(args) = counter_args(&dir) else { return };
    let mon = dir.join("mon");
    let guest = Spawned::start(&args);
    assert!(guest.wait_until(BOOT, |o| last_count(o) >= 5), "the guest did not count:\n{}", guest.output());
    assert_eq!(monitor(&mon, "savevm good").trim(), "");
    let snapshots = dir.join("snapshots");
    let mut bytes = std::fs::read(snapshots.join("good.ferrite-vm")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(snapshots.join("bad.ferrite-vm"), &bytes).unwrap();

    let before = last_count(&guest.output());
    let bad = monitor(&mon, "loadvm bad");
    println!("loadvm bad: {}", bad.trim());
    assert!(bad.starts_with("Error: ") && bad.contains("checksum"), "{bad}");
    let missing = monitor(&mon, "loadvm nothere");
    println!("loadvm nothere: {}", missing.trim());
    assert!(missing.starts_with("Error: Snapshot 'nothere' does not exist"), "{missing}");
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: running");
    assert!(guest.wait_until(Duration::from_secs(30), |o| last_count(o) >= before + 10), "the guest stopped counting");
    let all = counts(&guest.output());
    assert!(consecutive(&all), "the guest's count was disturbed: {all:?}");
    // The listing shows what is there, a corrupted file too (its damage shows when it loads).
    let list = monitor(&mon, "info snapshots");
    assert!(list.contains("--        bad ") && list.contains("--        good "), "{list}");

    // Every check before loading passes; the PIT's state then cannot load.
    let good = std::fs::read(snapshots.join("good.ferrite-vm")).unwrap();
    std::fs::write(snapshots.join("midway.ferrite-vm"), with_unloadable_section(&good, "pit")).unwrap();
    let e = monitor(&mon, "loadvm midway");
    println!("loadvm midway: {}", e.trim());
    assert!(e.starts_with("Error: loading snapshot 'midway' failed midway") && e.contains("version 999"), "{e}");
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: paused (restore-vm)");
    assert_eq!(monitor(&mon, "cont").trim(), "Error: Resetting the Virtual Machine is required");
    // Another loadvm brings a runnable machine back, stopped until `cont`.
    let stopped_at = guest.output().len();
    assert_eq!(monitor(&mon, "loadvm good").trim(), "");
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: paused");
    assert_eq!(monitor(&mon, "cont").trim(), "");
    assert!(guest.wait_until(Duration::from_secs(30), |o| counts(&o[stopped_at..]).len() >= 5), "the guest did not count after loadvm good");
    monitor(&mon, "quit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn writable_disks_refuse_snapshots_and_a_missing_loadvm_name_stops_start_up() {
    let Some([kernel]) = guest_files(["bzImage"]) else { return };
    let dir = scratch("disks");
    let (ro, overlay) = (dir.join("ro.raw"), dir.join("overlay.raw"));
    for d in [&ro, &overlay] {
        std::fs::write(d, vec![0u8; 1 << 20]).unwrap();
    }
    let mon = dir.join("mon");
    let mut args: Vec<String> = ["-S", "-m", "256", "-nographic", "-nodefaults", "-serial", "none"].map(String::from).to_vec();
    args.extend(["-kernel".into(), kernel.display().to_string()]);
    args.extend(["-snapshot-dir".into(), dir.join("snapshots").display().to_string()]);
    args.extend(["-drive".into(), format!("file={},format=raw,if=ide,index=0,readonly=on", ro.display())]);
    args.extend(["-drive".into(), format!("file={},format=raw,if=ide,index=1,snapshot=on", overlay.display())]);
    args.extend(["-monitor".into(), format!("unix:{},server=on,wait=off", mon.display())]);
    let mut machine = Spawned::start(&args);
    assert!(machine.wait_until(Duration::from_secs(30), |_| mon.exists()));
    std::thread::sleep(Duration::from_millis(200));
    // The read-only drive is fine; the -snapshot overlay is writable.
    for cmd in ["savevm x", "loadvm x"] {
        let e = monitor(&mon, cmd);
        println!("{cmd}: {}", e.trim());
        assert!(e.starts_with("Error: Device 'ide0-hd1' is writable but does not support snapshots"), "{e}");
        assert!(e.contains("qemu-img create -b"), "{e}");
    }
    assert_eq!(monitor(&mon, "info snapshots"), "There is no snapshot available.\n");
    monitor(&mon, "quit");
    assert_eq!(machine.wait(Duration::from_secs(10)), Some(0));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "256", "-nographic", "-nodefaults", "-kernel", &kernel.display().to_string()])
        .args(["-snapshot-dir", &dir.join("snapshots").display().to_string(), "-loadvm", "nothere"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("-loadvm nothere: {}", stderr.trim());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("-loadvm: Snapshot 'nothere' does not exist"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under KVM (with ferrite's interrupt controllers, the default), loadvm rebuilds the VM and
/// loads the state as under TCG: a guest counting PIT rounds goes back to the round it was
/// saved at and counts on to the end, its TSC never going back.
#[test]
fn loadvm_under_kvm_takes_a_ticking_guest_back_to_its_savevm() {
    if let Some(why) = kvm_unusable() {
        println!("SKIPPED: {why}");
        return;
    }
    let dir = scratch("kvm");
    let kernel = dir.join("kernel.bin");
    std::fs::write(&kernel, ticker::kernel()).unwrap();
    let mon = dir.join("mon");
    let mut args: Vec<String> = ["-m", "64", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot", "-accel", "kvm"].map(String::from).to_vec();
    args.extend(["-cpu".into(), "qemu64,-pni,-svm".into(), "-kernel".into(), kernel.display().to_string()]);
    args.extend(["-device".into(), "isa-debug-exit,iobase=0xf4,iosize=0x04".into()]);
    args.extend(["-monitor".into(), format!("unix:{},server=on,wait=off", mon.display())]);
    args.extend(["-snapshot-dir".into(), dir.join("snapshots").display().to_string()]);
    let mut guest = Spawned::start(&args);
    assert!(guest.wait_until(Duration::from_secs(60), |o| rounds(o).len() >= 5), "no rounds under KVM:\n{}", guest.output());
    assert_eq!(monitor(&mon, "stop").trim(), "");
    let saved = *rounds(&guest.output()).last().unwrap();
    assert_eq!(monitor(&mon, "savevm tick").trim(), "");
    assert_eq!(monitor(&mon, "cont").trim(), "");
    assert!(guest.wait_until(Duration::from_secs(60), |o| rounds(o).last().is_some_and(|&r| r >= saved + 5)));
    assert_eq!(monitor(&mon, "loadvm tick").trim(), "");
    let status = guest.wait(Duration::from_secs(120));
    let out = guest.output();
    let all = rounds(&out);
    let back = all.windows(2).position(|w| w[1] <= w[0]).map(|i| i + 1).expect("the rounds went back");
    println!("saved at round {saved}; went back from round {} to {}", all[back - 1], all[back]);
    assert_eq!(all[back], saved + 1, "{out}");
    assert_eq!(all[back..], (saved + 1..=ticker::ROUNDS).collect::<Vec<_>>()[..], "every round after loadvm once, in order:\n{out}");
    assert!(!out.contains("tsc went back"), "{out}");
    assert_eq!(status, Some(exit_status(EXIT_OK)), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
