//! Boot firmware: Linux boot protocol, multiboot, e820, ACPI, fw_cfg content.
