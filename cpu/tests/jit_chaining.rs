//! Chaining between compiled blocks against the interpreter: links to another page whose
//! mapping or code changed, links across address spaces (PCIDs), indirect branches and the
//! shared target table, TLB misses filled from compiled code, and chains that must stop for a
//! kick or an interrupt.

mod int_harness;
mod jit_harness;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::{JitConfig, JitMode};
use ferrite_jit::{EXIT_INDIRECT, EXIT_NEXT, EXIT_TAKEN};
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};
use int_harness::*;
use jit_harness::*;

/// The linear page the far-jump tests jump to (code there adds 1 to RBX and jumps back), and
/// the page a changed mapping puts there instead (code adding 100).
const FAR: u64 = CODE + 0x1000;
const OTHER: u64 = CODE + 0x2000;
/// PCID 1's page tables, in RAM the harness leaves free.
const PML4B: u64 = DATA + 0x10000;

fn write_far_code(v: &mut Vm, back: u64) {
    for (at, add) in [(FAR, 1), (OTHER, 100)] {
        let mut a = CodeAssembler::new(64).unwrap();
        a.add(rbx, add).unwrap();
        a.jmp(back).unwrap();
        v.write(at, &a.assemble(FAR).unwrap());
    }
}

/// Builds PCID 1's tables at PML4B: a copy of the harness's with FAR mapped to OTHER.
/// Returns FAR's PTE in the harness's tables.
fn map_far_to_other_in_pcid1(v: &mut Vm) -> u64 {
    copy_tables_for_pcid1(v, OTHER)
}

/// Builds PCID 1's tables at PML4B: a copy of the harness's with FAR mapped to `far_to`.
/// Returns FAR's PTE in the harness's tables.
fn copy_tables_for_pcid1(v: &mut Vm, far_to: u64) -> u64 {
    let (pdpt, pd, pt) = (PML4B + 0x1000, PML4B + 0x2000, PML4B + 0x3000);
    v.write(PML4B, &(pdpt | 7).to_le_bytes());
    v.write(pdpt, &(pd | 7).to_le_bytes());
    let harness_pd = v.read(PD, 16).to_vec();
    v.write(pd, &(pt | 7).to_le_bytes());
    v.write(pd + 8, &harness_pd[8..16]);
    let mut table = v.read(PT, 4096).to_vec();
    let slot = 8 * ((FAR >> 12) & 0x1ff) as usize;
    let old = u64::from_le_bytes(table[slot..slot + 8].try_into().unwrap());
    table[slot..slot + 8].copy_from_slice(&((old & 0xfff) | far_to).to_le_bytes());
    v.write(pt, &table);
    old
}

/// FAR's entry in the harness's page table.
fn far_pte() -> u64 {
    PT + 8 * ((FAR >> 12) & 0x1ff)
}

type Emitter<'a> = &'a dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// Runs interpreted, compiled block by block and chained: `setup`, then rounds of a thousand
/// jumps to linear FAR and back (so the jump's exit links), `between[k]` running after round
/// k + 1 (each starts another round; ESI counts the rounds done). `prepare` readies the
/// machine once the code at FAR and OTHER is written (see `write_far_code`). Checks that the
/// three machines match and that chaining ran; returns the chained one.
fn far_jump_rounds(setup: Emitter, between: &[Emitter], prepare: impl Fn(&mut Vm)) -> Vm {
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        let mut a = CodeAssembler::new(64).unwrap();
        let (mut top, mut back) = (a.create_label(), a.create_label());
        let mut build = || -> Result<(), IcedError> {
            setup(&mut a)?;
            a.mov(ecx, 1000)?;
            a.xor(esi, esi)?;
            a.set_label(&mut top)?;
            a.jmp(FAR)?;
            a.set_label(&mut back)?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.inc(esi)?;
            a.mov(ecx, 1000)?;
            for (k, step) in between.iter().enumerate() {
                let mut next = a.create_label();
                a.cmp(esi, k as i32 + 1)?;
                a.jne(next)?;
                step(&mut a)?;
                a.jmp(top)?;
                a.set_label(&mut next)?;
            }
            a.nop()
        };
        build().unwrap();
        let r = a.assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        let back = r.label_ip(&back).unwrap();
        v.set_code(&r.inner.code_buffer);
        write_far_code(&mut v, back);
        prepare(&mut v);
        v.finish();
        v
    });
    let stats = chained.cpu.jit_stats();
    assert!(stats.chained_runs > 1000 * between.len() as u64, "{stats:?}");
    chained
}

/// CR4.PCIDE (CR3's PCID is 0 here, as enabling it requires).
fn enable_pcids(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rax, cr4)?;
    a.or(rax, 1 << 17)?;
    a.mov(cr4, rax)
}

/// RDX: FAR's PTE (in the harness's tables) changed to map OTHER.
/// CR4.PGE: the pages `mark_global` marks become global.
fn enable_global_pages(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rax, cr4)?;
    a.or(rax, 1 << 7)?;
    a.mov(cr4, rax)
}

/// Sets G (bit 8) in the harness's page-table entries of `pages`.
fn mark_global(v: &mut Vm, pages: &[u64]) {
    for page in pages {
        let pte = PT + 8 * ((page >> 12) & 0x1ff);
        let old = u64::from_le_bytes(v.read(pte, 8).try_into().unwrap());
        v.write(pte, &(old | 1 << 8).to_le_bytes());
    }
}

fn preset_far_pte_to_other(v: &mut Vm) {
    let old = u64::from_le_bytes(v.read(far_pte(), 8).try_into().unwrap());
    v.preset(&[(RDX, (old & 0xfff) | OTHER)], 0);
}

#[test]
fn a_link_to_another_page_follows_a_changed_mapping() {
    // After the first round, FAR is mapped to OTHER and invalidated: the same jump must
    // reach the new code.
    let vm = far_jump_rounds(
        &|_| Ok(()),
        &[&|a| {
            a.mov(qword_ptr(far_pte()), rdx)?;
            a.invlpg(ptr(FAR))
        }],
        preset_far_pte_to_other,
    );
    assert_eq!(vm.gpr(RBX), 1000 + 100 * 1000);
}

#[test]
fn a_link_to_code_rewritten_on_another_page_runs_the_new_code() {
    // After the first round, the loop rewrites the immediate of FAR's ADD from its own page:
    // its link to the old block must go (links hold the target's entry itself, cleared when
    // that block is dropped), and the new ADD must run.
    let vm = far_jump_rounds(
        &|_| Ok(()),
        // FAR's `add rbx, imm8` (48 83 C3 ib): its immediate.
        &[&|a| a.mov(byte_ptr(FAR + 3), 100)],
        |v| assert_eq!(v.read(FAR, 4)[..4], [0x48, 0x83, 0xc3, 1]),
    );
    assert_eq!(vm.gpr(RBX), 1000 + 100 * 1000);
}

#[test]
fn a_link_made_in_one_address_space_is_not_followed_in_another() {
    // The second round runs in a second address space (PCID 1, entered without a flush),
    // where linear FAR maps to OTHER: a link made in the first must not be followed.
    let vm = far_jump_rounds(
        &enable_pcids,
        // PCID 1, bit 63: keep its translations (there are none yet).
        &[&|a| {
            a.mov(rax, PML4B | 1 | 1 << 63)?;
            a.mov(cr3, rax)
        }],
        |v| {
            map_far_to_other_in_pcid1(v);
        },
    );
    assert_eq!(vm.gpr(RBX), 1000 + 100 * 1000);
}

#[test]
fn links_hold_again_in_an_address_space_resumed_with_its_translations_kept() {
    // Four rounds: in PCID 0 (FAR maps to itself), in PCID 1 (FAR maps to OTHER), back in
    // PCID 0 with its translations kept (FAR as in the first round: its links may hold
    // again), and in PCID 0 entered with a flush after its table was changed from PCID 1 to
    // map FAR to OTHER (its links must not hold). R8 keeps PCID 0's CR3.
    let vm = far_jump_rounds(
        &|a| {
            enable_pcids(a)?;
            a.mov(r8, cr3)
        },
        &[
            &|a| {
                a.mov(rax, PML4B | 1 | 1 << 63)?;
                a.mov(cr3, rax)
            },
            &|a| {
                a.mov(rax, r8)?;
                a.bts(rax, 63)?;
                a.mov(cr3, rax)
            },
            &|a| {
                a.mov(rax, PML4B | 1 | 1 << 63)?;
                a.mov(cr3, rax)?;
                a.mov(qword_ptr(far_pte()), rdx)?;
                a.mov(cr3, r8)
            },
        ],
        |v| {
            map_far_to_other_in_pcid1(v);
            preset_far_pte_to_other(v);
        },
    );
    assert_eq!(vm.gpr(RBX), 2 * (1000 + 100 * 1000));
}

#[test]
fn links_to_another_page_hold_in_every_address_space_that_maps_it_alike() {
    // As each fork and exec of one program: ten rounds alternate between two address spaces
    // (PCIDs 0 and 1, each entered with a flush) that map the code alike. Each round jumps to
    // eight places on FAR's page and back, a hundred times. Once a round's first jump there
    // has filled the TLB again, the links made in the first round hold: they are not made
    // again in every round (16 links per round).
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        let mut a = CodeAssembler::new(64).unwrap();
        let (mut round, mut top) = (a.create_label(), a.create_label());
        let mut backs: Vec<CodeLabel> = (0..8).map(|_| a.create_label()).collect();
        let mut build = || -> Result<(), IcedError> {
            enable_pcids(&mut a)?;
            a.mov(r8, cr3)?;
            a.mov(r9, PML4B | 1)?;
            a.mov(r10d, 10)?;
            a.set_label(&mut round)?;
            a.mov(ecx, 100)?;
            a.set_label(&mut top)?;
            for (k, back) in backs.iter_mut().enumerate() {
                a.jmp(FAR + 0x40 * k as u64)?;
                a.set_label(back)?;
            }
            a.dec(ecx)?;
            a.jnz(top)?;
            a.xchg(r8, r9)?;
            a.mov(cr3, r8)?;
            a.dec(r10d)?;
            a.jnz(round)?;
            a.nop()
        };
        build().unwrap();
        let r = a.assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        v.set_code(&r.inner.code_buffer);
        for (k, back) in backs.iter().enumerate() {
            let at = FAR + 0x40 * k as u64;
            let mut stub = CodeAssembler::new(64).unwrap();
            stub.add(rbx, k as i32 + 1).unwrap();
            stub.jmp(r.label_ip(back).unwrap()).unwrap();
            v.write(at, &stub.assemble(at).unwrap());
        }
        copy_tables_for_pcid1(&mut v, FAR);
        v.finish();
        v
    });
    assert_eq!(chained.gpr(RBX), 10 * 100 * 36);
    let stats = chained.cpu.jit_stats();
    assert!(stats.chained_runs > 10 * 100 * 16, "{stats:?}");
    let taken = stats.links[EXIT_TAKEN];
    assert!(taken < 16 + 10 * 4, "{taken} links made for 16 jumps in 10 rounds: {stats:?}");
}

#[test]
fn links_to_another_page_hold_in_real_mode_with_a_code_segment_base() {
    // Real mode, CS's base at CODE: a block of INCs runs up to the end of the page at IP
    // 0x1000 and goes on into the block at linear CODE + 0x1000 through its next-instruction
    // exit, a thousand times. Compiled code checks that link against the TLB's translation
    // of CS's base plus IP; were the base left out, it would be linked again every time.
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = Vm::new(Mode::Real);
        v.cpu.set_jit(JitConfig { mode, ..JitConfig::default() });
        v.budget = budget;
        let run_in = 0xff8;
        let mut a = CodeAssembler::new(16).unwrap();
        let mut done = a.create_label();
        let mut main = || -> Result<(), IcedError> {
            a.mov(cx, 1000)?;
            a.jmp(run_in)?;
            a.set_label(&mut done)?;
            a.nop()
        };
        main().unwrap();
        let r = a.assemble_options(0, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        v.set_code(&r.inner.code_buffer);
        let mut run = CodeAssembler::new(16).unwrap();
        let mut tail = || -> Result<(), IcedError> {
            for _ in 0..8 {
                run.inc(bx)?;
            }
            run.inc(dx)?;
            run.dec(cx)?;
            run.jnz(run_in)?;
            run.jmp(r.label_ip(&done).unwrap())
        };
        tail().unwrap();
        let bytes = run.assemble(run_in).unwrap();
        assert_eq!(bytes[..8], [0x43; 8], "eight one-byte INCs up to the page's end");
        v.write(CODE + run_in, &bytes);
        v.finish();
        v
    });
    assert_eq!((chained.gpr(RBX), chained.gpr(RDX)), (8000, 1000));
    let stats = chained.cpu.jit_stats();
    assert!(stats.chained_runs >= 900, "{stats:?}");
    assert!(stats.links[EXIT_NEXT] < 10, "{stats:?}");
}

/// A JMP rel32 two bytes before FAR, whose displacement's last three bytes lie on FAR's page,
/// called from a stub on another page a thousand times; then FAR is mapped to OTHER, whose
/// bytes there differ (the jump leads elsewhere), and it runs a thousand times more. Its block
/// is found by its first page, which did not change: it must not run the bytes it was decoded
/// from. With `global`, the pages are global (CR4.PGE), so the stub's call may be linked to
/// it; no other link leads to FAR's page.
fn run_into_a_remapped_page(global: bool) {
    const STUB: u64 = CODE + 0x3000;
    // Where the jump leads with FAR's bytes, and with OTHER's.
    const ONE: u64 = CODE + 0x4000;
    const MANY: u64 = ONE + 0x100;
    let (off, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut build = || -> Result<(), IcedError> {
            if global {
                enable_global_pages(&mut a)?;
            }
            a.mov(esi, 2)?;
            a.set_label(&mut top)?;
            a.mov(ecx, 1000)?;
            let mut again = a.create_label();
            a.set_label(&mut again)?;
            a.call(STUB)?;
            a.dec(ecx)?;
            a.jnz(again)?;
            a.mov(qword_ptr(far_pte()), rdx)?;
            a.invlpg(ptr(FAR))?;
            a.dec(esi)?;
            a.jnz(top)?;
            a.nop()
        };
        build().unwrap();
        v.code(|b| {
            b.db(&a.assemble(CODE).unwrap())?;
            Ok(())
        });
        let mut stub = CodeAssembler::new(64).unwrap();
        stub.call(FAR - 2).unwrap();
        stub.ret().unwrap();
        v.write(STUB, &stub.assemble(STUB).unwrap());
        // E9 and the displacement's low byte, then its other three: to ONE, or to MANY.
        let displacement = |to: u64| ((to - (FAR + 3)) as u32).to_le_bytes();
        let (one, many) = (displacement(ONE), displacement(MANY));
        assert_eq!(one[0], many[0]);
        v.write(FAR - 2, &[0xe9, one[0]]);
        v.write(FAR, &one[1..]);
        v.write(OTHER, &many[1..]);
        for (at, add) in [(ONE, 1), (MANY, 0x10001)] {
            let mut f = CodeAssembler::new(64).unwrap();
            f.add(rbx, add).unwrap();
            f.ret().unwrap();
            v.write(at, &f.assemble(at).unwrap());
        }
        if global {
            mark_global(&mut v, &[CODE, FAR, STUB, ONE]);
        }
        preset_far_pte_to_other(&mut v);
        v.finish();
        v
    });
    assert_eq!(off.gpr(RBX), 1000 + 1000 * 0x10001);
    assert_eq!(chained.gpr(RBX), off.gpr(RBX));
}

#[test]
fn an_instruction_running_into_a_remapped_page_is_decoded_again() {
    run_into_a_remapped_page(false);
}

#[test]
fn a_link_to_an_instruction_running_into_a_remapped_global_page_goes() {
    run_into_a_remapped_page(true);
}

/// A loop at the end of CODE's page: `dec rcx; jz out` (block A) falls through to eleven
/// `add rbx, 1` starting 43 bytes before FAR, the last of which crosses into FAR's page, and
/// jumps back. The adds must not form one block crossing the page: A's exit to it is within
/// A's page, which compiled code follows unchecked, so it could not be linked and every round
/// would return to the run loop. Global pages (as the kernel's), so the link to the
/// instruction crossing into FAR may be made too.
#[test]
fn a_loop_running_into_the_next_page_chains_all_the_way() {
    const LOOP: u64 = FAR - 0x30;
    let (off, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        let mut a = CodeAssembler::new(64).unwrap();
        let mut build = || -> Result<(), IcedError> {
            enable_global_pages(&mut a)?;
            a.mov(ecx, 1000)?;
            a.call(LOOP)?;
            a.nop()
        };
        build().unwrap();
        v.code(|b| {
            b.db(&a.assemble(CODE).unwrap())?;
            Ok(())
        });
        let mut l = CodeAssembler::new(64).unwrap();
        let (mut top, mut out) = (l.create_label(), l.create_label());
        let mut body = || -> Result<(), IcedError> {
            l.set_label(&mut top)?;
            l.dec(rcx)?;
            l.jz(out)?;
            for _ in 0..11 {
                l.add(rbx, 1)?;
            }
            l.jmp(top)?;
            l.set_label(&mut out)?;
            l.ret()
        };
        body().unwrap();
        let bytes = l.assemble(LOOP).unwrap();
        assert_eq!(bytes[..5], [0x48, 0xff, 0xc9, 0x74, 0x2e], "dec rcx; jz: A is five bytes");
        v.write(LOOP, &bytes);
        mark_global(&mut v, &[CODE, FAR]);
        v.finish();
        v
    });
    assert_eq!(off.gpr(RBX), 11 * 999);
    let stats = chained.cpu.jit_stats();
    let unlinked: u64 = stats.unlinked_returns.iter().sum();
    assert!(unlinked < 20, "{unlinked} returns from unlinked exits in 999 rounds: {stats:?}");
}

/// A budget the kick always beats (it comes within 300 ms), yet finite, so chained code that
/// ignored the kick or the interrupt runs to it (seconds) instead of hanging: the loop's count
/// in RAX then shows it, as the run loop itself would still report the kick afterwards.
const NEVER_REACHED: u64 = 4_000_000_000;

/// RAX after the `inc rax; jmp` loop stopped promptly (about 100 ms of it; the whole budget
/// would be half of `NEVER_REACHED`).
fn stopped_promptly(v: &Vm) -> bool {
    v.gpr(RAX) < NEVER_REACHED / 8
}

#[test]
fn a_kick_stops_chained_blocks() {
    let mut v = vm(JitMode::Always);
    v.code(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.inc(rax)?;
        a.jmp(top)
    });
    let kick = v.cpu.attention();
    let kicker = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        kick.kick.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(v.cpu.run(&mut v.bus, NEVER_REACHED), ferrite_cpu::RunExit::Kicked);
    kicker.join().unwrap();
    assert!(v.gpr(RAX) > 1000 && v.cpu.jit_stats().chained_runs > 1000, "{:?}", v.cpu.jit_stats());
    assert!(stopped_promptly(&v), "the chain ran on past the kick: {} iterations", v.gpr(RAX));
}

/// Runs `v` while another thread raises INTR (vector 0x20) after 100 ms and kicks the CPU
/// 200 ms later; checks that the CPU returned for the kick in the interrupt's handler.
fn run_until_interrupt_then_kick(v: &mut Vm) {
    let attention = v.cpu.attention();
    let raiser = {
        let attention = attention.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            attention.intr.store(true, std::sync::atomic::Ordering::Release);
            // Long enough for the handler (a `jmp $` stub) to be reached, then stop it.
            std::thread::sleep(std::time::Duration::from_millis(200));
            attention.kick.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let exit = v.cpu.run(&mut ferrite_cpu::testing::LineBus { ram: &mut v.bus, attention: &attention, vector: 0x20 }, NEVER_REACHED);
    raiser.join().unwrap();
    assert_eq!(exit, ferrite_cpu::RunExit::Kicked);
    assert_eq!(v.linear_rip(), STUBS + 16 * 0x20, "the interrupt's stub runs");
}

#[test]
fn an_interrupt_stops_chained_blocks_at_the_next_exit() {
    let mut v = vm(JitMode::Always);
    v.code(|a| {
        let mut top = a.create_label();
        a.sti()?;
        a.set_label(&mut top)?;
        a.inc(rax)?;
        a.jmp(top)
    });
    run_until_interrupt_then_kick(&mut v);
    assert!(stopped_promptly(&v), "the chain ran on past the interrupt: {} iterations", v.gpr(RAX));
    assert!(v.gpr(RAX) > 1000 && v.cpu.jit_stats().chained_runs > 1000, "{:?}", v.cpu.jit_stats());
}

/// A loop that opens an interrupt window of one instruction (STI; NOP; CLI) runs chained
/// while nothing is pending, and takes an interrupt raised meanwhile in a later window.
#[test]
fn interrupt_windows_after_sti_chain_on_and_still_let_interrupts_in() {
    let mut v = vm(JitMode::Always);
    v.code(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.sti()?;
        a.nop()?;
        a.cli()?;
        a.inc(rax)?;
        a.jmp(top)
    });
    run_until_interrupt_then_kick(&mut v);
    let frame_rip = u64::from_le_bytes(v.read(v.gpr(RSP), 8).try_into().unwrap());
    assert_eq!(frame_rip, CODE + 2, "taken after the NOP the STI shadows, before the CLI");
    let stats = v.cpu.jit_stats();
    let iterations = v.gpr(RAX);
    assert!(iterations > 1000 && stats.other_returns[4] < iterations / 100, "STI ended the chain: {iterations} iterations, {stats:?}");
}

/// The end of a loop that calls `func`: leaves for `done`, and `func` itself (adds RBX to
/// RSI and returns).
fn end_with_function(a: &mut CodeAssembler, mut func: CodeLabel, mut done: CodeLabel) -> Result<(), IcedError> {
    a.jmp(done)?;
    a.set_label(&mut func)?;
    a.add(rsi, rbx)?;
    a.ret()?;
    a.set_label(&mut done)?;
    a.nop()
}

#[test]
fn indirect_branches_chain_only_to_the_target_they_take() {
    // One function returns alternately to two call sites, and a register jump alternates
    // between two targets: each indirect exit sees a new target every time, which its
    // two-entry cache holds after the first round.
    let on = both(&[(RCX, 300)], |a| {
        let (mut top, func, mut odd, mut even, mut join, done) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
        a.set_label(&mut top)?;
        a.call(func)?;
        a.add(rbx, 1)?;
        a.call(func)?;
        a.add(rbx, 10)?;
        a.lea(rax, ptr(odd))?;
        a.lea(rdx, ptr(even))?;
        a.test(cl, 1)?;
        a.cmove(rax, rdx)?;
        a.jmp(rax)?;
        a.set_label(&mut odd)?;
        a.add(r8, 3)?;
        a.jmp(join)?;
        a.set_label(&mut even)?;
        a.add(r9, 5)?;
        a.set_label(&mut join)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        end_with_function(a, func, done)
    });
    assert_eq!((on.gpr(RBX), on.gpr(8), on.gpr(9)), (300 * 11, 150 * 3, 150 * 5));
    // A one-entry cache relinked at every one of the 900 indirect branches.
    assert_chained_with_few_indirect_links(&on, 20);
}

/// Compiled blocks chained, and their indirect exits were linked fewer than `most` times.
fn assert_chained_with_few_indirect_links(on: &Vm, most: u64) {
    let stats = on.cpu.jit_stats();
    assert!(stats.chained_runs > 1000, "{stats:?}");
    let relinked = stats.links[EXIT_INDIRECT];
    assert!(relinked < most, "the indirect exits relinked {relinked} times: {stats:?}");
}

#[test]
fn returns_to_many_call_sites_chain_through_the_shared_table() {
    // One function called from eight sites in turn: its RET sees a new target every time,
    // more than its two cells hold, so the CPU's indirect table serves it.
    let on = both(&[(RCX, 200)], |a| {
        let (mut top, func, done) = (a.create_label(), a.create_label(), a.create_label());
        a.set_label(&mut top)?;
        for k in 1..=8 {
            a.call(func)?;
            a.add(rbx, k)?;
        }
        a.dec(rcx)?;
        a.jnz(top)?;
        end_with_function(a, func, done)
    });
    assert_eq!(on.gpr(RBX), 200 * 36);
    // With its two cells alone, the RET relinked at nearly every one of its 1600 runs.
    assert_chained_with_few_indirect_links(&on, 100);
}

#[test]
fn tlb_misses_in_compiled_code_are_filled_without_leaving_it() {
    // Reads and writes one qword on each of 200 pages: every access misses the TLB the
    // first time, and every miss is filled from compiled code, which goes on inline.
    let on = both(&[(RSI, DATA), (RCX, 200)], |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.add(rax, qword_ptr(rsi + 8))?;
        a.mov(qword_ptr(rsi), rcx)?;
        a.add(qword_ptr(rsi + 16), rcx)?;
        a.add(rsi, 0x1000)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        Ok(())
    });
    assert_eq!(on.gpr(RSI), DATA + 200 * 0x1000);
    let stats = on.cpu.jit_stats();
    assert!(stats.fills >= 200, "{stats:?}");
    assert_eq!(stats.side_exits, 0, "{stats:?}");
}

#[test]
fn a_data_access_sharing_a_code_pages_tlb_slot_leaves_its_links_alone() {
    // A loop jumps to FAR, whose code adds a qword it reads through an alias 4 MiB above
    // (a 2 MiB page mapping 4-6 MiB onto 0-2 MiB), so the read and the fetch from FAR use the
    // same TLB slot. Neither evicts the other's translation: the jump's link to FAR holds, and
    // the read does not miss again (as one table, each run filled both and relinked the jump).
    const ALIAS: u64 = 4 << 20;
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        v.write(PD + 16, &0x87u64.to_le_bytes());
        let mut a = CodeAssembler::new(64).unwrap();
        let (mut top, mut back) = (a.create_label(), a.create_label());
        let mut build = || -> Result<(), IcedError> {
            a.mov(ecx, 1000)?;
            a.set_label(&mut top)?;
            a.jmp(FAR)?;
            a.set_label(&mut back)?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.nop()
        };
        build().unwrap();
        let r = a.assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        v.set_code(&r.inner.code_buffer);
        let mut far = CodeAssembler::new(64).unwrap();
        far.add(rbx, qword_ptr(ALIAS + FAR + 0x100)).unwrap();
        far.jmp(r.label_ip(&back).unwrap()).unwrap();
        v.write(FAR, &far.assemble(FAR).unwrap());
        v.write(FAR + 0x100, &3u64.to_le_bytes());
        v.finish();
        v
    });
    assert_eq!(chained.gpr(RBX), 3 * 1000);
    let stats = chained.cpu.jit_stats();
    assert!(stats.chained_runs > 1000, "{stats:?}");
    assert!(stats.links[EXIT_TAKEN] < 10 && stats.fills < 10, "{stats:?}");
}

#[test]
fn two_data_pages_sharing_a_tlb_slot_trade_places_without_page_walks() {
    // A loop reads a qword at DATA and one 4 MiB above (the alias of `ALIAS`), whose pages
    // share a TLB slot, and increments a third through the alias: each access misses the
    // slot the other just took. The evicted entry waits as a victim and comes back
    // without a walk; the results are the interpreter's.
    const ALIAS: u64 = 4 << 20;
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        v.write(PD + 16, &0x87u64.to_le_bytes());
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut build = || -> Result<(), IcedError> {
            a.mov(ecx, 1000)?;
            a.set_label(&mut top)?;
            a.add(rbx, qword_ptr(DATA + 0x100))?;
            a.add(rbx, qword_ptr(ALIAS + DATA + 0x108))?;
            a.inc(qword_ptr(ALIAS + DATA + 0x110))?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.nop()
        };
        build().unwrap();
        v.set_code(&a.assemble(CODE).unwrap());
        v.write(DATA + 0x100, &3u64.to_le_bytes());
        v.write(DATA + 0x108, &5u64.to_le_bytes());
        v.finish();
        v
    });
    assert_eq!(chained.gpr(RBX), 8 * 1000);
    assert_eq!(chained.read(DATA + 0x110, 8), 1000u64.to_le_bytes());
    let stats = chained.cpu.jit_stats();
    assert!(stats.fills < 10 && stats.victim_fills > 1000, "{stats:?}");
}
