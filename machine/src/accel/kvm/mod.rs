//! The KVM accelerator: guest code runs on the host CPU through /dev/kvm (rust-vmm's
//! kvm-ioctls), and every port I/O and MMIO exit goes to the same board the TCG vCPUs use.
//!
//! Interrupts come from ferrite's own PIC, IOAPIC and local APICs (QEMU's
//! `kernel-irqchip=off`, the default): the vCPU injects what its INTR line says when the
//! guest can take it (KVM_INTERRUPT, KVM_NMI), and INIT/SIPI set the state as on TCG. One
//! interrupt model for both accelerators is what lets a machine's interrupt state move
//! between them. With `kernel-irqchip=on` KVM's in-kernel controllers serve the guest
//! instead ([`irqchip`]): fewer exits, HLT and INIT/SIPI handled in the kernel; with `split`
//! KVM's local APICs and ferrite's PIC and IOAPIC.

mod cpuid;
mod irqchip;
mod kick;
mod memory;
mod vcpu;

pub use irqchip::KvmIrqchip;
pub use vcpu::KvmVcpu;

use crate::config::KernelIrqchip;
use ferrite_memory::GuestMemory;
use kvm_ioctls::{Kvm, VmFd};
use std::sync::Arc;

/// Guest-physical pages KVM needs for itself on Intel hosts (the real-mode TSS and the
/// identity page table of vCPUs without unrestricted guest), just below the BIOS ROM, where
/// nothing of the PC lives: as QEMU places them.
const TSS_ADDRESS: usize = 0xfeff_d000;
const IDENTITY_MAP_ADDRESS: u64 = 0xfeff_c000;

#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("KVM is not available: /dev/kvm does not exist (the host kernel lacks KVM or the device is not passed through)")]
    NoDevice,
    #[error("KVM is not available: no permission to open /dev/kvm (run as a member of the 'kvm' group)")]
    Permission,
    #[error("KVM is not available: opening /dev/kvm failed: {0}")]
    Open(std::io::Error),
    #[error("KVM is not available: the host's KVM lacks the {0} capability")]
    MissingCapability(&'static str),
    #[error("KVM cannot run the TSC at {saved_khz} kHz: this host's runs at {host_khz} kHz and its KVM cannot scale it (no TSC scaling); run the machine with -cpu ...,tsc-frequency={}000 from its start", .host_khz)]
    TscRate { saved_khz: u64, host_khz: u32 },
    #[error("KVM: {what} failed: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl KvmError {
    fn ioctl(what: &'static str, e: kvm_ioctls::Error) -> Self {
        KvmError::Ioctl { what, source: std::io::Error::from_raw_os_error(e.errno()) }
    }
}

/// One KVM virtual machine over the board's guest memory.
pub struct KvmVm {
    // Field order is drop order: the VM goes before the memory its slots point into.
    vm: VmFd,
    kvm: Kvm,
    slots: memory::Slots,
    mem: Arc<GuestMemory>,
    /// Which of KVM's in-kernel interrupt controllers serve the guest.
    pub irqchip: KernelIrqchip,
    /// Instructions the host's KVM cannot emulate run on ferrite's own CPU.
    pub tcg_fallback: bool,
}

/// The TSC rate of a new vCPU in kHz: the model's `tsc-frequency` if given (KVM must scale to
/// it), else the host's, which the model then records (snapshots carry it).
fn tsc_rate(fd: &kvm_ioctls::VcpuFd, cpu: &mut ferrite_cpu::Cpu) -> Result<Option<u32>, KvmError> {
    let Ok(host) = fd.get_tsc_khz() else { return Ok(None) };
    let m = &mut cpu.model;
    if !m.tsc_hz_explicit {
        m.tsc_hz = u64::from(host) * 1000;
        return Ok(Some(host));
    }
    let want = m.tsc_hz / 1000;
    if want != u64::from(host) && fd.set_tsc_khz(want as u32).is_err() {
        return Err(KvmError::TscRate { saved_khz: want, host_khz: host });
    }
    Ok(Some(want as u32))
}

/// The KVM device: /dev/kvm, or `FERRITE_KVM_DEVICE` (tests use it to play a host without KVM).
fn device() -> std::ffi::CString {
    let path = std::env::var_os("FERRITE_KVM_DEVICE").unwrap_or_else(|| "/dev/kvm".into());
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).unwrap_or_else(|_| c"/dev/kvm".into())
}

/// Opens /dev/kvm and checks what ferrite needs of it, naming the reason when it cannot be used.
fn open_kvm() -> Result<Kvm, KvmError> {
    let kvm = Kvm::new_with_path(device()).map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENXIO | libc::ENODEV => KvmError::NoDevice,
        libc::EACCES | libc::EPERM => KvmError::Permission,
        n => KvmError::Open(std::io::Error::from_raw_os_error(n)),
    })?;
    use kvm_ioctls::Cap;
    for (cap, name) in [
        (Cap::UserMemory, "USER_MEMORY"),
        (Cap::SetTssAddr, "SET_TSS_ADDR"),
        (Cap::ExtCpuid, "EXT_CPUID"),
        (Cap::ImmediateExit, "IMMEDIATE_EXIT"),
        (Cap::Xsave, "XSAVE"),
        (Cap::Xcrs, "XCRS"),
        (Cap::ReadonlyMem, "READONLY_MEM"),
        (Cap::SetGuestDebug, "SET_GUEST_DEBUG"),
        (Cap::Irqchip, "IRQCHIP"),
        (Cap::IrqRouting, "IRQ_ROUTING"),
        (Cap::SignalMsi, "SIGNAL_MSI"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(KvmError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

impl KvmVm {
    /// A VM whose memory slots map `mem`; `irqchip`: which of KVM's interrupt controllers
    /// serve it; `tcg_fallback`: ferrite's CPU runs what the host's KVM cannot emulate.
    pub fn new(mem: Arc<GuestMemory>, irqchip: KernelIrqchip, tcg_fallback: bool) -> Result<Arc<Self>, KvmError> {
        let kvm = open_kvm()?;
        let vm = kvm.create_vm().map_err(|e| KvmError::ioctl("KVM_CREATE_VM", e))?;
        vm.set_tss_address(TSS_ADDRESS).map_err(|e| KvmError::ioctl("KVM_SET_TSS_ADDR", e))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDRESS)
            .map_err(|e| KvmError::ioctl("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        let this = KvmVm { vm, kvm, slots: memory::Slots::new(), mem, irqchip, tcg_fallback };
        match irqchip {
            KernelIrqchip::On => irqchip::create(&this)?,
            KernelIrqchip::Split => irqchip::create_split(&this)?,
            KernelIrqchip::Off => {}
        }
        this.sync_memory()?;
        Ok(Arc::new(this))
    }

    /// Re-maps the memory slots if the layout (PAM) changed.
    pub fn sync_memory(&self) -> Result<(), KvmError> {
        self.slots.sync(&self.vm, &self.mem)
    }

    /// Starts KVM's dirty-page logging; [`KvmVm::collect_dirty_log`] then feeds the machine's
    /// dirty log.
    pub fn start_dirty_log(&self) -> Result<(), KvmError> {
        self.slots.start_dirty_log(&self.vm)
    }

    pub fn collect_dirty_log(&self) -> Result<(), KvmError> {
        self.slots.collect_dirty_log(&self.vm, &self.mem)
    }
}

/// Whether KVM can be used here, and why not (tests report the reason when they skip).
pub fn usable() -> Result<(), KvmError> {
    open_kvm().map(drop)
}
