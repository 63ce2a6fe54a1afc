//! Tests of the system-instruction family (interp/system) on a flat-memory machine, with
//! expected values taken from the SDM.

mod harness;

mod control;
mod debug;
mod fastcall;
mod misc;
mod pcid;
mod pku;
mod tables;
mod xsaves;
