//! Guest atomicity across host threads: four vCPUs, each a `Cpu` on its own host thread, run
//! guest code against one shared RAM buffer (as the machine's vCPU threads do), hammering
//! the same memory with locked instructions; the final totals must be exact.
//!
//! The page tables live in the shared RAM too, so every walk's accessed/dirty updates race
//! with the other threads'; one test races them against a guest rewriting a PTE.

use ferrite_cpu::mmu::tlb::TLB_SIZE;
use ferrite_cpu::state::{cr0, cr4, efer, reg, seg_attr::*, Seg, Segment};
use ferrite_cpu::{Cpu, CpuBus, CpuModel, PhysPage, RunExit};
use iced_x86::code_asm::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::Arc;

const RAM_SIZE: usize = 16 << 20;
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
/// 4 KiB page table for the first 2 MiB; 2 MiB pages above.
const PT: u64 = 0x4000;
const CODE: u64 = 0x10000;
const STACK_TOP: u64 = 0x80000;
/// Shared data (a 2 MiB page).
const DATA: u64 = 0x20_0000;
const THREADS: usize = 4;

/// Page-aligned host memory shared by every vCPU thread, as the machine's guest RAM is.
struct Ram {
    ptr: *mut u8,
}

// SAFETY: the buffer is plain memory that lives as long as the `Ram`; sharing it between
// threads is the point. The guest's accesses go through raw pointers (`phys_page`), and the
// test itself only reads or writes it while no vCPU thread runs.
unsafe impl Send for Ram {}
// SAFETY: as above.
unsafe impl Sync for Ram {}

impl Ram {
    fn layout() -> Layout {
        Layout::from_size_align(RAM_SIZE, 4096).unwrap()
    }

    fn new() -> Arc<Ram> {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(Self::layout()) };
        assert!(!ptr.is_null());
        Arc::new(Ram { ptr })
    }

    /// Only while no vCPU thread runs.
    fn write(&self, addr: u64, bytes: &[u8]) {
        assert!(addr as usize + bytes.len() <= RAM_SIZE);
        // SAFETY: in bounds (checked); no other thread accesses the buffer now.
        unsafe { self.ptr.add(addr as usize).copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
    }

    fn write_u64(&self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    /// Only while no vCPU thread runs.
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        assert!(addr as usize + len <= RAM_SIZE);
        // SAFETY: in bounds (checked); no other thread accesses the buffer now.
        unsafe { std::slice::from_raw_parts(self.ptr.add(addr as usize), len).to_vec() }
    }

    fn u64(&self, addr: u64) -> u64 {
        u64::from_le_bytes(self.read(addr, 8).try_into().unwrap())
    }

    fn u32(&self, addr: u64) -> u32 {
        u32::from_le_bytes(self.read(addr, 4).try_into().unwrap())
    }

    fn u16(&self, addr: u64) -> u16 {
        u16::from_le_bytes(self.read(addr, 2).try_into().unwrap())
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { dealloc(self.ptr, Self::layout()) };
    }
}

/// One vCPU thread's bus: RAM is the shared buffer, nothing else exists.
struct SharedBus(Arc<Ram>);

impl CpuBus for SharedBus {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        let page = (paddr & !0xfff) as usize;
        if page < RAM_SIZE {
            // SAFETY: in bounds of the buffer, which outlives every bus holding it.
            PhysPage::Ram(unsafe { self.0.ptr.add(page) })
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

/// Shared RAM with identity-mapped page tables and `code` (ending in HLT) at CODE.
fn machine(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Arc<Ram> {
    let ram = Ram::new();
    ram.write_u64(PML4, PDPT | 3);
    ram.write_u64(PDPT, PD | 3);
    ram.write_u64(PD, PT | 3);
    for i in 1..8u64 {
        ram.write_u64(PD + 8 * i, (i << 21) | 0x83);
    }
    for p in 0..512u64 {
        ram.write_u64(PT + 8 * p, (p << 12) | 3);
    }
    let mut a = CodeAssembler::new(64).unwrap();
    build(&mut a).unwrap();
    a.hlt().unwrap();
    ram.write(CODE, &a.assemble(CODE).unwrap());
    ram
}

/// A 64-bit supervisor CPU with the tables `machine` built.
fn long_mode_cpu(t: usize) -> Cpu {
    let mut cpu = Cpu::new(CpuModel::max());
    cpu.apic_id = t as u32;
    cpu.cpus = THREADS as u32;
    let st = &mut cpu.state;
    st.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE | cr0::WP;
    st.cr3 = PML4;
    st.cr4 = cr4::PAE;
    st.efer = efer::LME | efer::LMA;
    let data =
        Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, attrs: P | S | TYPE_WRITABLE | TYPE_ACCESSED | DB | G };
    for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
        st.seg[s as usize] = data;
    }
    st.seg[Seg::Cs as usize] = Segment {
        selector: 0x08,
        base: 0,
        limit: 0xffff_ffff,
        attrs: P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED | L | G,
    };
    st.rip = CODE;
    st.gpr[reg::RSP] = STACK_TOP - 0x4000 * t as u64;
    let s = cpu.state.clone();
    cpu.set_state(s);
    cpu
}

/// Runs the code on `THREADS` vCPU threads at once, each starting with RSI = DATA, RDI =
/// its index and `regs(index)`, until each halts. Returns each thread's final GPRs.
fn run_threads(ram: &Arc<Ram>, regs: impl Fn(usize) -> Vec<(usize, u64)> + Sync) -> Vec<[u64; 16]> {
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ram, regs, start) = (ram.clone(), &regs, &start);
                s.spawn(move || {
                    let mut bus = SharedBus(ram);
                    let mut cpu = long_mode_cpu(t);
                    cpu.state.gpr[reg::RSI] = DATA;
                    cpu.state.gpr[reg::RDI] = t as u64;
                    for (r, v) in regs(t) {
                        cpu.state.gpr[r] = v;
                    }
                    start.wait();
                    loop {
                        match cpu.run(&mut bus, 1 << 16) {
                            RunExit::Budget => continue,
                            RunExit::Halted => break,
                            exit => panic!("vCPU {t}: {exit:?} at rip {:#x}", cpu.state.rip),
                        }
                    }
                    cpu.state.gpr
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Iterations per thread.
const N: u64 = 200_000;
const TOTAL: u64 = N * THREADS as u64;

#[test]
fn locked_arithmetic_counts_exactly() {
    let ram = machine(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.lock().add(qword_ptr(rsi), 1)?;
        a.mov(eax, 1)?;
        a.lock().xadd(dword_ptr(rsi + 8), eax)?;
        a.add(r14, rax)?;
        a.lock().inc(word_ptr(rsi + 16))?;
        a.lock().sub(qword_ptr(rsi + 24), 3)?;
        a.lock().dec(byte_ptr(rsi + 32))?;
        a.lock().xor(qword_ptr(rsi + 40), rbx)?;
        a.lock().not(dword_ptr(rsi + 48))?;
        a.stc()?;
        a.lock().adc(qword_ptr(rsi + 56), 0)?;
        a.stc()?;
        a.lock().sbb(dword_ptr(rsi + 64), 0)?;
        a.lock().or(qword_ptr(rsi + 72), rbx)?;
        a.lock().and(qword_ptr(rsi + 72), rbp)?;
        a.lock().neg(qword_ptr(rsi + 80))?;
        // Not locked: a counter that may lose updates (reported, not checked).
        a.add(qword_ptr(rsi + 88), 1)?;
        a.dec(r15)?;
        a.jnz(top)
    });
    ram.write_u64(DATA + 48, 0x1234_5678);
    ram.write_u64(DATA + 72, 0xffff);
    ram.write_u64(DATA + 80, 5);
    let regs = run_threads(&ram, |t| {
        vec![(15, N), (14, 0), (reg::RBX, 0x0101_0101_0101_0101 << t), (reg::RBP, !(0x10u64 << (8 * t)))]
    });
    assert_eq!(ram.u64(DATA), TOTAL, "lock add");
    assert_eq!(ram.u32(DATA + 8) as u64, TOTAL, "lock xadd");
    // Each XADD returned a distinct old value: 0, 1, ..., TOTAL - 1 in some order.
    let sum: u64 = regs.iter().map(|g| g[14]).sum();
    assert_eq!(sum, TOTAL * (TOTAL - 1) / 2, "lock xadd results");
    assert_eq!(ram.u16(DATA + 16), TOTAL as u16, "lock inc");
    assert_eq!(ram.u64(DATA + 24), (TOTAL * 3).wrapping_neg(), "lock sub");
    assert_eq!(ram.read(DATA + 32, 1)[0], (TOTAL as u8).wrapping_neg(), "lock dec");
    assert_eq!(ram.u64(DATA + 40), 0, "lock xor (an even number per thread)");
    assert_eq!(ram.u32(DATA + 48), 0x1234_5678, "lock not (an even number)");
    assert_eq!(ram.u64(DATA + 56), TOTAL, "lock adc");
    assert_eq!(ram.u32(DATA + 64), (TOTAL as u32).wrapping_neg(), "lock sbb");
    // OR sets bit t of every byte, AND clears bit 4 of byte t: disjoint, so any order of the
    // threads' updates ends with every OR and every AND applied.
    let or_all = (0..THREADS).fold(0u64, |m, t| m | 0x0101_0101_0101_0101 << t);
    let and_all = (0..THREADS).fold(!0u64, |m, t| m & !(0x10u64 << (8 * t)));
    assert_eq!(ram.u64(DATA + 72), (0xffff | or_all) & and_all, "lock or / lock and");
    assert_eq!(ram.u64(DATA + 80), 5, "lock neg (an even number)");
    eprintln!("unlocked add: {} of {TOTAL} increments survived", ram.u64(DATA + 88));
}

#[test]
fn cmpxchg_loops_count_exactly() {
    let ram = machine(|a| {
        let mut top = a.create_label();
        let mut retry64 = a.create_label();
        let mut retry16 = a.create_label();
        let mut done64 = a.create_label();
        let mut done16 = a.create_label();
        a.set_label(&mut top)?;
        a.mov(rax, qword_ptr(rsi))?;
        a.set_label(&mut retry64)?;
        a.lea(rdx, qword_ptr(rax + 1))?;
        a.lock().cmpxchg(qword_ptr(rsi), rdx)?;
        a.jz(done64)?;
        a.inc(r14)?;
        a.jmp(retry64)?;
        a.set_label(&mut done64)?;
        a.mov(ax, word_ptr(rsi + 8))?;
        a.set_label(&mut retry16)?;
        a.lea(edx, dword_ptr(rax + 1))?;
        a.lock().cmpxchg(word_ptr(rsi + 8), dx)?;
        a.jz(done16)?;
        a.inc(r14)?;
        a.jmp(retry16)?;
        a.set_label(&mut done16)?;
        a.dec(r15)?;
        a.jnz(top)
    });
    let regs = run_threads(&ram, |_| vec![(15, N), (14, 0)]);
    assert_eq!(ram.u64(DATA), TOTAL);
    assert_eq!(ram.u16(DATA + 8), TOTAL as u16);
    let retries: u64 = regs.iter().map(|g| g[14]).sum();
    eprintln!("cmpxchg: {retries} failed attempts retried");
}

#[test]
fn xchg_spinlock_protects_a_plain_counter() {
    let ram = machine(|a| {
        let mut top = a.create_label();
        let mut spin = a.create_label();
        let mut got = a.create_label();
        a.set_label(&mut top)?;
        a.mov(eax, 1)?;
        a.set_label(&mut spin)?;
        // XCHG with memory is locked without a prefix.
        a.xchg(dword_ptr(rsi), eax)?;
        a.test(eax, eax)?;
        a.jz(got)?;
        a.pause()?;
        a.jmp(spin)?;
        a.set_label(&mut got)?;
        // The critical section: a plain read-modify-write of two counters.
        a.mov(rax, qword_ptr(rsi + 8))?;
        a.inc(rax)?;
        a.mov(qword_ptr(rsi + 8), rax)?;
        a.add(dword_ptr(rsi + 16), 2)?;
        a.mov(dword_ptr(rsi), 0)?;
        a.dec(r15)?;
        a.jnz(top)
    });
    run_threads(&ram, |_| vec![(15, N / 2)]);
    assert_eq!(ram.u64(DATA + 8), TOTAL / 2);
    assert_eq!(ram.u32(DATA + 16) as u64, TOTAL);
    assert_eq!(ram.u32(DATA), 0);
}

#[test]
fn locked_bit_operations_lose_no_bits() {
    // Thread t owns bits t, t + 4, t + 8, ... of three shared bitmaps, so neighbouring bits of
    // one qword belong to different threads.
    const SET: u64 = DATA + 0x1000;
    const RESET: u64 = DATA + 0x20000;
    const FLIP: u64 = DATA + 0x40000;
    let bytes = (TOTAL / 8) as usize;
    let ram = machine(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.lock().bts(qword_ptr(rsi + (SET - DATA) as i32), rax)?;
        a.adc(r14, 0)?;
        a.lock().btr(dword_ptr(rsi + (RESET - DATA) as i32), eax)?;
        a.adc(r13, 0)?;
        a.lock().btc(qword_ptr(rsi + (FLIP - DATA) as i32), rax)?;
        a.adc(r12, 0)?;
        a.add(rax, THREADS as i32)?;
        a.dec(r15)?;
        a.jnz(top)
    });
    ram.write(RESET, &vec![0xff; bytes]);
    let regs = run_threads(&ram, |t| vec![(15, N), (reg::RAX, t as u64), (14, 0), (13, 0), (12, 0)]);
    assert!(ram.read(SET, bytes).iter().all(|&b| b == 0xff), "lock bts");
    assert!(ram.read(RESET, bytes).iter().all(|&b| b == 0), "lock btr");
    assert!(ram.read(FLIP, bytes).iter().all(|&b| b == 0xff), "lock btc");
    // CF: every bit was found clear by BTS and BTC, set by BTR.
    let sums = |r: usize| regs.iter().map(|g| g[r]).sum::<u64>();
    assert_eq!((sums(14), sums(13), sums(12)), (0, TOTAL, 0));
    // Nothing beyond the bitmaps was touched.
    assert_eq!(ram.read(SET + bytes as u64, 8), [0; 8]);
    assert_eq!(ram.read(RESET + bytes as u64, 8), [0; 8]);
}

#[test]
fn cmpxchg8b_and_cmpxchg16b_count_exactly() {
    let ram = machine(|a| {
        let mut top = a.create_label();
        let mut retry8 = a.create_label();
        let mut retry16 = a.create_label();
        a.set_label(&mut top)?;
        a.mov(eax, dword_ptr(rsi))?;
        a.mov(edx, dword_ptr(rsi + 4))?;
        a.set_label(&mut retry8)?;
        a.mov(ebx, eax)?;
        a.mov(ecx, edx)?;
        a.add(ebx, 1)?;
        a.adc(ecx, 0)?;
        a.lock().cmpxchg8b(qword_ptr(rsi))?;
        a.jnz(retry8)?;
        a.mov(rax, qword_ptr(rsi + 16))?;
        a.mov(rdx, qword_ptr(rsi + 24))?;
        a.set_label(&mut retry16)?;
        a.mov(rbx, rax)?;
        a.mov(rcx, rdx)?;
        a.add(rbx, 1)?;
        a.adc(rcx, 0)?;
        a.lock().cmpxchg16b(xmmword_ptr(rsi + 16))?;
        a.jnz(retry16)?;
        a.dec(r15)?;
        a.jnz(top)
    });
    // Both counters start just below a carry into their upper half.
    let start8 = 0xffff_f000u64;
    let start16 = (1u128 << 64) - 0x1000;
    ram.write_u64(DATA, start8);
    ram.write(DATA + 16, &start16.to_le_bytes());
    run_threads(&ram, |_| vec![(15, N)]);
    assert_eq!(ram.u64(DATA), start8 + TOTAL, "cmpxchg8b");
    let v16 = u128::from_le_bytes(ram.read(DATA + 16, 16).try_into().unwrap());
    assert_eq!(v16, start16 + TOTAL as u128, "cmpxchg16b");
}

#[test]
fn unaligned_and_page_crossing_locked_adds_count_exactly() {
    let ram = machine(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        // Across a 64-byte cache line (a split lock on the host).
        a.lock().add(dword_ptr(rsi + 0x3e), 1)?;
        // Misaligned inside one line.
        a.lock().add(qword_ptr(rsi + 0x81), 3)?;
        a.mov(ecx, 1)?;
        a.lock().xadd(word_ptr(rsi + 0xbf), cx)?;
        // Across a 4 KiB page: the serialised fallback.
        a.lock().add(qword_ptr(rsi + 0xffc), 1)?;
        a.lock().inc(dword_ptr(rsi + 0x1ffe))?;
        a.dec(r15)?;
        a.jnz(top)
    });
    // Host split locks cost microseconds each (the processor locks the bus; under a
    // hypervisor they may trap), so fewer iterations here.
    const ITERS: u64 = N / 8;
    const TOTAL: u64 = ITERS * THREADS as u64;
    run_threads(&ram, |_| vec![(15, ITERS)]);
    assert_eq!(ram.u32(DATA + 0x3e) as u64, TOTAL);
    assert_eq!(ram.u64(DATA + 0x81), 3 * TOTAL);
    assert_eq!(ram.u16(DATA + 0xbf), TOTAL as u16);
    assert_eq!(ram.u64(DATA + 0xffc), TOTAL);
    assert_eq!(ram.u32(DATA + 0x1ffe) as u64, TOTAL);
    // Neighbours untouched.
    assert_eq!(ram.read(DATA + 0x3d, 1)[0], 0);
    assert_eq!(ram.read(DATA + 0x42, 1)[0], 0);
    assert_eq!(ram.read(DATA + 0x80, 1)[0], 0);
    assert_eq!(ram.read(DATA + 0x89, 1)[0], 0);
}

/// Thread 0 keeps remapping a page (moving its PTE's frame by +4 KiB and back with locked
/// adds and subtracts) and clearing the entry's accessed and dirty bits; the other threads
/// keep writing to that page and to another page that evicts it from their TLBs, so their
/// walkers keep setting A and D in that same entry. An A/D update computed from a stale
/// entry would write the old frame back, and the frame would drift.
#[test]
fn accessed_dirty_updates_do_not_undo_pte_changes() {
    const TARGET: u64 = 0x10_0000;
    const PTE: u64 = PT + 8 * (TARGET >> 12);
    // Same TLB slot as TARGET (the soft TLB is direct-mapped), in an unused page (of the
    // 2 MiB pages above the data's).
    const EVICT: u64 = TARGET + (TLB_SIZE as u64) * 4096;
    const _: () = assert!(EVICT >= DATA + (2 << 20) && EVICT + 4096 <= RAM_SIZE as u64);
    const DONE: u64 = DATA + 0x100;
    let ram = machine(|a| {
        let mut walker = a.create_label();
        let mut top = a.create_label();
        let mut end = a.create_label();
        a.mov(r8, PTE)?;
        a.mov(r9, TARGET)?;
        a.mov(r10, DONE)?;
        a.mov(r11, EVICT)?;
        a.mov(r12, PD)?;
        a.mov(r13, PDPT)?;
        a.test(edi, edi)?;
        a.jnz(walker)?;
        a.set_label(&mut top)?;
        a.lock().add(qword_ptr(r8), 0x1000)?;
        a.lock().and(qword_ptr(r8), !0x60)?;
        // Clearing the upper levels' accessed bits makes the walkers update them too, which
        // widens the window between their read of the PTE and its update.
        a.lock().btr(qword_ptr(r12), 5)?;
        a.lock().btr(qword_ptr(r13), 5)?;
        a.lock().sub(qword_ptr(r8), 0x1000)?;
        a.lock().and(qword_ptr(r8), !0x60)?;
        a.dec(r15)?;
        a.jnz(top)?;
        a.mov(dword_ptr(r10), 1)?;
        a.jmp(end)?;
        a.set_label(&mut walker)?;
        a.mov(dword_ptr(r9 + 8), edi)?;
        a.mov(dword_ptr(r11 + 8), edi)?;
        a.inc(r14)?;
        a.cmp(dword_ptr(r10), 0)?;
        a.je(walker)?;
        a.set_label(&mut end)?;
        a.nop()
    });
    let regs = run_threads(&ram, |_| vec![(15, N), (14, 0)]);
    let walks: u64 = regs.iter().map(|g| g[14]).sum();
    let pte = ram.u64(PTE);
    eprintln!("A/D race: {walks} walker iterations, final PTE {pte:#x}");
    assert_eq!(pte & !0xfff, TARGET, "PTE frame drifted: {pte:#x}");
    // Present and writable, nothing else but A and D.
    assert_eq!(pte & 0xf9f, 0x3, "{pte:#x}");
}
