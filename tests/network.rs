//! End to end: Debian's kernel drives the e1000 and virtio-net with its own `e1000` and
//! `virtio_net` modules. Over user networking (libslirp) it takes a DHCP lease, downloads a
//! file over HTTP from a server on the host's loopback and serves one back through
//! `hostfwd`; two guests (one e1000, one virtio-net) joined by a socket backend ping each
//! other and exchange a file. Every byte is checked by hash on both sides.
//!
//! Needs `scripts/fetch-guests` (skips, saying so, without it).

mod common;

use common::http::{http_server, http_server_paced};
use common::qmp::Qmp;
use common::{base64, guest_files, payload, run_ferrite, run_ferrite_with, sha256, Hook};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(600);

/// Direct boot of Debian's kernel with the drivers initramfs, running `script`.
fn linux_args(script: &str, extra: &[&str]) -> Option<Vec<String>> {
    let [kernel, initrd] = guest_files(["bzImage", "initramfs-drivers.cpio.gz"])?;
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd64={}", base64(script.as_bytes()));
    let mut args: Vec<String> = ["-m", "256", "-nographic", "-no-reboot", "-serial", "stdio", "-kernel"].map(String::from).to_vec();
    args.push(kernel.display().to_string());
    args.extend(["-initrd".to_string(), initrd.display().to_string(), "-append".to_string(), append]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Some(args)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Reads `len` bytes from 127.0.0.1:`port`, reconnecting while the far side is not serving
/// yet (slirp accepts a forwarded connection at once and closes it if the guest refuses).
fn fetch_exact(port: u16, len: usize, give_up: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    while start.elapsed() < give_up {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut got = vec![0u8; len];
            if s.read_exact(&mut got).is_ok() {
                return Some(got);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// What the guest serves through hostfwd: 2 MiB.
const UP_BLOCKS: usize = 32;

/// The guest's script for user networking: DHCP, what the lease configured, an HTTP
/// download from the host, then a file served by busybox nc for the host to fetch through
/// hostfwd (the guest powers off once the host has it and hangs up).
fn user_net_script(host_port: u16) -> String {
    format!(
        "ip link set eth0 up; udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1 || echo DHCP-FAILED; \
         echo ip=$(ip -4 -o addr show eth0 | awk '{{print $4}}'); \
         echo mac=$(cat /sys/class/net/eth0/address); \
         echo gw=$(ip route | awk '/^default/ {{print $3}}'); \
         echo dns=$(awk '/^nameserver/ {{print $2; exit}}' /etc/resolv.conf); \
         a=$(cut -d' ' -f1 /proc/uptime); wget -q -O /tmp/p http://10.0.2.2:{host_port}/payload; b=$(cut -d' ' -f1 /proc/uptime); \
         echo dl=$(sha256sum /tmp/p | cut -d' ' -f1); echo dl-time=$a-$b; \
         dd if=/dev/urandom of=/tmp/up bs=64k count={UP_BLOCKS} 2>/dev/null; \
         echo up=$(sha256sum /tmp/up | cut -d' ' -f1); \
         echo GUEST-SERVING; nc -l -p 8080 < /tmp/up; echo SERVED"
    )
}

/// DHCP, an HTTP download from the host and a file served back through hostfwd, over the
/// card `device` (a `-device` spec without netdev= and mac=) and user networking. `prefix`
/// runs first in the guest; `driver_says` is what the kernel prints when its driver binds.
/// Returns the run for card-specific checks.
fn user_networking(device: &str, prefix: &str, driver_says: &str) -> Option<common::Run> {
    let body = payload(6 << 20, 21);
    let host_port = http_server(body.clone());
    let fwd = free_port();
    let netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{fwd}-:8080");
    let device = format!("{device},netdev=n0,mac=52:54:00:12:34:99");
    let script = format!("{prefix}{}", user_net_script(host_port));
    let args = linux_args(&script, &["-netdev", &netdev, "-device", &device])?;
    // Once the guest serves, the host fetches its file through hostfwd and hangs up, which
    // ends the guest's nc and so the guest.
    let (tx, rx) = channel();
    let hook: Hook = (
        "GUEST-SERVING",
        Box::new(move |_pid| {
            let got = fetch_exact(fwd, UP_BLOCKS << 16, Duration::from_secs(120));
            let _ = tx.send(got);
        }),
    );
    let run = run_ferrite_with(&args, TIMEOUT, &["FERRITE-INIT-OK", "GUEST-SERVING"], None, vec![hook]);
    let tail = run.tail(4000);
    println!("user networking ({device}): init after {:?} s, serving after {:?} s, exit after {:.1} s", run.marks[0], run.marks[1], run.elapsed);
    assert!(run.output.contains("FERRITE-INIT-OK"), "the kernel's init never ran:\n{tail}");
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a module failed to load:\n{tail}");
    assert!(run.output.contains(driver_says), "Linux's driver did not bind:\n{tail}");
    assert!(!run.output.contains("DHCP-FAILED"), "no DHCP lease:\n{tail}");
    assert_eq!(run.printed("ip"), Some("10.0.2.15/24"), "{tail}");
    assert_eq!(run.printed("gw"), Some("10.0.2.2"), "{tail}");
    assert_eq!(run.printed("dns"), Some("10.0.2.3"), "{tail}");
    assert_eq!(run.printed("mac"), Some("52:54:00:12:34:99"), "{tail}");
    assert_eq!(run.printed("dl"), Some(sha256(&body).as_str()), "the guest downloaded other bytes:\n{tail}");
    println!("download of {} MiB took (guest uptime) {:?}", body.len() >> 20, run.printed("dl-time"));
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("the hostfwd fetch ran").expect("the host fetched the guest's file through hostfwd");
    assert_eq!(Some(sha256(&got).as_str()), run.printed("up"), "the host got other bytes than the guest served");
    assert!(run.output.contains("SERVED"), "the guest's nc did not finish:\n{tail}");
    assert_eq!(run.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
    Some(run)
}

#[test]
fn e1000_user_networking_dhcp_http_download_and_hostfwd() {
    user_networking("e1000", "", "Intel(R) PRO/1000 Network Connection");
}

/// The same over virtio-net, whose offloads Linux must have negotiated: checksum (bit 0),
/// TSO4 (11) and mergeable receive buffers (15) — so the upload's 64 KiB TCP segments were
/// cut and checksummed by ferrite before slirp saw them.
#[test]
fn virtio_net_user_networking_dhcp_http_download_and_hostfwd() {
    let prefix = "echo vfeat=$(cat /sys/bus/virtio/devices/*/features); ";
    let Some(run) = user_networking("virtio-net-pci", prefix, "FERRITE-INIT-OK") else { return };
    let features = run.printed("vfeat").unwrap_or_default().as_bytes().to_vec();
    for bit in [0, 11, 15] {
        assert_eq!(features.get(bit), Some(&b'1'), "feature bit {bit} not negotiated: {:?}", run.printed("vfeat"));
    }
}

/// Two guests on one `-netdev socket` link (QEMU's length-prefixed TCP framing): the
/// listener serves a file with httpd, the connector pings it and downloads the file (retrying
/// until the listener's httpd is up: the two boot at their own pace); then
/// the connector serves a "done" file the listener polls for, so both power off by themselves.
#[test]
fn two_guests_over_a_socket_backend() {
    let port = free_port();
    let listener_script = "ip addr add 192.168.77.1/24 dev eth0; ip link set eth0 up; mkdir -p /www; \
        dd if=/dev/urandom of=/www/f bs=64k count=8 2>/dev/null; echo served=$(sha256sum /www/f | cut -d' ' -f1); \
        httpd -p 7000 -h /www; \
        for i in $(seq 300); do wget -q -O /tmp/done http://192.168.77.2:7001/done 2>/dev/null && break; sleep 1; done; \
        echo listener-done=$(cat /tmp/done)";
    let connector_script = "ip addr add 192.168.77.2/24 dev eth0; ip link set eth0 up; \
        for i in $(seq 120); do ping -c 1 -W 1 192.168.77.1 >/dev/null 2>&1 && break; done; \
        ping -c 3 -W 2 192.168.77.1 >/dev/null && echo PING-OK; \
        for i in $(seq 120); do wget -q -O /tmp/f http://192.168.77.1:7000/f 2>/dev/null && break; sleep 1; done; \
        echo fetched=$(sha256sum /tmp/f | cut -d' ' -f1); \
        mkdir -p /www; echo finished > /www/done; httpd -p 7001 -h /www; sleep 15";
    let listen = format!("socket,id=s0,listen=127.0.0.1:{port}");
    let connect = format!("socket,id=s0,connect=127.0.0.1:{port}");
    let Some(a) = linux_args(listener_script, &["-netdev", &listen, "-device", "e1000,netdev=s0,mac=52:54:00:00:77:01"]) else { return };
    // The connector has a virtio-net card: its TSO segments must reach the e1000 guest cut
    // and checksummed.
    let Some(b) = linux_args(connector_script, &["-netdev", &connect, "-device", "virtio-net-pci,netdev=s0,mac=52:54:00:00:77:02"]) else { return };
    let first = std::thread::spawn(move || run_ferrite(&a, TIMEOUT, &["FERRITE-INIT-OK"], None));
    // The listener binds its port as ferrite starts.
    std::thread::sleep(Duration::from_secs(2));
    let second = run_ferrite(&b, TIMEOUT, &["FERRITE-INIT-OK"], None);
    let first = first.join().unwrap();
    let (ta, tb) = (first.tail(3000), second.tail(3000));
    assert!(second.output.contains("PING-OK"), "no ping between the guests:\nlistener:\n{ta}\nconnector:\n{tb}");
    let served = first.printed("served").expect("listener made its file");
    assert_eq!(second.printed("fetched"), Some(served), "the file did not cross intact:\n{ta}\n{tb}");
    assert_eq!(first.printed("listener-done"), Some("finished"), "the listener did not hear back:\n{ta}");
    assert_eq!(first.status, Some(0), "{ta}");
    assert_eq!(second.status, Some(0), "{tb}");
}

/// Bad network options stop ferrite before the guest runs, with the reason.
#[test]
fn bad_network_options_are_clear_errors() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let fwd = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{busy_port}-:22");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["-netdev", "vde,id=v0"], "vde".into()),
        (vec!["-netdev", &fwd, "-device", "e1000,netdev=n0"], busy_port.to_string()),
        (vec!["-nic", "user,mac=52:54:00:zz:00:01"], "52:54:00:zz:00:01".into()),
        (vec!["-nic", "user,mac=01:00:5e:00:00:01"], "multicast".into()),
        (vec!["-nic", "user,model=rtl8139"], "rtl8139".into()),
        (vec!["-device", "e1000,netdev=missing"], "missing".into()),
        (vec!["-netdev", "user,id=n0,frobnicate=1"], "frobnicate".into()),
    ];
    for (args, says) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite")).args(["-m", "64", "-nographic", "-kernel", "/nonexistent"]).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.status.code().is_some(), "{args:?} must fail cleanly: {:?}\n{stderr}", out.status);
        assert!(stderr.contains(&says), "{args:?}: the error does not mention '{says}':\n{stderr}");
    }
    drop(busy);
}

/// A stopped guest takes no frames, as under QEMU: stopped in the middle of a download, its
/// RAM stays as it was (two states saved a second apart are the same), and the frames held
/// meanwhile arrive after `cont`, the download completing with every byte. (Frames that
/// landed while a migration saved the machine broke the rings the destination resumed.)
#[test]
fn a_stopped_guest_takes_no_frames_until_cont() {
    // At 2 MiB/s the download lasts 4 s, so the stop comes in its middle.
    let body = payload(8 << 20, 5);
    let port = http_server_paced(body.clone(), Some(2 << 20));
    let dir = std::env::temp_dir().join(format!("ferrite-network-{}-stopped", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let qmp = dir.join("qmp.sock");
    let script = format!(
        "ip link set eth0 up; udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1 || echo DHCP-FAILED; echo GET-START; \
         wget -q -O /tmp/p http://10.0.2.2:{port}/p && echo dl=$(sha256sum /tmp/p | cut -d' ' -f1)"
    );
    let qmp_arg = format!("unix:{},server=on,wait=off", qmp.display());
    let Some(args) = linux_args(&script, &["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-qmp", &qmp_arg]) else { return };
    let states = [dir.join("a"), dir.join("b")];
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = log.clone();
    let saved = states.clone();
    let hook: Hook = ("GET-START", Box::new(move |pid| {
        std::thread::sleep(Duration::from_millis(1500));
        let mut q = Qmp::connect(&qmp);
        if let Err(e) = q.execute("stop", serde_json::json!({})) {
            panic!("stop: {e:?}; ferrite's threads:\n{}", common::thread_stacks(pid));
        }
        for (n, state) in saved.iter().enumerate() {
            if n > 0 {
                // The server goes on sending meanwhile.
                std::thread::sleep(Duration::from_secs(1));
            }
            let r = q.execute("migrate", serde_json::json!({"uri": format!("file:{}", state.display())}));
            out.lock().unwrap().push(format!("migrate: {r:?}"));
        }
        let r = q.execute("cont", serde_json::json!({}));
        out.lock().unwrap().push(format!("cont: {r:?}"));
    }));
    let run = run_ferrite_with(&args, TIMEOUT, &[], None, vec![hook]);
    let tail = run.tail(3000);
    let log = log.lock().unwrap().join("\n");
    assert!(!run.output.contains("DHCP-FAILED"), "no DHCP lease:\n{tail}");
    assert_eq!(log.matches("migrate: Ok").count(), 2, "{log}\n{tail}");
    assert!(log.contains("cont: Ok"), "{log}");
    let [a, b] = states.map(|s| std::fs::read(s).expect("the state was saved"));
    assert!(a == b, "the stopped guest's state changed between two saves ({} and {} bytes): frames reached it", a.len(), b.len());
    assert_eq!(run.printed("dl"), Some(sha256(&body).as_str()), "the download did not complete after cont:\n{tail}");
    let _ = std::fs::remove_dir_all(&dir);
}
