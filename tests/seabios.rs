//! End to end: Debian's SeaBIOS as the firmware (`-bios`, no kernel) runs its POST under
//! ferrite — PCI enumeration, the PAM shadowing of the BIOS area, fw_cfg, the timers — and
//! reports on the serial console that there is nothing to boot, as it does under QEMU.
//!
//! Needs `bios.bin` from `scripts/fetch-guests` (skips, saying so, without it).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn bios() -> Option<PathBuf> {
    let dir = std::env::var("FERRITE_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ferrite/guests"));
    let bios = dir.join("bios.bin");
    if !bios.exists() {
        println!("SKIPPED: no {} (run scripts/fetch-guests)", bios.display());
        return None;
    }
    Some(bios)
}

#[test]
fn seabios_posts_to_no_bootable_device() {
    let Some(bios) = bios() else { return };
    for smp in ["1", "2"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .arg("-bios")
            .arg(&bios)
            .args(["-smp", smp, "-m", "128", "-nographic", "-nodefaults", "-serial", "stdio", "-display", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut out = Vec::new();
        while start.elapsed() < TIMEOUT && !String::from_utf8_lossy(&out).contains("No bootable device.") {
            if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(200)) {
                out.extend(bytes);
            }
        }
        // SeaBIOS retries forever: the test ends the machine itself.
        child.kill().ok();
        let status = child.wait().unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("SeaBIOS (version"), "-smp {smp}: no SeaBIOS banner ({status}):\n{text}");
        assert!(text.contains("No bootable device."), "-smp {smp}: POST did not finish ({status}):\n{text}");
        println!("-smp {smp}: SeaBIOS reached 'No bootable device.' after {:.1} s", start.elapsed().as_secs_f64());
    }
}
