//! End to end, QMP: QEMU's own Python client (PyPI's qemu.qmp) drives ferrite running
//! Debian's kernel: greeting, negotiation, queries, stop/cont with their events, named
//! snapshots as jobs (snapshot-save, -load, -delete, query-jobs), errors with
//! QEMU's classes, malformed input, a second client, and system_powerdown, which Debian's
//! ACPI button driver turns into a power-off (tests/qmp/session.py has the checks).
//!
//! Needs `scripts/fetch-guests` and `scripts/install-deps` (skips, saying so, without them).

mod common;

use common::{guest_files, run_ferrite_with, Hook};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether `python3` can import QEMU's QMP client.
fn have_qmp_client() -> bool {
    let ok = Command::new("python3").args(["-c", "import qemu.qmp"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: python3 cannot import qemu.qmp (scripts/install-deps installs it)");
    }
    ok
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-qmp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn qemus_qmp_client_controls_a_debian_guest() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_qmp_client() {
        return;
    }
    let dir = scratch("session");
    let (qmp, raw) = (dir.join("qmp.sock"), dir.join("raw.sock"));
    let args: Vec<String> = [
        "-m", "256", "-smp", "2", "-nographic", "-nodefaults", "-serial", "stdio",
        "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", "console=ttyS0 quiet",
        "-qmp", &format!("unix:{},server=on,wait=off", qmp.display()),
        "-chardev", &format!("socket,id=mon1,path={},server=on,wait=off", raw.display()),
        "-mon", "chardev=mon1,mode=control",
        "-netdev", "user,id=net0", "-device", "e1000,netdev=net0",
        "-snapshot-dir", &dir.join("snapshots").display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let result: Arc<Mutex<Option<(bool, String)>>> = Arc::default();
    let out = result.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qmp/session.py");
    let hook: Hook = ("FERRITE-INIT-OK", Box::new(move |pid| {
        let r = Command::new("python3").arg(script).arg(&qmp).arg(&raw).arg(pid.to_string()).output().expect("python3 runs");
        let text = String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
        if !r.status.success() {
            // The guest would run on without the power-off the session ends with.
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        *out.lock().unwrap() = Some((r.status.success(), text));
    }));
    let run = run_ferrite_with(&args, Duration::from_secs(600), &["FERRITE-INIT-OK", "FERRITE-POWER-BUTTON"], None, vec![hook]);
    // The client may still be printing its last lines after ferrite exited.
    let mut waited = 0;
    while result.lock().unwrap().is_none() && waited < 300 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let (ok, text) = result.lock().unwrap().clone().expect("the QMP client finished");
    println!("{text}");
    assert!(ok && text.contains("QMP-SESSION-OK"), "the QMP session failed:\n{text}\nguest:\n{}", run.tail(3000));
    assert!(run.output.contains("FERRITE-POWER-BUTTON"), "the guest did not see the power button:\n{}", run.tail(3000));
    assert_eq!(run.status, Some(0), "ferrite exits 0 after the guest's power-off");
    let _ = std::fs::remove_dir_all(&dir);
}
