//! x87 differential tests: the same machine code runs natively on this host's x87 and in
//! the interpreter, and the results (the complete FNSAVE image: control/status/tag words,
//! FOP and all eight registers, plus memory results and EFLAGS) must match bit for bit over
//! many random operands, for every rounding mode and precision control. Set X87_SEED to
//! replay a run; the seed is printed.
#![cfg(target_arch = "x86_64")]

#[path = "x87/harness.rs"]
mod harness;
mod native;

use ferrite_cpu::state::{cr0, reg, Seg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use harness::*;
use iced_x86::{Code, Instruction, Register};

// ---------------------------------------------------------------------------------------
// Arithmetic

fn reg2(code: Code, a: u32, b: u32) -> Instruction {
    Instruction::with2(code, st(a), st(b)).unwrap()
}

#[test]
fn add_sub_mul_div_registers() {
    for (name, code) in [
        ("fadd", Code::Fadd_st0_sti),
        ("fsub", Code::Fsub_st0_sti),
        ("fsubr", Code::Fsubr_st0_sti),
        ("fmul", Code::Fmul_st0_sti),
        ("fdiv", Code::Fdiv_st0_sti),
        ("fdivr", Code::Fdivr_st0_sti),
    ] {
        differential(name, 2, &[reg2(code, 0, 1)], MemKind::None, cases());
    }
    verdict();
}

#[test]
fn arithmetic_popping_and_reverse_forms() {
    for (name, code) in [
        ("faddp", Code::Faddp_sti_st0),
        ("fsubp", Code::Fsubp_sti_st0),
        ("fsubrp", Code::Fsubrp_sti_st0),
        ("fmulp", Code::Fmulp_sti_st0),
        ("fdivp", Code::Fdivp_sti_st0),
        ("fdivrp", Code::Fdivrp_sti_st0),
        ("fsub sti", Code::Fsub_sti_st0),
        ("fdivr sti", Code::Fdivr_sti_st0),
    ] {
        differential(name, 2, &[reg2(code, 1, 0)], MemKind::None, cases() / 3);
    }
    verdict();
}

#[test]
fn arithmetic_memory_operands() {
    let mem = |c: Code| Instruction::with1(c, m(D_MEM)).unwrap();
    for (name, code, kind) in [
        ("fadd m32", Code::Fadd_m32fp, MemKind::F32),
        ("fsub m64", Code::Fsub_m64fp, MemKind::F64),
        ("fmul m32", Code::Fmul_m32fp, MemKind::F32),
        ("fdivr m64", Code::Fdivr_m64fp, MemKind::F64),
        ("fiadd m16", Code::Fiadd_m16int, MemKind::I16),
        ("fisubr m32", Code::Fisubr_m32int, MemKind::I32),
        ("fimul m32", Code::Fimul_m32int, MemKind::I32),
        ("fidiv m16", Code::Fidiv_m16int, MemKind::I16),
    ] {
        differential(name, 1, &[mem(code)], kind, cases() / 2);
    }
    verdict();
}

#[test]
fn sqrt_rndint_abs_chs() {
    for (name, code) in [("fsqrt", Code::Fsqrt), ("frndint", Code::Frndint), ("fabs", Code::Fabs), ("fchs", Code::Fchs)]
    {
        differential(name, 1, &[Instruction::with(code)], MemKind::None, cases());
    }
    verdict();
}

#[test]
fn scale_extract_remainders() {
    for (name, code) in
        [("fscale", Code::Fscale), ("fxtract", Code::Fxtract), ("fprem", Code::Fprem), ("fprem1", Code::Fprem1)]
    {
        differential(name, 2, &[Instruction::with(code)], MemKind::None, cases());
    }
    verdict();
}

// ---------------------------------------------------------------------------------------
// Comparisons

#[test]
fn comparisons() {
    let mem = |c: Code| Instruction::with1(c, m(D_MEM)).unwrap();
    let table: Vec<(&str, Vec<Instruction>, usize, MemKind)> = vec![
        ("fcom", vec![reg2(Code::Fcom_st0_sti, 0, 1)], 2, MemKind::None),
        ("fcomp", vec![reg2(Code::Fcomp_st0_sti, 0, 1)], 2, MemKind::None),
        ("fcompp", vec![Instruction::with(Code::Fcompp)], 2, MemKind::None),
        ("fucom", vec![reg2(Code::Fucom_st0_sti, 0, 1)], 2, MemKind::None),
        ("fucompp", vec![Instruction::with(Code::Fucompp)], 2, MemKind::None),
        ("fcomi", vec![reg2(Code::Fcomi_st0_sti, 0, 1)], 2, MemKind::None),
        ("fucomip", vec![reg2(Code::Fucomip_st0_sti, 0, 1)], 2, MemKind::None),
        ("fcom m32", vec![mem(Code::Fcom_m32fp)], 1, MemKind::F32),
        ("fcomp m64", vec![mem(Code::Fcomp_m64fp)], 1, MemKind::F64),
        ("ficom m16", vec![mem(Code::Ficom_m16int)], 1, MemKind::I16),
        ("ficomp m32", vec![mem(Code::Ficomp_m32int)], 1, MemKind::I32),
        ("ftst", vec![Instruction::with(Code::Ftst)], 1, MemKind::None),
        ("fxam", vec![Instruction::with(Code::Fxam)], 1, MemKind::None),
        ("fxam empty", vec![Instruction::with(Code::Fxam)], 0, MemKind::None),
    ];
    for (name, body, nargs, kind) in table {
        differential(name, nargs, &body, kind, cases() / 3);
    }
    verdict();
}

// ---------------------------------------------------------------------------------------
// Loads, stores and conversions

#[test]
fn stores_and_integer_conversions() {
    let mem = |c: Code| Instruction::with1(c, m(D_MEM)).unwrap();
    for (name, code) in [
        ("fst m32", Code::Fst_m32fp),
        ("fstp m64", Code::Fstp_m64fp),
        ("fstp m80", Code::Fstp_m80fp),
        ("fist m16", Code::Fist_m16int),
        ("fistp m32", Code::Fistp_m32int),
        ("fistp m64", Code::Fistp_m64int),
        ("fisttp m16", Code::Fisttp_m16int),
        ("fisttp m64", Code::Fisttp_m64int),
        ("fbstp", Code::Fbstp_m80bcd),
    ] {
        differential(name, 1, &[mem(code)], MemKind::None, cases());
    }
    verdict();
}

#[test]
fn loads_of_every_format() {
    let mem = |c: Code| Instruction::with1(c, m(D_MEM)).unwrap();
    for (name, code, kind) in [
        ("fld m32", Code::Fld_m32fp, MemKind::F32),
        ("fld m64", Code::Fld_m64fp, MemKind::F64),
        ("fild m16", Code::Fild_m16int, MemKind::I16),
        ("fild m32", Code::Fild_m32int, MemKind::I32),
        ("fild m64", Code::Fild_m64int, MemKind::I64),
        ("fbld", Code::Fbld_m80bcd, MemKind::Bcd),
    ] {
        differential(name, 1, &[mem(code)], kind, cases() / 3);
    }
    // Register moves, exchanges and stack manipulation.
    let one = |c: Code| Instruction::with1(c, st(1)).unwrap();
    for (name, body) in [
        ("fld st1", vec![one(Code::Fld_sti)]),
        ("fst st1", vec![one(Code::Fst_sti)]),
        ("fstp st1", vec![one(Code::Fstp_sti)]),
        ("fxch", vec![reg2(Code::Fxch_st0_sti, 0, 1)]),
        ("ffree", vec![one(Code::Ffree_sti)]),
        (
            "fincstp",
            vec![Instruction::with(Code::Fincstp), Instruction::with(Code::Fdecstp), Instruction::with(Code::Fdecstp)],
        ),
        ("fld overflow", vec![Instruction::with(Code::Fld1); 8]),
        ("fadd underflow", vec![reg2(Code::Fadd_st0_sti, 0, 3)]),
    ] {
        differential(name, 2, &body, MemKind::None, cases() / 6);
    }
    verdict();
}

#[test]
fn constants_under_every_rounding_mode() {
    for (name, code) in [
        ("fld1", Code::Fld1),
        ("fldz", Code::Fldz),
        ("fldpi", Code::Fldpi),
        ("fldl2e", Code::Fldl2e),
        ("fldl2t", Code::Fldl2t),
        ("fldlg2", Code::Fldlg2),
        ("fldln2", Code::Fldln2),
    ] {
        differential(name, 0, &[Instruction::with(code)], MemKind::None, 2);
    }
    verdict();
}

#[test]
fn fcmov_conditions() {
    // FCOMI sets the flags FCMOV reads, from the random operands.
    for code in [
        Code::Fcmovb_st0_sti,
        Code::Fcmove_st0_sti,
        Code::Fcmovbe_st0_sti,
        Code::Fcmovu_st0_sti,
        Code::Fcmovnb_st0_sti,
        Code::Fcmovne_st0_sti,
        Code::Fcmovnbe_st0_sti,
        Code::Fcmovnu_st0_sti,
    ] {
        let body = [reg2(Code::Fucomi_st0_sti, 0, 1), reg2(code, 0, 1)];
        differential("fcmov", 2, &body, MemKind::None, 30);
    }
    verdict();
}

// ---------------------------------------------------------------------------------------
// Transcendentals: computed through f64, so compared within a tolerance

fn f80_to_f64(b: &[u8]) -> f64 {
    let sig = u64::from_le_bytes(b[..8].try_into().unwrap());
    let se = u16::from_le_bytes([b[8], b[9]]);
    let exp = (se & 0x7fff) as i32;
    let mag = if exp == 0x7fff {
        if sig << 1 == 0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        sig as f64 * 2f64.powi(exp - 16383 - 63)
    };
    if se & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

fn f80_from_f64(v: f64) -> [u8; 10] {
    if v == 0.0 {
        return f80_bytes(0, if v.is_sign_negative() { 0x8000 } else { 0 });
    }
    let bits = v.to_bits();
    let sign = ((bits >> 63) as u16) << 15;
    if v.is_infinite() {
        return f80_bytes(1 << 63, 0x7fff | sign);
    }
    if v.is_nan() {
        return f80_bytes(3 << 62, 0x7fff | sign);
    }
    let exp = ((bits >> 52) & 0x7ff) as u16;
    let sig = (1 << 63) | (bits & ((1 << 52) - 1)) << 11;
    f80_bytes(sig, (exp + 16383 - 1023) | ((bits >> 63) as u16) << 15)
}

/// Runs `body` on operands from `gen` natively and emulated; register values must agree to
/// `tol` (relative, or absolute near zero), and FSW/tags exactly except PE and C1.
fn approx_differential(name: &str, nargs: usize, body: &[Instruction], gen: impl Fn(&mut Rng) -> (f64, f64), tol: f64) {
    let mut rng = Rng::from_env(name);
    let mut pair = Pair::new(&routine(nargs, body));
    for rc in 0..4u16 {
        for _ in 0..cases() / 4 {
            let mut d = Data([0; DATA_LEN]);
            d.0[0..2].copy_from_slice(&(0x37fu16 | rc << 10).to_le_bytes());
            let (a, b) = gen(&mut rng);
            d.0[D_A as usize..D_A as usize + 10].copy_from_slice(&f80_from_f64(a));
            d.0[D_B as usize..D_B as usize + 10].copy_from_slice(&f80_from_f64(b));
            let (n, e) = pair.run(&d);
            let (sn, se) = (&n.0[D_SAVE as usize..], &e.0[D_SAVE as usize..]);
            let fsw_mask = !(0x20u16 | 0x200);
            let word = |s: &[u8], at: usize| u16::from_le_bytes([s[at], s[at + 1]]);
            assert_eq!(word(sn, 4) & fsw_mask, word(se, 4) & fsw_mask, "{name}({a}, {b}) FSW");
            assert_eq!(word(sn, 8), word(se, 8), "{name}({a}, {b}) tags");
            for i in 0..8 {
                let (x, y) = (f80_to_f64(&sn[28 + 10 * i..]), f80_to_f64(&se[28 + 10 * i..]));
                let ok = x == y
                    || (x - y).abs() <= tol * x.abs().max(y.abs()).max(1e-300)
                    || (x.abs() < 1e-290 && y.abs() < 1e-290);
                assert!(ok, "{name}({a}, {b}): st{i} native {x:e} emulated {y:e}");
            }
        }
    }
}

#[test]
fn transcendentals_within_tolerance() {
    let op = |c: Code| Instruction::with(c);
    let unit = |r: &mut Rng| (r.next() as f64 / u64::MAX as f64) * 2.0 - 1.0;
    let wide = |r: &mut Rng| {
        let m = r.next() as f64 / u64::MAX as f64 * 2.0 - 1.0;
        m * 2f64.powi(r.below(80) as i32 - 40)
    };
    approx_differential("f2xm1", 1, &[op(Code::F2xm1)], |r| (unit(r), 0.0), 1e-14);
    approx_differential("fsin", 1, &[op(Code::Fsin)], |r| (unit(r) * 3.0, 0.0), 1e-13);
    approx_differential("fcos", 1, &[op(Code::Fcos)], |r| (unit(r) * 3.0, 0.0), 1e-13);
    approx_differential("fsincos", 1, &[op(Code::Fsincos)], |r| (unit(r) * 3.0, 0.0), 1e-13);
    approx_differential("fptan", 1, &[op(Code::Fptan)], |r| (unit(r) * 1.5, 0.0), 1e-13);
    approx_differential("fpatan", 2, &[op(Code::Fpatan)], |r| (wide(r), wide(r)), 1e-14);
    approx_differential("fyl2x", 2, &[op(Code::Fyl2x)], |r| (wide(r).abs(), wide(r)), 1e-14);
    approx_differential("fyl2xp1", 2, &[op(Code::Fyl2xp1)], |r| (unit(r) * 0.29, wide(r)), 1e-14);
    // Special operands are exact: arguments beyond 2^63 are left alone with C2 set, and the
    // SDM's special cases (zeros, infinities, logs of zero and negatives).
    for (name, code) in [
        ("fyl2x special", Code::Fyl2x),
        ("fpatan special", Code::Fpatan),
        ("fyl2xp1 special", Code::Fyl2xp1),
        ("fsin special", Code::Fsin),
        ("fcos special", Code::Fcos),
        ("fptan special", Code::Fptan),
        ("f2xm1 special", Code::F2xm1),
    ] {
        let mut rng = Rng::from_env(name);
        let mut pair = Pair::new(&routine(2, &[op(code)]));
        let specials = [0.0, -0.0, 1.0, -1.0, f64::INFINITY, f64::NEG_INFINITY, 2.0, 0.5, 1e19, -1e30, f64::NAN];
        // Outside their documented domains F2XM1 and FYL2XP1 are undefined.
        let limit = match code {
            Code::Fyl2xp1 => 0.29,
            Code::F2xm1 => 1.0,
            _ => f64::INFINITY,
        };
        for &a in specials.iter().filter(|a| a.abs() <= limit || !a.is_finite()) {
            for &b in &specials {
                let mut d = Data([0; DATA_LEN]);
                d.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
                d.0[D_A as usize..D_A as usize + 10].copy_from_slice(&f80_from_f64(a));
                d.0[D_B as usize..D_B as usize + 10].copy_from_slice(&f80_from_f64(b));
                let (n, e) = pair.run(&d);
                let (sn, se) = (&n.0[D_SAVE as usize..], &e.0[D_SAVE as usize..]);
                let word = |s: &[u8], at: usize| u16::from_le_bytes([s[at], s[at + 1]]);
                let regs_ok = (0..8).all(|i| {
                    let (x, y) = (f80_to_f64(&sn[28 + 10 * i..]), f80_to_f64(&se[28 + 10 * i..]));
                    sn[28 + 10 * i..38 + 10 * i] == se[28 + 10 * i..38 + 10 * i] || (x - y).abs() <= 1e-14 * x.abs()
                });
                let ok = regs_ok && word(sn, 4) & !0x200 == word(se, 4) & !0x200 && word(sn, 8) == word(se, 8);
                if !ok && rng.below(1) == 0 {
                    panic!("{name}({a}, {b}):\nnative:   {}emulated: {}", describe(&n), describe(&e));
                }
            }
        }
    }
    verdict();
}

// ---------------------------------------------------------------------------------------
// State save and restore

/// A state with flags, condition codes, a rotated TOP and mixed tags, built by `routine`'s
/// operands and these instructions.
fn busy_state() -> Vec<Instruction> {
    vec![
        Instruction::with(Code::Fldpi),
        reg2(Code::Fdiv_st0_sti, 0, 2),
        Instruction::with(Code::Fldz),
        Instruction::with(Code::Fxam),
        Instruction::with1(Code::Ffree_sti, st(2)).unwrap(),
    ]
}

/// Compares, besides the final FNSAVE image, an intermediate save area at D_AUX.
fn save_roundtrip(name: &str, body: Vec<Instruction>, aux_ranges: &[(usize, usize)]) {
    let mut rng = Rng::from_env(name);
    let mut pair = Pair::new(&routine(2, &body));
    for _ in 0..cases() / 10 {
        let mut d = Data([0; DATA_LEN]);
        let cw = 0x3fu16 | ([0u16, 2, 3][rng.below(3) as usize]) << 8 | (rng.below(4) as u16) << 10;
        d.0[0..2].copy_from_slice(&cw.to_le_bytes());
        let a = rng.f80();
        let b = rng.f80_near(&a);
        d.0[D_A as usize..D_A as usize + 10].copy_from_slice(&a);
        d.0[D_B as usize..D_B as usize + 10].copy_from_slice(&b);
        let (n, e) = pair.run(&d);
        assert_eq!(
            without_fop(&n),
            without_fop(&e),
            "{name}: final state\nnative:   {}emulated: {}",
            describe(&n),
            describe(&e)
        );
        for &(lo, hi) in aux_ranges {
            let r = D_AUX as usize + lo..D_AUX as usize + hi;
            assert_eq!(n.0[r.clone()], e.0[r], "{name}: save area bytes {lo}..{hi}");
        }
    }
}

#[test]
fn fsave_frstor_roundtrip() {
    let mut body = busy_state();
    body.push(Instruction::with1(Code::Fnsave_m108byte, m(D_AUX)).unwrap());
    body.push(Instruction::with(Code::Fld1)); // disturb the reinitialized state
    body.push(Instruction::with1(Code::Frstor_m108byte, m(D_AUX)).unwrap());
    // Control, status and tag words (with their reserved halves) and the registers. Not FOP
    // (bytes 18-19): the last instruction before the save is FFREE, which the SDM lists among
    // the control instructions that leave FOP alone (ferrite; the AMD hosts agree), while
    // the Intel Xeon hosts store its opcode. The SDM wins.
    save_roundtrip("fsave/frstor", body, &[(0, 12), (28, 108)]);
}

#[test]
fn fstenv_fldenv_roundtrip() {
    let mut body = busy_state();
    body.push(Instruction::with1(Code::Fnstenv_m28byte, m(D_AUX)).unwrap());
    body.push(Instruction::with1(Code::Fldcw_m2byte, m(D_CW)).unwrap());
    body.push(Instruction::with1(Code::Fldenv_m28byte, m(D_AUX)).unwrap());
    // Not FOP (bytes 18-19), as for FSAVE above.
    save_roundtrip("fstenv/fldenv", body, &[(0, 12), (24, 28)]);
}

#[test]
fn fxsave_fxrstor_roundtrip() {
    let mut body = busy_state();
    body.push(Instruction::with1(Code::Fxsave_m512byte, m(D_AUX)).unwrap());
    body.push(Instruction::with(Code::Fninit));
    body.push(Instruction::with(Code::Fld1));
    body.push(Instruction::with1(Code::Fxrstor_m512byte, m(D_AUX)).unwrap());
    // FCW, FSW, abridged tags, MXCSR and the registers (the host stores FOP/FIP/FDP only
    // with an exception pending, and its MXCSR_MASK differs; XMM contents are the host's).
    save_roundtrip("fxsave/fxrstor", body, &[(0, 6), (24, 28), (32, 160)]);
}

fn emu_run_guest(emu: &mut Emu, insns: &[Instruction]) -> Data {
    let code = assemble(insns);
    emu.load(&code);
    let mut d = Data([0; DATA_LEN]);
    emu.run(insns.len() as u64, &mut d);
    d
}

#[test]
fn xsave_xrstor_roundtrip_and_header_checks() {
    let mut emu = Emu::new();
    let mut body = vec![Instruction::with(Code::Fninit), Instruction::with(Code::Fldpi), Instruction::with(Code::Fld1)];
    body.push(Instruction::with2(Code::Mov_r32_imm32, Register::EAX, 3u32).unwrap());
    body.push(Instruction::with2(Code::Xor_r32_rm32, Register::EDX, Register::EDX).unwrap());
    body.push(Instruction::with1(Code::Xsave_mem, m(D_AUX)).unwrap());
    body.push(Instruction::with(Code::Fninit));
    body.push(Instruction::with1(Code::Xrstor_mem, m(D_AUX)).unwrap());
    body.push(Instruction::with1(Code::Fnsave_m108byte, m(D_SAVE)).unwrap());
    let d = emu_run_guest(&mut emu, &body);
    let aux = &d.0[D_AUX as usize..];
    // XSTATE_BV: x87 in use, SSE in its initial state.
    assert_eq!(u64::from_le_bytes(aux[512..520].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(aux[24..28].try_into().unwrap()), 0x1f80);
    let s = &d.0[D_SAVE as usize..];
    assert_eq!(u16::from_le_bytes([s[4], s[5]]) & 0x3800, 6 << 11, "TOP restored");
    assert_eq!(&s[28..38], &f80_bytes(1 << 63, 0x3fff), "ST0 = 1.0 restored");
    // A compacted-format header whose XSTATE_BV names a component XCOMP_BV lacks is
    // rejected with #GP (SDM Vol. 2 XRSTOR; no IDT: the machine shuts down).
    let mut emu = Emu::new();
    let mut bad = Data([0; DATA_LEN]);
    bad.0[D_AUX as usize + 512] = 2;
    bad.0[D_AUX as usize + 527] = 0x80;
    let body = [
        Instruction::with2(Code::Mov_r32_imm32, Register::EAX, 3u32).unwrap(),
        Instruction::with2(Code::Xor_r32_rm32, Register::EDX, Register::EDX).unwrap(),
        Instruction::with1(Code::Xrstor_mem, m(D_AUX)).unwrap(),
    ];
    let code = assemble(&body);
    emu.load(&code);
    emu.bus.load(GUEST_DATA, &bad.0);
    emu.cpu.state.rip = GUEST_CODE;
    emu.cpu.state.gpr[reg::RDI] = GUEST_DATA;
    assert_eq!(emu.cpu.run(&mut emu.bus, 3), RunExit::Shutdown);
}

// ---------------------------------------------------------------------------------------
// Device-not-available and pending exceptions (real mode, IVT handlers that HLT)

/// A real-mode CPU whose vectors 7 (#NM) and 16 (#MF) point at handlers that record the
/// vector at 0:0500 and spin.
fn real_mode(code: &[u8], cr0_bits: u64) -> (Cpu, FlatBus) {
    use iced_x86::code_asm::*;
    let mut bus = FlatBus::new(1 << 20);
    for (vector, handler) in [(7u64, 0x9000u16), (16, 0x9100)] {
        bus.load(vector * 4, &[handler as u8, (handler >> 8) as u8, 0, 0]);
        let mut a = CodeAssembler::new(16).unwrap();
        let mut spin = a.create_label();
        a.mov(byte_ptr(0x500), vector as u32).unwrap();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
        bus.load(handler as u64, &a.assemble(handler as u64).unwrap());
    }
    bus.load(0x7c00, code);
    let mut cpu = Cpu::default();
    let code_seg = cpu.state.seg_mut(Seg::Cs);
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.state.rip = 0x7c00;
    cpu.state.gpr[reg::RSP] = 0x7000;
    cpu.state.cr0 = cr0::ET | cr0_bits;
    (cpu, bus)
}

/// Assembles 16-bit code at 0x7c00 that ends in a spin loop.
fn asm16(f: impl FnOnce(&mut iced_x86::code_asm::CodeAssembler)) -> Vec<u8> {
    let mut a = iced_x86::code_asm::CodeAssembler::new(16).unwrap();
    f(&mut a);
    let mut spin = a.create_label();
    a.set_label(&mut spin).unwrap();
    a.jmp(spin).unwrap();
    a.assemble(0x7c00).unwrap()
}

/// Runs a while; returns the vector a handler recorded (0 for none) and the IP the exception
/// pushed.
fn run_real(cpu: &mut Cpu, bus: &mut FlatBus) -> (u8, u16) {
    assert_eq!(cpu.run(bus, 200), RunExit::Budget);
    let sp = cpu.state.gpr[reg::RSP] as usize;
    let vector = bus.ram[0x500];
    (vector, if vector != 0 { u16::from_le_bytes([bus.ram[sp], bus.ram[sp + 1]]) } else { 0 })
}

#[test]
fn device_not_available_rules() {
    let fld = asm16(|a| {
        a.fld1().unwrap();
    });
    // CR0.TS or CR0.EM: x87 instructions raise #NM before doing anything.
    for bits in [cr0::TS, cr0::EM, cr0::TS | cr0::MP] {
        let (mut cpu, mut bus) = real_mode(&fld, bits);
        assert_eq!(run_real(&mut cpu, &mut bus), (7, 0x7c00));
        assert_eq!(cpu.state.fpu.fsw, 0, "no state change");
    }
    // WAIT faults only with both MP and TS.
    let wait = asm16(|a| {
        a.wait().unwrap();
    });
    let (mut cpu, mut bus) = real_mode(&wait, cr0::TS);
    assert_eq!(run_real(&mut cpu, &mut bus).0, 0);
    let (mut cpu, mut bus) = real_mode(&wait, cr0::TS | cr0::MP);
    assert_eq!(run_real(&mut cpu, &mut bus), (7, 0x7c00));
    let (mut cpu, mut bus) = real_mode(&wait, cr0::EM);
    assert_eq!(run_real(&mut cpu, &mut bus).0, 0, "EM does not affect WAIT");
}

#[test]
fn unmasked_exceptions_pend_until_the_next_waiting_instruction() {
    use iced_x86::code_asm::*;
    // Unmask ZE, divide by zero, then FNSTSW (no wait) and FLD1 (waiting).
    let code = asm16(|a| {
        a.mov(word_ptr(0x600), 0x037bu32).unwrap();
        a.fldcw(word_ptr(0x600)).unwrap();
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.fdiv_2(st0, st1).unwrap();
        a.fnstsw(word_ptr(0x602)).unwrap();
        a.fld1().unwrap();
    });
    let fault_ip = 0x7c00 + code.len() as u16 - 4; // the FLD1 before the spin loop
    let (mut cpu, mut bus) = real_mode(&code, cr0::NE);
    assert_eq!(run_real(&mut cpu, &mut bus), (16, fault_ip));
    let sw = u16::from_le_bytes([bus.ram[0x602], bus.ram[0x603]]);
    assert_eq!(sw & 0x80ff, 0x8084, "B, ES and ZE set");
    assert_eq!(cpu.state.fpu.st(0).sig, 1 << 63, "ST0 (1.0) left alone by the unmasked #Z");
    // With CR0.NE = 0 (FERR# to the PIC, not modelled) execution goes on.
    let (mut cpu, mut bus) = real_mode(&code, 0);
    assert_eq!(run_real(&mut cpu, &mut bus).0, 0);
    // FNCLEX clears the pending exception, so the waiting instruction proceeds.
    let code = asm16(|a| {
        a.mov(word_ptr(0x600), 0x037bu32).unwrap();
        a.fldcw(word_ptr(0x600)).unwrap();
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.fdiv_2(st0, st1).unwrap();
        a.fnclex().unwrap();
        a.fld1().unwrap();
    });
    let (mut cpu, mut bus) = real_mode(&code, cr0::NE);
    assert_eq!(run_real(&mut cpu, &mut bus).0, 0);
    // FLDCW unmasking an already raised exception makes it pending.
    let code = asm16(|a| {
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.fdiv_2(st0, st1).unwrap();
        a.mov(word_ptr(0x600), 0x037bu32).unwrap();
        a.fldcw(word_ptr(0x600)).unwrap();
        a.wait().unwrap();
    });
    let (mut cpu, mut bus) = real_mode(&code, cr0::NE);
    assert_eq!(run_real(&mut cpu, &mut bus).0, 16);
}

#[test]
fn environment_layouts_in_real_and_16_bit_modes() {
    use iced_x86::code_asm::*;
    // Real mode, 16-bit operand size: 14 bytes, 20-bit linear instruction pointer.
    let code = asm16(|a| {
        a.fld1().unwrap();
        a.fnstenv(ptr(0x600)).unwrap();
        a.fnsave(ptr(0x700)).unwrap();
        a.fldpi().unwrap();
        a.frstor(ptr(0x700)).unwrap();
    });
    let (mut cpu, mut bus) = real_mode(&code, 0);
    run_real(&mut cpu, &mut bus);
    let w = |at: usize| u16::from_le_bytes([bus.ram[at], bus.ram[at + 1]]);
    assert_eq!(w(0x600), 0x037f);
    assert_eq!(w(0x602), 0x3800, "TOP = 7");
    assert_eq!(w(0x604), 0x3fff, "ST0 valid, others empty");
    assert_eq!(w(0x606), 0x7c00, "FIP[15:0]");
    assert_eq!(w(0x608), 0x01e8, "FIP[19:16] = 0, FOP = D9 E8");
    // FNSAVE reinitialized, FRSTOR brought back ST0 = 1.0 with TOP = 7.
    assert_eq!(cpu.state.fpu.top(), 7);
    assert_eq!(cpu.state.fpu.st(0).sig, 1 << 63);
    assert_eq!(cpu.state.fpu.ftw, 0x3fff);
    assert_eq!(cpu.state.fpu.fcw, 0x037f);
}

#[test]
fn mmx_aliasing_helpers() {
    let mut cpu = Cpu::default();
    let f = &mut cpu.state.fpu;
    f.set_top(5);
    f.mmx_write(2, 0x1234_5678_9abc_def0);
    assert_eq!(f.top(), 0);
    assert_eq!(f.ftw, 0, "all registers valid in MMX mode");
    assert_eq!(f.st[2], f80_bytes(0x1234_5678_9abc_def0, 0xffff));
    assert_eq!(f.mmx_read(2), 0x1234_5678_9abc_def0);
    // As x87 data the register is special (exponent all ones, integer bit clear here).
    assert_eq!(f.full_tag_word() >> 4 & 3, 2);
    f.emms();
    assert_eq!(f.ftw, 0xffff);
}
