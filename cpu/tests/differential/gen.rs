//! Random test cases: one instruction of the general-purpose set, chosen from every iced-x86
//! encoding valid in the mode, with random register operands, immediates and memory operands
//! that point into the data area (or, sometimes, somewhere that faults).

use super::env::{Mode, DATA_BASE, DATA_LO, STACK_TOP};
use ferrite_cpu::state::{flags, reg, CpuState};
use iced_x86::{
    Code, CpuidFeature, EncodingKind, FlowControl, Instruction, Mnemonic, OpCodeOperandKind as K, OpKind, Register,
};

/// splitmix64: small, fast and good enough to spread operands.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A value biased towards the edges operands love: 0, 1, -1, sign bits, small numbers.
    pub fn interesting(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => 1,
            2 => !0,
            3 => 0x80u64 << (self.below(8) * 8),
            4 => self.below(64),
            5 => 1 << self.below(64),
            _ => self.next(),
        }
    }
}

/// Features whose instructions the KVM instruction emulator handles (see the brief: SSE,
/// x87, POPCNT, CRC32 and CMPXCHG16B end in emulation failures).
fn oracle_covers(f: CpuidFeature) -> bool {
    use CpuidFeature as C;
    matches!(
        f,
        C::INTEL8086 | C::INTEL186 | C::INTEL286 | C::INTEL386 | C::INTEL486 | C::X64 | C::CMOV | C::CX8 | C::MULTIBYTENOP
    )
}

/// Instructions left out of random generation, with the reason.
fn excluded(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        // Port I/O: the oracle exits to user space; covered by io tests instead.
        In | Out | Insb | Insw | Insd | Outsb | Outsw | Outsd
        // Stops the run or differs by design (timestamps, model).
        | Hlt | Cpuid | Rdtsc | Rdtscp | Rdpmc | Rdmsr | Wrmsr
        // Privileged/system state changes are tested by hand-written cases.
        | Lgdt | Lidt | Lldt | Ltr | Lmsw | Clts | Invd | Wbinvd | Invlpg | Swapgs | Sysret | Sysexit
        | Syscall | Sysenter
        // Undefined or model-specific results.
        | Ud0 | Ud1 | Ud2 | Bound | Salc | Int1 | Loadall
        // Interrupt-flag/IOPL games would let the oracle's HLT wait for interrupts.
        | Sti | Popf | Popfd | Popfq
    )
}

/// System instructions that only read system state (or touch nothing the next case needs):
/// descriptor-table and control-register reads, segment checks, CLTS.
fn system_read(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Sgdt | Sidt | Sldt | Str | Smsw | Lar | Lsl | Verr | Verw | Clts | Cli)
}

/// Every encoding of the general-purpose set valid in `mode`.
pub fn candidate_codes(mode: Mode) -> Vec<Code> {
    Code::values()
        .filter(|&c| {
            let info = c.op_code();
            info.encoding() == EncodingKind::Legacy
                && info.is_instruction()
                && match mode {
                    Mode::Real => info.mode16() && info.real_mode(),
                    Mode::Protected32 => info.mode32(),
                    Mode::Long64 => info.mode64(),
                }
                && (!info.is_privileged() || system_read(c.mnemonic()))
                && !info.is_input_output()
                && c.cpuid_features().iter().all(|&f| oracle_covers(f))
                && (c.flow_control() == FlowControl::Next
                    || relative_branch(c)
                    || matches!(
                        c.mnemonic(),
                        Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Into | Mnemonic::Ret | Mnemonic::Retf | Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq
                    )
                    || far_direct(c))
                && !excluded(c.mnemonic())
                // Long-mode IRET disagrees with the oracle in cases not yet understood (see
                // the closing note of the CPU issue); it is covered by cpu/tests/far.rs.
                && !(mode == Mode::Long64 && matches!(c.mnemonic(), Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq))
                && info.op_kinds().iter().all(|&k| supported_kind(k))
        })
        .collect()
}

fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_rm
            | K::r32_opcode
            | K::r64_reg
            | K::r64_rm
            | K::r64_opcode
            | K::mem
            | K::seg_reg
            | K::es
            | K::cs
            | K::ss
            | K::ds
            | K::fs
            | K::gs
            | K::al
            | K::cl
            | K::ax
            | K::dx
            | K::eax
            | K::rax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::seg_rSI
            | K::es_rDI
            | K::seg_rDI
            | K::seg_rBX_al
            | K::farbr2_2
            | K::farbr4_2
            | K::br16_1
            | K::br32_1
            | K::br64_1
            | K::br16_2
            | K::br32_4
            | K::br64_4
    )
}

/// Near relative JMP, Jcc, LOOPcc, JrCXZ and CALL: their target is a HLT the harness plants.
fn relative_branch(c: Code) -> bool {
    matches!(c.flow_control(), FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call)
        && c.op_code().op_kinds().iter().any(|k| matches!(k, K::br16_1 | K::br32_1 | K::br64_1 | K::br16_2 | K::br32_4 | K::br64_4))
}

/// Direct far JMP/CALL (ptr16:16, ptr16:32).
fn far_direct(c: Code) -> bool {
    c.op_code().op_kinds().iter().any(|k| matches!(k, K::farbr2_2 | K::farbr4_2))
}

/// Where relative branches go, as an offset from the start of the code (a HLT lives there).
pub const BRANCH_TARGET_OFFSET: u64 = 0x40;

const GPR8: [Register; 16] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R14L,
    Register::R15L,
];

/// A register of `size` bytes, never the stack pointer.
fn gpr(rng: &mut Rng, size: u32, mode: Mode) -> Register {
    let n = if mode == Mode::Long64 { 16 } else { 8 };
    loop {
        let i = rng.below(n) as u32;
        if i == 4 {
            continue;
        }
        return match size {
            1 => {
                let r = GPR8[rng.below(if mode == Mode::Long64 { 16 } else { 8 }) as usize];
                r
            }
            2 => Register::try_from(Register::AX as u32 as usize + i as usize).unwrap(),
            4 => Register::try_from(Register::EAX as u32 as usize + i as usize).unwrap(),
            _ => Register::try_from(Register::RAX as u32 as usize + i as usize).unwrap(),
        };
    }
}

fn base_reg(mode: Mode) -> Register {
    match mode {
        Mode::Real => Register::BX,
        Mode::Protected32 => Register::EBX,
        Mode::Long64 => Register::RBX,
    }
}

fn set_memory(insn: &mut Instruction, i: u32, rng: &mut Rng, mode: Mode) {
    insn.set_op_kind(i, OpKind::Memory);
    insn.set_memory_base(base_reg(mode));
    insn.set_memory_index(Register::None);
    insn.set_memory_index_scale(1);
    let disp = (rng.below(0x200) as i64 - 0x100) as u64;
    insn.set_memory_displacement64(disp);
    insn.set_memory_displ_size(match mode {
        Mode::Real => 2,
        Mode::Protected32 => 4,
        Mode::Long64 => 8,
    });
}

/// Builds one random instruction of `code`; `None` if the encoder rejects this combination.
pub fn instruction(code: Code, rng: &mut Rng, mode: Mode) -> Option<Instruction> {
    let info = code.op_code();
    let mut insn = Instruction::default();
    insn.set_code(code);
    for (i, &k) in info.op_kinds().iter().enumerate() {
        let i = i as u32;
        let reg = |insn: &mut Instruction, r: Register| {
            insn.set_op_kind(i, OpKind::Register);
            insn.set_op_register(i, r);
        };
        match k {
            K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem => {
                if rng.chance(50) {
                    set_memory(&mut insn, i, rng, mode);
                } else {
                    let size = match k {
                        K::r8_or_mem => 1,
                        K::r16_or_mem => 2,
                        K::r32_or_mem => 4,
                        _ => 8,
                    };
                    let r = gpr(rng, size, mode);
                    reg(&mut insn, r);
                }
            }
            K::r8_reg | K::r8_opcode => {
                let r = gpr(rng, 1, mode);
                reg(&mut insn, r)
            }
            K::r16_reg | K::r16_rm | K::r16_opcode => {
                let r = gpr(rng, 2, mode);
                reg(&mut insn, r)
            }
            K::r32_reg | K::r32_rm | K::r32_opcode => {
                let r = gpr(rng, 4, mode);
                reg(&mut insn, r)
            }
            K::r64_reg | K::r64_rm | K::r64_opcode => {
                let r = gpr(rng, 8, mode);
                reg(&mut insn, r)
            }
            K::mem => set_memory(&mut insn, i, rng, mode),
            K::seg_reg => {
                let segs = [Register::ES, Register::SS, Register::DS, Register::FS, Register::GS];
                reg(&mut insn, segs[rng.below(5) as usize])
            }
            K::es => reg(&mut insn, Register::ES),
            K::cs => reg(&mut insn, Register::CS),
            K::ss => reg(&mut insn, Register::SS),
            K::ds => reg(&mut insn, Register::DS),
            K::fs => reg(&mut insn, Register::FS),
            K::gs => reg(&mut insn, Register::GS),
            K::al => reg(&mut insn, Register::AL),
            K::cl => reg(&mut insn, Register::CL),
            K::ax => reg(&mut insn, Register::AX),
            K::dx => reg(&mut insn, Register::DX),
            K::eax => reg(&mut insn, Register::EAX),
            K::rax => reg(&mut insn, Register::RAX),
            K::imm8 if insn.mnemonic() == Mnemonic::Int => {
                // Software interrupts: any vector (its gate leads to a HLT), or ones past the
                // IDT/IVT limit now and then.
                insn.set_op_kind(i, OpKind::Immediate8);
                insn.set_immediate8(rng.below(256) as u8);
            }
            K::imm8 => {
                insn.set_op_kind(i, OpKind::Immediate8);
                insn.set_immediate8(rng.interesting() as u8);
            }
            K::imm8_const_1 => {
                insn.set_op_kind(i, OpKind::Immediate8);
                insn.set_immediate8(1);
            }
            K::imm8sex16 => {
                insn.set_op_kind(i, OpKind::Immediate8to16);
                insn.set_immediate8(rng.interesting() as u8);
            }
            K::imm8sex32 => {
                insn.set_op_kind(i, OpKind::Immediate8to32);
                insn.set_immediate8(rng.interesting() as u8);
            }
            K::imm8sex64 => {
                insn.set_op_kind(i, OpKind::Immediate8to64);
                insn.set_immediate8(rng.interesting() as u8);
            }
            K::imm16 => {
                insn.set_op_kind(i, OpKind::Immediate16);
                insn.set_immediate16(rng.interesting() as u16);
            }
            K::imm32 => {
                insn.set_op_kind(i, OpKind::Immediate32);
                insn.set_immediate32(rng.interesting() as u32);
            }
            K::imm32sex64 => {
                insn.set_op_kind(i, OpKind::Immediate32to64);
                insn.set_immediate32(rng.interesting() as u32);
            }
            K::imm64 => {
                insn.set_op_kind(i, OpKind::Immediate64);
                insn.set_immediate64(rng.interesting());
            }
            K::farbr2_2 | K::farbr4_2 => {
                // The mode's own code segment (or, now and then, another one or a bad one),
                // at the planted HLT.
                let (sel, off) = far_target(rng, mode);
                if k == K::farbr2_2 {
                    insn.set_op_kind(i, OpKind::FarBranch16);
                    insn.set_far_branch16(off as u16);
                } else {
                    insn.set_op_kind(i, OpKind::FarBranch32);
                    insn.set_far_branch32(off as u32);
                }
                insn.set_far_branch_selector(sel);
            }
            K::br16_1 | K::br16_2 => {
                insn.set_op_kind(i, OpKind::NearBranch16);
                insn.set_near_branch16(BRANCH_TARGET_OFFSET as u16);
            }
            K::br32_1 | K::br32_4 => {
                insn.set_op_kind(i, OpKind::NearBranch32);
                let base = if mode == Mode::Real { 0 } else { super::env::CODE as u32 };
                insn.set_near_branch32(base + BRANCH_TARGET_OFFSET as u32);
            }
            K::br64_1 | K::br64_4 => {
                insn.set_op_kind(i, OpKind::NearBranch64);
                insn.set_near_branch64(super::env::CODE + BRANCH_TARGET_OFFSET);
            }
            K::seg_rSI | K::es_rDI | K::seg_rDI | K::seg_rBX_al => {
                let kind = match (k, mode) {
                    (K::seg_rSI, Mode::Real) => OpKind::MemorySegSI,
                    (K::seg_rSI, Mode::Protected32) => OpKind::MemorySegESI,
                    (K::seg_rSI, _) => OpKind::MemorySegRSI,
                    (K::es_rDI, Mode::Real) => OpKind::MemoryESDI,
                    (K::es_rDI, Mode::Protected32) => OpKind::MemoryESEDI,
                    (K::es_rDI, _) => OpKind::MemoryESRDI,
                    (K::seg_rDI, Mode::Real) => OpKind::MemorySegDI,
                    (K::seg_rDI, Mode::Protected32) => OpKind::MemorySegEDI,
                    (K::seg_rDI, _) => OpKind::MemorySegRDI,
                    _ => {
                        // XLAT: [rBX + AL]
                        insn.set_op_kind(i, OpKind::Memory);
                        insn.set_memory_base(base_reg(mode));
                        insn.set_memory_index(Register::AL);
                        insn.set_memory_index_scale(1);
                        continue;
                    }
                };
                insn.set_op_kind(i, kind);
            }
            _ => return None,
        }
    }
    if info.can_use_rep_prefix() && rng.chance(50) {
        insn.set_has_rep_prefix(true);
    } else if info.can_use_repne_prefix() && rng.chance(30) {
        insn.set_has_repne_prefix(true);
    }
    Some(insn)
}

/// Random registers and flags, with the base register, rSI/rDI and rCX pointed at sensible
/// places most of the time.
pub fn registers(st: &mut CpuState, rng: &mut Rng, mode: Mode) {
    let width_mask = match mode {
        Mode::Long64 => !0u64,
        _ => 0xffff_ffff,
    };
    for (i, g) in st.gpr.iter_mut().enumerate() {
        if i != reg::RSP {
            *g = rng.interesting() & width_mask;
        }
    }
    let data = match mode {
        Mode::Real => DATA_BASE - DATA_LO,
        _ => DATA_BASE,
    };
    if rng.chance(95) {
        st.gpr[reg::RBX] = data;
    } else if mode == Mode::Long64 && rng.chance(50) {
        // Unmapped (#PF) or non-canonical (#GP) addresses.
        st.gpr[reg::RBX] = if rng.chance(50) { 0x40_0000 + rng.below(1 << 30) } else { rng.next() };
    }
    for r in [reg::RSI, reg::RDI] {
        if rng.chance(85) {
            st.gpr[r] = data + rng.below(0x100);
        }
    }
    if rng.chance(85) {
        st.gpr[reg::RCX] = (st.gpr[reg::RCX] & !0xffff) | rng.below(20);
    }
    st.gpr[reg::RSP] = STACK_TOP - rng.below(8) * 2;
    let arith = flags::CF | flags::PF | flags::AF | flags::ZF | flags::SF | flags::OF;
    st.rflags = flags::FIXED1 | (rng.next() & arith) | if rng.chance(20) { flags::DF } else { 0 };
}

/// RFLAGS bits an instruction leaves undefined (iced's instruction info).
pub fn undefined_flags(insn: &Instruction) -> u64 {
    let u = insn.rflags_undefined();
    let mut m = 0;
    for (bit, f) in [(1u32, flags::OF), (2, flags::SF), (4, flags::ZF), (8, flags::AF), (16, flags::CF), (32, flags::PF)] {
        if u & bit != 0 {
            m |= f;
        }
    }
    m
}

/// Value of operand `i` (register or memory) in the starting state.
fn operand_value(insn: &Instruction, i: u32, st: &CpuState, mem: &[u8], mode: Mode) -> u64 {
    match insn.op_kind(i) {
        OpKind::Register => {
            let r = insn.op_register(i);
            let full = st.gpr[r.full_register().number() % 16];
            match r.size() {
                1 if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => (full >> 8) & 0xff,
                1 => full & 0xff,
                2 => full & 0xffff,
                4 => full & 0xffff_ffff,
                _ => full,
            }
        }
        OpKind::Memory => {
            let base = st.gpr[insn.memory_base().full_register().number() % 16];
            let off = base.wrapping_add(insn.memory_displacement64());
            let lin = match mode {
                Mode::Real => (super::env::DATA_LO + (off & 0xffff)) as usize,
                Mode::Protected32 => (off & 0xffff_ffff) as usize,
                Mode::Long64 => off as usize,
            };
            let size = insn.memory_size().size();
            (0..size).fold(0u64, |v, k| v | (*mem.get(lin.wrapping_add(k)).unwrap_or(&0) as u64) << (8 * k))
        }
        _ => insn.immediate(i),
    }
}

/// Whether the SDM leaves the result of `insn` undefined for the starting state `st`:
/// SHLD/SHRD with a (masked) count larger than the operand size; BSF/BSR of zero (the
/// destination is undefined; ferrite leaves it unchanged like Intel hardware, while the
/// oracle's host zero-extends a 32-bit destination).
pub fn result_undefined(insn: &Instruction, st: &CpuState, mem: &[u8], mode: Mode) -> bool {
    if matches!(insn.mnemonic(), Mnemonic::Bsf | Mnemonic::Bsr) {
        return operand_value(insn, 1, st, mem, mode) == 0;
    }
    if !matches!(insn.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd) {
        return false;
    }
    let bits = match insn.op_kind(0) {
        OpKind::Register => insn.op0_register().size() as u32 * 8,
        _ => insn.memory_size().size() as u32 * 8,
    };
    let count = match insn.op_kind(2) {
        OpKind::Register => st.gpr[1] as u32,
        _ => insn.immediate8() as u32,
    } & if bits == 64 { 63 } else { 31 };
    count > bits
}

/// Flags the SDM leaves undefined for these operands beyond iced's per-instruction list:
/// OF after shifts and rotates whose masked count is not 1.
pub fn operand_undefined_flags(insn: &Instruction, st: &CpuState) -> u64 {
    use Mnemonic::*;
    if !matches!(insn.mnemonic(), Rcl | Rcr | Rol | Ror | Shl | Sal | Shr | Sar) || insn.op_count() < 2 {
        return 0;
    }
    let wide = insn.op_kind(0) == OpKind::Register && insn.op0_register().size() == 8
        || insn.op_kind(0) != OpKind::Register && insn.memory_size().size() == 8;
    let count = match insn.op_kind(1) {
        OpKind::Register => st.gpr[1],
        _ => insn.immediate(1),
    } & if wide { 63 } else { 31 };
    if count != 1 {
        flags::OF
    } else {
        0
    }
}

/// Flags where the oracle is known to disagree with the Intel SDM, which wins.
pub fn oracle_quirk_flags(insn: &Instruction) -> u64 {
    match insn.mnemonic() {
        // KVM's emulator computes AAD's and AAM's SF and ZF from AX instead of AL; the SDM
        // defines SF, ZF and PF from the result in AL, which is what ferrite does.
        Mnemonic::Aad | Mnemonic::Aam => flags::SF | flags::ZF,
        _ => 0,
    }
}

/// Cases where the oracle is known to disagree with the SDM in a way a flag mask cannot
/// express: a REPE/REPNE CMPS/SCAS that faults after completing some iterations keeps the
/// flags of the completed iterations on hardware (the SDM's REP semantics: the state at the
/// fault is that after the last completed iteration), while KVM's emulator rolls the flags
/// back but keeps the advanced rSI/rDI/rCX. `faulted` says the run ended in a handler.
///
/// Also INT n to a reserved exception vector, and MOV m16, Sreg with a 32/64-bit operand size: the SDM stores 16 bits to memory
/// "regardless of operand size"; KVM's emulator stores the full operand size.
pub fn oracle_quirk_case(insn: &Instruction, faulted: bool) -> bool {
    use Mnemonic::*;
    let rep_compare_fault = faulted
        && (insn.has_repe_prefix() || insn.has_repne_prefix())
        && matches!(insn.mnemonic(), Cmpsb | Cmpsw | Cmpsd | Cmpsq | Scasb | Scasw | Scasd | Scasq);
    // (the same holds for STR, SLDT and SMSW to memory).
    let wide_sreg_store = matches!(
        insn.code(),
        Code::Mov_r32m16_Sreg
            | Code::Mov_r64m16_Sreg
            | Code::Str_r32m16
            | Code::Str_r64m16
            | Code::Sldt_r32m16
            | Code::Sldt_r64m16
            | Code::Smsw_r32m16
            | Code::Smsw_r64m16
    ) && insn.op0_kind() == OpKind::Memory;
    // INT n to the reserved exception vectors 15H-1FH: the oracle (a nested hypervisor)
    // raises #GP; the SDM delivers them through their IDT gate like any other vector.
    let reserved_vector_int = insn.mnemonic() == Int && (0x15..=0x1f).contains(&insn.immediate8());
    rep_compare_fault || wide_sreg_store || reserved_vector_int
}

/// A far target: usually the current code segment at the planted HLT, sometimes another
/// code segment of the GDT, a data segment (#GP) or a null selector (#GP).
pub fn far_target(rng: &mut Rng, mode: Mode) -> (u16, u64) {
    use super::env::{CODE, CODE16, CODE32, CODE64, DATA32};
    let here = match mode {
        Mode::Real => (0x2000, BRANCH_TARGET_OFFSET),
        Mode::Protected32 => (CODE32, CODE + BRANCH_TARGET_OFFSET),
        Mode::Long64 => (CODE64, CODE + BRANCH_TARGET_OFFSET),
    };
    match rng.below(10) {
        0 => (CODE16, BRANCH_TARGET_OFFSET),
        1 => (DATA32, CODE + BRANCH_TARGET_OFFSET),
        2 => (0, CODE + BRANCH_TARGET_OFFSET),
        3 if mode != Mode::Real => (CODE32, CODE + BRANCH_TARGET_OFFSET),
        _ => here,
    }
}

/// The stack image a far return or IRET of `insn` pops: a far target, and for IRET flags
/// (arithmetic bits random, IF/TF clear) and, where it pops them, SS:rSP.
pub fn return_frame(insn: &Instruction, rng: &mut Rng, mode: Mode, st: &CpuState) -> Option<(u8, Vec<u64>)> {
    use super::env::DATA32;
    let size: u8 = match insn.code() {
        Code::Iretw | Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Iretd | Code::Retfd | Code::Retfd_imm16 => 4,
        Code::Iretq | Code::Retfq | Code::Retfq_imm16 => 8,
        _ => return None,
    };
    let (sel, off) = far_target(rng, mode);
    let mut frame = vec![off, sel as u64];
    if matches!(insn.mnemonic(), Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq) {
        let arith = flags::CF | flags::PF | flags::AF | flags::ZF | flags::SF | flags::OF;
        frame.push(flags::FIXED1 | (rng.next() & arith));
        if mode == Mode::Long64 {
            // 64-bit IRET always pops SS:RSP.
            frame.push(st.gpr[reg::RSP] + 0x40);
            frame.push(DATA32 as u64);
        }
    }
    Some((size, frame))
}
