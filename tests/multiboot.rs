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

/// A multiboot kernel that prints what it was given: its command line, each module's string
/// and first bytes, then the CPU's vendor and brand string from CPUID; then exits with 0x10.
fn echo_kernel() -> Vec<u8> {
    const SCRATCH: u32 = LOAD + 0x1000;
    const STACK: u32 = LOAD + 0x2000;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut header = a.create_label();
    let mut start = a.create_label();
    let mut puts = a.create_label();
    let mut modules = a.create_label();
    let mut done = a.create_label();
    let flags: u32 = 1 << 16;
    a.set_label(&mut header).unwrap();
    a.dd(&[0x1bad_b002, flags, 0u32.wrapping_sub(0x1bad_b002 + flags)]).unwrap();
    a.dd(&[LOAD, LOAD, 0, STACK, 0]).unwrap();
    a.set_label(&mut start).unwrap();
    a.mov(esp, STACK).unwrap();
    a.mov(esi, dword_ptr(ebx + 16)).unwrap(); // cmdline
    a.call(puts).unwrap();
    a.mov(ecx, dword_ptr(ebx + 20)).unwrap(); // mods_count
    a.mov(edi, dword_ptr(ebx + 24)).unwrap(); // mods_addr
    a.set_label(&mut modules).unwrap();
    a.test(ecx, ecx).unwrap();
    a.jz(done).unwrap();
    a.push(ecx).unwrap();
    a.mov(esi, dword_ptr(edi + 8)).unwrap(); // the module's string
    a.call(puts).unwrap();
    a.mov(esi, dword_ptr(edi)).unwrap(); // its contents (NUL-terminated text here)
    a.call(puts).unwrap();
    a.pop(ecx).unwrap();
    a.add(edi, 16).unwrap();
    a.dec(ecx).unwrap();
    a.jmp(modules).unwrap();
    a.set_label(&mut done).unwrap();
    // Vendor (EBX, EDX, ECX of leaf 0), then the brand string (leaves 0x80000002-4).
    a.xor(eax, eax).unwrap();
    a.cpuid().unwrap();
    a.mov(dword_ptr(SCRATCH), ebx).unwrap();
    a.mov(dword_ptr(SCRATCH + 4), edx).unwrap();
    a.mov(dword_ptr(SCRATCH + 8), ecx).unwrap();
    a.mov(byte_ptr(SCRATCH + 12), 0).unwrap();
    a.mov(esi, SCRATCH).unwrap();
    a.call(puts).unwrap();
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let at = SCRATCH + 16 * i as u32;
        a.mov(eax, leaf).unwrap();
        a.cpuid().unwrap();
        a.mov(dword_ptr(at), eax).unwrap();
        a.mov(dword_ptr(at + 4), ebx).unwrap();
        a.mov(dword_ptr(at + 8), ecx).unwrap();
        a.mov(dword_ptr(at + 12), edx).unwrap();
    }
    a.mov(byte_ptr(SCRATCH + 48), 0).unwrap();
    a.mov(esi, SCRATCH).unwrap();
    a.call(puts).unwrap();
    a.mov(al, 0x10u32).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
    // puts: the NUL-terminated string at ESI, then a newline.
    let mut next = a.create_label();
    let mut end = a.create_label();
    a.set_label(&mut puts).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    a.set_label(&mut next).unwrap();
    a.lodsb().unwrap();
    a.test(al, al).unwrap();
    a.jz(end).unwrap();
    a.out(dx, al).unwrap();
    a.jmp(next).unwrap();
    a.set_label(&mut end).unwrap();
    a.mov(al, 10u32).unwrap();
    a.out(dx, al).unwrap();
    a.ret().unwrap();
    let r = a.assemble_options(LOAD as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let mut img = r.inner.code_buffer.clone();
    assert!(img.len() < 0x1000);
    let entry = r.label_ip(&start).unwrap() as u32;
    let end_addr = LOAD + img.len() as u32;
    img[20..24].copy_from_slice(&end_addr.to_le_bytes());
    img[28..32].copy_from_slice(&entry.to_le_bytes());
    img
}

/// QEMU's conventions end to end: the command line starts with the kernel's file name, each
/// `-initrd` entry is a module whose string is the entry, CPUID reports the -cpu model, and
/// COM1 reaches a `-chardev` through `-serial chardev:ID`.
#[test]
fn multiboot_kernel_sees_qemu_cmdline_modules_and_cpu_model() {
    let dir = std::env::temp_dir().join(format!("ferrite-mb-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel_path = dir.join("echo.bin");
    let (m1, m2) = (dir.join("one.txt"), dir.join("two.txt"));
    let serial_path = dir.join("serial.txt");
    std::fs::write(&kernel_path, echo_kernel()).unwrap();
    std::fs::write(&m1, b"first module\0").unwrap();
    std::fs::write(&m2, b"second module\0").unwrap();
    let _ = std::fs::remove_file(&serial_path);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "64", "-nographic", "-no-reboot", "-cpu", "Haswell,model-id=Test,,CPU", "-kernel"])
        .arg(&kernel_path)
        .args(["-append", "console=ttyS0 x=1"])
        .arg("-initrd")
        .arg(format!("{} arg=foo,{}", m1.display(), m2.display()))
        .arg("-chardev")
        .arg(format!("file,id=com1,path={}", serial_path.display()))
        .args(["-serial", "chardev:com1"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .output()
        .unwrap();
    let serial = std::fs::read_to_string(&serial_path).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some((0x10 << 1) | 1), "stderr: {stderr}\nserial: {serial}");
    let expected = format!(
        "{} console=ttyS0 x=1\n{} arg=foo\nfirst module\n{}\nsecond module\nGenuineIntel\nTest,CPU\n",
        kernel_path.display(),
        m1.display(),
        m2.display()
    );
    assert_eq!(serial, expected);
    // Haswell's TSX is beyond ferrite's TCG: dropped with QEMU's warning.
    assert!(stderr.contains("warning: TCG doesn't support requested feature: CPUID.07H:EBX.hle [bit 4]"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
