//! MUL IMUL DIV IDIV: results, CF/OF per the SDM, the undefined flags as Intel cores set them
//! (SF and PF from the low half, ZF = AF = 0 for multiplies; nothing changes for divides),
//! and #DE for division by zero and quotient overflow.

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

fn exec(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, regs: &[(usize, u64)], status: u64) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.code(build);
    vm.preset(regs, status);
    vm.finish();
    vm
}

/// Expects #DE at the first instruction, with the registers untouched.
fn expect_de(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, regs: &[(usize, u64)]) {
    let mut vm = Vm::new(Mode::Long);
    vm.code(build);
    vm.preset(regs, CF | ZF);
    let before = vm.cpu.state.gpr;
    assert_eq!(vm.run(), Stop::Exception(0));
    assert_eq!(vm.frame(0), CODE, "#DE returns to the divide");
    assert_eq!(vm.cpu.state.gpr[RAX], before[RAX]);
    assert_eq!(vm.cpu.state.gpr[RDX], before[RDX]);
}

#[test]
fn mul_all_sizes() {
    // 0x80 * 2 = 0x100: CF = OF = 1; SF/PF from AL = 0; ZF and AF cleared (Intel).
    let vm = exec(|a| a.mul(bl), &[(RAX, 0x80), (RBX, 2)], ZF | AF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0100, CF | OF | PF));
    let vm = exec(|a| a.mul(bx), &[(RAX, 3), (RBX, 5), (RDX, 0x7777)], STATUS);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.gpr(RDX) & 0xffff, vm.status()), (15, 0, PF));
    // 32-bit halves zero-extend RAX and RDX.
    let vm = exec(|a| a.mul(ecx), &[(RAX, 0xffff_ffff), (RCX, 2), (RDX, 0xdead_0000_0000_0000)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX), vm.status()), (0xffff_fffe, 1, CF | OF | SF));
    let vm = exec(|a| a.mul(rcx), &[(RAX, 1 << 63), (RCX, 4)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX), vm.status()), (0, 2, CF | OF | PF));
}

#[test]
fn imul_one_operand() {
    // -2 * 3 = -6 fits a byte: CF = OF = 0, SF from AL.
    let vm = exec(|a| a.imul(bl), &[(RAX, 0xfe), (RBX, 3)], CF | OF | ZF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0xfffa, SF | PF));
    // 0x40000000 * 2 does not fit a signed dword.
    let vm = exec(|a| a.imul(ecx), &[(RAX, 0x4000_0000), (RCX, 2)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX), vm.status()), (0x8000_0000, 0, CF | OF | SF | PF));
    // -1 * -1 = 1 in RDX:RAX.
    let vm = exec(|a| a.imul(rcx), &[(RAX, !0), (RCX, !0)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX), vm.status()), (1, 0, 0));
}

#[test]
fn imul_two_and_three_operands() {
    let vm = exec(|a| a.imul_2(eax, ebx), &[(RAX, 0xffff_ffff_ffff_fffd), (RBX, 7)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0xffff_ffeb, SF | PF));
    // 2^60 * 16 overflows 64 bits: truncated to 0 with ZF still clear.
    let vm = exec(|a| a.imul_3(rax, rbx, 0x10), &[(RBX, 1 << 60)], ZF);
    assert_eq!((vm.gpr(RAX), vm.status()), (0, CF | OF | PF));
    // -32768 * -1 does not fit a word.
    let vm = exec(|a| a.imul_3(ax, bx, -1), &[(RAX, 0x1111_0000), (RBX, 0x8000)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x1111_8000, CF | OF | SF | PF));
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.imul_3(ecx, dword_ptr(rbx), 1000));
    vm.write(DATA, &(-3i32).to_le_bytes());
    vm.preset(&[(RBX, DATA), (RCX, !0)], 0);
    vm.finish();
    assert_eq!(vm.gpr(RCX), (-3000i32) as u32 as u64);
}

#[test]
fn div_results_and_flags_kept() {
    let vm = exec(|a| a.div(bl), &[(RAX, 0x0100), (RBX, 3)], ZF | CF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0155, ZF | CF));
    let vm = exec(|a| a.div(ecx), &[(RAX, 0), (RDX, 1), (RCX, 2)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX)), (0x8000_0000, 0));
    let vm = exec(|a| a.div(rcx), &[(RAX, 7), (RDX, 5), (RCX, 0x10)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX)), (0x5000_0000_0000_0000, 7));
}

#[test]
fn idiv_truncates_toward_zero() {
    // -7 / 2 = -3 remainder -1.
    let vm = exec(|a| a.idiv(bl), &[(RAX, 0xfff9), (RBX, 2)], 0);
    assert_eq!(vm.gpr(RAX) & 0xffff, 0xfffd);
    let vm = exec(|a| a.idiv(rcx), &[(RAX, !0), (RDX, !0), (RCX, 0x10)], 0);
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX)), (0, !0));
    // -32768 / 1 fits.
    let vm = exec(|a| a.idiv(cx), &[(RAX, 0x8000), (RDX, 0xffff), (RCX, 1)], 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.gpr(RDX) & 0xffff), (0x8000, 0));
}

#[test]
fn divide_errors() {
    expect_de(|a| a.div(bl), &[(RAX, 0x1234), (RBX, 0)]);
    expect_de(|a| a.div(bl), &[(RAX, 0x0300), (RBX, 3)]);
    expect_de(|a| a.div(rcx), &[(RAX, 0), (RDX, 1), (RCX, 1)]);
    expect_de(|a| a.idiv(rcx), &[(RAX, 5), (RDX, 0), (RCX, 0)]);
    // INT_MIN / -1 in every size.
    expect_de(|a| a.idiv(bl), &[(RAX, 0xff80), (RBX, 0xff)]);
    expect_de(|a| a.idiv(cx), &[(RAX, 0x8000), (RDX, 0xffff), (RCX, 0xffff)]);
    expect_de(|a| a.idiv(ecx), &[(RAX, 0x8000_0000), (RDX, 0xffff_ffff), (RCX, 0xffff_ffff)]);
    expect_de(|a| a.idiv(rcx), &[(RAX, 1 << 63), (RDX, !0), (RCX, !0)]);
    // The whole 128-bit dividend at its minimum, divided by -1.
    expect_de(|a| a.idiv(rcx), &[(RAX, 0), (RDX, 1 << 63), (RCX, !0)]);
    // +32768 does not fit a signed word quotient.
    expect_de(|a| a.idiv(cx), &[(RAX, 0x8000), (RDX, 0), (RCX, 1)]);
}

#[test]
fn real_mode_word_multiply() {
    let mut vm = Vm::new(Mode::Real);
    vm.code(|a| a.mul(cx));
    vm.preset(&[(RAX, 0x1234), (RCX, 0x100)], 0);
    vm.finish();
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.gpr(RDX) & 0xffff), (0x3400, 0x12));
}
