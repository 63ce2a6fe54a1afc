//! Guest time: nanoseconds since the machine was created, from the host's monotonic clock, so
//! the guest's timers run at real speed however fast the CPU emulation runs.

use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    /// While the machine is stopped (in the debugger), guest time stands still at this instant.
    paused_at: Option<Instant>,
}

impl Clock {
    pub fn new() -> Self {
        Clock { start: Instant::now(), paused_at: None }
    }

    #[inline]
    pub fn now(&self) -> u64 {
        match self.paused_at {
            Some(p) => p.saturating_duration_since(self.start).as_nanos() as u64,
            None => self.start.elapsed().as_nanos() as u64,
        }
    }

    /// Stops guest time (idempotent).
    pub fn pause(&mut self) {
        if self.paused_at.is_none() {
            self.paused_at = Some(Instant::now());
        }
    }

    /// Lets guest time run on from where it stopped (idempotent).
    pub fn resume(&mut self) {
        if let Some(p) = self.paused_at.take() {
            self.start += p.elapsed();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_time_stands_still() {
        let mut c = Clock::new();
        c.pause();
        let t = c.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now(), t);
        c.resume();
        assert!(c.now() >= t && c.now() < t + 15_000_000, "time resumes where it stopped");
    }
}
