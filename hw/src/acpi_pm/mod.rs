//! ACPI fixed hardware of a PIIX4-style power management function (ACPI 6.4, 4.8 "ACPI
//! Hardware Model" fixed registers; Intel 82371AB PIIX4 datasheet 290562, 7.2 "Power
//! Management I/O Space Registers"), plus the APM/SMI command port at 0xB2.
//!
//! # I/O layout the FADT must advertise (ACPI 6.4, 5.2.9)
//! | FADT field        | value                                   |
//! |-------------------|-----------------------------------------|
//! | `SCI_INT`         | [`ACPI_SCI_IRQ`] (9, level, active high) |
//! | `SMI_CMD`         | [`ACPI_SMI_CMD_PORT`] (0xB2)            |
//! | `ACPI_ENABLE`     | [`ACPI_ENABLE`] (0xF1)                  |
//! | `ACPI_DISABLE`    | [`ACPI_DISABLE`] (0xF0)                 |
//! | `PM1a_EVT_BLK`    | [`ACPI_PM1A_EVT_BLK`] (0x600), `PM1_EVT_LEN` = [`PM1_EVT_LEN`] (4) |
//! | `PM1a_CNT_BLK`    | [`ACPI_PM1A_CNT_BLK`] (0x604), `PM1_CNT_LEN` = [`PM1_CNT_LEN`] (2) |
//! | `PM_TMR_BLK`      | [`ACPI_PM_TMR_BLK`] (0x608), `PM_TMR_LEN` = [`PM_TMR_LEN`] (4), flags `TMR_VAL_EXT` = 0 (24-bit) |
//! | `GPE0_BLK`        | [`ACPI_GPE0_BLK`] (0xAFE0), `GPE0_BLK_LEN` = [`GPE0_BLK_LEN`] (8) |
//! | DSDT `\_S3`/`\_S4`/`\_S5` | SLP_TYP [`SLP_TYP_S3`] (1) / [`SLP_TYP_S4`] (2) / [`SLP_TYP_S5`] (0) |
//!
//! The PM block is [`ACPI_PM_IO_LEN`] (64) bytes from [`ACPI_PM_BASE`], as on the PIIX4;
//! the PCI function ([`Piix4Pm`]) holds the base register and reports moves.
//!
//! # What the machine does
//! Map [`AcpiPm::pm_read`]/[`AcpiPm::pm_write`] at the PM base, [`AcpiPm::gpe_read`]/
//! [`AcpiPm::gpe_write`] at the GPE0 block and [`AcpiPm::apm_read`]/[`AcpiPm::apm_write`] at
//! 0xB2-0xB3; call [`AcpiPm::update`] when [`AcpiPm::next_event`] is reached; after writes,
//! check [`AcpiPm::take_sleep_request`] (power off on S5/S4, suspend on S3, then
//! [`AcpiPm::wake`] on resume).

mod pci;
mod state;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;

pub use pci::*;
pub use state::{AcpiPmState, Piix4PmState};

use crate::{IrqLine, Nanos};

/// Default PM I/O base (what QEMU uses for its PIIX4 PM, and what [`Piix4Pm`] resets to).
pub const ACPI_PM_BASE: u16 = 0x600;
/// Size of the PM I/O block (PIIX4 PMBA decodes 64 bytes).
pub const ACPI_PM_IO_LEN: u16 = 0x40;
/// PM1a event block offset: PM1_STS (16 bits) then PM1_EN (16 bits).
pub const PM1_EVT_OFFSET: u16 = 0x00;
/// PM1a control block offset: PM1_CNT (16 bits).
pub const PM1_CNT_OFFSET: u16 = 0x04;
/// PM timer offset: 24-bit counter in a 32-bit register.
pub const PM_TMR_OFFSET: u16 = 0x08;
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_LEN: u8 = 2;
pub const PM_TMR_LEN: u8 = 4;
/// FADT PM1a_EVT_BLK.
pub const ACPI_PM1A_EVT_BLK: u16 = ACPI_PM_BASE + PM1_EVT_OFFSET;
/// FADT PM1a_CNT_BLK.
pub const ACPI_PM1A_CNT_BLK: u16 = ACPI_PM_BASE + PM1_CNT_OFFSET;
/// FADT PM_TMR_BLK.
pub const ACPI_PM_TMR_BLK: u16 = ACPI_PM_BASE + PM_TMR_OFFSET;
/// FADT GPE0_BLK: GPE0_STS (4 bytes) then GPE0_EN (4 bytes) (ACPI 6.4, 4.8.4.1).
pub const ACPI_GPE0_BLK: u16 = 0xAFE0;
pub const GPE0_BLK_LEN: u8 = 8;
/// Bytes of GPE0 status (= bytes of GPE0 enable): 32 GPEs.
pub const GPE0_STS_LEN: u16 = 4;
/// FADT SMI_CMD: the PIIX4 APM control port (APMC; APMS is at 0xB3).
pub const ACPI_SMI_CMD_PORT: u16 = 0xB2;
/// FADT ACPI_ENABLE value written to SMI_CMD.
pub const ACPI_ENABLE: u8 = 0xF1;
/// FADT ACPI_DISABLE value written to SMI_CMD.
pub const ACPI_DISABLE: u8 = 0xF0;
/// FADT SCI_INT: ISA IRQ 9 (MADT interrupt source override: level, active high).
pub const ACPI_SCI_IRQ: u8 = 9;
/// PM timer frequency (ACPI 6.4, 4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1_STS bit 0: TMR_STS, PM timer bit 23 toggled (ACPI 6.4, Table 4.16).
pub const PM1_TMR_STS: u16 = 1 << 0;
/// PM1_STS bit 4: BM_STS, bus master activity.
pub const PM1_BM_STS: u16 = 1 << 4;
/// PM1_STS bit 5: GBL_STS, global lock released by the BIOS.
pub const PM1_GBL_STS: u16 = 1 << 5;
/// PM1_STS bit 8: PWRBTN_STS, power button pressed.
pub const PM1_PWRBTN_STS: u16 = 1 << 8;
/// PM1_STS bit 9: SLPBTN_STS, sleep button pressed.
pub const PM1_SLPBTN_STS: u16 = 1 << 9;
/// PM1_STS bit 10: RTC_STS, RTC alarm.
pub const PM1_RTC_STS: u16 = 1 << 10;
/// PM1_STS bit 15: WAK_STS, the system woke from a sleeping state.
pub const PM1_WAK_STS: u16 = 1 << 15;
/// PM1_STS bits that exist (write 1 to clear).
pub const PM1_STS_MASK: u16 = PM1_TMR_STS
    | PM1_BM_STS
    | PM1_GBL_STS
    | PM1_PWRBTN_STS
    | PM1_SLPBTN_STS
    | PM1_RTC_STS
    | PM1_WAK_STS;
/// PM1_EN bit 0: TMR_EN (ACPI 6.4, Table 4.17).
pub const PM1_TMR_EN: u16 = 1 << 0;
/// PM1_EN bit 5: GBL_EN.
pub const PM1_GBL_EN: u16 = 1 << 5;
/// PM1_EN bit 8: PWRBTN_EN.
pub const PM1_PWRBTN_EN: u16 = 1 << 8;
/// PM1_EN bit 9: SLPBTN_EN.
pub const PM1_SLPBTN_EN: u16 = 1 << 9;
/// PM1_EN bit 10: RTC_EN.
pub const PM1_RTC_EN: u16 = 1 << 10;
/// PM1_EN bits that exist; an enabled status bit raises the SCI.
pub const PM1_EN_MASK: u16 = PM1_TMR_EN | PM1_GBL_EN | PM1_PWRBTN_EN | PM1_SLPBTN_EN | PM1_RTC_EN;
/// PM1_CNT bit 0: SCI_EN, events raise the SCI instead of an SMI (ACPI 6.4, Table 4.18).
pub const PM1_SCI_EN: u16 = 1 << 0;
/// PM1_CNT bit 1: BM_RLD.
pub const PM1_BM_RLD: u16 = 1 << 1;
/// PM1_CNT bit 2: GBL_RLS (write-only).
pub const PM1_GBL_RLS: u16 = 1 << 2;
/// PM1_CNT bits 12:10: SLP_TYP.
pub const PM1_SLP_TYP_SHIFT: u16 = 10;
pub const PM1_SLP_TYP_MASK: u16 = 7 << PM1_SLP_TYP_SHIFT;
/// PM1_CNT bit 13: SLP_EN (write-only): enter the SLP_TYP state.
pub const PM1_SLP_EN: u16 = 1 << 13;
/// PM1_CNT bits that read back.
pub const PM1_CNT_STORED: u16 = PM1_SCI_EN | PM1_BM_RLD | PM1_SLP_TYP_MASK;

/// SLP_TYP for S5 (soft off): PIIX4 SUS_TYP 000. The DSDT's `\_S5` is `Package {0, 0, 0, 0}`.
pub const SLP_TYP_S5: u8 = 0;
/// SLP_TYP for S3 (suspend to RAM): PIIX4 SUS_TYP 001. `\_S3` is `Package {1, 1, 0, 0}`.
pub const SLP_TYP_S3: u8 = 1;
/// SLP_TYP for S4 (suspend to disk), our choice (as QEMU's): `\_S4` is `Package {2, 2, 0, 0}`.
pub const SLP_TYP_S4: u8 = 2;

/// A sleeping state the guest asked for by writing SLP_TYP with SLP_EN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SleepState {
    /// Suspend to RAM: the machine stops the vCPUs and resumes through the BIOS later.
    S3,
    /// Suspend to disk: the image is written; the machine powers off.
    S4,
    /// Soft off: the machine powers off.
    S5,
}

/// The ACPI PM register blocks, raising the SCI through `S`.
#[derive(Clone, Debug)]
pub struct AcpiPm<S: IrqLine> {
    sci: S,
    sci_level: bool,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe_sts: [u8; GPE0_STS_LEN as usize],
    gpe_en: [u8; GPE0_STS_LEN as usize],
    /// PM timer bit-23 epoch (`ticks >> 23`) last seen.
    timer_epoch: u64,
    apmc: u8,
    apms: u8,
    sleep: Option<SleepState>,
}

/// PM timer ticks elapsed at `now`.
fn pm_ticks(now: Nanos) -> u64 {
    (u128::from(now) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64
}

impl<S: IrqLine> AcpiPm<S> {
    /// Power-on state: legacy mode (SCI_EN clear), everything disabled, at guest time 0.
    pub fn new(sci: S) -> Self {
        Self {
            sci,
            sci_level: false,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: 0,
            gpe_sts: [0; 4],
            gpe_en: [0; 4],
            timer_epoch: 0,
            apmc: 0,
            apms: 0,
            sleep: None,
        }
    }

    /// Platform reset at `now` (the PM timer keeps running).
    pub fn reset(&mut self, now: Nanos) {
        self.pm1_sts = 0;
        self.pm1_en = 0;
        self.pm1_cnt = 0;
        self.gpe_sts = [0; 4];
        self.gpe_en = [0; 4];
        self.timer_epoch = pm_ticks(now) >> 23;
        self.apmc = 0;
        self.apms = 0;
        self.sleep = None;
        self.update_sci();
    }

    /// The 24-bit PM timer value at `now`.
    pub fn pm_timer(&self, now: Nanos) -> u32 {
        (pm_ticks(now) & 0xFF_FFFF) as u32
    }

    /// Whether the SCI line is asserted.
    pub fn sci_level(&self) -> bool {
        self.sci_level
    }

    /// Whether ACPI mode is on (PM1_CNT.SCI_EN).
    pub fn acpi_enabled(&self) -> bool {
        self.pm1_cnt & PM1_SCI_EN != 0
    }

    /// Sets or clears SCI_EN directly: for a machine whose FADT advertises no SMI_CMD
    /// (SMI_CMD = 0 tells the OS the hardware is already in ACPI mode).
    pub fn set_acpi_enabled(&mut self, on: bool) {
        if on {
            self.pm1_cnt |= PM1_SCI_EN;
        } else {
            self.pm1_cnt &= !PM1_SCI_EN;
        }
        self.update_sci();
    }

    /// The sleep state requested by the guest, if any, without taking it.
    pub fn sleep_requested(&self) -> Option<SleepState> {
        self.sleep
    }

    /// Takes the pending sleep request.
    pub fn take_sleep_request(&mut self) -> Option<SleepState> {
        self.sleep.take()
    }

    /// True when the guest asked to power off: SLP_EN with SLP_TYP = S5 (or S4, which on
    /// a VM ends the same way once the image is written).
    pub fn poweroff_requested(&self) -> bool {
        matches!(self.sleep, Some(SleepState::S5 | SleepState::S4))
    }

    /// Resume from S3: sets WAK_STS and clears the request.
    pub fn wake(&mut self) {
        self.sleep = None;
        self.pm1_sts |= PM1_WAK_STS;
        self.update_sci();
    }

    /// Power button press: sets PWRBTN_STS. Returns whether the OS will see it (ACPI mode
    /// on and PWRBTN_EN set); when not, the machine may power off by itself, as a
    /// legacy-mode firmware would.
    pub fn press_power_button(&mut self) -> bool {
        self.pm1_sts |= PM1_PWRBTN_STS;
        self.update_sci();
        self.acpi_enabled() && self.pm1_en & PM1_PWRBTN_EN != 0
    }

    /// Sleep button press: sets SLPBTN_STS.
    pub fn press_sleep_button(&mut self) {
        self.pm1_sts |= PM1_SLPBTN_STS;
        self.update_sci();
    }

    /// RTC alarm: sets RTC_STS.
    pub fn rtc_alarm(&mut self) {
        self.pm1_sts |= PM1_RTC_STS;
        self.update_sci();
    }

    /// Sets general-purpose event `gpe` (0-31) status, e.g. for hotplug (`\_GPE._Exx`).
    pub fn raise_gpe(&mut self, gpe: u8) {
        if let Some(b) = self.gpe_sts.get_mut(usize::from(gpe / 8)) {
            *b |= 1 << (gpe % 8);
            self.update_sci();
        }
    }

    /// Advances the PM timer to `now`: sets TMR_STS if bit 23 toggled since last time.
    pub fn update(&mut self, now: Nanos) {
        let epoch = pm_ticks(now) >> 23;
        if epoch != self.timer_epoch {
            self.timer_epoch = epoch;
            self.pm1_sts |= PM1_TMR_STS;
            self.update_sci();
        }
    }

    /// When [`Self::update`] must run next: the next bit-23 toggle of the PM timer while
    /// TMR_EN and SCI_EN are set (otherwise TMR_STS is caught up lazily on reads).
    pub fn next_event(&self, now: Nanos) -> Option<Nanos> {
        if self.pm1_en & PM1_TMR_EN == 0 || !self.acpi_enabled() {
            return None;
        }
        let next_tick = u128::from((pm_ticks(now) >> 23) + 1) << 23;
        let ns = (next_tick * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ));
        Some(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn update_sci(&mut self) {
        let pm1 = self.pm1_sts & self.pm1_en & PM1_EN_MASK != 0;
        let gpe = self
            .gpe_sts
            .iter()
            .zip(&self.gpe_en)
            .any(|(s, e)| s & e != 0);
        let level = self.acpi_enabled() && (pm1 || gpe);
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    fn pm_read_byte(&self, offset: u16, timer: u32) -> u8 {
        match offset {
            0 => self.pm1_sts as u8,
            1 => (self.pm1_sts >> 8) as u8,
            2 => self.pm1_en as u8,
            3 => (self.pm1_en >> 8) as u8,
            4 => self.pm1_cnt as u8,
            5 => (self.pm1_cnt >> 8) as u8,
            8..=11 => (timer >> (8 * (offset - 8))) as u8,
            _ => 0,
        }
    }

    fn pm_write_byte(&mut self, offset: u16, b: u8) {
        let lo = |v: u16| u16::from(b) | (v & 0xFF00);
        let hi = |v: u16| (u16::from(b) << 8) | (v & 0x00FF);
        match offset {
            // Status bits clear on writing 1 (ACPI 6.4, 4.8.3.1).
            0 => self.pm1_sts &= !u16::from(b),
            1 => self.pm1_sts &= !(u16::from(b) << 8),
            2 => self.pm1_en = lo(self.pm1_en) & PM1_EN_MASK,
            3 => self.pm1_en = hi(self.pm1_en) & PM1_EN_MASK,
            4 => self.pm1_cnt = lo(self.pm1_cnt) & PM1_CNT_STORED,
            5 => {
                let written = hi(self.pm1_cnt);
                self.pm1_cnt = written & PM1_CNT_STORED;
                if written & PM1_SLP_EN != 0 {
                    let typ = ((written & PM1_SLP_TYP_MASK) >> PM1_SLP_TYP_SHIFT) as u8;
                    self.sleep = match typ {
                        SLP_TYP_S5 => Some(SleepState::S5),
                        SLP_TYP_S3 => Some(SleepState::S3),
                        SLP_TYP_S4 => Some(SleepState::S4),
                        _ => self.sleep,
                    };
                }
            }
            _ => {}
        }
    }

    /// Read from the PM block; `offset` from the PM base, `size` 1, 2 or 4. PM1_STS is
    /// brought up to date with `now` first.
    pub fn pm_read(&mut self, offset: u16, size: u8, now: Nanos) -> u32 {
        self.update(now);
        let timer = self.pm_timer(now);
        let mut v = 0;
        for i in 0..u16::from(size.min(4)) {
            v |= u32::from(self.pm_read_byte(offset.wrapping_add(i), timer)) << (8 * i);
        }
        v
    }

    /// Write to the PM block. The PM timer is read-only.
    pub fn pm_write(&mut self, offset: u16, size: u8, value: u32, now: Nanos) {
        self.update(now);
        for i in 0..u16::from(size.min(4)) {
            self.pm_write_byte(offset.wrapping_add(i), (value >> (8 * i)) as u8);
        }
        self.update_sci();
    }

    /// Read from the GPE0 block: bytes 0-3 status, 4-7 enable.
    pub fn gpe_read(&mut self, offset: u16, size: u8) -> u32 {
        let mut v = 0;
        for i in 0..u16::from(size.min(4)) {
            let o = usize::from(offset.wrapping_add(i));
            let b = match o {
                0..=3 => self.gpe_sts[o],
                4..=7 => self.gpe_en[o - 4],
                _ => 0,
            };
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    /// Write to the GPE0 block: status bytes clear on 1, enable bytes store.
    pub fn gpe_write(&mut self, offset: u16, size: u8, value: u32) {
        for i in 0..u16::from(size.min(4)) {
            let o = usize::from(offset.wrapping_add(i));
            let b = (value >> (8 * i)) as u8;
            match o {
                0..=3 => self.gpe_sts[o] &= !b,
                4..=7 => self.gpe_en[o - 4] = b,
                _ => {}
            }
        }
        self.update_sci();
    }

    /// Read of the APM ports: offset 0 = APMC (0xB2, SMI_CMD), 1 = APMS (0xB3, scratch).
    pub fn apm_read(&mut self, offset: u16) -> u8 {
        match offset {
            0 => self.apmc,
            1 => self.apms,
            _ => 0xFF,
        }
    }

    /// Write of the APM ports. There is no SMM firmware behind SMI_CMD: the ACPI
    /// enable/disable handshake is done here directly (ACPI 6.4, 4.8.2.1.1: the OS writes
    /// ACPI_ENABLE and polls SCI_EN).
    pub fn apm_write(&mut self, offset: u16, value: u8) {
        match offset {
            0 => {
                self.apmc = value;
                match value {
                    ACPI_ENABLE => self.pm1_cnt |= PM1_SCI_EN,
                    ACPI_DISABLE => self.pm1_cnt &= !PM1_SCI_EN,
                    _ => {}
                }
                self.update_sci();
            }
            1 => self.apms = value,
            _ => {}
        }
    }
}
