//! Local APIC register offsets, bit fields and the 256-bit vector sets.
//!
//! Offsets are those of the xAPIC MMIO page (Intel SDM Vol. 3A, Table 11-1 "Local APIC
//! Register Address Map"); the x2APIC MSR for a register is `0x800 + (offset >> 4)`
//! (SDM Vol. 3A, 11.12.1.2, Table 11-6).

/// Default physical base of the xAPIC register page (SDM 11.4.1).
pub const LAPIC_BASE: u64 = 0xFEE0_0000;
/// Size of the xAPIC MMIO window.
pub const LAPIC_SIZE: u64 = 0x1000;

/// Local APIC ID register (SDM 11.4.6).
pub const REG_ID: u32 = 0x020;
/// Local APIC version register (SDM 11.4.8).
pub const REG_VERSION: u32 = 0x030;
/// Task priority register (SDM 11.8.3.1).
pub const REG_TPR: u32 = 0x080;
/// Arbitration priority register (SDM 11.6.2.4; xAPIC only).
pub const REG_APR: u32 = 0x090;
/// Processor priority register (SDM 11.8.3.1).
pub const REG_PPR: u32 = 0x0A0;
/// End-of-interrupt register (SDM 11.8.5).
pub const REG_EOI: u32 = 0x0B0;
/// Remote read register (SDM Table 11-1; not supported, reads 0).
pub const REG_RRD: u32 = 0x0C0;
/// Logical destination register (SDM 11.6.2.2).
pub const REG_LDR: u32 = 0x0D0;
/// Destination format register (SDM 11.6.2.2; xAPIC only).
pub const REG_DFR: u32 = 0x0E0;
/// Spurious interrupt vector register (SDM 11.9).
pub const REG_SVR: u32 = 0x0F0;
/// In-service register, 8 x 32 bits at 16-byte strides (SDM 11.8.4).
pub const REG_ISR: u32 = 0x100;
/// Trigger mode register, 8 x 32 bits (SDM 11.8.4).
pub const REG_TMR: u32 = 0x180;
/// Interrupt request register, 8 x 32 bits (SDM 11.8.4).
pub const REG_IRR: u32 = 0x200;
/// Error status register (SDM 11.5.3).
pub const REG_ESR: u32 = 0x280;
/// LVT corrected machine check interrupt register (SDM 11.5.1; not implemented here).
pub const REG_LVT_CMCI: u32 = 0x2F0;
/// Interrupt command register, low half (SDM 11.6.1).
pub const REG_ICR_LOW: u32 = 0x300;
/// Interrupt command register, high half (SDM 11.6.1; xAPIC only).
pub const REG_ICR_HIGH: u32 = 0x310;
/// LVT timer register (SDM 11.5.1).
pub const REG_LVT_TIMER: u32 = 0x320;
/// LVT thermal sensor register (SDM 11.5.1).
pub const REG_LVT_THERMAL: u32 = 0x330;
/// LVT performance monitoring counters register (SDM 11.5.1).
pub const REG_LVT_PERF: u32 = 0x340;
/// LVT LINT0 register (SDM 11.5.1).
pub const REG_LVT_LINT0: u32 = 0x350;
/// LVT LINT1 register (SDM 11.5.1).
pub const REG_LVT_LINT1: u32 = 0x360;
/// LVT error register (SDM 11.5.1).
pub const REG_LVT_ERROR: u32 = 0x370;
/// Timer initial count register (SDM 11.5.4).
pub const REG_TIMER_INITIAL: u32 = 0x380;
/// Timer current count register (SDM 11.5.4).
pub const REG_TIMER_CURRENT: u32 = 0x390;
/// Timer divide configuration register (SDM 11.5.4, Figure 11-10).
pub const REG_TIMER_DIVIDE: u32 = 0x3E0;
/// x2APIC SELF IPI register (SDM 11.12.11; MSR 0x83F only).
pub const REG_SELF_IPI: u32 = 0x3F0;

/// Version register value: version 0x14 (integrated APIC), max LVT entry 5 (six LVT
/// entries: timer, thermal, perf, LINT0, LINT1, error), no EOI-broadcast suppression
/// (SDM 11.4.8, Figure 11-7).
pub const LAPIC_VERSION: u32 = 0x0005_0014;

/// SVR bit 8: APIC software enable (SDM 11.9, Figure 11-23).
pub const SVR_APIC_ENABLE: u32 = 1 << 8;
/// SVR bit 9: focus processor checking disabled (SDM 11.9).
pub const SVR_FOCUS_DISABLE: u32 = 1 << 9;
/// SVR bits that software can write (vector, enable, focus).
pub const SVR_WRITABLE: u32 = 0x3FF;

/// LVT bit 16: mask (SDM 11.5.1, Figure 11-8).
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT bit 15: trigger mode, 1 = level (LINT0/LINT1 only).
pub const LVT_LEVEL: u32 = 1 << 15;
/// LVT bit 14: remote IRR, read-only (LINT0/LINT1, fixed level mode).
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// LVT bit 13: input pin polarity, 1 = active low (LINT0/LINT1).
pub const LVT_POLARITY_LOW: u32 = 1 << 13;
/// LVT bit 12: delivery status, read-only (always idle here: delivery is immediate).
pub const LVT_DELIVERY_PENDING: u32 = 1 << 12;
/// LVT timer bits 18:17: timer mode (SDM 11.5.4, Table 11-2).
pub const LVT_TIMER_MODE_MASK: u32 = 3 << 17;
/// Timer mode: one-shot.
pub const LVT_TIMER_ONESHOT: u32 = 0 << 17;
/// Timer mode: periodic.
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Timer mode: TSC-deadline (SDM 11.5.4.1).
pub const LVT_TIMER_TSC_DEADLINE: u32 = 2 << 17;

/// Writable bits of the LVT timer entry.
pub const LVT_TIMER_WRITABLE: u32 = 0xFF | LVT_MASKED | LVT_TIMER_MODE_MASK;
/// Writable bits of LINT0/LINT1 (vector, delivery mode, polarity, trigger, mask).
pub const LVT_LINT_WRITABLE: u32 = 0xFF | (7 << 8) | LVT_POLARITY_LOW | LVT_LEVEL | LVT_MASKED;
/// Writable bits of the thermal and performance LVT entries (vector, delivery mode, mask).
pub const LVT_TP_WRITABLE: u32 = 0xFF | (7 << 8) | LVT_MASKED;
/// Writable bits of the LVT error entry (vector, mask).
pub const LVT_ERROR_WRITABLE: u32 = 0xFF | LVT_MASKED;

/// Index of each LVT entry in [`super::Lapic`]'s LVT array, in register order.
pub const LVT_TIMER: usize = 0;
pub const LVT_THERMAL: usize = 1;
pub const LVT_PERF: usize = 2;
pub const LVT_LINT0: usize = 3;
pub const LVT_LINT1: usize = 4;
pub const LVT_ERROR: usize = 5;
/// Number of LVT entries (matches max LVT entry 5 in [`LAPIC_VERSION`]).
pub const LVT_COUNT: usize = 6;

/// ICR bits 10:8: delivery mode (SDM 11.6.1, Figure 11-12).
pub const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
/// ICR bit 11: destination mode, 1 = logical.
pub const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// ICR bit 12: delivery status (read-only, always idle here).
pub const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// ICR bit 14: level, 0 = de-assert (only meaningful for INIT).
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// ICR bit 15: trigger mode, 1 = level.
pub const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
/// ICR bits 19:18: destination shorthand.
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Writable bits of ICR low (everything but delivery status and reserved bits).
pub const ICR_LOW_WRITABLE: u32 = 0xFF
    | (7 << 8)
    | ICR_DEST_LOGICAL
    | ICR_LEVEL_ASSERT
    | ICR_TRIGGER_LEVEL
    | (3 << ICR_SHORTHAND_SHIFT);

/// ESR bit 5: send illegal vector (SDM 11.5.3, Figure 11-9).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: received illegal vector.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit 7: illegal register address (xAPIC).
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// IA32_APIC_BASE MSR number (SDM 11.4.4).
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE bit 8: this processor is the BSP.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode enable (SDM 11.12.1).
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bits 35:12 (MAXPHYADDR 36 assumed): APIC page base.
pub const APIC_BASE_ADDR_MASK: u64 = 0x0000_000F_FFFF_F000;
/// IA32_TSC_DEADLINE MSR number (SDM 11.5.4.1).
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First x2APIC register MSR (SDM 11.12.1.2).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC register MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// A 256-bit set of interrupt vectors, laid out like the ISR/TMR/IRR registers: word `i`
/// holds vectors `32*i .. 32*i+31` (SDM 11.8.4, Figure 11-20).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet(pub [u32; 8]);

impl VectorSet {
    pub fn set(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] |= 1 << (vector & 31);
    }

    pub fn clear(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] &= !(1 << (vector & 31));
    }

    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
    }

    /// The highest vector in the set.
    pub fn highest(&self) -> Option<u8> {
        (0..8usize).rev().find_map(|i| {
            let w = self.0[i];
            (w != 0).then(|| (i as u32 * 32 + 31 - w.leading_zeros()) as u8)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}
