//! LGDT/LIDT/SGDT/SIDT, LLDT/SLDT, LTR/STR, LAR/LSL/VERR/VERW, ARPL, UMIP.

use super::harness::*;
use ferrite_cpu::state::{cr4, reg::*};
use iced_x86::code_asm::*;

#[test]
fn descriptor_table_registers_round_trip() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.bus.load(DATA, &[0x34, 0x12, 0xef, 0xcd, 0xab, 0x89]);
    m.bus.load(DATA + 0x20, &[0xff, 0x07, 0x00, 0x30, 0x00, 0x00]);
    m.bus.load(DATA + 0x40, &[0x78, 0x56, 0x44, 0x33, 0x22, 0x11]);
    m.code(|a, _| {
        a.lgdt(dword_ptr(DATA)).unwrap();
        a.sgdt(dword_ptr(DATA + 0x10)).unwrap();
        a.lidt(dword_ptr(DATA + 0x20)).unwrap();
        a.sidt(dword_ptr(DATA + 0x30)).unwrap();
        // o16 LGDT: only 24 bits of base.
        a.db(&[0x66, 0x0f, 0x01, 0x15]).unwrap();
        a.dd(&[(DATA + 0x40) as u32]).unwrap();
        // o16 SGDT still stores the whole 32-bit base.
        a.db(&[0x66, 0x0f, 0x01, 0x05]).unwrap();
        a.dd(&[(DATA + 0x50) as u32]).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.read(DATA + 0x10, 6), 0x89ab_cdef_1234);
    assert_eq!(m.read(DATA + 0x30, 6), 0x3000_07ff);
    assert_eq!((m.cpu.state.idtr.base, m.cpu.state.idtr.limit), (0x3000, 0x7ff));
    assert_eq!((m.cpu.state.gdtr.base, m.cpu.state.gdtr.limit), (0x22_3344, 0x5678));
    assert_eq!(m.read(DATA + 0x50, 6), 0x0022_3344_5678);
}

#[test]
fn descriptor_table_registers_in_64bit_mode() {
    let mut m = Machine::new(Mode::Long64, 0);
    let base = 0xffff_8000_0000_1000u64;
    m.bus.load(DATA, &[0xff, 0x0f]);
    m.bus.load(DATA + 2, &base.to_le_bytes());
    m.bus.load(DATA + 0x20, &[0xff, 0x0f]);
    m.bus.load(DATA + 0x22, &0x0000_8000_0000_0000u64.to_le_bytes());
    m.code(|a, mark| {
        a.lidt(qword_ptr(DATA)).unwrap();
        a.sidt(qword_ptr(DATA + 0x10)).unwrap();
        a.lidt(qword_ptr(IDT_PTR)).unwrap(); // back to the harness IDT for the fault below
        a.set_label(mark).unwrap();
        a.lgdt(qword_ptr(DATA + 0x20)).unwrap(); // non-canonical base
    });
    m.bus.load(IDT_PTR, &[0xff, 0x0f]);
    m.bus.load(IDT_PTR + 2, &IDT.to_le_bytes());
    m.expect_fault(GP, Some(0));
    assert_eq!(m.read(DATA + 0x10, 2), 0xfff);
    assert_eq!(m.read(DATA + 0x12, 8), base);
    assert_eq!(m.cpu.state.gdtr.base, GDT, "GDTR unchanged by the faulting LGDT");

    // Real mode: SGDT stores the limit and a 32-bit base.
    let mut m = Machine::new(Mode::Real, 0);
    m.code(|a, _| {
        a.sgdt(word_ptr(0x600)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.read(0x600, 6), (GDT << 16) | GDT_LIMIT as u64);
}

const IDT_PTR: u64 = DATA + 0x80;

#[test]
fn ltr_marks_the_tss_busy() {
    let mut m = Machine::new(Mode::Prot32, 0);
    let tss = desc(0x4100, 0x67, acc::TSS_AVAIL, 0);
    m.write_gdt(12, tss);
    m.code(|a, mark| {
        a.mov(eax, 0xffff_0060u32).unwrap();
        a.ltr(ax).unwrap();
        a.mov(ebx, -1).unwrap();
        a.str(ebx).unwrap();
        a.set_label(mark).unwrap();
        a.ltr(ax).unwrap(); // now busy
    });
    m.expect_fault(GP, Some(0x60));
    assert_eq!(m.read_gdt(12), tss | (2 << 40), "busy bit set in the GDT");
    let tr = m.cpu.state.tr;
    assert_eq!((tr.selector, tr.base, tr.limit), (0x60, 0x4100, 0x67));
    assert_eq!(tr.attrs & 0xf, 11);
    assert_eq!(m.gpr(RBX), 0x60, "STR r32 zero-extends");
}

#[test]
fn ltr_in_long_mode_uses_16_byte_descriptors() {
    let base_hi = 0xffff_8000u64;
    let mut m = Machine::new(Mode::Long64, 0);
    m.write_gdt(12, desc(0x4100, 0x67, acc::TSS_AVAIL, 0));
    m.write_gdt(13, base_hi);
    m.code(|a, _| {
        a.mov(ax, 0x60).unwrap();
        a.ltr(ax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.cpu.state.tr.base, (base_hi << 32) | 0x4100);

    // (selector, low, high, expected fault): 16-bit TSS, non-zero upper type, not present,
    // LDT selector, null selector.
    let cases = [
        (0x60u16, desc(0x4100, 0x67, 0x81, 0), 0, (GP, 0x60)),
        (0x60, desc(0x4100, 0x67, acc::TSS_AVAIL, 0), 1 << 40, (GP, 0x60)),
        (0x60, desc(0x4100, 0x67, acc::TSS_AVAIL & 0x7f, 0), 0, (NP, 0x60)),
        (0x64, desc(0x4100, 0x67, acc::TSS_AVAIL, 0), 0, (GP, 0x64)),
        (0x03, 0, 0, (GP, 0)),
    ];
    for (selector, low, high, (vector, error)) in cases {
        let mut m = Machine::new(Mode::Long64, 0);
        m.write_gdt(12, low);
        m.write_gdt(13, high);
        m.code(|a, mark| {
            a.mov(ax, selector as u32).unwrap();
            a.set_label(mark).unwrap();
            a.ltr(ax).unwrap();
        });
        m.expect_fault(vector, Some(error));
        assert_eq!(m.cpu.state.tr.selector, sel::TSS);
    }
}

#[test]
fn lldt_and_sldt() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.mov(ax, sel::LDT as u32).unwrap();
        a.lldt(ax).unwrap();
        a.mov(ecx, -1).unwrap();
        a.sldt(cx).unwrap();
        a.sldt(word_ptr(DATA)).unwrap();
        a.mov(ax, 0x10).unwrap();
        a.set_label(mark).unwrap();
        a.lldt(ax).unwrap(); // a data segment, not an LDT
    });
    m.expect_fault(GP, Some(0x10));
    let l = m.cpu.state.ldtr;
    assert_eq!((l.selector, l.base, l.limit, l.attrs & 0x1f), (sel::LDT, LDT, 0x1f, 2));
    assert_eq!(m.gpr(RCX), 0xffff_0000 | sel::LDT as u64, "SLDT r16 keeps the upper bits");
    assert_eq!(m.read(DATA, 2), sel::LDT as u64);

    // A null selector invalidates LDTR.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, _| {
        a.mov(ax, sel::LDT as u32).unwrap();
        a.lldt(ax).unwrap();
        a.mov(ax, 3).unwrap();
        a.lldt(ax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert!(m.cpu.state.ldtr.unusable());

    // Not recognized in real mode.
    let mut m = Machine::new(Mode::Real, 0);
    m.code(|a, mark| {
        a.set_label(mark).unwrap();
        a.sldt(ax).unwrap();
    });
    m.expect_fault(UD, None);
}

#[test]
fn umip_blocks_descriptor_table_reads_at_cpl3() {
    type Snippet = fn(&mut CodeAssembler);
    let list: &[Snippet] = &[
        |a| a.sgdt(dword_ptr(DATA)).unwrap(),
        |a| a.sidt(dword_ptr(DATA)).unwrap(),
        |a| a.sldt(ax).unwrap(),
        |a| a.str(ax).unwrap(),
        |a| a.smsw(ax).unwrap(),
    ];
    for (i, emit) in list.iter().enumerate() {
        for umip in [false, true] {
            let mut m = Machine::new(Mode::Prot32, 3);
            if umip {
                m.cpu.state.cr4 = cr4::UMIP;
            }
            m.code(|a, mark| {
                a.set_label(mark).unwrap();
                emit(a);
                a.int3().unwrap();
            });
            let t = m.run_to_halt().unwrap();
            let vector = if umip { GP } else { 3 };
            assert_eq!(t.vector, vector, "instruction {i}, umip={umip}");
        }
    }
}

/// LAR, LSL, VERR and VERW at CPL 3 on a set of descriptors. Results: ZF and the
/// destination (left unchanged when ZF = 0).
#[test]
fn selector_inspection() {
    let mut m = Machine::new(Mode::Prot32, 3);
    let data0 = desc(0, 0xfffff, acc::DATA0, acc::FLAGS32);
    let data3 = desc(0x1000, 0x1234, acc::DATA3, 4);
    let conforming0 = desc(0, 0xfff, 0x9f, 4);
    let exec_only3 = desc(0, 0xfff, 0xf9, 4);
    let call_gate3 = 0x1234_ec00_0008_1000u64;
    let int_gate3 = 0x0000_ee00_0008_1000u64;
    for (i, d) in [data0, data3, conforming0, exec_only3, call_gate3, int_gate3].into_iter().enumerate() {
        m.write_gdt(12 + i, d);
    }
    #[derive(Clone, Copy)]
    enum Op {
        Lar,
        Lsl,
        Verr,
        Verw,
    }
    let ar = |d: u64| Some((d >> 32) & 0x00ff_ff00);
    let cases: &[(Op, u16, Option<u64>)] = &[
        (Op::Lar, 0x63, None), // DPL 0 < CPL 3
        (Op::Lar, 0x6b, ar(data3)),
        (Op::Lsl, 0x6b, Some(0x1234)),
        (Op::Lar, 0x73, ar(conforming0)), // conforming: no privilege check
        (Op::Lsl, 0x73, Some(0xfff)),
        (Op::Lar, 0x83, ar(call_gate3)),
        (Op::Lsl, 0x83, None), // gates have no limit
        (Op::Lar, 0x8b, None), // interrupt gates are not valid for LAR
        (Op::Lar, 0x00, None),
        (Op::Lar, 0xfffb, None), // beyond the GDT limit
        (Op::Lar, 0x0f, None),   // LDT selector, no LDT loaded
        (Op::Verr, 0x6b, Some(0)),
        (Op::Verw, 0x6b, Some(0)),
        (Op::Verr, 0x73, Some(0)),
        (Op::Verw, 0x73, None),
        (Op::Verr, 0x7b, None), // execute-only
        (Op::Verr, 0x63, None),
        (Op::Verr, 0x83, None), // system descriptor
    ];
    m.code(|a, _| {
        for (i, &(op, selector, _)) in cases.iter().enumerate() {
            let i = i as u64;
            a.mov(ecx, 0xdead_beefu32).unwrap();
            a.mov(ax, selector as u32).unwrap();
            match op {
                Op::Lar => a.lar(ecx, eax).unwrap(),
                Op::Lsl => a.lsl(ecx, eax).unwrap(),
                Op::Verr => a.verr(ax).unwrap(),
                Op::Verw => a.verw(ax).unwrap(),
            }
            a.setz(byte_ptr(DATA + i)).unwrap();
            a.mov(dword_ptr(DATA + 0x100 + 4 * i), ecx).unwrap();
        }
        a.int3().unwrap();
    });
    assert_eq!(m.run_to_halt().map(|t| t.vector), Some(3));
    for (i, &(op, selector, expect)) in cases.iter().enumerate() {
        let i = i as u64;
        let zf = m.read(DATA + i, 1);
        let dest = m.read(DATA + 0x100 + 4 * i, 4);
        let what = format!("case {i} (selector {selector:#x})");
        assert_eq!(zf, expect.is_some() as u64, "ZF, {what}");
        match (op, expect) {
            (Op::Lar | Op::Lsl, Some(v)) => assert_eq!(dest, v, "{what}"),
            _ => assert_eq!(dest, 0xdead_beef, "destination untouched, {what}"),
        }
    }
}

#[test]
fn lsl_scales_page_granular_limits_and_lar_16bit() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, _| {
        a.mov(ax, sel::KDATA as u32).unwrap();
        a.lsl(ebx, eax).unwrap();
        a.mov(ecx, -1).unwrap();
        a.lar(cx, ax).unwrap();
        a.mov(ax, sel::TSS as u32).unwrap();
        a.lsl(edx, eax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(RBX), 0xffff_ffff);
    assert_eq!(m.gpr(RCX), 0xffff_0000 | (acc::DATA0 as u64) << 8);
    assert_eq!(m.gpr(RDX), 0x67);
}

#[test]
fn arpl_raises_rpl() {
    let mut m = Machine::new(Mode::Prot32, 0);
    m.bus.load(DATA, &0x0008u16.to_le_bytes());
    m.code(|a, _| {
        a.mov(eax, 0xabcd_0010u32).unwrap();
        a.mov(ebx, 0x23).unwrap();
        a.arpl(eax, ebx).unwrap(); // o32 form: only the low word changes
        a.setz(dl).unwrap();
        a.arpl(ax, bx).unwrap();
        a.setz(dh).unwrap();
        a.arpl(word_ptr(DATA), bx).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(RAX), 0xabcd_0013);
    assert_eq!(m.gpr(RDX) & 0xffff, 0x0001, "ZF set, then clear");
    assert_eq!(m.read(DATA, 2), 0x000b);
}
