//! `ferrite`: the command line. Parses QEMU-style options into a `MachineConfig`, builds the
//! machine and runs it; the exit status follows QEMU's conventions.

mod chardev_args;
mod cli;
mod storage_args;
mod net_args;
mod virtio_args;

use ferrite_machine::Machine;

fn main() {
    let cfg = match cli::parse(std::env::args()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrite: {e:#}");
            std::process::exit(2);
        }
    };
    let mut machine = match Machine::new(cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ferrite: {}", error_chain(&e));
            std::process::exit(1);
        }
    };
    if let Some(addr) = machine.gdb_address() {
        eprintln!("ferrite: gdb server listening on {addr}");
    }
    match machine.run() {
        Ok(outcome) => {
            if outcome == ferrite_machine::Outcome::TripleFault {
                eprintln!("ferrite: the guest triple-faulted (CPU shutdown); exiting because of -no-reboot");
            }
            std::process::exit(outcome.exit_code());
        }
        Err(e) => {
            eprintln!("ferrite: {}", error_chain(&e));
            std::process::exit(1);
        }
    }
}

/// An error with its sources, "a: b: c".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        src = inner.source();
    }
    s
}
