//! Getting a vCPU thread out of KVM_RUN: the kicker sets `kvm_run.immediate_exit` and sends
//! the thread a signal. The signal interrupts a KVM_RUN in progress (it returns EINTR); the
//! flag covers a kick that lands between the vCPU's last look at its work and its entry into
//! KVM_RUN, which then returns at once. Whoever kicks has published the reason (the INTR
//! line, the exit request) before, and the vCPU clears the flag before it looks again.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

/// The signal: the first real-time signal the C library leaves to programs.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the (empty) handler once per process, without SA_RESTART so KVM_RUN returns.
fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid value to fill in; the handler does nothing, so
        // it is async-signal-safe; sigaction only reads the struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// A handle other threads use to kick one vCPU thread out of KVM_RUN.
pub struct Kicker {
    thread: libc::pthread_t,
    immediate_exit: *const AtomicU8,
}

// SAFETY: `immediate_exit` points into the vCPU's kvm_run mapping, which outlives every
// kicker (the vCPU removes its kicker from the board before its fd closes; see
// `KvmVcpu::detach_kicker`); it is only accessed atomically. pthread_t is a plain id.
unsafe impl Send for Kicker {}
// SAFETY: as above.
unsafe impl Sync for Kicker {}

impl Kicker {
    /// A kicker for the calling thread, which runs the vCPU whose kvm_run's immediate_exit
    /// byte is at `immediate_exit`.
    pub fn for_current_thread(immediate_exit: *mut u8) -> Self {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        Kicker { thread, immediate_exit: immediate_exit as *const AtomicU8 }
    }

}

impl crate::pc::interrupts::Kick for Kicker {
    fn kick(&self) {
        // SAFETY: pthread_self/pthread_equal have no preconditions.
        if unsafe { libc::pthread_equal(libc::pthread_self(), self.thread) } != 0 {
            // The vCPU's own thread, handling an exit: it looks at its work before re-entering.
            return;
        }
        // SAFETY: see the Send impl: the byte is alive and only accessed atomically.
        unsafe { (*self.immediate_exit).store(1, Ordering::SeqCst) };
        // SAFETY: the thread is alive while its kicker is registered (see the Send impl).
        unsafe { libc::pthread_kill(self.thread, kick_signal()) };
    }
}

/// Clears the immediate-exit request after KVM_RUN returned (the vCPU then re-reads why).
pub fn clear(immediate_exit: *mut u8) {
    // SAFETY: the caller passes its own live kvm_run's byte; other threads only store to it
    // atomically.
    unsafe { (*(immediate_exit as *const AtomicU8)).store(0, Ordering::SeqCst) };
}

/// Kicks the calling thread out of KVM_RUN every `period` while it lives (the debugger's
/// round-robin time slices): a POSIX timer that signals this very thread.
pub struct SliceTimer {
    timer: libc::timer_t,
}

impl SliceTimer {
    pub fn start(period: std::time::Duration) -> Option<Self> {
        install_handler();
        // SAFETY: a zeroed sigevent is valid to fill in; SIGEV_THREAD_ID with the caller's own
        // thread id directs the signal at this thread; timer_create writes the new id into
        // `timer`, which is checked before use.
        unsafe {
            let mut ev: libc::sigevent = std::mem::zeroed();
            ev.sigev_notify = libc::SIGEV_THREAD_ID;
            ev.sigev_signo = kick_signal();
            ev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut timer) != 0 {
                return None;
            }
            let t = libc::timespec { tv_sec: period.as_secs() as _, tv_nsec: period.subsec_nanos() as _ };
            let spec = libc::itimerspec { it_interval: t, it_value: t };
            if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
                libc::timer_delete(timer);
                return None;
            }
            Some(SliceTimer { timer })
        }
    }
}

impl Drop for SliceTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created in `start` and is deleted once.
        unsafe { libc::timer_delete(self.timer) };
    }
}
