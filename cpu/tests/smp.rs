//! What a multiprocessor machine asks of each CPU: exit requests from other threads, port
//! writes that end the block (so a reset or power-off takes effect at once), INIT and SIPI.

use ferrite_cpu::bus::{CpuBus, PhysPage};
use ferrite_cpu::state::{cr0, efer, reg, Seg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Attention, Cpu, RunExit, Topology};
use iced_x86::code_asm::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A flat bus whose port writes request an exit (as the machine's power-off, reset and
/// debug-exit ports do), with an interrupt controller that may always have a vector pending.
struct KickBus {
    flat: FlatBus,
    exit: Arc<Attention>,
    irq: Option<u8>,
    acks: usize,
}

impl CpuBus for KickBus {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        self.flat.phys_page(paddr)
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.flat.mmio_read(paddr, size)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.flat.mmio_write(paddr, size, value)
    }
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        self.flat.io_read(port, size)
    }
    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.flat.io_write(port, size, value);
        self.exit.kick.store(true, Ordering::Release);
    }
    fn interrupt_pending(&mut self) -> bool {
        self.irq.is_some()
    }
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.acks += 1;
        self.irq
    }
}

/// A real-mode CPU running 16-bit `code` at 0x1000 (CS = 0).
fn real_mode(code: impl FnOnce(&mut CodeAssembler)) -> (Cpu, KickBus) {
    let mut a = CodeAssembler::new(16).unwrap();
    code(&mut a);
    let mut flat = FlatBus::new(0x10_0000);
    flat.load(0x1000, &a.assemble(0x1000).unwrap());
    let mut cpu = Cpu::default();
    let mut st = cpu.state.clone();
    st.seg[Seg::Cs as usize].selector = 0;
    st.seg[Seg::Cs as usize].base = 0;
    st.rip = 0x1000;
    st.gpr[reg::RSP] = 0x8000;
    cpu.set_state(st);
    let exit = cpu.attention();
    (cpu, KickBus { flat, exit, irq: None, acks: 0 })
}

#[test]
fn exit_request_stops_before_the_next_block_and_stays_set() {
    let (mut cpu, mut bus) = real_mode(|a| {
        a.inc(ax).unwrap();
        a.hlt().unwrap();
    });
    cpu.attention().kick.store(true, Ordering::Relaxed);
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Kicked);
    assert_eq!(cpu.step(&mut bus), RunExit::Kicked);
    assert_eq!((cpu.instructions, cpu.state.rip), (0, 0x1000), "nothing ran");
    assert!(bus.exit.kick.load(Ordering::Relaxed), "the owner clears it, not the CPU");
    bus.exit.kick.store(false, Ordering::Relaxed);
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
    assert_eq!(cpu.state.gpr[reg::RAX], 1);
}

#[test]
fn a_port_write_that_requests_an_exit_stops_right_after_the_out() {
    let (mut cpu, mut bus) = real_mode(|a| {
        a.mov(al, 0x42).unwrap();
        a.out(0x80, al).unwrap();
        a.inc(bx).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Kicked);
    assert_eq!(bus.flat.io_writes, vec![(0x80, 1, 0x42)]);
    assert_eq!(cpu.state.rip, 0x1004, "RIP after the OUT");
    assert_eq!(cpu.state.gpr[reg::RBX], 0, "the next instruction did not run");
}

#[test]
fn init_keeps_fpu_msrs_and_cache_control_and_waits_for_sipi() {
    let (mut cpu, mut bus) = real_mode(|a| {
        a.inc(ax).unwrap();
        a.hlt().unwrap();
    });
    // A long-mode-ish state with x87/SSE contents and MSRs to keep.
    let mut st = cpu.state.clone();
    st.cr0 = cr0::PE | cr0::PG | cr0::CD | cr0::ET | cr0::NE;
    st.cr4 = 0x20;
    st.efer = efer::LME | efer::LMA | efer::NXE;
    st.gpr[reg::RBX] = 5;
    st.fpu.fcw = 0x027f;
    st.fpu.xmm[3] = 0x1234;
    st.fpu.mxcsr = 0x1fc0;
    st.xcr0 = 3;
    st.msr.lstar = 0xffff_8000_0000_1000;
    st.msr.mtrr_def_type = 0xc06;
    st.msr.apic_base = 0xfee0_0800;
    st.dr[7] = 0x401;
    cpu.set_state(st);
    cpu.inject_nmi();
    cpu.init();
    let st = &cpu.state;
    assert!(cpu.wait_for_sipi);
    assert_eq!((st.seg[Seg::Cs as usize].selector, st.seg[Seg::Cs as usize].base, st.rip), (0xf000, 0xffff_0000, 0xfff0));
    assert_eq!(st.cr0, cr0::ET | cr0::CD, "CD/NW kept, the rest cleared");
    assert_eq!((st.cr4, st.efer, st.dr[7], st.gpr[reg::RBX]), (0, 0, 0x400, 0));
    assert_eq!((st.fpu.fcw, st.fpu.xmm[3], st.fpu.mxcsr, st.xcr0), (0x027f, 0x1234, 0x1fc0, 3));
    assert_eq!((st.msr.lstar, st.msr.mtrr_def_type, st.msr.apic_base), (0xffff_8000_0000_1000, 0xc06, 0xfee0_0800));

    // Waiting: nothing runs, and neither interrupts nor NMIs are taken.
    bus.irq = Some(0x20);
    cpu.state.rflags |= ferrite_cpu::state::flags::IF;
    cpu.inject_nmi();
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
    assert_eq!(cpu.step(&mut bus), RunExit::Halted);
    assert_eq!((cpu.instructions, bus.acks), (0, 0));

    // SIPI vector 0x01: CS = 0x0100, base 0x1000, IP 0.
    bus.irq = None;
    cpu.sipi(0x01);
    assert!(!cpu.wait_for_sipi);
    let code = cpu.state.seg[Seg::Cs as usize];
    assert_eq!((code.selector, code.base, code.limit, cpu.state.rip), (0x0100, 0x1000, 0xffff, 0));
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
    assert_eq!((cpu.state.gpr[reg::RAX] & 0xffff, cpu.state.rip), (1, 2), "ran the code at 0x1000");

    // A SIPI to a running CPU is ignored.
    cpu.sipi(0x02);
    assert_eq!(cpu.state.seg[Seg::Cs as usize].base, 0x1000);
}

#[test]
fn cpuid_topology_falls_back_to_one_package_of_cpus_cores() {
    let mut cpu = Cpu::default();
    cpu.cpus = 4;
    assert_eq!(cpu.cpuid_topology(), Topology { sockets: 1, cores: 4, threads: 1 });
    cpu.topology = Topology { sockets: 2, cores: 1, threads: 2 };
    assert_eq!(cpu.cpuid_topology(), cpu.topology);
    // What the guest sees through the instruction: leaf 0xB subleaf 1 (EBX: per package).
    let (mut cpu, mut bus) = real_mode(|a| {
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    cpu.topology = Topology { sockets: 2, cores: 1, threads: 2 };
    cpu.apic_id = cpu.topology.apic_id(3);
    cpu.state.gpr[reg::RAX] = 0xb;
    cpu.state.gpr[reg::RCX] = 1;
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!((cpu.state.gpr[reg::RAX], cpu.state.gpr[reg::RBX], cpu.state.gpr[reg::RDX]), (1, 2, 3));
}
