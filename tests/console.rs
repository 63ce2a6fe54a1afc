//! The serial console on a terminal: raw mode, guest input, and Ctrl-A X to quit (as QEMU).
//! Runs ferrite on a pseudo-terminal with a multiboot guest that echoes COM1 input back.

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: u32 = 0x10_0000;

/// A multiboot kernel that prints "ready" and then echoes every byte COM1 receives.
fn echo_kernel() -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut start = a.create_label();
    let mut wait = a.create_label();
    let flags: u32 = 1 << 16;
    a.dd(&[0x1bad_b002, flags, 0u32.wrapping_sub(0x1bad_b002 + flags)]).unwrap();
    a.dd(&[LOAD, LOAD, 0, 0, 0]).unwrap();
    a.set_label(&mut start).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    for b in b"ready\n" {
        a.mov(al, *b as u32).unwrap();
        a.out(dx, al).unwrap();
    }
    a.set_label(&mut wait).unwrap();
    a.mov(dx, 0x3fdu32).unwrap(); // LSR
    a.in_(al, dx).unwrap();
    a.test(al, 1u32).unwrap(); // data ready
    a.jz(wait).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    a.in_(al, dx).unwrap();
    a.out(dx, al).unwrap();
    a.jmp(wait).unwrap();
    let r = a.assemble_options(LOAD as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let mut img = r.inner.code_buffer.clone();
    let end = LOAD + img.len() as u32;
    let entry = r.label_ip(&start).unwrap() as u32;
    img[20..24].copy_from_slice(&end.to_le_bytes());
    img[24..28].copy_from_slice(&end.to_le_bytes());
    img[28..32].copy_from_slice(&entry.to_le_bytes());
    img
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
fn raw_console_echoes_input_and_ctrl_a_x_quits() {
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
