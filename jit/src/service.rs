//! The compile thread: blocks that became hot are compiled off the vCPU thread, which keeps
//! interpreting them meanwhile and installs the code when it arrives. Jobs come in two
//! priorities: a block that stays hot while it waits is sent again as urgent, and urgent jobs
//! go first, so a backlog of warm blocks does not hold up the hottest.

use crate::{BlockSpec, Compiled, JitError, Layout, Translator};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use iced_x86::Instruction;
use std::collections::HashSet;
use std::thread::JoinHandle;

/// A block to compile, named by the vCPU's own identifiers.
pub struct Job {
    /// The vCPU's serial number of the decoded block.
    pub serial: u64,
    /// Code-cache generation the block belongs to (see [`Service::reset`]).
    pub epoch: u64,
    pub insns: Vec<Instruction>,
    pub bitness: u32,
    pub user: bool,
    /// As in [`BlockSpec`].
    pub block: usize,
    pub chain: bool,
    /// As in [`BlockSpec`].
    pub opaque: u64,
    /// As in [`BlockSpec`]: a block is compiled at most once with and once without.
    pub groups: bool,
    /// As in [`BlockSpec`]: a block is compiled at most once quick and once at full speed.
    pub quick: bool,
    pub countdown: usize,
}

impl Job {
    /// What the translator compiles for the job.
    pub fn spec(&self) -> BlockSpec<'_> {
        let j = self;
        BlockSpec { insns: &j.insns, bitness: j.bitness, user: j.user, block: j.block, chain: j.chain, opaque: j.opaque, groups: j.groups, quick: j.quick, countdown: j.countdown }
    }
}

pub struct Done {
    pub serial: u64,
    pub epoch: u64,
    pub result: Result<Compiled, JitError>,
    /// CPU time the compile thread spent on it (a measure that other threads taking the
    /// core meanwhile do not inflate).
    pub compile_ns: u64,
    /// Host code bytes the thread holds after this block.
    pub total_code_bytes: usize,
    /// The privilege the code was compiled for (as in the job).
    pub user: bool,
}

enum Msg {
    Compile(Job),
    /// Free every block compiled so far; later jobs carry the new epoch.
    Reset,
}

/// One compile thread serving one vCPU. Dropping it stops the thread and frees its code,
/// so the vCPU must forget every entry point first.
pub struct Service {
    tx: Option<Sender<Msg>>,
    urgent: Option<Sender<Msg>>,
    rx: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    pub fn start(layout: Layout, code_bytes: usize, perf_map: bool) -> Result<Self, JitError> {
        let translator = Translator::new(layout, code_bytes, perf_map)?;
        let (tx, jobs) = unbounded::<Msg>();
        let (urgent, urgent_jobs) = unbounded::<Msg>();
        let (done, rx) = unbounded::<Done>();
        let thread = std::thread::Builder::new()
            .name("ferrite-jit".into())
            .spawn(move || {
                let corpus = std::env::var_os("FERRITE_JIT_RECORD").and_then(|p| Corpus::create(&p));
                let mut w = Worker { translator, compiled: HashSet::new(), epoch: 0, corpus };
                while let Some(msg) = next_job(&urgent_jobs, &jobs) {
                    let ok = match msg {
                        Msg::Compile(job) if job.epoch < w.epoch => true,
                        Msg::Compile(job) => {
                            // An urgent job may overtake the reset that began its epoch, which
                            // waits in the normal channel behind older jobs: catch up first.
                            let mut ok = true;
                            while ok && w.epoch < job.epoch {
                                ok = match jobs.recv() {
                                    Ok(Msg::Reset) => w.reset(),
                                    Ok(Msg::Compile(_)) => true,
                                    Err(_) => false,
                                };
                            }
                            ok && w.compile(job, &done)
                        }
                        Msg::Reset => w.reset(),
                    };
                    if !ok {
                        return;
                    }
                }
            })
            .map_err(|e| JitError::Isa(format!("cannot start the compile thread: {e}")))?;
        Ok(Service { tx: Some(tx), urgent: Some(urgent), rx, thread: Some(thread) })
    }

    /// Queues a block; `urgent` ones (already queued once and still hot) go before the rest.
    pub fn submit(&self, job: Job, urgent: bool) {
        let tx = if urgent { &self.urgent } else { &self.tx };
        if let Some(tx) = tx {
            // A dead thread only means the block stays interpreted.
            let _ = tx.send(Msg::Compile(job));
        }
    }

    /// A finished block, if any.
    pub fn poll(&self) -> Option<Done> {
        self.rx.try_recv().ok()
    }

    /// Frees all compiled code.
    ///
    /// # Safety
    /// The caller has dropped every entry point it received, and will ignore results whose
    /// epoch predates this call.
    pub unsafe fn reset(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reset);
        }
    }
}

/// The compile thread's state.
struct Worker {
    translator: Translator,
    /// Serials (with `Job::groups` and `Job::quick`) compiled in this epoch: the second copy
    /// of a job sent twice is dropped.
    compiled: HashSet<(u64, bool, bool)>,
    /// Resets done so far (the vCPU's epoch counts them too).
    epoch: u64,
    /// Where every job goes as it is compiled, with `FERRITE_JIT_RECORD=file`.
    corpus: Option<Corpus>,
}

/// A file of the blocks compiled, a line each, for the compile-time benchmark (`cargo bench
/// -p ferrite-cpu --bench compile`): `bitness user opaque groups rip bytes`, the guest code
/// in hex as iced encodes it again.
struct Corpus(std::io::BufWriter<std::fs::File>);

impl Corpus {
    fn create(path: &std::ffi::OsStr) -> Option<Self> {
        std::fs::File::create(path).ok().map(|f| Corpus(std::io::BufWriter::new(f)))
    }

    fn record(&mut self, job: &Job) {
        use std::io::Write;
        let mut encoder = iced_x86::Encoder::new(job.bitness);
        let mut bytes = String::new();
        for insn in &job.insns {
            if encoder.encode(insn, insn.ip()).is_err() {
                return;
            }
            for b in encoder.take_buffer() {
                bytes.push_str(&format!("{b:02x}"));
            }
        }
        let rip = job.insns.first().map_or(0, |i| i.ip());
        let _ = writeln!(self.0, "{} {} {:x} {} {rip:x} {bytes}", job.bitness, job.user as u8, job.opaque, job.groups as u8);
        let _ = self.0.flush();
    }
}

impl Worker {
    /// Compiles a job of the current epoch; false once the vCPU side is gone.
    fn compile(&mut self, job: Job, done: &Sender<Done>) -> bool {
        if !self.compiled.insert((job.serial, job.groups, job.quick)) {
            return true;
        }
        if let Some(corpus) = &mut self.corpus {
            corpus.record(&job);
        }
        let start = thread_cpu_ns();
        let spec = job.spec();
        let result = self.translator.compile(&spec);
        let d = Done {
            serial: job.serial,
            epoch: job.epoch,
            result,
            compile_ns: thread_cpu_ns().saturating_sub(start),
            total_code_bytes: self.translator.code_bytes(),
            user: job.user,
        };
        done.send(d).is_ok()
    }

    fn reset(&mut self) -> bool {
        self.compiled.clear();
        self.epoch += 1;
        // SAFETY: the vCPU sends Reset only after dropping every entry point of earlier
        // epochs, and ignores results of earlier epochs that were still queued.
        unsafe { self.translator.reset() }.is_ok()
    }
}

/// The calling thread's CPU time so far, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The next message, urgent ones first; `None` once the vCPU side is gone.
fn next_job(urgent: &Receiver<Msg>, normal: &Receiver<Msg>) -> Option<Msg> {
    if let Ok(m) = urgent.try_recv() {
        return Some(m);
    }
    select! {
        recv(urgent) -> m => m.ok().or_else(|| normal.recv().ok()),
        recv(normal) -> m => m.ok().or_else(|| urgent.recv().ok()),
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.tx = None;
        self.urgent = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
