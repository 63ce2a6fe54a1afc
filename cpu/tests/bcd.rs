//! DAA DAS AAA AAS AAM AAD: SDM results, with the undefined flags as Intel cores set them
//! (see `interp/bcd.rs`), #DE for AAM 0 and #UD in 64-bit mode.

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

fn exec(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, acc: u64, status: u64) -> Vm {
    let mut vm = Vm::new(Mode::Protected32);
    vm.code(build);
    vm.preset(&[(RAX, acc)], status);
    vm.finish();
    vm
}

#[test]
fn daa_after_add() {
    // 79 + 35 = 0xae; DAA -> 0x14 with carry (114).
    let vm = exec(
        |a| {
            a.add(al, 0x35)?;
            a.daa()
        },
        0x79,
        0,
    );
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x14, CF | AF | PF));
    // No adjustment: flags from AL, OF cleared.
    let vm = exec(|a| a.daa(), 0x42, OF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x42, PF));
    // Incoming AF and CF force both corrections: 0x42 + 0x66.
    let vm = exec(|a| a.daa(), 0x42, OF | CF | AF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0xa8, CF | AF | SF));
    // Incoming AF and CF both add.
    let vm = exec(|a| a.daa(), 0x00, AF | CF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x66, AF | CF | PF));
}

#[test]
fn das_after_sub() {
    // 35 - 47 = 0xee with CF and AF; DAS -> 0x88 with borrow (-12).
    let vm = exec(
        |a| {
            a.sub(al, 0x47)?;
            a.das()
        },
        0x35,
        0,
    );
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x88, CF | AF | SF | PF));
    // Low-nibble borrow only: AL = 0x03 with AF -> 0xfd; AL < 6 so CF = 1, then the
    // 0x60 correction does not apply (old AL <= 0x99, old CF = 0).
    let vm = exec(|a| a.das(), 0x03, AF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0xfd, CF | AF | SF));
}

#[test]
fn aaa_aas() {
    // 9 + 8 = 0x11 with AF: AAA -> AX = 0x0107.
    let vm = exec(
        |a| {
            a.add(al, 8)?;
            a.aaa()
        },
        0x0009,
        0,
    );
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0107, AF | CF));
    // No adjustment: AF = CF = 0, OF = 0, SF/ZF/PF from the masked AL.
    let vm = exec(|a| a.aaa(), 0x0305, OF | SF | ZF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0305, PF));
    // AL = 0xfa: AX + 0x106 carries into AH twice over.
    let vm = exec(|a| a.aaa(), 0x00fa, 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0200, AF | CF | ZF | PF));
    let vm = exec(|a| a.aas(), 0x0102, AF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0xff0c, AF | CF | PF));
    let vm = exec(|a| a.aas(), 0x0234, CF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0204, 0));
}

#[test]
fn aam_aad() {
    let vm = exec(|a| a.aam(10), 0x004f, CF | OF | AF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0709, PF));
    let vm = exec(|a| a.aam(16), 0x00ab, 0);
    assert_eq!(vm.gpr(RAX) & 0xffff, 0x0a0b);
    let vm = exec(|a| a.aad(10), 0x0709, STATUS);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x004f, 0));
    // 0xff + 9 * 10: the addition carries out of the byte and the nibble.
    let vm = exec(|a| a.aad(10), 0x09ff, 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x0059, CF | AF | PF));
}

#[test]
fn aam_zero_is_divide_error() {
    let mut vm = Vm::new(Mode::Protected32);
    vm.code(|a| a.aam(0));
    vm.preset(&[(RAX, 0x1234)], 0);
    assert_eq!(vm.run(), Stop::Exception(0));
    assert_eq!((vm.frame(0), vm.gpr(RAX)), (CODE, 0x1234));
}

#[test]
fn invalid_in_64bit_mode() {
    for op in [0x27u8, 0x2f, 0x37, 0x3f] {
        let mut vm = Vm::new(Mode::Long);
        vm.set_code(&[op, 0x90, 0x90]);
        assert_eq!(vm.run(), Stop::Exception(6), "opcode {op:#x}");
    }
    let mut vm = Vm::new(Mode::Long);
    vm.set_code(&[0xd4, 0x0a]);
    assert_eq!(vm.run(), Stop::Exception(6));
}

#[test]
fn real_mode_daa() {
    let mut vm = Vm::new(Mode::Real);
    vm.code(|a| a.daa());
    vm.preset(&[(RAX, 0x1234_009b)], 0);
    vm.finish();
    // 0x9b: low nibble 0xb -> +6 = 0xa1; old AL > 0x99 -> +0x60 = 0x01, CF.
    assert_eq!((vm.gpr(RAX), vm.status()), (0x1234_0001, CF | AF));
}
