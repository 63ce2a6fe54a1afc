//! SYSCALL/SYSRET and SYSENTER/SYSEXIT: fixed segment caches, saved registers, masks.

use super::harness::*;
use ferrite_cpu::state::seg_attr::{self, DPL_SHIFT, G, L, P, S};
use ferrite_cpu::state::{efer, flags, reg::*, Seg, Segment};
use iced_x86::code_asm::*;

const SFMASK: u64 = flags::IF | flags::TF | flags::DF | flags::AC;
/// SYSCALL enters at 0x18/0x20; SYSRET leaves to 0x2b (32-bit) or 0x3b (64-bit) and 0x33.
const STAR: u64 = (0x28 << 48) | (0x18 << 32);
const CODE2: u64 = 0x12_0000;

/// The flat 4 GiB cache these instructions load (type 11 code or type 3 data).
fn flat(selector: u16, dpl: u32, code: bool, long: bool) -> Segment {
    let typ = if code { 11 } else { 3 };
    let size = if long { L } else { seg_attr::DB };
    Segment { selector, attrs: typ | S | P | G | size | (dpl << DPL_SHIFT), limit: 0xffff_ffff, base: 0 }
}

fn syscall_machine(cpl: u8) -> Machine {
    let mut m = Machine::new(Mode::Long64, cpl);
    let msr = &mut m.cpu.state.msr;
    msr.star = STAR;
    msr.lstar = KCODE;
    msr.sfmask = SFMASK;
    m.cpu.state.rflags = flags::FIXED1 | flags::IF | flags::DF;
    m
}

/// User → kernel → user → kernel, checking what each side sees.
#[test]
fn syscall_sysret_round_trip() {
    let mut m = syscall_machine(3);
    m.code_at(KCODE, |a, _| {
        let mut done = a.create_label();
        a.inc(rdi).unwrap();
        a.cmp(rdi, 2).unwrap();
        a.je(done).unwrap();
        a.mov(r12, rcx).unwrap();
        a.mov(r10, r11).unwrap();
        a.pushfq().unwrap();
        a.pop(r9).unwrap();
        a.mov(r8, ss).unwrap();
        a.mov(rbx, cs).unwrap();
        a.sysretq().unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
    });
    m.code(|a, mark| {
        a.syscall().unwrap();
        a.set_label(mark).unwrap();
        a.mov(r15, cs).unwrap();
        a.mov(r14, ss).unwrap();
        a.pushfq().unwrap();
        a.pop(r13).unwrap();
        a.syscall().unwrap();
    });
    m.expect_halt();
    let g = &m.cpu.state.gpr;
    let user_flags = flags::FIXED1 | flags::IF | flags::DF;
    assert_eq!(g[12], m.mark, "RCX holds the return RIP");
    assert_eq!(g[10], user_flags, "R11 holds RFLAGS");
    assert_eq!(g[9] & !flags::ARITH, flags::FIXED1, "kernel RFLAGS masked by FMASK");
    assert_eq!((g[RBX], g[8]), (0x18, 0x20), "kernel CS, SS");
    assert_eq!((g[15], g[14]), (0x3b, 0x33), "user CS, SS");
    assert_eq!(g[13], user_flags, "SYSRET restores RFLAGS from R11");
    let st = &m.cpu.state;
    assert_eq!(*st.seg(Seg::Cs), flat(0x18, 0, true, true));
    assert_eq!(*st.seg(Seg::Ss), flat(0x20, 0, false, false));
    assert_eq!(st.cpl(), 0);
}

#[test]
fn sysret_to_compatibility_mode() {
    let mut m = syscall_machine(0);
    m.code(|a, _| {
        a.mov(rcx, 0xffff_0000_0000_0000u64 | CODE2).unwrap(); // only ECX is used
        a.mov(r11, 0x1_0000_0202u64).unwrap(); // RF (bit 16) is dropped
        a.sysret().unwrap();
    });
    m.code_bits(CODE2, 32, |a, _| {
        a.int3().unwrap();
    });
    let t = m.run_to_halt().unwrap();
    assert_eq!((t.vector, t.rip), (3, CODE2 + 1));
    // The interrupt frame: RIP, CS, RFLAGS, RSP, SS.
    let frame = m.gpr(RSP);
    assert_eq!(m.read(frame + 8, 8), 0x2b);
    assert_eq!(m.read(frame + 16, 8), 0x202);
    assert_eq!(m.read(frame + 32, 8), 0x33);
}

#[test]
fn sysret_faults_in_ring0_on_a_non_canonical_rcx() {
    let mut m = syscall_machine(0);
    m.code(|a, mark| {
        a.mov(rcx, 0x8000_0000_0000_0000u64).unwrap();
        a.set_label(mark).unwrap();
        a.sysretq().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.cpl(), 0);
}

#[test]
fn syscall_is_ud_without_sce_or_outside_64bit_mode() {
    let mut m = syscall_machine(3);
    m.cpu.state.efer &= !efer::SCE;
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.syscall().unwrap();
    });
    m.expect_fault(UD, None);

    let mut m = syscall_machine(3);
    m.set_seg(Seg::Cs, sel::UCODE32);
    m.code_bits(CODE, 32, |a, mark| {
        a.set_label(mark).unwrap();
        a.syscall().unwrap();
    });
    m.expect_fault(UD, None);
}

/// AMD processors also run SYSCALL in legacy mode: ECX = return EIP, EIP = STAR[31:0],
/// VM/IF/RF cleared.
#[test]
fn amd_legacy_mode_syscall() {
    let mut m = Machine::new(Mode::Prot32, 3);
    m.cpu.model.vendor = *b"AuthenticAMD";
    m.cpu.state.efer = efer::SCE;
    m.cpu.state.msr.star = (0x08 << 32) | KCODE;
    m.cpu.state.rflags = flags::FIXED1 | flags::IF;
    m.code(|a, mark| {
        a.syscall().unwrap();
        a.set_label(mark).unwrap();
        a.nop().unwrap();
    });
    m.code_at(KCODE, |a, _| a.hlt().unwrap());
    m.expect_halt();
    let st = &m.cpu.state;
    assert_eq!(st.gpr[RCX], m.mark);
    assert_eq!(*st.seg(Seg::Cs), flat(0x08, 0, true, false));
    assert_eq!(*st.seg(Seg::Ss), flat(0x10, 0, false, false));
    assert_eq!(m.cpu.rflags() & flags::IF, 0);
}

#[test]
fn sysenter_sysexit_round_trip() {
    let mut m = Machine::new(Mode::Prot32, 3);
    let msr = &mut m.cpu.state.msr;
    msr.sysenter_cs = sel::KCODE32 as u64;
    msr.sysenter_esp = KSTACK;
    msr.sysenter_eip = KCODE;
    m.cpu.state.rflags = flags::FIXED1 | flags::IF;
    m.code_at(KCODE, |a, _| {
        a.mov(ebx, cs).unwrap();
        a.mov(esi, ss).unwrap();
        a.mov(edi, esp).unwrap();
        a.pushfd().unwrap();
        a.pop(ebp).unwrap();
        a.mov(edx, (CODE + 0x100) as u32).unwrap();
        a.mov(ecx, (USTACK - 0x10) as u32).unwrap();
        a.sysexit().unwrap();
    });
    m.code(|a, _| a.sysenter().unwrap());
    m.code_at(CODE + 0x100, |a, _| a.int3().unwrap());
    let t = m.run_to_halt().unwrap();
    assert_eq!((t.vector, t.rip), (3, CODE + 0x101));
    let g = &m.cpu.state.gpr;
    assert_eq!((g[RBX], g[RSI], g[RDI]), (0x08, 0x10, KSTACK));
    assert_eq!(g[RBP] & flags::IF, 0, "SYSENTER clears IF");
    // Frame of the INT3 from ring 3: EIP, CS, EFLAGS, ESP, SS.
    let frame = g[RSP];
    assert_eq!(m.read(frame + 4, 4), 0x1b, "SYSEXIT CS = SYSENTER_CS + 16 | 3");
    assert_eq!(m.read(frame + 12, 4), USTACK - 0x10);
    assert_eq!(m.read(frame + 16, 4), 0x23, "SS = CS + 8");
}

#[test]
fn sysenter_sysexit_in_64bit_mode() {
    let mut m = Machine::new(Mode::Long64, 3);
    let msr = &mut m.cpu.state.msr;
    msr.sysenter_cs = sel::KCODE64 as u64;
    msr.sysenter_esp = 0xffff_8000_0000_0000 | KSTACK; // all 64 bits are used
    msr.sysenter_eip = KCODE;
    m.code_at(KCODE, |a, _| {
        a.mov(rbx, rsp).unwrap();
        a.mov(r8, cs).unwrap();
        a.mov(rdx, CODE + 0x100).unwrap();
        a.mov(rcx, USTACK - 0x10).unwrap();
        a.sysexitq().unwrap();
    });
    m.code(|a, _| a.sysenter().unwrap());
    m.code_at(CODE + 0x100, |a, _| a.int3().unwrap());
    let t = m.run_to_halt().unwrap();
    assert_eq!((t.vector, t.rip), (3, CODE + 0x101));
    assert_eq!(m.gpr(RBX), 0xffff_8000_0000_0000 | KSTACK);
    assert_eq!(m.gpr(8), 0x18);
    let frame = m.gpr(RSP);
    assert_eq!(m.read(frame + 8, 8), 0x3b, "SYSEXITQ CS = SYSENTER_CS + 32 | 3");
    assert_eq!(m.read(frame + 24, 8), USTACK - 0x10);
    assert_eq!(m.read(frame + 32, 8), 0x43);

    // A non-canonical RIP for SYSEXITQ faults in ring 0.
    let mut m = Machine::new(Mode::Long64, 0);
    m.cpu.state.msr.sysenter_cs = sel::KCODE64 as u64;
    m.code(|a, mark| {
        a.mov(rdx, 0x0001_0000_0000_0000u64).unwrap();
        a.set_label(mark).unwrap();
        a.sysexitq().unwrap();
    });
    m.expect_fault(GP, Some(0));
}

#[test]
fn sysenter_needs_a_selector_and_protected_mode() {
    let mut m = Machine::new(Mode::Prot32, 3);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.sysenter().unwrap();
    });
    m.expect_fault(GP, Some(0));

    let mut m = Machine::new(Mode::Real, 0);
    m.cpu.state.msr.sysenter_cs = 8;
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.sysenter().unwrap();
    });
    m.expect_fault(GP, None);
}
