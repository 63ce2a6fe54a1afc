//! End to end, machine state: a Debian guest counting on its serial port is saved through
//! QMP's `migrate "file:..."` and resumed in a fresh ferrite with `-incoming file:...`: the
//! count goes on where it stopped, without a reboot. A corrupted, truncated or foreign state
//! is refused with a message saying why, before the guest runs.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::qmp::Qmp;
use common::{base64, guest_files, run_ferrite, run_ferrite_with, Hook};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo count=$i; sleep 0.1; done";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-migration-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn machine_args(mem: &str) -> Option<Vec<String>> {
    let [kernel, initrd] = guest_files(["bzImage", "initramfs.cpio.gz"])?;
    let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(COUNTER.as_bytes()));
    Some(
        ["-m", mem, "-smp", "2", "-nographic", "-nodefaults", "-serial", "stdio", "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append]
            .map(String::from)
            .to_vec(),
    )
}

/// The numbers the guest printed as `count=N`, in order.
fn counts(output: &str) -> Vec<u64> {
    output.lines().filter_map(|l| l.trim().strip_prefix("count=")?.parse().ok()).collect()
}

/// Runs the counter, saves it to `state` through QMP once it counted a while; returns the
/// source's output.
fn save_counter(dir: &Path, state: &Path) -> Option<String> {
    let mut args = machine_args("256")?;
    let qmp = dir.join("qmp.sock");
    args.extend(["-qmp".to_string(), format!("unix:{},server=on,wait=off", qmp.display())]);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let state = state.to_path_buf();
    let hook: Hook = ("count=20", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        let r = q.execute("migrate", serde_json::json!({"uri": format!("file:{}", state.display())}));
        log.lock().unwrap().push(format!("migrate: {r:?}"));
        let status = q.execute("query-status", serde_json::json!({})).unwrap();
        log.lock().unwrap().push(format!("status: {}", status["status"]));
        let info = q.execute("query-migrate", serde_json::json!({})).unwrap();
        log.lock().unwrap().push(format!("query-migrate: {info}"));
        // The source stays stopped: nothing more is counted before it quits.
        std::thread::sleep(Duration::from_millis(500));
        q.execute("quit", serde_json::json!({})).unwrap();
    }));
    let run = run_ferrite_with(&args, Duration::from_secs(300), &["count=20"], None, vec![hook]);
    let log = seen.lock().unwrap().join("\n");
    println!("{log}");
    assert!(log.contains("migrate: Ok"), "migrate failed:\n{log}\n{}", run.tail(2000));
    assert!(log.contains("status: \"postmigrate\""), "the source is not stopped after migrate:\n{log}");
    assert!(log.contains("\"status\":\"completed\""), "query-migrate:\n{log}");
    assert_eq!(run.status, Some(0), "the source did not quit cleanly:\n{}", run.tail(2000));
    Some(run.output)
}

#[test]
fn a_saved_guest_resumes_in_a_fresh_process_where_it_stopped() {
    let dir = scratch("resume");
    let state = dir.join("state");
    let Some(source) = save_counter(&dir, &state) else { return };
    let before = counts(&source);
    let last = *before.last().expect("the source counted");
    println!("source counted to {last}; state is {} bytes", std::fs::metadata(&state).unwrap().len());

    let mut args = machine_args("256").unwrap();
    args.extend(["-incoming".to_string(), format!("file:{}", state.display())]);
    let target = format!("count={}", last + 15);
    let run = run_ferrite(&args, Duration::from_secs(120), &[&target], Some(&target));
    let after = counts(&run.output);
    println!("destination: {:?}...", &after[..after.len().min(5)]);
    assert_eq!(after.first(), Some(&(last + 1)), "the count did not go on where it stopped:\n{}", run.tail(2000));
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "the count skipped or repeated: {after:?}");
    assert!(!run.output.contains("FERRITE-INIT-OK"), "the destination booted the guest again:\n{}", run.tail(2000));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupted_truncated_and_foreign_states_are_refused() {
    let dir = scratch("refuse");
    let state = dir.join("state");
    let Some(_) = save_counter(&dir, &state) else { return };
    let good = std::fs::read(&state).unwrap();
    let try_load = |name: &str, bytes: &[u8], mem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut args = machine_args(mem).unwrap();
        args.extend(["-incoming".to_string(), format!("file:{}", path.display())]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{name}: ferrite accepted it");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("count="), "{name}: the guest ran");
        println!("{name}: {}", stderr.trim());
        stderr
    };
    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x01;
    assert!(try_load("flipped", &flipped, "256").contains("checksum"));
    assert!(try_load("truncated", &good[..good.len() / 3], "256").contains("ended early"));
    assert!(try_load("garbage", b"not a state at all", "256").contains("not a ferrite machine state"));
    let e = try_load("foreign", &good, "512");
    assert!(e.contains("RAM below 4 GiB: 256 MiB in the snapshot, 512 MiB here"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
