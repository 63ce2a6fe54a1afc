//! The guest's debug facilities (SDM Vol. 3, chapter 18) and alignment checking (6.15), in
//! real, protected and long mode. Expected values come from the SDM; the sections are cited.

use super::harness::*;
use ferrite_cpu::state::{cr0, cr4, flags, reg::*, Seg};
use iced_x86::code_asm::*;

const MODES: [Mode; 3] = [Mode::Real, Mode::Prot32, Mode::Long64];

/// DR7 for breakpoint `n` enabled locally with `rw` and `len` (SDM Vol. 3, 18.2.4).
fn dr7_bits(n: usize, rw: u64, len: u64) -> u64 {
    0x400 | 1 << (2 * n) | rw << (16 + 4 * n) | len << (18 + 4 * n)
}
const RW_EXEC: u64 = 0;
const RW_WRITE: u64 = 1;
const RW_IO: u64 = 2;
const RW_ACCESS: u64 = 3;
/// LEN encodings for 1, 2, 4 and 8 bytes.
const LENS: [(u64, u64); 4] = [(1, 0), (2, 1), (4, 3), (8, 2)];
const BS: u64 = 1 << 14;
const AC: u8 = 17;

/// Data the code addresses directly: below 64 KiB in real mode (DS base 0).
fn data(mode: Mode) -> u64 {
    if mode == Mode::Real {
        0x6000
    } else {
        DATA
    }
}

/// Slot `k` of the frame the handler stub sees (0: return IP, 1: CS, 2: FLAGS, after an
/// error code if the vector has one).
fn frame(m: &Machine, k: u64) -> u64 {
    let st = &m.cpu.state;
    let (width, mask): (u64, u64) = match m.mode {
        Mode::Real => (2, 0xffff),
        Mode::Prot32 => (4, 0xffff_ffff),
        Mode::Long64 => (8, u64::MAX),
    };
    let top = st.seg(Seg::Ss).base + (st.gpr[RSP] & mask);
    m.bus.read_u64(top + k * width) & mask
}

/// A #DB handler at the vector-1 stub that counts hits in EBX, keeps the last return IP in
/// ECX and returns with RF = 1 in the FLAGS image (real mode, whose FLAGS image has no RF,
/// turns the breakpoints off instead).
fn counting_db_handler(m: &mut Machine) {
    m.code_at(HANDLERS + 16, |a, _| match a.bitness() {
        16 => {
            a.inc(bx).unwrap();
            a.mov(bp, sp).unwrap();
            a.mov(cx, word_ptr(bp)).unwrap();
            a.xor(eax, eax).unwrap();
            a.mov(dr7, eax).unwrap();
            a.iret().unwrap();
        }
        32 => {
            a.inc(ebx).unwrap();
            a.mov(ecx, dword_ptr(esp)).unwrap();
            a.bts(dword_ptr(esp + 8), 16).unwrap();
            a.iretd().unwrap();
        }
        _ => {
            a.inc(ebx).unwrap();
            a.mov(rcx, qword_ptr(rsp)).unwrap();
            a.bts(dword_ptr(rsp + 16), 16).unwrap();
            a.iretq().unwrap();
        }
    });
}

/// Instruction breakpoints are faults taken before the instruction, with RIP at it and the
/// B bit set; the handler's IRET with RF = 1 lets it run once, and RF is cleared after it
/// completes, so a breakpoint on the next instruction fires too (18.3.1.1).
#[test]
fn instruction_breakpoints_fault_and_rf_resumes() {
    for mode in MODES {
        let mut m = Machine::new(mode, 0);
        counting_db_handler(&mut m);
        let mut second = 0;
        m.code(|a, mark| {
            a.set_label(mark).unwrap();
            a.inc(eax).unwrap();
            a.inc(eax).unwrap();
            a.hlt().unwrap();
        });
        let first = m.mark;
        if mode != Mode::Real {
            second = first + if mode == Mode::Long64 { 2 } else { 1 };
        }
        let st = &mut m.cpu.state;
        st.dr[0] = first;
        st.dr[1] = second;
        st.dr[7] = dr7_bits(0, RW_EXEC, 0) | if mode == Mode::Real { 0 } else { dr7_bits(1, RW_EXEC, 0) };
        m.expect_halt();
        assert_eq!(m.gpr(RAX) & 0xffff, 2, "{mode:?}: each instruction ran once");
        if mode == Mode::Real {
            assert_eq!((m.gpr(RBX) & 0xffff, m.gpr(RCX) & 0xffff), (1, first), "{mode:?}: one fault at the instruction");
            assert_eq!(m.cpu.state.dr[6] & 0xf, 1);
        } else {
            assert_eq!((m.gpr(RBX), m.gpr(RCX)), (2, second), "{mode:?}: two faults, the last at the second instruction");
            assert_eq!(m.cpu.state.dr[6] & 0xf, 3, "{mode:?}: B0 and B1, sticky");
            assert_eq!(m.cpu.state.rflags & flags::RF, 0, "{mode:?}: RF cleared after the instruction");
        }
    }
}

/// The #DB of an instruction breakpoint pushes RF as it was (0); other faults push RF = 1
/// (18.3.1.1); a breakpoint that is not enabled does not fire.
#[test]
fn instruction_breakpoint_pushes_rf_clear_other_faults_set_it() {
    for mode in [Mode::Prot32, Mode::Long64] {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.nop().unwrap();
            a.set_label(mark).unwrap();
            a.inc(eax).unwrap();
        });
        m.cpu.state.dr[0] = m.mark;
        m.cpu.state.dr[7] = dr7_bits(0, RW_EXEC, 0);
        m.expect_fault(DB, None);
        assert_eq!(frame(&m, 2) & flags::RF, 0, "{mode:?}");
        assert_eq!(m.cpu.state.dr[6] & 0xf, 1);

        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.set_label(mark).unwrap();
            a.ud2().unwrap();
        });
        m.cpu.state.dr[0] = m.mark;
        m.cpu.state.dr[7] = 0x400 | RW_EXEC << 16; // not enabled
        m.expect_fault(UD, None);
        assert_eq!(frame(&m, 2) & flags::RF, flags::RF, "{mode:?}: faults push RF = 1");
        assert_eq!(m.cpu.state.dr[6] & 0xf, 0);
    }
}

/// Data breakpoints: traps after the accessing instruction, for accesses overlapping the
/// address masked to LEN; R/W = 01 ignores reads, 11 takes both (18.2.5, 18.3.1.2). LEN = 8
/// is checked in long mode.
#[test]
fn data_breakpoints_trap_after_the_access() {
    for mode in MODES {
        for (len, enc) in LENS {
            if len == 8 && mode != Mode::Long64 {
                continue;
            }
            for rw in [RW_WRITE, RW_ACCESS] {
                for write in [true, false] {
                    // DR3 names the last byte of the range; an access to its first byte hits.
                    let d = data(mode);
                    let last = d + 0x40 + len - 1;
                    for (addr, inside) in [(d + 0x40, true), (d + 0x40 + len, false), (d + 0x3f, false)] {
                        let mut m = Machine::new(mode, 0);
                        m.code(|a, mark| {
                            if write {
                                a.mov(byte_ptr(addr), 0x5a).unwrap();
                            } else {
                                a.mov(al, byte_ptr(addr)).unwrap();
                            }
                            a.set_label(mark).unwrap();
                            a.hlt().unwrap();
                        });
                        m.cpu.state.dr[3] = last;
                        m.cpu.state.dr[7] = dr7_bits(3, rw, enc);
                        let hit = inside && (write || rw == RW_ACCESS);
                        let what = format!("{mode:?} len {len} rw {rw} write {write} addr {addr:#x}");
                        if hit {
                            m.expect_fault(DB, None);
                            assert_eq!(m.cpu.state.dr[6] & 0xf, 8, "{what}");
                            assert_eq!(m.cpu.state.dr[6] & BS, 0, "{what}");
                            if write {
                                assert_eq!(m.read(addr, 1), 0x5a, "{what}: the write completed");
                            }
                        } else {
                            m.expect_halt();
                            assert_eq!(m.cpu.state.dr[6] & 0xf, 0, "{what}");
                        }
                    }
                }
            }
        }
    }
}

/// A wide access overlapping a breakpoint's range from below hits it; two enabled
/// breakpoints matched by one instruction both show in DR6.
#[test]
fn data_breakpoint_overlaps_and_multiple_hits() {
    for mode in [Mode::Prot32, Mode::Long64] {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.mov(dword_ptr(DATA + 0x7e), 0x1234_5678).unwrap();
            a.set_label(mark).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.state.dr[0] = DATA + 0x80;
        m.cpu.state.dr[2] = DATA + 0x7e;
        m.cpu.state.dr[7] = dr7_bits(0, RW_WRITE, 1) | dr7_bits(2, RW_ACCESS, 0);
        m.expect_fault(DB, None);
        assert_eq!(m.cpu.state.dr[6] & 0xf, 0b101, "{mode:?}");
    }
}

/// REP STOS over a data breakpoint traps after the iteration that wrote it, with rIP still
/// at the instruction, the count left, and RF = 1 pushed (18.3.1.1, 18.3.1.2); resuming
/// finishes the string.
#[test]
fn string_instruction_traps_after_the_iteration() {
    for mode in MODES {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.set_label(mark).unwrap();
            a.rep().stosb().unwrap();
            a.hlt().unwrap();
        });
        let st = &mut m.cpu.state;
        let d = data(mode);
        st.gpr[RDI] = d + 0x100;
        st.gpr[RCX] = 8;
        st.gpr[RAX] = 0x77;
        st.dr[1] = d + 0x103;
        st.dr[7] = dr7_bits(1, RW_WRITE, 0);
        m.expect_fault(DB, None);
        assert_eq!((m.gpr(RCX), m.gpr(RDI)), (4, d + 0x104), "{mode:?}: four iterations done");
        assert_eq!(m.read(d + 0x104, 1), 0, "{mode:?}: the fifth not yet");
        if mode != Mode::Real {
            assert_eq!(frame(&m, 2) & flags::RF, flags::RF, "{mode:?}: RF = 1 between iterations");
        }
        assert_eq!(m.cpu.state.dr[6] & 0xf, 2);
    }
}

/// I/O breakpoints need CR4.DE (R/W = 10 is undefined without it: no trap here).
#[test]
fn io_breakpoints_with_cr4_de() {
    for mode in MODES {
        for de in [true, false] {
            let mut m = Machine::new(mode, 0);
            m.code(|a, mark| {
                a.mov(dx, 0x81).unwrap();
                a.out(dx, al).unwrap();
                a.set_label(mark).unwrap();
                a.hlt().unwrap();
            });
            if de {
                m.cpu.state.cr4 |= cr4::DE;
            }
            m.cpu.state.dr[0] = 0x80;
            m.cpu.state.dr[7] = dr7_bits(0, RW_IO, 1);
            if de {
                m.expect_fault(DB, None);
                assert_eq!(m.cpu.state.dr[6] & 0xf, 1, "{mode:?}");
            } else {
                m.expect_halt();
            }
        }
    }
}

/// Code that sets TF with POPF, then runs `body`: the trap comes after the instruction
/// following POPF.
fn set_tf_then(m: &mut Machine, body: impl FnOnce(&mut CodeAssembler)) {
    m.code(|a, mark| {
        match a.bitness() {
            16 => {
                a.push(0x0102).unwrap();
                a.popf().unwrap();
            }
            32 => {
                a.push(0x0102).unwrap();
                a.popfd().unwrap();
            }
            _ => {
                a.push(0x0102).unwrap();
                a.popfq().unwrap();
            }
        }
        body(a);
        a.set_label(mark).unwrap();
        a.nop().unwrap();
        a.hlt().unwrap();
    });
}

/// TF set by POPF: the single-step trap comes after the instruction following POPF, with
/// BS set (18.3.1.4). DR6 is sticky: BS stays set, earlier bits too (18.2.3).
#[test]
fn single_step_traps_after_the_next_instruction() {
    for mode in MODES {
        let mut m = Machine::new(mode, 0);
        m.cpu.state.dr[6] |= 1;
        set_tf_then(&mut m, |a| a.inc(eax).unwrap());
        m.expect_fault(DB, None);
        assert_eq!(m.gpr(RAX), 1, "{mode:?}");
        assert_eq!(m.cpu.state.dr[6] & (BS | 0xf), BS | 1, "{mode:?}: BS set, B0 kept");
        assert_eq!(m.cpu.state.rflags & flags::TF, 0, "{mode:?}: the handler runs without TF");
        assert_eq!(frame(&m, 2) & flags::TF, flags::TF, "{mode:?}");
    }
}

/// MOV SS and POP SS hold the single-step trap until after the next instruction (6.8.3):
/// one #DB, after the instruction that follows them.
#[test]
fn mov_ss_shadow_holds_the_single_step_trap() {
    for mode in MODES {
        for pop in [false, true] {
            if pop && mode == Mode::Long64 {
                continue; // POP SS is invalid in 64-bit mode
            }
            let mut m = Machine::new(mode, 0);
            m.code(|a, mark| {
                a.mov(dx, ss).unwrap();
                if pop {
                    a.push(ss).unwrap();
                }
                a.push(0x0102).unwrap();
                match a.bitness() {
                    16 => a.popf().unwrap(),
                    32 => a.popfd().unwrap(),
                    _ => a.popfq().unwrap(),
                }
                if pop {
                    a.pop(ss).unwrap();
                } else {
                    a.mov(ss, dx).unwrap();
                }
                a.inc(eax).unwrap();
                a.set_label(mark).unwrap();
                a.nop().unwrap();
                a.hlt().unwrap();
            });
            m.expect_fault(DB, None);
            assert_eq!(m.gpr(RAX), 1, "{mode:?} pop {pop}: the instruction after MOV SS ran");
            assert_eq!(m.cpu.state.dr[6] & BS, BS);
        }
    }
}

/// ICEBP (INT1, F1) raises a #DB trap returning past itself without changing DR6, delivered
/// like an exception: no gate DPL check (SDM Vol. 2, "INTn/INTO/INT3/INT1"; Vol. 3, 18.2.3).
#[test]
fn icebp_is_a_privileged_debug_trap() {
    for (mode, cpl) in [(Mode::Real, 0), (Mode::Prot32, 0), (Mode::Prot32, 3), (Mode::Long64, 3)] {
        let mut m = Machine::new(mode, cpl);
        if mode != Mode::Real {
            // Gate DPL 0: INT 1 from ring 3 would be #GP; INT1 is not checked.
            let (stride, at) = if mode == Mode::Long64 { (16, 5) } else { (8, 5) };
            let gate = IDT + stride;
            let b = m.bus.ram[(gate + at) as usize] & !0x60;
            m.bus.ram[(gate + at) as usize] = b;
        }
        m.code(|a, mark| {
            a.int1().unwrap();
            a.set_label(mark).unwrap();
            a.hlt().unwrap();
        });
        m.expect_fault(DB, None);
        assert_eq!(m.cpu.state.dr[6], 0xffff_0ff0, "{mode:?} cpl {cpl}: DR6 unchanged");
    }
}

/// General detect (DR7.GD): a #DB fault at the MOV DR with BD set and GD cleared (18.2.4);
/// a fault that is not an instruction breakpoint pushes RF = 1 (18.3.1.1).
#[test]
fn general_detect_in_every_mode() {
    for mode in MODES {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.set_label(mark).unwrap();
            if a.bitness() == 64 {
                a.mov(rbx, dr0).unwrap();
            } else {
                a.mov(ebx, dr0).unwrap();
            }
        });
        m.cpu.state.dr[7] |= 1 << 13;
        m.expect_fault(DB, None);
        assert_eq!(m.cpu.state.dr[6] & (1 << 13), 1 << 13, "{mode:?}");
        assert_eq!(m.cpu.state.dr[7] & (1 << 13), 0, "{mode:?}");
        if mode != Mode::Real {
            assert_eq!(frame(&m, 2) & flags::RF, flags::RF, "{mode:?}");
            assert_eq!(m.cpu.state.rflags & flags::RF, 0, "{mode:?}: the handler runs with RF clear");
        }
    }
}

/// Alignment checking (6.15, Table 6-7): CR0.AM, EFLAGS.AC and CPL 3 make misaligned data
/// accesses raise #AC(0) at the instruction; aligned ones, CPL 0 and AC = 0 do not.
#[test]
fn alignment_check() {
    type Access = fn(&mut CodeAssembler);
    let cases: [(Access, bool); 7] = [
        (|a| a.mov(ax, word_ptr(DATA + 1)).unwrap(), true),
        (|a| a.mov(ax, word_ptr(DATA + 2)).unwrap(), false),
        (|a| a.mov(dword_ptr(DATA + 2), eax).unwrap(), true),
        (|a| a.mov(eax, dword_ptr(DATA + 4)).unwrap(), false),
        (|a| a.mov(al, byte_ptr(DATA + 3)).unwrap(), false),
        (|a| a.add(dword_ptr(DATA + 6), 1).unwrap(), true),
        (|a| a.movq(mm0, qword_ptr(DATA + 4)).unwrap(), true),
    ];
    for mode in [Mode::Prot32, Mode::Long64] {
        for (i, (access, misaligned)) in cases.iter().enumerate() {
            for (cpl, am, ac) in [(3, true, true), (0, true, true), (3, false, true), (3, true, false)] {
                let mut m = Machine::new(mode, cpl);
                if am {
                    m.cpu.state.cr0 |= cr0::AM;
                }
                m.code(|a, mark| {
                    if ac {
                        a.pushfd_or_q();
                    }
                    a.set_label(mark).unwrap();
                    access(a);
                    a.hlt().unwrap();
                });
                let what = format!("{mode:?} case {i} cpl {cpl} am {am} ac {ac}");
                if *misaligned && cpl == 3 && am && ac {
                    m.expect_fault(AC, Some(0));
                } else if cpl == 3 {
                    // HLT at CPL 3 is #GP: the access completed.
                    let t = m.run_to_halt().expect(&what);
                    assert_eq!(t.vector, GP, "{what}");
                } else {
                    m.expect_halt();
                }
            }
        }
    }
}

/// A 64-bit push onto a stack at an address that is 4 but not 8 aligned is checked too.
#[test]
fn alignment_check_covers_stack_accesses() {
    let mut m = Machine::new(Mode::Long64, 3);
    m.cpu.state.cr0 |= cr0::AM;
    m.code(|a, mark| {
        a.pushfd_or_q();
        a.sub(rsp, 4).unwrap();
        a.set_label(mark).unwrap();
        a.push(rax).unwrap();
    });
    m.expect_fault(AC, Some(0));
}

trait SetAc {
    fn pushfd_or_q(&mut self);
}

impl SetAc for CodeAssembler {
    /// Sets EFLAGS.AC (writable at any CPL) with PUSHF/OR/POPF.
    fn pushfd_or_q(&mut self) {
        if self.bitness() == 64 {
            self.pushfq().unwrap();
            self.or(qword_ptr(rsp), 1 << 18).unwrap();
            self.popfq().unwrap();
        } else {
            self.pushfd().unwrap();
            self.or(dword_ptr(esp), 1 << 18).unwrap();
            self.popfd().unwrap();
        }
    }
}

/// The debugger's watchpoints and breakpoints (ferrite's gdbstub) work alongside the guest's:
/// one store hitting both stops `run` for the debugger and delivers the guest's #DB trap; a
/// debugger breakpoint on an instruction that also has a guest instruction breakpoint stops
/// first, and stepping on takes the guest's fault.
#[test]
fn debugger_and_guest_breakpoints_coexist() {
    use ferrite_cpu::{RunExit, WatchKind, Watchpoint};
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.mov(dword_ptr(DATA + 0x10), 5).unwrap();
        a.set_label(mark).unwrap();
        a.inc(eax).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.state.dr[0] = DATA + 0x10;
    m.cpu.state.dr[7] = dr7_bits(0, RW_WRITE, 3);
    m.cpu.set_watchpoints(vec![Watchpoint { lin: DATA + 0x12, len: 1, kind: WatchKind::Write }]);
    assert_eq!(m.run(), RunExit::Debug);
    assert!(m.cpu.take_watch_hit().is_some(), "the debugger saw the store");
    assert_eq!(m.cpu.state.dr[6] & 0xf, 1, "the guest's breakpoint matched");
    m.cpu.set_watchpoints(Vec::new());
    let t = m.run_to_halt().expect("the guest's #DB trap");
    assert_eq!((t.vector, t.rip), (DB, m.mark));

    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, mark| {
        a.nop().unwrap();
        a.set_label(mark).unwrap();
        a.inc(eax).unwrap();
        a.hlt().unwrap();
    });
    m.cpu.state.dr[1] = m.mark;
    m.cpu.state.dr[7] = dr7_bits(1, RW_EXEC, 0);
    m.cpu.breakpoints.push(m.mark);
    assert_eq!(m.run(), RunExit::Debug);
    assert_eq!((m.cpu.state.rip, m.gpr(RAX)), (m.mark, 0), "the debugger stops first");
    m.cpu.breakpoints.clear();
    m.expect_fault(DB, None);
    assert_eq!(m.cpu.state.dr[6] & 0xf, 2);
}

/// An instruction breakpoint on the instruction after MOV SS is not recognised: MOV SS
/// inhibits debug exceptions until the boundary after the next instruction (6.8.3).
#[test]
fn mov_ss_inhibits_the_next_instruction_breakpoint() {
    for mode in MODES {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.mov(dx, ss).unwrap();
            a.mov(ss, dx).unwrap();
            a.set_label(mark).unwrap();
            a.inc(eax).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.state.dr[0] = m.mark;
        m.cpu.state.dr[7] = dr7_bits(0, RW_EXEC, 0);
        m.expect_halt();
        assert_eq!(m.gpr(RAX), 1, "{mode:?}");
    }
}

/// Implicit supervisor accesses made at CPL 3 are never alignment-checked (6.15): with the
/// IDT and GDT at odd addresses, INT3 reads its gate and MOV DS its descriptor there.
#[test]
fn alignment_check_skips_implicit_supervisor_accesses() {
    let mut m = Machine::new(Mode::Prot32, 3);
    m.cpu.state.cr0 |= cr0::AM;
    let (idt, gdt) = (0x6003u64, 0x6903u64);
    let idt_bytes = m.bus.ram[IDT as usize..IDT as usize + 0x800].to_vec();
    m.bus.load(idt, &idt_bytes);
    let gdt_bytes = m.bus.ram[GDT as usize..GDT as usize + 0x100].to_vec();
    m.bus.load(gdt, &gdt_bytes);
    m.cpu.state.idtr.base = idt;
    m.cpu.state.gdtr.base = gdt;
    m.code(|a, mark| {
        a.pushfd_or_q();
        a.mov(eax, sel::UDATA as u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.int3().unwrap();
        a.set_label(mark).unwrap();
        a.nop().unwrap();
    });
    let t = m.run_to_halt().expect("the #BP handler");
    assert_eq!((t.vector, t.rip), (3, m.mark));
    assert_eq!(frame(&m, 2) & flags::AC, flags::AC, "alignment checking was on");
}

/// In virtual-8086 mode with IOPL 0, INT 1 is IOPL-sensitive (#GP(0)) but ICEBP is not: it
/// reaches the #DB handler, returning past itself (SDM Vol. 2, "INTn/INTO/INT3/INT1";
/// Vol. 3, 20.3.1.1).
#[test]
fn icebp_in_virtual_8086_mode_ignores_iopl() {
    const CS_BASE: u64 = 0x1_0000;
    for icebp in [true, false] {
        let mut m = Machine::v86(CS_BASE);
        m.code_bits(CS_BASE, 16, |a, mark| {
            if icebp {
                a.int1().unwrap();
                a.set_label(mark).unwrap();
                a.nop().unwrap();
            } else {
                a.set_label(mark).unwrap();
                a.int(1).unwrap();
            }
        });
        let t = m.run_to_halt().expect("exception");
        let expected = if icebp { (DB, None) } else { (GP, Some(0)) };
        assert_eq!((t.vector, t.error), expected, "icebp {icebp}");
        assert_eq!(t.rip, m.mark - CS_BASE, "icebp {icebp}");
    }
}

/// DR6 may report breakpoints whose conditions matched without being enabled (18.2.3):
/// here B1 (disabled, same address) is set along with B0, whose hit raised the #DB.
#[test]
fn matching_disabled_breakpoints_show_in_dr6() {
    for mode in [Mode::Prot32, Mode::Long64] {
        let mut m = Machine::new(mode, 0);
        m.code(|a, mark| {
            a.mov(byte_ptr(DATA + 0x20), 1).unwrap();
            a.set_label(mark).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.state.dr[0] = DATA + 0x20;
        m.cpu.state.dr[1] = DATA + 0x20;
        m.cpu.state.dr[7] = dr7_bits(0, RW_WRITE, 0) | (RW_ACCESS << 20);
        m.expect_fault(DB, None);
        assert_eq!(m.cpu.state.dr[6] & 0xf, 3, "{mode:?}");
    }
}
