//! Saved state of the 8254 and port B (snapshots and migration).
//!
//! Counting is derived from guest time: `run_start` is a guest-clock timestamp, valid because
//! the machine restores the guest clock together with the devices.

use super::{Channel, Pit, PORT_B_RW};
use crate::{IrqLine, Nanos};
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// One counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitChannelState {
    /// M2-M0 of the last control word (0-7; 6 and 7 act as 2 and 3).
    pub mode_bits: u8,
    pub bcd: bool,
    /// RW field of the last control word (1 LSB, 2 MSB, 3 LSB then MSB).
    pub access: u8,
    /// Initial count in clocks: 1..=65536 (binary) or 1..=10000 (BCD).
    pub initial_count: u32,
    pub count_loaded: bool,
    pub null_count: bool,
    /// LSB-then-MSB writes: the LSB has been written, the MSB comes next.
    pub write_msb_next: bool,
    pub written_lsb: u8,
    /// LSB-then-MSB reads: the LSB has been read, the MSB comes next.
    pub read_msb_next: bool,
    pub latched_count: Option<u16>,
    pub latched_status: Option<u8>,
    pub gate: bool,
    /// Modes 1 and 5: a gate trigger started the count.
    pub triggered: bool,
    /// Ticks counted before `run_start`.
    pub ticks_before_run_start: u64,
    /// Guest time counting (re)started; `None` while stopped.
    pub run_start: Option<Nanos>,
    /// Rising OUT edges already reported (channel 0's IRQ).
    pub edges_reported: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitState {
    pub channels: [PitChannelState; 3],
    /// Port 0x61 read/write bits (0-3).
    pub port_b: u8,
    /// The level last driven on IRQ0.
    pub irq0_level: bool,
}

impl Channel {
    fn save(&self) -> PitChannelState {
        PitChannelState {
            mode_bits: self.mode_bits,
            bcd: self.bcd,
            access: self.access,
            initial_count: self.count,
            count_loaded: self.loaded,
            null_count: self.null_count,
            write_msb_next: self.write_msb_next,
            written_lsb: self.write_lsb,
            read_msb_next: self.read_msb_next,
            latched_count: self.latch,
            latched_status: self.status,
            gate: self.gate,
            triggered: self.triggered,
            ticks_before_run_start: self.base_ticks,
            run_start: self.run_start,
            edges_reported: self.edges_seen,
        }
    }

    fn check(s: &PitChannelState) -> Result<(), RestoreError> {
        check_max("mode_bits", s.mode_bits, 7)?;
        if !(1..=3).contains(&s.access) {
            return Err(RestoreError::invalid("access", format!("{} is not 1 (LSB), 2 (MSB) or 3 (both)", s.access)));
        }
        let modulus = if s.bcd { 10_000 } else { 0x10000 };
        if s.initial_count == 0 || s.initial_count > modulus {
            return Err(RestoreError::invalid("initial_count", format!("{} is not in 1..={modulus}", s.initial_count)));
        }
        Ok(())
    }

    fn restore(&mut self, s: PitChannelState) {
        self.mode_bits = s.mode_bits;
        self.mode = if s.mode_bits > 5 { s.mode_bits - 4 } else { s.mode_bits };
        self.bcd = s.bcd;
        self.access = s.access;
        self.count = s.initial_count;
        self.loaded = s.count_loaded;
        self.null_count = s.null_count;
        self.write_msb_next = s.write_msb_next;
        self.write_lsb = s.written_lsb;
        self.read_msb_next = s.read_msb_next;
        self.latch = s.latched_count;
        self.status = s.latched_status;
        self.gate = s.gate;
        self.triggered = s.triggered;
        self.base_ticks = s.ticks_before_run_start;
        self.run_start = s.run_start;
        self.edges_seen = s.edges_reported;
    }
}

impl<I: IrqLine> Persist for Pit<I> {
    const SECTION: &'static str = "pit";
    const VERSION: u32 = 1;
    type State = PitState;

    fn save(&self) -> PitState {
        PitState {
            channels: [self.channels[0].save(), self.channels[1].save(), self.channels[2].save()],
            port_b: self.port_b,
            irq0_level: self.irq_level,
        }
    }

    fn restore(&mut self, s: PitState) -> Result<(), RestoreError> {
        for ch in &s.channels {
            Channel::check(ch)?;
        }
        check_max("port_b", s.port_b, PORT_B_RW)?;
        let [c0, c1, c2] = s.channels;
        self.channels[0].restore(c0);
        self.channels[1].restore(c1);
        self.channels[2].restore(c2);
        self.port_b = s.port_b;
        self.irq_level = s.irq0_level;
        self.irq0.set_level(s.irq0_level);
        Ok(())
    }
}
