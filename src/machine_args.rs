//! QEMU's machine-wide options: `-machine`, `-accel`, `-m`, `-overcommit`, `-name`, `-uuid`,
//! `-rtc`. Properties come in any order; ones that have no meaning for ferrite's TCG machine
//! are accepted, with a one-line notice when the value asks for something ferrite lacks.

use crate::storage_args::on_off;
use anyhow::{anyhow, bail, Context, Result};
use ferrite_machine::config::{Accel, KernelIrqchip, MachineConfig, RtcBase};

/// Notices for the user (printed as "ferrite: note: ...").
pub type Notes = Vec<String>;

/// One accelerator name.
fn accel_name(name: &str) -> Result<Accel> {
    match name {
        "tcg" => Ok(Accel::Tcg),
        "kvm" => Ok(Accel::Kvm),
        other => bail!("unknown accelerator '{other}' (expected tcg or kvm)"),
    }
}

/// QEMU's `accel=kvm:tcg`: the first one is tried, the others in order if it cannot run on
/// this host (the machine decides when it starts, and says why it fell back).
pub fn accel_list(list: &[&str], cfg: &mut MachineConfig) -> Result<()> {
    let accels = list.iter().map(|a| accel_name(a)).collect::<Result<Vec<_>>>()?;
    let (first, rest) = accels.split_first().ok_or_else(|| anyhow!("empty accelerator list"))?;
    cfg.accel = *first;
    cfg.accel_fallback = rest.to_vec();
    Ok(())
}

/// `-accel NAME[,thread=single|multi][,tb-size=MiB][,jit=off|on|always][,kernel-irqchip=..]
/// [,tcg-fallback=on|off]`;
/// several `-accel` options are tried in order, like an `accel=` list. `tb-size` bounds the
/// translator's code cache per vCPU; `jit` is ferrite's own: `off` interprets everything,
/// `always` compiles every block before its first run (for testing the translator).
pub fn parse_accels(specs: &[String], cfg: &mut MachineConfig) -> Result<()> {
    let mut names = Vec::new();
    let mut irqchip = None;
    for spec in specs {
        let jit = &mut cfg.jit;
        let mut parts = spec.split(',');
        // `-accel kvm:tcg` lists accelerators as `accel=` does.
        names.extend(parts.next().unwrap_or("").split(':'));
        for p in parts.filter(|p| !p.is_empty()) {
            match p.split_once('=').unwrap_or((p, "on")) {
                ("jit", v) => jit.mode = v.parse().map_err(|e: String| anyhow!("-accel: {e}"))?,
                ("tb-size", v) => {
                    let mib = v.parse::<usize>().ok().filter(|&n| (1..=1 << 20).contains(&n));
                    jit.cache_bytes = mib.ok_or_else(|| anyhow!("-accel: invalid tb-size '{v}' (MiB, at least 1)"))? << 20;
                }
                ("thread", "single" | "multi") | ("split-wx", _) | ("one-insn-per-tb", _) => {}
                ("kernel-irqchip" | "kernel_irqchip", v) => irqchip = Some(v),
                ("dirty-ring-size", _) => {}
                // ferrite's own: whether its CPU runs what the host's KVM cannot emulate.
                ("tcg-fallback", v) => cfg.kvm_tcg_fallback = on_off("tcg-fallback", v)?,
                _ => bail!("-accel: unsupported option '{p}'"),
            }
        }
    }
    if let Some(v) = irqchip {
        kernel_irqchip(v, cfg)?;
    }
    accel_list(&names, cfg)
}

/// `kernel-irqchip=on|off|split`: KVM's in-kernel interrupt controllers (`on`), its local
/// APICs only (`split`) or ferrite's own, the ones TCG uses (`off`, the default). TCG ignores
/// it, as QEMU does.
fn kernel_irqchip(v: &str, cfg: &mut MachineConfig) -> Result<()> {
    cfg.kernel_irqchip = match v {
        "on" => KernelIrqchip::On,
        "off" => KernelIrqchip::Off,
        "split" => KernelIrqchip::Split,
        _ => bail!("kernel-irqchip: expected on, off or split, not '{v}'"),
    };
    Ok(())
}

/// `-machine [type=]pc[,accel=A[:B]][,kernel-irqchip=on|off|split][,pit=on|off][,...]`; the
/// type may be left out (`-machine accel=tcg`).
pub fn parse_machine(spec: &str, cfg: &mut MachineConfig, notes: &mut Notes) -> Result<()> {
    let check_type = |t: &str| -> Result<()> {
        if t == "pc" || t.starts_with("pc-i440fx") {
            Ok(())
        } else {
            bail!("unsupported machine type '{t}' (supported: pc, pc-i440fx-*)")
        }
    };
    for (i, p) in spec.split(',').enumerate().filter(|(_, p)| !p.is_empty()) {
        let Some((k, v)) = p.split_once('=') else {
            if i == 0 {
                check_type(p)?;
                continue;
            }
            bail!("-machine: '{p}' needs a value (property=value)");
        };
        let flag = || on_off(k, v);
        match k {
            "type" => check_type(v)?,
            "accel" => accel_list(&v.split(':').collect::<Vec<_>>(), cfg)?,
            "kernel-irqchip" | "kernel_irqchip" => kernel_irqchip(v, cfg)?,
            "pit" | "acpi" | "graphics" | "dump-guest-core" | "mem-merge" | "suppress-vmdesc" | "nvdimm" if v == "auto" => {}
            "pit" | "acpi" => {
                if !flag()? {
                    notes.push(format!("-machine {k}=off: ferrite's pc machine always has the {}; ignored", k.to_uppercase()));
                }
            }
            "usb" | "vmport" | "smm" | "hpet" | "sata" | "nvdimm" => {
                if v != "auto" && flag()? {
                    notes.push(format!("-machine {k}=on: ferrite's pc machine has no {}; ignored", k.to_uppercase()));
                }
            }
            // Host-side hints and display state that change nothing the guest sees.
            "graphics" | "dump-guest-core" | "mem-merge" | "suppress-vmdesc" => {
                flag()?;
            }
            _ => bail!("unsupported -machine property '{p}'"),
        }
    }
    Ok(())
}

/// `-m [size=]N[M|G|...][,slots=N][,maxmem=SIZE]`: plain numbers are MiB.
pub fn parse_memory(spec: &str) -> Result<u64> {
    let mut size = None;
    let mut maxmem = None;
    for (i, p) in spec.split(',').enumerate().filter(|(_, p)| !p.is_empty()) {
        match p.split_once('=') {
            None if i == 0 => size = Some(crate::cli::parse_size(p)?),
            Some(("size", v)) => size = Some(crate::cli::parse_size(v)?),
            Some(("slots", v)) => {
                v.parse::<u32>().ok().filter(|&n| n <= 256).ok_or_else(|| anyhow!("-m: slots={v}: expected 0 to 256"))?;
            }
            Some(("maxmem", v)) => maxmem = Some(crate::cli::parse_size(v)?),
            _ => bail!("-m: unsupported option '{p}' (size=, slots=, maxmem=)"),
        }
    }
    let size = size.ok_or_else(|| anyhow!("-m: missing size"))?;
    if let Some(max) = maxmem {
        if max < size {
            bail!("-m: maxmem ({max} bytes) must be at least the RAM size ({size} bytes)");
        }
    }
    Ok(size)
}

/// `-overcommit mem-lock=on|off,cpu-pm=on|off`.
pub fn parse_overcommit(spec: &str, notes: &mut Notes) -> Result<()> {
    for p in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("-overcommit: expected property=value, not '{p}'"))?;
        let on = on_off(k, v)?;
        match k {
            "mem-lock" if on => notes.push("-overcommit mem-lock=on: guest memory is not locked by ferrite yet".into()),
            // CPU power management passthrough needs KVM; TCG ignores it as QEMU's TCG does.
            "mem-lock" | "cpu-pm" => {}
            _ => bail!("-overcommit: unsupported property '{k}' (mem-lock, cpu-pm)"),
        }
    }
    Ok(())
}

/// `-name NAME[,process=P][,debug-threads=on|off]` or `-name guest=NAME,...`.
pub fn parse_name(spec: &str) -> Result<String> {
    let mut name = None;
    for (i, p) in spec.split(',').enumerate() {
        match p.split_once('=') {
            None if i == 0 => name = Some(p.to_string()),
            Some(("guest", v)) => name = Some(v.to_string()),
            Some(("process", _)) => {}
            Some(("debug-threads", v)) => {
                on_off("debug-threads", v)?;
            }
            _ => bail!("-name: unsupported option '{p}' (guest=, process=, debug-threads=)"),
        }
    }
    name.filter(|n| !n.is_empty()).ok_or_else(|| anyhow!("-name: missing name"))
}

/// `-uuid XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, as the bytes are written (big-endian), which
/// is how QEMU hands it to the firmware through fw_cfg.
pub fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] || !s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("-uuid: '{s}' is not a UUID (XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)");
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok(out)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// QEMU's `base=` dates: `2006-06-17T16:01:21` or `2006-06-17`.
fn parse_date(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let (y, mo, day) = (d[0].parse::<i64>().ok()?, d[1].parse::<u32>().ok()?, d[2].parse::<u32>().ok()?);
    let (h, mi, se) = (t[0].parse::<i64>().ok()?, t[1].parse::<i64>().ok()?, t[2].parse::<i64>().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 59 || y < 1970 {
        return None;
    }
    Some(days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + se)
}

/// `-rtc [base=utc|localtime|DATE][,clock=host|rt|vm][,driftfix=none|slew]`.
pub fn parse_rtc(spec: &str, cfg: &mut MachineConfig, notes: &mut Notes) -> Result<()> {
    for p in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("-rtc: expected property=value, not '{p}'"))?;
        match (k, v) {
            ("base", "utc") => cfg.rtc_base = RtcBase::Utc,
            ("base", "localtime") => cfg.rtc_base = RtcBase::LocalTime,
            ("base", d) => {
                let secs = parse_date(d).with_context(|| format!("-rtc base={d}: expected utc, localtime or a date like 2006-06-17T16:01:21"))?;
                cfg.rtc_base = RtcBase::Date(secs);
            }
            // ferrite's RTC follows the machine clock, which runs with the host's and stops
            // while the machine is paused: what QEMU calls vm; host and rt differ only then.
            ("clock", "host" | "rt" | "vm") => {}
            ("driftfix", "none") => {}
            ("driftfix", "slew") => notes.push("-rtc driftfix=slew: ferrite's RTC never loses ticks; ignored".into()),
            _ => bail!("-rtc: unsupported option '{p}' (base=utc|localtime|DATE, clock=host|rt|vm, driftfix=none|slew)"),
        }
    }
    Ok(())
}

/// `-version`: QEMU's shape ("QEMU emulator version X.Y.Z"), so scripts matching
/// `version (\d+)\.(\d+)` read ferrite's own version.
pub fn version_text() -> String {
    format!(
        "ferrite emulator version {} (QEMU-compatible command line, as QEMU 7.2)\nCopyright (c) the ferrite developers\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2006-06-17T16:01:21"), Some(1_150_560_081));
        assert_eq!(parse_date("2000-03-01T00:00:00"), Some(951_868_800));
        assert_eq!(parse_date("2006-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("12345678-9abc-def0-1122-334455667788").unwrap();
        assert_eq!(u[0..4], [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(u[15], 0x88);
        assert!(parse_uuid("1234").is_err());
        assert!(parse_uuid("1234567g-9abc-def0-1122-334455667788").is_err());
    }

    #[test]
    fn accelerator_fallback() {
        let mut cfg = MachineConfig::default();
        accel_list(&["kvm", "tcg"], &mut cfg).unwrap();
        assert_eq!((cfg.accel, cfg.accel_fallback.as_slice()), (Accel::Kvm, &[Accel::Tcg][..]));
        accel_list(&["kvm"], &mut cfg).unwrap();
        assert_eq!((cfg.accel, cfg.accel_fallback.len()), (Accel::Kvm, 0));
        assert!(accel_list(&["hvf", "tcg"], &mut cfg).is_err());
    }
}
