//! CPUID, RDMSR/WRMSR, RDTSC/RDTSCP/RDPMC, XGETBV/XSETBV, SWAPGS, FS/GS base instructions.

use super::harness::*;
use ferrite_cpu::state::{cr4, reg::*, Seg};
use iced_x86::code_asm::*;

#[test]
fn cpuid_values_and_zero_extension() {
    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, _| {
        a.mov(rax, 0xdead_beef_0000_0000u64).unwrap();
        a.mov(rbx, rax).unwrap();
        a.mov(rcx, rax).unwrap();
        a.mov(rdx, rax).unwrap();
        a.cpuid().unwrap();
        a.mov(r8, rax).unwrap();
        a.mov(r9, rbx).unwrap();
        a.mov(r10, rcx).unwrap();
        a.mov(r11, rdx).unwrap();
        a.mov(eax, 1).unwrap();
        a.cpuid().unwrap();
        a.mov(r12, rax).unwrap();
        a.mov(r13, rcx).unwrap();
        a.mov(eax, 7).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    let g = &m.cpu.state.gpr;
    // Leaf 0: highest basic leaf 16H (TSC and frequency leaves), "GenuineIntel" in EBX, EDX,
    // ECX; upper halves cleared.
    assert_eq!(g[8], 0x16);
    assert_eq!(g[9], u32::from_le_bytes(*b"Genu") as u64);
    assert_eq!(g[11], u32::from_le_bytes(*b"ineI") as u64);
    assert_eq!(g[10], u32::from_le_bytes(*b"ntel") as u64);
    assert_eq!(g[12], m.cpu.model.signature() as u64);
    // OSXSAVE (ECX bit 27) mirrors CR4.OSXSAVE, which is clear.
    assert_eq!(g[13] & (1 << 27), 0);
    assert_ne!(g[13] & (1 << 26), 0, "XSAVE");
    // Leaf 7: UMIP (ECX bit 2) and FSGSBASE (EBX bit 0) are reported, so CR4 accepts them.
    assert_ne!(g[RCX] & (1 << 2), 0);
    assert_ne!(g[RBX] & 1, 0);
}

/// Intel reports SYSCALL (CPUID.80000001H:EDX[11]) only in 64-bit mode.
#[test]
fn cpuid_syscall_flag_follows_the_mode() {
    for mode in [Mode::Prot32, Mode::Long64] {
        let mut m = Machine::new(mode, 3);
        m.code(|a, _| {
            a.mov(eax, 0x8000_0001u32).unwrap();
            a.cpuid().unwrap();
            a.int3().unwrap();
        });
        assert_eq!(m.run_to_halt().map(|t| t.vector), Some(3));
        assert_eq!((m.gpr(RDX) >> 11) & 1, (mode == Mode::Long64) as u64, "{mode:?}");
        assert_ne!(m.gpr(RDX) & (1 << 29), 0, "LM");
    }
}

#[test]
fn msr_access() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.mov(ecx, 0xc000_0081u32).unwrap(); // STAR
        a.mov(eax, 0x1122_3344).unwrap();
        a.mov(edx, 0x0023_0010).unwrap();
        a.wrmsr().unwrap();
        a.xor(eax, eax).unwrap();
        a.xor(edx, edx).unwrap();
        a.rdmsr().unwrap();
        a.mov(esi, eax).unwrap();
        a.mov(edi, edx).unwrap();
        a.mov(ecx, 0x1234).unwrap(); // no such MSR
        a.set_label(mark).unwrap();
        a.rdmsr().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.msr.star, 0x0023_0010_1122_3344);
    assert_eq!((m.gpr(RSI), m.gpr(RDI)), (0x1122_3344, 0x0023_0010));
}

#[test]
fn time_stamp_counter() {
    let mut m = Machine::new(Mode::Long64, 3);
    m.bus.now = 0x1_2345_6789;
    m.cpu.state.msr.tsc_offset = 0x10;
    m.cpu.state.msr.tsc_aux = 0xffff_ffff_0000_0007;
    m.code(|a, mark| {
        a.mov(rax, -1i64).unwrap();
        a.mov(rdx, rax).unwrap();
        a.rdtsc().unwrap();
        a.mov(r8, rax).unwrap();
        a.mov(r9, rdx).unwrap();
        a.rdtscp().unwrap();
        a.mov(r10, rcx).unwrap();
        a.set_label(mark).unwrap();
        a.rdpmc().unwrap();
    });
    // No performance counters: RDPMC is #GP(0) whatever ECX holds.
    m.expect_fault(GP, Some(0));
    let g = &m.cpu.state.gpr;
    assert_eq!((g[8], g[9]), (0x2345_6799, 1));
    assert_eq!(g[10], 7);

    // CR4.TSD makes RDTSC privileged.
    let mut m = Machine::new(Mode::Prot32, 3);
    m.cpu.state.cr4 = cr4::TSD;
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.rdtsc().unwrap();
    });
    m.expect_fault(GP, Some(0));
}

#[test]
fn extended_control_register() {
    // Without CR4.OSXSAVE both are #UD.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.xgetbv().unwrap();
    });
    m.expect_fault(UD, None);

    let mut m = Machine::new(Mode::Prot32, 0);
    m.cpu.state.cr4 = cr4::OSXSAVE | cr4::OSFXSR;
    m.code(|a, mark| {
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(eax, 3).unwrap(); // x87 | SSE
        a.xsetbv().unwrap();
        a.xor(eax, eax).unwrap();
        a.xgetbv().unwrap();
        a.mov(esi, eax).unwrap();
        a.mov(eax, 2).unwrap(); // x87 must stay enabled
        a.set_label(mark).unwrap();
        a.xsetbv().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!((m.gpr(RSI), m.cpu.state.xcr0), (3, 3));

    for (ecx_v, eax_v) in [(0u32, 0xf_u32), (0, 5), (1, 1)] {
        // MPX state (bit 3) is not supported, AVX state needs SSE state; XCR 1 does not exist.
        let mut m = Machine::new(Mode::Prot32, 0);
        m.cpu.state.cr4 = cr4::OSXSAVE;
        m.code(|a, mark| {
            a.mov(ecx, ecx_v).unwrap();
            a.xor(edx, edx).unwrap();
            a.mov(eax, eax_v).unwrap();
            a.set_label(mark).unwrap();
            a.xsetbv().unwrap();
        });
        m.expect_fault(GP, Some(0));
    }

    // XGETBV works at CPL 3; XSETBV does not.
    let mut m = Machine::new(Mode::Long64, 3);
    m.cpu.state.cr4 |= cr4::OSXSAVE;
    m.code(|a, mark| {
        a.xor(ecx, ecx).unwrap();
        a.xgetbv().unwrap();
        a.set_label(mark).unwrap();
        a.xsetbv().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.gpr(RAX), 1);
}

#[test]
fn swapgs_exchanges_gs_base() {
    let mut m = Machine::new(Mode::Long64, 0);
    m.cpu.state.seg_mut(Seg::Gs).base = 0x1000;
    m.cpu.state.msr.kernel_gs_base = 0xffff_8000_0000_2000;
    m.code(|a, _| {
        a.swapgs().unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.cpu.state.seg(Seg::Gs).base, 0xffff_8000_0000_2000);
    assert_eq!(m.cpu.state.msr.kernel_gs_base, 0x1000);

    // Compatibility mode: #UD.
    let mut m = Machine::new(Mode::Long64, 0);
    m.set_seg(Seg::Cs, sel::KCODE32);
    m.code_bits(CODE, 32, |a, mark| {
        a.set_label(mark).unwrap();
        a.db(&[0x0f, 0x01, 0xf8]).unwrap(); // SWAPGS (decodes as such only in 64-bit mode)
    });
    let t = m.run_to_halt().unwrap();
    assert_eq!(t.vector, UD);
}

#[test]
fn fs_gs_base_instructions() {
    let mut m = Machine::new(Mode::Long64, 3);
    m.cpu.state.cr4 |= cr4::FSGSBASE;
    m.code(|a, mark| {
        a.mov(rax, 0x0000_7fff_5678_9abcu64).unwrap();
        a.wrfsbase(rax).unwrap();
        a.mov(ebx, 0x8765_4321u32).unwrap();
        a.wrgsbase(ebx).unwrap();
        a.rdfsbase(rcx).unwrap();
        a.mov(rdx, -1i64).unwrap();
        a.rdfsbase(edx).unwrap();
        a.rdgsbase(rsi).unwrap();
        a.mov(rax, 0x8000_0000_0000_0000u64).unwrap();
        a.set_label(mark).unwrap();
        a.wrgsbase(rax).unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert_eq!(m.cpu.state.seg(Seg::Fs).base, 0x0000_7fff_5678_9abc);
    assert_eq!(m.cpu.state.seg(Seg::Gs).base, 0x8765_4321);
    assert_eq!(m.gpr(RCX), 0x0000_7fff_5678_9abc);
    assert_eq!(m.gpr(RDX), 0x5678_9abc, "32-bit destination");
    assert_eq!(m.gpr(RSI), 0x8765_4321);

    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.rdfsbase(rax).unwrap();
    });
    m.expect_fault(UD, None);
}
