//! One KVM vCPU: runs guest code in KVM_RUN, sends its port I/O and MMIO exits to the board,
//! injects what its interrupt lines say, and keeps ferrite's `Cpu` (the register file the
//! debugger, the monitor and snapshots read) equal to KVM's state whenever it returns.

mod debug;
mod state;

use super::kick::{self, Kicker};
use super::{KvmError, KvmVm};
use crate::accel::VmExit;
use crate::pc::VcpuBus;
use ferrite_cpu::bus::CpuBus;
use debug::DebugSlot;
use ferrite_cpu::debug::{WatchHit, WatchKind};
use ferrite_cpu::kvm as conv;
use ferrite_cpu::state::CpuState;
use ferrite_cpu::Cpu;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Instructions ferrite's CPU runs after the host's KVM failed to emulate one (with ferrite's
/// own local APICs; with KVM's, only that one).
const EMULATION_STRETCH: u64 = 4096;

/// KVM_INTERRUPT (`_IOW(KVMIO, 0x86, struct kvm_interrupt)`), which kvm-ioctls does not wrap:
/// queues an external interrupt vector when no in-kernel irqchip exists.
const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86;

pub struct KvmVcpu {
    // Field order is drop order: the vCPU's fd closes before the VM (and its memory) goes.
    fd: VcpuFd,
    vm: Arc<KvmVm>,
    /// The state KVM holds, as last loaded into it or read back from it. When the machine's
    /// copy differs (INIT, SIPI, the debugger wrote registers), KVM is loaded again.
    synced: Option<CpuState>,
    /// The same for the events between instructions (interrupt shadow, NMI, an interrupt KVM
    /// holds for delivery).
    synced_events: Option<ferrite_cpu::PendingEvents>,
    /// The MSRs of `ferrite_cpu::kvm::MSRS` this host's KVM knows.
    msrs: Vec<u32>,
    /// RFLAGS.IF as of the last exit (for "can a halted vCPU take its interrupt").
    if_flag: bool,
    /// What KVM_SET_GUEST_DEBUG was last given: what DR0-3 watch, single-step, interrupts
    /// blocked.
    guest_debug: (Vec<DebugSlot>, bool, bool),
    /// Instructions ferrite's interpreter ran because the host's KVM could not.
    emulated: u64,
    /// The bootstrap processor (vCPU 0).
    bsp: bool,
}

impl KvmVcpu {
    /// Creates vCPU `index` of `vm` for `cpu` (its CPUID model, APIC ID and topology);
    /// `host_cpuid`: `-cpu host`, the host's CPUID as KVM supports it.
    pub fn new(vm: Arc<KvmVm>, index: usize, cpu: &mut Cpu, host_cpuid: bool) -> Result<Self, KvmError> {
        let fd = vm.vm.create_vcpu(index as u64).map_err(|e| KvmError::ioctl("KVM_CREATE_VCPU", e))?;
        super::cpuid::narrow_model(&vm.kvm, cpu, vm.irqchip.lapic_in_kernel())?;
        let tsc_khz = super::tsc_rate(&fd, cpu)?;
        let cpuid = super::cpuid::table(&vm.kvm, cpu, tsc_khz, host_cpuid, vm.irqchip.lapic_in_kernel())?;
        fd.set_cpuid2(&cpuid).map_err(|e| KvmError::ioctl("KVM_SET_CPUID2", e))?;
        let known = vm.kvm.get_msr_index_list().map_err(|e| KvmError::ioctl("KVM_GET_MSR_INDEX_LIST", e))?;
        let msrs = conv::MSRS.iter().copied().filter(|m| known.as_slice().contains(m)).collect();
        Ok(KvmVcpu { fd, vm, synced: None, synced_events: None, msrs, if_flag: false, guest_debug: (Vec::new(), false, false), emulated: 0, bsp: index == 0 })
    }

    /// Runs until the vCPU halts, is kicked, shuts down or stops for the debugger.
    pub fn run(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus) -> VmExit {
        self.run_debug(cpu, bus, None, (false, false))
    }

    /// [`KvmVcpu::run`], returning `Kicked` after about `slice` at the latest (the debugger
    /// runs the vCPUs in turns on one thread).
    pub fn run_slice(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus, slice: std::time::Duration) -> VmExit {
        self.run_debug(cpu, bus, Some(slice), (false, false))
    }

    fn run_debug(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus, slice: Option<std::time::Duration>, step: (bool, bool)) -> VmExit {
        // With KVM's own local APICs, KVM itself holds an AP until its start-up IPI.
        if cpu.wait_for_sipi && !self.vm.irqchip.lapic_in_kernel() {
            return VmExit::Halted;
        }
        if let Err(e) = self.set_guest_debug(cpu, step.0, step.1) {
            return fail(&e.to_string());
        }
        let _timer = slice.and_then(kick::SliceTimer::start);
        let deadline = slice.map(|s| std::time::Instant::now() + s);
        if let Err(e) = self.load(cpu) {
            return fail(&format!("loading the vCPU state: {e}"));
        }
        cpu.halted = false;
        let run = self.fd.get_kvm_run();
        let immediate_exit = &mut run.immediate_exit as *mut u8;
        let link = &bus.board.irq.cpus[bus.index];
        link.set_kicker(Some(Box::new(Kicker::for_current_thread(immediate_exit))));
        let exit = self.run_loop(cpu, bus, immediate_exit, deadline);
        bus.board.irq.cpus[bus.index].set_kicker(None);
        kick::clear(immediate_exit);
        if let Err(e) = self.store(cpu) {
            return fail(&format!("reading the vCPU state back: {e}"));
        }
        if exit == VmExit::Halted {
            cpu.halted = true;
        }
        exit
    }

    fn run_loop(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus, immediate_exit: *mut u8, deadline: Option<std::time::Instant>) -> VmExit {
        let kvm_run: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        // SAFETY: kvm_run is this vCPU's mapping, alive as long as `self.fd`; after a port I/O
        // exit its `io` member is the one KVM filled. Only that header is read, not the data
        // bytes the exit's slice covers.
        let io_size = || unsafe { (*kvm_run).__bindgen_anon_1.io.size as usize }.clamp(1, 4);
        loop {
            if bus.exit_requested() || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return VmExit::Kicked;
            }
            if !self.vm.irqchip.pic_in_kernel() {
                self.offer_interrupt(bus);
            }
            let result = self.fd.run();
            kick::clear(immediate_exit);
            match result {
                Ok(VcpuExit::IoIn(port, data)) => {
                    let size = io_size();
                    for chunk in data.chunks_mut(size) {
                        let v = bus.io_read(port, size as u8);
                        chunk.copy_from_slice(&v.to_le_bytes()[..size]);
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    let size = io_size();
                    for chunk in data.chunks(size) {
                        let mut v = [0u8; 4];
                        v[..size].copy_from_slice(chunk);
                        bus.io_write(port, size as u8, u32::from_le_bytes(v));
                    }
                    // A PCI configuration write may have moved the PAM segments.
                    if let Err(e) = self.vm.sync_memory() {
                        return fail(&format!("updating the memory slots: {e}"));
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    let v = bus.mmio_read(addr, data.len() as u8);
                    let n = data.len().min(8);
                    data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    let mut v = [0u8; 8];
                    let n = data.len().min(8);
                    v[..n].copy_from_slice(&data[..n]);
                    bus.mmio_write(addr, n as u8, u64::from_le_bytes(v));
                }
                Ok(VcpuExit::Hlt) => return VmExit::Halted,
                Ok(VcpuExit::IrqWindowOpen) | Ok(VcpuExit::Intr) => {}
                // `split`: KVM's LAPIC took the EOI of a level-triggered vector of ferrite's
                // IOAPIC.
                Ok(VcpuExit::IoapicEoi(vector)) => bus.board.irq.ioapic_eoi(vector),
                Ok(VcpuExit::Shutdown) => return VmExit::Shutdown,
                Ok(VcpuExit::Debug(arch)) => {
                    // DR6 bits 0-3: which debug register matched (a data watchpoint's hit
                    // is reported like the interpreter's, after the access).
                    let hit = self.guest_debug.0.iter().enumerate().find_map(|(i, s)| match s {
                        DebugSlot::Watch(w) if arch.dr6 & (1 << i) != 0 => Some(*w),
                        _ => None,
                    });
                    if let Some(w) = hit {
                        cpu.note_watch_hit(WatchHit { watch: w, lin: w.lin, size: w.len as u8, write: w.kind != WatchKind::Read });
                    }
                    return VmExit::Debug;
                }
                Ok(VcpuExit::InternalError) => {
                    if self.suberror() != kvm_bindings::KVM_INTERNAL_ERROR_EMULATION || !self.vm.tcg_fallback {
                        return self.report_failure(cpu, bus, "KVM internal error");
                    }
                    if let Some(exit) = self.emulate_one(cpu, bus) {
                        return exit;
                    }
                }
                Ok(VcpuExit::FailEntry(reason, _)) => {
                    return self.report_failure(cpu, bus, &format!("KVM entry failure (hardware reason {reason:#x})"))
                }
                Ok(other) => {
                    let what = format!("unexpected KVM exit {other:?}");
                    return self.report_failure(cpu, bus, &what);
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return fail(&format!("KVM_RUN failed: {e}")),
            }
        }
    }

    /// Interrupt delivery from ferrite's controllers (under `split`, the PIC's through KVM's
    /// LAPIC, whose LINT0 KVM checks in `ready_for_interrupt_injection`): the vector is
    /// acknowledged (INTA) only when KVM can inject it now; otherwise KVM exits as soon as the
    /// guest can take one.
    fn offer_interrupt(&mut self, bus: &mut VcpuBus) {
        let run = self.fd.get_kvm_run();
        let can_inject = run.ready_for_interrupt_injection != 0 && run.if_flag != 0;
        let pending = bus.interrupt_pending();
        run.request_interrupt_window = u8::from(pending && !can_inject);
        if !(pending && can_inject) {
            return;
        }
        if let Some(vector) = bus.acknowledge_interrupt() {
            let irq = kvm_bindings::kvm_interrupt { irq: vector as u32 };
            // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the pointer, which lives for
            // the call; the fd is this vCPU's.
            let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_INTERRUPT as _, &irq) };
            if r < 0 {
                eprintln!("ferrite: KVM_INTERRUPT({vector:#x}) failed: {}", std::io::Error::last_os_error());
            }
        }
    }

    fn suberror(&mut self) -> u32 {
        // SAFETY: read after an INTERNAL_ERROR exit, for which `internal` is the union member
        // KVM filled.
        unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror }
    }

    /// The host's KVM could not emulate an instruction (it left the state before it): ferrite's
    /// own CPU runs from there on the same state and memory for a short stretch (code that
    /// needs one such instruction usually needs more: an SSE loop), then KVM goes on. `Some`
    /// when the vCPU cannot simply continue.
    fn emulate_one(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus) -> Option<VmExit> {
        if let Err(e) = self.store(cpu) {
            return Some(fail(&format!("reading the vCPU state back: {e}")));
        }
        // Ferrite's TSC goes on from KVM's (which keeps running meanwhile, a little ahead).
        if let Err(e) = self.store_tsc(cpu, bus.board.wiring.clock.now()) {
            return Some(fail(&format!("reading the vCPU's TSC: {e}")));
        }
        if self.emulated == 0 {
            let st = &cpu.state;
            eprintln!(
                "ferrite: note: the host's KVM cannot emulate the instruction at {:#x}; ferrite's interpreter runs such instructions for it",
                st.seg[ferrite_cpu::state::Seg::Cs as usize].base.wrapping_add(st.rip)
            );
        }
        self.emulated += 1;
        let exit = crate::accel::tcg::exit(if self.vm.irqchip.lapic_in_kernel() {
            // KVM's local APIC is out of ferrite's CPU's reach (its MMIO page would reach
            // ferrite's idle one) and only KVM may deliver interrupts: the one instruction.
            cpu.step_no_irq(bus)
        } else {
            cpu.run(bus, EMULATION_STRETCH)
        });
        if let Err(e) = self.load(cpu) {
            return Some(fail(&format!("loading the vCPU state: {e}")));
        }
        match exit {
            VmExit::Kicked => None,
            other => Some(other),
        }
    }

    /// A KVM exit the machine cannot go on from: says what happened, where, and on which
    /// instruction bytes (an emulation failure of the host's KVM is not a guest hang).
    fn report_failure(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus, what: &str) -> VmExit {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason (INTERNAL_ERROR/FAIL_ENTRY/other) makes `internal` the
        // union member KVM filled or leaves plain integers there; reading them is harmless.
        let (suberror, data) = unsafe {
            let i = run.__bindgen_anon_1.internal;
            (i.suberror, i.data[..(i.ndata as usize).min(16)].to_vec())
        };
        let _ = self.store(cpu);
        let st = &cpu.state;
        let linear = st.seg[ferrite_cpu::state::Seg::Cs as usize].base.wrapping_add(st.rip);
        let bytes = self
            .fd
            .translate_gva(linear)
            .ok()
            .filter(|t| t.valid != 0)
            .and_then(|t| {
                let mut b = [0u8; 15];
                bus.board.mem.read(t.physical_address, &mut b).ok().map(|_| b)
            })
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unreadable".into());
        let kind = match suberror {
            kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => " (emulation failure: the host's KVM could not emulate this instruction)",
            kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => " (exception while delivering an exception)",
            kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => " (event delivery failed)",
            _ => "",
        };
        fail(&format!(
            "vCPU {}: {what}, suberror {suberror}{kind}; data {data:x?}\n  at RIP {:#x} (CS base {:#x}, linear {linear:#x}), CR0 {:#x}, EFER {:#x}; instruction bytes: {bytes}",
            bus.index,
            st.rip,
            st.seg[ferrite_cpu::state::Seg::Cs as usize].base,
            st.cr0,
            st.efer
        ))
    }

    /// Queues a non-maskable interrupt (taken at the next instruction boundary).
    pub fn inject_nmi(&mut self) {
        if let Err(e) = self.fd.nmi() {
            eprintln!("ferrite: KVM_NMI failed: {e}");
        }
    }

    pub fn vm(&self) -> &Arc<KvmVm> {
        &self.vm
    }

    /// Whether KVM's in-kernel local APIC serves this vCPU (INIT, SIPI and HLT stay in KVM).
    pub fn lapic_in_kernel(&self) -> bool {
        self.vm.irqchip.lapic_in_kernel()
    }

    /// Whether a halted vCPU would take a maskable interrupt now.
    pub fn interrupts_enabled(&self) -> bool {
        self.if_flag
    }
}

fn fail(msg: &str) -> VmExit {
    eprintln!("ferrite: {msg}");
    VmExit::Failed
}
