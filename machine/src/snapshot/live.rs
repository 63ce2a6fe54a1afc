//! Live migration over TCP (`migrate uri=tcp:HOST:PORT` on the source, `-incoming
//! tcp:HOST:PORT` on the destination): iterative pre-copy of RAM with the dirty log.
//!
//! The source sends the machine's shape and waits for the destination's verdict (`OK`, or
//! `ERR` and the differences) before any RAM moves. It then sends all RAM while the guest
//! runs, and passes of the pages dirtied meanwhile until what is left would go within the
//! downtime limit at the measured bandwidth (or after `MAX_PASSES`). It stops the vCPUs, sends the
//! rest with the device state, and waits for the destination's `DONE` before it stays stopped
//! (`postmigrate`); the destination runs the guest from there. The disk images are handed
//! over just before the rest is sent (see [`crate::images`]). If anything fails (the
//! destination refuses, dies or goes silent, the connection breaks, `migrate_cancel`), the
//! source runs on and `query-migrate` says why.
//!
//! Each pass takes the dirty log in a control job, with the vCPUs stopped for the moment:
//! they drop the write permissions their TLBs cached when they start again, so every later
//! write is logged. Pages are read while the guest runs; a page written during its read is
//! dirty again and goes in the next pass.

use super::stream::{self, Checked, PAGE};
use crate::control::{Control, MigrationInfo, RunState};
use crate::Machine;
use ferrite_memory::GuestMemory;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Passes after which the rest goes in the stop-and-copy phase whatever its size.
const MAX_PASSES: u32 = 30;
/// Pages sent between looks at the bandwidth limit and the cancel flag.
const CHUNK: usize = 256;
/// How long the source waits for the destination's verdicts.
const ANSWER: Duration = Duration::from_secs(60);

/// `migrate-set-parameters`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationParams {
    /// Bytes per second (QEMU's default: 128 MiB/s).
    pub max_bandwidth: u64,
    /// Milliseconds the guest may stay stopped (QEMU's default: 300).
    pub downtime_limit_ms: u64,
}

impl Default for MigrationParams {
    fn default() -> Self {
        MigrationParams { max_bandwidth: 128 << 20, downtime_limit_ms: 300 }
    }
}

/// Why a live migration ended without the guest moving.
#[derive(Debug)]
enum Failure {
    Cancelled,
    Error(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.to_string())
    }
}

/// Starts migrating to `addr` on a thread of its own; the guest runs on meanwhile.
pub fn start_outgoing(control: Control, addr: String) {
    control.migration_cancel.store(false, Ordering::Release);
    control.set_migration(MigrationInfo::setup());
    control.events.emit("MIGRATION", serde_json::json!({"status": "setup"}));
    let _ = std::thread::Builder::new().name("migration".into()).spawn(move || {
        let started = Instant::now();
        let result = outgoing(&control, &addr, started);
        let info = match result {
            Ok(mut info) => {
                info.total_time_ms = started.elapsed().as_millis() as u64;
                info
            }
            Err(Failure::Cancelled) => MigrationInfo::ended("cancelled", None),
            Err(Failure::Error(e)) => MigrationInfo::ended("failed", Some(e)),
        };
        let status = info.status;
        control.set_migration(info);
        control.events.emit("MIGRATION", serde_json::json!({"status": status}));
    });
}

fn outgoing(control: &Control, addr: &str, started: Instant) -> Result<MigrationInfo, Failure> {
    let sock = addr.parse::<std::net::SocketAddr>().map_err(|_| format!("tcp:{addr}: expected tcp:HOST:PORT with a numeric address"))?;
    let conn = TcpStream::connect_timeout(&sock, Duration::from_secs(10)).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    conn.set_read_timeout(Some(ANSWER))?;
    let mut replies = BufReader::new(conn.try_clone()?);
    // The dirty log starts now: the first pass sends everything.
    let (mem, shape) = control.call(|m: &mut Machine| {
        m.check_accel().map_err(|e| e.to_string())?;
        m.start_dirty_log()?;
        m.take_dirty()?;
        Ok::<_, String>((m.board.mem.clone(), m.shape()))
    })??;
    let mut out = Checked::new(std::io::BufWriter::with_capacity(1 << 20, conn));
    stream::write_start(&mut out, &shape)?;
    out.flush()?;
    expect(&mut replies, "OK")?;
    let params = control.migration_params();
    let mut info = MigrationInfo::active(mem.ram_size());
    control.set_migration(info.clone());
    control.events.emit("MIGRATION", serde_json::json!({"status": "active"}));

    let below = (0..mem.below_4g()).step_by(PAGE);
    let above = (super::FOUR_GIB..super::FOUR_GIB + mem.above_4g()).step_by(PAGE);
    let all: Vec<u64> = below.chain(above).collect();
    let mut sender = Sender { out: &mut out, mem: &mem, control, params, sent_bytes: 0, window: Instant::now() };
    let mut pages = sender.send(&all, true, &mut info)?;
    let mut pass = 1;
    let dirty = loop {
        let pass_started = Instant::now();
        let dirty = control.call({
            let mem = mem.clone();
            move |m: &mut Machine| Arc::ptr_eq(&m.board.mem, &mem).then(|| m.take_dirty())
        })?
        .ok_or("the machine was reset during the migration")??;
        let remaining = dirty.len() as u64 * PAGE as u64;
        let bandwidth = sender.bandwidth().max(1);
        let expected_ms = remaining * 1000 / bandwidth;
        info.remaining = remaining;
        info.expected_downtime_ms = expected_ms;
        info.dirty_sync_count = pass;
        info.dirty_pages_rate = (dirty.len() as f64 / pass_started.elapsed().as_secs_f64().max(0.001)) as u64;
        control.set_migration(info.clone());
        control.events.emit("MIGRATION_PASS", serde_json::json!({"pass": pass}));
        if expected_ms <= params.downtime_limit_ms || pass >= MAX_PASSES {
            break dirty;
        }
        let addrs: Vec<u64> = dirty.iter().map(|p| p * PAGE as u64).collect();
        pages += sender.send(&addrs, false, &mut info)?;
        pass += 1;
    };

    // Stop and copy: the vCPUs stay stopped for the rest of this job.
    let downtime_start = Instant::now();
    let final_result = control.call(move |m: &mut Machine| -> Result<(u64, u64), String> {
        let was = m.control.run_state();
        m.control.set_run_state(RunState::FinishMigrate);
        if was == RunState::Running {
            m.control.events.emit("STOP", serde_json::json!({}));
        }
        // Disk requests in flight finish now, so what they write is in the last pages; the
        // images are handed over before the end of the state leaves: the destination takes
        // them once it has all of it. Pages sent, and the stream's length:
        let finished = m.hand_over_images().and_then(|()| -> Result<(u64, u64), String> {
            let mut last = dirty;
            last.extend(m.take_dirty()?);
            last.sort_unstable();
            last.dedup();
            let addrs: Vec<u64> = last.iter().map(|p| p * PAGE as u64).collect();
            let mem = m.board.mem.clone();
            let n = stream::write_pages(&mut out, addrs.into_iter(), false, |a, p| read_page(&mem, a, p)).map_err(|e| e.to_string())?;
            stream::end_ram(&mut out).map_err(|e| e.to_string())?;
            m.write_device_state(&mut out).map_err(|e| e.to_string())?;
            let bytes = out.finish().map_err(|e| e.to_string())?;
            expect(&mut replies, "DONE")?;
            Ok((n, bytes))
        });
        match finished {
            Ok(done) => {
                m.control.set_run_state(RunState::Postmigrate);
                Ok(done)
            }
            Err(e) => {
                // The guest runs on here, unless the destination has its images.
                let e = m.recover_from_failed_migration(was, e);
                if m.control.run_state() == RunState::Running {
                    m.control.events.emit("RESUME", serde_json::json!({}));
                }
                Err(e)
            }
        }
    })?;
    let (last_pages, bytes) = final_result?;
    info.status = "completed";
    info.downtime_ms = downtime_start.elapsed().as_millis() as u64;
    info.remaining = 0;
    info.pages = pages + last_pages;
    info.transferred = bytes;
    info.total_time_ms = started.elapsed().as_millis() as u64;
    Ok(info)
}

fn read_page(mem: &GuestMemory, gpa: u64, page: &mut [u8]) {
    if mem.read(gpa, page).is_err() {
        page.fill(0);
    }
}

/// Reads the destination's next verdict line: `want`, or `ERR reason`.
fn expect(replies: &mut impl BufRead, want: &str) -> Result<(), String> {
    let mut line = String::new();
    match replies.read_line(&mut line) {
        Ok(0) => Err("the destination closed the connection".into()),
        Ok(_) if line.trim() == want => Ok(()),
        Ok(_) => Err(format!("the destination refused: {}", line.trim().trim_start_matches("ERR").trim())),
        Err(e) => Err(format!("no answer from the destination: {e}")),
    }
}

/// Sends pages while the guest runs, within the bandwidth limit, watching for a cancel.
struct Sender<'a, W: Write> {
    out: &'a mut Checked<W>,
    mem: &'a GuestMemory,
    control: &'a Control,
    params: MigrationParams,
    sent_bytes: u64,
    window: Instant,
}

impl<W: Write> Sender<'_, W> {
    fn send(&mut self, addrs: &[u64], skip_zero: bool, info: &mut MigrationInfo) -> Result<u64, Failure> {
        let mut pages = 0;
        for chunk in addrs.chunks(CHUNK) {
            if self.control.migration_cancel.load(Ordering::Acquire) {
                return Err(Failure::Cancelled);
            }
            let before = self.out.bytes;
            pages += stream::write_pages(self.out, chunk.iter().copied(), skip_zero, |a, p| read_page(self.mem, a, p))?;
            let sent = self.out.bytes - before;
            self.sent_bytes += sent;
            info.transferred += sent;
            // Bandwidth limit: no faster than max-bandwidth over the whole migration.
            let allowed = Duration::from_secs_f64(self.sent_bytes as f64 / self.params.max_bandwidth.max(1) as f64);
            if let Some(wait) = allowed.checked_sub(self.window.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.out.flush()?;
        info.pages += pages;
        self.control.set_migration(info.clone());
        Ok(pages)
    }

    /// Bytes per second so far.
    fn bandwidth(&self) -> u64 {
        (self.sent_bytes as f64 / self.window.elapsed().as_secs_f64().max(0.001)) as u64
    }
}

/// `-incoming tcp:HOST:PORT`: waits for one source, answers its verdicts, loads.
pub fn incoming(m: &mut Machine, addr: &str) -> Result<(), String> {
    let (conn, peer) = accept(listen(addr)?, addr)?;
    load_from(m, conn, peer)
}

/// Listens for a source on `addr`.
pub fn listen(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Waits for the one source (and listens no more).
pub fn accept(listener: TcpListener, addr: &str) -> Result<(TcpStream, std::net::SocketAddr), String> {
    listener.accept().map_err(|e| format!("accepting on {addr}: {e}"))
}

/// Answers the source's verdicts and loads what it sends.
pub fn load_from(m: &mut Machine, conn: TcpStream, peer: std::net::SocketAddr) -> Result<(), String> {
    let mut answers = conn.try_clone().map_err(|e| e.to_string())?;
    let mut reply = |line: &str| {
        let _ = answers.write_all(format!("{line}\n").as_bytes());
    };
    let loaded = m.load_state(&conn, |verdict| match verdict {
        Ok(()) => reply("OK"),
        Err(why) => reply(&format!("ERR {why}")),
    });
    match loaded {
        Ok(()) => {
            reply("DONE");
            Ok(())
        }
        Err(e) => {
            reply(&format!("ERR {}", e.to_string().replace('\n', "; ")));
            Err(format!("from {peer}: {e}"))
        }
    }
}
