//! `ferrite`: the command line. Parses QEMU-style options into a `MachineConfig`, builds the
//! machine and runs it; the exit status follows QEMU's conventions.

mod chardev_args;
mod cli;
mod daemon;
mod machine_args;
mod storage_args;
mod net_args;
#[cfg(test)]
mod qemu_syntax_tests;
mod virtio_args;

use ferrite_machine::Machine;

fn main() {
    let (cfg, process) = match cli::parse_all(std::env::args()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrite: {e:#}");
            std::process::exit(2);
        }
    };
    let fail = |e: anyhow::Error| -> ! {
        eprintln!("ferrite: {e:#}");
        std::process::exit(1);
    };
    let daemon = process.daemonize.then(daemon::start).transpose().unwrap_or_else(|e| fail(e));
    if let Some(p) = &process.pidfile {
        daemon::write_pidfile(p).unwrap_or_else(|e| fail(e));
    }
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
    if let Some(log) = &process.log_file {
        daemon::redirect_log(log).unwrap_or_else(|e| fail(e));
    }
    if let Some(d) = daemon {
        d.ready(process.log_file.is_some()).unwrap_or_else(|e| fail(e));
    }
    let code = match machine.run() {
        Ok(outcome) => {
            if outcome == ferrite_machine::Outcome::TripleFault {
                eprintln!("ferrite: the guest triple-faulted (CPU shutdown); exiting because of -no-reboot");
            }
            outcome.exit_code()
        }
        Err(e) => {
            eprintln!("ferrite: {}", error_chain(&e));
            1
        }
    };
    if let Some(p) = &process.pidfile {
        let _ = std::fs::remove_file(p);
    }
    std::process::exit(code);
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
