//! End to end, virtio-serial: Debian's kernel binds `-device virtio-serial-pci` with its own
//! `virtio_console` module; a `virtconsole` on a Unix socket chardev becomes /dev/hvc0 and a
//! named `virtserialport` on a TCP chardev becomes /dev/vport0pN. Lines cross both ways on
//! each, checked on both sides. The same boot reads host entropy from /dev/hwrng through a
//! transitional (modern interface) and a legacy-only `virtio-rng-pci`, with `virtio_rng`.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::disk::Scratch;
use common::{base64, guest_files, run_ferrite_with, Hook};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// The guest: waits for a line from the host on each port, answers with it, reads hwrng.
const SCRIPT: &str = "read l < /dev/hvc0; echo console-got=$l; echo pong:$l > /dev/hvc0; \
    n=$(grep -l org.ferrite.data /sys/class/virtio-ports/*/name); p=/dev/$(basename $(dirname $n)); echo port=$p; \
    l=$(head -n 1 $p); echo port-got=$l; echo ack:$l > $p; \
    r=/sys/class/misc/hw_random; echo rng-available=$(cat $r/rng_available); \
    for d in $(cat $r/rng_available); do echo $d > $r/rng_current; dd if=/dev/hwrng of=/tmp/e bs=1024 count=64 2>/dev/null; \
    echo $d-bytes=$(wc -c < /tmp/e); echo $d-distinct=$(od -An -v -tu1 /tmp/e | tr -s ' ' '\\n' | sort -u | grep -c .); done";

/// Connects (retrying while ferrite starts), sends `line`, and returns the first line from
/// the guest that starts with `want`.
fn converse<S: std::io::Read + Write>(mut stream: S, line: &str, want: &str) -> Option<String> {
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        let mut got = String::new();
        if reader.read_line(&mut got).ok()? == 0 {
            return None;
        }
        // The console is a tty: it echoes what the host typed, with \r\n line ends.
        let got = got.trim_end();
        if got.starts_with(want) {
            return Some(got.to_string());
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn linux_talks_over_virtconsole_and_virtserialport() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    let dir = Scratch::new("virtio-console");
    let sock = dir.path("console.sock");
    let port = free_port();
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd64={}", base64(SCRIPT.as_bytes()));
    let args: Vec<String> = [
        "-m", "256", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append,
        "-chardev", &format!("socket,id=con,path={},server=on,wait=off", sock.display()),
        "-chardev", &format!("socket,id=data,host=127.0.0.1,port={port},server=on,wait=off"),
        "-device", "virtio-serial-pci", "-device", "virtconsole,chardev=con",
        "-device", "virtserialport,chardev=data,name=org.ferrite.data",
        "-device", "virtio-rng-pci", "-device", "virtio-rng-pci,disable-modern=on",
    ]
    .map(String::from)
    .to_vec();
    let (tx, rx) = channel();
    let hook: Hook = (
        "FERRITE-INIT-OK",
        Box::new(move |_pid| {
            let console = UnixStream::connect(&sock).expect("the console socket listens");
            let data = TcpStream::connect(("127.0.0.1", port)).expect("the data port listens");
            let pong = converse(console, "hello-console", "pong:");
            let ack = converse(data, "hello-port", "ack:");
            let _ = tx.send((pong, ack));
        }),
    );
    let run = run_ferrite_with(&args, Duration::from_secs(600), &["FERRITE-INIT-OK"], None, vec![hook]);
    let tail = run.tail(3000);
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a module failed to load:\n{tail}");
    assert_eq!(run.printed("console-got"), Some("hello-console"), "the host's line did not reach /dev/hvc0:\n{tail}");
    assert_eq!(run.printed("port-got"), Some("hello-port"), "the host's line did not reach the serial port:\n{tail}");
    // Host entropy through a modern and a legacy-only virtio-rng: 64 KiB of random bytes
    // hold all 256 values with overwhelming probability.
    assert_eq!(run.printed("rng-available"), Some("virtio_rng.0 virtio_rng.1"), "Linux did not bind both rngs:\n{tail}");
    for dev in ["virtio_rng.0", "virtio_rng.1"] {
        assert_eq!(run.printed(&format!("{dev}-bytes")), Some("65536"), "{dev}:\n{tail}");
        assert_eq!(run.printed(&format!("{dev}-distinct")), Some("256"), "{dev} does not look random:\n{tail}");
    }
    let (pong, ack) = rx.recv_timeout(Duration::from_secs(10)).expect("the host side finished");
    assert_eq!(pong.as_deref(), Some("pong:hello-console"), "the guest's console line did not reach the host:\n{tail}");
    assert_eq!(ack.as_deref(), Some("ack:hello-port"), "the guest's port line did not reach the host:\n{tail}");
    assert_eq!(run.status, Some(0), "{tail}");
}
