//! Saved state of one vCPU (snapshots and live migration): every architectural register
//! (`CpuState`, RFLAGS with its condition codes evaluated) and the execution state between
//! instructions (HLT, wait-for-SIPI, the interrupt and MOV SS shadows, NMI latches, held debug
//! traps, the instruction count).
//!
//! Not carried: the caches (TLBs of every PCID, decoded blocks and compiled code, the jump
//! cache), which restore drops; the configuration the embedder gives (`model`, APIC ID,
//! topology, JIT settings, `log_interrupts`); the gdbstub's breakpoints and watchpoints; the
//! A20 mask and memory map generation, which are the bus's and are compared again before the
//! next block. The CPU model is compared, not restored: a state saved under another `-cpu`
//! is refused.
//!
//! The time stamp counter is the bus's guest clock (`CpuBus::now_ns`) at the saved rate
//! (`tsc_hz`, adopted on restore) plus `msr.tsc_offset`,
//! so it carries on where it stopped once the machine's guest clock is restored too.

use crate::guest_debug::HELD_TRAP_BITS;
use crate::interp::x87::xsave::MXCSR_MASK;
use crate::mmu::MAX_PHYS_BITS;
use crate::state::{cr0, cr4, efer, flags, CpuState, FpuState, Msrs, Segment, TableReg};
use crate::{xstate, Cpu, Seg};
use ferrite_persist::{Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// The CPU model a state was saved under (configuration, compared on restore).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSnapshot {
    /// For messages only.
    pub name: String,
    pub vendor: String,
    /// CPUID leaves 1 (ECX, EDX), 7 (EBX, ECX, EDX) and 80000001H (ECX, EDX), see
    /// [`crate::CpuModel::feature_words`].
    pub features: [u32; 7],
}

/// x87, MMX, SSE and AVX registers. Wide registers are hexadecimal strings, most significant
/// digit first (JSON numbers stop at 64 bits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FpuSnapshot {
    /// Physical registers R0-R7 (not stack order) as 80-bit extended reals: 20 digits, sign
    /// and exponent first, then the significand.
    pub st: Vec<String>,
    pub fcw: u16,
    pub fsw: u16,
    /// Full tag word (2 bits per register).
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fdp: u64,
    pub fcs: u16,
    pub fds: u16,
    pub mxcsr: u32,
    /// XMM0-XMM15: 32 digits each.
    pub xmm: Vec<String>,
    /// Bits 255:128 of YMM0-YMM15: 32 digits each.
    pub ymm_hi: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSnapshot {
    pub model: ModelSnapshot,
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15.
    pub gpr: [u64; 16],
    pub rip: u64,
    /// Architectural RFLAGS, condition codes included.
    pub rflags: u64,
    /// Segment registers with their hidden descriptor caches.
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub xcr0: u64,
    pub pkru: u32,
    pub xinuse: u64,
    pub dr: [u64; 8],
    pub msr: Msrs,
    pub fpu: FpuSnapshot,
    /// Waiting in HLT.
    pub halted: bool,
    /// After INIT, waiting for a start-up IPI.
    pub wait_for_sipi: bool,
    /// The next instruction runs with interrupts blocked (STI, MOV SS, POP SS).
    pub interrupt_shadow: bool,
    pub nmi_pending: bool,
    /// NMIs blocked until the next IRET.
    pub nmi_blocked: bool,
    /// An external interrupt acknowledged but not yet delivered (from KVM), if any.
    pub injected_interrupt: Option<u8>,
    /// The TSC's rate: a machine that ran under KVM ticks at its host's rate, which ferrite's
    /// CPU then adopts (the guest calibrated its clocks by it).
    pub tsc_hz: u64,
    /// MOV SS/POP SS hold debug traps until after the next instruction.
    pub debug_mov_ss_shadow: bool,
    /// DR6 bits (B0-B3, BS) of the debug trap held back by that shadow; 0 if none.
    pub debug_held_traps: u64,
    /// Instructions retired.
    pub instructions: u64,
}

impl Persist for Cpu {
    const SECTION: &'static str = "cpu";
    const VERSION: u32 = 2;
    type State = CpuSnapshot;

    fn save(&self) -> CpuSnapshot {
        let st = &self.state;
        let f = &st.fpu;
        let seg = |s: Seg| st.seg[s as usize];
        let (mov_ss, held) = self.dbg.held();
        CpuSnapshot {
            model: self.model_snapshot(),
            gpr: st.gpr,
            rip: st.rip,
            rflags: self.rflags(),
            es: seg(Seg::Es),
            cs: seg(Seg::Cs),
            ss: seg(Seg::Ss),
            ds: seg(Seg::Ds),
            fs: seg(Seg::Fs),
            gs: seg(Seg::Gs),
            ldtr: st.ldtr,
            tr: st.tr,
            gdtr: st.gdtr,
            idtr: st.idtr,
            cr0: st.cr0,
            cr2: st.cr2,
            cr3: st.cr3,
            cr4: st.cr4,
            cr8: st.cr8,
            efer: st.efer,
            xcr0: st.xcr0,
            pkru: st.pkru,
            xinuse: st.xinuse,
            dr: st.dr,
            msr: st.msr,
            fpu: FpuSnapshot {
                st: f.st.iter().map(|r| format!("{:020x}", extended(r))).collect(),
                fcw: f.fcw,
                fsw: f.fsw,
                ftw: f.ftw,
                fop: f.fop,
                fip: f.fip,
                fdp: f.fdp,
                fcs: f.fcs,
                fds: f.fds,
                mxcsr: f.mxcsr,
                xmm: f.xmm.iter().map(|x| format!("{x:032x}")).collect(),
                ymm_hi: f.ymm_hi.iter().map(|x| format!("{x:032x}")).collect(),
            },
            halted: self.halted,
            wait_for_sipi: self.wait_for_sipi,
            interrupt_shadow: self.interrupt_shadow,
            nmi_pending: self.nmi_pending,
            nmi_blocked: self.nmi_blocked,
            injected_interrupt: self.injected_interrupt,
            tsc_hz: self.model.tsc_hz,
            debug_mov_ss_shadow: mov_ss,
            debug_held_traps: held,
            instructions: self.instructions,
        }
    }

    fn restore(&mut self, s: CpuSnapshot) -> Result<(), RestoreError> {
        let state = self.check(&s)?;
        // Drops the lazy condition codes (`state.rflags` is exact), the derived debug state,
        // and every translation of every PCID with the jump cache.
        self.set_state(state);
        // Decoded blocks and compiled code are keyed by physical address, and the guest memory
        // under them is being replaced too.
        self.code.clear();
        self.halted = s.halted;
        self.wait_for_sipi = s.wait_for_sipi;
        self.interrupt_shadow = s.interrupt_shadow;
        self.nmi_pending = s.nmi_pending;
        self.nmi_blocked = s.nmi_blocked;
        self.injected_interrupt = s.injected_interrupt;
        self.model.tsc_hz = s.tsc_hz;
        self.dbg.set_held(s.debug_mov_ss_shadow, s.debug_held_traps);
        self.instructions = s.instructions;
        self.end_block = false;
        Ok(())
    }
}

/// An 80-bit register's bytes (significand, then sign and exponent) as one number.
fn extended(r: &[u8; 10]) -> u128 {
    let mut b = [0u8; 16];
    b[..10].copy_from_slice(r);
    u128::from_le_bytes(b)
}

/// `n` registers of `digits` hexadecimal digits each.
fn parse_regs(field: &'static str, v: &[String], n: usize, digits: usize) -> Result<Vec<u128>, RestoreError> {
    if v.len() != n {
        return Err(RestoreError::invalid(field, format!("{} registers, expected {n}", v.len())));
    }
    v.iter()
        .enumerate()
        .map(|(i, s)| {
            if s.len() != digits || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(RestoreError::invalid(field, format!("register {i}: {s:?} is not {digits} hexadecimal digits")));
            }
            Ok(u128::from_str_radix(s, 16).expect("checked digits"))
        })
        .collect()
}

fn refuse(field: &'static str, what: &str, value: u64) -> Result<(), RestoreError> {
    Err(RestoreError::invalid(field, format!("{value:#x}: {what}")))
}

impl Cpu {
    fn model_snapshot(&self) -> ModelSnapshot {
        ModelSnapshot {
            name: self.model.name.clone(),
            vendor: String::from_utf8_lossy(&self.model.vendor).into_owned(),
            features: self.model.feature_words(),
        }
    }

    /// The state `s` describes, if this CPU could have been in it: nothing the interpreter
    /// relies on (the invariants MOV to CR, WRMSR and XSETBV keep) is broken.
    fn check(&self, s: &CpuSnapshot) -> Result<CpuState, RestoreError> {
        let here = self.model_snapshot();
        if (&s.model.vendor, s.model.features) != (&here.vendor, here.features) {
            return Err(RestoreError::invalid(
                "model",
                format!(
                    "saved with -cpu {} ({}, features {:08x?}), this machine has -cpu {} ({}, features {:08x?})",
                    s.model.name, s.model.vendor, s.model.features, here.name, here.vendor, here.features
                ),
            ));
        }
        if !(1_000_000..=100_000_000_000).contains(&s.tsc_hz) {
            refuse("tsc_hz", "a TSC rate outside 1 MHz-100 GHz", s.tsc_hz)?;
        }
        if s.rflags & !(flags::WRITABLE | flags::FIXED1) != 0 || s.rflags & flags::FIXED1 == 0 {
            refuse("rflags", "reserved bits", s.rflags)?;
        }
        let c0 = s.cr0;
        if c0 & !(cr0::WRITABLE | cr0::ET) != 0 || c0 & cr0::ET == 0 {
            refuse("cr0", "reserved bits", c0)?;
        }
        if c0 & cr0::PG != 0 && c0 & cr0::PE == 0 {
            refuse("cr0", "paging without protection", c0)?;
        }
        if c0 & cr0::NW != 0 && c0 & cr0::CD == 0 {
            refuse("cr0", "NW without CD", c0)?;
        }
        if s.cr3 >> MAX_PHYS_BITS != 0 {
            refuse("cr3", "reserved bits", s.cr3)?;
        }
        if s.cr4 & !self.cr4_allowed() != 0 {
            refuse("cr4", "bits this CPU model does not support", s.cr4)?;
        }
        if s.cr8 & !0xf != 0 {
            refuse("cr8", "reserved bits", s.cr8)?;
        }
        if s.efer & !(self.efer_allowed() | efer::LMA) != 0 {
            refuse("efer", "bits this CPU model does not support", s.efer)?;
        }
        let lma = s.efer & efer::LMA != 0;
        if lma != (c0 & cr0::PG != 0 && s.efer & efer::LME != 0) {
            refuse("efer", "LMA does not match CR0.PG and EFER.LME", s.efer)?;
        }
        if lma && s.cr4 & cr4::PAE == 0 {
            refuse("cr4", "long mode without PAE", s.cr4)?;
        }
        if s.cr4 & cr4::PCIDE != 0 && !lma {
            refuse("cr4", "PCIDE outside long mode", s.cr4)?;
        }
        let xcr0 = s.xcr0;
        if xcr0 & !xstate::supported_xcr0(&self.model) != 0
            || xcr0 & xstate::X87 == 0
            || (xcr0 & xstate::AVX != 0 && xcr0 & xstate::SSE == 0)
        {
            refuse("xcr0", "not a value XSETBV accepts on this CPU model", xcr0)?;
        }
        if s.msr.xss & !xstate::supported_xss(&self.model) != 0 {
            refuse("msr.xss", "state components this CPU model does not support", s.msr.xss)?;
        }
        if s.xinuse & !xstate::supported_xcr0(&self.model) != 0 {
            refuse("xinuse", "state components this CPU model does not support", s.xinuse)?;
        }
        if s.fpu.mxcsr & !MXCSR_MASK != 0 {
            refuse("fpu.mxcsr", "reserved bits", s.fpu.mxcsr as u64)?;
        }
        if s.debug_held_traps & !HELD_TRAP_BITS != 0 {
            refuse("debug_held_traps", "not DR6 breakpoint or single-step bits", s.debug_held_traps)?;
        }
        let st = parse_regs("fpu.st", &s.fpu.st, 8, 20)?;
        let xmm = parse_regs("fpu.xmm", &s.fpu.xmm, 16, 32)?;
        let ymm_hi = parse_regs("fpu.ymm_hi", &s.fpu.ymm_hi, 16, 32)?;
        let f = &s.fpu;
        let mut fpu = FpuState {
            fcw: f.fcw,
            fsw: f.fsw,
            ftw: f.ftw,
            fop: f.fop,
            fip: f.fip,
            fdp: f.fdp,
            fcs: f.fcs,
            fds: f.fds,
            mxcsr: f.mxcsr,
            ..FpuState::default()
        };
        for (r, v) in fpu.st.iter_mut().zip(st) {
            r.copy_from_slice(&v.to_le_bytes()[..10]);
        }
        fpu.xmm.copy_from_slice(&xmm);
        fpu.ymm_hi.copy_from_slice(&ymm_hi);
        Ok(CpuState {
            gpr: s.gpr,
            rip: s.rip,
            rflags: s.rflags,
            seg: [s.es, s.cs, s.ss, s.ds, s.fs, s.gs],
            ldtr: s.ldtr,
            tr: s.tr,
            gdtr: s.gdtr,
            idtr: s.idtr,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: s.cr8,
            efer: s.efer,
            xcr0: s.xcr0,
            pkru: s.pkru,
            xinuse: s.xinuse,
            dr: s.dr,
            msr: s.msr,
            fpu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::reg;
    use crate::testing::{FlatBus, LineBus};
    use crate::{CpuModel, RunExit};
    use ferrite_persist::{load, save, LoadError};
    use iced_x86::code_asm::*;

    /// A real-mode CPU at 0000:1000 running `code`, with the handler of vector 20H at
    /// 0000:2000.
    fn setup(code: impl FnOnce(&mut CodeAssembler), handler: impl FnOnce(&mut CodeAssembler)) -> (Cpu, FlatBus) {
        let mut bus = FlatBus::new(0x10000);
        for (at, f) in [(0x1000u64, Box::new(code) as Box<dyn FnOnce(&mut CodeAssembler)>), (0x2000, Box::new(handler))] {
            let mut a = CodeAssembler::new(16).unwrap();
            f(&mut a);
            bus.load(at, &a.assemble(at).unwrap());
        }
        bus.load(0x20 * 4, &[0x00, 0x20, 0x00, 0x00]);
        let mut cpu = Cpu::default();
        let mut st = cpu.state.clone();
        let code_attrs = st.seg[Seg::Cs as usize].attrs;
        st.seg[Seg::Cs as usize] = Segment::real_mode(0, code_attrs);
        st.rip = 0x1000;
        st.gpr[reg::RSP] = 0x8000;
        cpu.set_state(st);
        (cpu, bus)
    }

    fn copy(bus: &FlatBus) -> FlatBus {
        let mut b = FlatBus::new(bus.ram.len());
        b.ram.copy_from_slice(&bus.ram);
        b
    }

    #[test]
    fn a_restored_cpu_runs_on_exactly_like_the_original() {
        let (mut cpu, mut bus) = setup(
            |a| {
                a.mov(ax, 5).unwrap();
                a.add(ax, 0xfffe).unwrap();
                a.sti().unwrap();
                // In STI's shadow: runs before the pending interrupt, with the lazy CF.
                a.adc(cx, 0).unwrap();
                a.pushf().unwrap();
                a.pop(dx).unwrap();
                a.hlt().unwrap();
            },
            |a| {
                a.mov(si, 0x77).unwrap();
                a.iret().unwrap();
            },
        );
        assert_eq!(cpu.run(&mut bus, 3), RunExit::Budget);
        assert!(cpu.interrupt_shadow);
        assert!(cpu.state.rflags & flags::CF == 0 && cpu.rflags() & flags::CF != 0, "CF is still lazy");

        let section = save(&cpu, "cpu0");
        let mut restored = Cpu::default();
        load(&mut restored, &section).unwrap();
        assert!(restored.interrupt_shadow);
        assert_eq!(restored.rflags(), cpu.rflags());
        assert_eq!(save(&restored, "cpu0"), section);

        let mut bus2 = copy(&bus);
        for (c, b) in [(&mut cpu, &mut bus), (&mut restored, &mut bus2)] {
            let attention = c.attention();
            attention.intr.store(true, std::sync::atomic::Ordering::Release);
            let mut lb = LineBus { ram: b, attention: &attention, vector: 0x20 };
            assert_eq!(c.run(&mut lb, 100), RunExit::Halted);
            c.materialize_flags();
        }
        assert_eq!(cpu.state.gpr[reg::RCX], 1, "ADC ran in the shadow with CF set");
        assert_eq!(cpu.state.gpr[reg::RSI], 0x77, "the interrupt came after it");
        assert_eq!(restored.state, cpu.state);
        assert_eq!((restored.instructions, restored.halted), (cpu.instructions, true));
        assert_eq!(bus2.ram, bus.ram);

        // The halted CPU stays halted where it stopped.
        let section = save(&cpu, "cpu0");
        let mut again = Cpu::default();
        load(&mut again, &section).unwrap();
        let before = again.instructions;
        assert_eq!(again.run(&mut copy(&bus), 100), RunExit::Halted);
        assert_eq!((again.instructions, again.state.rip), (before, cpu.state.rip));
    }

    /// A CPU in long mode with non-trivial values in every register file.
    fn busy_cpu() -> Cpu {
        let mut cpu = Cpu::default();
        let mut st = cpu.state.clone();
        for (i, r) in st.gpr.iter_mut().enumerate() {
            *r = 0x0123_4567_89ab_cdef_u64.rotate_left(i as u32 * 5);
        }
        st.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE | cr0::WP;
        st.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXSAVE | cr4::PCIDE;
        st.cr3 = 0x5000 | 7;
        st.efer = efer::LME | efer::LMA | efer::NXE | efer::SCE;
        st.xcr0 = xstate::X87 | xstate::SSE | xstate::AVX;
        st.seg[Seg::Fs as usize].base = 0xffff_8000_1234_5000;
        st.msr.lstar = 0xffff_ffff_8100_0000;
        st.msr.mtrr_var[15] = 0xf_ffff_f800;
        st.dr[0] = 0x4000;
        st.dr[7] = 0x400 | 1 | (1 << 16);
        let f = &mut st.fpu;
        for (i, r) in f.st.iter_mut().enumerate() {
            *r = [0x80 | i as u8, 1, 2, 3, 4, 5, 6, 0xc0, 0xff, 0x3f | (i as u8) << 4];
        }
        for i in 0..16 {
            f.xmm[i] = 0xfedc_ba98_7654_3210_0f1e_2d3c_4b5a_6978_u128.rotate_left(i as u32 * 8 + 1);
            f.ymm_hi[i] = !f.xmm[i] ^ (1u128 << 127);
        }
        (f.fcw, f.fsw, f.ftw, f.fop) = (0x027f, 0x3a21, 0x5aff, 0x7ff);
        (f.fip, f.fdp, f.fcs, f.fds, f.mxcsr) = (0x1_0000_0001, 0xffff_0000_0002, 0x33, 0x2b, 0x9fc0);
        cpu.set_state(st);
        cpu.nmi_blocked = true;
        cpu
    }

    #[test]
    fn vector_and_x87_registers_survive_exactly() {
        let cpu = busy_cpu();
        // Through JSON text, as a snapshot file carries it.
        let text = serde_json::to_string(&save(&cpu, "cpu1")).unwrap();
        assert!(text.contains(&format!("{:032x}", cpu.state.fpu.ymm_hi[3])), "{text}");
        let mut restored = Cpu::default();
        load(&mut restored, &serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(restored.state, cpu.state);
        assert_eq!(restored.state.fpu.st[7], [0x87, 1, 2, 3, 4, 5, 6, 0xc0, 0xff, 0x7f]);
        assert!(restored.nmi_blocked && !restored.nmi_pending);
        assert_eq!(restored.tlb_pcid, 7, "the TLB belongs to the restored PCID");
    }

    #[test]
    fn corrupted_sections_are_refused_naming_the_field_and_change_nothing() {
        let saved = save(&busy_cpu(), "cpu0");
        let mut cpu = busy_cpu();
        cpu.halted = true;
        let before = save(&cpu, "cpu0");
        let refused = |cpu: &mut Cpu, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut s = saved.clone();
            edit(&mut s.state);
            let e = load(cpu, &s).unwrap_err();
            assert_eq!(save(cpu, "cpu0"), before, "{e}");
            e
        };
        let e = refused(&mut cpu, &|s| s["turbo"] = true.into()).to_string();
        assert!(e.contains("unknown field `turbo`"), "{e}");
        let e = refused(&mut cpu, &|s| _ = s.as_object_mut().unwrap().remove("nmi_blocked")).to_string();
        assert!(e.contains("missing field `nmi_blocked`"), "{e}");
        let e = refused(&mut cpu, &|s| _ = s["fpu"].as_object_mut().unwrap().remove("mxcsr")).to_string();
        assert!(e.contains("missing field `mxcsr`"), "{e}");
        let e = refused(&mut cpu, &|s| s["cs"]["hidden"] = 1.into()).to_string();
        assert!(e.contains("unknown field `hidden`"), "{e}");

        let invalid = |e: LoadError, field: &str| match e {
            LoadError::Refused { source: RestoreError::Invalid { field: f, reason }, .. } => assert_eq!(f, field, "{reason}"),
            e => panic!("{e}"),
        };
        invalid(refused(&mut cpu, &|s| s["fpu"]["st"].as_array_mut().unwrap().push("0".repeat(20).into())), "fpu.st");
        invalid(refused(&mut cpu, &|s| s["fpu"]["xmm"][3] = "12345".into()), "fpu.xmm");
        invalid(refused(&mut cpu, &|s| s["fpu"]["ymm_hi"][0] = format!("+{}", "0".repeat(31)).into()), "fpu.ymm_hi");
        invalid(refused(&mut cpu, &|s| s["cr0"] = (cr0::PG | cr0::ET).into()), "cr0");
        invalid(refused(&mut cpu, &|s| s["efer"] = (efer::LME | efer::NXE).into()), "efer");
        invalid(refused(&mut cpu, &|s| s["cr4"] = (cr4::PCIDE | 1 << 30).into()), "cr4");
        invalid(refused(&mut cpu, &|s| s["xcr0"] = (xstate::X87 | xstate::AVX).into()), "xcr0");
        invalid(refused(&mut cpu, &|s| s["rflags"] = 0.into()), "rflags");
        invalid(refused(&mut cpu, &|s| s["fpu"]["mxcsr"] = 0x10000.into()), "fpu.mxcsr");
        invalid(refused(&mut cpu, &|s| s["debug_held_traps"] = (1u64 << 13).into()), "debug_held_traps");

        // A state saved under another -cpu.
        let mut other = Cpu::new(CpuModel::qemu64());
        let e = load(&mut other, &saved).unwrap_err().to_string();
        assert!(e.contains("field `model`: saved with -cpu max") && e.contains("this machine has -cpu qemu64"), "{e}");

        load(&mut cpu, &saved).unwrap();
        assert_eq!(save(&cpu, "cpu0"), saved);
    }
}
