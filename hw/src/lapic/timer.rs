//! APIC timer: one-shot, periodic and TSC-deadline modes (SDM Vol. 3A, 11.5.4).
//!
//! The counter decrements once every `divisor` nanoseconds (1 GHz bus, see
//! [`super::APIC_BUS_HZ`]); the current count is computed from `now` rather than stored.

use super::*;

/// Shortest interval between two periodic timer interrupts. Faster periodic timers still
/// count at full speed (the current count stays exact) but their interrupts coalesce, so a
/// guest programming a 1 ns period cannot make the machine's timer loop spin.
pub const MIN_PERIODIC_INTERVAL_NS: Nanos = 10_000;

#[derive(Clone, Debug, Default)]
pub(super) struct Timer {
    /// Initial count register.
    pub initial: u32,
    /// Divide configuration register (bits 0, 1, 3).
    pub dcr: u32,
    /// Time at which the count was `start_count` (load, divider or mode change).
    pub start: Nanos,
    /// Count at `start`.
    pub start_count: u64,
    /// Next count-down expiry not yet delivered (one-shot or periodic).
    pub next_fire: Option<Nanos>,
    /// IA32_TSC_DEADLINE as written (0 = disarmed).
    pub tsc_deadline: u64,
    /// The armed deadline converted to guest time.
    pub deadline_at: Option<Nanos>,
}

/// Divisor selected by the divide configuration register (SDM Figure 11-10): bits 3,1:0
/// value 0b111 divides by 1, otherwise by 2 << value.
pub fn divisor(dcr: u32) -> u64 {
    let v = (dcr & 3) | ((dcr >> 1) & 4);
    if v == 7 {
        1
    } else {
        2 << v
    }
}

impl Lapic {
    fn timer_mode(&self) -> u32 {
        self.lvt[LVT_TIMER] & LVT_TIMER_MODE_MASK
    }

    fn tsc_deadline_mode(&self) -> bool {
        self.timer_mode() == LVT_TIMER_TSC_DEADLINE
    }

    fn periodic(&self) -> bool {
        self.timer_mode() == LVT_TIMER_PERIODIC
    }

    /// Nanoseconds per full count-down (initial count x divisor).
    fn timer_period(&self) -> u64 {
        u64::from(self.timer.initial) * divisor(self.timer.dcr)
    }
    /// Current count register at `now` (0 when stopped, expired one-shot, or TSC-deadline).
    pub(super) fn timer_current(&self, now: Nanos) -> u32 {
        let initial = u64::from(self.timer.initial);
        if initial == 0 || self.tsc_deadline_mode() {
            return 0;
        }
        let ticks = now.saturating_sub(self.timer.start) / divisor(self.timer.dcr);
        let start_count = self.timer.start_count;
        if ticks < start_count {
            (start_count - ticks) as u32
        } else if self.periodic() {
            (initial - (ticks - start_count) % initial) as u32
        } else {
            0
        }
    }

    /// Restarts the count bookkeeping at `now` from the current count, before the divider
    /// or the timer mode changes.
    /// The new start is the tick boundary at which the current count was reached, so
    /// rebasing never shifts later expiries.
    pub(super) fn timer_rebase(&mut self, now: Nanos) {
        let div = divisor(self.timer.dcr);
        let ticks = now.saturating_sub(self.timer.start) / div;
        self.timer.start_count = u64::from(self.timer_current(now));
        self.timer.start = self.timer.start.saturating_add(ticks * div);
    }

    /// An expiry that passed but was not yet delivered by [`Self::update`].
    fn expiry_due(&self, now: Nanos) -> bool {
        self.timer.next_fire.is_some_and(|at| at <= now)
    }

    /// Initial count write: (re)starts the count-down; 0 stops it. Ignored in TSC-deadline
    /// mode (SDM 11.5.4.1).
    pub(super) fn write_initial_count(&mut self, value: u32, now: Nanos) {
        if self.tsc_deadline_mode() {
            return;
        }
        self.timer.initial = value;
        self.timer.start = now;
        self.timer.start_count = u64::from(value);
        self.timer.next_fire = (value != 0).then(|| now.saturating_add(self.timer_period()));
    }

    /// Divide configuration write: the count continues from its current value at the new
    /// rate.
    pub(super) fn write_divide(&mut self, value: u32, now: Nanos) {
        self.timer_rebase(now);
        self.timer.dcr = value & 0xB;
        if self.timer.next_fire.is_some() && !self.expiry_due(now) {
            let left = self.timer.start_count * divisor(self.timer.dcr);
            self.timer.next_fire = Some(self.timer.start.saturating_add(left));
        }
    }

    /// Called after the LVT timer entry changed from `old`.
    pub(super) fn timer_lvt_written(&mut self, old: u32, now: Nanos) {
        let old_deadline = old & LVT_TIMER_MODE_MASK == LVT_TIMER_TSC_DEADLINE;
        if old_deadline != self.tsc_deadline_mode() {
            // Switching into or out of TSC-deadline mode stops the timer and disarms the
            // deadline (SDM 11.5.4.1).
            self.timer = Timer {
                dcr: self.timer.dcr,
                ..Timer::default()
            };
            return;
        }
        if self.timer.initial == 0 || self.tsc_deadline_mode() || self.expiry_due(now) {
            return;
        }
        // One-shot <-> periodic: the count was rebased at `now` before the LVT changed.
        if self.timer.start_count == 0 && self.periodic() {
            self.timer.start_count = u64::from(self.timer.initial);
        }
        let left = self.timer.start_count * divisor(self.timer.dcr);
        self.timer.next_fire =
            (self.timer.start_count != 0).then(|| self.timer.start.saturating_add(left));
    }

    /// IA32_TSC_DEADLINE (MSR 0x6E0) read: the armed deadline, 0 when disarmed or expired,
    /// and 0 outside TSC-deadline mode.
    pub fn tsc_deadline(&self) -> u64 {
        if self.tsc_deadline_mode() {
            self.timer.tsc_deadline
        } else {
            0
        }
    }

    /// IA32_TSC_DEADLINE write. `tsc_now` is the guest TSC at `now`; the deadline fires at
    /// `now + (value - tsc_now) / tsc_hz` (immediately, at the next [`Self::update`], if it
    /// already passed). 0 disarms. Ignored outside TSC-deadline mode.
    pub fn write_tsc_deadline(&mut self, value: u64, now: Nanos, tsc_now: u64) {
        if !self.tsc_deadline_mode() {
            return;
        }
        self.timer.tsc_deadline = value;
        self.timer.deadline_at = if value == 0 {
            None
        } else {
            let delta = u128::from(value.saturating_sub(tsc_now));
            let hz = u128::from(self.tsc_hz);
            let ns = (delta * 1_000_000_000).div_ceil(hz);
            Some(now.saturating_add(u64::try_from(ns).unwrap_or(u64::MAX)))
        };
    }

    /// When [`Self::update`] next needs to run (absolute guest time; may be `<= now`), or
    /// `None` when no timer is armed.
    pub fn next_event(&self, _now: Nanos) -> Option<Nanos> {
        match (self.timer.next_fire, self.timer.deadline_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances the timer to `now`: an expiry that passed raises the LVT timer interrupt
    /// (unless masked). Missed periodic expiries coalesce into one interrupt.
    pub fn update(&mut self, now: Nanos) {
        if let Some(at) = self.timer.next_fire {
            if now >= at {
                self.timer.next_fire = if self.periodic() {
                    let period = self.timer_period().max(1);
                    let periods = ((now - at) / period).saturating_add(1);
                    let next = at.saturating_add(periods.saturating_mul(period));
                    Some(next.max(now.saturating_add(MIN_PERIODIC_INTERVAL_NS)))
                } else {
                    None
                };
                self.fire_lvt(LVT_TIMER);
            }
        }
        if let Some(at) = self.timer.deadline_at {
            if now >= at {
                self.timer.deadline_at = None;
                self.timer.tsc_deadline = 0;
                self.fire_lvt(LVT_TIMER);
            }
        }
    }
}
