//! Guest time: nanoseconds since the machine was created, from the host's monotonic clock, so
//! the guest's timers run at real speed however fast the CPU emulation runs. One clock is
//! shared by every vCPU thread and the timer thread, so the TSC and the LAPIC timers agree
//! across vCPUs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// `paused` value while time runs.
const RUNNING: u64 = u64::MAX;

#[derive(Debug)]
pub struct Clock {
    start: Instant,
    /// Guest time minus host time since `start` (ns): pauses and restored snapshots move it.
    offset: AtomicI64,
    /// While the machine is stopped (in the debugger), guest time stands still at this value.
    paused: AtomicU64,
}

impl Clock {
    pub fn new() -> Self {
        Clock { start: Instant::now(), offset: AtomicI64::new(0), paused: AtomicU64::new(RUNNING) }
    }

    fn host_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn running_now(&self) -> u64 {
        (self.host_ns() as i64).saturating_add(self.offset.load(Ordering::Acquire)).max(0) as u64
    }

    #[inline]
    pub fn now(&self) -> u64 {
        match self.paused.load(Ordering::Acquire) {
            RUNNING => self.running_now(),
            p => p,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire) != RUNNING
    }

    /// Stops guest time (idempotent; one controlling thread pauses and resumes).
    pub fn pause(&self) {
        if !self.is_paused() {
            self.paused.store(self.now(), Ordering::Release);
        }
    }

    /// Lets guest time run on from where it stopped (idempotent).
    pub fn resume(&self) {
        let p = self.paused.load(Ordering::Acquire);
        if p != RUNNING {
            self.offset.store((p as i64).saturating_sub(self.host_ns() as i64), Ordering::Release);
            self.paused.store(RUNNING, Ordering::Release);
        }
    }

    /// Sets guest time to `ns` (a restored snapshot's time), leaving it paused: the next
    /// [`Clock::resume`] runs on from there.
    pub fn set_paused_at(&self, ns: u64) {
        self.paused.store(ns.min(RUNNING - 1), Ordering::Release);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the Unix epoch on the host's wall clock (the RTC's starting time).
pub fn wall_clock_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The host's offset from UTC now, in seconds (east positive), from the C library's time zone.
pub fn local_utc_offset_secs() -> i64 {
    local_time(wall_clock_secs()).map_or(0, |tm| tm.tm_gmtoff as i64)
}

/// `secs` since the epoch broken down in the host's time zone.
fn local_time(secs: i64) -> Option<libc::tm> {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid for the call.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&t, &mut tm).is_null()).then_some(tm)
    }
}

/// `secs` since the epoch as local `(year, month, day, hour, minute, second)`, for the
/// dates snapshots are listed and named with.
pub fn local_date_time(secs: i64) -> (i32, u32, u32, u32, u32, u32) {
    match local_time(secs) {
        Some(tm) => (tm.tm_year + 1900, tm.tm_mon as u32 + 1, tm.tm_mday as u32, tm.tm_hour as u32, tm.tm_min as u32, tm.tm_sec as u32),
        None => (1970, 1, 1, 0, 0, 0),
    }
}

/// The RTC's time at power-on for `-rtc base=` (the RTC counts in the guest's time zone).
pub fn rtc_start_secs(base: crate::config::RtcBase) -> i64 {
    use crate::config::RtcBase;
    match base {
        RtcBase::Utc => wall_clock_secs(),
        RtcBase::LocalTime => wall_clock_secs() + local_utc_offset_secs(),
        RtcBase::Date(secs) => secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_bases() {
        use crate::config::RtcBase;
        assert_eq!(rtc_start_secs(RtcBase::Date(1_150_560_081)), 1_150_560_081);
        let utc = rtc_start_secs(RtcBase::Utc);
        assert!((utc - wall_clock_secs()).abs() <= 1);
        let local = rtc_start_secs(RtcBase::LocalTime);
        assert!((local - utc - local_utc_offset_secs()).abs() <= 1);
    }

    #[test]
    fn paused_time_stands_still() {
        let c = Clock::new();
        c.pause();
        let t = c.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now(), t);
        c.resume();
        assert!(c.now() >= t && c.now() < t + 15_000_000, "time resumes where it stopped");
        // A restored snapshot's time, far ahead of this clock's host time.
        c.set_paused_at(1 << 40);
        c.resume();
        assert!(c.now() >= 1 << 40 && c.now() < (1 << 40) + 15_000_000, "time runs on from a restored point");
    }
}
