//! IA32_APIC_BASE and the x2APIC MSR interface (SDM Vol. 3A, 11.4.4 and 11.12).

use super::*;

/// x2APIC logical ID derived from the x2APIC ID: cluster in bits 31:16, one-hot position
/// in 15:0 (SDM 11.12.10.2).
pub(super) fn logical_id(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xF))
}

/// Bits of IA32_APIC_BASE that software may set: BSP (preserved), EXTD, EN and the base
/// address (SDM 11.4.4, Figure 11-5).
const APIC_BASE_VALID: u64 =
    APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE | APIC_BASE_ADDR_MASK;

impl Lapic {
    /// Whether x2APIC mode is on (IA32_APIC_BASE EN and EXTD both set).
    pub fn x2apic_mode(&self) -> bool {
        self.apic_base & (APIC_BASE_EXTD | APIC_BASE_ENABLE) == APIC_BASE_EXTD | APIC_BASE_ENABLE
    }

    /// IA32_APIC_BASE (MSR 0x1B) read.
    pub fn apic_base_msr(&self) -> u64 {
        self.apic_base
    }

    /// IA32_APIC_BASE write. Returns `false` when the CPU must raise #GP: reserved bits,
    /// or an invalid mode transition (SDM 11.12.5, Figure 11-27: x2APIC -> xAPIC,
    /// disabled -> x2APIC, EXTD without EN). The BSP flag is read-only here. Disabling the
    /// APIC resets its registers; entering x2APIC mode derives the LDR from the ID.
    pub fn write_apic_base_msr(&mut self, value: u64) -> bool {
        if value & !APIC_BASE_VALID != 0 {
            return false;
        }
        let en = value & APIC_BASE_ENABLE != 0;
        let extd = value & APIC_BASE_EXTD != 0;
        let was_en = self.hw_enabled();
        let was_x2 = self.x2apic_mode();
        let valid = match (en, extd) {
            (false, true) => false,
            (true, true) => was_x2 || was_en,
            (true, false) => !was_x2,
            (false, false) => true,
        };
        if !valid {
            return false;
        }
        self.apic_base = (value & !APIC_BASE_BSP) | (self.apic_base & APIC_BASE_BSP);
        if !en && was_en {
            self.reset_registers();
            // A globally disabled APIC passes the PIC straight through; LINT0 is moot.
        }
        if en && !was_en {
            self.reset_registers();
        }
        if self.x2apic_mode() && !was_x2 {
            self.ldr = logical_id(self.id);
        }
        true
    }

    /// x2APIC MSR read (`msr` in 0x800-0x8FF). `None` means #GP: not in x2APIC mode, or a
    /// reserved/write-only register (SDM Table 11-6).
    pub fn msr_read(&mut self, msr: u32, now: Nanos) -> Option<u64> {
        if !self.x2apic_mode() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return None;
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        match reg {
            REG_ID => Some(u64::from(self.id)),
            REG_ICR_LOW => Some(u64::from(self.icr_high) << 32 | u64::from(self.icr_low)),
            // No APR, EOI (write-only), RRD, DFR or ICR high in x2APIC mode.
            REG_APR | REG_EOI | REG_RRD | REG_DFR | REG_ICR_HIGH | REG_SELF_IPI => None,
            _ => self.read_reg(reg, now).map(u64::from),
        }
    }

    /// x2APIC MSR write. Returns `false` for #GP: not in x2APIC mode, read-only or
    /// reserved register, or non-zero reserved bits (upper half of 32-bit registers,
    /// non-zero EOI/ESR writes).
    pub fn msr_write(&mut self, msr: u32, value: u64, now: Nanos) -> bool {
        if !self.x2apic_mode() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return false;
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        if reg == REG_ICR_LOW {
            self.icr_high = (value >> 32) as u32;
            self.icr_low = value as u32 & ICR_LOW_WRITABLE;
            self.send_ipi();
            return true;
        }
        if value >> 32 != 0 {
            return false;
        }
        let v = value as u32;
        match reg {
            REG_TPR if v > 0xFF => false,
            REG_EOI | REG_ESR if v != 0 => false,
            REG_SELF_IPI if v > 0xFF => false,
            REG_SELF_IPI => {
                // SDM 11.12.11: a fixed, edge-triggered self IPI.
                if v < 16 {
                    self.signal_error(ESR_SEND_ILLEGAL_VECTOR);
                } else {
                    self.accept_interrupt(v as u8, false);
                }
                true
            }
            // Read-only in x2APIC mode: ID and LDR are derived from the hardware ID.
            REG_ID | REG_LDR | REG_DFR | REG_APR | REG_RRD | REG_ICR_HIGH => false,
            _ => self.write_reg(reg, v, now),
        }
    }
}
