//! The general-purpose instructions of x86-64-v3 and after: BMI1, BMI2, LZCNT/TZCNT, ADX,
//! MOVBE, CLFLUSH/CLFLUSHOPT/CLWB (native comparison against the host CPU, see `native/`),
//! and RDRAND, RDSEED, RDPID and the VEX mode rules (against the SDM).

#![cfg(target_arch = "x86_64")]

#[macro_use]
mod native;

use ferrite_cpu::state::flags::{AF, CF, OF, PF, SF, ZF};
use ferrite_cpu::state::{cr0, reg, Seg, Segment};
use ferrite_cpu::{Cpu, CpuModel};
use native::*;

/// BMI1 and the shifts of BMI2. The flags the SDM leaves undefined are masked (see
/// `interp/bmi.rs` for what ferrite sets there).
fn bmi() -> Vec<Case> {
    vec![
        case!(Gpr, Masked(AF | PF), "andn eax, ecx, edx"),
        case!(Gpr, Masked(AF | PF), "andn rax, rcx, rdx"),
        case!(Gpr, Masked(AF | PF), "andn rax, rcx, [rdi]"),
        case!(Gpr, Masked(AF | PF), "andn eax, ecx, [rdi + 3]"),
        case!(Gpr, Exact, "pdep eax, ecx, edx"),
        case!(Gpr, Exact, "pdep rax, rcx, rdx"),
        case!(Gpr, Exact, "pdep rax, rcx, [rdi]"),
        case!(Gpr, Exact, "pdep eax, ecx, [rdi + 3]"),
        case!(Gpr, Exact, "pext eax, ecx, edx"),
        case!(Gpr, Exact, "pext rax, rcx, rdx"),
        case!(Gpr, Exact, "pext rax, rcx, [rdi]"),
        case!(Gpr, Exact, "pext eax, ecx, [rdi + 3]"),
        case!(Gpr, Masked(AF | PF | SF), "bextr eax, ecx, edx"),
        case!(Gpr, Masked(AF | PF | SF), "bextr rax, rcx, rdx"),
        case!(Gpr, Masked(AF | PF | SF), "bextr rax, [rdi], rdx"),
        case!(Gpr, Masked(AF | PF | SF), "bextr eax, [rdi + 5], edx"),
        case!(Gpr, Masked(AF | PF), "bzhi eax, ecx, edx"),
        case!(Gpr, Masked(AF | PF), "bzhi rax, rcx, rdx"),
        case!(Gpr, Masked(AF | PF), "bzhi rax, [rdi], rdx"),
        case!(Gpr, Masked(AF | PF), "bzhi eax, [rdi + 5], edx"),
        case!(Gpr, Exact, "sarx eax, ecx, edx"),
        case!(Gpr, Exact, "sarx rax, rcx, rdx"),
        case!(Gpr, Exact, "sarx rax, [rdi], rdx"),
        case!(Gpr, Exact, "sarx eax, [rdi + 5], edx"),
        case!(Gpr, Exact, "shlx eax, ecx, edx"),
        case!(Gpr, Exact, "shlx rax, rcx, rdx"),
        case!(Gpr, Exact, "shlx rax, [rdi], rdx"),
        case!(Gpr, Exact, "shlx eax, [rdi + 5], edx"),
        case!(Gpr, Exact, "shrx eax, ecx, edx"),
        case!(Gpr, Exact, "shrx rax, rcx, rdx"),
        case!(Gpr, Exact, "shrx rax, [rdi], rdx"),
        case!(Gpr, Exact, "shrx eax, [rdi + 5], edx"),
        case!(Gpr, Masked(AF | PF), "blsi eax, ecx"),
        case!(Gpr, Masked(AF | PF), "blsi rax, rcx"),
        case!(Gpr, Masked(AF | PF), "blsi rax, [rdi]"),
        case!(Gpr, Masked(AF | PF), "blsi eax, [rdi + 1]"),
        case!(Gpr, Masked(AF | PF), "blsmsk eax, ecx"),
        case!(Gpr, Masked(AF | PF), "blsmsk rax, rcx"),
        case!(Gpr, Masked(AF | PF), "blsmsk rax, [rdi]"),
        case!(Gpr, Masked(AF | PF), "blsmsk eax, [rdi + 1]"),
        case!(Gpr, Masked(AF | PF), "blsr eax, ecx"),
        case!(Gpr, Masked(AF | PF), "blsr rax, rcx"),
        case!(Gpr, Masked(AF | PF), "blsr rax, [rdi]"),
        case!(Gpr, Masked(AF | PF), "blsr eax, [rdi + 1]"),
    ]
}

/// MULX, RORX (all immediates, including those past the width), TZCNT and LZCNT.
fn bmi2() -> Vec<Case> {
    vec![
        case!(Gpr, Exact, "mulx rax, rcx, rcx"),
        case!(Gpr, Exact, "mulx eax, ecx, ecx"),
        case!(Gpr, Exact, "mulx rax, rcx, [rdi]"),
        case!(Gpr, Exact, "mulx eax, ecx, [rdi]"),
        case!(Gpr, Exact, "mulx rax, rax, rcx"),
        case!(Gpr, Exact, "mulx rcx, rax, rdx"),
        case!(Gpr, Exact, "rorx eax, ecx, 0"),
        case!(Gpr, Exact, "rorx rax, rcx, 0"),
        case!(Gpr, Exact, "rorx eax, ecx, 1"),
        case!(Gpr, Exact, "rorx rax, rcx, 1"),
        case!(Gpr, Exact, "rorx eax, ecx, 7"),
        case!(Gpr, Exact, "rorx rax, rcx, 7"),
        case!(Gpr, Exact, "rorx eax, ecx, 31"),
        case!(Gpr, Exact, "rorx rax, rcx, 31"),
        case!(Gpr, Exact, "rorx eax, ecx, 32"),
        case!(Gpr, Exact, "rorx rax, rcx, 32"),
        case!(Gpr, Exact, "rorx eax, ecx, 33"),
        case!(Gpr, Exact, "rorx rax, rcx, 33"),
        case!(Gpr, Exact, "rorx eax, ecx, 63"),
        case!(Gpr, Exact, "rorx rax, rcx, 63"),
        case!(Gpr, Exact, "rorx eax, ecx, 64"),
        case!(Gpr, Exact, "rorx rax, rcx, 64"),
        case!(Gpr, Exact, "rorx eax, ecx, 200"),
        case!(Gpr, Exact, "rorx rax, rcx, 200"),
        case!(Gpr, Exact, "rorx rax, [rdi], 13"),
        case!(Gpr, Masked(AF | PF | SF | OF), "tzcnt ax, cx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "tzcnt eax, ecx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "tzcnt rax, rcx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "tzcnt rax, [rdi]"),
        case!(Gpr, Masked(AF | PF | SF | OF), "tzcnt ax, [rdi + 1]"),
        case!(Gpr, Masked(AF | PF | SF | OF), "lzcnt ax, cx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "lzcnt eax, ecx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "lzcnt rax, rcx"),
        case!(Gpr, Masked(AF | PF | SF | OF), "lzcnt rax, [rdi]"),
        case!(Gpr, Masked(AF | PF | SF | OF), "lzcnt ax, [rdi + 1]"),
    ]
}

fn adx_movbe_cache() -> Vec<Case> {
    vec![
        case!(Gpr, Exact, "adcx eax, ecx"),
        case!(Gpr, Exact, "adcx rax, rcx"),
        case!(Gpr, Exact, "adcx rax, [rdi]"),
        case!(Gpr, Exact, "adcx eax, [rdi + 2]"),
        case!(Gpr, Exact, "adox eax, ecx"),
        case!(Gpr, Exact, "adox rax, rcx"),
        case!(Gpr, Exact, "adox rax, [rdi]"),
        case!(Gpr, Exact, "adox eax, [rdi + 2]"),
        case!(Gpr, Exact, "movbe ax, [rdi]"),
        case!(Gpr, Exact, "movbe eax, [rdi]"),
        case!(Gpr, Exact, "movbe rax, [rdi]"),
        case!(Gpr, Exact, "movbe cx, [rdi + 1]"),
        case!(Gpr, Exact, "movbe [rdi], cx"),
        case!(Gpr, Exact, "movbe [rdi + 3], ecx"),
        case!(Gpr, Exact, "movbe [rdi + 1], rcx"),
        case!(Gpr, Exact, "clflush [rdi + 9]"),
        case!(Gpr, Exact, "clflushopt [rdi + 9]"),
        case!(Gpr, Exact, "clwb [rdi + 9]"),
    ]
}

fn host_has(features: &[&str]) -> bool {
    let has = |f: &str| match f {
        "bmi1" => is_x86_feature_detected!("bmi1"),
        "bmi2" => is_x86_feature_detected!("bmi2"),
        "lzcnt" => is_x86_feature_detected!("lzcnt"),
        "adx" => is_x86_feature_detected!("adx"),
        "movbe" => is_x86_feature_detected!("movbe"),
        _ => false,
    };
    let ok = features.iter().all(|f| has(f));
    if !ok {
        println!("host CPU lacks one of {features:?}: native comparison skipped");
    }
    ok
}

#[test]
fn native_bmi1() {
    if host_has(&["bmi1"]) {
        run_cases(bmi(), iterations(500));
    }
}

#[test]
fn native_bmi2_lzcnt() {
    if host_has(&["bmi1", "bmi2", "lzcnt"]) {
        run_cases(bmi2(), iterations(500));
    }
}

#[test]
fn native_adx_movbe_cache_lines() {
    if host_has(&["adx", "movbe"]) {
        run_cases(adx_movbe_cache(), iterations(500));
    }
}

/// Rules checked against the SDM rather than the host.
mod rules {
    use super::*;
    use ferrite_cpu::testing::FlatBus;
    use iced_x86::code_asm::*;

    const UD: u8 = 6;
    const GP: u8 = 13;
    const PF_VECTOR: u8 = 14;

    fn run_bytes(code: &[u8], prep: impl FnOnce(&mut Cpu)) -> (Cpu, Result<(), u8>) {
        let (mut cpu, mut bus) = long_mode_machine();
        bus.load(CODE, code);
        cpu.state.gpr[reg::RDI] = DATA;
        prep(&mut cpu);
        let r = step(&mut cpu, &mut bus, code.len());
        (cpu, r)
    }

    fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        a.assemble(CODE).unwrap()
    }

    /// ANDN EAX, ECX, EDX: C4 E2 70 F2 C2.
    const ANDN: [u8; 5] = [0xc4, 0xe2, 0x70, 0xf2, 0xc2];

    #[test]
    fn vex_prefix_rules() {
        assert_eq!(run_bytes(&ANDN, |_| {}).1, Ok(()));
        // A 66, F2, F3 or REX prefix before VEX, and VEX.L = 1, are #UD.
        for prefix in [0x66u8, 0xf2, 0xf3, 0x40, 0x48] {
            let mut code = vec![prefix];
            code.extend_from_slice(&ANDN);
            assert_eq!(run_bytes(&code, |_| {}).1, Err(UD), "prefix {prefix:#x}");
        }
        let mut l1 = ANDN;
        l1[2] |= 4;
        assert_eq!(run_bytes(&l1, |_| {}).1, Err(UD), "VEX.L = 1");
        // Without BMI1 in the model, ANDN is #UD.
        let no_bmi = |c: &mut Cpu| c.model = CpuModel::parse("max,-bmi1").unwrap();
        assert_eq!(run_bytes(&ANDN, no_bmi).1, Err(UD));
    }

    #[test]
    fn vex_is_undefined_in_real_mode() {
        let mut bus = FlatBus::new(1 << 20);
        // IVT entry 6 (#UD) → 0000:0600.
        bus.load(6 * 4, &[0x00, 0x06, 0x00, 0x00]);
        bus.load(0x10000, &ANDN);
        let mut cpu = Cpu::default();
        cpu.state.cr0 &= !cr0::PE;
        *cpu.state.seg_mut(Seg::Cs) = Segment::real_mode(0x1000, 0x9b);
        cpu.state.rip = 0;
        cpu.state.gpr[reg::RSP] = 0x8000;
        cpu.step(&mut bus);
        assert_eq!((cpu.state.seg(Seg::Cs).selector, cpu.state.rip), (0, 0x600), "#UD in real mode");
    }

    #[test]
    fn mulx_same_destination_keeps_the_high_half() {
        let code = asm(|a| a.mulx(rax, rax, rcx));
        let (cpu, r) = run_bytes(&code, |c| {
            c.state.gpr[reg::RDX] = u64::MAX;
            c.state.gpr[reg::RCX] = 3;
        });
        assert_eq!(r, Ok(()));
        assert_eq!(cpu.state.gpr[reg::RAX], 2);
    }

    #[test]
    fn rdrand_rdseed_deliver_random_numbers() {
        for wide in [false, true] {
            let code = asm(|a| if wide { a.rdrand(rax) } else { a.rdseed(eax) });
            let mut seen = Vec::new();
            for _ in 0..4 {
                let (cpu, r) = run_bytes(&code, |c| c.set_rflags(0x202 | OF | SF | ZF | AF | PF));
                assert_eq!(r, Ok(()));
                let f = cpu.rflags();
                if f & CF != 0 {
                    seen.push(cpu.state.gpr[reg::RAX]);
                }
                assert_eq!(f & (OF | SF | ZF | AF | PF), 0);
            }
            seen.dedup();
            assert!(seen.len() >= 2 || !wide, "RDRAND gave {seen:x?}");
            if !wide {
                assert!(seen.iter().all(|&v| v >> 32 == 0), "32-bit destination zero-extends");
            }
        }
    }

    #[test]
    fn rdpid_reads_tsc_aux() {
        let code = asm(|a| a.rdpid(rax));
        let (cpu, r) = run_bytes(&code, |c| {
            c.state.msr.tsc_aux = 0x1234_5678;
            c.state.gpr[reg::RAX] = u64::MAX;
        });
        assert_eq!(r, Ok(()));
        assert_eq!(cpu.state.gpr[reg::RAX], 0x1234_5678);
        let no_rdpid = |c: &mut Cpu| c.model = CpuModel::parse("max,-rdpid").unwrap();
        assert_eq!(run_bytes(&code, no_rdpid).1, Err(UD));
    }

    #[test]
    fn cache_line_instructions_check_the_address() {
        for op in 0..3 {
            let code = |a: &mut CodeAssembler, m| match op {
                0 => a.clflush(m),
                1 => a.clflushopt(m),
                _ => a.clwb(m),
            };
            // The page at 4 MiB is not mapped; a non-canonical address is #GP.
            let (_, r) = run_bytes(&asm(|a| code(a, byte_ptr(rdi))), |c| c.state.gpr[reg::RDI] = 0x40_0000);
            assert_eq!(r, Err(PF_VECTOR));
            let (_, r) = run_bytes(&asm(|a| code(a, byte_ptr(rdi))), |c| c.state.gpr[reg::RDI] = 1 << 60);
            assert_eq!(r, Err(GP));
            assert_eq!(run_bytes(&asm(|a| code(a, byte_ptr(rdi))), |_| {}).1, Ok(()));
        }
    }
}
