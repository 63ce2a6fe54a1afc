//! Bare-metal multiboot (v1) test kernels, assembled with iced-x86.
//!
//! A kernel is one flat image loaded at 1 MiB through the a.out kludge (multiboot 0.6.96 §3.1.3):
//! the 32-byte header, then code (at most [`CODE_LIMIT`] bytes), then data from [`DATA_BASE`],
//! page-aligned so stores to variables never touch a page that holds code.
//!
//! The code is assembled twice: the first pass learns where the named labels land, the second
//! hands those addresses to instructions that need them as immediates (far jumps, `mov r32, imm32`).
//! Label memory operands are RIP-relative in iced, which 32-bit code cannot use, so data lives at
//! absolute addresses handed out by [`Data`].

#![allow(dead_code)] // each test crate uses its own subset

pub mod e1000;
pub mod irq;
pub mod pci;
pub mod rt;
pub mod smp;
pub mod ticker;
pub mod virtio;

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::collections::HashMap;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the kernel is loaded (the multiboot header's load_addr).
pub const LOAD: u32 = 0x10_0000;
/// Room for the header and code.
pub const CODE_LIMIT: u32 = 0x3000;
/// Start of the data section, on its own page after the code.
pub const DATA_BASE: u32 = LOAD + CODE_LIMIT;

/// Multiboot header magic and the magic the loader leaves in EAX (multiboot 0.6.96 §3.1.2, §3.2).
const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
const MULTIBOOT_BOOTED: u32 = 0x2bad_b002;
/// Header flag 16: the address fields of the header are valid (a.out kludge).
const MULTIBOOT_AOUT_KLUDGE: u32 = 1 << 16;

/// COM1 data register.
pub const COM1: u16 = 0x3f8;
/// isa-debug-exit port, as the tests configure it (`iobase=0xf4`).
pub const DEBUG_EXIT: u16 = 0xf4;
/// Exit codes written to [`DEBUG_EXIT`]; the emulator exits with `(code << 1) | 1`.
pub const EXIT_OK: u8 = 0x10;
pub const EXIT_FAIL: u8 = 0x11;
/// Reported when EAX does not hold the multiboot magic at entry.
pub const EXIT_BAD_MAGIC: u8 = 0x7f;

/// Process exit status for a guest exit code.
pub fn exit_status(code: u8) -> i32 {
    ((code as i32) << 1) | 1
}

/// Stand-in for label addresses during the first pass: large enough that iced picks the same
/// (imm32) encodings it will need for the real address.
const PLACEHOLDER: u32 = LOAD;

/// A 32-bit code assembler that knows, from the previous pass, the address of its named labels.
pub struct Asm {
    a: CodeAssembler,
    named: Vec<(&'static str, CodeLabel)>,
    prev: HashMap<&'static str, u32>,
}

impl Deref for Asm {
    type Target = CodeAssembler;
    fn deref(&self) -> &CodeAssembler {
        &self.a
    }
}

impl DerefMut for Asm {
    fn deref_mut(&mut self) -> &mut CodeAssembler {
        &mut self.a
    }
}

impl Asm {
    /// A label whose address [`Asm::addr`] can hand out.
    pub fn named_label(&mut self, name: &'static str) -> CodeLabel {
        let l = self.a.create_label();
        self.named.push((name, l));
        l
    }

    /// Binds `label` to the current position. Several labels may share a position (iced allows
    /// one per instruction, so each gets an empty one).
    pub fn here(&mut self, label: &mut CodeLabel) {
        let unbound = *label;
        self.a.set_label(label).unwrap();
        self.a.zero_bytes().unwrap();
        // CodeLabel is a value: keep the bound copy of a named label.
        for (_, l) in self.named.iter_mut().filter(|(_, l)| *l == unbound) {
            *l = *label;
        }
    }

    /// The address of a named label (a placeholder during the first pass).
    pub fn addr(&self, name: &str) -> u32 {
        self.prev.get(name).copied().unwrap_or(PLACEHOLDER)
    }
}

/// The data section: bytes at absolute addresses from [`DATA_BASE`] on.
pub struct Data {
    bytes: Vec<u8>,
}

impl Data {
    /// Places `b` at the next `align`-aligned address and returns that address.
    pub fn bytes(&mut self, b: &[u8], align: u32) -> u32 {
        let at = (self.bytes.len() as u32).next_multiple_of(align);
        self.bytes.resize(at as usize, 0);
        self.bytes.extend_from_slice(b);
        DATA_BASE + at
    }

    /// `len` zero bytes (a variable), `align`-aligned.
    pub fn zeroed(&mut self, len: u32, align: u32) -> u32 {
        self.bytes(&vec![0; len as usize], align)
    }

    /// A 32-bit variable on its own 64-byte cache line, so CPUs hammering different variables
    /// do not share a line.
    pub fn var(&mut self) -> u32 {
        let at = self.zeroed(4, 64);
        self.zeroed(0, 64);
        at
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self, s: &str) -> u32 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.bytes(&b, 1)
    }

    /// Overwrites bytes placed earlier (for blobs built after the code, like the trampoline).
    pub fn patch(&mut self, addr: u32, b: &[u8]) {
        let at = (addr - DATA_BASE) as usize;
        self.bytes[at..at + b.len()].copy_from_slice(b);
    }
}

/// Builds a multiboot kernel. `build` emits the code after the header and must set the label
/// named `"start"` (the entry point, reached with EAX = 0x2BADB002 in flat 32-bit protected mode).
pub fn multiboot_kernel(build: impl Fn(&mut Asm, &mut Data)) -> Vec<u8> {
    let pass = |prev: HashMap<&'static str, u32>| {
        let mut a = Asm { a: CodeAssembler::new(32).unwrap(), named: Vec::new(), prev };
        let flags = MULTIBOOT_AOUT_KLUDGE;
        a.dd(&[MULTIBOOT_MAGIC, flags, 0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags))]).unwrap();
        // header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr (the last three
        // are patched in below, once the image size and the entry are known).
        a.dd(&[LOAD, LOAD, 0, 0, 0]).unwrap();
        let mut data = Data { bytes: Vec::new() };
        build(&mut a, &mut data);
        let r = a.a.assemble_options(LOAD as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        let addrs: HashMap<_, _> = a.named.iter().map(|(n, l)| (*n, r.label_ip(l).unwrap() as u32)).collect();
        (r.inner.code_buffer, data.bytes, addrs)
    };
    let (_, _, first) = pass(HashMap::new());
    let (mut img, data, addrs) = pass(first.clone());
    assert_eq!(first, addrs, "labels moved between passes");
    assert!(img.len() <= CODE_LIMIT as usize, "code is {:#x} bytes, more than {CODE_LIMIT:#x}", img.len());
    img.resize(CODE_LIMIT as usize, 0);
    img.extend_from_slice(&data);
    let end = LOAD + img.len() as u32;
    let entry = *addrs.get("start").expect("the kernel sets a label named \"start\"");
    img[20..24].copy_from_slice(&end.to_le_bytes());
    img[24..28].copy_from_slice(&end.to_le_bytes());
    img[28..32].copy_from_slice(&entry.to_le_bytes());
    img
}

/// Checks the multiboot magic in EAX; on a mismatch exits with [`EXIT_BAD_MAGIC`].
pub fn check_multiboot_magic(a: &mut Asm) {
    let mut ok = a.create_label();
    a.cmp(eax, MULTIBOOT_BOOTED).unwrap();
    a.je(ok).unwrap();
    exit(a, EXIT_BAD_MAGIC);
    a.here(&mut ok);
}

/// Writes `code` to isa-debug-exit; if the device is missing, stops the CPU for good.
pub fn exit(a: &mut Asm, code: u8) {
    let mut stop = a.create_label();
    a.mov(al, code as u32).unwrap();
    a.out(DEBUG_EXIT as u32, al).unwrap();
    a.here(&mut stop);
    a.cli().unwrap();
    a.hlt().unwrap();
    a.jmp(stop).unwrap();
}

/// How long to wait for ferrite's stderr to close once ferrite is gone.
const STDERR_GRACE: Duration = Duration::from_secs(5);

/// What a [`boot`] saw.
pub struct Run {
    /// Exit status, `None` if the watchdog killed ferrite (or a signal did).
    pub status: Option<i32>,
    pub serial: String,
    /// For failure messages: test, arguments, status, time, serial output and stderr.
    pub context: String,
}

/// Boots `kernel` with `-m 64 -nographic -no-reboot`, COM1 to a file, isa-debug-exit at 0xF4 and
/// `args`, and kills ferrite if it has not exited after `timeout`.
pub fn boot(name: &str, kernel: &[u8], args: &[&str], timeout: Duration) -> Run {
    boot_watched(name, kernel, args, timeout, |_| {})
}

/// [`boot`], calling `watch` with ferrite's process ID every 20 ms while it runs (to sample its
/// memory use, say); host-side work that talks to ferrite runs on threads of its own.
pub fn boot_watched(name: &str, kernel: &[u8], args: &[&str], timeout: Duration, mut watch: impl FnMut(u32)) -> Run {
    // Distinct per argument list (tests boot one kernel several ways), short enough for a
    // file name however long the arguments.
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        args.hash(&mut h);
        h.finish()
    };
    let dir = std::env::temp_dir().join(format!("ferrite-{}-{name}-{tag:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel_path = dir.join("kernel.bin");
    let serial_path = dir.join("serial.txt");
    std::fs::write(&kernel_path, kernel).unwrap();
    let _ = std::fs::remove_file(&serial_path);
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["-m", "64", "-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel_path)
        .arg("-serial")
        .arg(format!("file:{}", serial_path.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr on the side, so a chatty ferrite never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        let _ = tx.send(String::from_utf8_lossy(&s).into_owned());
    });
    let (status, killed) = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break (s.code(), false);
        }
        watch(child.id());
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    // A process that inherited the pipe could keep it open: do not wait on it for long.
    let stderr = rx.recv_timeout(STDERR_GRACE).unwrap_or_else(|_| "(stderr still open)".into());
    let serial = std::fs::read_to_string(&serial_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = if killed { "killed by the watchdog".to_string() } else { format!("exit status {status:?}") };
    let args = args.join(" ");
    println!("{name} {args}: {outcome} after {secs:.1} s");
    let context = format!("{name} with {args}: {outcome} after {secs:.1} s\nserial: {serial:?}\nstderr:\n{stderr}");
    Run { status, serial, context }
}
