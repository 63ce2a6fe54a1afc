//! Protection keys against the SDM (Vol. 3, 4.6.2 and 4.7; Vol. 2 "RDPKRU", "WRPKRU"):
//! the 2 MiB user page at 6 MiB carries key 5 in bits 62:59 of its PDE.

use super::harness::*;
use ferrite_cpu::state::{cr0, cr4, reg::*};
use iced_x86::code_asm::*;

const LIN: u64 = 0x60_5000;
const PDE3: u64 = PD + 3 * 8;
const KEY: u64 = 5;
const AD: u32 = 1 << (2 * KEY);
const WD: u32 = 2 << (2 * KEY);
/// #PF error code bits: present, write, user, protection key.
const P: u64 = 1;
const W: u64 = 2;
const U: u64 = 4;
const PK: u64 = 0x20;
const PF: u8 = 14;

fn machine(cpl: u8, pkru: u32) -> Machine {
    let mut m = Machine::new(Mode::Long64, cpl);
    m.bus.load(PDE3, &(0x60_0087u64 | KEY << 59).to_le_bytes());
    m.bus.load(LIN, &0x1111u64.to_le_bytes());
    m.cpu.state.cr4 |= cr4::PKE;
    m.cpu.state.pkru = pkru;
    m
}

/// The end of a test's code: HLT at CPL 0; at CPL 3, where HLT faults, INT3 (taken as
/// vector 3, which `done` accepts).
fn end(a: &mut CodeAssembler, cpl: u8) {
    if cpl == 3 {
        a.int3().unwrap();
    } else {
        a.hlt().unwrap();
    }
}

/// Runs the code to its end, returning the exception taken before it, if any.
fn done(m: &mut Machine) -> Option<Taken> {
    m.run_to_halt().filter(|t| t.vector != 3)
}

/// Runs one access to LIN (a read into RBX, or a write of RBX) and returns the #PF error
/// code, if it faulted there.
fn access(cpl: u8, pkru: u32, write: bool, prep: impl FnOnce(&mut Machine)) -> Option<u64> {
    let mut m = machine(cpl, pkru);
    prep(&mut m);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        if write {
            a.mov(qword_ptr(LIN), rbx).unwrap();
        } else {
            a.mov(rbx, qword_ptr(LIN)).unwrap();
        }
        end(a, cpl);
    });
    let t = done(&mut m)?;
    assert_eq!((t.vector, t.rip), (PF, m.mark));
    assert_eq!(m.cpu.state.cr2, LIN);
    t.error
}

#[test]
fn access_disable_and_write_disable() {
    // AD: no data access at all, from user or supervisor mode.
    assert_eq!(access(3, AD, false, |_| {}), Some(P | U | PK));
    assert_eq!(access(0, AD, false, |_| {}), Some(P | PK));
    assert_eq!(access(3, AD, true, |_| {}), Some(P | W | U | PK));
    // WD: reads allowed; user writes denied; supervisor writes denied only with CR0.WP.
    assert_eq!(access(3, WD, false, |_| {}), None);
    assert_eq!(access(3, WD, true, |_| {}), Some(P | W | U | PK));
    assert_eq!(access(0, WD, true, |m| m.cpu.state.cr0 |= cr0::WP), Some(P | W | PK));
    assert_eq!(access(0, WD, true, |m| m.cpu.state.cr0 &= !cr0::WP), None);
    // Other keys' rights do not matter (key 0, which the stacks and tables use here, stays
    // open); with CR4.PKE clear the key is ignored.
    assert_eq!(access(3, !(AD | WD | 3), true, |_| {}), None);
    assert_eq!(access(3, AD, false, |m| m.cpu.state.cr4 &= !cr4::PKE), None);
    // Supervisor pages have no key (here: the PDE without US).
    assert_eq!(access(0, AD, false, |m| m.bus.load(PDE3, &(0x60_0083u64 | KEY << 59).to_le_bytes())), None);
    // A paging violation that the key also forbids reports PK too; a not-present page does not.
    assert_eq!(access(3, WD, true, |m| m.bus.load(PDE3, &(0x60_0085u64 | KEY << 59).to_le_bytes())), Some(P | W | U | PK));
    assert_eq!(access(3, AD, false, |m| m.bus.load(PDE3, &0u64.to_le_bytes())), Some(U));
}

/// WRPKRU does not flush the TLB architecturally, yet the new rights apply to the next
/// access: a cached translation must not let it through.
#[test]
fn wrpkru_takes_effect_on_cached_translations() {
    let mut m = machine(3, 0);
    m.code(|a, mark| {
        a.mov(rbx, qword_ptr(LIN)).unwrap();
        a.mov(qword_ptr(LIN), rbx).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(eax, WD).unwrap();
        a.wrpkru().unwrap();
        a.mov(r8, qword_ptr(LIN)).unwrap();
        a.set_label(mark).unwrap();
        a.mov(qword_ptr(LIN), rbx).unwrap();
        end(a, 3);
    });
    m.expect_fault(PF, Some(P | W | U | PK));
    assert_eq!(m.gpr(8), 0x1111, "reads still allowed");
    // And back: clearing WD allows the write again.
    let mut m = machine(3, WD);
    m.code(|a, _| {
        a.mov(rbx, qword_ptr(LIN)).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.xor(eax, eax).unwrap();
        a.wrpkru().unwrap();
        a.mov(qword_ptr(LIN), 7).unwrap();
        end(a, 3);
    });
    assert_eq!(done(&mut m), None);
    assert_eq!(m.read(LIN, 8), 7);
}

#[test]
fn rdpkru_wrpkru_rules() {
    let mut m = machine(3, 0x5555_0000);
    m.code(|a, _| {
        a.mov(rax, -1i64).unwrap();
        a.mov(rdx, -1i64).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.rdpkru().unwrap();
        end(a, 3);
    });
    assert_eq!(done(&mut m), None);
    assert_eq!((m.gpr(RAX), m.gpr(RDX)), (0x5555_0000, 0));

    let fault = |pke: bool, rcx_v: u32, rdx_v: u32, write: bool| {
        let mut m = machine(0, 0);
        if !pke {
            m.cpu.state.cr4 &= !cr4::PKE;
        }
        m.code(|a, mark| {
            a.mov(ecx, rcx_v).unwrap();
            a.mov(edx, rdx_v).unwrap();
            a.xor(eax, eax).unwrap();
            a.set_label(mark).unwrap();
            if write {
                a.wrpkru().unwrap();
            } else {
                a.rdpkru().unwrap();
            }
            a.hlt().unwrap();
        });
        m.run_to_halt().map(|t| t.vector)
    };
    for write in [false, true] {
        assert_eq!(fault(false, 0, 0, write), Some(UD), "CR4.PKE clear");
        assert_eq!(fault(true, 1, 0, write), Some(GP), "ECX not 0");
    }
    assert_eq!(fault(true, 0, 1, true), Some(GP), "WRPKRU with EDX not 0");
    assert_eq!(fault(true, 0, 1, false), None, "RDPKRU ignores EDX");
}

#[test]
fn ospke_mirrors_cr4_pke() {
    for pke in [false, true] {
        let mut m = machine(0, 0);
        if !pke {
            m.cpu.state.cr4 &= !cr4::PKE;
        }
        m.code(|a, _| {
            a.mov(eax, 7).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.cpuid().unwrap();
            a.hlt().unwrap();
        });
        m.expect_halt();
        let leaf7_ecx = m.gpr(RCX);
        assert_eq!(leaf7_ecx >> 3 & 3, if pke { 3 } else { 1 }, "PKU, and OSPKE = CR4.PKE");
    }
}

/// PKRU is XSAVE component 9, at offset 2688 in the standard format; XRSTOR loading it
/// changes the rights of cached translations like WRPKRU.
#[test]
fn pkru_in_the_xsave_area() {
    let mut m = machine(0, 0x0400_0000);
    m.cpu.state.cr4 |= cr4::OSXSAVE;
    m.cpu.state.xcr0 = 0x203;
    m.bus.load(DATA + 0x1000 + 512, &(1u64 << 9).to_le_bytes());
    m.bus.load(DATA + 0x1000 + 2688, &AD.to_le_bytes());
    m.code(|a, mark| {
        a.mov(rbx, qword_ptr(LIN)).unwrap();
        a.mov(eax, 0x200).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(rdi, DATA).unwrap();
        a.xsave64(ptr(rdi)).unwrap();
        a.mov(rdi, DATA + 0x1000).unwrap();
        a.xrstor64(ptr(rdi)).unwrap();
        a.set_label(mark).unwrap();
        a.mov(rbx, qword_ptr(LIN)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(PF, Some(P | PK));
    assert_eq!(m.read(DATA + 2688, 8), 0x0400_0000);
    assert_eq!(m.read(DATA + 512, 8) & (1 << 9), 1 << 9, "XSTATE_BV[9]: PKRU not in its initial state");
    assert_eq!(m.cpu.state.pkru, AD);
}
