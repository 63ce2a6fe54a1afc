//! Differential test: random instructions run both in ferrite's interpreter and on a KVM
//! vCPU (the host kernel's instruction emulator / the hardware), from the same registers and
//! memory, in real, 32-bit protected and 64-bit mode. Every register, the defined flags, the
//! segment registers, CR2 and all of memory must match.
//!
//! `cargo test --release -p ferrite-cpu --test differential`
//! - `FERRITE_DIFF_CASES=N` cases in all (default 10,000), split over the modes;
//! - `FERRITE_DIFF_SEED=S` reproduces a run (the seed is printed);
//! - skips, saying so, when /dev/kvm is not usable.

#[path = "differential/env.rs"]
mod env;
#[path = "differential/gen.rs"]
mod gen;
#[path = "differential/kvm.rs"]
mod kvm;

use env::Mode;
use ferrite_cpu::state::{flags, CpuState, Seg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, CpuModel, RunExit};
use gen::Rng;
use iced_x86::{Encoder, Formatter, Instruction, IntelFormatter};
use kvm::{Oracle, OracleExit};

struct Tally {
    cases: u64,
    mismatches: u64,
    /// Cases the oracle could not judge (it exited for I/O, MMIO or an emulation failure).
    unjudged: u64,
    /// Cases whose result the SDM leaves undefined (not compared).
    undefined: u64,
    reported: u64,
}

fn text(insn: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(insn, &mut s);
    s
}

fn exit_name(e: RunExit) -> &'static str {
    match e {
        RunExit::Halted => "halt",
        RunExit::Shutdown => "shutdown",
        RunExit::Budget => "budget exhausted (no HLT reached)",
        RunExit::Debug => "debug",
        RunExit::Kicked => "kicked",
    }
}

/// Differences between the interpreter's and the oracle's final state.
fn compare(mode: Mode, ours: &CpuState, theirs: &CpuState, undefined: u64) -> Vec<String> {
    let mut d = Vec::new();
    const NAMES: [&str; 16] =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    for i in 0..16 {
        if ours.gpr[i] != theirs.gpr[i] {
            d.push(format!("{}: ours {:#x} kvm {:#x}", NAMES[i], ours.gpr[i], theirs.gpr[i]));
        }
    }
    if ours.rip != theirs.rip {
        d.push(format!("rip: ours {:#x} kvm {:#x}", ours.rip, theirs.rip));
    }
    // RF is not architecturally visible to the guest after HLT; undefined flags are free.
    let mask = !(undefined | flags::RF);
    if ours.rflags & mask != theirs.rflags & mask {
        d.push(format!("rflags: ours {:#x} kvm {:#x} (undefined {:#x})", ours.rflags, theirs.rflags, undefined));
    }
    for s in Seg::ALL {
        let (a, b) = (ours.seg(s), theirs.seg(s));
        if a.selector != b.selector || a.base != b.base {
            d.push(format!("{s:?}: ours {:#x}/{:#x} kvm {:#x}/{:#x}", a.selector, a.base, b.selector, b.base));
        }
    }
    if ours.cr2 != theirs.cr2 {
        d.push(format!("cr2: ours {:#x} kvm {:#x}", ours.cr2, theirs.cr2));
    }
    let _ = mode;
    d
}

fn first_memory_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn run_mode(oracle: &mut Oracle, mode: Mode, cases: u64, seed: u64, tally: &mut Tally) -> Option<()> {
    let base = env::memory(mode);
    let codes = gen::candidate_codes(mode);
    assert!(!codes.is_empty());
    let mut rng = Rng(seed);
    let mut done = 0;
    let mut attempts = 0;
    while done < cases && attempts < cases * 20 {
        attempts += 1;
        let code = codes[rng.below(codes.len() as u64) as usize];
        let Some(insn) = gen::instruction(code, &mut rng, mode) else { continue };
        let mut st = env::state(mode);
        gen::registers(&mut st, &mut rng, mode);
        let mut st_ret_target = None;
        if insn.mnemonic() == iced_x86::Mnemonic::Ret {
            // RET pops the address of the HLT at BRANCH_TARGET_OFFSET (imm16 forms release
            // more stack on top).
            let target = if mode == Mode::Real { gen::BRANCH_TARGET_OFFSET } else { env::CODE + gen::BRANCH_TARGET_OFFSET };
            st_ret_target = Some(target);
        }
        if insn.has_rep_prefix() || insn.has_repne_prefix() {
            // Keep REP loops short: the oracle emulates every iteration at a few MIPS.
            st.gpr[1] = rng.below(20);
        }
        let mut enc = Encoder::new(mode.bitness());
        if enc.encode(&insn, st.rip).is_err() {
            continue;
        }
        let mut bytes = enc.take_buffer();
        bytes.push(0xf4); // HLT
        let mut mem = base.clone();
        // HLTs around the instruction: relative branches land on one at BRANCH_TARGET_OFFSET.
        mem[env::CODE as usize..env::CODE as usize + 0x100].fill(0xf4);
        mem[env::CODE as usize..env::CODE as usize + bytes.len()].copy_from_slice(&bytes);
        if let Some(target) = st_ret_target {
            let sp = st.gpr[4] as usize;
            mem[sp..sp + 8].copy_from_slice(&target.to_le_bytes());
        }
        if let Some((size, frame)) = gen::return_frame(&insn, &mut rng, mode, &st) {
            // Far returns and IRETs pop a frame the harness plants on the stack.
            let sp = st.gpr[4] as usize;
            for (k, v) in frame.iter().enumerate() {
                let at = sp + k * size as usize;
                mem[at..at + size as usize].copy_from_slice(&v.to_le_bytes()[..size as usize]);
            }
        }

        // Oracle.
        oracle.memory().copy_from_slice(&mem);
        let (kexit, theirs) = oracle.run(&st);
        if kexit != OracleExit::Halt {
            // After an exit to user space (I/O, MMIO) KVM expects the instruction to be
            // completed by the next KVM_RUN, and after a shutdown the vCPU is unusable: start
            // from a fresh VM so no state leaks into the next case.
            *oracle = Oracle::new(env::MEM_SIZE)?;
        }
        if kexit == OracleExit::Other {
            tally.unjudged += 1;
            continue;
        }
        // Interpreter.
        let mut bus = FlatBus::new(env::MEM_SIZE);
        bus.ram.copy_from_slice(&mem);
        let mut cpu = Cpu::new(CpuModel::max());
        cpu.set_state(st.clone());
        let exit = cpu.run(&mut bus, 1000);
        done += 1;
        tally.cases += 1;

        let mut diffs = Vec::new();
        let expected = if kexit == OracleExit::Halt { RunExit::Halted } else { RunExit::Shutdown };
        if exit != expected {
            diffs.push(format!("exit: ours {} kvm {:?}", exit_name(exit), kexit));
        } else if exit == RunExit::Halted && gen::oracle_quirk_case(&insn, cpu.state.rip != st.rip + bytes.len() as u64) {
            tally.undefined += 1;
        } else if exit == RunExit::Halted && gen::result_undefined(&insn, &st, &mem, mode) {
            // The SDM leaves this instruction's result undefined for these operands.
            tally.undefined += 1;
        } else if exit == RunExit::Halted {
            cpu.materialize_flags();
            diffs.extend(compare(mode, &cpu.state, &theirs, gen::undefined_flags(&insn) | gen::oracle_quirk_flags(&insn) | gen::operand_undefined_flags(&insn, &st)));
            if let Some(at) = first_memory_difference(&bus.ram, oracle.memory()) {
                diffs.push(format!(
                    "memory at {at:#x}: ours {:#04x} kvm {:#04x}",
                    bus.ram[at],
                    oracle.memory()[at]
                ));
            }
        }
        if !diffs.is_empty() {
            tally.mismatches += 1;
            if tally.reported < 40 {
                tally.reported += 1;
                println!(
                    "MISMATCH [{}] {:<40} bytes {:02x?}\n  start: {}\n  {}",
                    mode.name(),
                    text(&insn),
                    &bytes[..bytes.len() - 1],
                    brief(&st),
                    diffs.join("\n  ")
                );
            }
        }
    }
    Some(())
}

fn brief(st: &CpuState) -> String {
    format!(
        "rax={:#x} rcx={:#x} rdx={:#x} rbx={:#x} rsp={:#x} rbp={:#x} rsi={:#x} rdi={:#x} rflags={:#x}",
        st.gpr[0], st.gpr[1], st.gpr[2], st.gpr[3], st.gpr[4], st.gpr[5], st.gpr[6], st.gpr[7], st.rflags
    )
}

#[test]
fn differential_against_kvm() {
    let Some(mut oracle) = Oracle::new(env::MEM_SIZE) else {
        println!("differential: SKIPPED: /dev/kvm is not usable on this machine");
        return;
    };
    let total: u64 = std::env::var("FERRITE_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // A fixed default keeps CI reproducible; `FERRITE_DIFF_SEED=random` (or a number) explores.
    let seed: u64 = match std::env::var("FERRITE_DIFF_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Some(v) => v.parse().expect("FERRITE_DIFF_SEED: a number or 'random'"),
        None => 20261126,
    };
    println!("differential: seed {seed} (FERRITE_DIFF_SEED={seed} reproduces this run)");
    let mut tally = Tally { cases: 0, mismatches: 0, unjudged: 0, undefined: 0, reported: 0 };
    let modes = [Mode::Real, Mode::Protected32, Mode::Long64];
    for (i, mode) in modes.iter().enumerate() {
        let share = total / 3 + if (i as u64) < total % 3 { 1 } else { 0 };
        run_mode(&mut oracle, *mode, share, seed.wrapping_add(i as u64), &mut tally).expect("recreating the KVM VM failed");
    }
    println!("differential: {} cases not judged (oracle exited for I/O, MMIO or emulation failure)", tally.unjudged);
    println!(
        "differential: {} cases with SDM-undefined results (or a documented oracle deviation) not compared",
        tally.undefined
    );
    println!("differential: {} cases, {} mismatches", tally.cases, tally.mismatches);
    assert_eq!(tally.mismatches, 0, "the interpreter disagrees with KVM");
}
