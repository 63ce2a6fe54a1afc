//! QEMU's `-initrd` lists and the command line a multiboot kernel receives.
//!
//! `-initrd` takes several comma-separated entries (`,,` is a literal comma in a file name).
//! For a multiboot kernel each entry is a module: the file name, optionally followed by a space
//! and arguments, and the module's string is the whole entry (QEMU's convention). For Linux the
//! files are concatenated into one initrd, each starting on a 4-byte boundary as the kernel's
//! initramfs unpacker expects of concatenated cpio archives (it skips the zero padding).

/// Splits an option value at single commas; `,,` stands for a literal comma.
pub fn split_list(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                out.last_mut().expect("never empty").push(',');
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

/// A multiboot module entry `FILE[ ARGS]`: the file to read, and the module's string.
pub fn module_entry(entry: &str) -> (&str, &str) {
    (entry.split(' ').next().unwrap_or(entry), entry)
}

/// Alignment of each file in a concatenated Linux initrd.
pub const INITRD_ALIGN: usize = 4;

/// Concatenates initrd files, padding each but the last with zeros to `INITRD_ALIGN`.
pub fn concat_initrds(files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|f| f.len() + INITRD_ALIGN).sum());
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.resize(out.len().next_multiple_of(INITRD_ALIGN), 0);
        }
        out.extend_from_slice(f);
    }
    out
}

/// The command line QEMU hands a multiboot kernel: its file name, a space, then `-append`.
pub fn multiboot_cmdline(kernel_file: &str, append: &str) -> String {
    format!("{kernel_file} {append}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_escapes() {
        assert_eq!(split_list("a,b c=1,,2"), ["a", "b c=1,2"]);
        assert_eq!(split_list("one"), ["one"]);
        assert_eq!(module_entry("/boot/mod.bin arg=foo x"), ("/boot/mod.bin", "/boot/mod.bin arg=foo x"));
        assert_eq!(module_entry("plain"), ("plain", "plain"));
    }

    #[test]
    fn linux_initrds_concatenate_aligned() {
        let joined = concat_initrds(&[b"abcde".to_vec(), b"xy".to_vec(), b"123".to_vec()]);
        assert_eq!(joined, b"abcde\0\0\0xy\0\0123");
        assert_eq!(concat_initrds(&[b"abcd".to_vec(), b"e".to_vec()]), b"abcde");
    }

    #[test]
    fn multiboot_cmdline_starts_with_the_kernel_file() {
        assert_eq!(multiboot_cmdline("/tmp/kernel.elf", "console=ttyS0 debug"), "/tmp/kernel.elf console=ttyS0 debug");
        // As QEMU: the space is there even without -append.
        assert_eq!(multiboot_cmdline("k", ""), "k ");
    }
}
