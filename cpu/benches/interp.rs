//! Interpreter speed: guest instructions per second on fixed loops in 64-bit mode.
//! `cargo bench -p ferrite-cpu --bench interp` (prints MIPS per loop, median of 5 runs).

use ferrite_cpu::state::{cr0, cr4, efer, reg, seg_attr::*, Seg, Segment};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, CpuModel, RunExit};
use iced_x86::code_asm::*;
use std::time::Instant;

const CODE: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

/// A 64-bit CPU with 0-1 GiB identity mapped by 2 MiB pages.
fn long_mode(bus: &mut FlatBus) -> Cpu {
    let pml4 = 0x1000u64;
    bus.load(pml4, &(0x2000u64 | 3).to_le_bytes());
    bus.load(0x2000, &(0x3000u64 | 3).to_le_bytes());
    for i in 0..8u64 {
        bus.load(0x3000 + i * 8, &((i << 21) | 0x83).to_le_bytes());
    }
    let mut cpu = Cpu::new(CpuModel::max());
    let st = &mut cpu.state;
    st.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE;
    st.cr3 = pml4;
    st.cr4 = cr4::PAE;
    st.efer = efer::LME | efer::LMA;
    let data = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, attrs: P | S | TYPE_WRITABLE | TYPE_ACCESSED | DB | G };
    for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
        st.seg[s as usize] = data;
    }
    st.seg[Seg::Cs as usize] =
        Segment { selector: 0x08, base: 0, limit: 0xffff_ffff, attrs: P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED | L | G };
    st.rip = CODE;
    st.gpr[reg::RSP] = 0x8_0000;
    let s = cpu.state.clone();
    cpu.set_state(s);
    cpu
}

fn alu_loop(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(rcx, 1_000_000_000u64).unwrap();
    a.set_label(&mut top).unwrap();
    a.add(rax, rbx).unwrap();
    a.xor(rdx, rax).unwrap();
    a.sub(rbx, 3).unwrap();
    a.and(rdx, 0xffff).unwrap();
    a.lea(rsi, qword_ptr(rax + rdx * 2 + 8)).unwrap();
    a.inc(rdi).unwrap();
    a.dec(rcx).unwrap();
    a.jnz(top).unwrap();
}

fn memory_loop(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(rcx, 1_000_000_000u64).unwrap();
    a.mov(rsi, DATA).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rax, qword_ptr(rsi)).unwrap();
    a.add(rax, 1).unwrap();
    a.mov(qword_ptr(rsi), rax).unwrap();
    a.mov(rbx, qword_ptr(rsi + 8)).unwrap();
    a.add(qword_ptr(rsi + 16), rbx).unwrap();
    a.push(rax).unwrap();
    a.pop(rdx).unwrap();
    a.dec(rcx).unwrap();
    a.jnz(top).unwrap();
}

fn string_loop(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(rbx, 1_000_000_000u64).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rsi, DATA).unwrap();
    a.mov(rdi, DATA + 0x10000).unwrap();
    a.mov(rcx, 512u64).unwrap();
    a.rep().movsq().unwrap();
    a.dec(rbx).unwrap();
    a.jnz(top).unwrap();
}

/// Runs `budget` guest instructions of the loop; returns MIPS.
/// Address-space switches: MOV CR3 between two page-table roots, each followed by reads of
/// 16 pages. `pcid`: with CR4.PCIDE, each root its own PCID and bit 63 set, so the
/// translations survive the switch; otherwise every MOV CR3 flushes them.
fn cr3_loop(a: &mut CodeAssembler, pcid: bool) {
    const NO_FLUSH: u64 = 1 << 63;
    let (first, second) = if pcid { (0x1001 | NO_FLUSH, 0x1002 | NO_FLUSH) } else { (0x1000, 0x1000) };
    if pcid {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::PCIDE as i32).unwrap();
        a.mov(cr4, rax).unwrap();
    }
    let mut top = a.create_label();
    a.mov(rcx, 1_000_000_000u64).unwrap();
    a.set_label(&mut top).unwrap();
    for (root, base) in [(first, DATA), (second, DATA + 0x4_0000)] {
        a.mov(rax, root).unwrap();
        a.mov(cr3, rax).unwrap();
        for i in 0..16u64 {
            a.mov(rbx, qword_ptr(base + i * 0x1000)).unwrap();
        }
    }
    a.dec(rcx).unwrap();
    a.jnz(top).unwrap();
}

fn measure(build: fn(&mut CodeAssembler), budget: u64) -> f64 {
    let mut a = CodeAssembler::new(64).unwrap();
    build(&mut a);
    let code = a.assemble(CODE).unwrap();
    let mut bus = FlatBus::new(16 << 20);
    bus.load(CODE, &code);
    let mut cpu = long_mode(&mut bus);
    let start = Instant::now();
    let exit = cpu.run(&mut bus, budget);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(exit, RunExit::Budget, "loop stopped early at rip {:#x}", cpu.state.rip);
    cpu.instructions as f64 / secs / 1e6
}

fn main() {
    let budget: u64 = std::env::var("FERRITE_BENCH_INSNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000_000);
    let only = std::env::var("FERRITE_BENCH_ONLY").ok();
    type Loop = (&'static str, fn(&mut CodeAssembler));
    let loops: [Loop; 5] = [
        ("alu", alu_loop),
        ("memory", memory_loop),
        ("string", string_loop),
        ("cr3", |a| cr3_loop(a, false)),
        ("pcid", |a| cr3_loop(a, true)),
    ];
    for (name, f) in loops {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x == name)) {
            continue;
        }
        let reps: usize = std::env::var("FERRITE_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        let mut runs: Vec<f64> = (0..reps).map(|_| measure(f, budget)).collect();
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "interp {name:<8} {:>8.1} MIPS (median of {reps}; min {:.1}, max {:.1})",
            runs[reps / 2],
            runs[0],
            runs[reps - 1]
        );
    }
}
