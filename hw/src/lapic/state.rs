//! Saved state of a local APIC (snapshots and migration).
//!
//! Timer times are guest-clock values, valid because the machine restores the guest clock
//! with the devices. The LAPIC drives no line: after a restore the machine polls
//! [`Lapic::has_interrupt`] and the `take_*` latches as usual, and re-derives its MMIO
//! decoding from [`Lapic::mmio_base`] (the APIC base may have moved, or x2APIC mode be on).

use super::*;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LapicTimerState {
    pub initial_count: u32,
    /// Divide configuration register (bits 0, 1, 3).
    pub divide_config: u32,
    /// Guest time at which the count was `count_at_start`.
    pub start: Nanos,
    pub count_at_start: u64,
    /// Next count-down expiry not yet delivered.
    pub next_fire: Option<Nanos>,
    /// IA32_TSC_DEADLINE as written (0 = disarmed).
    pub tsc_deadline: u64,
    /// The armed deadline in guest time.
    pub deadline_at: Option<Nanos>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LapicState {
    /// IA32_APIC_BASE: base address, EN, EXTD (x2APIC mode), BSP.
    pub apic_base: u64,
    pub id: u32,
    pub tpr: u8,
    pub ldr: u32,
    pub dfr: u32,
    pub svr: u32,
    /// 256-bit vector sets, eight dwords each, vector 0 in bit 0 of dword 0.
    pub isr: [u32; 8],
    pub tmr: [u32; 8],
    pub irr: [u32; 8],
    /// ESR as last latched by a write.
    pub esr: u32,
    /// Errors collected since the last ESR write.
    pub esr_pending: u32,
    pub icr_low: u32,
    pub icr_high: u32,
    /// LVT timer, thermal, performance, LINT0, LINT1, error.
    pub lvt: [u32; LVT_COUNT],
    pub timer: LapicTimerState,
    /// TSC frequency for IA32_TSC_DEADLINE conversions.
    pub tsc_hz: u64,
    /// Levels of LINT0 and LINT1.
    pub lint_levels: [bool; 2],
    pub pending_nmi: bool,
    pub pending_smi: bool,
    pub pending_init: bool,
    pub pending_sipi_vector: Option<u8>,
    pub pending_extint: bool,
    /// IPIs and level EOIs not yet drained by the machine.
    pub pending_output: Vec<LapicOutput>,
}

impl Persist for Lapic {
    const SECTION: &'static str = "lapic";
    const VERSION: u32 = 1;
    type State = LapicState;

    fn save(&self) -> LapicState {
        let t = &self.timer;
        LapicState {
            apic_base: self.apic_base,
            id: self.id,
            tpr: self.tpr,
            ldr: self.ldr,
            dfr: self.dfr,
            svr: self.svr,
            isr: self.isr.0,
            tmr: self.tmr.0,
            irr: self.irr.0,
            esr: self.esr,
            esr_pending: self.esr_pending,
            icr_low: self.icr_low,
            icr_high: self.icr_high,
            lvt: self.lvt,
            timer: LapicTimerState {
                initial_count: t.initial,
                divide_config: t.dcr,
                start: t.start,
                count_at_start: t.start_count,
                next_fire: t.next_fire,
                tsc_deadline: t.tsc_deadline,
                deadline_at: t.deadline_at,
            },
            tsc_hz: self.tsc_hz,
            lint_levels: self.lint_level,
            pending_nmi: self.pending_nmi,
            pending_smi: self.pending_smi,
            pending_init: self.pending_init,
            pending_sipi_vector: self.pending_sipi,
            pending_extint: self.pending_extint,
            pending_output: self.output.clone(),
        }
    }

    fn restore(&mut self, s: LapicState) -> Result<(), RestoreError> {
        let valid_base = APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE | APIC_BASE_ADDR_MASK;
        if s.apic_base & !valid_base != 0 {
            return Err(RestoreError::invalid("apic_base", format!("{:#x} sets reserved bits", s.apic_base)));
        }
        if s.apic_base & (APIC_BASE_EXTD | APIC_BASE_ENABLE) == APIC_BASE_EXTD {
            return Err(RestoreError::invalid("apic_base", "x2APIC mode with the APIC disabled"));
        }
        if s.apic_base & APIC_BASE_BSP != self.apic_base & APIC_BASE_BSP {
            return Err(RestoreError::invalid("apic_base", "saved for a different BSP flag than this vCPU's"));
        }
        check_max("svr", s.svr, SVR_WRITABLE)?;
        let t = &s.timer;
        if t.divide_config & !0xB != 0 {
            return Err(RestoreError::invalid("timer.divide_config", format!("{:#x} sets reserved bits", t.divide_config)));
        }
        check_max("timer.count_at_start", t.count_at_start, u64::from(t.initial_count))?;
        if s.tsc_hz == 0 {
            return Err(RestoreError::invalid("tsc_hz", "zero"));
        }
        check_max("pending_output", s.pending_output.len(), OUTPUT_QUEUE_LIMIT)?;
        self.apic_base = s.apic_base;
        self.id = s.id;
        self.tpr = s.tpr;
        self.ldr = s.ldr;
        self.dfr = s.dfr;
        self.svr = s.svr;
        self.isr = VectorSet(s.isr);
        self.tmr = VectorSet(s.tmr);
        self.irr = VectorSet(s.irr);
        self.esr = s.esr;
        self.esr_pending = s.esr_pending;
        self.icr_low = s.icr_low;
        self.icr_high = s.icr_high;
        self.lvt = s.lvt;
        self.timer = Timer {
            initial: t.initial_count,
            dcr: t.divide_config,
            start: t.start,
            start_count: t.count_at_start,
            next_fire: t.next_fire,
            tsc_deadline: t.tsc_deadline,
            deadline_at: t.deadline_at,
        };
        self.tsc_hz = s.tsc_hz;
        self.lint_level = s.lint_levels;
        self.pending_nmi = s.pending_nmi;
        self.pending_smi = s.pending_smi;
        self.pending_init = s.pending_init;
        self.pending_sipi = s.pending_sipi_vector;
        self.pending_extint = s.pending_extint;
        self.output = s.pending_output;
        Ok(())
    }
}
