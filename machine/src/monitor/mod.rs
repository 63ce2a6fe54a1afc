//! The human monitor (QEMU's HMP subset) on a `-chardev`: `-monitor unix:PATH,server,nowait`
//! or `-chardev ...,id=ID -mon chardev=ID`. Line-based: one command per line, replies end
//! with the `(ferrite) ` prompt. What it controls lives in [`MonitorTargets`], which each
//! new board updates, so commands reach the current devices across resets.
//!
//! `help` lists the commands. Those that look at or change the machine run as control jobs
//! on the machine thread ([`crate::control`]), the same ones QMP uses.

use crate::chardev::{Chardev, Frontend};
pub mod block;
mod info;
pub mod keys;
mod memory;
mod mtree;

use crate::control::{Control, ControlError, RunState};
use crate::pc::wiring::Wiring;
use ferrite_hw::virtio::{BalloonControl, BalloonStats};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const PROMPT: &str = "(ferrite) ";
const HELP: &str = "\
balloon target -- request the guest's memory size, in MiB
c|cont -- resume emulation
cpu index -- set the default CPU for info registers, x and gva2gpa
delvm tag -- delete the VM snapshot named tag
migrate uri -- migrate to tcp:HOST:PORT (live), or save to file:PATH or exec:COMMAND
migrate_cancel -- cancel the current migration
migrate_incoming uri -- load from uri (tcp:, file:, exec:) into a machine started with -incoming defer
gva2gpa addr -- print the guest physical address of a guest virtual address
info balloon -- the balloon's actual size (and guest statistics)
info block -- the block devices
info irq -- interrupt counts per interrupt controller input
info jit -- the translator's counters per CPU (TCG)
info mtree -- the memory and I/O regions
info network -- the network cards and their backends
info pci -- the PCI functions, their interrupts and BARs
info cpus -- the vCPUs and their host threads
info migrate -- the last migration's status
info registers [-a] -- the CPU registers (-a: every CPU)
info snapshots -- the VM snapshots (in the snapshot directory)
info status -- the VM status
info version -- the version of QEMU this monitor follows, and ferrite's
loadvm tag -- restore the VM snapshot named tag
q|quit -- quit the emulator
savevm [tag] -- save the VM as snapshot tag (default: vm-DATE), replacing one of that name
screendump filename -- (ferrite has no display: an error)
sendkey keys [hold_ms] -- press keys (e.g. ctrl-alt-delete) on the PS/2 keyboard, for hold_ms (100)
stop -- stop emulation
system_powerdown -- send a system power-down event (the ACPI power button)
system_reset -- reset the system
x /fmt addr -- virtual memory dump starting at addr (fmt: count, format x d u o c i, size b h w g)
xp /fmt addr -- physical memory dump starting at addr
";
/// ferrite has no display to take a picture of (QEMU's words for a machine without one).
pub const NO_DISPLAY: &str = "There is no console to take a screendump from";
/// Longest command line kept; longer input is discarded up to the next newline.
const MAX_LINE: usize = 4096;
const MIB: u64 = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A command's reply: nothing, or QEMU's `Error: ...` line.
fn error_line<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    result.err().map(|e| format!("Error: {e}\n")).unwrap_or_default()
}

/// The machine has no balloon device.
#[derive(Debug, thiserror::Error)]
#[error("No balloon device has been activated")]
pub struct NoBalloon;

#[derive(Default)]
struct Targets {
    wiring: Option<Arc<Wiring>>,
    balloon: Option<BalloonControl>,
    /// The balloon size asked for last, in bytes: a new board's balloon starts there.
    balloon_target: u64,
}

/// What monitor commands act on, shared by the monitor and the machine.
#[derive(Clone)]
pub struct MonitorTargets {
    inner: Arc<Mutex<Targets>>,
    ram_bytes: u64,
    pub control: Control,
}

impl MonitorTargets {
    pub fn new(ram_bytes: u64, control: Control) -> Self {
        MonitorTargets { inner: Arc::default(), ram_bytes, control }
    }

    pub fn ram_bytes(&self) -> u64 {
        self.ram_bytes
    }

    /// A new board: its wiring (for machine events) and balloon (which starts at the last
    /// target).
    pub fn attach(&self, wiring: Arc<Wiring>, balloon: Option<BalloonControl>) {
        let mut t = lock(&self.inner);
        if let Some(b) = &balloon {
            b.set_target(t.balloon_target);
        }
        t.wiring = Some(wiring);
        t.balloon = balloon;
    }

    pub fn balloon(&self) -> Option<BalloonControl> {
        lock(&self.inner).balloon.clone()
    }

    /// Asks the balloon's driver for fresh statistics every `interval` (QEMU's
    /// `guest-stats-polling-interval`), for as long as the process runs.
    pub fn poll_balloon_stats(&self, interval: Duration) {
        let me = self.clone();
        let _ = std::thread::Builder::new().name("balloon-stats".into()).spawn(move || loop {
            std::thread::sleep(interval);
            if let Some(b) = me.balloon() {
                b.request_stats();
            }
        });
    }

    /// Runs one command line; returns the reply text.
    pub fn execute(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            [] => Ok(String::new()),
            ["help" | "?"] => Ok(HELP.into()),
            ["info", "balloon"] => Ok(self.info_balloon()),
            ["info", "status"] => Ok(self.info_status()),
            ["info", "migrate"] => Ok(match self.control.migration() {
                Some(i) => format!(
                    "Migration status: {}\ntotal time: {} ms\ndowntime: {} ms\ntransferred ram: {} kbytes\nremaining ram: {} kbytes\ntotal ram: {} kbytes\ndirty sync count: {}\n",
                    i.status, i.total_time_ms, i.downtime_ms, i.transferred / 1024, i.remaining / 1024, i.ram_total / 1024, i.dirty_sync_count
                ) + &i.error.as_ref().map(|e| format!("error: {e}\n")).unwrap_or_default(),
                None => String::new(),
            }),
            ["migrate_cancel"] => {
                self.control.migration_cancel.store(true, std::sync::atomic::Ordering::Release);
                Ok(String::new())
            }
            ["migrate", uri] => self.job_with(uri, |m, uri| error_line(m.migrate_out(uri))),
            ["migrate_incoming", uri] => self.job_with(uri, |m, uri| error_line(m.migrate_incoming(uri))),
            ["savevm"] => self.job(|m| error_line(m.save_vm(None))),
            ["savevm", tag] => self.job_with(tag, |m, tag| error_line(m.save_vm(Some(tag)))),
            ["loadvm", tag] => self.job_with(tag, |m, tag| error_line(m.load_vm(tag))),
            ["delvm", tag] => self.job_with(tag, |m, tag| error_line(m.delete_vm(tag))),
            [cmd @ ("loadvm" | "delvm" | "sendkey" | "migrate_incoming" | "screendump")] => Ok(format!("{cmd}: string expected\nTry \"help {cmd}\" for more information\n")),
            ["sendkey", spec, hold @ ..] if hold.len() <= 1 => {
                let hold = match hold.first().map(|h| h.parse::<u64>()) {
                    None => Ok(keys::DEFAULT_HOLD),
                    Some(Ok(ms)) => Ok(Duration::from_millis(ms)),
                    Some(Err(_)) => Err(format!("invalid hold time '{}' (milliseconds)", hold[0])),
                };
                match (keys::parse_keys(spec), hold) {
                    (Ok(list), Ok(hold)) => self.job(move |m| {
                        m.send_keys(list, hold);
                        String::new()
                    }),
                    (Err(e), _) | (_, Err(e)) => Ok(format!("{e}\n")),
                }
            }
            ["screendump", ..] => Ok(format!("Error: {NO_DISPLAY}\n")),
            ["info", "version"] => Ok(format!("{} (ferrite {})\n", crate::qmp::QEMU_VERSION_STR, env!("CARGO_PKG_VERSION"))),
            ["info", "pci"] => self.job(|m| m.info_pci()),
            ["info", "network"] => self.job(|m| m.info_network()),
            ["info", "snapshots"] => self.job(|m| m.info_snapshots()),
            ["info", "mtree"] => self.job(|m| m.info_mtree()),
            ["info", "irq"] => self.job(|m| m.info_irq()),
            ["info", "jit"] => self.job(|m| m.info_jit()),
            ["info", "block"] => self.job(|m| m.block_devices().iter().map(|b| b.to_text()).collect()),
            ["info", "cpus"] => self.job(|m| m.info_cpus()),
            ["info", "registers" | "reg"] => self.job(|m| m.info_registers_of(m.monitor_cpu)),
            ["info", "registers" | "reg", "-a"] => self.job(|m| (0..m.vcpus.len()).map(|i| format!("\nCPU#{i}\n{}", m.info_registers_of(i))).collect()),
            ["info", ..] => Ok(format!("unknown info command: '{}' (try help)\n", line.trim())),
            ["cpu", n] => match n.parse::<usize>() {
                Ok(i) => self.job(move |m| match i < m.vcpus.len() {
                    true => {
                        m.monitor_cpu = i;
                        String::new()
                    }
                    false => "invalid CPU index\n".into(),
                }),
                Err(_) => Ok("usage: cpu INDEX\n".into()),
            },
            ["balloon", size] => Ok(self.set_balloon(size)),
            ["stop"] => self.job(|m| error_line(m.pause())),
            ["cont" | "c"] => self.job(|m| error_line(m.resume())),
            ["system_reset"] => self.job(|m| error_line(m.monitor_reset("host-qmp-system-reset"))),
            ["system_powerdown"] => self.job(|m| {
                m.power_button();
                String::new()
            }),
            ["quit" | "q"] => self.job(|m| {
                m.quit("host-qmp-quit");
                String::new()
            }),
            [cmd @ ("x" | "xp"), rest @ ..] => {
                let physical = *cmd == "xp";
                match memory::parse_dump(rest) {
                    Ok(dump) => self.job(move |m| m.dump_memory(&dump, physical)),
                    Err(e) => Ok(format!("{e}\n")),
                }
            }
            ["gva2gpa", addr] => match memory::parse_number(addr) {
                Some(a) => self.job(move |m| match m.translate_for_monitor(a) {
                    Some(p) => format!("gpa: {p:#x}\n"),
                    None => "Unmapped\n".into(),
                }),
                None => Ok("usage: gva2gpa ADDR\n".into()),
            },
            _ => Ok(format!("unknown command: '{}' (try help)\n", line.trim())),
        };
        reply.unwrap_or_else(|e| format!("Error: {e}\n"))
    }

    /// `VM status: running`, or `paused` with QEMU's reason in brackets.
    pub fn info_status(&self) -> String {
        match self.control.run_state() {
            RunState::Running => "VM status: running\n".into(),
            RunState::Paused => "VM status: paused\n".into(),
            other => format!("VM status: paused ({})\n", other.name()),
        }
    }

    fn job(&self, f: impl FnOnce(&mut crate::Machine) -> String + Send + 'static) -> Result<String, ControlError> {
        self.control.call(f)
    }

    /// A job on the command's one argument (QEMU's quotes around it taken off).
    fn job_with(&self, arg: &str, f: impl FnOnce(&mut crate::Machine, &str) -> String + Send + 'static) -> Result<String, ControlError> {
        let arg = arg.trim_matches('"').to_string();
        self.job(move |m| f(m, &arg))
    }

    fn set_balloon(&self, size: &str) -> String {
        let Ok(mib) = size.trim_end_matches(['M', 'm']).parse::<u64>() else {
            return format!("Error: invalid size '{size}' (MiB)\n");
        };
        if mib == 0 {
            return "Error: Parameter 'target' expects a size\n".into();
        }
        match self.set_balloon_bytes(mib.saturating_mul(MIB)) {
            Ok(()) => String::new(),
            Err(e) => format!("Error: {e}\n"),
        }
    }

    /// Asks the guest to keep `bytes` of its memory (QMP's `balloon`).
    pub fn set_balloon_bytes(&self, bytes: u64) -> Result<(), NoBalloon> {
        let b = self.balloon().ok_or(NoBalloon)?;
        let balloon = self.ram_bytes - bytes.min(self.ram_bytes);
        lock(&self.inner).balloon_target = balloon;
        b.set_target(balloon);
        Ok(())
    }

    fn info_balloon(&self) -> String {
        let Some(b) = self.balloon() else { return "Error: No balloon device has been activated\n".into() };
        // QEMU's line: the memory the guest has, not the balloon's size.
        let mut out = format!("balloon: actual={}\n", self.ram_bytes.saturating_sub(b.actual_bytes()) / MIB);
        out += &format!("target={} inflated={} reported-free={}\n", (self.ram_bytes - b.target_bytes().min(self.ram_bytes)) / MIB, b.inflated_pages() * 4096 / MIB, b.reported_bytes() / MIB);
        if let Some(s) = b.stats() {
            out += &stats_lines(&s);
        }
        out
    }
}

fn stats_lines(s: &BalloonStats) -> String {
    let fields = [
        ("stat-total-memory", s.total_memory),
        ("stat-free-memory", s.free_memory),
        ("stat-available-memory", s.available_memory),
        ("stat-disk-caches", s.disk_caches),
        ("stat-swap-in", s.swap_in),
        ("stat-swap-out", s.swap_out),
        ("stat-major-faults", s.major_faults),
        ("stat-minor-faults", s.minor_faults),
    ];
    fields.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={v}\n"))).collect()
}

/// The monitor as a chardev's frontend.
pub struct Monitor {
    chardev: Arc<Chardev>,
    targets: MonitorTargets,
    line: Mutex<Vec<u8>>,
}

impl Monitor {
    /// Starts the monitor on `chardev`.
    pub fn start(chardev: Arc<Chardev>, targets: MonitorTargets) {
        let monitor = Arc::new(Monitor { chardev: chardev.clone(), targets, line: Mutex::new(Vec::new()) });
        chardev.attach(monitor);
    }
}

impl Frontend for Monitor {
    fn receive(&self, data: &[u8]) -> usize {
        for &b in data {
            let command = {
                let mut line = lock(&self.line);
                match b {
                    b'\n' => Some(String::from_utf8_lossy(&std::mem::take(&mut *line)).into_owned()),
                    b'\r' => None,
                    _ if line.len() < MAX_LINE => {
                        line.push(b);
                        None
                    }
                    _ => None,
                }
            };
            if let Some(cmd) = command {
                let reply = self.targets.execute(&cmd);
                self.chardev.write(format!("{reply}{PROMPT}").as_bytes());
            }
        }
        data.len()
    }

    fn connected(&self, up: bool) {
        if up {
            self.chardev.write(format!("ferrite monitor - type 'help' for more information\n{PROMPT}").as_bytes());
        }
    }
}
