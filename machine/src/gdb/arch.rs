//! The register file gdb sees, described by one table: the `g`/`G` packet layout, the `p`/`P`
//! register numbers and the target description XML all come from [`REGS`].
//!
//! The layout is always the amd64 one (gdb's `i386:x86-64` with the standard
//! `org.gnu.gdb.i386.core`, `.sse` and `.segments` features), whatever mode the guest is in,
//! as QEMU does for x86-64 machines: the `g` packet never changes size when the guest switches
//! between real, protected and long mode, so gdb never complains that the "'g' packet reply is
//! too long". The price: gdb decodes and unwinds all code as 64-bit code (gdb 13 refuses
//! `set architecture i386`/`i8086` against an `i386:x86-64` description), so
//! `monitor disas` disassembles in the CPU's current mode instead.
//!
//! System state sits in a further feature, `org.ferrite.x86.system` (register group
//! `system`, so `info registers system` lists it): KernelGSbase, CR0/2/3/4/8, EFER,
//! GDTR/IDTR, LDTR/TR with their hidden parts, the hidden base/limit/attributes of every
//! segment register, and DR0-3/6/7.
//!
//! The upper halves of the YMM registers come last, as gdb's `org.gnu.gdb.i386.avx` feature
//! (`ymm0h`-`ymm15h`), from which gdb composes `ymm0`-`ymm15` with the XMM registers.

use gdbstub::arch::{Arch, RegId, Registers};
use std::fmt::Write;
use std::num::NonZeroUsize;
use std::sync::OnceLock;

/// Which target-description feature a register belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feature {
    Core,
    Sse,
    Segments,
    System,
    Avx,
}

impl Feature {
    fn name(self) -> &'static str {
        match self {
            Feature::Core => "org.gnu.gdb.i386.core",
            Feature::Sse => "org.gnu.gdb.i386.sse",
            Feature::Segments => "org.gnu.gdb.i386.segments",
            Feature::System => "org.ferrite.x86.system",
            Feature::Avx => "org.gnu.gdb.i386.avx",
        }
    }
}

/// What a register is, for reading and writing it in `CpuState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// General-purpose register by hardware number (RAX=0, RCX=1, ...).
    Gpr(usize),
    Rip,
    Eflags,
    /// Segment selector by `Seg` number.
    Selector(usize),
    /// x87 stack register ST(i).
    St(usize),
    Fctrl,
    Fstat,
    Ftag,
    Fiseg,
    Fioff,
    Foseg,
    Fooff,
    Fop,
    Xmm(usize),
    /// Bits 255:128 of YMMi.
    YmmHi(usize),
    Mxcsr,
    /// Hidden segment base by `Seg` number (fs_base, gs_base, es_base, ...).
    SegBase(usize),
    SegLimit(usize),
    SegAttr(usize),
    KernelGsBase,
    Cr0,
    Cr2,
    Cr3,
    Cr4,
    Cr8,
    Efer,
    GdtrBase,
    GdtrLimit,
    IdtrBase,
    IdtrLimit,
    Ldtr,
    LdtrBase,
    LdtrLimit,
    Tr,
    TrBase,
    TrLimit,
    /// Debug register DRn (0-3, 6, 7).
    Dr(usize),
}

pub struct RegDesc {
    pub name: &'static str,
    pub bits: usize,
    ty: &'static str,
    group: Option<&'static str>,
    feature: Feature,
    pub reg: Reg,
}

const fn r(name: &'static str, bits: usize, ty: &'static str, feature: Feature, reg: Reg) -> RegDesc {
    RegDesc { name, bits, ty, group: None, feature, reg }
}
const fn g(name: &'static str, bits: usize, ty: &'static str, group: &'static str, feature: Feature, reg: Reg) -> RegDesc {
    RegDesc { name, bits, ty, group: Some(group), feature, reg }
}

// `Seg` numbers (hardware order) for the table below.
const ES: usize = 0;
const CS: usize = 1;
const SS: usize = 2;
const DS: usize = 3;
const FS: usize = 4;
const GS: usize = 5;

use Feature::{Avx, Core, Segments, Sse, System};

/// Every register, in gdb's register-number order.
pub static REGS: &[RegDesc] = &[
    // org.gnu.gdb.i386.core: GPRs in gdb's amd64 order (not the hardware encoding order).
    r("rax", 64, "int64", Core, Reg::Gpr(0)),
    r("rbx", 64, "int64", Core, Reg::Gpr(3)),
    r("rcx", 64, "int64", Core, Reg::Gpr(1)),
    r("rdx", 64, "int64", Core, Reg::Gpr(2)),
    r("rsi", 64, "int64", Core, Reg::Gpr(6)),
    r("rdi", 64, "int64", Core, Reg::Gpr(7)),
    r("rbp", 64, "data_ptr", Core, Reg::Gpr(5)),
    r("rsp", 64, "data_ptr", Core, Reg::Gpr(4)),
    r("r8", 64, "int64", Core, Reg::Gpr(8)),
    r("r9", 64, "int64", Core, Reg::Gpr(9)),
    r("r10", 64, "int64", Core, Reg::Gpr(10)),
    r("r11", 64, "int64", Core, Reg::Gpr(11)),
    r("r12", 64, "int64", Core, Reg::Gpr(12)),
    r("r13", 64, "int64", Core, Reg::Gpr(13)),
    r("r14", 64, "int64", Core, Reg::Gpr(14)),
    r("r15", 64, "int64", Core, Reg::Gpr(15)),
    r("rip", 64, "code_ptr", Core, Reg::Rip),
    r("eflags", 32, "i386_eflags", Core, Reg::Eflags),
    r("cs", 32, "int32", Core, Reg::Selector(CS)),
    r("ss", 32, "int32", Core, Reg::Selector(SS)),
    r("ds", 32, "int32", Core, Reg::Selector(DS)),
    r("es", 32, "int32", Core, Reg::Selector(ES)),
    r("fs", 32, "int32", Core, Reg::Selector(FS)),
    r("gs", 32, "int32", Core, Reg::Selector(GS)),
    r("st0", 80, "i387_ext", Core, Reg::St(0)),
    r("st1", 80, "i387_ext", Core, Reg::St(1)),
    r("st2", 80, "i387_ext", Core, Reg::St(2)),
    r("st3", 80, "i387_ext", Core, Reg::St(3)),
    r("st4", 80, "i387_ext", Core, Reg::St(4)),
    r("st5", 80, "i387_ext", Core, Reg::St(5)),
    r("st6", 80, "i387_ext", Core, Reg::St(6)),
    r("st7", 80, "i387_ext", Core, Reg::St(7)),
    g("fctrl", 32, "int", "float", Core, Reg::Fctrl),
    g("fstat", 32, "int", "float", Core, Reg::Fstat),
    g("ftag", 32, "int", "float", Core, Reg::Ftag),
    g("fiseg", 32, "int", "float", Core, Reg::Fiseg),
    g("fioff", 32, "int", "float", Core, Reg::Fioff),
    g("foseg", 32, "int", "float", Core, Reg::Foseg),
    g("fooff", 32, "int", "float", Core, Reg::Fooff),
    g("fop", 32, "int", "float", Core, Reg::Fop),
    // org.gnu.gdb.i386.sse
    r("xmm0", 128, "vec128", Sse, Reg::Xmm(0)),
    r("xmm1", 128, "vec128", Sse, Reg::Xmm(1)),
    r("xmm2", 128, "vec128", Sse, Reg::Xmm(2)),
    r("xmm3", 128, "vec128", Sse, Reg::Xmm(3)),
    r("xmm4", 128, "vec128", Sse, Reg::Xmm(4)),
    r("xmm5", 128, "vec128", Sse, Reg::Xmm(5)),
    r("xmm6", 128, "vec128", Sse, Reg::Xmm(6)),
    r("xmm7", 128, "vec128", Sse, Reg::Xmm(7)),
    r("xmm8", 128, "vec128", Sse, Reg::Xmm(8)),
    r("xmm9", 128, "vec128", Sse, Reg::Xmm(9)),
    r("xmm10", 128, "vec128", Sse, Reg::Xmm(10)),
    r("xmm11", 128, "vec128", Sse, Reg::Xmm(11)),
    r("xmm12", 128, "vec128", Sse, Reg::Xmm(12)),
    r("xmm13", 128, "vec128", Sse, Reg::Xmm(13)),
    r("xmm14", 128, "vec128", Sse, Reg::Xmm(14)),
    r("xmm15", 128, "vec128", Sse, Reg::Xmm(15)),
    g("mxcsr", 32, "i386_mxcsr", "vector", Sse, Reg::Mxcsr),
    // org.gnu.gdb.i386.segments
    r("fs_base", 64, "int", Segments, Reg::SegBase(FS)),
    r("gs_base", 64, "int", Segments, Reg::SegBase(GS)),
    // org.ferrite.x86.system
    g("k_gs_base", 64, "uint64", "system", System, Reg::KernelGsBase),
    g("cr0", 64, "x86_cr0", "system", System, Reg::Cr0),
    g("cr2", 64, "uint64", "system", System, Reg::Cr2),
    g("cr3", 64, "uint64", "system", System, Reg::Cr3),
    g("cr4", 64, "x86_cr4", "system", System, Reg::Cr4),
    g("cr8", 64, "uint64", "system", System, Reg::Cr8),
    g("efer", 64, "x86_efer", "system", System, Reg::Efer),
    g("gdtr_base", 64, "data_ptr", "system", System, Reg::GdtrBase),
    g("gdtr_limit", 32, "uint32", "system", System, Reg::GdtrLimit),
    g("idtr_base", 64, "data_ptr", "system", System, Reg::IdtrBase),
    g("idtr_limit", 32, "uint32", "system", System, Reg::IdtrLimit),
    g("ldtr", 32, "uint32", "system", System, Reg::Ldtr),
    g("ldtr_base", 64, "uint64", "system", System, Reg::LdtrBase),
    g("ldtr_limit", 32, "uint32", "system", System, Reg::LdtrLimit),
    g("tr", 32, "uint32", "system", System, Reg::Tr),
    g("tr_base", 64, "uint64", "system", System, Reg::TrBase),
    g("tr_limit", 32, "uint32", "system", System, Reg::TrLimit),
    g("es_base", 64, "uint64", "system", System, Reg::SegBase(ES)),
    g("cs_base", 64, "uint64", "system", System, Reg::SegBase(CS)),
    g("ss_base", 64, "uint64", "system", System, Reg::SegBase(SS)),
    g("ds_base", 64, "uint64", "system", System, Reg::SegBase(DS)),
    g("es_limit", 32, "uint32", "system", System, Reg::SegLimit(ES)),
    g("cs_limit", 32, "uint32", "system", System, Reg::SegLimit(CS)),
    g("ss_limit", 32, "uint32", "system", System, Reg::SegLimit(SS)),
    g("ds_limit", 32, "uint32", "system", System, Reg::SegLimit(DS)),
    g("fs_limit", 32, "uint32", "system", System, Reg::SegLimit(FS)),
    g("gs_limit", 32, "uint32", "system", System, Reg::SegLimit(GS)),
    g("es_attr", 32, "uint32", "system", System, Reg::SegAttr(ES)),
    g("cs_attr", 32, "uint32", "system", System, Reg::SegAttr(CS)),
    g("ss_attr", 32, "uint32", "system", System, Reg::SegAttr(SS)),
    g("ds_attr", 32, "uint32", "system", System, Reg::SegAttr(DS)),
    g("fs_attr", 32, "uint32", "system", System, Reg::SegAttr(FS)),
    g("gs_attr", 32, "uint32", "system", System, Reg::SegAttr(GS)),
    g("dr0", 64, "uint64", "system", System, Reg::Dr(0)),
    g("dr1", 64, "uint64", "system", System, Reg::Dr(1)),
    g("dr2", 64, "uint64", "system", System, Reg::Dr(2)),
    g("dr3", 64, "uint64", "system", System, Reg::Dr(3)),
    g("dr6", 64, "uint64", "system", System, Reg::Dr(6)),
    g("dr7", 64, "uint64", "system", System, Reg::Dr(7)),
    // org.gnu.gdb.i386.avx
    r("ymm0h", 128, "uint128", Avx, Reg::YmmHi(0)),
    r("ymm1h", 128, "uint128", Avx, Reg::YmmHi(1)),
    r("ymm2h", 128, "uint128", Avx, Reg::YmmHi(2)),
    r("ymm3h", 128, "uint128", Avx, Reg::YmmHi(3)),
    r("ymm4h", 128, "uint128", Avx, Reg::YmmHi(4)),
    r("ymm5h", 128, "uint128", Avx, Reg::YmmHi(5)),
    r("ymm6h", 128, "uint128", Avx, Reg::YmmHi(6)),
    r("ymm7h", 128, "uint128", Avx, Reg::YmmHi(7)),
    r("ymm8h", 128, "uint128", Avx, Reg::YmmHi(8)),
    r("ymm9h", 128, "uint128", Avx, Reg::YmmHi(9)),
    r("ymm10h", 128, "uint128", Avx, Reg::YmmHi(10)),
    r("ymm11h", 128, "uint128", Avx, Reg::YmmHi(11)),
    r("ymm12h", 128, "uint128", Avx, Reg::YmmHi(12)),
    r("ymm13h", 128, "uint128", Avx, Reg::YmmHi(13)),
    r("ymm14h", 128, "uint128", Avx, Reg::YmmHi(14)),
    r("ymm15h", 128, "uint128", Avx, Reg::YmmHi(15)),
];

/// Number of registers.
pub const NREGS: usize = 114;
const _: () = assert!(REGS.len() == NREGS);
/// Register number of RIP.
pub const RIP_REGNUM: usize = 16;

/// `gdbstub::arch::Arch` for ferrite's x86 machine.
pub enum FerriteX86 {}

impl Arch for FerriteX86 {
    type Usize = u64;
    type Registers = X86Regs;
    type RegId = X86RegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        static XML: OnceLock<String> = OnceLock::new();
        Some(XML.get_or_init(target_xml).as_str())
    }
}

/// Register values by register number (each at most 128 bits), and which ones a `G` packet
/// actually carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X86Regs {
    pub values: Box<[u128; NREGS]>,
    /// Bit n: register n holds a value (reads fill all; a short `G` packet fills a prefix).
    pub present: u128,
}

impl Default for X86Regs {
    fn default() -> Self {
        X86Regs { values: Box::new([0; NREGS]), present: 0 }
    }
}

impl X86Regs {
    pub fn has(&self, n: usize) -> bool {
        self.present & (1u128 << n) != 0
    }
    pub fn set(&mut self, n: usize, v: u128) {
        self.values[n] = v;
        self.present |= 1u128 << n;
    }
}

impl Registers for X86Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.values[RIP_REGNUM] as u64
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for (n, d) in REGS.iter().enumerate() {
            let bytes = self.values[n].to_le_bytes();
            for &b in &bytes[..d.bits / 8] {
                write_byte(Some(b));
            }
        }
    }

    /// Accepts any prefix of the layout (registers past the end of the packet are left
    /// untouched by the write), so a short packet is not an error.
    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut off = 0;
        for (n, d) in REGS.iter().enumerate() {
            let len = d.bits / 8;
            let Some(chunk) = bytes.get(off..off + len) else { break };
            let mut v = [0u8; 16];
            v[..len].copy_from_slice(chunk);
            self.set(n, u128::from_le_bytes(v));
            off += len;
        }
        Ok(())
    }
}

/// A register number (`p`/`P` packets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86RegId(pub usize);

impl RegId for X86RegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        let d = REGS.get(id)?;
        Some((X86RegId(id), NonZeroUsize::new(d.bits / 8)))
    }
    fn to_raw_id(&self) -> Option<usize> {
        Some(self.0)
    }
}

/// One-bit fields of a flags type: (name, bit).
type Fields = &'static [(&'static str, u32)];

const EFLAGS_FIELDS: Fields = &[
    ("CF", 0),
    ("", 1),
    ("PF", 2),
    ("AF", 4),
    ("ZF", 6),
    ("SF", 7),
    ("TF", 8),
    ("IF", 9),
    ("DF", 10),
    ("OF", 11),
    ("NT", 14),
    ("RF", 16),
    ("VM", 17),
    ("AC", 18),
    ("VIF", 19),
    ("VIP", 20),
    ("ID", 21),
];
const MXCSR_FIELDS: Fields = &[
    ("IE", 0),
    ("DE", 1),
    ("ZE", 2),
    ("OE", 3),
    ("UE", 4),
    ("PE", 5),
    ("DAZ", 6),
    ("IM", 7),
    ("DM", 8),
    ("ZM", 9),
    ("OM", 10),
    ("UM", 11),
    ("PM", 12),
    ("FZ", 15),
];
/// SDM Vol. 3, 2.5.
const CR0_FIELDS: Fields = &[
    ("PE", 0),
    ("MP", 1),
    ("EM", 2),
    ("TS", 3),
    ("ET", 4),
    ("NE", 5),
    ("WP", 16),
    ("AM", 18),
    ("NW", 29),
    ("CD", 30),
    ("PG", 31),
];
const CR4_FIELDS: Fields = &[
    ("VME", 0),
    ("PVI", 1),
    ("TSD", 2),
    ("DE", 3),
    ("PSE", 4),
    ("PAE", 5),
    ("MCE", 6),
    ("PGE", 7),
    ("PCE", 8),
    ("OSFXSR", 9),
    ("OSXMMEXCPT", 10),
    ("UMIP", 11),
    ("LA57", 12),
    ("VMXE", 13),
    ("SMXE", 14),
    ("FSGSBASE", 16),
    ("PCIDE", 17),
    ("OSXSAVE", 18),
    ("SMEP", 20),
    ("SMAP", 21),
    ("PKE", 22),
];
const EFER_FIELDS: Fields = &[("SCE", 0), ("LME", 8), ("LMA", 10), ("NXE", 11), ("SVME", 12), ("FFXSR", 14)];

fn flags_type(x: &mut String, id: &str, size: u32, fields: Fields) {
    let _ = writeln!(x, r#"<flags id="{id}" size="{size}">"#);
    for (name, bit) in fields {
        let _ = writeln!(x, r#"<field name="{name}" start="{bit}" end="{bit}"/>"#);
    }
    x.push_str("</flags>\n");
}

/// The target description: types, then each feature's registers in register-number order.
fn target_xml() -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n\
         <architecture>i386:x86-64</architecture>\n",
    );
    for feature in [Core, Sse, Segments, System, Avx] {
        let _ = writeln!(x, r#"<feature name="{}">"#, feature.name());
        match feature {
            Core => flags_type(&mut x, "i386_eflags", 4, EFLAGS_FIELDS),
            Sse => {
                x.push_str(concat!(
                    "<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>\n",
                    "<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>\n",
                    "<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>\n",
                    "<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>\n",
                    "<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>\n",
                    "<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>\n",
                    "<union id=\"vec128\">\n",
                    "<field name=\"v4_float\" type=\"v4f\"/>\n",
                    "<field name=\"v2_double\" type=\"v2d\"/>\n",
                    "<field name=\"v16_int8\" type=\"v16i8\"/>\n",
                    "<field name=\"v8_int16\" type=\"v8i16\"/>\n",
                    "<field name=\"v4_int32\" type=\"v4i32\"/>\n",
                    "<field name=\"v2_int64\" type=\"v2i64\"/>\n",
                    "<field name=\"uint128\" type=\"uint128\"/>\n",
                    "</union>\n",
                ));
                flags_type(&mut x, "i386_mxcsr", 4, MXCSR_FIELDS);
            }
            Segments | Avx => {}
            System => {
                flags_type(&mut x, "x86_cr0", 8, CR0_FIELDS);
                flags_type(&mut x, "x86_cr4", 8, CR4_FIELDS);
                flags_type(&mut x, "x86_efer", 8, EFER_FIELDS);
            }
        }
        for (n, d) in REGS.iter().enumerate().filter(|(_, d)| d.feature == feature) {
            let _ = write!(x, r#"<reg name="{}" bitsize="{}" type="{}" regnum="{n}""#, d.name, d.bits, d.ty);
            if let Some(group) = d.group {
                let _ = write!(x, r#" group="{group}""#);
            }
            x.push_str("/>\n");
        }
        x.push_str("</feature>\n");
    }
    x.push_str("</target>\n");
    x
}

/// Register number of a register name.
#[cfg(test)]
pub fn regnum(name: &str) -> Option<usize> {
    REGS.iter().position(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_amd64_core_then_sse() {
        assert_eq!(regnum("rip"), Some(RIP_REGNUM));
        assert_eq!(regnum("st0"), Some(24));
        assert_eq!(regnum("xmm0"), Some(40));
        assert_eq!(regnum("mxcsr"), Some(56));
        assert_eq!(regnum("fs_base"), Some(57));
        // The core + SSE part of a `g` packet is the classic 0x218 bytes.
        let core: usize = REGS[..57].iter().map(|d| d.bits / 8).sum();
        assert_eq!(core, 0x218);
    }

    #[test]
    fn serialize_round_trip_and_short_packets() {
        let mut regs = X86Regs::default();
        for n in 0..NREGS {
            regs.set(n, (n as u128 + 1) * 0x0101);
        }
        let mut bytes = Vec::new();
        regs.gdb_serialize(|b| bytes.push(b.unwrap()));
        let mut back = X86Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, regs);
        let mut short = X86Regs::default();
        short.gdb_deserialize(&bytes[..20]).unwrap();
        assert!(short.has(0) && short.has(1) && !short.has(2));
    }

    #[test]
    fn xml_numbers_every_register() {
        let xml = target_xml();
        assert!(xml.contains(r#"<reg name="rax" bitsize="64" type="int64" regnum="0"/>"#));
        assert!(xml.contains(r#"name="dr7" bitsize="64" type="uint64" regnum="97" group="system""#));
        assert_eq!(xml.matches("<reg ").count(), NREGS);
    }

    /// The core + SSE part is byte for byte the layout of `gdbstub_arch`'s amd64 registers.
    #[test]
    fn core_layout_matches_gdbstub_arch() {
        use gdbstub_arch::x86::reg::X86_64CoreRegs;
        let mut theirs = X86_64CoreRegs {
            regs: std::array::from_fn(|i| 0x1111 * (i as u64 + 1)),
            rip: 0xdead_beef,
            eflags: 0x246,
            ..Default::default()
        };
        theirs.segments.cs = 0x10;
        theirs.segments.gs = 0x2b;
        theirs.st[3] = [7; 10];
        theirs.fpu.fop = 0x55;
        theirs.xmm[15] = u128::MAX - 5;
        theirs.mxcsr = 0x1f80;
        let mut bytes = Vec::new();
        theirs.gdb_serialize(|b| bytes.push(b.unwrap()));
        let mut ours = X86Regs::default();
        ours.gdb_deserialize(&bytes).unwrap();
        assert_eq!(ours.values[regnum("rbx").unwrap()], 0x2222);
        assert_eq!(ours.values[regnum("rsp").unwrap()], 0x8888);
        assert_eq!(ours.values[RIP_REGNUM], 0xdead_beef);
        assert_eq!(ours.values[regnum("gs").unwrap()], 0x2b);
        assert_eq!(ours.values[regnum("st3").unwrap()], u128::from_le_bytes([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ours.values[regnum("fop").unwrap()], 0x55);
        assert_eq!(ours.values[regnum("xmm15").unwrap()], u128::MAX - 5);
        assert_eq!(ours.values[regnum("mxcsr").unwrap()], 0x1f80);
        let mut again = Vec::new();
        ours.gdb_serialize(|b| again.push(b.unwrap()));
        assert_eq!(&again[..bytes.len()], &bytes[..]);
    }
}
