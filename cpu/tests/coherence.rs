//! Several vCPUs sharing guest memory through the machine's page tracking: code one vCPU
//! decoded goes stale when another (or a device) writes it, the dirty log sees every write,
//! and a vCPU that fell behind the event log starts over.

use ferrite_cpu::bus::{CpuBus, PhysPage};
use ferrite_cpu::state::{cr0, reg, Seg, Segment};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, CpuModel, RunExit};
use ferrite_memory::{CodeTracker, PageBitmap, PageTracking, ORIGIN_DMA};
use iced_x86::code_asm::*;
use std::sync::Arc;

const RAM: usize = 0x10_0000;
const CODE: u64 = 0x1000;

fn tracking() -> Arc<PageTracking> {
    let pages = (RAM / 4096) as u64;
    Arc::new(PageTracking { dirty: PageBitmap::new(pages).unwrap(), code: CodeTracker::new(pages).unwrap() })
}

/// A 32-bit flat protected-mode CPU (no paging) at `rip`, sharing `t` as vCPU `index`.
fn vcpu(t: &Arc<PageTracking>, index: u32, rip: u64) -> Cpu {
    let mut cpu = Cpu::new(CpuModel::max());
    let mut st = cpu.state.clone();
    st.cr0 |= cr0::PE;
    for s in Seg::ALL {
        st.seg[s as usize] = Segment { selector: 0x10, attrs: 0xc093, limit: 0xffff_ffff, base: 0 };
    }
    st.seg[Seg::Cs as usize] = Segment { selector: 0x08, attrs: 0xc09b, limit: 0xffff_ffff, base: 0 };
    st.rip = rip;
    st.gpr[reg::RSP] = 0x8000 + 0x1000 * index as u64;
    cpu.set_state(st);
    cpu.attach_tracking(t.clone(), index);
    cpu
}

fn asm(at: u64, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    f(&mut a);
    a.assemble(at).unwrap()
}

/// Runs `cpu` from `rip` until it halts.
fn run_at(cpu: &mut Cpu, bus: &mut dyn CpuBus, rip: u64) {
    cpu.state.rip = rip;
    cpu.halted = false;
    assert_eq!(cpu.run(bus, 10_000), RunExit::Halted);
}

/// `mov eax, imm32; hlt` at CODE: the immediate sits at CODE + 1.
fn load_imm(bus: &mut FlatBus, value: u32) {
    bus.load(CODE, &asm(CODE, |a| {
        a.mov(eax, value).unwrap();
        a.hlt().unwrap();
    }));
}

#[test]
fn a_write_by_another_vcpu_makes_decoded_code_stale() {
    let t = tracking();
    let mut bus = FlatBus::new(RAM);
    load_imm(&mut bus, 1);
    // vCPU 1 patches vCPU 0's immediate.
    bus.load(0x2000, &asm(0x2000, |a| {
        a.mov(dword_ptr(CODE as u32 + 1), 2u32).unwrap();
        a.hlt().unwrap();
    }));
    let (mut cpu0, mut cpu1) = (vcpu(&t, 0, CODE), vcpu(&t, 1, 0x2000));
    run_at(&mut cpu0, &mut bus, CODE);
    assert_eq!(cpu0.state.gpr[reg::RAX], 1);
    assert!(t.code.is_code(CODE));
    run_at(&mut cpu1, &mut bus, 0x2000);
    assert!(!t.code.is_code(CODE), "the write cleared the mark");
    assert!(t.dirty.get(CODE >> 12), "and marked the page dirty");
    run_at(&mut cpu0, &mut bus, CODE);
    assert_eq!(cpu0.state.gpr[reg::RAX], 2, "vCPU 0 decoded the new instruction");
}

#[test]
fn decoding_a_page_another_vcpu_writes_fast_reprotects_it() {
    let t = tracking();
    let mut bus = FlatBus::new(RAM);
    load_imm(&mut bus, 1);
    bus.load(0x2000, &asm(0x2000, |a| {
        a.mov(dword_ptr(CODE as u32 + 1), ebx).unwrap();
        a.hlt().unwrap();
    }));
    let (mut cpu0, mut cpu1) = (vcpu(&t, 0, CODE), vcpu(&t, 1, 0x2000));
    // vCPU 1 writes the page first (nobody's code yet): its TLB entry turns fast.
    cpu1.state.gpr[reg::RBX] = 1;
    run_at(&mut cpu1, &mut bus, 0x2000);
    assert!(t.dirty.get(CODE >> 12));
    // vCPU 0 decodes there; vCPU 1 learns of it at its next block and sends its writes
    // there through the slow path again, so vCPU 0 sees the next one.
    run_at(&mut cpu0, &mut bus, CODE);
    assert_eq!(cpu0.state.gpr[reg::RAX], 1);
    cpu1.state.gpr[reg::RBX] = 7;
    run_at(&mut cpu1, &mut bus, 0x2000);
    run_at(&mut cpu0, &mut bus, CODE);
    assert_eq!(cpu0.state.gpr[reg::RAX], 7);
}

#[test]
fn device_writes_and_own_writes() {
    let t = tracking();
    let mut bus = FlatBus::new(RAM);
    load_imm(&mut bus, 1);
    let mut cpu = vcpu(&t, 0, CODE);
    run_at(&mut cpu, &mut bus, CODE);
    // A device (DMA) rewrites the code: the memory crate logs it under ORIGIN_DMA.
    load_imm(&mut bus, 3);
    t.code.note_write_range(CODE, 5, ORIGIN_DMA);
    run_at(&mut cpu, &mut bus, CODE);
    assert_eq!(cpu.state.gpr[reg::RAX], 3);
    // Self-modifying code on this vCPU: its own event is skipped, the local path drops it.
    bus.load(0x1800, &asm(0x1800, |a| {
        a.mov(dword_ptr(CODE as u32 + 1), 4u32).unwrap();
        a.jmp(CODE).unwrap();
    }));
    run_at(&mut cpu, &mut bus, 0x1800);
    assert_eq!(cpu.state.gpr[reg::RAX], 4);
}

#[test]
fn dirty_log_sees_first_writes_after_each_take() {
    let t = tracking();
    let mut bus = FlatBus::new(RAM);
    bus.load(CODE, &asm(CODE, |a| {
        a.mov(dword_ptr(0x5000), 1u32).unwrap();
        a.mov(dword_ptr(0x5004), 2u32).unwrap();
        // 3 pages with REP STOSD (bulk fills after the first element of each page).
        a.mov(edi, 0x10000u32).unwrap();
        a.mov(ecx, 3 * 1024u32).unwrap();
        a.rep().stosd().unwrap();
        a.hlt().unwrap();
    }));
    let mut cpu = vcpu(&t, 0, CODE);
    t.dirty.take();
    run_at(&mut cpu, &mut bus, CODE);
    assert_eq!(t.dirty.take(), vec![5, 0x10, 0x11, 0x12]);
    // Taking the log asks every vCPU to drop its translations; the writes after are logged.
    t.code.flush_tlbs();
    run_at(&mut cpu, &mut bus, CODE);
    assert_eq!(t.dirty.take(), vec![5, 0x10, 0x11, 0x12]);
}

#[test]
fn falling_behind_the_event_log_drops_all_decoded_code() {
    let t = tracking();
    let mut bus = FlatBus::new(RAM);
    load_imm(&mut bus, 1);
    let mut cpu = vcpu(&t, 0, CODE);
    run_at(&mut cpu, &mut bus, CODE);
    // Rewritten without a word to the tracker, then more events than the log keeps.
    load_imm(&mut bus, 9);
    for _ in 0..10_000 {
        t.code.flush_tlbs();
    }
    run_at(&mut cpu, &mut bus, CODE);
    assert_eq!(cpu.state.gpr[reg::RAX], 9);
}

/// Guest RAM shared by vCPU threads, as the machine's guest memory is.
#[derive(Clone, Copy)]
struct SharedBus {
    ram: *mut u8,
}

// SAFETY: `ram` points at a leaked allocation that lives for the rest of the process; the
// vCPUs reach it only through raw pointers (racing guest accesses are the guest's business).
unsafe impl Send for SharedBus {}

impl CpuBus for SharedBus {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        if paddr < RAM as u64 {
            // SAFETY: inside the RAM allocation.
            PhysPage::Ram(unsafe { self.ram.add((paddr & !0xfff) as usize) })
        } else {
            PhysPage::Mmio
        }
    }
    fn mmio_read(&mut self, _: u64, _: u8) -> u64 {
        !0
    }
    fn mmio_write(&mut self, _: u64, _: u8, _: u64) {}
    fn io_read(&mut self, _: u16, _: u8) -> u32 {
        !0
    }
    fn io_write(&mut self, _: u16, _: u8, _: u32) {}
}

/// Cross-modifying code on real threads: vCPU 0 spins on `mov eax, 0; test eax, eax; jz`
/// (one cached block) until vCPU 1 patches the immediate; it must then see the new code.
#[test]
fn cross_modifying_code_between_threads() {
    let t = tracking();
    let ram: &'static mut [u8] = Box::leak(vec![0u8; RAM].into_boxed_slice());
    let spin = asm(CODE, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.mov(eax, 0u32).unwrap();
        a.test(eax, eax).unwrap();
        a.jz(top).unwrap();
        a.hlt().unwrap();
    });
    ram[CODE as usize..CODE as usize + spin.len()].copy_from_slice(&spin);
    let patch = asm(0x2000, |a| {
        a.mov(dword_ptr(CODE as u32 + 1), 42u32).unwrap();
        a.hlt().unwrap();
    });
    ram[0x2000..0x2000 + patch.len()].copy_from_slice(&patch);
    let bus = SharedBus { ram: ram.as_mut_ptr() };

    let mut cpu0 = vcpu(&t, 0, CODE);
    let mut cpu1 = vcpu(&t, 1, 0x2000);
    let spinner = std::thread::spawn(move || {
        let mut bus = bus;
        for _ in 0..20_000 {
            if cpu0.run(&mut bus, 100_000) == RunExit::Halted {
                return Some(cpu0.state.gpr[reg::RAX]);
            }
        }
        None
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let patcher = std::thread::spawn(move || {
        let mut bus = bus;
        cpu1.run(&mut bus, 1000)
    });
    assert_eq!(patcher.join().unwrap(), RunExit::Halted);
    assert_eq!(spinner.join().unwrap(), Some(42), "vCPU 0 left the loop with the new immediate");
}

#[test]
fn cpu_is_send() {
    fn send<T: Send>() {}
    send::<Cpu>();
}
