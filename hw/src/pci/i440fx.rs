//! Intel 82441FX PCI and memory controller (PMC), the i440FX host bridge, at 00.0
//! (82441FX/82442FX datasheet 290549-001, section 3.2 "PCI Configuration Registers").

use super::{ConfigSpace, DevFn, PciDevice, PciEvent};

/// Where the host bridge sits.
pub const I440FX_DEVFN: DevFn = DevFn(0);
pub const I440FX_VENDOR_ID: u16 = 0x8086;
pub const I440FX_DEVICE_ID: u16 = 0x1237;
/// Revision 02 (stepping), class 06/00/00 host bridge.
pub const I440FX_REVISION: u8 = 0x02;
pub const I440FX_CLASS: u32 = 0x06_00_00;

/// PMCCFG, PMC configuration (datasheet 3.2.10), 16 bits.
pub const I440FX_PMCCFG: usize = 0x50;
/// First PAM register, PAM0 (datasheet 3.2.18); PAM0-PAM6 at 0x59-0x5F.
pub const I440FX_PAM0: usize = 0x59;
/// Number of PAM registers.
pub const I440FX_PAM_COUNT: usize = 7;
/// DRB0-DRB7, DRAM row boundaries (datasheet 3.2.19).
pub const I440FX_DRB0: usize = 0x60;
/// SMRAM, system management RAM control (datasheet 3.2.23).
pub const I440FX_SMRAM: usize = 0x72;

/// SMRAM bits 2:0: C_BASE_SEG, hardwired 010 (SMRAM at 0xA0000).
pub const SMRAM_C_BASE_SEG: u8 = 0b010;
/// SMRAM bit 3: G_SMRAME, global SMRAM enable.
pub const SMRAM_G_SMRAME: u8 = 1 << 3;
/// SMRAM bit 4: D_LCK, lock (cleared only by reset; forces D_OPEN = 0).
pub const SMRAM_D_LCK: u8 = 1 << 4;
/// SMRAM bit 5: D_CLS, SMRAM closed for data accesses in SMM.
pub const SMRAM_D_CLS: u8 = 1 << 5;
/// SMRAM bit 6: D_OPEN, SMRAM visible outside SMM.
pub const SMRAM_D_OPEN: u8 = 1 << 6;

/// PAM nibble bit 0 (and 4): RE, reads go to DRAM.
pub const PAM_READ_ENABLE: u8 = 1 << 0;
/// PAM nibble bit 1 (and 5): WE, writes go to DRAM.
pub const PAM_WRITE_ENABLE: u8 = 1 << 1;

/// Where accesses to one PAM segment go: `true` DRAM (shadow RAM), `false` the PCI bus
/// (in practice the BIOS/option ROM mapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PamAttr {
    pub read_dram: bool,
    pub write_dram: bool,
}

/// The 13 PAM segments: 0 is 0xF0000-0xFFFFF (64 KiB, PAM0 high nibble); 1-12 are the
/// 16 KiB segments from 0xC0000 to 0xEFFFF (PAM1 low nibble .. PAM6 high nibble).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PamState {
    pub segments: [PamAttr; 13],
}

impl PamState {
    /// Decodes the seven PAM registers.
    pub fn from_registers(pam: [u8; I440FX_PAM_COUNT]) -> Self {
        let attr = |nibble: u8| PamAttr {
            read_dram: nibble & PAM_READ_ENABLE != 0,
            write_dram: nibble & PAM_WRITE_ENABLE != 0,
        };
        let mut s = Self::default();
        s.segments[0] = attr(pam[0] >> 4);
        for i in 1..I440FX_PAM_COUNT {
            s.segments[2 * i - 1] = attr(pam[i] & 0xF);
            s.segments[2 * i] = attr(pam[i] >> 4);
        }
        s
    }

    /// Physical base and size of segment `index`.
    pub fn segment_range(index: usize) -> (u64, u64) {
        if index == 0 {
            (0xF_0000, 0x1_0000)
        } else {
            (0xC_0000 + (index as u64 - 1) * 0x4000, 0x4000)
        }
    }

    /// Every segment with its base, size and attribute.
    pub fn segments(&self) -> impl Iterator<Item = (u64, u64, PamAttr)> + '_ {
        self.segments.iter().enumerate().map(|(i, a)| {
            let (base, size) = Self::segment_range(i);
            (base, size, *a)
        })
    }
}

/// The SMRAM control register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmramState(pub u8);

impl SmramState {
    pub fn enabled(self) -> bool {
        self.0 & SMRAM_G_SMRAME != 0
    }

    pub fn open(self) -> bool {
        self.0 & SMRAM_D_OPEN != 0
    }

    pub fn closed(self) -> bool {
        self.0 & SMRAM_D_CLS != 0
    }

    pub fn locked(self) -> bool {
        self.0 & SMRAM_D_LCK != 0
    }

    /// Whether accesses to 0xA0000-0xBFFFF reach DRAM (instead of VGA on PCI): in SMM when
    /// SMRAM is enabled, outside SMM only while it is also open (datasheet 3.2.23; data
    /// accesses in SMM with D_CLS set are not modelled separately).
    pub fn ram_visible(self, in_smm: bool) -> bool {
        self.enabled() && (in_smm || self.open())
    }
}

/// The i440FX host bridge function.
#[derive(Clone, Debug)]
pub struct I440fx {
    pub(super) cfg: ConfigSpace,
    pub(super) pam_dirty: bool,
    pub(super) smram_dirty: bool,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl I440fx {
    pub fn new() -> Self {
        let mut cfg = ConfigSpace::new(
            I440FX_VENDOR_ID,
            I440FX_DEVICE_ID,
            I440FX_CLASS,
            I440FX_REVISION,
        );
        // A host bridge has no BARs and no interrupt; keep memory decoding on.
        cfg.set_u16(super::PCI_COMMAND, 0x0006);
        cfg.set_u16(super::PCI_STATUS, 0x0280); // fast back-to-back, medium DEVSEL
        cfg.set_writable(super::PCI_INTERRUPT_LINE, &[0]);
        cfg.set_writable(I440FX_PMCCFG, &[0xFF; 9]); // 0x50-0x58: PMCCFG .. DRAMT
        cfg.set_writable(I440FX_PAM0, &[0x30]);
        cfg.set_writable(I440FX_PAM0 + 1, &[0x33; I440FX_PAM_COUNT - 1]);
        cfg.set_writable(I440FX_DRB0, &[0xFF; 8]);
        cfg.set_writable(0x68, &[0xFF]); // FDHC
        cfg.set_writable(0x70, &[0xFF, 0xFF]); // MTT, CLT
        cfg.set_writable(0x90, &[0xFF, 0xFF, 0, 0xFF]); // ERRCMD, ERRSTS, TRC
        cfg.set_u8(I440FX_SMRAM, SMRAM_C_BASE_SEG);
        cfg.freeze_reset_state();
        Self {
            cfg,
            pam_dirty: false,
            smram_dirty: false,
        }
    }

    /// Current PAM decoding.
    pub fn pam(&self) -> PamState {
        let mut regs = [0u8; I440FX_PAM_COUNT];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = self.cfg.u8(I440FX_PAM0 + i);
        }
        PamState::from_registers(regs)
    }

    /// Current SMRAM control.
    pub fn smram(&self) -> SmramState {
        SmramState(self.cfg.u8(I440FX_SMRAM))
    }

    /// SMRAM write rules (datasheet 3.2.23): C_BASE_SEG is fixed; once D_LCK is set,
    /// D_OPEN reads 0 and G_SMRAME/D_LCK are frozen until reset (D_CLS stays writable).
    fn write_smram(&mut self, value: u8) {
        let old = self.cfg.u8(I440FX_SMRAM);
        let mut new = if old & SMRAM_D_LCK != 0 {
            (old & (SMRAM_G_SMRAME | SMRAM_D_LCK)) | (value & SMRAM_D_CLS)
        } else {
            value & (SMRAM_G_SMRAME | SMRAM_D_LCK | SMRAM_D_CLS | SMRAM_D_OPEN)
        };
        if new & SMRAM_D_LCK != 0 {
            new &= !SMRAM_D_OPEN;
        }
        new |= SMRAM_C_BASE_SEG;
        if new != old {
            self.cfg.set_u8(I440FX_SMRAM, new);
            self.smram_dirty = true;
        }
    }
}

impl PciDevice for I440fx {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        let before = self.pam();
        for i in 0..size.min(4) {
            let o = offset.wrapping_add(i);
            let b = (value >> (8 * i)) as u8;
            if usize::from(o) == I440FX_SMRAM {
                self.write_smram(b);
            } else {
                self.cfg.write(o, 1, u32::from(b));
            }
        }
        if self.pam() != before {
            self.pam_dirty = true;
        }
    }

    fn take_events(&mut self, out: &mut Vec<PciEvent>) {
        if std::mem::take(&mut self.pam_dirty) {
            out.push(PciEvent::Pam(self.pam()));
        }
        if std::mem::take(&mut self.smram_dirty) {
            out.push(PciEvent::Smram(self.smram()));
        }
    }

    fn reset(&mut self) {
        let (pam, smram) = (self.pam(), self.smram());
        self.cfg.reset();
        self.pam_dirty |= self.pam() != pam;
        self.smram_dirty |= self.smram() != smram;
    }
}
