//! `open_image` against real files, and against qemu-img where it is installed.

mod common;
mod errors;
mod handover;
mod locking;
mod qcow2;
mod raw;
mod zeroes;
