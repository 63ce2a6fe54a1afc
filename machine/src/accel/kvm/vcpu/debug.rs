//! The debugger under KVM: breakpoints and watchpoints in the debug registers and single-step,
//! through KVM_SET_GUEST_DEBUG (KVM keeps them apart from the guest's own DR0-7).

use super::KvmVcpu;
use crate::accel::kvm::KvmError;
use crate::accel::VmExit;
use crate::pc::VcpuBus;
use ferrite_cpu::debug::{WatchKind, Watchpoint};
use ferrite_cpu::Cpu;
use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};

/// How long a debugger step may take (a step into HLT waits for an interrupt).
const STEP_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Breakpoints and watchpoints the debug registers hold.
const DEBUG_REGISTERS: usize = 4;

/// What one of DR0-3 does for the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DebugSlot {
    Break(u64),
    Watch(Watchpoint),
}

impl DebugSlot {
    /// DR7's R/W and LEN fields (bits 16 + 4n) and whether the range fits one register
    /// (1, 2, 4 or 8 bytes, aligned: SDM Vol. 3 18.2.4/18.2.5).
    fn dr7_fields(&self) -> Option<u64> {
        match *self {
            DebugSlot::Break(_) => Some(0),
            DebugSlot::Watch(w) => {
                let len = match w.len {
                    1 => 0b00,
                    2 => 0b01,
                    8 => 0b10,
                    4 => 0b11,
                    _ => return None,
                };
                if w.lin % w.len != 0 {
                    return None;
                }
                // Writes only, or reads and writes: x86 has no read-only data breakpoint.
                let rw = if w.kind == WatchKind::Write { 0b01 } else { 0b11 };
                Some(rw | len << 2)
            }
        }
    }

    fn addr(&self) -> u64 {
        match self {
            DebugSlot::Break(a) => *a,
            DebugSlot::Watch(w) => w.lin,
        }
    }
}

impl KvmVcpu {
    /// The debugger's breakpoints (as instruction breakpoints in the debug registers, which
    /// KVM keeps apart from the guest's own) or single-step, when they changed.
    pub(super) fn set_guest_debug(&mut self, cpu: &Cpu, single_step: bool, block_irqs: bool) -> Result<(), KvmError> {
        // Stepping goes without breakpoints: the one at RIP would trap before the step.
        let mut slots: Vec<DebugSlot> = Vec::new();
        if !single_step {
            slots.extend(cpu.breakpoints.iter().map(|&a| DebugSlot::Break(a)));
        }
        slots.extend(cpu.watchpoints().iter().map(|&w| DebugSlot::Watch(w)));
        slots.retain(|s| {
            let fits = s.dr7_fields().is_some();
            if !fits {
                eprintln!("ferrite: KVM: a watchpoint must be 1, 2, 4 or 8 aligned bytes for the debug registers: {s:?} is not armed");
            }
            fits
        });
        if slots.len() > DEBUG_REGISTERS {
            eprintln!("ferrite: KVM: only {DEBUG_REGISTERS} breakpoints and watchpoints fit the debug registers; the rest are not armed");
            slots.truncate(DEBUG_REGISTERS);
        }
        let wanted = (slots, single_step, block_irqs);
        if self.guest_debug == wanted {
            return Ok(());
        }
        let mut dbg = kvm_guest_debug::default();
        if !wanted.0.is_empty() || single_step {
            dbg.control = KVM_GUESTDBG_ENABLE;
        }
        if single_step {
            dbg.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if block_irqs {
            dbg.control |= kvm_bindings::KVM_GUESTDBG_BLOCKIRQ;
        }
        if !wanted.0.is_empty() {
            dbg.control |= kvm_bindings::KVM_GUESTDBG_USE_HW_BP;
            for (i, slot) in wanted.0.iter().enumerate() {
                dbg.arch.debugreg[i] = slot.addr();
                // Gn enables register n; R/W and LEN say what it catches.
                let fields = slot.dr7_fields().unwrap_or(0);
                dbg.arch.debugreg[7] |= 2 << (2 * i) | fields << (16 + 4 * i);
            }
        }
        self.fd.set_guest_debug(&dbg).map_err(|e| KvmError::ioctl("KVM_SET_GUEST_DEBUG", e))?;
        self.guest_debug = wanted;
        Ok(())
    }

    /// One instruction under KVM's single-step (the debugger's `stepi`); `irqs`: interrupts
    /// may be taken first.
    pub fn step(&mut self, cpu: &mut Cpu, bus: &mut VcpuBus, irqs: bool) -> VmExit {
        let exit = self.run_debug(cpu, bus, Some(STEP_LIMIT), (true, !irqs));
        // The single-step trap is the step's normal end.
        match exit {
            VmExit::Debug => VmExit::Kicked,
            other => other,
        }
    }
}
