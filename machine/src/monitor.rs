//! The human monitor (QEMU's HMP subset) on a `-chardev`: `-monitor unix:PATH,server,nowait`
//! or `-chardev ...,id=ID -mon chardev=ID`. Line-based: one command per line, replies end
//! with the `(ferrite) ` prompt. What it controls lives in [`MonitorTargets`], which each
//! new board updates, so commands reach the current devices across resets.
//!
//! Commands: `help`, `info balloon`, `balloon MiB`, `info status` (`running`, or `paused
//! (shutdown)` after the guest powered off under `-no-shutdown`), `system_reset`, `quit`.

use crate::chardev::{Chardev, Frontend};
use crate::pc::wiring::{MachineEvent, Wiring};
use ferrite_hw::virtio::{BalloonControl, BalloonStats};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const PROMPT: &str = "(ferrite) ";
/// Longest command line kept; longer input is discarded up to the next newline.
const MAX_LINE: usize = 4096;
const MIB: u64 = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Targets {
    wiring: Option<Arc<Wiring>>,
    balloon: Option<BalloonControl>,
    /// The balloon size asked for last, in bytes: a new board's balloon starts there.
    balloon_target: u64,
}

/// What monitor commands act on, shared by the monitor and the machine.
#[derive(Clone, Default)]
pub struct MonitorTargets {
    inner: Arc<Mutex<Targets>>,
    ram_bytes: u64,
    /// The guest powered off and `-no-shutdown` keeps the machine, stopped.
    pub shut_down: Arc<std::sync::atomic::AtomicBool>,
}

impl MonitorTargets {
    pub fn new(ram_bytes: u64) -> Self {
        MonitorTargets { inner: Arc::default(), ram_bytes, shut_down: Arc::default() }
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

    fn balloon(&self) -> Option<BalloonControl> {
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

    fn send(&self, event: MachineEvent) -> bool {
        let wiring = lock(&self.inner).wiring.clone();
        wiring.map(|w| w.raise(event)).is_some()
    }

    /// Runs one command line; returns the reply text.
    pub fn execute(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => String::new(),
            ["help" | "?"] => "balloon target -- request the guest's memory size, in MiB\n\
                info balloon -- the balloon's actual size (and guest statistics)\n\
                info status -- whether the guest runs\n\
                system_reset -- reset the machine\n\
                quit -- stop ferrite\n"
                .into(),
            ["info", "balloon"] => self.info_balloon(),
            ["info", "status"] => match self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
                true => "VM status: paused (shutdown)\n".into(),
                false => "VM status: running\n".into(),
            },
            ["balloon", size] => self.set_balloon(size),
            ["system_reset"] => self.event(MachineEvent::Reset),
            ["quit" | "q"] => self.event(MachineEvent::Quit),
            _ => format!("unknown command: '{}' (try help)\n", line.trim()),
        }
    }

    fn event(&self, e: MachineEvent) -> String {
        if self.send(e) {
            String::new()
        } else {
            "the machine is not running\n".into()
        }
    }

    fn set_balloon(&self, size: &str) -> String {
        let Some(b) = self.balloon() else { return "Error: No balloon device has been activated\n".into() };
        let Ok(mib) = size.trim_end_matches(['M', 'm']).parse::<u64>() else {
            return format!("Error: invalid size '{size}' (MiB)\n");
        };
        let keep = mib.saturating_mul(MIB).min(self.ram_bytes);
        if keep == 0 {
            return "Error: Parameter 'target' expects a size\n".into();
        }
        let balloon = self.ram_bytes - keep;
        lock(&self.inner).balloon_target = balloon;
        b.set_target(balloon);
        String::new()
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
