//! The oracle: a KVM vCPU running the same memory image from the same registers.

use ferrite_cpu::state::CpuState;
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_userspace_memory_region};
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

    /// Like `run`, with DR0-DR3, DR6 and DR7 from `st` loaded first and read back after.
    #[allow(dead_code)] // used by differential_debug only
    pub fn run_with_debug_registers(&mut self, st: &CpuState) -> (OracleExit, CpuState) {
        self.vcpu.set_debug_regs(&ferrite_cpu::kvm::to_kvm_debugregs(st)).expect("KVM_SET_DEBUGREGS");
        let (exit, mut out) = self.run(st);
        let d = self.vcpu.get_debug_regs().expect("KVM_GET_DEBUGREGS");
        ferrite_cpu::kvm::from_kvm_debugregs(&d, &mut out);
        (exit, out)
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

fn to_sregs(st: &CpuState, s: &mut kvm_sregs) {
    ferrite_cpu::kvm::to_kvm_sregs(st, s);
}

fn to_regs(st: &CpuState) -> kvm_regs {
    ferrite_cpu::kvm::to_kvm_regs(st, st.rflags)
}

fn from_kvm(r: &kvm_regs, s: &kvm_sregs) -> CpuState {
    let mut st = CpuState::reset();
    ferrite_cpu::kvm::from_kvm_regs(r, &mut st);
    ferrite_cpu::kvm::from_kvm_sregs(s, &mut st);
    st
}
