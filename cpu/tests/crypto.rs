//! AES-NI, PCLMULQDQ and the SHA extensions in their legacy SSE encodings, compared with the
//! host CPU on random operands (see `native/`), and the rules of exception type 4.

#![cfg(target_arch = "x86_64")]

#[macro_use]
mod native;

use ferrite_cpu::state::{cr0, reg};
use ferrite_cpu::{Cpu, CpuModel};
use native::*;

fn aes() -> Vec<Case> {
    vec![
        case!(Bytes, Exact, "aesenc xmm0, xmm1"),
        case!(Bytes, Exact, "aesenc xmm0, [rdi]"),
        case!(Bytes, Exact, "aesenclast xmm0, xmm1"),
        case!(Bytes, Exact, "aesenclast xmm0, [rdi]"),
        case!(Bytes, Exact, "aesdec xmm0, xmm1"),
        case!(Bytes, Exact, "aesdec xmm0, [rdi]"),
        case!(Bytes, Exact, "aesdeclast xmm0, xmm1"),
        case!(Bytes, Exact, "aesdeclast xmm0, [rdi]"),
        case!(Bytes, Exact, "aesimc xmm0, xmm1"),
        case!(Bytes, Exact, "aesimc xmm0, [rdi]"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 0"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 1"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 27"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 54"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 128"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, xmm1, 255"),
        case!(Bytes, Exact, "aeskeygenassist xmm0, [rdi + 16], 0x40"),
    ]
}

fn clmul() -> Vec<Case> {
    vec![
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 0"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 1"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 16"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 17"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 19"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 238"),
        case!(Bytes, Exact, "pclmulqdq xmm0, xmm1, 255"),
        case!(Bytes, Exact, "pclmulqdq xmm0, [rdi], 0x01"),
    ]
}

fn sha() -> Vec<Case> {
    vec![
        case!(Bytes, Exact, "sha1rnds4 xmm0, xmm1, 0"),
        case!(Bytes, Exact, "sha1rnds4 xmm0, xmm1, 1"),
        case!(Bytes, Exact, "sha1rnds4 xmm0, xmm1, 2"),
        case!(Bytes, Exact, "sha1rnds4 xmm0, xmm1, 3"),
        case!(Bytes, Exact, "sha1rnds4 xmm0, [rdi], 2"),
        case!(Bytes, Exact, "sha1nexte xmm0, xmm1"),
        case!(Bytes, Exact, "sha1nexte xmm0, [rdi + 16]"),
        case!(Bytes, Exact, "sha1msg1 xmm0, xmm1"),
        case!(Bytes, Exact, "sha1msg1 xmm0, [rdi + 16]"),
        case!(Bytes, Exact, "sha1msg2 xmm0, xmm1"),
        case!(Bytes, Exact, "sha1msg2 xmm0, [rdi + 16]"),
        case!(Bytes, Exact, "sha256msg1 xmm0, xmm1"),
        case!(Bytes, Exact, "sha256msg1 xmm0, [rdi + 16]"),
        case!(Bytes, Exact, "sha256msg2 xmm0, xmm1"),
        case!(Bytes, Exact, "sha256msg2 xmm0, [rdi + 16]"),
        case!(Bytes, Exact, "sha256rnds2 xmm1, xmm2, xmm0"),
        case!(Bytes, Exact, "sha256rnds2 xmm1, [rdi], xmm0"),
        case!(Bytes, Exact, "sha256rnds2 xmm0, xmm1, xmm0"),
    ]
}

#[test]
fn native_aes() {
    if is_x86_feature_detected!("aes") {
        run_cases(aes(), iterations(500));
    }
}

#[test]
fn native_pclmulqdq() {
    if is_x86_feature_detected!("pclmulqdq") {
        run_cases(clmul(), iterations(500));
    }
}

#[test]
fn native_sha() {
    if is_x86_feature_detected!("sha") {
        run_cases(sha(), iterations(500));
    }
}

mod rules {
    use super::*;
    use iced_x86::code_asm::*;

    const UD: u8 = 6;
    const NM: u8 = 7;
    const GP: u8 = 13;

    fn run(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, prep: impl FnOnce(&mut Cpu)) -> Result<(), u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        let code = a.assemble(CODE).unwrap();
        let (mut cpu, mut bus) = long_mode_machine();
        bus.load(CODE, &code);
        cpu.state.gpr[reg::RDI] = DATA;
        prep(&mut cpu);
        step(&mut cpu, &mut bus, code.len())
    }

    #[test]
    fn sse_rules_apply() {
        // Legacy SSE: 16-byte alignment, #NM with CR0.TS, #UD with CR0.EM.
        assert_eq!(run(|a| a.aesenc(xmm0, xmmword_ptr(rdi + 8)), |_| {}), Err(GP));
        assert_eq!(run(|a| a.sha256msg1(xmm0, xmmword_ptr(rdi + 4)), |_| {}), Err(GP));
        assert_eq!(run(|a| a.pclmulqdq(xmm0, xmm1, 0), |c| c.state.cr0 |= cr0::TS), Err(NM));
        assert_eq!(run(|a| a.aesimc(xmm0, xmm1), |c| c.state.cr0 |= cr0::EM), Err(UD));
    }

    #[test]
    fn features_gate_the_instructions() {
        for (feature, f) in [
            ("aes", (|a: &mut CodeAssembler| a.aesenc(xmm0, xmm1)) as fn(&mut CodeAssembler) -> Result<(), IcedError>),
            ("pclmulqdq", |a| a.pclmulqdq(xmm0, xmm1, 0)),
            ("sha-ni", |a| a.sha1msg1(xmm0, xmm1)),
        ] {
            let without = |c: &mut Cpu| c.model = CpuModel::parse(&format!("max,-{feature}")).unwrap();
            assert_eq!(run(f, without), Err(UD), "{feature}");
            assert_eq!(run(f, |_| {}), Ok(()), "{feature}");
        }
    }

    /// FIPS-197 appendix C.1: AES-128 of 00112233..ff with key 00010203..0f, run as the
    /// instruction sequence software uses (key expansion with AESKEYGENASSIST, then rounds).
    #[test]
    fn aes128_known_answer() {
        let mut a = CodeAssembler::new(64).unwrap();
        // xmm1 = key, xmm0 = plaintext; round keys expand in xmm1 via xmm2/xmm3.
        a.movdqu(xmm1, xmmword_ptr(rdi)).unwrap();
        a.movdqu(xmm0, xmmword_ptr(rdi + 16)).unwrap();
        a.pxor(xmm0, xmm1).unwrap();
        for rcon in [1u32, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36] {
            a.aeskeygenassist(xmm2, xmm1, rcon).unwrap();
            a.pshufd(xmm2, xmm2, 0xff).unwrap();
            for _ in 0..3 {
                a.movdqa(xmm3, xmm1).unwrap();
                a.pslldq(xmm3, 4).unwrap();
                a.pxor(xmm1, xmm3).unwrap();
            }
            a.pxor(xmm1, xmm2).unwrap();
            if rcon == 0x36 {
                a.aesenclast(xmm0, xmm1).unwrap();
            } else {
                a.aesenc(xmm0, xmm1).unwrap();
            }
        }
        a.nop().unwrap();
        let code = a.assemble(CODE).unwrap();
        let (mut cpu, mut bus) = long_mode_machine();
        bus.load(CODE, &code);
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        bus.load(DATA, &key);
        bus.load(DATA + 16, &plain);
        cpu.state.gpr[reg::RDI] = DATA;
        cpu.state.rip = CODE;
        cpu.state.gpr[reg::RSP] = 0x9000;
        while cpu.state.rip < CODE + code.len() as u64 - 1 {
            cpu.step(&mut bus);
        }
        let expect = [0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a];
        assert_eq!(cpu.state.fpu.xmm[0].to_le_bytes(), expect);
    }
}
