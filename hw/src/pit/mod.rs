//! Intel 8254 programmable interval timer, plus the PC's system control port B (0x61).
//!
//! References: Intel 8254 datasheet (order 231164): "Control Word Format", "Read Operations"
//! (counter latch, read-back command, status byte), "Mode Definitions" (modes 0-5) and "Gate"
//! table; IBM PC/AT technical reference, "System control port B" (port 0x61).
//!
//! The counters are never stepped: each channel remembers when it started counting and derives
//! its count and OUT level from the `now` passed in, at 1.193182 MHz, so guest time runs at the
//! machine's clock. Channel 0's OUT drives IRQ0: the machine calls [`Pit::update`] at the time
//! [`Pit::next_event`] names (and whenever it likes), and the device drives the line.
//!
//! Simplifications: a count takes effect when written (the hardware's one-clock load delay is
//! not modelled), and a new count written in modes 1-3/5 while counting restarts the count
//! instead of waiting for the end of the current period.

use crate::{IrqLine, Nanos};

/// Base port of the counters and control register.
pub const PIT_BASE: u16 = 0x40;
/// System control port B.
pub const PORT_B: u16 = 0x61;
/// Input clock of every channel, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Offset of the mode/command register (write only).
pub const OFFSET_CONTROL: u16 = 3;

/// Control word SC field value selecting the read-back command ("Read-Back Command").
const SC_READBACK: u8 = 3;
/// Control word RW field value selecting the counter latch command.
const RW_LATCH: u8 = 0;
/// RW field: least significant byte only.
const RW_LSB: u8 = 1;
/// RW field: most significant byte only.
const RW_MSB: u8 = 2;
/// Read-back bit 5: do NOT latch the count (active low).
const RB_NO_COUNT: u8 = 0x20;
/// Read-back bit 4: do NOT latch the status (active low).
const RB_NO_STATUS: u8 = 0x10;
/// Status byte bit 7: OUT pin level.
const STATUS_OUT: u8 = 0x80;
/// Status byte bit 6: NULL COUNT (the last count written has not been loaded).
const STATUS_NULL: u8 = 0x40;

/// Port B bit 0: timer 2 gate (R/W).
pub const PORT_B_GATE2: u8 = 0x01;
/// Port B bit 1: speaker data enable (R/W).
pub const PORT_B_SPEAKER: u8 = 0x02;
/// Port B bits 0-3 are read/write (bits 2-3: parity and channel check enables).
const PORT_B_RW: u8 = 0x0f;
/// Port B bit 4: refresh request, toggles every 15.085 us.
pub const PORT_B_REFRESH: u8 = 0x10;
/// Port B bit 5: timer 2 OUT.
pub const PORT_B_OUT2: u8 = 0x20;
/// Refresh toggle half-period in nanoseconds.
const REFRESH_NS: u64 = 15_085;

const NS_PER_SEC: u128 = 1_000_000_000;

/// Whole input-clock ticks in `ns` nanoseconds.
fn ns_to_ticks(ns: u64) -> u64 {
    (ns as u128 * PIT_HZ as u128 / NS_PER_SEC) as u64
}

/// The least number of nanoseconds holding `ticks` whole ticks (saturating).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = (ticks as u128 * NS_PER_SEC).div_ceil(PIT_HZ as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn bcd_to_bin(raw: u32) -> u32 {
    let d = |i: u32| (raw >> (4 * i)) & 0xf;
    (d(0) + 10 * d(1) + 100 * d(2) + 1000 * d(3)) % 10_000
}

fn bin_to_bcd(value: u32) -> u32 {
    let v = value % 10_000;
    (v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) | ((v / 1000) << 12)
}

/// One counter.
#[derive(Clone, Debug)]
struct Channel {
    /// Mode 0-5 (6 and 7 fold onto 2 and 3).
    mode: u8,
    /// The M2-M0 bits as written, for the status byte.
    mode_bits: u8,
    bcd: bool,
    /// RW field of the last control word (1 LSB, 2 MSB, 3 LSB then MSB).
    access: u8,
    /// Initial count in clocks: 1..=65536 (binary) or 1..=10000 (BCD).
    count: u32,
    /// A count has been written since the last control word.
    loaded: bool,
    null_count: bool,
    write_msb_next: bool,
    write_lsb: u8,
    read_msb_next: bool,
    latch: Option<u16>,
    status: Option<u8>,
    gate: bool,
    /// Modes 1 and 5: a gate trigger started the count.
    triggered: bool,
    /// Ticks counted before `run_start`.
    base_ticks: u64,
    /// When counting (re)started; `None` while stopped.
    run_start: Option<Nanos>,
    /// Rising OUT edges already reported through the IRQ line (channel 0).
    edges_seen: u64,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 3,
            mode_bits: 3,
            bcd: false,
            access: 3,
            count: 0x10000,
            loaded: false,
            null_count: true,
            write_msb_next: false,
            write_lsb: 0,
            read_msb_next: false,
            latch: None,
            status: None,
            gate,
            triggered: false,
            base_ticks: 0,
            run_start: None,
            edges_seen: 0,
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    fn counting_enabled(&self) -> bool {
        self.loaded
            && match self.mode {
                1 | 5 => self.triggered,
                _ => self.gate,
            }
    }

    fn elapsed(&self, now: Nanos) -> u64 {
        let running = self
            .run_start
            .map_or(0, |s| ns_to_ticks(now.saturating_sub(s)));
        self.base_ticks.saturating_add(running)
    }

    /// Restarts counting from the initial count.
    fn start(&mut self, now: Nanos) {
        self.base_ticks = 0;
        self.edges_seen = 0;
        self.run_start = self.counting_enabled().then_some(now);
    }

    fn suspend(&mut self, now: Nanos) {
        self.base_ticks = self.elapsed(now);
        self.run_start = None;
    }

    fn resume(&mut self, now: Nanos) {
        if self.run_start.is_none() && self.counting_enabled() {
            self.run_start = Some(now);
        }
    }

    /// The counting element as a guest would read it (BCD-encoded in BCD mode).
    fn value(&self, now: Nanos) -> u16 {
        if !self.loaded {
            return 0;
        }
        let n = self.count as u64;
        let m = self.modulus();
        let d = self.elapsed(now);
        let v = match self.mode {
            1 | 5 if !self.triggered => n,
            0 | 1 | 4 | 5 => (n + m - d % m) % m,
            2 => n - d % n,
            _ => {
                // Mode 3 counts down by two through each half period.
                let high = n.div_ceil(2);
                let phase = d % n;
                let p = if phase < high { phase } else { phase - high };
                n.saturating_sub(2 * p)
            }
        } % m;
        if self.bcd {
            bin_to_bcd(v as u32) as u16
        } else {
            v as u16
        }
    }

    /// The OUT pin ("Mode Definitions").
    fn out(&self, now: Nanos) -> bool {
        if !self.loaded {
            return self.mode != 0;
        }
        let n = self.count as u64;
        let d = self.elapsed(now);
        match self.mode {
            0 => d >= n,
            1 => !self.triggered || d >= n,
            2 => !self.gate || d % n != n - 1,
            3 => !self.gate || d % n < n.div_ceil(2),
            4 => d != n,
            _ => !self.triggered || d != n,
        }
    }

    /// Rising OUT edges since counting started.
    fn rising_edges(&self, now: Nanos) -> u64 {
        if !self.loaded {
            return 0;
        }
        let n = self.count as u64;
        let d = self.elapsed(now);
        match self.mode {
            0 => (d >= n) as u64,
            1 => (self.triggered && d >= n) as u64,
            2 | 3 => d / n,
            4 => (d > n) as u64,
            _ => (self.triggered && d > n) as u64,
        }
    }

    /// The tick (in counting time) of the first rising edge not yet reported.
    fn next_edge_tick(&self) -> Option<u64> {
        if !self.loaded {
            return None;
        }
        let n = self.count as u64;
        let first = self.edges_seen == 0;
        match self.mode {
            0 if first => Some(n),
            1 if first && self.triggered => Some(n),
            2 | 3 => Some(self.edges_seen.saturating_add(1).saturating_mul(n)),
            4 if first => Some(n + 1),
            5 if first && self.triggered => Some(n + 1),
            _ => None,
        }
    }

    fn status_byte(&self, now: Nanos) -> u8 {
        let mut s = (self.access << 4) | (self.mode_bits << 1) | self.bcd as u8;
        if self.out(now) {
            s |= STATUS_OUT;
        }
        if self.null_count {
            s |= STATUS_NULL;
        }
        s
    }

    fn latch_count(&mut self, now: Nanos) {
        if self.latch.is_none() {
            self.latch = Some(self.value(now));
            self.read_msb_next = false;
        }
    }

    fn latch_status(&mut self, now: Nanos) {
        if self.status.is_none() {
            self.status = Some(self.status_byte(now));
        }
    }

    fn control(&mut self, value: u8, now: Nanos) {
        self.access = (value >> 4) & 3;
        self.mode_bits = (value >> 1) & 7;
        self.mode = if self.mode_bits > 5 {
            self.mode_bits - 4
        } else {
            self.mode_bits
        };
        self.bcd = value & 1 != 0;
        self.loaded = false;
        self.null_count = true;
        self.triggered = false;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latch = None;
        self.status = None;
        self.start(now);
    }

    fn load(&mut self, raw: u32, now: Nanos) {
        let value = if self.bcd {
            bcd_to_bin(raw)
        } else {
            raw & 0xffff
        };
        self.count = if value == 0 {
            self.modulus() as u32
        } else {
            value
        };
        self.loaded = true;
        self.null_count = false;
        match self.mode {
            // One-shots wait for (or keep) their gate trigger.
            1 | 5 if !self.triggered => {}
            _ => self.start(now),
        }
    }

    fn write_count(&mut self, byte: u8, now: Nanos) {
        match self.access {
            RW_LSB => self.load(byte as u32, now),
            RW_MSB => self.load((byte as u32) << 8, now),
            _ => {
                if self.write_msb_next {
                    self.write_msb_next = false;
                    self.load(self.write_lsb as u32 | (byte as u32) << 8, now);
                } else {
                    self.write_msb_next = true;
                    self.write_lsb = byte;
                    if self.mode == 0 {
                        // Mode 0: writing the first byte stops the count and drops OUT.
                        self.suspend(now);
                        self.loaded = false;
                        self.null_count = true;
                    }
                }
            }
        }
    }

    fn read(&mut self, now: Nanos) -> u8 {
        if let Some(status) = self.status.take() {
            return status;
        }
        let value = self.latch.unwrap_or_else(|| self.value(now));
        let (byte, done) = match self.access {
            RW_LSB => (value as u8, true),
            RW_MSB => ((value >> 8) as u8, true),
            _ if self.read_msb_next => ((value >> 8) as u8, true),
            _ => (value as u8, false),
        };
        self.read_msb_next = !done && self.access == 3;
        if done {
            self.latch = None;
        }
        byte
    }

    fn set_gate(&mut self, level: bool, now: Nanos) {
        if level == self.gate {
            return;
        }
        self.gate = level;
        match (self.mode, level) {
            (1 | 5, true) if self.loaded => {
                self.triggered = true;
                self.start(now);
            }
            (2 | 3, true) => self.start(now),
            (0 | 4, true) => self.resume(now),
            (0 | 2 | 3 | 4, false) => self.suspend(now),
            _ => {}
        }
    }
}

/// The 8254 with its three channels; channel 0 drives `irq0`, channel 2's gate and OUT are
/// reached through port B.
#[derive(Clone, Debug)]
pub struct Pit<I: IrqLine> {
    channels: [Channel; 3],
    port_b: u8,
    irq0: I,
    irq_level: bool,
}

impl<I: IrqLine> Pit<I> {
    /// A PIT at power-on: no counts loaded, gates of channels 0 and 1 tied high, channel 2's
    /// gate low (port B bit 0 clear).
    pub fn new(irq0: I) -> Self {
        Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            irq0,
            irq_level: false,
        }
    }

    /// The IRQ0 line.
    pub fn irq(&self) -> &I {
        &self.irq0
    }

    /// Reads port 0x40 + `offset`: a counter (0-2); the control register reads as 0xff.
    pub fn read(&mut self, offset: u16, now: Nanos) -> u8 {
        match offset {
            0..=2 => self.channels[offset as usize].read(now),
            _ => 0xff,
        }
    }

    /// Writes port 0x40 + `offset`: a counter's initial count (0-2) or a control word (3).
    pub fn write(&mut self, offset: u16, value: u8, now: Nanos) {
        match offset {
            0..=2 => self.channels[offset as usize].write_count(value, now),
            OFFSET_CONTROL => self.control(value, now),
            _ => return,
        }
        self.update(now);
    }

    fn control(&mut self, value: u8, now: Nanos) {
        let sc = value >> 6;
        if sc == SC_READBACK {
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & RB_NO_COUNT == 0 {
                    ch.latch_count(now);
                }
                if value & RB_NO_STATUS == 0 {
                    ch.latch_status(now);
                }
            }
            return;
        }
        let ch = &mut self.channels[sc as usize];
        if (value >> 4) & 3 == RW_LATCH {
            ch.latch_count(now);
        } else {
            ch.control(value, now);
        }
    }

    /// Reads port B (0x61).
    pub fn read_port_b(&self, now: Nanos) -> u8 {
        let mut v = self.port_b & PORT_B_RW;
        if (now / REFRESH_NS) & 1 == 1 {
            v |= PORT_B_REFRESH;
        }
        if self.channels[2].out(now) {
            v |= PORT_B_OUT2;
        }
        v
    }

    /// Writes port B (0x61): bit 0 gates channel 2, bit 1 enables the speaker.
    pub fn write_port_b(&mut self, value: u8, now: Nanos) {
        self.port_b = value & PORT_B_RW;
        self.channels[2].set_gate(value & PORT_B_GATE2 != 0, now);
    }

    /// Drives the gate input of `channel` (0-2; others ignored). On a PC only channel 2's gate
    /// is wired (to port B); this is for tests and other boards.
    pub fn set_gate(&mut self, channel: usize, level: bool, now: Nanos) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.set_gate(level, now);
        }
        self.update(now);
    }

    /// The OUT level of `channel` (0-2; others read low).
    pub fn out(&self, channel: usize, now: Nanos) -> bool {
        self.channels.get(channel).is_some_and(|c| c.out(now))
    }

    /// True while the speaker sounds: gate 2 and speaker data both enabled.
    pub fn speaker_enabled(&self) -> bool {
        self.port_b & (PORT_B_GATE2 | PORT_B_SPEAKER) == PORT_B_GATE2 | PORT_B_SPEAKER
    }

    /// When the machine should next call [`Pit::update`]: the time of the first IRQ0 rising
    /// edge not yet reported. It may be at or before `now` (overdue: update right away).
    /// `None` while channel 0 will produce no further edge.
    pub fn next_event(&self, _now: Nanos) -> Option<Nanos> {
        let ch = &self.channels[0];
        let start = ch.run_start?;
        let tick = ch.next_edge_tick()?;
        Some(start.saturating_add(ticks_to_ns(tick.saturating_sub(ch.base_ticks))))
    }

    /// Brings IRQ0 up to date with channel 0's OUT at `now`. Rising edges since the last
    /// update are delivered as one low-to-high transition (several missed periods coalesce
    /// into one interrupt, as a late tick would on hardware).
    pub fn update(&mut self, now: Nanos) {
        let ch = &mut self.channels[0];
        let edges = ch.rising_edges(now);
        let out = ch.out(now);
        if edges > ch.edges_seen {
            ch.edges_seen = edges;
            if out {
                self.drive(false);
                self.drive(true);
            } else {
                self.drive(true);
                self.drive(false);
            }
        } else {
            self.drive(out);
        }
    }

    fn drive(&mut self, level: bool) {
        if level != self.irq_level {
            self.irq_level = level;
            self.irq0.set_level(level);
        }
    }
}

impl Default for Pit<crate::NoIrq> {
    fn default() -> Self {
        Self::new(crate::NoIrq)
    }
}

mod state;
pub use state::{PitChannelState, PitState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
