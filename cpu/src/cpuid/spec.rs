//! QEMU's `-cpu` grammar: `MODEL[,+feat][,-feat][,feat=on|off][,PROP=VALUE]...[,check][,enforce]`.
//!
//! As in QEMU, `-feat` wins over `+feat` whatever their order, and `feat=on|off` applies in
//! order before both. A feature QEMU knows but ferrite's TCG cannot provide is dropped with
//! QEMU's TCG warning (unless `check=off`), and is an error under `enforce`; only a name QEMU
//! does not know is refused outright.

use super::{models, names, CpuModel, FEATURES};
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuModelError {
    #[error("unable to find CPU model '{0}' (see -cpu help)")]
    UnknownModel(String),
    #[error("unknown CPU feature '{0}' in -cpu (see -cpu help)")]
    UnknownFeature(String),
    #[error("malformed -cpu property '{0}': expected +feature, -feature, feature=on|off or property=value")]
    Malformed(String),
    #[error("-cpu {prop}={value}: {why}")]
    BadValue { prop: String, value: String, why: &'static str },
    #[error("TCG doesn't support requested features (enforce):\n  {}", .0.join("\n  "))]
    Enforce(Vec<String>),
}

/// A parsed `-cpu`: the model CPUID reports, and the warnings QEMU would print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSpec {
    pub model: CpuModel,
    pub warnings: Vec<String>,
}

/// Splits at single commas; `,,` is a literal comma (QEMU's option escaping).
fn split_props(spec: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                out.last_mut().expect("never empty").push(',');
            } else {
                out.push(String::new());
            }
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

fn on_off(prop: &str, v: &str) -> Result<bool, CpuModelError> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(CpuModelError::BadValue { prop: prop.into(), value: v.into(), why: "expected on or off" }),
    }
}

fn number(prop: &str, v: &str, max: u64) -> Result<u32, CpuModelError> {
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    match n {
        Ok(n) if n <= max => Ok(n as u32),
        _ => Err(CpuModelError::BadValue { prop: prop.into(), value: v.into(), why: "not a number in range" }),
    }
}

/// CPU properties QEMU accepts that change nothing a guest of ferrite's TCG can see (no PMU,
/// no KVM signature, no host cache passthrough).
const NO_EFFECT: &[&str] = &[
    "pmu", "migratable", "kvm", "l3-cache", "host-cache-info", "legacy-cache", "full-cpuid-auto-level",
    "lmce", "fill-mtrr-mask", "cpuid-0xb", "ucode-rev", "host-phys-bits", "host-phys-bits-limit",
    "kvm-no-smi-migration", "kvm-pv-enforce-cpuid", "x-intel-pt-auto-level", "x-force-features",
];

impl CpuModel {
    /// Parses QEMU's `-cpu` specification into the model CPUID reports.
    pub fn parse(spec: &str) -> Result<Self, CpuModelError> {
        Self::parse_spec(spec).map(|s| s.model)
    }

    /// Parses `-cpu`, returning QEMU's warnings alongside the model.
    pub fn parse_spec(spec: &str) -> Result<CpuSpec, CpuModelError> {
        let props = split_props(spec);
        let name = props[0].as_str();
        let mut requested: BTreeSet<String> = BTreeSet::new();
        let mut m = match name {
            "max" | "host" | "ferrite" | "" => {
                requested.extend(FEATURES.iter().map(|f| f.names[0].to_string()));
                Self::max()
            }
            "help" | "?" => return Err(CpuModelError::UnknownModel(name.into())),
            _ => {
                let def = models::find(name).ok_or_else(|| CpuModelError::UnknownModel(name.into()))?;
                requested.extend(def.features.iter().flat_map(|g| g.split_whitespace()).map(String::from));
                // QEMU sets the hypervisor bit in every built-in model.
                requested.insert("hypervisor".into());
                let mut m = Self::bare(name, *def.vendor, (def.family, def.model, def.stepping), def.model_id);
                m.max_basic_leaf = def.level;
                m.max_ext_leaf = def.xlevel;
                m
            }
        };
        let (mut plus, mut minus) = (Vec::new(), Vec::new());
        let (mut check, mut enforce) = (true, false);
        let mut warnings = Vec::new();
        let mut level_set = false;
        for p in props.iter().skip(1).filter(|p| !p.is_empty()) {
            if let Some((on, f)) = p.strip_prefix('+').map(|f| (true, f)).or_else(|| p.strip_prefix('-').map(|f| (false, f))) {
                // The legacy +/- form also reaches the boolean properties (`-check`).
                match f {
                    "check" => check = on,
                    "enforce" => enforce = on,
                    f if on => plus.push(known(f)?),
                    f => minus.push(known(f)?),
                }
                continue;
            }
            let (k, v) = p.split_once('=').map_or((p.as_str(), None), |(k, v)| (k, Some(v)));
            let flag = |k: &str| on_off(k, v.unwrap_or("on"));
            let need = || v.ok_or_else(|| CpuModelError::Malformed(p.clone()));
            match k {
                "check" => check = flag(k)?,
                "enforce" => enforce = flag(k)?,
                "vendor" => {
                    let v = need()?;
                    m.vendor = v.as_bytes().try_into().map_err(|_| CpuModelError::BadValue {
                        prop: k.into(),
                        value: v.into(),
                        why: "the vendor is exactly 12 characters",
                    })?;
                }
                "model-id" => m.brand = need()?.chars().take(48).collect(),
                "family" => m.family = number(k, need()?, 0xff + 0xf)?,
                "model" => m.model = number(k, need()?, 0xff)?,
                "stepping" => m.stepping = number(k, need()?, 0xf)?,
                "level" => {
                    m.max_basic_leaf = number(k, need()?, u64::from(u32::MAX))?;
                    level_set = true;
                }
                "xlevel" => m.max_ext_leaf = number(k, need()?, u64::from(u32::MAX))?,
                "min-level" => m.max_basic_leaf = m.max_basic_leaf.max(number(k, need()?, u64::from(u32::MAX))?),
                "min-xlevel" => m.max_ext_leaf = m.max_ext_leaf.max(number(k, need()?, u64::from(u32::MAX))?),
                "phys-bits" => {
                    let bits = number(k, need()?, 52)?;
                    if bits < 32 {
                        return Err(CpuModelError::BadValue { prop: k.into(), value: bits.to_string(), why: "phys-bits must be between 32 and 52" });
                    }
                    let max = crate::mmu::MAX_PHYS_BITS;
                    if bits > max {
                        warnings.push(format!("TCG implements {max} physical address bits; phys-bits={bits} reported as {max}"));
                    }
                    m.phys_bits = bits.min(max);
                }
                "tsc-frequency" => {
                    let v = need()?;
                    m.tsc_hz = v
                        .parse::<u64>()
                        .ok()
                        .filter(|hz| (1_000_000..=100_000_000_000).contains(hz))
                        .ok_or_else(|| CpuModelError::BadValue { prop: k.into(), value: v.into(), why: "the TSC frequency is in Hz, from 1 MHz to 100 GHz" })?;
                    m.tsc_hz_explicit = true;
                }
                k if NO_EFFECT.contains(&k) => {
                    flag_or_value(k, v)?;
                }
                k if k.starts_with("hv-") || k.starts_with("hv_") => {
                    warnings.push(format!("TCG doesn't support Hyper-V enlightenment '{k}'; ignored"));
                }
                _ => {
                    let f = known(k)?;
                    if flag(k)? {
                        requested.insert(f);
                    } else {
                        requested.remove(&f);
                    }
                }
            }
        }
        requested.extend(plus);
        for f in minus {
            requested.remove(&f);
        }
        m.enabled = 0;
        let mut dropped = Vec::new();
        for f in &requested {
            if Self::provides(f) {
                m.set_feature(f, true)?;
            }
        }
        for name in names::all_in_table_order() {
            if !requested.contains(name) || Self::provides(name) {
                continue;
            }
            let loc = names::locate(name).expect("listed names are located");
            if loc == names::Location::Kvm {
                continue; // KVM's paravirtual leaf does not exist without KVM (QEMU: silent).
            }
            dropped.push(match names::bit(loc) {
                Some(b) => format!("{loc}.{name} [bit {b}]"),
                None => format!("{loc}.{name}"),
            });
        }
        if enforce && !dropped.is_empty() {
            return Err(CpuModelError::Enforce(dropped));
        }
        if check {
            warnings.extend(dropped.iter().map(|d| format!("TCG doesn't support requested feature: {d}")));
        }
        // QEMU's automatic level: leaf 7 and 0xD exist when a feature needs them.
        if !level_set {
            if m.bits(7, super::R::Ebx) | m.bits(7, super::R::Ecx) != 0 {
                m.max_basic_leaf = m.max_basic_leaf.max(7);
            }
            if m.has("xsave") {
                m.max_basic_leaf = m.max_basic_leaf.max(0xd);
            }
        }
        Ok(CpuSpec { model: m, warnings })
    }
}

/// A property with no effect still has to be well-formed (`pmu=off`, `tsc-frequency=N`).
fn flag_or_value(k: &str, v: Option<&str>) -> Result<(), CpuModelError> {
    match v {
        None | Some("on" | "off" | "true" | "false" | "yes" | "no") => Ok(()),
        Some(v) if v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') => Ok(()),
        Some(v) => Err(CpuModelError::BadValue { prop: k.into(), value: v.into(), why: "unexpected value" }),
    }
}

/// The canonical name of a feature QEMU knows, or the error for one it does not.
fn known(name: &str) -> Result<String, CpuModelError> {
    let c = names::canonical(name);
    if names::locate(&c).is_some() {
        Ok(c)
    } else {
        Err(CpuModelError::UnknownFeature(name.into()))
    }
}

/// `-cpu help`: the models, the recognised feature names, and which of them ferrite provides.
pub fn help() -> String {
    let mut s = String::from("Available CPUs:\n");
    for m in models::MODELS {
        s += &format!("x86 {:<22} {}\n", m.name, m.model_id);
    }
    s += &format!("x86 {:<22} {}\n", "host", "KVM: the host's CPU as KVM supports it; TCG: same as max");
    s += &format!("x86 {:<22} {}\n", "max", "Enables all features ferrite's TCG supports");
    s += "\nRecognized CPUID flags:\n";
    s += &wrap(names::all());
    s += "\nProvided by ferrite's TCG (others are dropped with a warning, or refused with enforce):\n";
    s += &wrap(FEATURES.iter().map(|f| f.names[0]).collect());
    s
}

fn wrap(mut words: Vec<&str>) -> String {
    words.sort_unstable();
    let mut out = String::new();
    let mut line = String::from(" ");
    for w in words {
        if line.len() + 1 + w.len() > 76 {
            out += &line;
            out.push('\n');
            line = String::from(" ");
        }
        line.push(' ');
        line += w;
    }
    out + &line + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::Topology;
    use crate::state::CpuState;

    fn leaf(m: &CpuModel, l: u32) -> [u32; 4] {
        m.cpuid(l, 0, 0, Topology::default(), &CpuState::reset())
    }

    fn text(m: &CpuModel, leaves: &[u32], regs: &[usize]) -> String {
        let mut b = Vec::new();
        for &l in leaves {
            let r = leaf(m, l);
            for &i in regs {
                b.extend_from_slice(&r[i].to_le_bytes());
            }
        }
        String::from_utf8_lossy(&b).trim_end_matches('\0').to_string()
    }

    #[test]
    fn haswell_as_qemu_tcg_warns() {
        let s = CpuModel::parse_spec("Haswell").unwrap();
        let m = &s.model;
        assert_eq!(text(m, &[0], &[1, 3, 2]), "GenuineIntel");
        assert_eq!(text(m, &[0x8000_0002, 0x8000_0003, 0x8000_0004], &[0, 1, 2, 3]), "Intel Core Processor (Haswell)");
        assert_eq!(leaf(m, 1)[0], 0x306c4, "family 6 model 60 stepping 4");
        assert_eq!(leaf(m, 0)[0], 0xd);
        assert_eq!(leaf(m, 0x8000_0000)[0], 0x8000_0008);
        assert!(s.warnings.contains(&"TCG doesn't support requested feature: CPUID.07H:EBX.hle [bit 4]".to_string()), "{:?}", s.warnings);
        assert!(s.warnings.contains(&"TCG doesn't support requested feature: CPUID.07H:EBX.rtm [bit 11]".to_string()));
        // Warnings come in CPUID word order, as QEMU prints them.
        assert!(s.warnings[0].contains("hle"), "{:?}", s.warnings);
        assert!(m.has("sse4.2") && m.has("fsgsbase") && m.has("avx2") && m.has("fma") && m.has("pcid"));
        assert_eq!(leaf(m, 7)[1] & (1 << 4 | 1 << 10 | 1 << 5), 1 << 10 | 1 << 5, "HLE dropped, INVPCID and AVX2 kept");
        assert!(CpuModel::parse_spec("Haswell,check=off").unwrap().warnings.is_empty());
        assert!(CpuModel::parse_spec("Haswell,-check").unwrap().warnings.is_empty());
        let e = CpuModel::parse("Haswell,enforce").unwrap_err();
        assert!(matches!(&e, CpuModelError::Enforce(v) if v.iter().any(|d| d == "CPUID.07H:EBX.rtm [bit 11]")), "{e}");
        assert!(CpuModel::parse("Nehalem,enforce").is_ok(), "Nehalem needs nothing ferrite lacks");
    }

    #[test]
    fn every_named_model_builds() {
        for d in models::MODELS {
            let m = CpuModel::parse(d.name).unwrap();
            assert_eq!(&m.vendor, d.vendor);
            assert_eq!(m.brand, d.model_id);
            assert!(m.has("fpu") && m.has("hypervisor"), "{}", d.name);
            assert_eq!(leaf(&m, 0x8000_0000)[0], d.xlevel.max(if m.has("topoext") { 0x8000_001e } else { 0 }));
        }
    }

    #[test]
    fn amd_models() {
        let m = CpuModel::parse("EPYC-Rome").unwrap();
        assert_eq!(text(&m, &[0], &[1, 3, 2]), "AuthenticAMD");
        // Family 23 = 0xF + 8 (extended family), model 49 = 0x31.
        assert_eq!(leaf(&m, 1)[0], 0x0083_0f10);
        assert_ne!(leaf(&m, 0x8000_0001)[2] & (1 << 22), 0, "topoext");
        let q = CpuModel::qemu64();
        assert!(q.is_amd());
        assert_eq!(leaf(&q, 1)[0], 0x0006_0fb1, "family 15 model 107 stepping 1");
        // AMD mirrors leaf 1 EDX (FPU, CMOV...) in 0x80000001 EDX.
        assert_eq!(leaf(&q, 0x8000_0001)[3] & 1, 1);
        assert!(!q.has("popcnt") && q.has("cx16") && q.has("lahf_lm"));
        assert_eq!(leaf(&q, 0x8000_0000)[0], 0x8000_000a);
        assert_eq!(text(&q, &[0x8000_0002, 0x8000_0003, 0x8000_0004], &[0, 1, 2, 3]), "QEMU Virtual CPU version 2.5+");
    }

    #[test]
    fn properties() {
        let m = CpuModel::parse("qemu64,vendor=GenuineIntel,family=6,model=0x55,stepping=7,model-id=My,,CPU,level=0x16,xlevel=0x80000008,phys-bits=36,+popcnt,-nx").unwrap();
        assert_eq!(text(&m, &[0], &[1, 3, 2]), "GenuineIntel");
        assert_eq!(leaf(&m, 1)[0], 0x50657);
        assert_eq!(m.brand, "My,CPU");
        assert_eq!(leaf(&m, 0)[0], 0x16);
        assert_eq!(leaf(&m, 0x8000_0008)[0] & 0xff, 36);
        assert!(m.has("popcnt") && !m.has("nx"));
        // -feat wins over +feat whatever the order; feat=on|off applies first.
        assert!(!CpuModel::parse("max,-popcnt,+popcnt").unwrap().has("popcnt"));
        assert!(CpuModel::parse("qemu64,popcnt=on").unwrap().has("popcnt"));
        assert!(!CpuModel::parse("max,popcnt=off").unwrap().has("popcnt"));
        assert!(CpuModel::parse("qemu64,sse4_2,sse4-1").unwrap().has("sse4.1"));
        // Leaf 7 exists once a leaf-7 feature is asked for.
        assert_eq!(leaf(&CpuModel::parse("kvm32,+smep").unwrap(), 0)[0], 7);
        for ok in ["max,pmu=off,migratable=on,host-phys-bits", "max,host-phys-bits=on,l3-cache=off", "Haswell-v1", "max,kvm=off"] {
            assert!(CpuModel::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["max,vendor=Intel", "max,family=x", "max,stepping=16", "max,phys-bits=20", "max,bogus", "max,+bogus", "max,popcnt=maybe", "Pentium9"] {
            assert!(CpuModel::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CpuModel::parse("pentium"), Err(CpuModelError::UnknownModel("pentium".into())));
        let s = CpuModel::parse_spec("qemu64,+vmx,+avx512f,+kvmclock,hv-relaxed,+vmx-ept").unwrap();
        assert!(s.warnings.iter().any(|w| w.ends_with("CPUID.01H:ECX.vmx [bit 5]")), "{:?}", s.warnings);
        assert!(s.warnings.iter().any(|w| w.ends_with("CPUID.07H:EBX.avx512f [bit 16]")));
        assert!(s.warnings.iter().any(|w| w.contains("hv-relaxed")));
        assert!(s.warnings.iter().any(|w| w.contains("vmx-ept")));
        assert!(!s.warnings.iter().any(|w| w.contains("kvmclock")), "KVM leaves are silent");
    }

    #[test]
    fn help_lists_models_and_flags() {
        let h = help();
        for n in ["qemu64", "Skylake-Server", "EPYC-Milan", "Opteron_G5", "max", "avx512vl", "vmx-ept"] {
            assert!(h.contains(n), "{n}");
        }
    }
}
