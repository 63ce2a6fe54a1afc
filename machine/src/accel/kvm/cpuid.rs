//! The CPUID a KVM vCPU reports: ferrite's CPU model (vendor, family/model/stepping, brand,
//! topology, cache leaves) with its feature bits narrowed to what the host's KVM can run
//! (KVM_GET_SUPPORTED_CPUID), the TSC leaves describing the real TSC rate, and without the
//! features only an in-kernel local APIC provides (x2APIC, TSC deadline) while ferrite's own
//! local APIC serves the guest.

use super::KvmError;
use ferrite_cpu::Cpu;
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

const X2APIC: u32 = 1 << 21;
const TSC_DEADLINE: u32 = 1 << 24;

/// Leaves whose answer depends on the subleaf, and how many subleaves to list.
fn subleaves(cpu: &Cpu, leaf: u32) -> Option<Vec<u32>> {
    let q = |sub: u32| cpu.model.cpuid(leaf, sub, cpu.apic_id, cpu.cpuid_topology(), &cpu.state);
    // Listed until (and including) the first subleaf whose type field says "no more".
    let until = |last: &dyn Fn([u32; 4]) -> bool| {
        let mut v = Vec::new();
        for sub in 0..64 {
            v.push(sub);
            if last(q(sub)) {
                break;
            }
        }
        v
    };
    match leaf {
        4 | 0x8000_001d => Some(until(&|r| r[0] & 0x1f == 0)),
        0xb | 0x1f => Some(until(&|r| r[2] >> 8 & 0xff == 0)),
        7 => Some((0..=q(0)[0]).collect()),
        0xd => {
            let r = q(0);
            let components = r[0] as u64 | (r[3] as u64) << 32;
            Some([0, 1].into_iter().chain((2..64).filter(|i| components >> i & 1 != 0)).collect())
        }
        _ => None,
    }
}

/// Narrows `cpu`'s model to what the host's KVM can run and an in-kernel-APIC-less vCPU has,
/// so the CPUID KVM answers and the one ferrite's own CPU answers (when it runs an instruction
/// for KVM) are the same. Returns the features dropped.
pub fn narrow_model(kvm: &Kvm, cpu: &mut Cpu, lapic_in_kernel: bool) -> Result<Vec<&'static str>, KvmError> {
    let supported =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| KvmError::ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    // Leaf 0xD's feature bits (XSAVEOPT, XSAVEC, ...) live in subleaf 1, the others' in 0.
    let host = |leaf: u32| {
        let sub = u32::from(leaf == 0xd);
        supported.as_slice().iter().find(|e| e.function == leaf && e.index == sub).map(|e| [e.eax, e.ebx, e.ecx, e.edx])
    };
    Ok(cpu.model.retain_features(|leaf, reg, bit| {
        let in_kernel_apic_only = !lapic_in_kernel && leaf == 1 && reg == 2 && (X2APIC | TSC_DEADLINE) & (1 << bit) != 0;
        // Leaves without host feature bits (6: ARAT, 0x8000_0007: invariant TSC) describe the
        // machine rather than instructions: kept.
        let filtered = matches!(leaf, 1 | 7 | 0xd | 0x8000_0001);
        !in_kernel_apic_only && (!filtered || host(leaf).is_some_and(|h| h[reg] & (1 << bit) != 0))
    }))
}

/// Leaves that describe the machine's topology and this vCPU's place in it: ferrite's answer
/// even under `-cpu host`.
fn topology_leaf(leaf: u32) -> bool {
    matches!(leaf, 4 | 0xb | 0x1f)
}

/// `-cpu host`: what the host's KVM supports, with the machine's topology and APIC IDs, and
/// without KVM's paravirtual leaves (0x4000_0000 on) and the in-kernel-APIC features.
fn host_table(supported: &CpuId, cpu: &Cpu, lapic_in_kernel: bool) -> Vec<kvm_cpuid_entry2> {
    let topo = cpu.cpuid_topology();
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| !(0x4000_0000..0x8000_0000).contains(&e.function) && !topology_leaf(e.function))
        .copied()
        .collect();
    for e in entries.iter_mut().filter(|e| e.function == 1) {
        let ours = cpu.model.cpuid(1, 0, cpu.apic_id, topo, &cpu.state);
        e.ebx = (e.ebx & 0xffff) | (ours[1] & 0xffff_0000);
        if !lapic_in_kernel {
            e.ecx &= !(X2APIC | TSC_DEADLINE);
        }
        e.edx = (e.edx & !(1 << 28)) | (ours[3] & (1 << 28));
    }
    let max_basic = entries.iter().find(|e| e.function == 0).map_or(0, |e| e.eax);
    for leaf in [4, 0xb, 0x1f] {
        if leaf <= max_basic {
            for sub in subleaves(cpu, leaf).unwrap_or(vec![0]) {
                let r = cpu.model.cpuid(leaf, sub, cpu.apic_id, topo, &cpu.state);
                entries.push(entry(leaf, sub, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, r));
            }
        }
    }
    entries
}

fn entry(function: u32, index: u32, flags: u32, r: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 { function, index, flags, eax: r[0], ebx: r[1], ecx: r[2], edx: r[3], padding: [0; 3] }
}

/// The CPUID table for `cpu` (its model narrowed by [`narrow_model`]) under this host's KVM;
/// `tsc_khz` is the vCPU's TSC rate; `host`: `-cpu host` (the host's features) rather than
/// ferrite's model.
pub fn table(kvm: &Kvm, cpu: &Cpu, tsc_khz: Option<u32>, host: bool, lapic_in_kernel: bool) -> Result<CpuId, KvmError> {
    let supported =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| KvmError::ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    if host {
        return from_entries(&host_table(&supported, cpu, lapic_in_kernel));
    }
    let topo = cpu.cpuid_topology();
    let max_basic = cpu.model.cpuid(0, 0, cpu.apic_id, topo, &cpu.state)[0];
    let max_ext = cpu.model.cpuid(0x8000_0000, 0, cpu.apic_id, topo, &cpu.state)[0];
    let mut entries = Vec::new();
    for leaf in (0..=max_basic).chain(0x8000_0000..=max_ext) {
        let (subs, flags) = match subleaves(cpu, leaf) {
            Some(s) => (s, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
            None => (vec![0], 0),
        };
        for sub in subs {
            let mut r = cpu.model.cpuid(leaf, sub, cpu.apic_id, topo, &cpu.state);
            match leaf {
                // The TSC ticks at the host's rate under KVM, not ferrite's 1 GHz.
                0x15 => {
                    if let Some(khz) = tsc_khz {
                        r = [1, 1, khz.saturating_mul(1000), 0];
                    }
                }
                0x16 => {
                    if let Some(khz) = tsc_khz {
                        r[0] = khz / 1000;
                        r[1] = khz / 1000;
                    }
                }
                _ => {}
            }
            entries.push(entry(leaf, sub, flags, r));
        }
    }
    from_entries(&entries)
}

fn from_entries(entries: &[kvm_cpuid_entry2]) -> Result<CpuId, KvmError> {
    CpuId::from_entries(entries).map_err(|_| KvmError::Ioctl {
        what: "building the CPUID table",
        source: std::io::Error::other(format!("{} entries is too many", entries.len())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table keeps ferrite's identity and only narrows features; skipped without KVM.
    #[test]
    fn model_identity_and_features_narrowed_by_the_host() {
        let Ok(kvm) = Kvm::new() else {
            println!("SKIPPED: /dev/kvm is not usable here");
            return;
        };
        let mut cpu = Cpu::new(ferrite_cpu::cpuid::CpuModel::parse("max").unwrap());
        let dropped = narrow_model(&kvm, &mut cpu, false).unwrap();
        assert!(dropped.contains(&"x2apic") && !cpu.model.has("x2apic"), "{dropped:?}");
        let t = table(&kvm, &cpu, Some(2_000_000), false, false).unwrap();
        let get = |f: u32, i: u32| t.as_slice().iter().find(|e| e.function == f && e.index == i).copied();
        for e in t.as_slice() {
            println!("{:#010x}.{} {:08x} {:08x} {:08x} {:08x} flags {}", e.function, e.index, e.eax, e.ebx, e.ecx, e.edx, e.flags);
        }
        let ours = cpu.model.cpuid(0, 0, 0, cpu.cpuid_topology(), &cpu.state);
        let leaf0 = get(0, 0).unwrap();
        assert_eq!([leaf0.ebx, leaf0.edx, leaf0.ecx], [ours[1], ours[3], ours[2]], "vendor");
        let leaf1 = get(1, 0).unwrap();
        assert_eq!(leaf1.ecx & (X2APIC | TSC_DEADLINE), 0);
        let xsave = get(0xd, 0).unwrap();
        assert_eq!(xsave.eax & !0b11, 0, "only x87 and SSE state");
        assert_eq!(get(0x15, 0).map(|e| e.ecx), Some(2_000_000_000), "the TSC's real rate");
    }
}
