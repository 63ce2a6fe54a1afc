//! End to end, virtio-balloon: Debian's kernel with its own `virtio_balloon` module, `-m 2048`.
//! The guest fills 1.5 GiB of tmpfs and deletes it; with free-page-reporting=on the host's
//! resident memory of ferrite must fall by at least 1 GiB within seconds, without any
//! command. Then the monitor asks for `balloon 512`: the guest's MemTotal and the balloon's
//! `info balloon` follow, and the host RSS does not grow back.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::disk::Scratch;
use common::{base64, guest_files, monitor, rss_kib, run_ferrite_with, Hook};
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

const SCRIPT: &str = "mount -o remount,size=1800m /tmp; dd if=/dev/zero of=/tmp/big bs=1M count=1536 2>/dev/null; \
    echo TOUCHED; sleep 3; rm /tmp/big; echo FREED; \
    for i in $(seq 600); do t=$(awk '/MemTotal/ {print $2}' /proc/meminfo); [ $t -lt 560000 ] && break; sleep 1; done; \
    echo memtotal-kib=$t; echo available-kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo); \
    echo BALLOONED; sleep 20";

/// ferrite's resident memory in bytes.
fn rss(pid: u32) -> u64 {
    rss_kib(pid).map_or(0, |(kib, _)| kib * 1024)
}

/// The value of `key=` in a monitor reply.
fn field(reply: &str, key: &str) -> Option<u64> {
    reply.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))?.parse().ok())
}

#[derive(Debug, Default)]
struct Figures {
    touched: u64,
    freed: u64,
    reclaim_secs: f64,
    ballooned: u64,
    actual_mib: Option<u64>,
    reported_mib: Option<u64>,
}

#[test]
fn free_page_reporting_and_inflation_give_memory_back() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    let dir = Scratch::new("virtio-balloon");
    let mon: PathBuf = dir.path("monitor.sock");
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd64={}", base64(SCRIPT.as_bytes()));
    let args: Vec<String> = [
        "-m", "2048", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append,
        "-device", "virtio-balloon-pci,free-page-reporting=on,guest-stats-polling-interval=2",
        "-monitor", &format!("unix:{},server,nowait", mon.display()),
    ]
    .map(String::from)
    .to_vec();
    let (touched_tx, touched_rx) = channel();
    let (tx, rx) = channel();
    let touched: Hook = ("TOUCHED", Box::new(move |pid| touched_tx.send(rss(pid)).unwrap()));
    let freed: Hook = (
        "FREED",
        Box::new(move |pid| {
            let mut f = Figures { touched: touched_rx.recv().unwrap(), ..Default::default() };
            let start = Instant::now();
            // Free page reporting: no command, the guest reports what it freed.
            while start.elapsed() < Duration::from_secs(120) {
                f.freed = rss(pid);
                if f.freed + GIB <= f.touched {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            f.reclaim_secs = start.elapsed().as_secs_f64();
            monitor(&mon, "balloon 512");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(300) {
                let reply = monitor(&mon, "info balloon");
                f.actual_mib = reply.split_whitespace().find_map(|w| w.strip_prefix("actual=")?.parse().ok());
                f.reported_mib = field(&reply, "reported-free");
                if f.actual_mib == Some(512) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            f.ballooned = rss(pid);
            let _ = tx.send(f);
        }),
    );
    let run = run_ferrite_with(&args, Duration::from_secs(1200), &["FERRITE-INIT-OK", "TOUCHED", "FREED", "BALLOONED"], None, vec![touched, freed]);
    let tail = run.tail(3000);
    println!("marks (s): {:?}", run.marks);
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a module failed to load:\n{tail}");
    let f = rx.recv_timeout(Duration::from_secs(30)).expect("the host side finished");
    println!(
        "RSS: {} MiB after touching 1.5 GiB, {} MiB {:.1} s after the guest freed it (free page reporting, {} MiB reported), {} MiB with the balloon at {:?} MiB",
        f.touched / MIB,
        f.freed / MIB,
        f.reclaim_secs,
        f.reported_mib.unwrap_or(0),
        f.ballooned / MIB,
        f.actual_mib
    );
    assert!(f.touched > 3 * GIB / 2, "the guest's 1.5 GiB never became resident: {f:?}");
    assert!(f.freed + GIB <= f.touched, "free page reporting did not give 1 GiB back: {f:?}\n{tail}");
    assert_eq!(f.actual_mib, Some(512), "the balloon did not reach 512 MiB: {f:?}\n{tail}");
    assert!(f.ballooned <= f.freed + 64 * MIB, "RSS grew back while inflating: {f:?}");
    let total: u64 = run.printed("memtotal-kib").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    assert!(total < 600 * 1024, "the guest's MemTotal did not shrink to about 512 MiB: {total} KiB\n{tail}");
    assert_eq!(run.status, Some(0), "{tail}");
}
