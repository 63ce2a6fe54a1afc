//! Saved state of the RTC/CMOS (snapshots and migration).
//!
//! The wall clock is kept as "wall time W at guest time T": the machine restores the guest
//! clock with the devices, so the guest's clock carries on from where it stood (it does not
//! jump to the host's time; the machine may call [`Rtc::set_wall_clock`] if it wants that).

use super::{Rtc, CMOS_SIZE, NS_PER_SEC, REG_C_AF, REG_C_IRQF, REG_C_PF, REG_C_UF, WALL_CLOCK_LIMIT};
use crate::{IrqLine, Nanos};
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// A wall-clock instant: seconds since the epoch plus nanoseconds into that second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallTime {
    pub secs: i64,
    pub nanos: u32,
}

impl WallTime {
    fn from_ns(t: i128) -> Self {
        WallTime { secs: t.div_euclid(NS_PER_SEC) as i64, nanos: t.rem_euclid(NS_PER_SEC) as u32 }
    }
    fn ns(self) -> i128 {
        self.secs as i128 * NS_PER_SEC + self.nanos as i128
    }
    fn check(self, field: &'static str) -> Result<(), RestoreError> {
        check_max(field, self.nanos, 999_999_999)?;
        check_max(field, self.secs.unsigned_abs(), 2 * WALL_CLOCK_LIMIT as u64)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtcState {
    /// All 128 bytes; the time registers hold their values from the last SET period (the
    /// running time comes from the wall clock).
    pub cmos: Vec<u8>,
    /// Index register (port 0x70 bits 6-0).
    pub index: u8,
    pub nmi_masked: bool,
    /// The wall clock read `wall_clock_at_base` at guest time `base_time`.
    pub wall_clock_at_base: WallTime,
    pub base_time: Nanos,
    /// The stopped wall clock while SET is on or the divider is in reset.
    pub frozen_wall_clock: Option<WallTime>,
    /// When the divider chain last started: the phase of the periodic interrupt.
    pub divider_start: Nanos,
    /// Last second accounted for by update-ended and alarm processing.
    pub last_second_processed: i64,
    /// Periodic interrupt periods accounted for since `divider_start`.
    pub periods_processed: u64,
    /// Register C's PF/AF/UF.
    pub flags: u8,
}

impl<I: IrqLine> Persist for Rtc<I> {
    const SECTION: &'static str = "rtc";
    const VERSION: u32 = 1;
    type State = RtcState;

    fn save(&self) -> RtcState {
        RtcState {
            cmos: self.cmos.to_vec(),
            index: self.index,
            nmi_masked: self.nmi_masked,
            wall_clock_at_base: WallTime::from_ns(self.base_ns),
            base_time: self.base_now,
            frozen_wall_clock: self.frozen_ns.map(WallTime::from_ns),
            divider_start: self.divider_start,
            last_second_processed: self.last_sec,
            periods_processed: self.last_period,
            flags: self.flags,
        }
    }

    fn restore(&mut self, s: RtcState) -> Result<(), RestoreError> {
        let cmos: [u8; CMOS_SIZE] = s
            .cmos
            .as_slice()
            .try_into()
            .map_err(|_| RestoreError::invalid("cmos", format!("{} bytes, the CMOS has {CMOS_SIZE}", s.cmos.len())))?;
        check_max("index", s.index, 0x7f)?;
        s.wall_clock_at_base.check("wall_clock_at_base")?;
        if let Some(f) = s.frozen_wall_clock {
            f.check("frozen_wall_clock")?;
        }
        if s.flags & !(REG_C_PF | REG_C_AF | REG_C_UF) != 0 {
            return Err(RestoreError::invalid("flags", format!("{:#04x} has bits other than PF, AF and UF", s.flags)));
        }
        self.cmos = cmos;
        self.index = s.index;
        self.nmi_masked = s.nmi_masked;
        self.base_ns = s.wall_clock_at_base.ns();
        self.base_now = s.base_time;
        self.frozen_ns = s.frozen_wall_clock.map(WallTime::ns);
        self.divider_start = s.divider_start;
        self.last_sec = s.last_second_processed;
        self.last_period = s.periods_processed;
        self.flags = s.flags;
        self.irq_level = self.reg_c() & REG_C_IRQF != 0;
        self.irq.set_level(self.irq_level);
        Ok(())
    }
}
