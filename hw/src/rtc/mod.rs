//! Motorola MC146818 real-time clock with 128 bytes of CMOS RAM, as in every PC.
//!
//! References: MC146818A datasheet: "Address map", "Time, calendar and alarm locations",
//! "Register A-D", "Update cycle", "Interrupts" (periodic, alarm, update-ended) and table 5
//! (periodic rates); Dallas DS12887 datasheet for the PC's divider values (DV2-0 = 010 runs
//! the clock, 11x holds it in reset). The century byte at 0x32 and the memory/boot fields
//! (see [`cmos`]) are IBM PC/AT and SeaBIOS conventions.
//!
//! Wall-clock time is the host's value given at construction (seconds since the Unix epoch)
//! advanced by the `now` passed to every call, so the guest's clock runs with the machine's.
//! Interrupt flags are derived lazily: the machine calls [`Rtc::update`] at the time
//! [`Rtc::next_event`] names, and register reads bring the flags up to date themselves.
//!
//! Ports: index 0x70 (offset 0; bit 7 masks NMI), data 0x71 (offset 1).

mod clock;
pub mod cmos;

use crate::{IrqLine, Nanos};
use clock::{decode, decode_hour, encode, encode_hour, fields_from_secs, secs_from_fields, Fields};

/// Index port.
pub const RTC_INDEX_PORT: u16 = 0x70;
/// Data port.
pub const RTC_DATA_PORT: u16 = 0x71;
/// Offset of the index register from 0x70.
pub const OFFSET_INDEX: u16 = 0;
/// Offset of the data register from 0x70.
pub const OFFSET_DATA: u16 = 1;
/// Index port bit 7: NMI disabled.
pub const INDEX_NMI_MASK: u8 = 0x80;
/// Bytes of CMOS RAM (clock registers included).
pub const CMOS_SIZE: usize = 128;

/// Clock and control registers ("Address map").
pub const REG_SECONDS: u8 = 0x00;
pub const REG_SECONDS_ALARM: u8 = 0x01;
pub const REG_MINUTES: u8 = 0x02;
pub const REG_MINUTES_ALARM: u8 = 0x03;
pub const REG_HOURS: u8 = 0x04;
pub const REG_HOURS_ALARM: u8 = 0x05;
pub const REG_DAY_OF_WEEK: u8 = 0x06;
pub const REG_DAY_OF_MONTH: u8 = 0x07;
pub const REG_MONTH: u8 = 0x08;
pub const REG_YEAR: u8 = 0x09;
pub const REG_A: u8 = 0x0a;
pub const REG_B: u8 = 0x0b;
pub const REG_C: u8 = 0x0c;
pub const REG_D: u8 = 0x0d;
/// Century, BCD or binary like the other time registers (PC/AT; ACPI FADT CENTURY field).
pub const REG_CENTURY: u8 = 0x32;

/// Register A bit 7: update in progress (read only).
pub const REG_A_UIP: u8 = 0x80;
/// Register A bits 6-4: divider control.
pub const REG_A_DV_MASK: u8 = 0x70;
/// DV = 010: 32.768 kHz time base, clock running.
pub const REG_A_DV_RUN: u8 = 0x20;
/// Register A bits 3-0: periodic rate select.
pub const REG_A_RS_MASK: u8 = 0x0f;
/// Register B bit 7: SET, updates inhibited so the time can be written.
pub const REG_B_SET: u8 = 0x80;
/// Register B bit 6: periodic interrupt enable.
pub const REG_B_PIE: u8 = 0x40;
/// Register B bit 5: alarm interrupt enable.
pub const REG_B_AIE: u8 = 0x20;
/// Register B bit 4: update-ended interrupt enable.
pub const REG_B_UIE: u8 = 0x10;
/// Register B bit 2: data mode, 1 = binary, 0 = BCD.
pub const REG_B_DM_BINARY: u8 = 0x04;
/// Register B bit 1: 1 = 24-hour mode, 0 = 12-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register C bit 7: IRQF, an enabled flag is set (the IRQ pin is asserted).
pub const REG_C_IRQF: u8 = 0x80;
/// Register C bit 6: periodic interrupt flag.
pub const REG_C_PF: u8 = 0x40;
/// Register C bit 5: alarm flag.
pub const REG_C_AF: u8 = 0x20;
/// Register C bit 4: update-ended flag.
pub const REG_C_UF: u8 = 0x10;
/// Register D bit 7: valid RAM and time.
pub const REG_D_VRT: u8 = 0x80;
/// An alarm register with its two top bits set matches any value ("don't care").
const ALARM_DONT_CARE: u8 = 0xc0;

/// Update-in-progress lead time: 244 us before the update plus the 1984 us update cycle.
const UIP_NS: i128 = 244_000 + 1_984_000;
const NS_PER_SEC: i128 = 1_000_000_000;
/// Time-base frequency of the divider chain.
const TIME_BASE_HZ: u128 = 32_768;
/// Host wall-clock values are clamped to +/- this many seconds (about 34,000 years).
const WALL_CLOCK_LIMIT: i64 = 1 << 40;

/// The MC146818 RTC/CMOS.
#[derive(Clone, Debug)]
pub struct Rtc<I: IrqLine> {
    cmos: [u8; CMOS_SIZE],
    index: u8,
    nmi_masked: bool,
    /// Wall-clock nanoseconds since the epoch at machine time `base_now`.
    base_ns: i128,
    base_now: Nanos,
    /// The wall clock while updates are inhibited (SET) or the divider is held in reset.
    frozen_ns: Option<i128>,
    /// When the divider chain last started, the phase of the periodic interrupt.
    divider_start: Nanos,
    /// Second (since the epoch) last accounted for by update-ended/alarm processing.
    last_sec: i64,
    /// Periodic interrupt periods accounted for since `divider_start`.
    last_period: u64,
    /// PF/AF/UF.
    flags: u8,
    irq: I,
    irq_level: bool,
}

impl<I: IrqLine> Rtc<I> {
    /// An RTC whose clock reads `wall_clock_secs` (seconds since the Unix epoch, UTC or
    /// local as the guest expects) at machine time `now`. Starts in BCD, 24-hour mode, with
    /// the divider running and no interrupts enabled.
    pub fn new(irq: I, wall_clock_secs: i64, now: Nanos) -> Self {
        let mut cmos = [0u8; CMOS_SIZE];
        cmos[REG_A as usize] = REG_A_DV_RUN | 0x06;
        cmos[REG_B as usize] = REG_B_24H;
        cmos[REG_D as usize] = REG_D_VRT;
        let mut rtc = Rtc {
            cmos,
            index: 0,
            nmi_masked: false,
            base_ns: 0,
            base_now: now,
            frozen_ns: None,
            divider_start: now,
            last_sec: 0,
            last_period: 0,
            flags: 0,
            irq,
            irq_level: false,
        };
        rtc.set_wall_clock(wall_clock_secs, now);
        rtc
    }

    /// The IRQ8 line.
    pub fn irq(&self) -> &I {
        &self.irq
    }

    /// Sets the clock to `wall_clock_secs` at machine time `now`.
    pub fn set_wall_clock(&mut self, wall_clock_secs: i64, now: Nanos) {
        let secs = wall_clock_secs.clamp(-WALL_CLOCK_LIMIT, WALL_CLOCK_LIMIT);
        self.set_time_ns(secs as i128 * NS_PER_SEC, now);
    }

    /// The guest's wall clock at `now`, in seconds since the epoch.
    pub fn wall_clock(&self, now: Nanos) -> i64 {
        self.time_ns(now).div_euclid(NS_PER_SEC) as i64
    }

    /// True when the guest has masked NMI through bit 7 of port 0x70.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// Raw CMOS RAM, no side effects (for the machine's own fields, see [`cmos`]).
    pub fn cmos_read(&self, index: u8) -> u8 {
        self.cmos[(index & 0x7f) as usize]
    }

    /// Raw CMOS RAM write, no side effects.
    pub fn cmos_write(&mut self, index: u8, value: u8) {
        self.cmos[(index & 0x7f) as usize] = value;
    }

    /// Reads port 0x70 + `offset`. The index register is write-only and reads as 0xff.
    pub fn read(&mut self, offset: u16, now: Nanos) -> u8 {
        if offset & 1 == 0 {
            return 0xff;
        }
        self.update(now);
        let index = self.index;
        match index {
            REG_A => self.cmos[REG_A as usize] | if self.uip(now) { REG_A_UIP } else { 0 },
            REG_C => {
                let value = self.reg_c();
                self.flags = 0;
                self.sync_irq();
                value
            }
            REG_D => REG_D_VRT,
            _ if is_time_register(index) && !self.set_mode() => {
                let image = self.image(self.time_ns(now));
                image[index as usize]
            }
            _ => self.cmos[index as usize],
        }
    }

    /// Writes port 0x70 + `offset`: the index (with the NMI mask in bit 7) or the data.
    pub fn write(&mut self, offset: u16, value: u8, now: Nanos) {
        if offset & 1 == 0 {
            self.index = value & 0x7f;
            self.nmi_masked = value & INDEX_NMI_MASK != 0;
            return;
        }
        self.update(now);
        let index = self.index;
        match index {
            REG_A => self.write_a(value, now),
            REG_B => self.write_b(value, now),
            REG_C | REG_D => {}
            _ if is_time_register(index) && !self.set_mode() => {
                // Without SET the chip takes the write and keeps counting from it.
                let t = self.time_ns(now);
                let mut image = self.image(t);
                image[index as usize] = value;
                let secs = self.parse(&image);
                self.set_time_ns(secs as i128 * NS_PER_SEC + t.rem_euclid(NS_PER_SEC), now);
            }
            _ => self.cmos[index as usize] = value,
        }
        self.sync_irq();
    }

    /// When the machine should next call [`Rtc::update`]: the first periodic, update-ended or
    /// alarm point not yet processed (possibly at or before `now`: update right away), or
    /// `None` when no enabled interrupt can assert IRQ8 (including while IRQF is already set:
    /// the line stays high until register C is read).
    pub fn next_event(&self, _now: Nanos) -> Option<Nanos> {
        if self.irq_level {
            return None;
        }
        let b = self.cmos[REG_B as usize];
        let mut next: Option<Nanos> = None;
        if b & REG_B_PIE != 0 {
            if let Some(period) = self.period_ticks() {
                let tick = (self.last_period as u128 + 1) * period as u128;
                let ns = (tick * NS_PER_SEC as u128).div_ceil(TIME_BASE_HZ);
                let due =
                    u64::try_from(ns).map_or(u64::MAX, |n| self.divider_start.saturating_add(n));
                next = Some(due);
            }
        }
        if b & (REG_B_UIE | REG_B_AIE) != 0 && self.frozen_ns.is_none() {
            let target = (self.last_sec as i128 + 1) * NS_PER_SEC;
            let due = (self.base_now as i128 + target - self.base_ns).clamp(0, u64::MAX as i128);
            let due = due as u64;
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    /// Sets the periodic, update-ended and alarm flags for everything up to `now` and drives
    /// IRQ8 from IRQF.
    pub fn update(&mut self, now: Nanos) {
        if let Some(period) = self.period_ticks() {
            let index = self.period_index(now, period);
            if index > self.last_period {
                self.flags |= REG_C_PF;
            }
            self.last_period = index;
        }
        if self.frozen_ns.is_none() {
            let t = self.time_ns(now);
            let sec = t.div_euclid(NS_PER_SEC) as i64;
            if sec > self.last_sec {
                self.flags |= REG_C_UF;
                // Alarms depend on the time of day only: a day's worth of seconds covers all.
                let first = (self.last_sec + 1).max(sec - 86_399);
                if (first..=sec).any(|s| self.alarm_matches(s)) {
                    self.flags |= REG_C_AF;
                }
            }
            self.last_sec = sec;
        }
        self.sync_irq();
    }

    fn reg_c(&self) -> u8 {
        let mut value = self.flags;
        if self.flags & self.cmos[REG_B as usize] & (REG_C_PF | REG_C_AF | REG_C_UF) != 0 {
            value |= REG_C_IRQF;
        }
        value
    }

    fn sync_irq(&mut self) {
        let level = self.reg_c() & REG_C_IRQF != 0;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn set_mode(&self) -> bool {
        self.cmos[REG_B as usize] & REG_B_SET != 0
    }

    fn divider_running(&self) -> bool {
        self.cmos[REG_A as usize] & REG_A_DV_MASK == REG_A_DV_RUN
    }

    fn binary(&self) -> bool {
        self.cmos[REG_B as usize] & REG_B_DM_BINARY != 0
    }

    fn h24(&self) -> bool {
        self.cmos[REG_B as usize] & REG_B_24H != 0
    }

    fn time_ns(&self, now: Nanos) -> i128 {
        self.frozen_ns
            .unwrap_or(self.base_ns + (now as i128 - self.base_now as i128))
    }

    /// Moves the clock to `t` at `now`, without crediting update/alarm flags for the jump.
    fn set_time_ns(&mut self, t: i128, now: Nanos) {
        if self.frozen_ns.is_some() {
            self.frozen_ns = Some(t);
        } else {
            self.base_ns = t;
            self.base_now = now;
        }
        self.last_sec = t.div_euclid(NS_PER_SEC) as i64;
    }

    fn uip(&self, now: Nanos) -> bool {
        self.frozen_ns.is_none() && self.time_ns(now).rem_euclid(NS_PER_SEC) >= NS_PER_SEC - UIP_NS
    }

    /// Divider ticks (32.768 kHz) per periodic interrupt, from RS3-0 (datasheet table 5).
    fn period_ticks(&self) -> Option<u64> {
        if !self.divider_running() {
            return None;
        }
        match self.cmos[REG_A as usize] & REG_A_RS_MASK {
            0 => None,
            // RS = 1 and 2 repeat the 256 Hz and 128 Hz taps with a 32.768 kHz base.
            1 => Some(1 << 7),
            2 => Some(1 << 8),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn period_index(&self, now: Nanos, period: u64) -> u64 {
        let ns = now.saturating_sub(self.divider_start) as u128;
        let ticks = ns * TIME_BASE_HZ / NS_PER_SEC as u128;
        (ticks / period as u128) as u64
    }

    fn write_a(&mut self, value: u8, now: Nanos) {
        let was_running = self.divider_running();
        self.cmos[REG_A as usize] = value & !REG_A_UIP;
        let running = self.divider_running();
        if was_running && !running {
            self.frozen_ns.get_or_insert(self.time_ns(now));
        } else if !was_running && running {
            self.divider_start = now;
            if !self.set_mode() {
                // Out of reset, the first update comes half a second later.
                let t = self.frozen_ns.take().unwrap_or(self.base_ns);
                self.base_ns = t.div_euclid(NS_PER_SEC) * NS_PER_SEC + NS_PER_SEC / 2;
                self.base_now = now;
                self.last_sec = t.div_euclid(NS_PER_SEC) as i64;
            }
        }
        self.last_period = match self.period_ticks() {
            Some(p) => self.period_index(now, p),
            None => 0,
        };
    }

    fn write_b(&mut self, mut value: u8, now: Nanos) {
        let old = self.cmos[REG_B as usize];
        if value & REG_B_SET != 0 && old & REG_B_SET == 0 {
            // Setting SET stops updates and clears UIE (datasheet, register B).
            value &= !REG_B_UIE;
            let t = self.time_ns(now);
            let image = self.image(t);
            for &r in TIME_REGISTERS.iter() {
                self.cmos[r as usize] = image[r as usize];
            }
            self.frozen_ns = Some(t);
        }
        self.cmos[REG_B as usize] = value;
        if value & REG_B_SET == 0 && old & REG_B_SET != 0 {
            let secs = self.parse(&self.cmos);
            let t = secs as i128 * NS_PER_SEC;
            if self.divider_running() {
                self.frozen_ns = None;
                self.base_ns = t;
                self.base_now = now;
            } else {
                self.frozen_ns = Some(t);
            }
            self.last_sec = secs;
        }
    }

    /// The clock registers as the chip would show them at wall-clock time `t`; other bytes
    /// come from RAM.
    fn image(&self, t: i128) -> [u8; CMOS_SIZE] {
        let f = fields_from_secs(t.div_euclid(NS_PER_SEC) as i64);
        let (bin, h24) = (self.binary(), self.h24());
        let mut image = self.cmos;
        let year = f.year.rem_euclid(10_000);
        image[REG_SECONDS as usize] = encode(f.sec, bin);
        image[REG_MINUTES as usize] = encode(f.min, bin);
        image[REG_HOURS as usize] = encode_hour(f.hour, bin, h24);
        image[REG_DAY_OF_WEEK as usize] = encode(f.dow, bin);
        image[REG_DAY_OF_MONTH as usize] = encode(f.day, bin);
        image[REG_MONTH as usize] = encode(f.month, bin);
        image[REG_YEAR as usize] = encode((year % 100) as u8, bin);
        image[REG_CENTURY as usize] = encode((year / 100) as u8, bin);
        image
    }

    /// Seconds since the epoch that clock registers in `image` denote (clamped to valid
    /// ranges; the day of week is ignored).
    fn parse(&self, image: &[u8; CMOS_SIZE]) -> i64 {
        let (bin, h24) = (self.binary(), self.h24());
        let get = |r: u8| decode(image[r as usize], bin);
        let f = Fields {
            sec: get(REG_SECONDS).min(59),
            min: get(REG_MINUTES).min(59),
            hour: decode_hour(image[REG_HOURS as usize], bin, h24),
            dow: 1,
            day: get(REG_DAY_OF_MONTH).clamp(1, 31),
            month: get(REG_MONTH).clamp(1, 12),
            year: get(REG_CENTURY).min(99) as i64 * 100 + (get(REG_YEAR) % 100) as i64,
        };
        secs_from_fields(&f)
    }

    fn alarm_matches(&self, sec: i64) -> bool {
        let f = fields_from_secs(sec);
        let (bin, h24) = (self.binary(), self.h24());
        let check = |alarm: u8, now: u8| {
            let a = self.cmos[alarm as usize];
            a & ALARM_DONT_CARE == ALARM_DONT_CARE || a == now
        };
        check(REG_SECONDS_ALARM, encode(f.sec, bin))
            && check(REG_MINUTES_ALARM, encode(f.min, bin))
            && check(REG_HOURS_ALARM, encode_hour(f.hour, bin, h24))
    }
}

/// Registers that hold the running time (the alarm registers are plain RAM).
const TIME_REGISTERS: [u8; 8] = [
    REG_SECONDS,
    REG_MINUTES,
    REG_HOURS,
    REG_DAY_OF_WEEK,
    REG_DAY_OF_MONTH,
    REG_MONTH,
    REG_YEAR,
    REG_CENTURY,
];

fn is_time_register(index: u8) -> bool {
    TIME_REGISTERS.contains(&index)
}

impl Default for Rtc<crate::NoIrq> {
    fn default() -> Self {
        Self::new(crate::NoIrq, 0, 0)
    }
}

mod state;
pub use state::{RtcState, WallTime};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
