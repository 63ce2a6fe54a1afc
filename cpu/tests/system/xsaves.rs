//! XSAVES/XRSTORS, IA32_XSS and the compacted-format CPUID values against the SDM (Vol. 1,
//! 13.2, 13.4.3, 13.11, 13.12; Vol. 2 "XSAVES", "XRSTORS").

use super::harness::*;
use ferrite_cpu::state::{cr4, reg::*};
use iced_x86::code_asm::*;

const AREA: u64 = DATA;
const XSS: u32 = 0xda0;
/// x87, SSE, AVX and PKRU enabled.
const XCR0: u64 = 0x207;

fn machine(cpl: u8) -> Machine {
    let mut m = Machine::new(Mode::Long64, cpl);
    m.cpu.state.cr4 |= cr4::OSXSAVE | cr4::OSFXSR | cr4::PKE;
    m.cpu.state.xcr0 = XCR0;
    m
}

#[test]
fn xsaves_uses_the_compacted_format() {
    let mut m = machine(0);
    m.cpu.state.fpu.ymm_hi[1] = 0xabcd;
    m.cpu.state.pkru = 0x1234;
    m.code(|a, _| {
        a.mov(eax, u32::MAX).unwrap();
        a.mov(edx, u32::MAX).unwrap();
        a.mov(rdi, AREA).unwrap();
        a.xsaves64(ptr(rdi)).unwrap();
        // Initial state everywhere, then XRSTORS brings it back.
        a.vzeroall().unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.xor(eax, eax).unwrap();
        a.wrpkru().unwrap();
        a.mov(eax, u32::MAX).unwrap();
        a.mov(edx, u32::MAX).unwrap();
        a.xrstors64(ptr(rdi)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    // XSTATE_BV: AVX and PKRU in use (x87 and SSE are initial); XCOMP_BV: RFBM | bit 63.
    assert_eq!(m.read(AREA + 512, 8), 0x204);
    assert_eq!(m.read(AREA + 520, 8), XCR0 | 1 << 63);
    // AVX right after the header, PKRU right after AVX (no 64-byte alignment for either).
    assert_eq!(m.read(AREA + 576 + 16, 8), 0xabcd);
    assert_eq!(m.read(AREA + 832, 8), 0x1234);
    assert_eq!(m.cpu.state.fpu.ymm_hi[1], 0xabcd);
    assert_eq!(m.cpu.state.pkru, 0x1234);
}

#[test]
fn xsaves_and_xrstors_faults() {
    let run = |cpl: u8, header: [u64; 3], f: fn(&mut CodeAssembler)| {
        let mut m = machine(cpl);
        for (i, q) in header.iter().enumerate() {
            m.bus.load(AREA + 512 + 8 * i as u64, &q.to_le_bytes());
        }
        m.code(|a, mark| {
            a.mov(eax, u32::MAX).unwrap();
            a.mov(edx, u32::MAX).unwrap();
            a.mov(rdi, AREA).unwrap();
            a.set_label(mark).unwrap();
            f(a);
            a.hlt().unwrap();
        });
        m.run_to_halt().map(|t| (t.vector, t.error))
    };
    let ok = [0, 1 << 63 | 3, 0];
    let gp = Some((GP, Some(0)));
    // CPL 3: #GP for both.
    assert_eq!(run(3, ok, |a| a.xsaves64(ptr(rdi)).unwrap()), gp);
    assert_eq!(run(3, ok, |a| a.xrstors64(ptr(rdi)).unwrap()), gp);
    assert_eq!(run(0, ok, |a| a.xrstors64(ptr(rdi)).unwrap()), None);
    // XRSTORS has no standard form.
    assert_eq!(run(0, [0, 0, 0], |a| a.xrstors64(ptr(rdi)).unwrap()), gp);
    // XSTATE_BV outside XCOMP_BV; XCOMP_BV outside XCR0 | IA32_XSS; bytes 63:16 not zero.
    assert_eq!(run(0, [4, 1 << 63 | 3, 0], |a| a.xrstors64(ptr(rdi)).unwrap()), gp);
    assert_eq!(run(0, [0, 1 << 63 | 1 << 8, 0], |a| a.xrstors64(ptr(rdi)).unwrap()), gp);
    assert_eq!(run(0, [0, 1 << 63 | 3, 1], |a| a.xrstors64(ptr(rdi)).unwrap()), gp);
    // The standard XRSTOR: bytes 23:8 of the header must be zero, later ones are not checked.
    assert_eq!(run(0, [0, 0, 1], |a| a.xrstor64(ptr(rdi)).unwrap()), gp);
    let mut m = machine(0);
    m.bus.load(AREA + 512 + 24, &1u64.to_le_bytes());
    m.code(|a, _| {
        a.mov(eax, 3).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(rdi, AREA).unwrap();
        a.xrstor64(ptr(rdi)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    // Misaligned area.
    let mut m = machine(0);
    m.code(|a, mark| {
        a.mov(rdi, AREA + 16).unwrap();
        a.set_label(mark).unwrap();
        a.xsaves64(ptr(rdi)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
}

#[test]
fn ia32_xss_and_cpuid() {
    let mut m = machine(0);
    m.code(|a, _| {
        a.mov(ecx, XSS).unwrap();
        a.rdmsr().unwrap();
        a.mov(r8, rax).unwrap();
        a.mov(eax, 0xd).unwrap();
        a.mov(ecx, 1).unwrap();
        a.cpuid().unwrap();
        a.mov(r9, rax).unwrap();
        a.mov(r10, rbx).unwrap();
        a.mov(r11, rcx).unwrap();
        a.mov(eax, 0xd).unwrap();
        a.mov(ecx, 9).unwrap();
        a.cpuid().unwrap();
        a.mov(r12, rax).unwrap();
        a.mov(r13, rbx).unwrap();
        a.mov(r14, rcx).unwrap();
        a.mov(eax, 0xd).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    let g = |r: usize| m.gpr(r);
    assert_eq!(g(8), 0, "IA32_XSS starts at 0");
    assert_eq!(g(9), 0b1111, "XSAVEOPT, XSAVEC, XGETBV1, XSAVES");
    assert_eq!(g(10), 840, "compacted size of XCR0 | IA32_XSS: 576 + 256 (AVX) + 8 (PKRU)");
    assert_eq!(g(11), 0, "no supervisor component supported");
    assert_eq!((g(12), g(13), g(14)), (8, 2688, 0), "PKRU: 8 bytes at 2688, user, unaligned");
    assert_eq!((g(RAX), g(RBX), g(RCX)), (0x207, 2696, 2696));
    // No supervisor component exists, so any set bit of IA32_XSS is reserved.
    let mut m = machine(0);
    m.code(|a, mark| {
        a.mov(ecx, XSS).unwrap();
        a.xor(eax, eax).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, 1 << 8).unwrap();
        a.set_label(mark).unwrap();
        a.wrmsr().unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
}

/// IA32_TSC_ADJUST (SDM Vol. 3, 17.17.3): a TSC write adds its delta to TSC_ADJUST, a
/// TSC_ADJUST write adds its delta to the TSC. The test bus's clock stands still.
#[test]
fn tsc_adjust_follows_tsc_writes() {
    let mut m = machine(0);
    m.bus.now = 1000;
    m.code(|a, _| {
        a.mov(ecx, 0x10).unwrap();
        a.mov(eax, 5000).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0x3b).unwrap();
        a.rdmsr().unwrap();
        a.mov(r8, rax).unwrap();
        a.mov(eax, 4100).unwrap();
        a.wrmsr().unwrap();
        a.rdtsc().unwrap();
        a.mov(r9, rax).unwrap();
        a.mov(eax, 7).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(8), 4000, "TSC moved from 1000 to 5000");
    assert_eq!(m.gpr(9), 5100, "TSC_ADJUST moved by 100");
    assert_ne!(m.gpr(RBX) & 2, 0, "CPUID.7.EBX[1] IA32_TSC_ADJUST");
}
