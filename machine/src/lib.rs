//! The PC board: memory, buses, devices and accelerators wired together.
