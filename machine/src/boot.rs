//! Getting the guest started: direct Linux or multiboot kernel loading (`-kernel`), ACPI
//! tables, fw_cfg content, and firmware ROMs (`-bios`).

use crate::config::MachineConfig;
use crate::pc::PcBoard;
use ferrite_memory::{GuestMemory, LegacyAttr, LEGACY_SEGMENTS};
use ferrite_cpu::state::{seg_attr, CpuState, Seg, Segment, TableReg};
use ferrite_firmware::{
    self as fw, AcpiConfig, AcpiTables, BootSetup, EntryMode, LinuxBootConfig, MemoryLayout,
    MultibootConfig, MultibootModule, VideoMode,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {what} '{path}': {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is neither a Linux bzImage nor a multiboot kernel ({linux}; {multiboot})")]
    NotAKernel { path: PathBuf, linux: fw::LinuxError, multiboot: fw::MultibootError },
    #[error("cannot load Linux kernel '{path}': {source}")]
    Linux {
        path: PathBuf,
        #[source]
        source: fw::LinuxError,
    },
    #[error("cannot load PVH kernel '{path}': {source}")]
    Pvh {
        path: PathBuf,
        #[source]
        source: fw::PvhError,
    },
    #[error("cannot load multiboot kernel '{path}': {source}")]
    Multiboot {
        path: PathBuf,
        #[source]
        source: fw::MultibootError,
    },
    #[error("cannot build ACPI tables: {0}")]
    Acpi(#[from] fw::AcpiError),
    #[error("firmware image '{path}' has an unusable size ({size} bytes; expected a multiple of 64 KiB up to 16 MiB)")]
    BadBios { path: PathBuf, size: usize },
    #[error("cannot map firmware: {0}")]
    Memory(#[from] ferrite_memory::MemoryError),
    #[error("fw_cfg: {0}")]
    FwCfg(#[from] ferrite_hw::fw_cfg::FwCfgError),
    #[error("-initrd needs -kernel")]
    InitrdWithoutKernel,
    #[error("nothing to boot: give -kernel FILE, or -bios FILE (SeaBIOS was not found: run scripts/fetch-guests or install Debian's seabios package)")]
    NothingToBoot,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::Read { what, path: path.into(), source })
}

/// Prepares memory and returns the boot CPU's initial state.
pub fn load(cfg: &MachineConfig, board: &PcBoard) -> Result<CpuState, BootError> {
    let mem = &*board.mem;
    let layout = MemoryLayout::new(mem.ram_size());
    let apic_ids: Vec<u32> = board.irq.cpus.iter().map(|c| ferrite_hw::lapic::Lapic::id(&crate::pc::interrupts::lock(&c.lapic))).collect();
    let acpi_config = AcpiConfig::new(apic_ids, layout);
    let acpi = AcpiTables::build(&acpi_config)?;
    let rsdp = acpi.install(mem)?;
    let image = cfg.kernel.as_deref().map(|p| read("kernel", p)).transpose()?;
    // -initrd FILE[ ARGS][,FILE[ ARGS]]...: multiboot modules, or Linux initrds concatenated.
    let entries = cfg.initrd.as_deref().map(|p| fw::initrd::split_list(&p.to_string_lossy())).unwrap_or_default();
    let files = entries
        .iter()
        .map(|e| read("initrd", Path::new(fw::initrd::module_entry(e).0)))
        .collect::<Result<Vec<_>, _>>()?;
    let initrd = (!files.is_empty()).then(|| fw::initrd::concat_initrds(&files));
    fill_fw_cfg(cfg, board, &layout, &acpi, image.as_deref(), initrd.as_deref())?;
    if cfg.bios.is_none() {
        // No firmware runs: leave the chipset as a BIOS would, with the 0xC0000-0xFFFFF window
        // as read/write RAM (PAM = 0x33) where the ACPI tables were just written.
        for reg in 0..ferrite_hw::pci::I440FX_PAM_COUNT {
            let off = (ferrite_hw::pci::I440FX_PAM0 + reg) as u8;
            board.pci_config_write(ferrite_hw::pci::I440FX_DEVFN, off, 1, 0x33);
        }
        crate::pc::storage::enable_ide_decode(board);
        // PCI interrupts: PIRQ A-D steered to the IRQs the ACPI link devices report, as
        // SeaBIOS programs the PIIX3 route registers.
        for (pirq, &irq) in acpi_config.pirq_irqs.iter().enumerate() {
            let reg = (ferrite_hw::pci::PIIX3_PIRQRC + pirq) as u8;
            board.pci_config_write(ferrite_hw::pci::PIIX3_DEVFN, reg, 1, u32::from(irq));
        }
    }
    let (Some(kernel_path), Some(image)) = (&cfg.kernel, image) else {
        if cfg.initrd.is_some() {
            return Err(BootError::InitrdWithoutKernel);
        }
        // Firmware boot: the CPU starts at the reset vector.
        return Ok(CpuState::reset());
    };
    let setup = match fw::SetupHeader::parse(&image) {
        Ok(_) => {
            let linux_cfg = LinuxBootConfig {
                cmdline: &cfg.append,
                initrd: initrd.as_deref(),
                entry: EntryMode::Auto,
                video: VideoMode::Serial,
                acpi_rsdp_addr: Some(rsdp),
            };
            fw::load_linux(mem, &image, &linux_cfg)
                .map_err(|source| BootError::Linux { path: kernel_path.clone(), source })?
                .setup
        }
        // A Linux header that fails to parse is a broken Linux image, not a multiboot one.
        Err(source) if image.get(0x202..0x206) == Some(b"HdrS") => {
            return Err(BootError::Linux { path: kernel_path.clone(), source })
        }
        // An ELF kernel with the PVH entry note (an uncompressed vmlinux), as QEMU tries it
        // before multiboot; an ELF without the note may still be a multiboot kernel.
        Err(_) if fw::pvh::parse_elf(&image).is_ok_and(|k| k.pvh_entry.is_some()) => {
            let pvh_cfg = fw::PvhConfig { cmdline: &cfg.append, initrd: initrd.as_deref(), acpi_rsdp_addr: Some(rsdp) };
            fw::load_pvh(mem, &image, &pvh_cfg).map_err(|source| BootError::Pvh { path: kernel_path.clone(), source })?
        }
        Err(linux_err) => {
            let modules: Vec<MultibootModule> = files
                .iter()
                .zip(&entries)
                .map(|(data, entry)| MultibootModule { data, cmdline: entry })
                .collect();
            let cmdline = fw::initrd::multiboot_cmdline(&kernel_path.to_string_lossy(), &cfg.append);
            let mb_cfg = MultibootConfig { cmdline: &cmdline, modules: &modules };
            match fw::load_multiboot(mem, &image, &mb_cfg) {
                Ok(b) => b.setup,
                Err(fw::MultibootError::NoHeader) => {
                    return Err(BootError::NotAKernel {
                        path: kernel_path.clone(),
                        linux: linux_err,
                        multiboot: fw::MultibootError::NoHeader,
                    })
                }
                Err(source) => return Err(BootError::Multiboot { path: kernel_path.clone(), source }),
            }
        }
    };
    Ok(cpu_state(&setup))
}

/// What firmware (SeaBIOS) reads through fw_cfg, as QEMU documents it: RAM size, CPU count,
/// the e820 RAM map, the ACPI tables with their loader script, and the `-kernel`/`-initrd`/
/// `-append` payloads for a firmware-driven Linux boot.
fn fill_fw_cfg(
    cfg: &MachineConfig,
    board: &PcBoard,
    layout: &MemoryLayout,
    acpi: &AcpiTables,
    kernel: Option<&[u8]>,
    initrd: Option<&[u8]>,
) -> Result<(), BootError> {
    use ferrite_hw::fw_cfg::*;
    let mut f = crate::pc::interrupts::lock(&board.fw_cfg);
    let cpus = cfg.cpus as u16;
    f.add_bytes(FW_CFG_RAM_SIZE, (board.mem.ram_size()).to_le_bytes())?;
    f.add_bytes(FW_CFG_NB_CPUS, cpus.to_le_bytes())?;
    f.add_bytes(FW_CFG_MAX_CPUS, cpus.to_le_bytes())?;
    f.add_bytes(FW_CFG_NOGRAPHIC, 1u16.to_le_bytes())?;
    // -uuid: SeaBIOS puts it in the SMBIOS system information (type 1).
    f.add_bytes(FW_CFG_UUID, cfg.uuid.unwrap_or([0; 16]))?;
    // SeaBIOS offers its boot menu (and waits for a key) only when this says so.
    f.add_bytes(FW_CFG_BOOT_MENU, u16::from(cfg.boot.menu).to_le_bytes())?;
    // QEMU's etc/e820 lists the RAM ranges; the firmware reserves its own areas.
    let mut e820 = Vec::new();
    for (base, len) in [(0u64, layout.below_4g), (1 << 32, layout.above_4g)] {
        if len > 0 {
            e820.extend_from_slice(&base.to_le_bytes());
            e820.extend_from_slice(&len.to_le_bytes());
            e820.extend_from_slice(&1u32.to_le_bytes());
        }
    }
    f.add_file(FW_CFG_FILE_E820, e820)?;
    for (name, data) in acpi.fw_cfg().files() {
        f.add_file(name, data.to_vec())?;
    }
    if let Some(image) = kernel {
        // The real-mode setup part and the protected-mode kernel are separate items.
        let setup_len = fw::SetupHeader::parse(image).map(|h| h.kernel_offset()).unwrap_or(0).min(image.len());
        f.add_bytes(FW_CFG_SETUP_SIZE, (setup_len as u32).to_le_bytes())?;
        f.add_bytes(FW_CFG_SETUP_DATA, image[..setup_len].to_vec())?;
        f.add_bytes(FW_CFG_KERNEL_SIZE, ((image.len() - setup_len) as u32).to_le_bytes())?;
        f.add_bytes(FW_CFG_KERNEL_DATA, image[setup_len..].to_vec())?;
        let mut cmdline = cfg.append.as_bytes().to_vec();
        cmdline.push(0);
        f.add_bytes(FW_CFG_CMDLINE_SIZE, (cmdline.len() as u32).to_le_bytes())?;
        f.add_bytes(FW_CFG_CMDLINE_DATA, cmdline)?;
        if let Some(initrd) = initrd {
            f.add_bytes(FW_CFG_INITRD_SIZE, (initrd.len() as u32).to_le_bytes())?;
            f.add_bytes(FW_CFG_INITRD_DATA, initrd.to_vec())?;
        }
    }
    Ok(())
}

/// Maps a firmware image below 4 GiB, and its last 128 KiB at 0xE0000 (the legacy BIOS area,
/// where the PAM registers decide between it and shadow RAM), as QEMU's pc machine does. The
/// window starts with every segment on the PCI side (PAM registers at their reset value 0).
pub fn map_bios(mem: &mut GuestMemory, path: &Path) -> Result<(), BootError> {
    let image = read("firmware", path)?;
    let size = image.len();
    if size == 0 || size % 0x10000 != 0 || size > 16 << 20 {
        return Err(BootError::BadBios { path: path.into(), size });
    }
    mem.add_rom((1u64 << 32) - size as u64, &image)?;
    let low = &image[size.saturating_sub(0x20000)..];
    mem.add_rom(0x10_0000 - low.len() as u64, low)?;
    mem.set_legacy(&[LegacyAttr::PCI; LEGACY_SEGMENTS]);
    Ok(())
}

fn segment(s: &fw::Segment) -> Segment {
    let attrs = s.type_ as u32
        | (s.s as u32) << 4
        | (s.dpl as u32) << seg_attr::DPL_SHIFT
        | (s.present as u32) << 7
        | (s.avl as u32) << 12
        | (s.l as u32) << 13
        | (s.db as u32) << 14
        | (s.g as u32) << 15;
    Segment { selector: s.selector, base: s.base, limit: s.limit, attrs }
}

/// The firmware crate's register description as CPU state.
pub fn cpu_state(b: &BootSetup) -> CpuState {
    let mut st = CpuState::reset();
    st.gpr = [0; 16];
    st.gpr[ferrite_cpu::state::reg::RAX] = b.rax;
    st.gpr[ferrite_cpu::state::reg::RBX] = b.rbx;
    st.gpr[ferrite_cpu::state::reg::RSI] = b.rsi;
    st.gpr[ferrite_cpu::state::reg::RSP] = b.rsp;
    st.rip = b.rip;
    st.rflags = b.rflags | ferrite_cpu::state::flags::FIXED1;
    st.cr0 = b.cr0 | ferrite_cpu::state::cr0::ET;
    st.cr3 = b.cr3;
    st.cr4 = b.cr4;
    st.efer = b.efer;
    st.gdtr = TableReg { base: b.gdt.base, limit: b.gdt.limit };
    st.idtr = TableReg { base: b.idt.base, limit: b.idt.limit };
    st.seg[Seg::Cs as usize] = segment(&b.cs);
    st.seg[Seg::Ds as usize] = segment(&b.ds);
    st.seg[Seg::Es as usize] = segment(&b.es);
    st.seg[Seg::Fs as usize] = segment(&b.fs);
    st.seg[Seg::Gs as usize] = segment(&b.gs);
    st.seg[Seg::Ss as usize] = segment(&b.ss);
    st
}
