//! Processor topology: how the machine's logical processors group into packages (sockets),
//! cores and threads, the APIC IDs that encode it, and the CPUID leaves that describe it.
//!
//! APIC IDs follow the layout QEMU and hardware use: the low `thread_bits` select the thread
//! within a core, the next `core_bits` the core within a package, the rest the package, each
//! field as wide as its count rounded up to a power of two (Intel SDM Vol. 3, 10.9 / 11.9.1
//! "Hierarchical Mapping of Shared Resources"). Software recovers the fields from CPUID: leaf
//! 1 (HTT, addressable IDs per package), leaf 4 (cores per package, sharing of each cache),
//! leaf 0xB/0x1F (shift widths per level), and on AMD 0x80000008 (ApicIdSize), 0x8000001D/E.

/// Packages × cores × threads. `cores` counts cores per package, `threads` threads per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology { sockets: 1, cores: 1, threads: 1 }
    }
}

/// Bits needed to number `n` items: ceil(log2(n)), 0 for one item.
fn bits_for(n: u32) -> u32 {
    32 - n.max(1).saturating_sub(1).leading_zeros()
}

// Leaf 4 / 0x8000001D cache types (EAX[4:0]).
const CACHE_DATA: u32 = 1;
const CACHE_CODE: u32 = 2;
const CACHE_UNIFIED: u32 = 3;
/// EAX[8]: the cache initialises itself (needs no software initialisation).
const CACHE_SELF_INIT: u32 = 1 << 8;
/// EDX[1]: the cache includes the lower levels.
const CACHE_INCLUSIVE: u32 = 1 << 1;

/// One cache as leaf 4 describes it.
struct Cache {
    kind: u32,
    level: u32,
    ways: u32,
    line: u32,
    sets: u32,
    /// Shared by the whole package (L3), else by the threads of one core.
    per_package: bool,
    inclusive: bool,
}

/// The caches the CPU reports: 32 KiB L1 data and code, 512 KiB L2 (as 0x80000006 says), 16 MiB
/// L3; 64-byte lines.
const CACHES: [Cache; 4] = [
    Cache { kind: CACHE_DATA, level: 1, ways: 8, line: 64, sets: 64, per_package: false, inclusive: false },
    Cache { kind: CACHE_CODE, level: 1, ways: 8, line: 64, sets: 64, per_package: false, inclusive: false },
    Cache { kind: CACHE_UNIFIED, level: 2, ways: 8, line: 64, sets: 1024, per_package: false, inclusive: false },
    Cache { kind: CACHE_UNIFIED, level: 3, ways: 16, line: 64, sets: 16384, per_package: true, inclusive: true },
];

// Leaf 0xB/0x1F level types (ECX[15:8]).
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

// AMD CPUID 0x80000001 ECX.
const AMD_CMP_LEGACY: u32 = 1 << 1;
const AMD_TOPOEXT: u32 = 1 << 22;

impl Topology {
    /// Logical processors in the machine.
    pub fn cpus(&self) -> u32 {
        self.sockets.max(1) * self.cores.max(1) * self.threads.max(1)
    }

    /// APIC ID bits that number the thread within its core.
    pub fn thread_bits(&self) -> u32 {
        bits_for(self.threads)
    }

    /// APIC ID bits that number the core within its package.
    pub fn core_bits(&self) -> u32 {
        bits_for(self.cores)
    }

    /// APIC ID bits below the package number.
    pub fn package_shift(&self) -> u32 {
        self.core_bits() + self.thread_bits()
    }

    /// The initial APIC ID of logical processor `index`, counting threads fastest, then cores,
    /// then packages: `index = (socket * cores + core) * threads + thread`.
    pub fn apic_id(&self, index: u32) -> u32 {
        let (threads, cores) = (self.threads.max(1), self.cores.max(1));
        let thread = index % threads;
        let core = index / threads % cores;
        let socket = index / threads / cores;
        socket << self.package_shift() | core << self.thread_bits() | thread
    }

    /// Logical processor IDs a package spans (CPUID.1:EBX[23:16]): a power of two.
    pub fn addressable_per_package(&self) -> u32 {
        1 << self.package_shift()
    }

    /// Logical processors actually in a package.
    pub fn per_package(&self) -> u32 {
        self.cores.max(1) * self.threads.max(1)
    }

    /// Deterministic cache parameters (leaf 4, or AMD's 0x8000001D without the core count).
    pub(crate) fn cache_leaf(&self, subleaf: u32, amd: bool) -> [u32; 4] {
        let Some(c) = CACHES.get(subleaf as usize) else { return [0; 4] };
        let sharing_bits = if c.per_package { self.package_shift() } else { self.thread_bits() };
        let mut eax = c.kind | c.level << 5 | CACHE_SELF_INIT | ((1 << sharing_bits) - 1) << 14;
        if !amd {
            eax |= ((1 << self.core_bits()) - 1) << 26;
        }
        let ebx = (c.line - 1) | (c.ways - 1) << 22;
        let edx = if c.inclusive { CACHE_INCLUSIVE } else { 0 };
        [eax, ebx, c.sets - 1, edx]
    }

    /// Extended topology enumeration (leaf 0xB, and 0x1F here): subleaf 0 the SMT level,
    /// 1 the core level, then invalid levels; EAX is the shift to the next level's ID, EBX
    /// the logical processors at this level, EDX the x2APIC ID.
    pub(crate) fn extended_leaf(&self, subleaf: u32, apic_id: u32) -> [u32; 4] {
        match subleaf {
            0 => [self.thread_bits(), self.threads.max(1), LEVEL_SMT << 8, apic_id],
            1 => [self.package_shift(), self.per_package(), LEVEL_CORE << 8 | 1, apic_id],
            n => [0, 0, n & 0xff, apic_id],
        }
    }

    /// AMD CPUID 0x80000001 ECX topology bits: CmpLegacy (more than one logical processor
    /// per package) and TopologyExtensions (0x8000001D/E are valid).
    pub(crate) fn amd_feature_bits(&self) -> u32 {
        AMD_TOPOEXT | if self.per_package() > 1 { AMD_CMP_LEGACY } else { 0 }
    }

    /// CPUID 0x80000008 ECX (AMD APM): [7:0] logical processors per package - 1,
    /// [15:12] APIC ID bits numbering them (ApicIdSize).
    pub(crate) fn amd_package_size(&self) -> u32 {
        self.package_shift() << 12 | (self.per_package() - 1)
    }

    /// AMD CPUID 0x8000001E: extended APIC ID; core (compute unit) ID and threads per core;
    /// node ID (one node per package) and nodes per package.
    pub(crate) fn amd_ids(&self, apic_id: u32) -> [u32; 4] {
        let core = (apic_id >> self.thread_bits()) & ((1 << self.core_bits()) - 1);
        let node = apic_id >> self.package_shift();
        [apic_id, (self.threads.max(1) - 1) << 8 | core, node & 0xff, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CpuState;
    use crate::CpuModel;

    /// What Linux's topology code derives from CPUID for one logical processor.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        apic_id: u32,
        /// Leaf 1: HTT and EBX[23:16].
        htt: bool,
        ids_per_package: u32,
        /// Leaf 4: EAX[31:26] + 1.
        cores_per_package: u32,
        /// Leaf 0xB: SMT and core level shifts, thread/core/package IDs.
        smt_shift: u32,
        pkg_shift: u32,
        thread: u32,
        core: u32,
        package: u32,
        /// Leaf 4 L1d and L3: logical processors sharing them (EAX[25:14] + 1).
        l1_sharing: u32,
        l3_sharing: u32,
    }

    fn seen(topo: Topology, index: u32) -> Seen {
        let m = CpuModel::max();
        let st = CpuState::reset();
        let apic = topo.apic_id(index);
        let q = |leaf, sub| m.cpuid(leaf, sub, apic, topo, &st);
        let l1 = q(1, 0);
        let (b0, b1, b2) = (q(0xb, 0), q(0xb, 1), q(0xb, 2));
        assert_eq!((b0[2] >> 8 & 0xff, b1[2] >> 8 & 0xff, b2[2] >> 8 & 0xff), (1, 2, 0), "level types");
        assert_eq!((b0[2] & 0xff, b1[2] & 0xff, b2[2] & 0xff), (0, 1, 2), "level numbers");
        assert!(b0[3] == apic && b1[3] == apic && b2[3] == apic, "x2APIC ID in EDX");
        assert_eq!(q(4, 4)[0] & 0x1f, 0, "four caches, then the null entry");
        let (smt_shift, pkg_shift) = (b0[0] & 0x1f, b1[0] & 0x1f);
        let x2apic = b0[3];
        Seen {
            apic_id: l1[1] >> 24,
            htt: l1[3] & (1 << 28) != 0,
            ids_per_package: l1[1] >> 16 & 0xff,
            cores_per_package: (q(4, 0)[0] >> 26) + 1,
            smt_shift,
            pkg_shift,
            thread: x2apic & ((1 << smt_shift) - 1),
            core: (x2apic >> smt_shift) & ((1 << (pkg_shift - smt_shift)) - 1),
            package: x2apic >> pkg_shift,
            l1_sharing: (q(4, 0)[0] >> 14 & 0xfff) + 1,
            l3_sharing: (q(4, 3)[0] >> 14 & 0xfff) + 1,
        }
    }

    #[test]
    fn one_cpu() {
        let t = Topology::default();
        assert_eq!(t.cpus(), 1);
        assert_eq!(
            seen(t, 0),
            Seen {
                apic_id: 0,
                htt: false,
                ids_per_package: 1,
                cores_per_package: 1,
                smt_shift: 0,
                pkg_shift: 0,
                thread: 0,
                core: 0,
                package: 0,
                l1_sharing: 1,
                l3_sharing: 1
            }
        );
    }

    #[test]
    fn four_cores_in_one_socket() {
        let t = Topology { sockets: 1, cores: 4, threads: 1 };
        assert_eq!(t.cpus(), 4);
        assert_eq!((0..4).map(|i| t.apic_id(i)).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let s = seen(t, 3);
        assert_eq!(
            s,
            Seen {
                apic_id: 3,
                htt: true,
                ids_per_package: 4,
                cores_per_package: 4,
                smt_shift: 0,
                pkg_shift: 2,
                thread: 0,
                core: 3,
                package: 0,
                l1_sharing: 1,
                l3_sharing: 4
            }
        );
        // Linux's leaf-1/leaf-4 fallback: siblings per package / cores = threads per core.
        assert_eq!(s.ids_per_package / s.cores_per_package, 1);
    }

    #[test]
    fn two_sockets_two_cores_two_threads() {
        let t = Topology { sockets: 2, cores: 2, threads: 2 };
        assert_eq!(t.cpus(), 8);
        assert_eq!((0..8).map(|i| t.apic_id(i)).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Index 6: socket 1, core 1, thread 0.
        let s = seen(t, 6);
        assert_eq!(
            s,
            Seen {
                apic_id: 6,
                htt: true,
                ids_per_package: 4,
                cores_per_package: 2,
                smt_shift: 1,
                pkg_shift: 2,
                thread: 0,
                core: 1,
                package: 1,
                l1_sharing: 2,
                l3_sharing: 4
            }
        );
        assert_eq!(s.ids_per_package / s.cores_per_package, 2, "threads per core");
        let m = CpuModel::max();
        let st = CpuState::reset();
        assert_eq!(m.cpuid(0xb, 0, 6, t, &st)[1] & 0xffff, 2, "threads per core");
        assert_eq!(m.cpuid(0xb, 1, 6, t, &st)[1] & 0xffff, 4, "logical processors per package");
        assert_eq!(m.cpuid(0x8000_0008, 0, 6, t, &st)[2], 2 << 12 | 3, "NC and ApicIdSize");
    }

    #[test]
    fn counts_that_are_not_powers_of_two_leave_gaps() {
        let t = Topology { sockets: 2, cores: 3, threads: 1 };
        assert_eq!((0..6).map(|i| t.apic_id(i)).collect::<Vec<_>>(), [0, 1, 2, 4, 5, 6]);
        let s = seen(t, 4);
        assert_eq!((s.package, s.core, s.ids_per_package, s.cores_per_package), (1, 1, 4, 4));
        assert_eq!(CpuModel::max().cpuid(0xb, 1, 5, t, &CpuState::reset())[1], 3, "real core count");
    }

    #[test]
    fn amd_topology_leaves() {
        let mut m = CpuModel::max();
        m.vendor = *b"AuthenticAMD";
        let st = CpuState::reset();
        let t = Topology { sockets: 2, cores: 2, threads: 2 };
        // Index 7: socket 1, core 1, thread 1.
        let apic = t.apic_id(7);
        assert_eq!(m.cpuid(0x8000_0000, 0, apic, t, &st)[0], 0x8000_001e);
        let ecx = m.cpuid(0x8000_0001, 0, apic, t, &st)[2];
        assert_ne!(ecx & AMD_CMP_LEGACY, 0);
        assert_ne!(ecx & AMD_TOPOEXT, 0);
        assert_eq!(m.cpuid(0x8000_001e, 0, apic, t, &st), [7, 1 << 8 | 1, 1, 0]);
        let l3 = m.cpuid(0x8000_001d, 3, apic, t, &st);
        assert_eq!((l3[0] & 0x1f, l3[0] >> 5 & 7, (l3[0] >> 14 & 0xfff) + 1, l3[0] >> 26), (3, 3, 4, 0));
    }
}
