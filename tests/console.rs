//! The serial console on a terminal: raw mode, guest input, and Ctrl-A X to quit (as QEMU).
//! Runs ferrite on a pseudo-terminal with a multiboot guest that echoes COM1 input back.
//! Also `-no-shutdown` with the human monitor: a guest power-off stops the machine, which
//! `system_reset` starts again and `quit` ends.

mod common;

use common::monitor;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: u32 = 0x10_0000;

/// A multiboot (a.out kludge) image of the code `body` emits from its entry label.
fn multiboot(body: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut start = a.create_label();
    let flags: u32 = 1 << 16;
    a.dd(&[0x1bad_b002, flags, 0u32.wrapping_sub(0x1bad_b002 + flags)]).unwrap();
    a.dd(&[LOAD, LOAD, 0, 0, 0]).unwrap();
    a.set_label(&mut start).unwrap();
    body(&mut a);
    let r = a.assemble_options(LOAD as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let mut img = r.inner.code_buffer.clone();
    let end = LOAD + img.len() as u32;
    let entry = r.label_ip(&start).unwrap() as u32;
    img[20..24].copy_from_slice(&end.to_le_bytes());
    img[24..28].copy_from_slice(&end.to_le_bytes());
    img[28..32].copy_from_slice(&entry.to_le_bytes());
    img
}

/// Prints `text` on COM1.
fn print(a: &mut CodeAssembler, text: &[u8]) {
    a.mov(dx, 0x3f8u32).unwrap();
    for b in text {
        a.mov(al, *b as u32).unwrap();
        a.out(dx, al).unwrap();
    }
}

/// A multiboot kernel that prints "ready" and then echoes every byte COM1 receives.
fn echo_kernel() -> Vec<u8> {
    multiboot(|a| {
        let mut wait = a.create_label();
        print(a, b"ready\n");
        a.set_label(&mut wait).unwrap();
        a.mov(dx, 0x3fdu32).unwrap(); // LSR
        a.in_(al, dx).unwrap();
        a.test(al, 1u32).unwrap(); // data ready
        a.jz(wait).unwrap();
        a.mov(dx, 0x3f8u32).unwrap();
        a.in_(al, dx).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(wait).unwrap();
    })
}

/// Reads from the terminal until `want` shows up or the deadline passes.
fn read_until(master: &mut std::fs::File, seen: &mut Vec<u8>, want: &[u8], deadline: Instant) -> bool {
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if seen.windows(want.len()).any(|w| w == want) {
            return true;
        }
        match master.read(&mut buf) {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    seen.windows(want.len()).any(|w| w == want)
}

#[test]
fn raw_console_echoes_input_switches_to_the_monitor_and_ctrl_a_x_quits() {
    let dir = std::env::temp_dir().join(format!("ferrite-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("echo.bin");
    std::fs::write(&kernel, echo_kernel()).unwrap();

    let (mut master_fd, mut slave_fd) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the provided integers; the name, termios
    // and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(&mut master_fd, &mut slave_fd, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just returned by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master_fd), OwnedFd::from_raw_fd(slave_fd)) };
    // SAFETY: making the master non-blocking with fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(master_fd, libc::F_GETFL);
        libc::fcntl(master_fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "32", "-nographic", "-kernel"])
        .arg(&kernel)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(slave);
    let mut master = std::fs::File::from(master);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    assert!(read_until(&mut master, &mut seen, b"ready", deadline), "no output: {:?}", String::from_utf8_lossy(&seen));
    // In raw mode the terminal does not echo, so "xyz" can only come back from the guest;
    // Ctrl-A Ctrl-A sends one literal Ctrl-A.
    master.write_all(b"xyz\x01\x01").unwrap();
    assert!(read_until(&mut master, &mut seen, b"xyz\x01", deadline), "guest did not echo: {:?}", String::from_utf8_lossy(&seen));
    // -nographic shares the terminal with the human monitor: Ctrl-A C switches to it and back.
    master.write_all(b"\x01c").unwrap();
    assert!(read_until(&mut master, &mut seen, b"(ferrite) ", deadline), "no monitor prompt: {:?}", String::from_utf8_lossy(&seen));
    master.write_all(b"stop\rinfo statux\x7fs\r").unwrap();
    assert!(read_until(&mut master, &mut seen, b"VM status: paused", deadline), "monitor: {:?}", String::from_utf8_lossy(&seen));
    master.write_all(b"cont\r\x1b[A\x1b[A\r").unwrap();
    assert!(read_until(&mut master, &mut seen, b"VM status: running", deadline), "history: {:?}", String::from_utf8_lossy(&seen));
    master.write_all(b"\x01cabc").unwrap();
    assert!(read_until(&mut master, &mut seen, b"abc", deadline), "input did not go back to the guest: {:?}", String::from_utf8_lossy(&seen));
    master.write_all(b"\x01x").unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(0), "Ctrl-A X did not quit ferrite");
}

/// A kernel that prints "powering off" and writes S5 with SLP_EN to ferrite's PM1a control
/// register (FADT: 0x604; SLP_TYP of `\_S5` is 0), then prints "still running" if it runs on.
fn poweroff_kernel() -> Vec<u8> {
    multiboot(|a| {
        let mut halt = a.create_label();
        print(a, b"powering off\n");
        a.mov(dx, 0x604u32).unwrap();
        a.mov(ax, 1u32 << 13).unwrap();
        a.out(dx, ax).unwrap();
        print(a, b"still running\n");
        a.set_label(&mut halt).unwrap();
        a.cli().unwrap();
        a.hlt().unwrap();
        a.jmp(halt).unwrap();
    })
}

/// Waits until `file` holds `want` `times` times.
fn wait_for(file: &std::path::Path, want: &str, times: usize, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if std::fs::read_to_string(file).is_ok_and(|s| s.matches(want).count() >= times) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `-no-shutdown` (QEMU's): the guest's ACPI power-off stops the machine instead of ending
/// ferrite; `info status` says so; `system_reset` boots the guest again; `quit` exits 0.
#[test]
fn no_shutdown_keeps_the_machine_after_power_off() {
    let dir = std::env::temp_dir().join(format!("ferrite-noshutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("kernel.bin");
    std::fs::write(&kernel, poweroff_kernel()).unwrap();
    let serial = dir.join("serial.txt");
    let mon = dir.join("monitor.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "32", "-nographic", "-nodefaults", "-no-shutdown", "-kernel"])
        .arg(&kernel)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", mon.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    assert!(wait_for(&serial, "powering off", 1, deadline), "the guest never ran");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "ferrite exited on the guest's power-off");
    assert_eq!(monitor(&mon, "info status").trim(), "VM status: paused (shutdown)");
    monitor(&mon, "system_reset");
    assert!(wait_for(&serial, "powering off", 2, deadline), "system_reset did not boot the guest again");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "ferrite exited on the second power-off");
    monitor(&mon, "quit");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "quit did not end ferrite");
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&serial).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(0));
    assert!(!out.contains("still running"), "the guest ran on after its power-off: {out}");
}
