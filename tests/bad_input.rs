//! Bad user input gets a clear message and a non-zero exit, never a panic.

use std::process::{Command, Output};

fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite")).args(args).output().unwrap()
}

fn assert_clean_failure(out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "ferrite panicked: {stderr}");
    assert!(stderr.contains(expect), "stderr should mention '{expect}': {stderr}");
}

fn temp(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("ferrite-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

/// A bzImage header (the first sector plus the setup header) with nothing behind it.
fn truncated_bzimage() -> Vec<u8> {
    let mut b = vec![0u8; 0x300];
    b[0x1f1] = 4; // setup_sects
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = 1; // LOADED_HIGH
    b
}

#[test]
fn missing_kernel_file() {
    let out = ferrite(&["-kernel", "/nonexistent/bzImage", "-nographic"]);
    assert_clean_failure(&out, "/nonexistent/bzImage");
}

#[test]
fn truncated_kernel() {
    let k = temp("short-image", &truncated_bzimage());
    let out = ferrite(&["-kernel", &k, "-nographic"]);
    assert_clean_failure(&out, "truncated");
}

#[test]
fn not_a_kernel() {
    let k = temp("text.txt", b"this is not a kernel\n");
    let out = ferrite(&["-kernel", &k, "-nographic"]);
    assert_clean_failure(&out, "neither a Linux bzImage nor a multiboot kernel");
}

#[test]
fn initrd_larger_than_ram() {
    let Some(kernel) = real_kernel() else {
        println!("SKIPPED: no Debian kernel (run scripts/fetch-guests)");
        return;
    };
    let big = temp("big-initrd", &vec![0u8; 200 << 20]);
    let out = ferrite(&["-m", "128", "-kernel", &kernel, "-initrd", &big, "-nographic"]);
    assert_clean_failure(&out, "initrd");
}

#[test]
fn too_little_memory() {
    let out = ferrite(&["-m", "1", "-nographic"]);
    assert_clean_failure(&out, "too little memory");
}

#[test]
fn unknown_options() {
    assert_clean_failure(&ferrite(&["-frobnicate"]), "-frobnicate");
    assert_clean_failure(&ferrite(&["--frobnicate"]), "--frobnicate");
    assert_clean_failure(&ferrite(&["-m", "lots"]), "lots");
    assert_clean_failure(&ferrite(&["-cpu", "pentium9"]), "pentium9");
    assert_clean_failure(&ferrite(&["-cpu", "max,+warp-drive"]), "warp-drive");
    assert_clean_failure(&ferrite(&["-device", "e1001"]), "e1001");
    assert_clean_failure(&ferrite(&["-machine", "q35"]), "q35");
}

fn real_kernel() -> Option<String> {
    let dir = std::env::var("FERRITE_GUEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ferrite/guests"));
    let k = dir.join("bzImage");
    k.exists().then(|| k.to_string_lossy().into_owned())
}
