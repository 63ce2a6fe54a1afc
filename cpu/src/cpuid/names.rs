//! Every x86 feature name QEMU's `-cpu` option recognises, and where its bit lives (Intel SDM
//! Vol. 2A "CPUID", AMD APM Vol. 3 Appendix E, the VIA/Centaur and KVM leaves, and the
//! IA32_ARCH_CAPABILITIES / IA32_CORE_CAPABILITIES MSRs). ferrite provides only some of them
//! (`FEATURES` in the parent module); the rest are recognised so that a request for them can be
//! dropped with QEMU's warning, naming the bit, instead of being refused as unknown.

/// Where a feature bit lives, for messages: `CPUID.07H:EBX.avx2 [bit 5]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// CPUID leaf (the sub-leaf is not part of QEMU's wording), register name, bit.
    Cpuid { leaf: u32, reg: &'static str, bit: u8 },
    /// A feature MSR and bit.
    Msr { index: u32, bit: u8 },
    /// One of the VMX capability MSRs (480H-491H).
    Vmx,
    /// A paravirtual KVM leaf (0x40000001): meaningless without KVM, dropped silently as QEMU does.
    Kvm,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Cpuid { leaf, reg, .. } => write!(f, "CPUID.{leaf:02X}H:{reg}"),
            Location::Msr { index, .. } => write!(f, "MSR({index:X}H)"),
            Location::Vmx => write!(f, "MSR(VMX capabilities)"),
            Location::Kvm => write!(f, "CPUID.40000001H:EAX"),
        }
    }
}

/// One register's 32 bits, bit 0 first; `_` marks bits QEMU has no name for.
struct Word {
    leaf: u32,
    reg: &'static str,
    bits: &'static str,
}

const WORDS: &[Word] = &[
    Word { leaf: 0x1, reg: "EDX", bits: "fpu vme de pse tsc msr pae mce cx8 apic _ sep mtrr pge mca cmov \
        pat pse36 pn clflush _ ds acpi mmx fxsr sse sse2 ss ht tm ia64 pbe" },
    Word { leaf: 0x1, reg: "ECX", bits: "pni pclmulqdq dtes64 monitor ds-cpl vmx smx est tm2 ssse3 cid _ fma cx16 xtpr pdcm \
        _ pcid dca sse4.1 sse4.2 x2apic movbe popcnt tsc-deadline aes xsave _ avx f16c rdrand hypervisor" },
    Word { leaf: 0x6, reg: "EAX", bits: "_ _ arat _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    Word { leaf: 0x7, reg: "EBX", bits: "fsgsbase tsc-adjust sgx bmi1 hle avx2 _ smep bmi2 erms invpcid rtm _ _ mpx _ \
        avx512f avx512dq rdseed adx smap avx512ifma pcommit clflushopt clwb intel-pt avx512pf avx512er avx512cd sha-ni avx512bw avx512vl" },
    Word { leaf: 0x7, reg: "ECX", bits: "_ avx512vbmi umip pku _ waitpkg avx512vbmi2 _ gfni vaes vpclmulqdq avx512vnni avx512bitalg _ avx512-vpopcntdq _ \
        la57 _ _ _ _ _ rdpid _ bus-lock-detect cldemote _ movdiri movdir64b _ sgxlc pks" },
    Word { leaf: 0x7, reg: "EDX", bits: "_ _ avx512-4vnniw avx512-4fmaps fsrm _ _ _ avx512-vp2intersect _ md-clear _ _ _ serialize _ \
        tsx-ldtrk _ _ arch-lbr _ _ amx-bf16 avx512-fp16 amx-tile amx-int8 spec-ctrl stibp _ arch-capabilities core-capability ssbd" },
    // Leaf 7 sub-leaf 1.
    Word { leaf: 0x7, reg: "EAX", bits: "_ _ _ _ avx-vnni avx512-bf16 _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    // Leaf 0xD sub-leaf 1.
    Word { leaf: 0xd, reg: "EAX", bits: "xsaveopt xsavec xgetbv1 xsaves xfd _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    Word { leaf: 0x12, reg: "EAX", bits: "sgx1 sgx2 _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    Word { leaf: 0x12, reg: "EBX", bits: "sgx-exinfo _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    // Leaf 0x12 sub-leaf 1: the SGX enclave attributes.
    Word { leaf: 0x12, reg: "EAX", bits: "_ sgx-debug sgx-mode64 _ sgx-provisionkey sgx-tokenkey _ sgx-kss _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    Word { leaf: 0x14, reg: "ECX", bits: "_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ intel-pt-lip" },
    Word { leaf: 0x8000_0001, reg: "EDX", bits: "_ _ _ _ _ _ _ _ _ _ _ syscall _ _ _ _ \
        _ _ _ _ nx _ mmxext _ _ fxsr-opt pdpe1gb rdtscp _ lm 3dnowext 3dnow" },
    Word { leaf: 0x8000_0001, reg: "ECX", bits: "lahf-lm cmp-legacy svm extapic cr8legacy abm sse4a misalignsse 3dnowprefetch osvw ibs xop skinit wdt _ lwp \
        fma4 tce _ nodeid-msr _ tbm topoext perfctr-core perfctr-nb _ _ _ _ _ _ _" },
    Word { leaf: 0x8000_0007, reg: "EDX", bits: "_ _ _ _ _ _ _ _ invtsc _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
    Word { leaf: 0x8000_0008, reg: "EBX", bits: "clzero _ xsaveerptr _ _ _ _ _ _ wbnoinvd _ _ ibpb _ ibrs amd-stibp \
        _ _ _ _ _ _ _ _ amd-ssbd virt-ssbd amd-no-ssb _ _ _ _ _" },
    Word { leaf: 0x8000_000a, reg: "EDX", bits: "npt lbrv svm-lock nrip-save tsc-scale vmcb-clean flushbyasid decodeassists _ _ pause-filter _ pfthreshold avic _ v-vmsave-vmload \
        vgif _ _ _ _ _ _ _ _ _ _ _ svme-addr-chk _ _ _" },
    Word { leaf: 0xc000_0001, reg: "EDX", bits: "_ _ xstore xstore-en _ _ xcrypt xcrypt-en ace2 ace2-en phe phe-en pmm pmm-en _ _ \
        _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _" },
];

/// IA32_ARCH_CAPABILITIES (10AH) and IA32_CORE_CAPABILITIES (CFH).
const MSR_WORDS: &[(u32, &str)] = &[
    (0x10a, "rdctl-no ibrs-all rsba skip-l1dfl-vmentry ssb-no mds-no pschange-mc-no tsx-ctrl taa-no"),
    (0xcf, "_ _ _ _ _ split-lock-detect"),
    // IA32_PERF_CAPABILITIES.
    (0x345, "_ _ _ _ _ _ _ _ _ _ _ _ _ full-width-write"),
];

/// KVM's paravirtual features (leaf 0x40000001), by name only.
const KVM: &str = "kvmclock kvm-nopiodelay kvm-mmu kvm-asyncpf kvm-steal-time kvm-pv-eoi kvm-pv-unhalt \
    kvm-pv-tlb-flush kvm-asyncpf-vmexit kvm-pv-ipi kvm-poll-control kvm-pv-sched-yield kvm-asyncpf-int \
    kvm-msi-ext-dest-id kvmclock-stable-bit kvm-hint-dedicated";

/// The VMX capability bits QEMU names (nested virtualisation controls).
const VMX: &str = "vmx-activity-hlt vmx-activity-shutdown vmx-activity-wait-sipi vmx-apicv-register vmx-apicv-vid \
    vmx-apicv-x2apic vmx-apicv-xapic vmx-cr3-load-noexit vmx-cr3-store-noexit vmx-cr8-load-exit vmx-cr8-store-exit \
    vmx-desc-exit vmx-encls-exit vmx-entry-ia32e-mode vmx-entry-load-bndcfgs vmx-entry-load-efer vmx-entry-load-pat \
    vmx-entry-load-perf-global-ctrl vmx-entry-load-pkrs vmx-entry-load-rtit-ctl vmx-entry-noload-debugctl vmx-ept \
    vmx-ept-1gb vmx-ept-2mb vmx-ept-advanced-exitinfo vmx-ept-execonly vmx-eptad vmx-eptp-switching vmx-exit-ack-intr \
    vmx-exit-clear-bndcfgs vmx-exit-clear-rtit-ctl vmx-exit-load-efer vmx-exit-load-pat vmx-exit-load-perf-global-ctrl \
    vmx-exit-load-pkrs vmx-exit-nosave-debugctl vmx-exit-save-efer vmx-exit-save-pat vmx-exit-save-preemption-timer \
    vmx-flexpriority vmx-hlt-exit vmx-ins-outs vmx-intr-exit vmx-invept vmx-invept-all-context vmx-invept-single-context \
    vmx-invept-single-context-noglobals vmx-invlpg-exit vmx-invpcid-exit vmx-invvpid vmx-invvpid-all-context \
    vmx-invvpid-single-addr vmx-io-bitmap vmx-io-exit vmx-monitor-exit vmx-movdr-exit vmx-msr-bitmap vmx-mtf \
    vmx-mwait-exit vmx-nmi-exit vmx-page-walk-4 vmx-page-walk-5 vmx-pause-exit vmx-ple vmx-pml vmx-posted-intr \
    vmx-preemption-timer vmx-rdpmc-exit vmx-rdrand-exit vmx-rdseed-exit vmx-rdtsc-exit vmx-rdtscp-exit \
    vmx-secondary-ctls vmx-shadow-vmcs vmx-store-lma vmx-true-ctls vmx-tsc-offset vmx-tsc-scaling \
    vmx-unrestricted-guest vmx-vintr-pending vmx-vmfunc vmx-vmwrite-vmexit-fields vmx-vnmi vmx-vnmi-pending vmx-vpid \
    vmx-wbinvd-exit vmx-xsaves vmx-zero-len-inject";

/// Old spellings QEMU still accepts, and ferrite's own aliases, with the canonical name.
const ALIASES: &[(&str, &str)] = &[
    ("sse3", "pni"),
    ("xd", "nx"),
    ("i64", "lm"),
    ("ffxsr", "fxsr-opt"),
    ("sse4-1", "sse4.1"),
    ("sse4-2", "sse4.2"),
    ("lzcnt", "abm"),
    ("prefetchw", "3dnowprefetch"),
];

/// The canonical name for a user's spelling: `_` and `-` are interchangeable (QEMU's legacy
/// `lahf_lm`, `sse4_1`), and a few old names map to new ones.
pub fn canonical(name: &str) -> String {
    let n = name.replace('_', "-");
    ALIASES.iter().find(|(a, _)| *a == n).map_or(n, |(_, c)| (*c).to_string())
}

/// Where QEMU's feature `name` (canonical spelling) lives, or `None` if QEMU does not know it.
pub fn locate(name: &str) -> Option<Location> {
    for w in WORDS {
        if let Some(bit) = w.bits.split_whitespace().position(|b| b == name) {
            return Some(Location::Cpuid { leaf: w.leaf, reg: w.reg, bit: bit as u8 });
        }
    }
    for (index, bits) in MSR_WORDS {
        if let Some(bit) = bits.split_whitespace().position(|b| b == name) {
            return Some(Location::Msr { index: *index, bit: bit as u8 });
        }
    }
    if KVM.split_whitespace().any(|k| k == name) {
        return Some(Location::Kvm);
    }
    if VMX.split_whitespace().any(|k| k == name) {
        return Some(Location::Vmx);
    }
    None
}

/// The bit number of a location, for QEMU's "[bit N]".
pub fn bit(loc: Location) -> Option<u8> {
    match loc {
        Location::Cpuid { bit, .. } | Location::Msr { bit, .. } => Some(bit),
        Location::Vmx | Location::Kvm => None,
    }
}

/// Every recognised name in CPUID word order, then the MSR-based ones (QEMU's warning order).
pub fn all_in_table_order() -> impl Iterator<Item = &'static str> {
    WORDS
        .iter()
        .flat_map(|w| w.bits.split_whitespace())
        .chain(MSR_WORDS.iter().flat_map(|(_, b)| b.split_whitespace()))
        .chain(VMX.split_whitespace())
        .filter(|n| *n != "_")
}

/// Every recognised name, for `-cpu help`.
pub fn all() -> Vec<&'static str> {
    let mut v: Vec<&str> = WORDS
        .iter()
        .flat_map(|w| w.bits.split_whitespace())
        .chain(MSR_WORDS.iter().flat_map(|(_, b)| b.split_whitespace()))
        .chain(KVM.split_whitespace())
        .chain(VMX.split_whitespace())
        .filter(|n| *n != "_")
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_has_32_bits() {
        for w in WORDS {
            assert_eq!(w.bits.split_whitespace().count(), 32, "CPUID.{:X}H:{}", w.leaf, w.reg);
        }
    }

    #[test]
    fn bits_match_the_manuals() {
        let cpuid = |n| match locate(n) {
            Some(Location::Cpuid { leaf, reg, bit }) => (leaf, reg, bit),
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(cpuid("avx2"), (7, "EBX", 5));
        assert_eq!(cpuid("pcid"), (1, "ECX", 17));
        assert_eq!(cpuid("x2apic"), (1, "ECX", 21));
        assert_eq!(cpuid("hle"), (7, "EBX", 4));
        assert_eq!(cpuid("rtm"), (7, "EBX", 11));
        assert_eq!(cpuid("avx512f"), (7, "EBX", 16));
        assert_eq!(cpuid("vmx"), (1, "ECX", 5));
        assert_eq!(cpuid("intel-pt"), (7, "EBX", 25));
        assert_eq!(cpuid("arch-capabilities"), (7, "EDX", 29));
        assert_eq!(cpuid("avx-vnni"), (7, "EAX", 4));
        assert_eq!(cpuid("fma4"), (0x8000_0001, "ECX", 16));
        assert_eq!(cpuid("clzero"), (0x8000_0008, "EBX", 0));
        assert_eq!(cpuid("ibpb"), (0x8000_0008, "EBX", 12));
        assert_eq!(cpuid("xstore"), (0xc000_0001, "EDX", 2));
        assert_eq!(cpuid("xsaves"), (0xd, "EAX", 3));
        assert_eq!(cpuid("sgx1"), (0x12, "EAX", 0));
        assert_eq!(cpuid("lm"), (0x8000_0001, "EDX", 29));
        assert_eq!(locate("rdctl-no"), Some(Location::Msr { index: 0x10a, bit: 0 }));
        assert_eq!(locate("split-lock-detect"), Some(Location::Msr { index: 0xcf, bit: 5 }));
        assert_eq!(locate("vmx-ept"), Some(Location::Vmx));
        assert_eq!(locate("warp-drive"), None);
        assert_eq!(Location::Cpuid { leaf: 7, reg: "EBX", bit: 5 }.to_string(), "CPUID.07H:EBX");
        assert_eq!(Location::Cpuid { leaf: 0x8000_0001, reg: "ECX", bit: 16 }.to_string(), "CPUID.80000001H:ECX");
    }

    #[test]
    fn spellings() {
        assert_eq!(canonical("lahf_lm"), "lahf-lm");
        assert_eq!(canonical("sse4_1"), "sse4.1");
        assert_eq!(canonical("sse3"), "pni");
        assert_eq!(canonical("tsc_deadline"), "tsc-deadline");
    }

    /// The list `qemu-system-x86_64 -cpu help` (7.2) prints under "Recognized CPUID flags",
    /// minus the VMX controls (checked by count).
    #[test]
    fn qemu_7_2_flags_are_all_known() {
        const QEMU: &str = "3dnow 3dnowext 3dnowprefetch abm ace2 ace2-en acpi adx aes amd-no-ssb amd-ssbd amd-stibp \
            amx-bf16 amx-int8 amx-tile apic arat arch-capabilities arch-lbr avic avx avx-vnni avx2 avx512-4fmaps \
            avx512-4vnniw avx512-bf16 avx512-fp16 avx512-vp2intersect avx512-vpopcntdq avx512bitalg avx512bw avx512cd \
            avx512dq avx512er avx512f avx512ifma avx512pf avx512vbmi avx512vbmi2 avx512vl avx512vnni bmi1 bmi2 \
            bus-lock-detect cid cldemote clflush clflushopt clwb clzero cmov cmp-legacy core-capability cr8legacy cx16 \
            cx8 dca de decodeassists ds ds-cpl dtes64 erms est extapic f16c flushbyasid fma fma4 fpu fsgsbase fsrm \
            full-width-write fxsr fxsr-opt gfni hle ht hypervisor ia64 ibpb ibrs ibrs-all ibs intel-pt intel-pt-lip \
            invpcid invtsc kvm-asyncpf kvm-asyncpf-int kvm-hint-dedicated kvm-mmu kvm-msi-ext-dest-id kvm-nopiodelay \
            kvm-poll-control kvm-pv-eoi kvm-pv-ipi kvm-pv-sched-yield kvm-pv-tlb-flush kvm-pv-unhalt kvm-steal-time \
            kvmclock kvmclock-stable-bit la57 lahf-lm lbrv lm lwp mca mce md-clear mds-no misalignsse mmx mmxext \
            monitor movbe movdir64b movdiri mpx msr mtrr nodeid-msr npt nrip-save nx osvw pae pat pause-filter pbe \
            pcid pclmulqdq pcommit pdcm pdpe1gb perfctr-core perfctr-nb pfthreshold pge phe phe-en pks pku pmm pmm-en \
            pn pni popcnt pschange-mc-no pse pse36 rdctl-no rdpid rdrand rdseed rdtscp rsba rtm sep serialize sgx \
            sgx-debug sgx-exinfo sgx-kss sgx-mode64 sgx-provisionkey sgx-tokenkey sgx1 sgx2 sgxlc sha-ni skinit \
            skip-l1dfl-vmentry smap smep smx spec-ctrl split-lock-detect ss ssb-no ssbd sse sse2 sse4.1 sse4.2 sse4a \
            ssse3 stibp svm svm-lock svme-addr-chk syscall taa-no tbm tce tm tm2 topoext tsc tsc-adjust tsc-deadline \
            tsc-scale tsx-ctrl tsx-ldtrk umip v-vmsave-vmload vaes vgif virt-ssbd vmcb-clean vme vmx vpclmulqdq \
            waitpkg wbnoinvd wdt x2apic xcrypt xcrypt-en xfd xgetbv1 xop xsave xsavec xsaveerptr xsaveopt xsaves \
            xstore xstore-en xtpr";
        let missing: Vec<&str> = QEMU.split_whitespace().filter(|n| locate(n).is_none()).collect();
        assert!(missing.is_empty(), "unknown: {missing:?}");
        assert_eq!(VMX.split_whitespace().count(), 88);
    }
}
