//! Boot firmware: Linux boot protocol, multiboot, e820, ACPI tables.
//!
//! Everything here writes into the machine's guest memory, a shared [`GuestMemory`]
//! (`ferrite-memory`) reached through `&self`, and describes the initial CPU state as a
//! plain-data [`BootSetup`] that the machine loads into the boot vCPU. Loader writes go through
//! [`GuestMemory::write`], so they mark pages dirty and drop decoded code like any other write.
//! Nothing here depends on the cpu or hw crates, and no input file can make it panic: malformed
//! images are reported as errors.

pub mod acpi;
pub mod boot_state;
pub mod e820;
pub mod initrd;
pub(crate) mod le;
pub mod linux;
pub mod multiboot;
pub mod pvh;

#[cfg(test)]
pub(crate) mod test_mem;

pub use acpi::{AcpiConfig, AcpiError, AcpiTables, FwCfgAcpi};
pub use boot_state::{BootSetup, CpuMode, DescriptorTable, Segment};
pub use e820::{E820Entry, E820Type, MemoryLayout};
pub use ferrite_memory::{GuestMemory, MemoryError};
pub use linux::{load_linux, EntryMode, LinuxBoot, LinuxBootConfig, LinuxError, SetupHeader, VideoMode};
pub use pvh::{load_pvh, PvhConfig, PvhError};
pub use multiboot::{load_multiboot, MultibootBoot, MultibootConfig, MultibootError, MultibootModule};
