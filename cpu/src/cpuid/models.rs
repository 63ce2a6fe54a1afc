//! The named CPU models QEMU 7.2 offers (the `-v1` version each unversioned name means on the
//! `pc` machine): vendor, signature, CPUID range, model-id string and feature set. Feature sets
//! follow the processors' documented CPUID bits as QEMU exposes them; features ferrite cannot
//! provide are dropped when the model is built (with a warning), as QEMU's TCG does.

/// A model as a table row. `features` are groups of space-separated QEMU feature names.
pub struct ModelDef {
    pub name: &'static str,
    pub vendor: &'static [u8; 12],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    /// Highest basic leaf (QEMU's `level`) and extended leaf (`xlevel`).
    pub level: u32,
    pub xlevel: u32,
    pub model_id: &'static str,
    pub features: &'static [&'static str],
}

const INTEL: &[u8; 12] = b"GenuineIntel";
const AMD: &[u8; 12] = b"AuthenticAMD";

/// The Pentium Pro's leaf-1 EDX (QEMU's PPRO_FEATURES).
const PPRO: &str = "fpu de pse tsc msr pae mce cx8 apic sep pge cmov pat fxsr mmx sse sse2";
/// What every later model adds to it in leaf 1 EDX.
const P6: &str = "mtrr clflush mca pse36";
/// Nehalem's leaf-1 ECX, the base of the later Intel cores.
const NEHALEM_ECX: &str = "pni cx16 ssse3 sse4.1 sse4.2 popcnt";
const SANDY_ECX: &str = "pclmulqdq x2apic tsc-deadline aes xsave avx";
const HASWELL_7: &str = "fsgsbase bmi1 hle avx2 smep bmi2 erms invpcid rtm";
const SKYLAKE_SERVER_7: &str = "mpx clwb avx512f avx512dq rdseed adx smap clflushopt avx512cd avx512bw avx512vl";
const LONG_MODE: &str = "lm syscall nx";
const XSAVE_SKL: &str = "xsaveopt xsavec xgetbv1";
const EPYC_BASE: &str = "pni pclmulqdq ssse3 fma cx16 sse4.1 sse4.2 movbe popcnt aes xsave avx f16c rdrand \
    lm syscall nx rdtscp pdpe1gb fxsr-opt mmxext \
    lahf-lm svm cr8legacy abm sse4a misalignsse 3dnowprefetch osvw topoext \
    fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap clflushopt sha-ni xsaveopt xsavec xgetbv1 arat npt nrip-save";
const OPTERON_G4: &str = "pni pclmulqdq ssse3 cx16 sse4.1 sse4.2 popcnt aes xsave avx \
    lm syscall nx rdtscp pdpe1gb lahf-lm svm abm sse4a misalignsse 3dnowprefetch xop fma4";

macro_rules! m {
    ($name:literal, $vendor:ident, $fam:literal/$model:literal/$step:literal, $level:literal, $xlevel:literal,
     $id:literal, [$($f:expr),* $(,)?]) => {
        ModelDef {
            name: $name,
            vendor: $vendor,
            family: $fam,
            model: $model,
            stepping: $step,
            level: $level,
            xlevel: $xlevel,
            model_id: $id,
            features: &[$($f),*],
        }
    };
}

pub const MODELS: &[ModelDef] = &[
    m!("qemu64", AMD, 15/107/1, 0xd, 0x8000_000a, "QEMU Virtual CPU version 2.5+",
        [PPRO, P6, "pni cx16", LONG_MODE, "lahf-lm svm"]),
    m!("qemu32", INTEL, 6/6/3, 4, 0x8000_0004, "QEMU Virtual CPU version 2.5+", [PPRO, "pni"]),
    m!("kvm64", INTEL, 15/6/1, 0xd, 0x8000_0008, "Common KVM processor", [PPRO, P6, "pni cx16", LONG_MODE]),
    m!("kvm32", INTEL, 15/6/1, 5, 0x8000_0008, "Common 32-bit KVM processor", [PPRO, P6, "pni"]),
    m!("Nehalem", INTEL, 6/26/3, 0xb, 0x8000_0008, "Intel Core i7 9xx (Nehalem Class Core i7)",
        [PPRO, P6, NEHALEM_ECX, LONG_MODE, "lahf-lm"]),
    m!("Westmere", INTEL, 6/44/1, 0xb, 0x8000_0008, "Westmere E56xx/L56xx/X56xx (Nehalem-C)",
        [PPRO, P6, NEHALEM_ECX, "pclmulqdq aes", LONG_MODE, "rdtscp lahf-lm arat"]),
    m!("SandyBridge", INTEL, 6/42/1, 0xd, 0x8000_0008, "Intel Xeon E312xx (Sandy Bridge)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, LONG_MODE, "rdtscp lahf-lm xsaveopt arat"]),
    m!("IvyBridge", INTEL, 6/58/9, 0xd, 0x8000_0008, "Intel Xeon E3-12xx v2 (Ivy Bridge)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand", LONG_MODE, "rdtscp lahf-lm",
         "fsgsbase smep erms xsaveopt arat"]),
    m!("Haswell", INTEL, 6/60/4, 0xd, 0x8000_0008, "Intel Core Processor (Haswell)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE, "rdtscp lahf-lm abm",
         HASWELL_7, "xsaveopt arat"]),
    m!("Broadwell", INTEL, 6/61/2, 0xd, 0x8000_0008, "Intel Core Processor (Broadwell)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE,
         "rdtscp lahf-lm abm 3dnowprefetch", HASWELL_7, "rdseed adx smap xsaveopt arat"]),
    m!("Skylake-Client", INTEL, 6/94/3, 0xd, 0x8000_0008, "Intel Core Processor (Skylake)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE,
         "rdtscp lahf-lm abm 3dnowprefetch", HASWELL_7, "mpx rdseed adx smap", XSAVE_SKL, "arat"]),
    m!("Skylake-Server", INTEL, 6/85/4, 0xd, 0x8000_0008, "Intel Xeon Processor (Skylake)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE,
         "rdtscp pdpe1gb lahf-lm abm 3dnowprefetch", HASWELL_7, SKYLAKE_SERVER_7, "pku", XSAVE_SKL, "arat"]),
    m!("Cascadelake-Server", INTEL, 6/85/6, 0xd, 0x8000_0008, "Intel Xeon Processor (Cascadelake)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE,
         "rdtscp pdpe1gb lahf-lm abm 3dnowprefetch", HASWELL_7, SKYLAKE_SERVER_7, "pku avx512vnni",
         "spec-ctrl ssbd", XSAVE_SKL, "arat"]),
    m!("Icelake-Server", INTEL, 6/134/0, 0xd, 0x8000_0008, "Intel Xeon Processor (Icelake)",
        [PPRO, P6, NEHALEM_ECX, SANDY_ECX, "f16c rdrand fma pcid movbe", LONG_MODE,
         "rdtscp pdpe1gb lahf-lm abm 3dnowprefetch", HASWELL_7, SKYLAKE_SERVER_7,
         "avx512vbmi umip pku avx512vbmi2 gfni vaes vpclmulqdq avx512vnni avx512bitalg avx512-vpopcntdq la57",
         "spec-ctrl ssbd wbnoinvd", XSAVE_SKL, "arat"]),
    m!("EPYC", AMD, 23/1/2, 0xd, 0x8000_001e, "AMD EPYC Processor", [PPRO, P6, EPYC_BASE]),
    m!("EPYC-Rome", AMD, 23/49/0, 0xd, 0x8000_001e, "AMD EPYC-Rome Processor",
        [PPRO, P6, EPYC_BASE, "clwb umip rdpid perfctr-core clzero xsaveerptr wbnoinvd ibpb amd-stibp"]),
    m!("EPYC-Milan", AMD, 25/1/1, 0xd, 0x8000_001e, "AMD EPYC-Milan Processor",
        [PPRO, P6, EPYC_BASE, "pcid erms invpcid clwb umip pku rdpid fsrm perfctr-core",
         "clzero xsaveerptr wbnoinvd ibpb ibrs amd-stibp amd-ssbd"]),
    m!("Opteron_G1", AMD, 15/6/1, 5, 0x8000_0008, "AMD Opteron 240 (Gen 1 Class Opteron)",
        [PPRO, P6, "pni", LONG_MODE]),
    m!("Opteron_G2", AMD, 15/6/1, 5, 0x8000_0008, "AMD Opteron 22xx (Gen 2 Class Opteron)",
        [PPRO, P6, "pni cx16", LONG_MODE, "lahf-lm svm"]),
    m!("Opteron_G3", AMD, 16/2/3, 5, 0x8000_0008, "AMD Opteron 23xx (Gen 3 Class Opteron)",
        [PPRO, P6, "pni cx16 monitor popcnt", LONG_MODE, "rdtscp lahf-lm svm abm sse4a misalignsse"]),
    m!("Opteron_G4", AMD, 21/1/2, 0xd, 0x8000_001a, "AMD Opteron 62xx class CPU", [PPRO, P6, OPTERON_G4]),
    m!("Opteron_G5", AMD, 21/2/0, 0xd, 0x8000_001a, "AMD Opteron 63xx class CPU",
        [PPRO, P6, OPTERON_G4, "fma f16c tbm"]),
];

/// The model called `name`, accepting QEMU's `-v1` suffix for the versions ferrite models.
pub fn find(name: &str) -> Option<&'static ModelDef> {
    let base = name.strip_suffix("-v1").unwrap_or(name);
    MODELS.iter().find(|m| m.name == base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::names;

    #[test]
    fn every_feature_name_is_one_qemu_knows() {
        for m in MODELS {
            for f in m.features.iter().flat_map(|g| g.split_whitespace()) {
                assert!(names::locate(f).is_some(), "{}: {f}", m.name);
            }
            assert!(m.model_id.len() <= 48, "{}", m.name);
        }
    }

    #[test]
    fn versions() {
        assert_eq!(find("Haswell-v1").map(|m| m.model), Some(60));
        assert!(find("Haswell-v9").is_none());
    }
}
