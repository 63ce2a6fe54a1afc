//! CPU models and the CPUID instruction's answers. A model is a vendor/family/model and a set
//! of feature bits; CPUID reports exactly that set, and the interpreter raises #UD for
//! instructions whose feature is not in it (so `-cpu qemu64,-popcnt` behaves like a CPU
//! without POPCNT).

use crate::state::{cr4, CpuState};
use iced_x86::{CpuidFeature, Instruction};

mod models;
mod names;
mod spec;
mod topology;
pub use spec::{help, CpuModelError, CpuSpec};
pub use topology::Topology;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum R {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// One CPUID feature bit and the names QEMU's `-cpu` option knows it by.
struct Feature {
    names: &'static [&'static str],
    leaf: u32,
    reg: R,
    bit: u8,
    /// The iced-x86 feature gating instructions, if any.
    iced: Option<CpuidFeature>,
}

macro_rules! f {
    ([$($n:literal),+], $leaf:literal, $reg:ident, $bit:literal, $iced:expr) => {
        Feature { names: &[$($n),+], leaf: $leaf, reg: R::$reg, bit: $bit, iced: $iced }
    };
}

use CpuidFeature as C;

/// Every feature bit ferrite can implement, by QEMU's name (see `names` for the spellings QEMU
/// also accepts). Leaf 7 is sub-leaf 0.
const FEATURES: &[Feature] = &[
    f!(["fpu"], 1, Edx, 0, Some(C::FPU)),
    f!(["vme"], 1, Edx, 1, None),
    f!(["de"], 1, Edx, 2, None),
    f!(["pse"], 1, Edx, 3, None),
    f!(["tsc"], 1, Edx, 4, Some(C::TSC)),
    f!(["msr"], 1, Edx, 5, Some(C::MSR)),
    f!(["pae"], 1, Edx, 6, None),
    f!(["mce"], 1, Edx, 7, None),
    f!(["cx8"], 1, Edx, 8, Some(C::CX8)),
    f!(["apic"], 1, Edx, 9, None),
    f!(["sep"], 1, Edx, 11, Some(C::SEP)),
    f!(["mtrr"], 1, Edx, 12, None),
    f!(["pge"], 1, Edx, 13, None),
    f!(["mca"], 1, Edx, 14, None),
    f!(["cmov"], 1, Edx, 15, Some(C::CMOV)),
    f!(["pat"], 1, Edx, 16, None),
    f!(["pse36"], 1, Edx, 17, None),
    f!(["clflush"], 1, Edx, 19, Some(C::CLFSH)),
    f!(["mmx"], 1, Edx, 23, Some(C::MMX)),
    f!(["fxsr"], 1, Edx, 24, Some(C::FXSR)),
    f!(["sse"], 1, Edx, 25, Some(C::SSE)),
    f!(["sse2"], 1, Edx, 26, Some(C::SSE2)),
    f!(["pni"], 1, Ecx, 0, Some(C::SSE3)),
    f!(["pclmulqdq"], 1, Ecx, 1, Some(C::PCLMULQDQ)),
    f!(["ssse3"], 1, Ecx, 9, Some(C::SSSE3)),
    f!(["pcid"], 1, Ecx, 17, None),
    f!(["fma"], 1, Ecx, 12, Some(C::FMA)),
    f!(["cx16"], 1, Ecx, 13, Some(C::CMPXCHG16B)),
    f!(["movbe"], 1, Ecx, 22, Some(C::MOVBE)),
    f!(["sse4.1"], 1, Ecx, 19, Some(C::SSE4_1)),
    f!(["sse4.2"], 1, Ecx, 20, Some(C::SSE4_2)),
    f!(["x2apic"], 1, Ecx, 21, None),
    f!(["popcnt"], 1, Ecx, 23, Some(C::POPCNT)),
    f!(["tsc-deadline"], 1, Ecx, 24, None),
    f!(["aes"], 1, Ecx, 25, Some(C::AES)),
    f!(["xsave"], 1, Ecx, 26, Some(C::XSAVE)),
    f!(["avx"], 1, Ecx, 28, Some(C::AVX)),
    f!(["f16c"], 1, Ecx, 29, Some(C::F16C)),
    f!(["rdrand"], 1, Ecx, 30, Some(C::RDRAND)),
    f!(["hypervisor"], 1, Ecx, 31, None),
    f!(["arat"], 6, Eax, 2, None),
    // Leaf 0DH sub-leaf 1.
    f!(["xsaveopt"], 0xd, Eax, 0, Some(C::XSAVEOPT)),
    f!(["xsavec"], 0xd, Eax, 1, Some(C::XSAVEC)),
    f!(["xgetbv1"], 0xd, Eax, 2, None),
    f!(["xsaves"], 0xd, Eax, 3, Some(C::XSAVES)),
    f!(["fsgsbase"], 7, Ebx, 0, Some(C::FSGSBASE)),
    f!(["tsc-adjust"], 7, Ebx, 1, None),
    f!(["bmi1"], 7, Ebx, 3, Some(C::BMI1)),
    f!(["avx2"], 7, Ebx, 5, Some(C::AVX2)),
    f!(["smep"], 7, Ebx, 7, None),
    f!(["bmi2"], 7, Ebx, 8, Some(C::BMI2)),
    f!(["erms"], 7, Ebx, 9, None),
    f!(["invpcid"], 7, Ebx, 10, Some(C::INVPCID)),
    f!(["rdseed"], 7, Ebx, 18, Some(C::RDSEED)),
    f!(["adx"], 7, Ebx, 19, Some(C::ADX)),
    f!(["smap"], 7, Ebx, 20, Some(C::SMAP)),
    f!(["clflushopt"], 7, Ebx, 23, Some(C::CLFLUSHOPT)),
    f!(["clwb"], 7, Ebx, 24, Some(C::CLWB)),
    f!(["sha-ni"], 7, Ebx, 29, Some(C::SHA)),
    f!(["umip"], 7, Ecx, 2, None),
    // OSPKE (bit 4) mirrors CR4.PKE.
    f!(["pku"], 7, Ecx, 3, Some(C::PKU)),
    f!(["rdpid"], 7, Ecx, 22, Some(C::RDPID)),
    // IA32_ARCH_CAPABILITIES exists (see `msr::ARCH_CAPABILITIES_VALUE`).
    f!(["arch-capabilities"], 7, Edx, 29, None),
    f!(["syscall"], 0x8000_0001, Edx, 11, Some(C::SYSCALL)),
    f!(["nx"], 0x8000_0001, Edx, 20, None),
    f!(["pdpe1gb"], 0x8000_0001, Edx, 26, None),
    f!(["rdtscp"], 0x8000_0001, Edx, 27, Some(C::RDTSCP)),
    f!(["lm"], 0x8000_0001, Edx, 29, Some(C::X64)),
    f!(["lahf-lm"], 0x8000_0001, Ecx, 0, None),
    f!(["abm"], 0x8000_0001, Ecx, 5, Some(C::LZCNT)),
    f!(["3dnowprefetch"], 0x8000_0001, Ecx, 8, Some(C::PREFETCHW)),
    // AMD topology extensions (leaves 0x8000001D/E), answered only for AMD vendors.
    f!(["topoext"], 0x8000_0001, Ecx, 22, None),
    f!(["invtsc"], 0x8000_0007, Edx, 8, None),
];

/// iced features every x86-64 CPU ferrite models has, with no CPUID bit of their own.
fn baseline(f: CpuidFeature) -> bool {
    matches!(
        f,
        C::INTEL8086
            | C::INTEL8086_ONLY
            | C::INTEL186
            | C::INTEL286
            | C::INTEL386
            | C::INTEL486
            | C::CPUID
            // RDPMC has no CPUID bit (it exists on every P6 and later processor).
            | C::RDPMC
            | C::MULTIBYTENOP
            | C::PAUSE
            | C::FPU287
            | C::FPU387
    )
}

/// Instructions in the hint-NOP space execute as NOPs on CPUs without their feature:
/// ENDBR32/64 and RDSSPD/Q without CET (compilers emit them unconditionally: glibc, busybox),
/// the newer prefetch hints and CLDEMOTE, and PREFETCH/PREFETCHW (0F 0D): the Intel SDM lists
/// no #UD for PREFETCHW but LOCK, and AMD's APM has them on every CPU with long mode, which
/// is why Linux uses PREFETCHW on any 64-bit AMD CPU (QEMU's qemu64 model among them)
/// whatever CPUID.80000001H:ECX.3DNowPrefetch says.
fn hint_nop_without_cet(f: CpuidFeature, insn: &Instruction) -> bool {
    use iced_x86::Mnemonic as M;
    matches!(f, C::CET_IBT | C::CET_SS | C::PREFETCHWT1 | C::PREFETCHITI | C::CLDEMOTE | C::PREFETCHW)
        && matches!(
            insn.mnemonic(),
            M::Endbr32
                | M::Endbr64
                | M::Rdsspd
                | M::Rdsspq
                | M::Prefetchwt1
                | M::Prefetchit0
                | M::Prefetchit1
                | M::Cldemote
                | M::Prefetch
                | M::Prefetchw
        )
}

/// A CPU model: what CPUID says and which instructions exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuModel {
    pub name: String,
    pub vendor: [u8; 12],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    /// The model-id string (leaves 0x80000002-4).
    pub brand: String,
    /// Highest basic CPUID leaf (QEMU's `level`).
    pub max_basic_leaf: u32,
    /// Highest extended CPUID leaf (QEMU's `xlevel`).
    pub max_ext_leaf: u32,
    /// Physical address bits reported in CPUID.80000008H:EAX[7:0].
    pub phys_bits: u32,
    /// The time-stamp counter's rate (QEMU's `tsc-frequency`): 1 GHz unless set. KVM runs the
    /// TSC at the host's rate, which a snapshot carries to whatever runs the machine next.
    pub tsc_hz: u64,
    /// `tsc-frequency` was given: KVM must run the TSC at exactly this rate.
    pub tsc_hz_explicit: bool,
    /// Bit i set: `FEATURES[i]` present.
    enabled: u128,
}

impl Default for CpuModel {
    fn default() -> Self {
        Self::max()
    }
}

impl CpuModel {
    /// A model with no features: the caller sets them.
    fn bare(name: &str, vendor: [u8; 12], (family, model, stepping): (u32, u32, u32), brand: &str) -> Self {
        CpuModel {
            name: name.into(),
            vendor,
            family,
            model,
            stepping,
            brand: brand.into(),
            max_basic_leaf: 0x16,
            max_ext_leaf: 0x8000_0008,
            phys_bits: crate::mmu::MAX_PHYS_BITS,
            tsc_hz: crate::msr::TSC_HZ,
            tsc_hz_explicit: false,
            enabled: 0,
        }
    }

    /// Everything ferrite implements: an x86-64-v3 CPU (AVX2, FMA, F16C, BMI1/2, MOVBE,
    /// LZCNT) with AES-NI, PCLMULQDQ, SHA, ADX, RDRAND/RDSEED, without AVX-512.
    pub fn max() -> Self {
        let mut m = Self::bare("max", *b"GenuineIntel", (6, 0x3a, 9), "ferrite x86-64-v3 CPU");
        m.enabled = (1u128 << FEATURES.len()) - 1;
        m
    }

    /// QEMU's `qemu64` (the default model of `qemu-system-x86_64`).
    pub fn qemu64() -> Self {
        Self::parse("qemu64").expect("qemu64 is a built-in model")
    }

    /// Whether ferrite implements the feature QEMU calls `name` (canonical spelling).
    fn provides(name: &str) -> bool {
        FEATURES.iter().any(|f| f.names.contains(&name))
    }

    /// Turns a feature ferrite provides on or off; QEMU's other spellings are accepted.
    pub fn set_feature(&mut self, name: &str, on: bool) -> Result<(), CpuModelError> {
        let name = names::canonical(name);
        let i = FEATURES
            .iter()
            .position(|f| f.names.contains(&name.as_str()))
            .ok_or(CpuModelError::UnknownFeature(name))?;
        if on {
            self.enabled |= 1u128 << i;
        } else {
            self.enabled &= !(1u128 << i);
        }
        Ok(())
    }

    /// Turns off every feature `keep(leaf, register, bit)` refuses (register 0-3: EAX-EDX),
    /// narrowing the model to what an accelerator can run; returns the names turned off.
    pub fn retain_features(&mut self, keep: impl Fn(u32, usize, u8) -> bool) -> Vec<&'static str> {
        let mut dropped = Vec::new();
        for (i, f) in FEATURES.iter().enumerate() {
            if self.enabled & (1 << i) != 0 && !keep(f.leaf, f.reg as usize, f.bit) {
                self.enabled &= !(1 << i);
                dropped.push(f.names[0]);
            }
        }
        dropped
    }

    pub fn has(&self, name: &str) -> bool {
        let name = names::canonical(name);
        FEATURES.iter().position(|f| f.names.contains(&name.as_str())).is_some_and(|i| self.enabled & (1u128 << i) != 0)
    }

    /// AMD processors differ in a few system instructions (SYSCALL/SYSRET outside 64-bit
    /// mode, no SYSENTER/SYSEXIT in long mode).
    pub fn is_amd(&self) -> bool {
        &self.vendor == b"AuthenticAMD"
    }

    pub fn has_smap(&self) -> bool {
        self.has("smap")
    }

    /// Whether every CPUID feature the instruction needs is present in this model.
    pub fn allows(&self, insn: &Instruction) -> bool {
        insn.cpuid_features().iter().all(|&need| {
            baseline(need)
                || hint_nop_without_cet(need, insn)
                || FEATURES
                    .iter()
                    .enumerate()
                    .any(|(i, f)| f.iced == Some(need) && self.enabled & (1u128 << i) != 0)
        })
    }

    /// Processor signature (CPUID.1:EAX, and EDX after reset).
    pub fn signature(&self) -> u32 {
        let (fam, ext_fam) = if self.family > 15 { (15, self.family - 15) } else { (self.family, 0) };
        (ext_fam << 20) | ((self.model >> 4) << 16) | (fam << 8) | ((self.model & 0xf) << 4) | self.stepping
    }

    /// The model's feature words as CPUID leaves 1 (ECX, EDX), 7 (EBX, ECX, EDX) and
    /// 80000001H (ECX, EDX) define them, without the bits that mirror state (OSXSAVE,
    /// OSPKE): snapshots compare them to refuse a state saved under another model.
    pub fn feature_words(&self) -> [u32; 7] {
        [
            self.bits(1, R::Ecx),
            self.bits(1, R::Edx),
            self.bits(7, R::Ebx),
            self.bits(7, R::Ecx),
            self.bits(7, R::Edx),
            self.bits(0x8000_0001, R::Ecx),
            self.bits(0x8000_0001, R::Edx),
        ]
    }

    fn bits(&self, leaf: u32, reg: R) -> u32 {
        FEATURES
            .iter()
            .enumerate()
            .filter(|(i, f)| f.leaf == leaf && f.reg == reg && self.enabled & (1u128 << i) != 0)
            .fold(0, |acc, (_, f)| acc | 1 << f.bit)
    }

    fn brand_chunk(&self, i: usize) -> [u32; 4] {
        let mut bytes = [0u8; 48];
        let b = self.brand.as_bytes();
        bytes[..b.len().min(47)].copy_from_slice(&b[..b.len().min(47)]);
        let mut out = [0u32; 4];
        for (j, o) in out.iter_mut().enumerate() {
            let k = i * 16 + j * 4;
            *o = u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
        }
        out
    }

    /// CPUID(leaf, subleaf) → [EAX, EBX, ECX, EDX] for the processor with initial APIC ID
    /// `apic_id` in a machine of topology `topo`, in the given architectural state (OSXSAVE
    /// mirrors CR4).
    pub fn cpuid(&self, leaf: u32, subleaf: u32, apic_id: u32, topo: Topology, st: &CpuState) -> [u32; 4] {
        let max_basic = self.max_basic_leaf;
        let topoext = self.is_amd() && self.has("topoext");
        // The topology extensions need the range to reach 0x8000001E (QEMU raises xlevel too).
        let max_ext = if topoext { self.max_ext_leaf.max(0x8000_001e) } else { self.max_ext_leaf };
        // Leaves beyond either range answer as the highest basic leaf does (Intel's rule,
        // which QEMU applies to every vendor).
        let beyond = if leaf >= 0x8000_0000 { leaf > max_ext } else { leaf > max_basic };
        if beyond && (0xc000_0000..=0xcfff_ffff).contains(&leaf) {
            return [0; 4];
        }
        if beyond && leaf != max_basic {
            return self.cpuid(max_basic, subleaf, apic_id, topo, st);
        }
        let v = &self.vendor;
        let word = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        match leaf {
            0 => [max_basic, word(0), word(8), word(4)],
            1 => {
                let mut ecx = self.bits(1, R::Ecx);
                if st.cr4 & cr4::OSXSAVE != 0 && self.has("xsave") {
                    ecx |= 1 << 27;
                }
                let mut edx = self.bits(1, R::Edx);
                let per_package = topo.addressable_per_package();
                if per_package > 1 {
                    edx |= 1 << 28; // HTT: the package field below is meaningful
                }
                // EBX: initial APIC ID, addressable logical processor IDs per package, CLFLUSH
                // line size in 8-byte units.
                let ebx = (apic_id << 24) | (per_package.min(255) << 16) | (8 << 8);
                [self.signature(), ebx, ecx, edx]
            }
            // Leaf 2: no descriptor information (the 0xFF-less "null" answer).
            2 => [1, 0, 0, 0],
            // Leaf 6: thermal and power: APIC timer always running (ARAT).
            6 => [self.bits(6, R::Eax), 0, 0, 0],
            7 if subleaf == 0 => {
                let mut ecx = self.bits(7, R::Ecx);
                if st.cr4 & cr4::PKE != 0 && self.has("pku") {
                    ecx |= 1 << 4;
                }
                [0, self.bits(7, R::Ebx), ecx, self.bits(7, R::Edx)]
            }
            4 => topo.cache_leaf(subleaf, false),
            // V2 extended topology (0x1F) says the same as 0xB while there are no dies or
            // modules; it exists only in models whose basic range reaches it.
            0xb => topo.extended_leaf(subleaf, apic_id),
            0x1f if max_basic >= 0x1f => topo.extended_leaf(subleaf, apic_id),
            0xd if self.has("xsave") => {
                crate::xstate::cpuid_leaf(self, subleaf, st.xcr0, st.msr.xss, self.bits(0xd, R::Eax))
            }
            0x8000_0000 => [max_ext, word(0), word(8), word(4)],
            0x8000_0001 => {
                let mut edx = self.bits(0x8000_0001, R::Edx);
                // Intel: SYSCALL/SYSRET exist only in 64-bit mode, and the flag reads 0 elsewhere.
                if !self.is_amd() && !st.in_64bit() {
                    edx &= !(1 << 11);
                }
                const TOPOEXT: u32 = 1 << 22;
                let mut ecx = self.bits(0x8000_0001, R::Ecx) & !TOPOEXT;
                if self.is_amd() {
                    ecx |= topo.amd_feature_bits() & !TOPOEXT;
                    // AMD mirrors leaf 1's EDX bits 0-9, 12-17, 23 and 24 here.
                    edx |= self.bits(1, R::Edx) & 0x0183_f3ff;
                }
                if topoext {
                    ecx |= TOPOEXT;
                }
                [self.signature(), 0, ecx, edx]
            }
            0x8000_0002..=0x8000_0004 => self.brand_chunk((leaf - 0x8000_0002) as usize),
            // L2: 512 KiB, 8-way, 64-byte lines (CPUID.80000006h:ECX layout).
            0x8000_0006 => [0, 0, (512 << 16) | (6 << 12) | 64, 0],
            0x8000_0007 => [0, 0, 0, self.bits(0x8000_0007, R::Edx)],
            // Physical and 48 linear address bits; the package size in ECX (AMD's layout).
            0x8000_0008 => [(48 << 8) | self.phys_bits, 0, topo.amd_package_size(), 0],
            0x8000_001d if topoext => topo.cache_leaf(subleaf, true),
            0x8000_001e if topoext => topo.amd_ids(apic_id),
            // Out-of-range basic leaves return the highest basic leaf's values (Intel).
            // TSC/crystal ratio (SDM Vol. 2 CPUID leaf 15H): a crystal at the TSC's own rate, so
            // the guest needs no PIT or PM-timer calibration.
            0x15 if max_basic >= 0x15 => [1, 1, self.tsc_hz.min(u64::from(u32::MAX)) as u32, 0],
            // Processor frequency information in MHz: base, maximum, bus.
            0x16 if max_basic >= 0x16 => {
                let mhz = (self.tsc_hz / 1_000_000) as u32;
                [mhz, mhz, 100, 0]
            }
            _ => [0, 0, 0, 0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_models_and_features() {
        let m = CpuModel::parse("qemu64,+ssse3,-sse3").unwrap();
        assert!(m.has("ssse3"));
        assert!(!m.has("sse3"));
        assert!(!m.has("popcnt"));
        assert!(CpuModel::parse("max").unwrap().has("popcnt"));
        assert_eq!(CpuModel::parse("pentium"), Err(CpuModelError::UnknownModel("pentium".into())));
        assert_eq!(CpuModel::parse("max,+bogus"), Err(CpuModelError::UnknownFeature("bogus".into())));
    }

    #[test]
    fn max_reports_arch_capabilities() {
        let st = CpuState::reset();
        let edx = CpuModel::max().cpuid(7, 0, 0, Topology::default(), &st)[3];
        assert_ne!(edx & (1 << 29), 0);
        assert!(!CpuModel::qemu64().has("arch-capabilities"));
    }

    #[test]
    fn prefetchw_runs_on_models_without_3dnowprefetch() {
        // Linux's PREFETCHW on a 64-bit AMD model (qemu64) must not raise #UD.
        let m = CpuModel::parse("qemu64").unwrap();
        assert!(!m.has("3dnowprefetch"));
        for bytes in [[0x0f, 0x0d, 0x0c, 0x03], [0x0f, 0x0d, 0x04, 0x03]] {
            let insn = iced_x86::Decoder::new(64, &bytes, 0).decode();
            assert!(m.allows(&insn), "{insn}");
        }
    }

    #[test]
    fn vendor_and_brand() {
        let m = CpuModel::max();
        let st = CpuState::reset();
        let r = m.cpuid(0, 0, 0, Topology::default(), &st);
        let mut v = Vec::new();
        for x in [r[1], r[3], r[2]] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let mut brand = Vec::new();
        for l in 0x8000_0002..=0x8000_0004u32 {
            for x in m.cpuid(l, 0, 0, Topology::default(), &st) {
                brand.extend_from_slice(&x.to_le_bytes());
            }
        }
        assert!(String::from_utf8_lossy(&brand).starts_with("ferrite x86-64-v3 CPU"));
        // SSE4.2, POPCNT, AVX, FMA, F16C and MOVBE advertised; OSXSAVE only with CR4.OSXSAVE.
        let ecx = m.cpuid(1, 0, 0, Topology::default(), &st)[2];
        for bit in [20, 23, 28, 12, 29, 22] {
            assert_ne!(ecx & (1 << bit), 0, "bit {bit}");
        }
        assert_eq!(ecx & (1 << 27), 0);
        // AVX2, BMI1, BMI2 in leaf 7; no AVX-512.
        let ebx = m.cpuid(7, 0, 0, Topology::default(), &st)[1];
        assert_eq!(ebx & (1 << 5 | 1 << 3 | 1 << 8 | 1 << 16), 1 << 5 | 1 << 3 | 1 << 8);
    }
}
