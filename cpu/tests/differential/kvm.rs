//! The oracle: a KVM vCPU running the same memory image from the same registers.

use ferrite_cpu::state::{CpuState, Seg, Segment, TableReg};
use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Longest a single case may run on the oracle before it is interrupted (a guest that never
/// reaches HLT, e.g. a runaway string instruction in the host's emulator).
const RUN_LIMIT: Duration = Duration::from_secs(2);

/// Watchdog: the thread in KVM_RUN and the deadline (ms since `epoch`, 0 = idle).
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
static TARGET_THREAD: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: Once = Once::new();

extern "C" fn interrupt_kvm_run(_: libc::c_int) {}

fn epoch() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Starts the watchdog thread that kicks a KVM_RUN past its deadline with SIGUSR1 (the
/// ioctl then returns EINTR).
fn start_watchdog() {
    WATCHDOG.call_once(|| {
        // SAFETY: installs a handler that does nothing, for SIGUSR1, without SA_RESTART so
        // the interrupted ioctl returns EINTR; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = interrupt_kvm_run as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(50));
            let d = DEADLINE_MS.load(Ordering::SeqCst);
            if d != 0 && epoch().elapsed().as_millis() as u64 > d {
                // SAFETY: the target is the test thread blocked in KVM_RUN (it cleared the
                // deadline before exiting otherwise); SIGUSR1 is handled.
                unsafe { libc::pthread_kill(TARGET_THREAD.load(Ordering::SeqCst) as libc::pthread_t, libc::SIGUSR1) };
            }
        });
    });
}

/// How a run on the oracle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OracleExit {
    Halt,
    Shutdown,
    /// Anything else (I/O, MMIO, emulation failure): the case cannot be judged.
    Other,
}

pub struct Oracle {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: *mut u8,
    size: usize,
}

impl Oracle {
    /// `None` when /dev/kvm is missing or unusable.
    pub fn new(size: usize) -> Option<Self> {
        let kvm = Kvm::new().ok()?;
        let vm = kvm.create_vm().ok()?;
        // SAFETY: an anonymous private mapping of `size` bytes; checked for failure below and
        // unmapped in Drop.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return None;
        }
        let region = kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0,
            memory_size: size as u64,
            userspace_addr: mem as u64,
            flags: 0,
        };
        // SAFETY: the region describes the mapping above, which outlives the VM (dropped in
        // our Drop after the VM fd).
        unsafe { vm.set_user_memory_region(region) }.ok()?;
        let vcpu = vm.create_vcpu(0).ok()?;
        // Give the vCPU the host's CPUID so long mode, NX and friends are enabled.
        if let Ok(cpuid) = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES) {
            let _ = vcpu.set_cpuid2(&cpuid);
        }
        Some(Oracle { _kvm: kvm, _vm: vm, vcpu, mem: mem as *mut u8, size })
    }

    pub fn memory(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `size` bytes, lives as long as self, and the vCPU only runs
        // inside `run`, which holds &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.mem, self.size) }
    }

    /// Runs from `st` until HLT, shutdown or another exit; returns the final state.
    pub fn run(&mut self, st: &CpuState) -> (OracleExit, CpuState) {
        let mut sregs = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        to_sregs(st, &mut sregs);
        self.vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        self.vcpu.set_regs(&to_regs(st)).expect("KVM_SET_REGS");
        start_watchdog();
        // SAFETY: pthread_self has no preconditions.
        TARGET_THREAD.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
        DEADLINE_MS.store((epoch().elapsed() + RUN_LIMIT).as_millis() as u64, Ordering::SeqCst);
        let result = self.vcpu.run();
        DEADLINE_MS.store(0, Ordering::SeqCst);
        let exit = match result {
            Ok(VcpuExit::Hlt) => OracleExit::Halt,
            Ok(VcpuExit::Shutdown) => OracleExit::Shutdown,
            _ => OracleExit::Other,
        };
        let regs = self.vcpu.get_regs().expect("KVM_GET_REGS");
        let sregs = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        (exit, from_kvm(&regs, &sregs))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `new`; nothing references it afterwards
        // (the VM's fd is closed after this, and KVM holds no pages once the fd is gone).
        unsafe { libc::munmap(self.mem as *mut libc::c_void, self.size) };
    }
}

fn to_kvm_seg(s: &Segment) -> kvm_segment {
    let a = s.attrs;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        present: (a >> 7 & 1) as u8,
        dpl: (a >> 5 & 3) as u8,
        db: (a >> 14 & 1) as u8,
        s: (a >> 4 & 1) as u8,
        l: (a >> 13 & 1) as u8,
        g: (a >> 15 & 1) as u8,
        avl: (a >> 12 & 1) as u8,
        unusable: (a >> 16 & 1) as u8,
        padding: 0,
    }
}

fn from_kvm_seg(k: &kvm_segment) -> Segment {
    let attrs = k.type_ as u32
        | (k.s as u32) << 4
        | (k.dpl as u32) << 5
        | (k.present as u32) << 7
        | (k.avl as u32) << 12
        | (k.l as u32) << 13
        | (k.db as u32) << 14
        | (k.g as u32) << 15
        | (k.unusable as u32) << 16;
    Segment { selector: k.selector, base: k.base, limit: k.limit, attrs }
}

fn to_sregs(st: &CpuState, s: &mut kvm_sregs) {
    s.cs = to_kvm_seg(st.seg(Seg::Cs));
    s.ds = to_kvm_seg(st.seg(Seg::Ds));
    s.es = to_kvm_seg(st.seg(Seg::Es));
    s.fs = to_kvm_seg(st.seg(Seg::Fs));
    s.gs = to_kvm_seg(st.seg(Seg::Gs));
    s.ss = to_kvm_seg(st.seg(Seg::Ss));
    s.tr = to_kvm_seg(&st.tr);
    s.ldt = to_kvm_seg(&st.ldtr);
    s.gdt = kvm_dtable { base: st.gdtr.base, limit: st.gdtr.limit, padding: [0; 3] };
    s.idt = kvm_dtable { base: st.idtr.base, limit: st.idtr.limit, padding: [0; 3] };
    s.cr0 = st.cr0;
    s.cr2 = st.cr2;
    s.cr3 = st.cr3;
    s.cr4 = st.cr4;
    s.cr8 = st.cr8;
    s.efer = st.efer;
    s.interrupt_bitmap = [0; 4];
}

fn to_regs(st: &CpuState) -> kvm_regs {
    let g = &st.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: st.rip,
        rflags: st.rflags,
    }
}

fn from_kvm(r: &kvm_regs, s: &kvm_sregs) -> CpuState {
    let mut st = CpuState::reset();
    st.gpr = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
    ];
    st.rip = r.rip;
    st.rflags = r.rflags;
    st.seg[Seg::Es as usize] = from_kvm_seg(&s.es);
    st.seg[Seg::Cs as usize] = from_kvm_seg(&s.cs);
    st.seg[Seg::Ss as usize] = from_kvm_seg(&s.ss);
    st.seg[Seg::Ds as usize] = from_kvm_seg(&s.ds);
    st.seg[Seg::Fs as usize] = from_kvm_seg(&s.fs);
    st.seg[Seg::Gs as usize] = from_kvm_seg(&s.gs);
    st.tr = from_kvm_seg(&s.tr);
    st.ldtr = from_kvm_seg(&s.ldt);
    st.gdtr = TableReg { base: s.gdt.base, limit: s.gdt.limit };
    st.idtr = TableReg { base: s.idt.base, limit: s.idt.limit };
    st.cr0 = s.cr0;
    st.cr2 = s.cr2;
    st.cr3 = s.cr3;
    st.cr4 = s.cr4;
    st.cr8 = s.cr8;
    st.efer = s.efer;
    st
}
