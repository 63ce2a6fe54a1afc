//! End to end, machine state: a Debian guest counting on its serial port is saved through
//! QMP's `migrate "file:..."` and resumed in a fresh ferrite with `-incoming file:...` (or
//! `-incoming defer` and `migrate-incoming`): the count goes on where it stopped, without a
//! reboot. A corrupted, truncated or foreign state
//! is refused with a message saying why, before the guest runs.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::qmp::Qmp;
use common::{base64, guest_files, run_ferrite, run_ferrite_with, Hook, Spawned};
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

/// `-incoming defer`: the destination waits in `inmigrate`, answering QMP, until
/// `migrate-incoming` names the file a source saved; the guest then counts on from where the
/// source stopped. A file that cannot be opened leaves it waiting; a second
/// `migrate-incoming` is refused.
#[test]
fn a_deferred_destination_waits_for_migrate_incoming_and_goes_on_from_the_saved_state() {
    let dir = scratch("defer");
    let state = dir.join("state");
    let Some(source) = save_counter(&dir, &state) else { return };
    let last = *counts(&source).last().expect("the source counted");
    let qmp = dir.join("dest.sock");
    let mut args = machine_args("256").unwrap();
    args.extend(["-incoming".to_string(), "defer".to_string(), "-qmp".to_string(), format!("unix:{},server=on,wait=off", qmp.display())]);
    let dest = Spawned::start(&args);
    let mut q = Qmp::connect(&qmp);
    assert_eq!(q.execute("query-status", serde_json::json!({})).unwrap()["status"], "inmigrate");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!dest.output().contains("count="), "the guest ran before migrate-incoming");
    let e = q.execute("migrate-incoming", serde_json::json!({"uri": "file:/nonexistent/state"})).unwrap_err();
    assert!(e["desc"].as_str().unwrap().contains("cannot open '/nonexistent/state'"), "{e}");
    assert_eq!(q.execute("query-status", serde_json::json!({})).unwrap()["status"], "inmigrate", "a bad source leaves it waiting");
    q.execute("migrate-incoming", serde_json::json!({"uri": format!("file:{}", state.display())})).unwrap();
    let again = q.execute("migrate-incoming", serde_json::json!({"uri": format!("file:{}", state.display())})).unwrap_err();
    assert_eq!(again["desc"], "The incoming migration has already been started");
    assert!(dest.wait_until(Duration::from_secs(60), |o| counts(o).len() >= 15), "the destination did not count:\n{}", dest.output());
    assert_eq!(q.execute("query-status", serde_json::json!({})).unwrap()["status"], "running");
    let events: Vec<String> = q.events.iter().map(|e| format!("{} {}", e["event"].as_str().unwrap_or_default(), e["data"])).collect();
    println!("destination events: {events:?}");
    assert!(events.iter().any(|e| e.starts_with("MIGRATION") && e.contains("completed")) && events.iter().any(|e| e.starts_with("RESUME")), "{events:?}");
    let out = dest.output();
    let after = counts(&out);
    assert_eq!(after.first(), Some(&(last + 1)), "the count did not go on where it stopped:\n{out}");
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "the count skipped or repeated: {after:?}");
    assert!(!out.contains("FERRITE-INIT-OK"), "the destination booted the guest again");
    q.execute("quit", serde_json::json!({})).unwrap();
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

/// Fills 4 MiB with `N\n` over and over each round and prints the buffer's hash, so the
/// guest keeps dirtying memory and the host can check every round's result.
const DIRTIER: &str = "i=0; while :; do i=$((i+1)); yes $i | head -c 4194304 > /tmp/buf; echo round=$i sum=$(sha256sum /tmp/buf | cut -c1-16); done";

/// What round `n` must print.
fn round_sum(n: u64) -> String {
    let line = format!("{n}\n");
    let data: Vec<u8> = line.as_bytes().iter().copied().cycle().take(4 << 20).collect();
    common::sha256(&data)[..16].to_string()
}

/// Rounds as printed: (round, hash).
fn rounds(output: &str) -> Vec<(u64, String)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("round=")?;
            let (n, sum) = rest.split_once(" sum=")?;
            // A line the test cut short (it stops ferrite on a marker) is not a round's result.
            let sum = sum.trim();
            (sum.len() == 16).then(|| Some((n.parse().ok()?, sum.to_string())))?
        })
        .collect()
}

fn dirtier_args(extra: &[String]) -> Option<Vec<String>> {
    let [kernel, initrd] = guest_files(["bzImage", "initramfs.cpio.gz"])?;
    let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(DIRTIER.as_bytes()));
    let mut args: Vec<String> =
        ["-m", "256", "-smp", "2", "-nographic", "-nodefaults", "-serial", "stdio", "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append]
            .map(String::from)
            .to_vec();
    args.extend(extra.iter().cloned());
    Some(args)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Ends a destination still waiting on `port` when the test ends, passed or failed (it
/// would wait for its source for ever).
struct Destination(u16);

impl Drop for Destination {
    fn drop(&mut self) {
        // The port ends the argument: port 4051 must not match a destination on 40515.
        let _ = std::process::Command::new("pkill").args(["-f", &format!("incoming tcp:127.0.0.1:{}( |$)", self.0)]).status();
    }
}

/// Polls `query-migrate` until the migration ends.
fn wait_migration(q: &mut Qmp) -> serde_json::Value {
    loop {
        let info = q.execute("query-migrate", serde_json::json!({})).unwrap();
        if !matches!(info["status"].as_str(), Some("setup" | "active")) {
            return info;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_guest_dirtying_memory_moves_live_to_another_process() {
    let dir = scratch("live");
    let port = free_port();
    let _cleanup = Destination(port);
    let Some(dest_args) = dirtier_args(&["-incoming".into(), format!("tcp:127.0.0.1:{port}")]) else { return };
    // The destination prints nothing before the state arrives; a while after its first round
    // it has shown enough and is stopped.
    let stop_later: Hook = ("round=", Box::new(|pid| {
        std::thread::sleep(Duration::from_secs(8));
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }));
    let dest = std::thread::spawn(move || run_ferrite_with(&dest_args, Duration::from_secs(300), &["round="], None, vec![stop_later]));
    let qmp = dir.join("qmp.sock");
    let args = dirtier_args(&["-qmp".into(), format!("unix:{},server=on,wait=off", qmp.display())]).unwrap();
    let log: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let out = log.clone();
    let hook: Hook = ("round=3 ", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        q.execute("migrate-set-parameters", serde_json::json!({"downtime-limit": 300})).unwrap();
        q.execute("migrate", serde_json::json!({"uri": format!("tcp:127.0.0.1:{port}")})).unwrap();
        let info = wait_migration(&mut q);
        let status = q.execute("query-status", serde_json::json!({})).unwrap();
        *out.lock().unwrap() = Some(serde_json::json!({"migrate": info, "status": status["status"], "events": q.events}));
        q.execute("quit", serde_json::json!({})).unwrap();
    }));
    let source = run_ferrite_with(&args, Duration::from_secs(300), &["round=3 "], None, vec![hook]);
    let report = log.lock().unwrap().clone().expect("the migration ran");
    println!("source: {report}");
    assert_eq!(report["migrate"]["status"], "completed", "{report}\n{}", source.tail(2000));
    assert_eq!(report["status"], "postmigrate");
    let events: Vec<&str> = report["events"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"MIGRATION") && events.contains(&"MIGRATION_PASS"), "events: {events:?}");

    // The destination goes on from where the source stopped.
    let dest_run = dest.join().unwrap();
    let (before, after) = (rounds(&source.output), rounds(&dest_run.output));
    println!("source rounds {:?}, destination rounds {:?}", before.iter().map(|r| r.0).collect::<Vec<_>>(), after.iter().map(|r| r.0).collect::<Vec<_>>());
    for (n, sum) in before.iter().chain(&after) {
        assert_eq!(*sum, round_sum(*n), "round {n} computed a wrong hash");
    }
    let last = before.last().map(|r| r.0).unwrap_or(0);
    assert_eq!(after.first().map(|r| r.0), Some(last + 1), "the destination did not continue after round {last}:\n{}", dest_run.tail(2000));
    assert!(!dest_run.output.contains("FERRITE-INIT-OK"), "the destination booted again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The destination refuses a machine of another shape before any RAM moves, then is killed
/// in the middle of a migration: each time the source runs on and says why.
#[test]
fn a_failed_live_migration_leaves_the_source_running() {
    let dir = scratch("fail");
    let (refusing, dying) = (free_port(), free_port());
    let _cleanup = (Destination(refusing), Destination(dying));
    let Some(mut refuse_args) = dirtier_args(&["-incoming".into(), format!("tcp:127.0.0.1:{refusing}")]) else { return };
    refuse_args[1] = "512".into();
    let refuser = std::thread::spawn(move || run_ferrite(&refuse_args, Duration::from_secs(300), &[], None));
    let dying_args = dirtier_args(&["-incoming".into(), format!("tcp:127.0.0.1:{dying}")]).unwrap();
    let dier = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite")).args(&dying_args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let qmp = dir.join("qmp.sock");
    let args = dirtier_args(&["-qmp".into(), format!("unix:{},server=on,wait=off", qmp.display())]).unwrap();
    let log: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let out = log.clone();
    let dier = Arc::new(Mutex::new(dier));
    let hook: Hook = ("round=2 ", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        q.execute("migrate", serde_json::json!({"uri": format!("tcp:127.0.0.1:{refusing}")})).unwrap();
        out.lock().unwrap().push(wait_migration(&mut q));
        // Slow enough to be killed in the middle.
        q.execute("migrate-set-parameters", serde_json::json!({"max-bandwidth": 4 << 20})).unwrap();
        q.execute("migrate", serde_json::json!({"uri": format!("tcp:127.0.0.1:{dying}")})).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let _ = dier.lock().unwrap().kill();
        out.lock().unwrap().push(wait_migration(&mut q));
        let status = q.execute("query-status", serde_json::json!({})).unwrap();
        out.lock().unwrap().push(status);
    }));
    // The guest goes on counting through both failures; a few rounds later the test ends it.
    let source = run_ferrite_with(&args, Duration::from_secs(300), &["round=2 "], Some("round=9 "), vec![hook]);
    let refused = refuser.join().unwrap();
    for _ in 0..300 {
        if log.lock().unwrap().len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = log.lock().unwrap().clone();
    println!("{log:?}");
    assert_eq!(log.len(), 3, "{log:?}\n{}", source.tail(2000));
    assert_eq!(log[0]["status"], "failed");
    let why = log[0]["error-desc"].as_str().unwrap_or_default();
    assert!(why.contains("RAM below 4 GiB: 256 MiB in the snapshot, 512 MiB here"), "{why}");
    assert_ne!(refused.status, Some(0), "the refusing destination must exit with an error");
    assert_eq!(log[1]["status"], "failed", "{log:?}");
    assert_eq!(log[2]["status"], "running", "the source stopped after the failed migration");
    let after = rounds(&source.output);
    assert!(after.last().is_some_and(|r| r.0 >= 8), "the source's guest stopped counting: {after:?}");
    for (n, sum) in &after {
        assert_eq!(*sum, round_sum(*n), "round {n} computed a wrong hash");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guest appending to a file on a virtio disk moves live; the destination goes on writing
/// to the same image (shared storage), both sides locking it as QEMU does: the destination
/// waits with the image inactive, the source hands it over at the end, the destination takes
/// it. Afterwards the source's `cont` is refused (the destination has the image, and QEMU's
/// own lock check says so too), and e2fsprogs finds every line once, in order, and a clean
/// file system.
#[test]
fn a_guest_writing_to_a_shared_disk_moves_live() {
    use common::disk::{data_disk, debugfs_cat, fsck_clean, have_tools, qemu_may_write, Scratch};
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_tools(&["mkfs.ext4", "debugfs", "e2fsck"]) {
        println!("SKIPPED: mkfs.ext4, debugfs or e2fsck missing (scripts/install-deps)");
        return;
    }
    const LINES: u32 = 150;
    let disk_dir = Scratch::new("migration-disk");
    let image = data_disk(&disk_dir, "data.img", b"payload");
    let script = format!(
        "mkdir -p /mnt; mount -t ext4 /dev/vda /mnt || exit 1; i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo line=$i >> /mnt/log; sync; echo \"disk=$i \"; done; umount /mnt && echo UNMOUNTED"
    );
    let args = |drive_extra: &str, extra: Vec<String>| -> Vec<String> {
        let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(script.as_bytes()));
        let mut a: Vec<String> = ["-m", "256", "-smp", "2", "-nographic", "-nodefaults", "-serial", "stdio", "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append]
            .map(String::from)
            .to_vec();
        a.extend(["-drive".to_string(), format!("if=virtio,file={},format=raw{drive_extra}", image.display())]);
        a.extend(extra);
        a
    };
    let dir = scratch("disk");
    let port = free_port();
    let _cleanup = Destination(port);
    let dest_args = args("", vec!["-incoming".into(), format!("tcp:127.0.0.1:{port}")]);
    let dest = std::thread::spawn(move || run_ferrite(&dest_args, Duration::from_secs(300), &["UNMOUNTED"], None));
    let qmp = dir.join("qmp.sock");
    let status: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let out = status.clone();
    let disk = image.clone();
    let hook: Hook = ("disk=10 ", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        q.execute("migrate", serde_json::json!({"uri": format!("tcp:127.0.0.1:{port}")})).unwrap();
        let info = wait_migration(&mut q);
        // The destination runs with the image now: the source may not take it back.
        let cont = q.execute("cont", serde_json::json!({}));
        let state = q.execute("query-status", serde_json::json!({})).unwrap();
        let qemu = qemu_may_write(&disk);
        *out.lock().unwrap() = Some(serde_json::json!({"migrate": info, "cont": format!("{cont:?}"), "status": state["status"], "qemu_may_write": qemu}));
        q.execute("quit", serde_json::json!({})).unwrap();
    }));
    let source = run_ferrite_with(&args("", vec!["-qmp".into(), format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display())]), Duration::from_secs(300), &["disk=10 "], None, vec![hook]);
    let report = status.lock().unwrap().clone().expect("the migration ran");
    println!("source: {report}");
    assert_eq!(report["migrate"]["status"], "completed", "{report}\n{}", source.tail(2000));
    let cont = report["cont"].as_str().unwrap();
    assert!(cont.starts_with("Err") && cont.contains("failed to get") && cont.contains("lock") && cont.contains("data.img"), "the source's cont was not refused for the lock: {cont}");
    assert_eq!(report["status"], "postmigrate", "the source ran on after its refused cont");
    assert_ne!(report["qemu_may_write"], true, "QEMU's lock check let qemu-io open the image the destination writes");
    let dest_run = dest.join().unwrap();
    assert!(dest_run.output.contains("UNMOUNTED"), "the destination did not finish the writes:\n{}", dest_run.tail(2000));
    assert_eq!(dest_run.status, Some(0));
    let log = String::from_utf8_lossy(&debugfs_cat(&image, "/log")).into_owned();
    let want: String = (1..=LINES).map(|i| format!("line={i}\n")).collect();
    assert_eq!(log, want, "the file on the disk lost or repeated lines");
    let (clean, report) = fsck_clean(&image);
    assert!(clean, "e2fsck -fn: {report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guest downloading over user networking moves live, in the middle of a download: the
/// transfers go on from the destination. libslirp's connections do not move (the
/// destination's user-networking stack is a new one), so the download cut by the move fails
/// and the guest's next one reconnects; every download that completes has the right bytes.
#[test]
fn a_guest_downloading_through_user_networking_moves_live_and_reconnects() {
    use common::http::http_server_paced;
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    // Each download lasts about 4 s, so the move, started as one begins, comes in its middle.
    let body = common::payload(8 << 20, 7);
    // `timeout` rather than wget's own -T, with which Debian's busybox-static 1.35 crashes
    // (natively too).
    let want = common::sha256(&body)[..16].to_string();
    let port = http_server_paced(body, Some(2 << 20));
    // What the guest's network looked like when a download failed, for the failure message.
    const DIAG: &str = "cat /proc/net/arp /proc/net/tcp; grep -A1 Tcp: /proc/net/snmp; grep eth0 /proc/net/dev; grep virtio /proc/interrupts";
    let script = format!(
        "ip link set eth0 up; udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1 || echo DHCP-FAILED; i=0; \
         while :; do i=$((i+1)); rm -f /tmp/p; echo \"start=$i \"; \
         if timeout 20 wget -q -O /tmp/p http://10.0.2.2:{port}/p; then echo \"get=$i sum=$(sha256sum /tmp/p | cut -c1-16) \"; else echo \"get=$i failed \"; {DIAG}; sleep 1; fi; done"
    );
    let args = |extra: Vec<String>| -> Vec<String> {
        let append = format!("console=ttyS0 quiet ferrite.cmd64={}", base64(script.as_bytes()));
        let mut a: Vec<String> = ["-m", "256", "-nographic", "-nodefaults", "-serial", "stdio", "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append]
            .map(String::from)
            .to_vec();
        a.extend(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"].map(String::from));
        a.extend(extra);
        a
    };
    let dir = scratch("net");
    let dest_port = free_port();
    let _cleanup = Destination(dest_port);
    let dest_args = args(vec!["-incoming".into(), format!("tcp:127.0.0.1:{dest_port}")]);
    // The destination prints nothing before the state arrives; a while after its first
    // download it has shown enough and is stopped.
    let stop_later: Hook = ("get=", Box::new(|pid| {
        std::thread::sleep(Duration::from_secs(40));
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }));
    let dest = std::thread::spawn(move || run_ferrite_with(&dest_args, Duration::from_secs(300), &["get="], None, vec![stop_later]));
    let qmp = dir.join("qmp.sock");
    let status: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let out = status.clone();
    let hook: Hook = ("start=2 ", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        q.execute("migrate", serde_json::json!({"uri": format!("tcp:127.0.0.1:{dest_port}")})).unwrap();
        *out.lock().unwrap() = Some(wait_migration(&mut q));
        q.execute("quit", serde_json::json!({})).unwrap();
    }));
    let source = run_ferrite_with(&args(vec!["-qmp".into(), format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display())]), Duration::from_secs(300), &["start=2 "], None, vec![hook]);
    let info = status.lock().unwrap().clone().expect("the migration ran");
    assert_eq!(info["status"], "completed", "{info}\n{}", source.tail(2000));
    let gets = |output: &str| -> Vec<(u64, String)> {
        output
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("get=")?;
                let (n, what) = rest.split_once(' ')?;
                Some((n.parse().ok()?, what.trim().to_string()))
            })
            .collect()
    };
    let before = gets(&source.output);
    let last = before.last().map(|g| g.0).expect("the source downloaded");
    let dest_run = dest.join().unwrap();
    let after = gets(&dest_run.output);
    println!("source: {before:?}\ndestination: {after:?}");
    assert_eq!(after.first().map(|g| g.0), Some(last + 1), "the destination did not go on after download {last}:\n{}", dest_run.tail(2000));
    let good: Vec<&(u64, String)> = after.iter().filter(|g| g.1 != "failed").collect();
    assert_eq!(after[0].1, "failed", "the download in flight at the move did not break: {after:?}");
    assert!(after.iter().skip(1).all(|g| g.1 != "failed"), "a download after the move failed: {after:?}\n{}", dest_run.tail(3000));
    assert!(good.len() >= 2, "fewer than two downloads completed on the destination: {after:?}\nsource:\n{}\ndestination:\n{}", source.tail(1500), dest_run.tail(1500));
    for (n, sum) in before.iter().chain(&after).filter(|g| g.1 != "failed") {
        assert_eq!(sum, &format!("sum={want}"), "download {n} got the wrong bytes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stopped guest saves and resumes stopped: the destination waits in `paused` (printing
/// nothing) until `cont`, then counts on from where the source stopped, as under QEMU.
#[test]
fn a_paused_guest_resumes_paused_until_cont() {
    let dir = scratch("paused");
    let state = dir.join("state");
    let Some(mut args) = machine_args("256") else { return };
    let qmp = dir.join("qmp.sock");
    args.extend(["-qmp".to_string(), format!("unix:{},server=on,wait=off", qmp.display())]);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = log.clone();
    let target = state.clone();
    let hook: Hook = ("count=10", Box::new(move |_pid| {
        let mut q = Qmp::connect(&qmp);
        q.execute("stop", serde_json::json!({})).unwrap();
        let r = q.execute("migrate", serde_json::json!({"uri": format!("file:{}", target.display())}));
        out.lock().unwrap().push(format!("migrate: {r:?}"));
        q.execute("quit", serde_json::json!({})).unwrap();
    }));
    let source = run_ferrite_with(&args, Duration::from_secs(300), &["count=10"], None, vec![hook]);
    assert!(log.lock().unwrap().join("").contains("migrate: Ok"), "{:?}\n{}", log.lock().unwrap(), source.tail(2000));
    let last = *counts(&source.output).last().expect("the source counted");

    let qmp = dir.join("dest.sock");
    let mut args = machine_args("256").unwrap();
    args.extend(["-incoming".to_string(), format!("file:{}", state.display())]);
    args.extend(["-qmp".to_string(), format!("unix:{},server=on,wait=off", qmp.display())]);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = seen.clone();
    let want = format!("count={}", last + 5);
    let dest = std::thread::spawn(move || run_ferrite(&args, Duration::from_secs(120), &[&want], Some(&want)));
    let mut q = Qmp::connect(&qmp);
    let status = loop {
        let status = q.execute("query-status", serde_json::json!({})).unwrap();
        if status["status"] != "inmigrate" {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    out.lock().unwrap().push(format!("before cont: {}", status["status"]));
    std::thread::sleep(Duration::from_secs(1));
    q.execute("cont", serde_json::json!({})).unwrap();
    let run = dest.join().unwrap();
    let seen = seen.lock().unwrap().join("\n");
    println!("{seen}");
    assert!(seen.contains("before cont: \"paused\""), "{seen}");
    let after = counts(&run.output);
    assert_eq!(after.first(), Some(&(last + 1)), "the count did not go on where it stopped:\n{}", run.tail(2000));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A source saved through `migrate file:` lets go of its disk (an IDE drive here; the live
/// test above moves a virtio disk): while it waits in `postmigrate`, QEMU's own lock check
/// lets qemu-io open the image for writing, and the source's `cont` is refused while qemu-io
/// holds it. Once qemu-io has gone, `cont` takes the image back, the guest counts on, and
/// QEMU is kept out again. A destination started from the state while qemu-io holds the image
/// ends with the lock error, naming the image, without running the guest.
#[test]
fn a_saved_source_lets_go_of_its_disk_until_cont() {
    use common::disk::{qemu_may_write, QemuHolds, Scratch};
    let Some(mut args) = machine_args("256") else { return };
    if common::tool("qemu-io").is_none() {
        return;
    }
    let disk_dir = Scratch::new("handover-disk");
    let image = disk_dir.path("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let dir = scratch("handover");
    let (qmp, state) = (dir.join("qmp.sock"), dir.join("state"));
    args.extend(["-drive".to_string(), format!("file={},format=raw,if=ide,index=1", image.display())]);
    args.extend(["-qmp".to_string(), format!("unix:{},server=on,wait=off", qmp.display())]);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = log.clone();
    let img = image.clone();
    let hook: Hook = ("count=5", Box::new(move |_pid| {
        let note = |s: String| out.lock().unwrap().push(s);
        let mut q = Qmp::connect(&qmp);
        let none = || serde_json::json!({});
        note(format!("qemu while running: {:?}", qemu_may_write(&img)));
        note(format!("migrate: {:?}", q.execute("migrate", serde_json::json!({"uri": format!("file:{}", state.display())}))));
        note(format!("qemu after migrate: {:?}", qemu_may_write(&img)));
        let holder = QemuHolds::start(&img);
        note(format!("cont while qemu holds: {:?}", q.execute("cont", none())));
        note(format!("status: {}", q.execute("query-status", none()).unwrap()["status"]));
        drop(holder);
        note(format!("cont: {:?}", q.execute("cont", none())));
        note(format!("qemu after cont: {:?}", qemu_may_write(&img)));
        // The guest counts on for a while before the source quits.
        std::thread::sleep(Duration::from_secs(2));
        q.execute("quit", none()).unwrap();
    }));
    let run = run_ferrite_with(&args, Duration::from_secs(300), &["count=5"], None, vec![hook]);
    let log = log.lock().unwrap().join("\n");
    println!("{log}");
    let expect = |line: &str| assert!(log.contains(line), "'{line}' missing:\n{log}\n{}", run.tail(2000));
    expect("qemu while running: Some(false)");
    expect("migrate: Ok");
    expect("qemu after migrate: Some(true)");
    expect("cont while qemu holds: Err");
    assert!(log.lines().any(|l| l.starts_with("cont while qemu holds") && l.contains("failed to get") && l.contains("disk.raw")), "{log}");
    expect("status: \"postmigrate\"");
    expect("cont: Ok");
    expect("qemu after cont: Some(false)");
    assert_eq!(run.status, Some(0), "{}", run.tail(2000));
    let all = counts(&run.output);
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "the count skipped or repeated: {all:?}");
    assert!(all.last().is_some_and(|&n| n >= 15), "the guest did not count on after cont: {all:?}");

    // A destination cannot take the disk while QEMU has it: it ends, naming the image,
    // before the guest runs.
    let mut dest_args = machine_args("256").unwrap();
    dest_args.extend(["-drive".to_string(), format!("file={},format=raw,if=ide,index=1", image.display())]);
    dest_args.extend(["-incoming".to_string(), format!("file:{}", dir.join("state").display())]);
    let holder = QemuHolds::start(&image);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite")).args(&dest_args).output().unwrap();
    drop(holder);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    println!("refused destination: {}", stderr.trim());
    assert!(!refused.status.success() && stderr.contains("failed to get") && stderr.contains("disk.raw"), "{stderr}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("count="), "the destination ran the guest");
    let _ = std::fs::remove_dir_all(&dir);
}
