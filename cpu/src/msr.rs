//! Model-specific registers: the architectural MSRs Linux and BIOSes use. Unknown MSRs raise
//! #GP(0) as on hardware; the local APIC's MSRs (x2APIC, TSC deadline) go to the bus.

use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::segment::is_canonical;
use crate::state::{efer, Seg};
use crate::Cpu;

pub mod index {
    pub const TSC: u32 = 0x10;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const APIC_BASE: u32 = 0x1b;
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    pub const MTRRCAP: u32 = 0xfe;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MCG_CAP: u32 = 0x179;
    pub const MCG_STATUS: u32 = 0x17a;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_PHYS_FIRST: u32 = 0x200;
    pub const MTRR_PHYS_LAST: u32 = 0x20f;
    pub const MTRR_FIX64K: u32 = 0x250;
    pub const MTRR_FIX16K_80000: u32 = 0x258;
    pub const MTRR_FIX16K_A0000: u32 = 0x259;
    pub const MTRR_FIX4K_FIRST: u32 = 0x268;
    pub const MTRR_FIX4K_LAST: u32 = 0x26f;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const TSC_DEADLINE: u32 = 0x6e0;
    pub const XSS: u32 = 0xda0;
    pub const X2APIC_FIRST: u32 = 0x800;
    pub const X2APIC_LAST: u32 = 0x8ff;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// The TSC's default rate: once per guest nanosecond (1 GHz), derived from the host's monotonic
/// clock. `-cpu ...,tsc-frequency=HZ` sets another ([`crate::CpuModel::tsc_hz`]).
pub const TSC_HZ: u64 = 1_000_000_000;

/// Guest nanoseconds as ticks of a TSC running at `hz` (exact at 1 GHz).
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    if hz == TSC_HZ {
        return ns;
    }
    (u128::from(ns) * u128::from(hz) / u128::from(TSC_HZ)) as u64
}

/// The inverse of [`ns_to_ticks`], rounding up (a deadline never fires early).
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == TSC_HZ {
        return ticks;
    }
    (u128::from(ticks) * u128::from(TSC_HZ)).div_ceil(u128::from(hz.max(1))).min(u128::from(u64::MAX)) as u64
}

fn fixed_mtrr_slot(msr: u32) -> Option<usize> {
    use index::*;
    match msr {
        MTRR_FIX64K => Some(0),
        MTRR_FIX16K_80000 => Some(1),
        MTRR_FIX16K_A0000 => Some(2),
        MTRR_FIX4K_FIRST..=MTRR_FIX4K_LAST => Some(3 + (msr - MTRR_FIX4K_FIRST) as usize),
        _ => None,
    }
}

/// IA32_ARCH_CAPABILITIES (read-only; SDM Vol. 4, table 2-2): ferrite's CPU executes nothing
/// speculatively, so it is truthfully immune to the speculative-execution and data-sampling
/// issues this MSR reports on. Guests then skip the mitigations a vulnerable CPU needs (Linux:
/// page-table isolation for Meltdown, buffer clearing for MDS/TAA). Bits: RDCL_NO (0), SSB_NO
/// (4), MDS_NO (5), PSCHANGE_MC_NO (6), TAA_NO (8), SBDR_SSDP_NO (13), FBSDP_NO (14), PSDP_NO
/// (15), BHI_NO (20), PBRSB_NO (24), GDS_NO (26), RFDS_NO (27), ITS_NO (62). Without ITS_NO,
/// Linux on any Intel CPU under a hypervisor sends every return and indirect branch of the
/// kernel through shared thunks (indirect target selection), one more indirect hop each.
pub const ARCH_CAPABILITIES_VALUE: u64 =
    1 << 0 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 13 | 1 << 14 | 1 << 15 | 1 << 20 | 1 << 24 | 1 << 26 | 1 << 27 | 1 << 62;

impl Cpu {
    /// The time-stamp counter as the guest sees it.
    pub fn tsc(&self, bus: &mut dyn CpuBus) -> u64 {
        self.tsc_at(bus.now_ns())
    }

    /// The time-stamp counter at guest time `now_ns`: the clock's ticks at the model's rate
    /// plus the offset WRMSR TSC/TSC_ADJUST set.
    pub fn tsc_at(&self, now_ns: u64) -> u64 {
        ns_to_ticks(now_ns, self.model.tsc_hz).wrapping_add(self.state.msr.tsc_offset)
    }

    /// Sets the offset so that the TSC reads `tsc` at guest time `now_ns` (an accelerator
    /// that kept its own TSC hands it over).
    pub fn set_tsc_at(&mut self, now_ns: u64, tsc: u64) {
        self.state.msr.tsc_offset = tsc.wrapping_sub(ns_to_ticks(now_ns, self.model.tsc_hz));
    }

    pub fn read_msr(&mut self, bus: &mut dyn CpuBus, msr: u32) -> Result<u64> {
        use index::*;
        let m = &self.state.msr;
        Ok(match msr {
            TSC => self.tsc(bus),
            TSC_ADJUST if self.model.has("tsc-adjust") => m.tsc_adjust,
            ARCH_CAPABILITIES if self.model.has("arch-capabilities") => ARCH_CAPABILITIES_VALUE,
            XSS if self.model.has("xsaves") => m.xss,
            APIC_BASE => m.apic_base,
            BIOS_SIGN_ID => 0,
            // 8 variable ranges, fixed ranges and write-combining supported.
            MTRRCAP => 0x508,
            SYSENTER_CS => m.sysenter_cs,
            SYSENTER_ESP => m.sysenter_esp,
            SYSENTER_EIP => m.sysenter_eip,
            MCG_CAP => 0,
            MCG_STATUS => m.mcg_status,
            MISC_ENABLE => m.misc_enable,
            MTRR_PHYS_FIRST..=MTRR_PHYS_LAST => m.mtrr_var[(msr - MTRR_PHYS_FIRST) as usize],
            PAT => m.pat,
            MTRR_DEF_TYPE => m.mtrr_def_type,
            EFER => self.state.efer,
            STAR => m.star,
            LSTAR => m.lstar,
            CSTAR => m.cstar,
            SFMASK => m.sfmask,
            FS_BASE => self.state.seg(Seg::Fs).base,
            GS_BASE => self.state.seg(Seg::Gs).base,
            KERNEL_GS_BASE => m.kernel_gs_base,
            TSC_AUX if self.model.has("rdtscp") || self.model.has("rdpid") => m.tsc_aux,
            // The local APIC keeps deadlines in raw guest time (the bus's clock); the guest
            // sees them in its TSC, which is offset by WRMSR TSC.
            TSC_DEADLINE => {
                let offset = m.tsc_offset;
                let raw = bus.read_device_msr(msr).ok_or(Fault::gp0())?;
                if raw == 0 {
                    0
                } else {
                    ns_to_ticks(raw, self.model.tsc_hz).wrapping_add(offset)
                }
            }
            _ => {
                if let Some(i) = fixed_mtrr_slot(msr) {
                    return Ok(m.mtrr_fixed[i]);
                }
                return bus.read_device_msr(msr).ok_or(Fault::gp0());
            }
        })
    }

    pub fn write_msr(&mut self, bus: &mut dyn CpuBus, msr: u32, v: u64) -> Result<()> {
        use index::*;
        let canonical = |v: u64| if is_canonical(v) { Ok(v) } else { Err(Fault::gp0()) };
        match msr {
            TSC => {
                // SDM Vol. 3, 17.17.3: a TSC write moves IA32_TSC_ADJUST by the same amount.
                let delta = v.wrapping_sub(self.tsc(bus));
                self.state.msr.tsc_adjust = self.state.msr.tsc_adjust.wrapping_add(delta);
                let now = bus.now_ns();
                self.set_tsc_at(now, v);
            }
            TSC_ADJUST if self.model.has("tsc-adjust") => {
                // ... and a TSC_ADJUST write moves the TSC by the same amount.
                let m = &mut self.state.msr;
                m.tsc_offset = m.tsc_offset.wrapping_add(v.wrapping_sub(m.tsc_adjust));
                m.tsc_adjust = v;
            }
            XSS if self.model.has("xsaves") => {
                if v & !crate::xstate::supported_xss(&self.model) != 0 {
                    return Err(Fault::gp0());
                }
                self.state.msr.xss = v;
            }
            APIC_BASE => {
                // Bits 0-7 and 9 reserved, physical address limited to MAXPHYADDR.
                if v & 0xff != 0 || v & (1 << 9) != 0 || v >> crate::mmu::MAX_PHYS_BITS != 0 {
                    return Err(Fault::gp0());
                }
                self.state.msr.apic_base = v;
                let _ = bus.write_device_msr(msr, v);
            }
            BIOS_SIGN_ID => {}
            SYSENTER_CS => self.state.msr.sysenter_cs = v & 0xffff,
            SYSENTER_ESP => self.state.msr.sysenter_esp = canonical(v)?,
            SYSENTER_EIP => self.state.msr.sysenter_eip = canonical(v)?,
            MCG_STATUS => self.state.msr.mcg_status = v,
            MISC_ENABLE => self.state.msr.misc_enable = v,
            MTRR_PHYS_FIRST..=MTRR_PHYS_LAST => self.state.msr.mtrr_var[(msr - MTRR_PHYS_FIRST) as usize] = v,
            PAT => {
                // Each byte must be a valid memory type (0, 1, 4, 5, 6, 7).
                if (0..8).any(|i| matches!((v >> (i * 8)) & 0xff, 2 | 3 | 8..)) {
                    return Err(Fault::gp0());
                }
                self.state.msr.pat = v;
            }
            MTRR_DEF_TYPE => self.state.msr.mtrr_def_type = v & 0xcff,
            EFER => self.write_efer(v)?,
            STAR => self.state.msr.star = v,
            LSTAR => self.state.msr.lstar = canonical(v)?,
            CSTAR => self.state.msr.cstar = canonical(v)?,
            SFMASK => self.state.msr.sfmask = v & 0xffff_ffff,
            FS_BASE => self.state.seg_mut(Seg::Fs).base = canonical(v)?,
            GS_BASE => self.state.seg_mut(Seg::Gs).base = canonical(v)?,
            KERNEL_GS_BASE => self.state.msr.kernel_gs_base = canonical(v)?,
            TSC_AUX if self.model.has("rdtscp") || self.model.has("rdpid") => self.state.msr.tsc_aux = v & 0xffff_ffff,
            TSC_DEADLINE => {
                // Zero disarms; anything else converts from the guest's TSC to raw time.
                let raw = if v == 0 { 0 } else { ticks_to_ns(v.wrapping_sub(self.state.msr.tsc_offset), self.model.tsc_hz).max(1) };
                return bus.write_device_msr(msr, raw).ok_or(Fault::gp0());
            }
            _ => {
                if let Some(i) = fixed_mtrr_slot(msr) {
                    self.state.msr.mtrr_fixed[i] = v;
                    return Ok(());
                }
                return bus.write_device_msr(msr, v).ok_or(Fault::gp0());
            }
        }
        Ok(())
    }

    /// EFER bits software can set on this model (LMA aside, which follows CR0.PG).
    pub(crate) fn efer_allowed(&self) -> u64 {
        let mut allowed = efer::SCE | efer::LME | efer::NXE;
        if !self.model.has("lm") {
            allowed &= !efer::LME;
        }
        if !self.model.has("nx") {
            allowed &= !efer::NXE;
        }
        if !self.model.has("syscall") {
            allowed &= !efer::SCE;
        }
        allowed
    }

    /// EFER writes: reserved bits and toggling LME with paging on fault (SDM Vol. 3, 9.8.5).
    fn write_efer(&mut self, v: u64) -> Result<()> {
        let allowed = self.efer_allowed();
        if v & !(allowed | efer::LMA) != 0 {
            return Err(Fault::gp0());
        }
        let old = self.state.efer;
        if self.state.paging() && (old ^ v) & efer::LME != 0 {
            return Err(Fault::gp0());
        }
        self.state.efer = (v & allowed) | (old & efer::LMA);
        if (old ^ self.state.efer) & efer::NXE != 0 {
            self.flush_tlb(false);
        }
        Ok(())
    }
}
