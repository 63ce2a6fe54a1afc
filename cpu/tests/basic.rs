//! Smoke tests of the interpreter on tiny programs in flat memory.

use ferrite_cpu::state::{reg, Seg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use iced_x86::code_asm::*;

fn real_mode_cpu(bus: &mut FlatBus, code: &[u8]) -> Cpu {
    bus.load(0x7c00, code);
    let mut cpu = Cpu::default();
    let code_seg = cpu.state.seg_mut(Seg::Cs);
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.state.rip = 0x7c00;
    cpu.state.gpr[reg::RSP] = 0x7000;
    cpu.state.gpr[reg::RDX] = 0;
    cpu
}

#[test]
fn real_mode_arithmetic_and_stack() {
    let mut a = CodeAssembler::new(16).unwrap();
    a.mov(ax, 5u32).unwrap();
    a.add(ax, 3u32).unwrap();
    a.push(ax).unwrap();
    a.pop(bx).unwrap();
    a.mov(cx, 10u32).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.inc(dx).unwrap();
    a.loop_(top).unwrap();
    a.mov(word_ptr(0x500), bx).unwrap();
    let code = a.assemble(0x7c00).unwrap();
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = real_mode_cpu(&mut bus, &code);
    let exit = cpu.run(&mut bus, 5 + 20 + 1);
    assert_eq!(exit, RunExit::Budget);
    assert_eq!(cpu.state.gpr[reg::RBX], 8);
    assert_eq!(cpu.state.gpr[reg::RDX] & 0xffff, 10);
    assert_eq!(bus.ram[0x500], 8);
}
