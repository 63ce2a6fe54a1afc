//! `gdbstub::Target` for the machine: registers, memory, resume actions and breakpoints.
//! Each vCPU is a gdb thread (thread id = CPU index + 1).

use super::arch::{FerriteX86, X86RegId, X86Regs, REGS};
use super::{regs, Exec};
use crate::Machine;
use ferrite_cpu::{Watchpoint, WatchKind};
use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{SingleRegisterAccess, SingleRegisterAccessOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

/// errno for "bad address": gdb reports "Cannot access memory".
const EFAULT: u8 = 14;
/// errno for "invalid argument".
const EINVAL: u8 = 22;

/// The gdb thread of vCPU `index` (thread ids start at 1).
pub(crate) fn tid_of(index: usize) -> Tid {
    Tid::new(index + 1).expect("non-zero")
}

impl Machine {
    /// The vCPU index behind a gdb thread id.
    fn check_tid(&self, tid: Tid) -> TargetResult<usize, Self> {
        self.cpu_of(tid).ok_or(TargetError::Errno(EINVAL))
    }

    fn cpu_of(&self, tid: Tid) -> Option<usize> {
        (tid.get() <= self.vcpus.len()).then(|| tid.get() - 1)
    }

    /// The vCPU gdb's memory accesses and monitor commands go through (the last one that
    /// stopped or that gdb selected), with its bus.
    pub(crate) fn current_cpu(&mut self) -> (&mut ferrite_cpu::Cpu, &mut crate::pc::VcpuBus) {
        let i = self.debug.current.min(self.vcpus.len() - 1);
        let v = &mut self.vcpus[i];
        (&mut v.cpu, &mut v.bus)
    }

    /// Copies the debugger's breakpoint lists into the CPU.
    pub(crate) fn sync_breakpoints(&mut self) {
        let d = &self.debug;
        let list: Vec<u64> = d.sw_breakpoints.iter().chain(&d.hw_breakpoints).copied().collect();
        for cpu in self.vcpus.iter_mut().map(|v| &mut v.cpu) {
            cpu.set_breakpoints(list.clone());
        }
    }

    pub(crate) fn sync_watchpoints(&mut self) {
        let list: Vec<_> = self.debug.watchpoints.iter().map(|&(w, _)| w).collect();
        for cpu in self.vcpus.iter_mut().map(|v| &mut v.cpu) {
            cpu.set_watchpoints(list.clone());
        }
    }

    /// Forgets every breakpoint and watchpoint (detach, a lost client, a new session).
    pub(crate) fn clear_debug_points(&mut self) {
        self.debug.sw_breakpoints.clear();
        self.debug.hw_breakpoints.clear();
        self.debug.watchpoints.clear();
        self.sync_breakpoints();
        self.sync_watchpoints();
    }
}

impl Target for Machine {
    type Arch = FerriteX86;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    /// Acknowledged mode only: the connection layer answers a corrupted packet with a NAK
    /// and can restart the protocol engine without renegotiating anything.
    fn use_no_ack_mode(&self) -> bool {
        false
    }
}

impl MultiThreadBase for Machine {
    fn read_registers(&mut self, out: &mut X86Regs, tid: Tid) -> TargetResult<(), Self> {
        let cpu = self.check_tid(tid)?;
        *out = regs::read_all(&self.vcpus[cpu].cpu);
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86Regs, tid: Tid) -> TargetResult<(), Self> {
        let cpu = self.check_tid(tid)?;
        self.write_debug_regs(cpu, regs);
        Ok(())
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        // Memory is read through that vCPU's page tables.
        self.debug.current = self.check_tid(tid)?;
        match self.debug_read(start, data) {
            0 if !data.is_empty() => Err(TargetError::Errno(EFAULT)),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        self.debug.current = self.check_tid(tid)?;
        if self.debug_write(start, data) {
            Ok(())
        } else {
            Err(TargetError::Errno(EFAULT))
        }
    }

    fn list_active_threads(&mut self, register_thread: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for i in 0..self.vcpus.len() {
            register_thread(tid_of(i));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for Machine {
    fn read_register(&mut self, tid: Tid, reg: X86RegId, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let cpu = self.check_tid(tid)?;
        let d = REGS.get(reg.0).ok_or(TargetError::Errno(EINVAL))?;
        let bytes = regs::read(&self.vcpus[cpu].cpu, d.reg).to_le_bytes();
        let n = (d.bits / 8).min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn write_register(&mut self, tid: Tid, reg: X86RegId, val: &[u8]) -> TargetResult<(), Self> {
        let cpu = self.check_tid(tid)?;
        let d = REGS.get(reg.0).ok_or(TargetError::Errno(EINVAL))?;
        if val.len() != d.bits / 8 {
            return Err(TargetError::Errno(EINVAL));
        }
        let mut v = [0u8; 16];
        v[..val.len()].copy_from_slice(val);
        let mut regs = X86Regs::default();
        regs.set(reg.0, u128::from_le_bytes(v));
        self.write_debug_regs(cpu, &regs);
        Ok(())
    }
}

impl ThreadExtraInfo for Machine {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(cpu) = self.cpu_of(tid) else { return Ok(0) };
        let info = format!("CPU#{cpu} {}", super::monitor::mode_summary(&self.vcpus[cpu].cpu.state));
        let n = info.len().min(buf.len());
        buf[..n].copy_from_slice(&info.as_bytes()[..n]);
        Ok(n)
    }
}

impl MultiThreadResume for Machine {
    fn resume(&mut self) -> Result<(), Self::Error> {
        let d = &mut self.debug;
        d.exec = if d.resume_step { Exec::Step } else { Exec::Continue };
        d.step_over = !d.resume_step;
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.debug.resume_step = false;
        Ok(())
    }

    /// Signals are meaningless to a machine: `continue` with a signal just continues.
    fn set_resume_action_continue(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.cpu_of(tid).ok_or_else(|| format!("no such CPU: thread {}", tid.get()))?;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

/// gdb resumes only the threads it names (`vCont;s:1` without a default action): CPUs without
/// an action stay stopped: a step runs only the stepped CPU.
impl MultiThreadSchedulerLocking for Machine {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl MultiThreadSingleStep for Machine {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        let cpu = self.cpu_of(tid).ok_or_else(|| format!("no such CPU: thread {}", tid.get()))?;
        self.debug.current = cpu;
        self.debug.resume_step = true;
        Ok(())
    }
}

impl Breakpoints for Machine {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// Adds `addr` to a breakpoint list (gdb may insert the same address twice).
fn add_point(list: &mut Vec<u64>, addr: u64) {
    if !list.contains(&addr) {
        list.push(addr);
    }
}

fn remove_point(list: &mut Vec<u64>, addr: u64) -> bool {
    let before = list.len();
    list.retain(|&a| a != addr);
    list.len() != before
}

/// Software breakpoints never patch guest memory: the CPU checks the linear address of every
/// instruction against the list before executing it.
impl SwBreakpoint for Machine {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        add_point(&mut self.debug.sw_breakpoints, addr);
        self.sync_breakpoints();
        Ok(true)
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let found = remove_point(&mut self.debug.sw_breakpoints, addr);
        self.sync_breakpoints();
        Ok(found)
    }
}

/// Hardware breakpoints behave exactly like software ones (there is no limit of four).
impl HwBreakpoint for Machine {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        add_point(&mut self.debug.hw_breakpoints, addr);
        self.sync_breakpoints();
        Ok(true)
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let found = remove_point(&mut self.debug.hw_breakpoints, addr);
        self.sync_breakpoints();
        Ok(found)
    }
}

fn cpu_kind(kind: GdbWatchKind) -> WatchKind {
    match kind {
        GdbWatchKind::Write => WatchKind::Write,
        GdbWatchKind::Read => WatchKind::Read,
        GdbWatchKind::ReadWrite => WatchKind::Access,
    }
}

impl HwWatchpoint for Machine {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatchKind) -> TargetResult<bool, Self> {
        if len == 0 {
            return Ok(false);
        }
        let w = Watchpoint { lin: addr, len, kind: cpu_kind(kind) };
        if !self.debug.watchpoints.iter().any(|&(x, _)| x == w) {
            self.debug.watchpoints.push((w, kind));
        }
        self.sync_watchpoints();
        Ok(true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatchKind) -> TargetResult<bool, Self> {
        let w = Watchpoint { lin: addr, len, kind: cpu_kind(kind) };
        let before = self.debug.watchpoints.len();
        self.debug.watchpoints.retain(|&(x, _)| x != w);
        let found = self.debug.watchpoints.len() != before;
        self.sync_watchpoints();
        Ok(found)
    }
}
