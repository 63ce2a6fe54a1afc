//! Saved state of the ACPI PM registers and the PIIX4 PM function (snapshots and migration).
//!
//! The PM timer is derived from guest time, which the machine restores with the devices.

use super::*;
use crate::pci::{PciConfigState, PciEvent};
use ferrite_persist::{Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcpiPmState {
    pub pm1_status: u16,
    pub pm1_enable: u16,
    /// PM1_CNT as stored (SCI_EN, BM_RLD, SLP_TYP).
    pub pm1_control: u16,
    pub gpe0_status: [u8; GPE0_STS_LEN as usize],
    pub gpe0_enable: [u8; GPE0_STS_LEN as usize],
    /// PM timer bit-23 epoch last seen (TMR_STS bookkeeping).
    pub timer_epoch: u64,
    pub apm_control: u8,
    pub apm_status: u8,
    /// A sleep state the guest asked for that the machine has not taken yet.
    pub sleep_request: Option<SleepState>,
}

impl<S: IrqLine> Persist for AcpiPm<S> {
    const SECTION: &'static str = "acpi-pm";
    const VERSION: u32 = 1;
    type State = AcpiPmState;

    fn save(&self) -> AcpiPmState {
        AcpiPmState {
            pm1_status: self.pm1_sts,
            pm1_enable: self.pm1_en,
            pm1_control: self.pm1_cnt,
            gpe0_status: self.gpe_sts,
            gpe0_enable: self.gpe_en,
            timer_epoch: self.timer_epoch,
            apm_control: self.apmc,
            apm_status: self.apms,
            sleep_request: self.sleep,
        }
    }

    fn restore(&mut self, s: AcpiPmState) -> Result<(), RestoreError> {
        let bits = |field, value: u16, mask: u16| {
            if value & !mask != 0 {
                return Err(RestoreError::invalid(field, format!("{value:#06x} sets bits outside {mask:#06x}")));
            }
            Ok(())
        };
        bits("pm1_status", s.pm1_status, PM1_STS_MASK)?;
        bits("pm1_enable", s.pm1_enable, PM1_EN_MASK)?;
        bits("pm1_control", s.pm1_control, PM1_CNT_STORED)?;
        self.pm1_sts = s.pm1_status;
        self.pm1_en = s.pm1_enable;
        self.pm1_cnt = s.pm1_control;
        self.gpe_sts = s.gpe0_status;
        self.gpe_en = s.gpe0_enable;
        self.timer_epoch = s.timer_epoch;
        self.apmc = s.apm_control;
        self.apms = s.apm_status;
        self.sleep = s.sleep_request;
        // Drive the SCI whatever the fresh device had: update_sci then finds it current.
        let want = {
            let pm1 = self.pm1_sts & self.pm1_en & PM1_EN_MASK != 0;
            let gpe = self.gpe_sts.iter().zip(&self.gpe_en).any(|(s, e)| s & e != 0);
            self.acpi_enabled() && (pm1 || gpe)
        };
        self.sci_level = want;
        self.sci.set_level(want);
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piix4PmState {
    pub config: PciConfigState,
}

impl Persist for Piix4Pm {
    const SECTION: &'static str = "piix4-pm";
    const VERSION: u32 = 1;
    type State = Piix4PmState;

    fn save(&self) -> Piix4PmState {
        Piix4PmState { config: self.cfg.save_state() }
    }

    /// The PM I/O base is reported again ([`crate::pci::PciEvent::PmIoBase`]) at the next
    /// [`crate::pci::PciBus::sync`].
    fn restore(&mut self, s: Piix4PmState) -> Result<(), RestoreError> {
        self.cfg.check_state(&s.config)?;
        self.cfg.restore_state(&s.config);
        self.reported = self.pm_base();
        self.pending.clear();
        self.pending.push(PciEvent::PmIoBase { base: self.reported });
        Ok(())
    }
}
