//! Compiler-generated x86-64-v3 code: tests/programs/v3.c, built by gcc with
//! `-O3 -march=x86-64-v3` (plus AES-NI, PCLMULQDQ and SHA), hashes, counts and computes over
//! a buffer with the AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE, gather and crypto instructions the
//! compiler chooses. The flat binary runs natively (mapped at its link address) and in the
//! interpreter; the results must be identical. Skipped without gcc or without the host
//! features.

#![cfg(target_arch = "x86_64")]

#[macro_use]
mod native;

use ferrite_cpu::state::reg;
use ferrite_cpu::RunExit;
use native::*;
use std::path::PathBuf;
use std::process::Command;

/// Where the program is linked (and loaded, natively and in the guest).
const LOAD: u64 = 0x10_0000;
const BUF: u64 = 0x20_0000;
const BUF_LEN: usize = 4096;
/// The guest's return address: a HLT.
const RETURN: u64 = 0x9_f000;
const HLT: u8 = 0xf4;

/// Builds the program; `None` (with the reason printed) if the toolchain is missing.
fn build() -> Option<(Vec<u8>, u64)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs/v3.c");
    let dir = std::env::temp_dir().join(format!("ferrite-v3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (elf, bin) = (dir.join("v3.elf"), dir.join("v3.bin"));
    let status = Command::new("gcc")
        .args(["-O3", "-march=x86-64-v3", "-maes", "-mpclmul", "-msha", "-fno-math-errno", "-ffreestanding"])
        .args(["-fno-builtin", "-fno-stack-protector", "-fno-pic", "-fno-asynchronous-unwind-tables", "-nostdlib"])
        .args(["-static", "-Wl,-Ttext=0x100000", "-Wl,-e,run", "-Wl,--build-id=none", "-o"])
        .arg(&elf)
        .arg(&src)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("gcc could not build {}: skipped", src.display());
        return None;
    }
    Command::new("objcopy").args(["-O", "binary"]).arg(&elf).arg(&bin).status().ok()?;
    let symbols = Command::new("nm").arg(&elf).output().ok()?;
    let run = String::from_utf8_lossy(&symbols.stdout)
        .lines()
        .find_map(|l| l.strip_suffix(" T run").and_then(|a| u64::from_str_radix(a, 16).ok()))?;
    let code = std::fs::read(&bin).ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Some((code, run))
}

fn input() -> Vec<u8> {
    let mut rng = 0x1234_5678_9abc_def1u64;
    (0..BUF_LEN)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            match i % 29 {
                0 => b'a',
                1 => 3,
                _ => rng as u8,
            }
        })
        .collect()
}

/// Runs the program on the host: maps it at its link address and calls `run(buf)`.
fn run_native(code: &[u8], entry: u64, buf: &mut [u8]) -> Option<u64> {
    let len = code.len().next_multiple_of(4096);
    // SAFETY: a fresh anonymous mapping at a fixed address that MAP_FIXED_NOREPLACE refuses to
    // place over anything already mapped; it is only written here and unmapped below.
    let p = unsafe {
        libc::mmap(
            LOAD as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p as u64 != LOAD {
        println!("cannot map the program at {LOAD:#x} natively: skipped");
        return None;
    }
    // SAFETY: `p` maps `len >= code.len()` writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len()) };
    // SAFETY: `entry` is `run` of the program just mapped, built for this host (the caller
    // checked its features) with the System V ABI and touching only its own image, its
    // stack and the buffer it is given.
    let result = unsafe {
        let f: extern "sysv64" fn(*mut u8) -> u64 = core::mem::transmute(entry as usize);
        f(buf.as_mut_ptr())
    };
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(p, len) };
    Some(result)
}

fn run_interpreted(code: &[u8], entry: u64, buf: &mut [u8]) -> u64 {
    let (mut cpu, mut bus) = long_mode_machine();
    bus.load(LOAD, code);
    bus.load(BUF, buf);
    bus.load(RETURN, &[HLT]);
    for v in 0..32 {
        bus.load(HANDLERS + 16 * v, &[HLT]);
    }
    let sp = 0x3f_f000u64;
    bus.load(sp, &RETURN.to_le_bytes());
    cpu.state.gpr[reg::RSP] = sp;
    cpu.state.gpr[reg::RDI] = BUF;
    cpu.state.rip = entry;
    let exit = cpu.run(&mut bus, 50_000_000);
    assert_eq!(exit, RunExit::Halted);
    let rip = cpu.state.rip;
    assert!(rip == RETURN + 1, "stopped at {rip:#x} (a fault handler is at {HANDLERS:#x} + 16 × vector)");
    buf.copy_from_slice(&bus.ram[BUF as usize..BUF as usize + buf.len()]);
    cpu.state.gpr[reg::RAX]
}

#[test]
fn gcc_x86_64_v3_program_matches_the_host() {
    let host = ["avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe", "aes", "pclmulqdq", "sha"];
    let has = |f: &str| match f {
        "avx2" => is_x86_feature_detected!("avx2"),
        "fma" => is_x86_feature_detected!("fma"),
        "f16c" => is_x86_feature_detected!("f16c"),
        "bmi1" => is_x86_feature_detected!("bmi1"),
        "bmi2" => is_x86_feature_detected!("bmi2"),
        "lzcnt" => is_x86_feature_detected!("lzcnt"),
        "movbe" => is_x86_feature_detected!("movbe"),
        "aes" => is_x86_feature_detected!("aes"),
        "pclmulqdq" => is_x86_feature_detected!("pclmulqdq"),
        _ => is_x86_feature_detected!("sha"),
    };
    if !host.iter().all(|f| has(f)) {
        println!("host CPU lacks part of x86-64-v3 or the crypto extensions: skipped");
        return;
    }
    let Some((code, entry)) = build() else { return };
    let mut native_buf = input();
    let Some(native) = run_native(&code, entry, &mut native_buf) else { return };
    let mut ours_buf = input();
    let ours = run_interpreted(&code, entry, &mut ours_buf);
    assert_eq!(ours, native, "return value");
    let differ: Vec<usize> = (0..BUF_LEN).filter(|&i| ours_buf[i] != native_buf[i]).collect();
    assert!(differ.is_empty(), "{} bytes differ, first at buffer offset {:#x}", differ.len(), differ[0]);
    assert_ne!(native_buf, input(), "the program wrote its results");
}
