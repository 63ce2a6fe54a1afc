//! The human monitor's looks into the machine: `x`/`xp` memory dumps in QEMU's format,
//! `gva2gpa`, `info cpus` and `info registers` for any vCPU.

use crate::Machine;
use std::fmt::Write;

/// Longest dump one `x` command prints.
const MAX_ITEMS: u64 = 4096;

/// What `x /FMT ADDR` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dump {
    pub count: u64,
    /// `x` hex, `d` signed, `u` unsigned, `o` octal, `c` characters, `i` instructions.
    pub format: char,
    /// Bytes per item: 1, 2, 4 or 8.
    pub size: usize,
    pub addr: u64,
}

/// A number as the monitor takes it: hex with 0x, else decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `[/[COUNT][FORMAT][SIZE]] ADDR`, as QEMU's `x` (defaults: one 4-byte hex word).
pub fn parse_dump(words: &[&str]) -> Result<Dump, String> {
    let usage = "usage: x /fmt addr (fmt: [count][x|d|u|o|c|i][b|h|w|g])";
    let (fmt, addr) = match words {
        [addr] => ("", *addr),
        [fmt, addr] if fmt.starts_with('/') => (&fmt[1..], *addr),
        _ => return Err(usage.into()),
    };
    let digits = fmt.find(|c: char| !c.is_ascii_digit()).unwrap_or(fmt.len());
    let count = if digits == 0 { 1 } else { fmt[..digits].parse().map_err(|_| usage.to_string())? };
    let (mut format, mut size) = ('x', None);
    for c in fmt[digits..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' | 'i' => format = c,
            'b' => size = Some(1),
            'h' => size = Some(2),
            'w' => size = Some(4),
            'g' => size = Some(8),
            _ => return Err(format!("invalid char in format: '{c}'")),
        }
    }
    let size = size.unwrap_or(if format == 'c' { 1 } else { 4 });
    let addr = parse_number(addr).ok_or_else(|| format!("invalid address '{addr}'"))?;
    if count == 0 || count > MAX_ITEMS {
        return Err(format!("count must be between 1 and {MAX_ITEMS}"));
    }
    Ok(Dump { count, format, size, addr })
}

/// One item in `format`, padded as QEMU pads it.
fn item(value: u64, format: char, size: usize) -> String {
    let bits = size * 8;
    let signed = if bits == 64 { value as i64 } else { ((value << (64 - bits)) as i64) >> (64 - bits) };
    match format {
        'x' => format!("0x{value:0width$x}", width = size * 2),
        'o' => format!("0{value:o}"),
        'd' => format!("{signed}"),
        'u' => format!("{value}"),
        _ => {
            let b = value as u8;
            if b.is_ascii_graphic() || b == b' ' { format!("'{}'", b as char) } else { format!("'\\x{b:02x}'") }
        }
    }
}

impl Machine {
    /// `x` (linear addresses through the monitor CPU's page tables) and `xp` (physical).
    pub(crate) fn dump_memory(&mut self, d: &Dump, physical: bool) -> String {
        let saved = (self.debug.phys, self.debug.current);
        (self.debug.phys, self.debug.current) = (physical, self.monitor_cpu);
        let out = if d.format == 'i' { self.disassemble(Some(d.addr), d.count as usize) } else { self.dump_items(d) };
        (self.debug.phys, self.debug.current) = saved;
        out
    }

    fn dump_items(&mut self, d: &Dump) -> String {
        let per_line = if d.format == 'c' { 16 } else { 16 / d.size as u64 };
        let mut out = String::new();
        for i in 0..d.count {
            let addr = d.addr.wrapping_add(i * d.size as u64);
            if i % per_line == 0 {
                if i > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "{addr:016x}:");
            }
            let mut buf = [0u8; 8];
            if self.debug_read(addr, &mut buf[..d.size]) < d.size {
                let _ = writeln!(out, "\nCannot access memory at {addr:#x}");
                return out;
            }
            let _ = write!(out, " {}", item(u64::from_le_bytes(buf), d.format, d.size));
        }
        out.push('\n');
        out
    }

    /// `gva2gpa`: the monitor CPU's translation of a linear address.
    pub(crate) fn translate_for_monitor(&mut self, addr: u64) -> Option<u64> {
        let saved = (self.debug.phys, self.debug.current);
        (self.debug.phys, self.debug.current) = (false, self.monitor_cpu);
        let p = self.debug_phys_addr(addr);
        (self.debug.phys, self.debug.current) = saved;
        p
    }

    /// `info cpus`: `* CPU #0: thread_id=...` (the star marks the monitor's CPU).
    pub(crate) fn info_cpus(&self) -> String {
        (0..self.vcpus.len())
            .map(|i| {
                let mark = if i == self.monitor_cpu { '*' } else { ' ' };
                let tid = self.vcpu_tids.get(i).copied().unwrap_or(0);
                let halted = if self.vcpus[i].cpu.halted { " (halted)" } else { "" };
                format!("{mark} CPU #{i}: thread_id={tid}{halted}\n")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_formats_parse_as_qemus() {
        assert_eq!(parse_dump(&["/4xg", "0x1000"]), Ok(Dump { count: 4, format: 'x', size: 8, addr: 0x1000 }));
        assert_eq!(parse_dump(&["0x10"]), Ok(Dump { count: 1, format: 'x', size: 4, addr: 0x10 }));
        assert_eq!(parse_dump(&["/16c", "4096"]), Ok(Dump { count: 16, format: 'c', size: 1, addr: 4096 }));
        assert_eq!(parse_dump(&["/3i", "0xfff0"]).unwrap().format, 'i');
        assert!(parse_dump(&["/4q", "0"]).is_err());
        assert!(parse_dump(&["/0x", "0"]).is_err());
        assert!(parse_dump(&["/4x"]).is_err());
    }

    #[test]
    fn items_print_as_qemus() {
        assert_eq!(item(0x1234, 'x', 4), "0x00001234");
        assert_eq!(item(0xffff, 'd', 2), "-1");
        assert_eq!(item(0xffff, 'u', 2), "65535");
        assert_eq!(item(8, 'o', 1), "010");
        assert_eq!(item(b'A' as u64, 'c', 1), "'A'");
        assert_eq!(item(0, 'c', 1), "'\\x00'");
    }
}
