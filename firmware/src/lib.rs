//! Boot firmware: Linux boot protocol, multiboot, e820, ACPI tables.
//!
//! Everything here writes into guest memory through the [`GuestMemory`] trait, which the machine
//! implements over its RAM mapping, and describes the initial CPU state as a plain-data
//! [`BootSetup`] that the machine loads into the boot vCPU. Nothing here depends on the cpu or hw
//! crates, and no input file can make it panic: malformed images are reported as errors.

pub mod acpi;
pub mod boot_state;
pub mod e820;
pub mod linux;
pub mod memory;
pub mod multiboot;

pub use acpi::{AcpiConfig, AcpiError, AcpiTables, FwCfgAcpi};
pub use boot_state::{BootSetup, CpuMode, DescriptorTable, Segment};
pub use e820::{E820Entry, E820Type, MemoryLayout};
pub use linux::{load_linux, EntryMode, LinuxBoot, LinuxBootConfig, LinuxError, SetupHeader, VideoMode};
pub use memory::{GuestMemory, GuestMemoryError, VecMemory};
pub use multiboot::{load_multiboot, MultibootBoot, MultibootConfig, MultibootError, MultibootModule};
