//! End to end: a multiboot kernel built here (assembled with iced-x86) boots through the
//! `ferrite` binary, prints on COM1 and leaves through isa-debug-exit with a chosen code.

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::process::Command;

const LOAD: u32 = 0x10_0000;
/// The message sits at a fixed offset after the code.
const MESSAGE_OFFSET: u32 = 0x200;
const MESSAGE: &[u8] = b"hello from a multiboot kernel\n";

/// A multiboot (version 1) image using the a.out kludge: header, code, message.
fn kernel(exit_value: u8) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut header = a.create_label();
    let mut start = a.create_label();
    let mut bad_magic = a.create_label();
    let flags: u32 = 1 << 16;
    a.set_label(&mut header).unwrap();
    a.dd(&[0x1bad_b002, flags, 0u32.wrapping_sub(0x1bad_b002 + flags)]).unwrap();
    // header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr: filled below.
    a.dd(&[LOAD, LOAD, 0, 0, 0]).unwrap();
    a.set_label(&mut start).unwrap();
    a.cmp(eax, 0x2bad_b002u32).unwrap();
    a.jne(bad_magic).unwrap();
    a.mov(esi, LOAD + MESSAGE_OFFSET).unwrap();
    a.mov(ecx, MESSAGE.len() as u32).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    a.cld().unwrap();
    a.rep().outsb().unwrap();
    a.mov(al, exit_value as u32).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut bad_magic).unwrap();
    a.mov(al, 0x7fu32).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
    let r = a.assemble_options(LOAD as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let mut img = r.inner.code_buffer.clone();
    assert!(img.len() <= MESSAGE_OFFSET as usize);
    img.resize(MESSAGE_OFFSET as usize, 0);
    img.extend_from_slice(MESSAGE);
    let entry = r.label_ip(&start).unwrap() as u32;
    let end_addr = LOAD + img.len() as u32;
    img[20..24].copy_from_slice(&end_addr.to_le_bytes());
    img[24..28].copy_from_slice(&end_addr.to_le_bytes());
    img[28..32].copy_from_slice(&entry.to_le_bytes());
    img
}

#[test]
fn multiboot_kernel_prints_and_exits_with_code() {
    let dir = std::env::temp_dir().join(format!("ferrite-mb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel_path = dir.join("kernel.bin");
    let serial_path = dir.join("serial.txt");
    std::fs::write(&kernel_path, kernel(0x2a)).unwrap();
    let _ = std::fs::remove_file(&serial_path);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "64", "-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel_path)
        .arg("-serial")
        .arg(format!("file:{}", serial_path.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .output()
        .unwrap();
    let serial = std::fs::read_to_string(&serial_path).unwrap_or_default();
    assert_eq!(out.status.code(), Some((0x2a << 1) | 1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serial, String::from_utf8_lossy(MESSAGE));
}
