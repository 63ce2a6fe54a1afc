//! PCIDs and INVPCID against the SDM (Vol. 3, 4.10.1, 4.10.4; Vol. 2 "MOV—Move to/from
//! Control Registers", "INVPCID"). The 2 MiB page at 6 MiB is remapped behind the TLB's back
//! (as in control.rs), so a read shows whether a translation was kept or dropped.
//!
//! Where the SDM only allows a translation to be kept (a PCID's entries surviving a switch
//! with bit 63 set), the tests assert that it is: that is the point of the tagged TLB.

use super::harness::*;
use ferrite_cpu::state::{cr4, reg::*};
use iced_x86::code_asm::*;

const LIN: u64 = 0x60_5000;
const PDE3: u64 = PD + 3 * 8;
const OLD: u64 = 0x60_0087;
const NEW: u64 = 0x40_0087;
const NO_FLUSH: u64 = 1 << 63;
const DESC: u64 = DATA;

fn machine(global: bool) -> Machine {
    let mut m = Machine::new(Mode::Long64, 0);
    m.bus.load(0x60_5000, &0x1111u64.to_le_bytes());
    m.bus.load(0x40_5000, &0x2222u64.to_le_bytes());
    let g = if global { 0x100 } else { 0 };
    m.bus.load(PDE3, &(OLD | g).to_le_bytes());
    m.cpu.state.cr4 |= cr4::PCIDE | if global { cr4::PGE } else { 0 };
    m
}

fn remap(a: &mut CodeAssembler, pde: u64) {
    a.mov(rax, pde).unwrap();
    a.mov(qword_ptr(PDE3), rax).unwrap();
}

fn set_cr3(a: &mut CodeAssembler, v: u64) {
    a.mov(rax, v).unwrap();
    a.mov(cr3, rax).unwrap();
}

fn invpcid_desc(m: &mut Machine, pcid: u64, lin: u64) {
    m.bus.load(DESC, &pcid.to_le_bytes());
    m.bus.load(DESC + 8, &lin.to_le_bytes());
}

#[test]
fn translations_are_kept_per_pcid() {
    let mut m = machine(false);
    m.code(|a, _| {
        a.mov(r8, qword_ptr(LIN)).unwrap(); // PCID 0 caches OLD
        remap(a, NEW);
        set_cr3(a, PML4 | 1 | NO_FLUSH); // PCID 1: nothing cached, walks NEW
        a.mov(r9, qword_ptr(LIN)).unwrap();
        a.mov(rax, cr3).unwrap();
        a.mov(rbx, rax).unwrap();
        set_cr3(a, PML4 | NO_FLUSH); // back to PCID 0, its entry kept
        a.mov(r10, qword_ptr(LIN)).unwrap();
        set_cr3(a, PML4); // bit 63 clear: PCID 0's entries dropped
        a.mov(r11, qword_ptr(LIN)).unwrap();
        // PCID 1 still maps NEW; PCID 0 too. Remap to OLD, then INVPCID single-context
        // for PCID 0 only.
        remap(a, OLD);
        a.mov(rcx, 1u64).unwrap();
        a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
        a.mov(r12, qword_ptr(LIN)).unwrap();
        set_cr3(a, PML4 | 1 | NO_FLUSH);
        a.mov(r13, qword_ptr(LIN)).unwrap();
        // Individual-address INVPCID for PCID 1 (the current one) drops that page.
        a.xor(ecx, ecx).unwrap();
        a.mov(rax, 1u64).unwrap();
        a.mov(qword_ptr(DESC), rax).unwrap();
        a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
        a.mov(r14, qword_ptr(LIN)).unwrap();
        a.hlt().unwrap();
    });
    invpcid_desc(&mut m, 0, LIN);
    m.expect_halt();
    let g = &m.cpu.state.gpr;
    assert_eq!(g[8], 0x1111);
    assert_eq!(g[9], 0x2222, "a new PCID walks the new tables");
    assert_eq!(g[RBX], PML4 | 1, "bit 63 is not stored in CR3");
    assert_eq!(g[10], 0x1111, "PCID 0's translation survives the switch with bit 63 set");
    assert_eq!(g[11], 0x2222, "MOV CR3 with bit 63 clear flushes the PCID");
    assert_eq!(g[12], 0x1111, "INVPCID type 1 for PCID 0");
    assert_eq!(g[13], 0x2222, "PCID 1 was not invalidated by INVPCID for PCID 0");
    assert_eq!(g[14], 0x1111, "INVPCID type 0");
}

/// INVPCID type 3 spares global translations, type 2 does not; INVLPG drops a global one.
#[test]
fn invpcid_all_contexts_and_global_pages() {
    let mut m = machine(true);
    m.code(|a, _| {
        a.mov(r8, qword_ptr(LIN)).unwrap();
        remap(a, NEW | 0x100);
        a.mov(rcx, 3u64).unwrap();
        a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
        a.mov(r9, qword_ptr(LIN)).unwrap();
        a.mov(rcx, 2u64).unwrap();
        a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
        a.mov(r10, qword_ptr(LIN)).unwrap();
        remap(a, OLD | 0x100);
        // A global translation cached under PCID 0 is dropped by INVLPG under PCID 1.
        set_cr3(a, PML4 | 1 | NO_FLUSH);
        a.invlpg(qword_ptr(LIN)).unwrap();
        set_cr3(a, PML4 | NO_FLUSH);
        a.mov(r11, qword_ptr(LIN)).unwrap();
        a.hlt().unwrap();
    });
    invpcid_desc(&mut m, 0, 0);
    m.expect_halt();
    let g = &m.cpu.state.gpr;
    assert_eq!(g[8], 0x1111);
    assert_eq!(g[9], 0x1111, "type 3 keeps global translations");
    assert_eq!(g[10], 0x2222, "type 2 drops them");
    assert_eq!(g[11], 0x1111, "INVLPG invalidates global translations of every PCID");
}

#[test]
fn pcide_and_cr3_rules() {
    // CR4.PCIDE needs CR3[11:0] = 0 (here PWT is set in CR3).
    let mut m = Machine::new(Mode::Long64, 0);
    m.cpu.state.cr3 |= 8;
    m.code(|a, mark| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::PCIDE as i32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, rax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    // ... and IA-32e mode.
    let mut m = Machine::new(Mode::Prot32, 0);
    m.code(|a, mark| {
        a.mov(eax, cr4).unwrap();
        a.or(eax, cr4::PCIDE as i32).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr4, eax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    // Both hold: PCIDE set by MOV to CR4.
    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, _| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::PCIDE as i32).unwrap();
        a.mov(cr4, rax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_ne!(m.cpu.state.cr4 & cr4::PCIDE, 0);
    // Without PCIDE, bit 63 of CR3 is reserved.
    let mut m = Machine::new(Mode::Long64, 0);
    m.code(|a, mark| {
        a.mov(rax, PML4 | NO_FLUSH).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr3, rax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    // With it, CR3 is read back with the PCID and without bit 63.
    let mut m = machine(false);
    m.code(|a, _| {
        set_cr3(a, PML4 | 0x123 | NO_FLUSH);
        a.mov(rbx, cr3).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(RBX), PML4 | 0x123);
}

#[test]
fn invpcid_faults() {
    // (type, PCID/reserved quadword, linear address, PCIDE, CPL)
    let cases: [(u64, u64, u64, bool, u8); 6] = [
        (4, 0, 0, true, 0),
        (0, 1 << 12, 0, true, 0),
        (0, 0, 0x8000_0000_0000, true, 0),
        (1, 5, 0, false, 0),
        (0, 5, 0, false, 0),
        (2, 0, 0, true, 3),
    ];
    for (i, &(kind, desc, lin, pcide, cpl)) in cases.iter().enumerate() {
        let mut m = Machine::new(Mode::Long64, cpl);
        if pcide {
            m.cpu.state.cr4 |= cr4::PCIDE;
        }
        invpcid_desc(&mut m, desc, lin);
        m.code(|a, mark| {
            a.mov(rcx, kind).unwrap();
            a.set_label(mark).unwrap();
            a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
            a.hlt().unwrap();
        });
        let t = m.run_to_halt();
        assert_eq!(t.map(|t| (t.vector, t.error, t.rip)), Some((GP, Some(0), m.mark)), "case {i}");
    }
    // Types 2 and 3 ignore the PCID field without PCIDE.
    let mut m = Machine::new(Mode::Long64, 0);
    invpcid_desc(&mut m, 5, 0);
    m.code(|a, _| {
        a.mov(rcx, 3u64).unwrap();
        a.invpcid(rcx, xmmword_ptr(DESC)).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
}

/// More PCIDs than the TLB keeps tables for: whatever was evicted, a switch without bit 63
/// must still drop the PCID's stale translations, and one with it must see a valid one.
#[test]
fn many_pcids() {
    let mut m = machine(false);
    m.code(|a, _| {
        for pcid in 1..=12u64 {
            set_cr3(a, PML4 | pcid | NO_FLUSH);
            a.mov(rbx, qword_ptr(LIN)).unwrap();
        }
        remap(a, NEW);
        a.xor(r8, r8).unwrap();
        for pcid in 1..=12u64 {
            set_cr3(a, PML4 | pcid);
            a.add(r8, qword_ptr(LIN)).unwrap();
        }
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!(m.gpr(8), 12 * 0x2222);
}

/// Paging cannot be turned off while CR4.PCIDE is set, even from compatibility mode where
/// it otherwise may (SDM Vol. 2 "MOV—Move to/from Control Registers", #GP conditions).
#[test]
fn pg_stays_on_with_pcide() {
    let mut m = machine(false);
    m.set_seg(ferrite_cpu::state::Seg::Cs, sel::KCODE32);
    m.code_bits(CODE, 32, |a, mark| {
        a.mov(eax, cr0).unwrap();
        a.and(eax, 0x7fff_ffff).unwrap();
        a.set_label(mark).unwrap();
        a.mov(cr0, eax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_fault(GP, Some(0));
    assert!(m.cpu.state.paging());
}

/// Code decoded on a page while another PCID's table is parked: a write to that page through
/// the parked table's entry, once its PCID is back, must still drop the decoded code (the
/// entry was filled for writes before the page held code).
#[test]
fn code_decoded_while_a_pcid_is_parked_is_seen_rewritten_through_it() {
    const PAGE: u64 = CODE + 0x3000;
    let mut m = machine(false);
    m.code(|a, _| {
        // mov eax, 1; ret
        a.mov(dword_ptr(PAGE), 0x0000_01b8u32).unwrap();
        a.mov(word_ptr(PAGE + 4), 0xc300u32).unwrap();
        set_cr3(a, PML4 | 1 | NO_FLUSH);
        a.call(PAGE).unwrap();
        a.mov(r8, rax).unwrap();
        set_cr3(a, PML4 | NO_FLUSH);
        a.mov(byte_ptr(PAGE + 1), 2).unwrap();
        a.call(PAGE).unwrap();
        a.mov(r9, rax).unwrap();
        a.hlt().unwrap();
    });
    m.expect_halt();
    assert_eq!((m.gpr(8), m.gpr(9)), (1, 2));
}
