//! x87 smoke test in flat 64-bit mode: load, add and store extended reals.

use ferrite_cpu::state::{cr0, cr4, efer, reg, seg_attr, Seg, Segment};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use iced_x86::code_asm::*;

#[test]
fn fld_fadd_fstp() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.fninit().unwrap();
    for _ in 0..8 {
        a.fldz().unwrap();
    }
    a.fninit().unwrap();
    a.fld(tword_ptr(rdi)).unwrap();
    a.fld(tword_ptr(rdi + 16)).unwrap();
    a.faddp(st1, st0).unwrap();
    a.fstp(tword_ptr(rdi + 32)).unwrap();
    let code = a.assemble(0x1000).unwrap();
    let mut bus = FlatBus::new(1 << 20);
    bus.load(0x1000, &code);
    // 1.5 and 2.25 as 80-bit extended reals.
    bus.load(0x8000, &[0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0x3f]);
    bus.load(0x8010, &[0, 0, 0, 0, 0, 0, 0, 0x90, 0x00, 0x40]);
    let mut cpu = Cpu::default();
    let mut s = cpu.state.clone();
    s.cr0 = cr0::PE | cr0::ET | cr0::NE;
    s.cr4 = cr4::OSFXSR;
    s.efer = efer::LME | efer::LMA;
    let data = seg_attr::P | seg_attr::S | seg_attr::TYPE_WRITABLE | seg_attr::DB;
    for sg in Seg::ALL {
        *s.seg_mut(sg) = Segment { selector: 0, attrs: data, limit: 0xffff_ffff, base: 0 };
    }
    *s.seg_mut(Seg::Cs) = Segment {
        selector: 8,
        attrs: seg_attr::P | seg_attr::S | seg_attr::TYPE_CODE | seg_attr::TYPE_WRITABLE | seg_attr::L,
        limit: 0xffff_ffff,
        base: 0,
    };
    s.rip = 0x1000;
    s.gpr[reg::RDI] = 0x8000;
    cpu.set_state(s);
    assert_eq!(cpu.run(&mut bus, 14), RunExit::Budget);
    // 3.75 = 1.111b × 2^1
    assert_eq!(&bus.ram[0x8020..0x802a], &[0, 0, 0, 0, 0, 0, 0, 0xf0, 0x00, 0x40]);
}
