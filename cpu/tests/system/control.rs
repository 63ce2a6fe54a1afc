//! HLT, MOV to/from control and debug registers, LMSW/SMSW/CLTS, INVLPG and the CPL checks
//! of the privileged instructions.

use super::harness::*;
use ferrite_cpu::bus::{CpuBus, PhysPage};
use ferrite_cpu::state::{cr0, cr4, efer, reg::*, Seg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::RunExit;
use iced_x86::code_asm::*;

const EFER_MSR: u32 = 0xc000_0080;

/// The architectural sequence from protected mode: PAE, CR3, EFER.LME, CR0.PG. LMA reads
/// back set and the CPU is in compatibility mode until a far jump.
#[test]
fn enabling_paging_with_lme_activates_long_mode() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, _| {
        a.mov(eax, cr4).unwrap();
        a.or(eax, cr4::PAE as i32).unwrap();
        a.mov(cr4, eax).unwrap();
        a.mov(eax, PML4 as u32).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(ecx, EFER_MSR).unwrap();
        a.rdmsr().unwrap();
        a.or(eax, efer::LME as i32).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(eax, cr0::PG as u32 as i32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.rdmsr().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(RAX) & (efer::LMA | efer::LME), efer::LMA | efer::LME);
    assert!(m.cpu.state.long_mode_active());
    assert!(!m.cpu.state.in_64bit());
    assert_eq!(m.cpu.state.cr0 & cr0::PG, cr0::PG);
}

#[test]
fn long_mode_activation_without_pae_faults() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.cpu.state.efer = efer::LME;
    m.code(|a, mark| {
        a.mov(eax, cr0).unwrap();
        a.or(eax, cr0::PG as u32 as i32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, eax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.cr0 & cr0::PG, 0);
    assert!(!m.cpu.state.long_mode_active());
}

/// Leaving long mode from compatibility mode clears LMA; clearing PG in 64-bit mode faults.
#[test]
fn clearing_pg_leaves_long_mode_only_from_compatibility_mode() {
    let mut m = Machine::new(Mode::Long64, 0);
    m.set_seg(Seg::Cs, sel::KCODE32);
    m.code_bits(CODE, 32, |a, _| {
        a.mov(eax, cr0).unwrap();
        a.and(eax, 0x7fff_ffff).unwrap();
        a.mov(cr0, eax).unwrap();
        a.mov(ecx, EFER_MSR).unwrap();
        a.rdmsr().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(RAX) & (efer::LMA | efer::LME), efer::LME);
    assert!(!m.cpu.state.paging());

    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, mark| {
        a.mov(rax, cr0).unwrap();
        a.and(eax, 0x7fff_ffff).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, rax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert!(m.cpu.state.long_mode_active());
}

/// Runs `f`'s code at CPL 0 and expects #GP(0) at the marked instruction.
fn expect_gp(mode: Mode, cpl: u8, f: impl FnOnce(&mut CodeAssembler, &mut CodeLabel)) -> Machine {
    let mut m = Machine::new(mode, cpl);
    m.code(f);
    m.expect_fault(GP, Some(0));
    m
}

#[test]
fn control_register_reserved_bits_and_invalid_combinations() {
    // PCIDE is reserved in a model without PCID (CPUID.1:ECX[17]).
    let mut m = Machine::new(Mode::Long64, 0);
    m.cpu.model.set_feature("pcid", false).unwrap();
    m.code(|a, mark| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, 1 << 17).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, rax).unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.cr4, cr4::PAE);
    // LA57 (bit 12) is reserved too.
    expect_gp(Mode::Prot32, 0, |a, mark| {
        a.mov(eax, 1 << 12).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, eax).unwrap();
    });
    // PAE cannot be cleared in long mode.
    expect_gp(Mode::Long64, 0, |a, mark| {
        a.xor(eax, eax).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, rax).unwrap();
    });
    // NW without CD.
    expect_gp(Mode::Prot32, 0, |a, mark| {
        a.mov(eax, cr0).unwrap();
        a.and(eax, !(cr0::CD as u32) as i32).unwrap();
        a.or(eax, cr0::NW as i32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, eax).unwrap();
    });
    // CR0[63:32], CR3 bits above MAXPHYADDR (bit 63 included without CR4.PCIDE), CR8[63:4].
    expect_gp(Mode::Long64, 0, |a, mark| {
        a.mov(rax, cr0).unwrap();
        a.mov(rcx, 1u64 << 32).unwrap();
        a.or(rax, rcx).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, rax).unwrap();
    });
    expect_gp(Mode::Long64, 0, |a, mark| {
        a.mov(rax, cr3).unwrap();
        a.mov(rcx, 1u64 << 63).unwrap();
        a.or(rax, rcx).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr3, rax).unwrap();
    });
    expect_gp(Mode::Long64, 0, |a, mark| {
        a.mov(eax, 0x10).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr8, rax).unwrap();
    });
    // A feature the model lacks makes its CR4 bit reserved.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.cpu.model.set_feature("smep", false).unwrap();
    m.code(|a, mark| {
        a.mov(eax, cr4::SMEP as u32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, eax).unwrap();
    });
    m.expect_fault(GP, Some(0));
}

/// LOCK MOV CR0 is AMD's alias for CR8; without that feature it is #UD.
#[test]
fn lock_mov_cr0_is_undefined() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.db(&[0xf0, 0x0f, 0x22, 0xc0]).unwrap();
    });
    m.expect_fault(UD, None);
}

#[test]
fn pg_without_pe_faults_in_real_mode() {
    let mut m = Machine::new(Mode::Real, 0);
    m.code(|a, mark| {
        a.mov(eax, 0x8000_0001u32).unwrap();
        a.and(eax, 0x8000_0000u32 as i32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, eax).unwrap();
    });
    m.expect_fault(GP, None);
    assert!(!m.cpu.state.protected());
}

/// Writes to the reserved bits of CR0[31:0] are ignored and ET stays set; MOV from CR0
/// outside 64-bit mode yields 32 bits.
#[test]
fn cr0_reserved_low_bits_are_ignored() {
    let mut m = Machine::new(Mode::Prot32, 0);
    let before = m.cpu.state.cr0;
    m.code(|a, _| {
        a.mov(eax, cr0).unwrap();
        a.or(eax, 0xffc0).unwrap();
        a.and(eax, !(cr0::ET as u32) as i32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.mov(ebx, cr0).unwrap();
        a.mov(ecx, cr2).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.state.cr2 = 0x1234_5678_9abc;
    m.expect_halt();
    assert_eq!(m.gpr(RBX), before);
    assert_eq!(m.gpr(RCX), 0x5678_9abc);
}

/// A bus that records TPR writes (CR8).
struct TprBus<'a> {
    inner: &'a mut FlatBus,
    tpr: Vec<u8>,
}

impl CpuBus for TprBus<'_> {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        self.inner.phys_page(paddr)
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.inner.mmio_read(paddr, size)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.inner.mmio_write(paddr, size, value)
    }
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        self.inner.io_read(port, size)
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.inner.io_write(port, size, value)
    }
    fn set_tpr(&mut self, value: u8) {
        self.tpr.push(value);
    }
}

#[test]
fn cr8_is_the_task_priority() {
    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, _| {
        a.mov(eax, 9).unwrap();
        a.mov(cr8, rax).unwrap();
        a.mov(rbx, cr8).unwrap();
        a.hlt().unwrap();
    });
    let mut bus = TprBus { inner: &mut m.bus, tpr: Vec::new() };
    assert_eq!(m.cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!(bus.tpr, vec![9]);
    assert_eq!(m.cpu.state.cr8, 9);
    assert_eq!(m.cpu.state.gpr[RBX], 9);
}

/// The 2 MiB page at 6 MiB is remapped to physical 4 MiB behind the TLB's back: a stale
/// translation survives until CR3 is reloaded (non-global) or INVLPG / a CR4.PGE toggle
/// (global). (The soft TLB is direct-mapped: LIN's slot must not be shared with the code,
/// stack or page-table pages used meanwhile.)
#[test]
fn cr3_invlpg_and_pge_flush_the_tlb() {
    const LIN: u64 = 0x60_5000;
    const PDE3: u64 = PD + 3 * 8;
    for global in [false, true] {
        let mut m = Machine::new(Mode::Long64, 0);
        m.bus.load(0x60_5000, &0x1111u64.to_le_bytes());
        m.bus.load(0x40_5000, &0x2222u64.to_le_bytes());
        let g = if global { 0x100 } else { 0 };
        m.bus.load(PDE3, &(0x60_0087u64 | g).to_le_bytes());
        if global {
            m.cpu.state.cr4 |= cr4::PGE;
        }
        m.code(|a, _| {
            a.mov(r8, qword_ptr(LIN)).unwrap();
            a.mov(rax, 0x40_0087u64 | g).unwrap();
            a.mov(qword_ptr(PDE3), rax).unwrap();
            a.mov(r9, qword_ptr(LIN)).unwrap();
            a.mov(rax, cr3).unwrap();
            a.mov(cr3, rax).unwrap();
            a.mov(r10, qword_ptr(LIN)).unwrap();
            a.invlpg(qword_ptr(LIN)).unwrap();
            a.mov(r11, qword_ptr(LIN)).unwrap();
            // Back to the old mapping: a PGE toggle drops global entries as well.
            a.mov(rax, 0x60_0087u64 | g).unwrap();
            a.mov(qword_ptr(PDE3), rax).unwrap();
            a.mov(rax, cr4).unwrap();
            a.xor(rax, cr4::PGE as i32).unwrap();
            a.mov(cr4, rax).unwrap();
            a.mov(r12, qword_ptr(LIN)).unwrap();
            a.hlt().unwrap();
        });
        m.expect_halt();
        let s = &m.cpu.state.gpr;
        assert_eq!(s[8], 0x1111);
        assert_eq!(s[9], 0x1111, "stale entry before any flush");
        assert_eq!(s[10], if global { 0x1111 } else { 0x2222 }, "CR3 reload, global={global}");
        assert_eq!(s[11], 0x2222, "INVLPG");
        assert_eq!(s[12], 0x1111, "CR4.PGE toggle");
    }
}

#[test]
fn debug_registers() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, _| {
        a.mov(eax, 0xffff_dfffu32).unwrap();
        a.mov(dr7, eax).unwrap();
        a.mov(ebx, dr7).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(dr6, eax).unwrap();
        a.mov(ecx, dr4).unwrap(); // DR4 aliases DR6 while CR4.DE = 0
        a.mov(eax, 0x1234_5678).unwrap();
        a.mov(dr2, eax).unwrap();
        a.mov(edx, dr2).unwrap();
        a.mov(esi, dr5).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    // DR7: bit 10 reads 1; bits 11, 12, 14 and 15 read 0.
    assert_eq!(m.gpr(RBX), 0xffff_07ff);
    assert_eq!(m.gpr(RCX), 0xffff_0ff0);
    assert_eq!(m.gpr(RDX), 0x1234_5678);
    assert_eq!(m.gpr(RSI), 0xffff_07ff);

    // With CR4.DE, DR4 and DR5 are #UD.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.cpu.state.cr4 = cr4::DE;
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.mov(eax, dr5).unwrap();
    });
    m.expect_fault(UD, None);

    // DR7.GD: the next debug-register access is a #DB fault with DR6.BD set, GD cleared.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.mov(eax, 0x2000).unwrap();
        a.mov(dr7, eax).unwrap();
        a.set_label(mark).unwrap();
        a.mov(ebx, dr0).unwrap();
    });
    m.expect_fault(DB, None);
    assert_eq!(m.cpu.state.dr[6] & 0x2000, 0x2000);
    assert_eq!(m.cpu.state.dr[7] & 0x2000, 0);

    // DR6/DR7 bits 63:32 are reserved in 64-bit mode.
    expect_gp(Mode::Long64, 0, |a, mark| {
        a.mov(rax, 1u64 << 32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(dr7, rax).unwrap();
    });
}

/// Privileged instructions at CPL 3 raise #GP(0), delivered through the IDT onto the
/// ring-0 stack from the TSS.
#[test]
fn privileged_instructions_fault_at_cpl3() {
    type Snippet = fn(&mut CodeAssembler);
    let common: &[(&str, Snippet)] = &[
        ("hlt", |a| a.hlt().unwrap()),
        ("clts", |a| a.clts().unwrap()),
        ("invd", |a| a.invd().unwrap()),
        ("wbinvd", |a| a.wbinvd().unwrap()),
        ("rdmsr", |a| a.rdmsr().unwrap()),
        ("wrmsr", |a| a.wrmsr().unwrap()),
        ("lmsw", |a| a.lmsw(ax).unwrap()),
        ("lldt", |a| a.lldt(ax).unwrap()),
        ("ltr", |a| a.ltr(ax).unwrap()),
        ("sysexit", |a| a.sysexit().unwrap()),
    ];
    let prot: &[(&str, Snippet)] = &[
        ("mov cr0", |a| a.mov(cr0, eax).unwrap()),
        ("mov from cr3", |a| a.mov(eax, cr3).unwrap()),
        ("mov dr0", |a| a.mov(dr0, eax).unwrap()),
        ("lgdt", |a| a.lgdt(dword_ptr(DATA)).unwrap()),
        ("lidt", |a| a.lidt(dword_ptr(DATA)).unwrap()),
        ("invlpg", |a| a.invlpg(byte_ptr(DATA)).unwrap()),
    ];
    let long: &[(&str, Snippet)] = &[
        ("mov cr8", |a| a.mov(cr8, rax).unwrap()),
        ("mov from cr4", |a| a.mov(rax, cr4).unwrap()),
        ("mov from dr7", |a| a.mov(rax, dr7).unwrap()),
        ("lgdt", |a| a.lgdt(qword_ptr(DATA)).unwrap()),
        ("swapgs", |a| a.swapgs().unwrap()),
        ("sysretq", |a| a.sysretq().unwrap()),
    ];
    for (mode, list) in [(Mode::Prot32, common), (Mode::Prot32, prot), (Mode::Long64, common), (Mode::Long64, long)] {
        for (name, emit) in list {
            let mut m = Machine::new(mode, 3);
            m.cpu.state.msr.sysenter_cs = sel::KCODE32 as u64;
            m.code(|a, mark| {
                a.set_label(mark).unwrap();
                emit(a);
            });
            let t = m.run_to_halt();
            assert_eq!(t, Some(Taken { vector: GP, error: Some(0), rip: m.mark }), "{name} in {mode:?}");
            // The handler runs at CPL 0 on the TSS stack.
            assert_eq!(m.cpu.state.cpl(), 0, "{name}");
            let frame = if mode == Mode::Long64 { 6 * 8 } else { 6 * 4 };
            assert_eq!(m.gpr(RSP), KSTACK - frame, "{name}");
        }
    }
}

#[test]
fn lmsw_smsw_clts() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.cpu.state.cr0 |= cr0::TS;
    m.code(|a, _| {
        a.clts().unwrap();
        a.mov(esi, cr0).unwrap();
        a.mov(eax, 0xfffe).unwrap(); // PE clear: LMSW cannot clear it
        a.lmsw(ax).unwrap();
        a.smsw(ebx).unwrap();
        a.mov(dword_ptr(DATA), 0xaaaa_aaaau32 as i32).unwrap();
        a.smsw(word_ptr(DATA)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    let c = cr0::PE | cr0::ET | cr0::NE;
    assert_eq!(m.gpr(RSI), c, "CLTS clears TS");
    let after = c | cr0::MP | cr0::EM | cr0::TS;
    assert_eq!(m.cpu.state.cr0, after);
    assert_eq!(m.gpr(RBX), after, "SMSW r32 stores all of CR0");
    assert_eq!(m.read(DATA, 4), 0xaaaa_0000 | after);

    // In real mode LMSW can set PE (entering protected mode).
    let mut m = Machine::new(Mode::Real, 0);
    m.code(|a, _| {
        a.mov(ax, 1).unwrap();
        a.lmsw(ax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert!(m.cpu.state.protected());
}

/// HLT stops the run loop with RIP past it; an NMI wakes the CPU and is delivered with
/// that RIP as the return address.
#[test]
fn hlt_halts_until_an_event() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, _| {
        a.hlt().unwrap();
        a.nop().unwrap();
    });
    assert_eq!(m.run(), RunExit::Halted);
    assert!(m.cpu.halted);
    assert_eq!(m.cpu.state.rip, CODE + 1);
    assert_eq!(m.run(), RunExit::Halted, "stays halted without an event");
    m.cpu.inject_nmi();
    let t = m.run_to_halt();
    assert_eq!(t, Some(Taken { vector: 2, error: None, rip: CODE + 1 }));
}

/// Virtual-8086 mode: privileged instructions are #GP(0), the protected-mode-only ones #UD;
/// SMSW, SGDT, CPUID and RDTSC run.
#[test]
fn virtual_8086_mode_rules() {
    type Snippet = fn(&mut CodeAssembler, &mut CodeLabel);
    let cases: &[(Snippet, u8)] = &[
        (
            |a, m| {
                a.set_label(m).unwrap();
                a.mov(eax, cr0).unwrap();
            },
            GP,
        ),
        (
            |a, m| {
                a.set_label(m).unwrap();
                a.lldt(ax).unwrap();
            },
            UD,
        ),
        (
            |a, m| {
                a.set_label(m).unwrap();
                a.lar(ax, bx).unwrap();
            },
            UD,
        ),
        (
            |a, m| {
                a.set_label(m).unwrap();
                a.rdmsr().unwrap();
            },
            GP,
        ),
        (
            |a, m| {
                a.smsw(ax).unwrap();
                a.sgdt(word_ptr(0x100)).unwrap();
                a.cpuid().unwrap();
                a.rdtsc().unwrap();
                a.set_label(m).unwrap();
                a.hlt().unwrap();
            },
            GP,
        ),
    ];
    const CS_BASE: u64 = 0x1_0000;
    for (i, (emit, vector)) in cases.iter().enumerate() {
        let mut m = Machine::v86(CS_BASE);
        m.code_bits(CS_BASE, 16, emit);
        let t = m.run_to_halt().expect("exception");
        let error = (*vector == GP).then_some(0);
        assert_eq!(t, Taken { vector: *vector, error, rip: m.mark - CS_BASE }, "case {i}");
    }
}

/// With PAE paging, MOV to CR3 loads the four PDPTEs: a present one with reserved bits set
/// (here RW, bit 1) makes it #GP(0) and CR3 keeps its value.
#[test]
fn pae_pdpte_reserved_bits_fault_at_mov_cr3() {
    const PDPT: u64 = 0x1_3000;
    const BAD_PDPT: u64 = 0x1_4000;
    let mut m = Machine::new(Mode::Prot32, 0);
    m.bus.load(PDPT, &(PD | 1).to_le_bytes());
    m.bus.load(BAD_PDPT, &(PD | 3).to_le_bytes());
    let st = &mut m.cpu.state;
    st.cr4 = cr4::PAE;
    st.cr3 = PDPT;
    st.cr0 |= cr0::PG;
    m.code(|a, mark| {
        a.mov(eax, PDPT as u32).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(eax, BAD_PDPT as u32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr3, eax).unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.cr3, PDPT);
}
