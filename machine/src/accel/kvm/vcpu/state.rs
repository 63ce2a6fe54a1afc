//! Keeping KVM's vCPU state and the machine's `Cpu` equal: loaded into KVM when the machine
//! changed it, read back whenever `run` returns (one translation: `ferrite_cpu::kvm`).

use super::KvmVcpu;
use crate::accel::kvm::KvmError;
use ferrite_cpu::kvm as conv;
use ferrite_cpu::Cpu;
use kvm_bindings::Msrs;

/// IA32_APIC_BASE.BSP: KVM decides by it which vCPU starts and which waits for a SIPI.
const APIC_BASE_BSP: u64 = 1 << 8;

impl KvmVcpu {
    /// Loads KVM from the machine's copy of the state if the machine changed it.
    pub(super) fn load(&mut self, cpu: &Cpu) -> Result<(), KvmError> {
        let mut st = cpu.state.clone();
        st.rflags = cpu.rflags();
        if self.synced.as_ref() == Some(&st) {
            return Ok(());
        }
        let io = |what| move |e| KvmError::ioctl(what, e);
        let mut sregs = self.fd.get_sregs().map_err(io("KVM_GET_SREGS"))?;
        conv::to_kvm_sregs(&st, &mut sregs);
        // ferrite's CPU state starts every vCPU from the reset value; only the BSP keeps the bit.
        if !self.bsp {
            sregs.apic_base &= !APIC_BASE_BSP;
        }
        self.fd.set_sregs(&sregs).map_err(io("KVM_SET_SREGS"))?;
        self.fd.set_regs(&conv::to_kvm_regs(&st, st.rflags)).map_err(io("KVM_SET_REGS"))?;
        let mut xsave = self.fd.get_xsave().map_err(io("KVM_GET_XSAVE"))?;
        conv::to_kvm_xsave(&st, &mut xsave);
        // SAFETY: the buffer came from KVM_GET_XSAVE on this vCPU, so it has KVM's size.
        unsafe { self.fd.set_xsave(&xsave) }.map_err(io("KVM_SET_XSAVE"))?;
        let mut xcrs = self.fd.get_xcrs().map_err(io("KVM_GET_XCRS"))?;
        if xcrs.nr_xcrs > 0 {
            xcrs.xcrs[0].value = st.xcr0;
            self.fd.set_xcrs(&xcrs).map_err(io("KVM_SET_XCRS"))?;
        }
        self.fd.set_debug_regs(&conv::to_kvm_debugregs(&st)).map_err(io("KVM_SET_DEBUGREGS"))?;
        let entries: Vec<_> = self
            .msrs
            .iter()
            .filter_map(|&index| {
                conv::msr_value(&st, index).map(|data| kvm_bindings::kvm_msr_entry { index, data, ..Default::default() })
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| KvmError::ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        self.fd.set_msrs(&msrs).map_err(io("KVM_SET_MSRS"))?;
        self.synced = Some(st);
        self.load_events(cpu)
    }

    /// Loads the events between instructions when the machine's copy changed them (ferrite's
    /// CPU delivered an interrupt KVM held, or a snapshot was restored).
    fn load_events(&mut self, cpu: &Cpu) -> Result<(), KvmError> {
        let events = cpu.events();
        if self.synced_events == Some(events) {
            return Ok(());
        }
        let io = |what| move |e| KvmError::ioctl(what, e);
        let mut e = self.fd.get_vcpu_events().map_err(io("KVM_GET_VCPU_EVENTS"))?;
        conv::to_kvm_events(&events, &mut e);
        self.fd.set_vcpu_events(&e).map_err(io("KVM_SET_VCPU_EVENTS"))?;
        self.synced_events = Some(events);
        Ok(())
    }

    /// Reads KVM's state into the machine's copy.
    pub(super) fn store(&mut self, cpu: &mut Cpu) -> Result<(), KvmError> {
        let io = |what| move |e| KvmError::ioctl(what, e);
        let mut st = cpu.state.clone();
        conv::from_kvm_regs(&self.fd.get_regs().map_err(io("KVM_GET_REGS"))?, &mut st);
        conv::from_kvm_sregs(&self.fd.get_sregs().map_err(io("KVM_GET_SREGS"))?, &mut st);
        conv::from_kvm_xsave(&self.fd.get_xsave().map_err(io("KVM_GET_XSAVE"))?, &mut st);
        let xcrs = self.fd.get_xcrs().map_err(io("KVM_GET_XCRS"))?;
        if xcrs.nr_xcrs > 0 {
            st.xcr0 = xcrs.xcrs[0].value;
        }
        conv::from_kvm_debugregs(&self.fd.get_debug_regs().map_err(io("KVM_GET_DEBUGREGS"))?, &mut st);
        let entries: Vec<_> =
            self.msrs.iter().map(|&index| kvm_bindings::kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| KvmError::ioctl("KVM_GET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(io("KVM_GET_MSRS"))?;
        for e in &msrs.as_slice()[..n] {
            conv::set_msr_value(&mut st, e.index, e.data);
        }
        self.if_flag = st.rflags & ferrite_cpu::state::flags::IF != 0;
        if self.vm.irqchip.lapic_in_kernel() {
            use kvm_bindings::{KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_UNINITIALIZED};
            let mp = self.fd.get_mp_state().map_err(io("KVM_GET_MP_STATE"))?.mp_state;
            cpu.wait_for_sipi = mp == KVM_MP_STATE_UNINITIALIZED || mp == KVM_MP_STATE_INIT_RECEIVED;
            cpu.halted = mp == KVM_MP_STATE_HALTED;
        }
        if cpu.state != st {
            cpu.set_state(st.clone());
        }
        self.synced = Some(st);
        let events = conv::from_kvm_events(&self.fd.get_vcpu_events().map_err(io("KVM_GET_VCPU_EVENTS"))?);
        cpu.set_events(events);
        self.synced_events = Some(events);
        Ok(())
    }

    /// Reads KVM's time-stamp counter into the machine's copy (as an offset from guest time
    /// `now_ns`), for a snapshot: KVM's TSC runs on its own, at the host's rate.
    pub fn store_tsc(&mut self, cpu: &mut Cpu, now_ns: u64) -> Result<(), KvmError> {
        cpu.set_tsc_at(now_ns, self.tsc()?);
        if let Some(s) = &mut self.synced {
            s.msr.tsc_offset = cpu.state.msr.tsc_offset;
        }
        Ok(())
    }

    fn tsc(&self) -> Result<u64, KvmError> {
        let mut msrs = tsc_entry(0)?;
        self.fd.get_msrs(&mut msrs).map_err(|e| KvmError::ioctl("KVM_GET_MSRS", e))?;
        Ok(msrs.as_slice()[0].data)
    }

    /// After the machine's copy was replaced by a snapshot (which may come from ferrite's own
    /// CPU or another host's KVM): the TSC's rate must be this vCPU's, then everything, the
    /// TSC and the pending events included, is loaded into KVM.
    pub fn restored(&mut self, cpu: &mut Cpu, now_ns: u64) -> Result<(), KvmError> {
        let want = cpu.model.tsc_hz;
        let khz = self.fd.get_tsc_khz().map_err(|e| KvmError::ioctl("KVM_GET_TSC_KHZ", e))?;
        if u64::from(khz) * 1000 != want && self.fd.set_tsc_khz((want / 1000) as u32).is_err() {
            return Err(KvmError::TscRate { saved_khz: want / 1000, host_khz: khz });
        }
        self.synced = None;
        self.synced_events = None;
        self.load(cpu)?;
        let wanted = cpu.tsc_at(now_ns);
        self.fd.set_msrs(&tsc_entry(wanted)?).map_err(|e| KvmError::ioctl("KVM_SET_MSRS", e))?;
        // Some hosts' KVM (nested hypervisors without TSC offsetting) accept the write and go
        // on with the host's TSC: the guest's clock then jumps, which the user must hear.
        let got = self.tsc()?;
        let off = got.abs_diff(wanted) as f64 / want as f64;
        if off > 1.0 {
            eprintln!(
                "ferrite: warning: this host's KVM did not take the vCPU's TSC (it runs {off:.0} s {} the saved value, likely the host's own TSC: a nested hypervisor without TSC offsetting); the guest's clock jumps",
                if got > wanted { "ahead of" } else { "behind" }
            );
        }
        Ok(())
    }
}

/// IA32_TSC with `value`, for KVM_GET/SET_MSRS.
fn tsc_entry(value: u64) -> Result<Msrs, KvmError> {
    Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index: ferrite_cpu::msr::index::TSC, data: value, ..Default::default() }])
        .map_err(|_| KvmError::ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))
}
