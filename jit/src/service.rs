//! The compile thread: blocks that became hot are compiled off the vCPU thread, which keeps
//! interpreting them meanwhile and installs the code when it arrives. Jobs come in
//! [`PRIORITIES`] levels and the thread takes the highest first: a block that stays hot while
//! it waits is sent again a level up each time its count doubles, so a backlog of warm blocks
//! does not hold up the hottest (the copy sent first is then skipped, see [`Job`]).

use crate::{BlockSpec, Compiled, JitError, Layout, Translator};
use crossbeam_channel::{unbounded, Receiver, Select, Sender, TryRecvError};
use iced_x86::Instruction;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A block to compile, named by the vCPU's own identifiers. Clones are the same request: the
/// vCPU sends a block that stays hot while it waits again, a level up, as a clone, and the
/// compile thread takes the instructions once, so a copy met later costs nothing to skip and
/// a backlog holds each block's instructions once.
#[derive(Clone)]
pub struct Job(Arc<Request>);

struct Request {
    /// The vCPU's serial number of the decoded block.
    serial: u64,
    /// Code-cache generation the block belongs to (see [`Service::reset`]).
    epoch: u64,
    /// How to compile the block; its `insns` are kept apart, in `waiting`.
    spec: BlockSpec<'static>,
    waiting: Mutex<Waiting>,
}

enum Waiting {
    Insns(Vec<Instruction>),
    /// The block left the vCPU's cache while queued: answered `Unwanted`, once.
    Cancelled,
    /// Compiled or answered: the copies met later are skipped.
    Taken,
}

impl Job {
    /// A request to compile `insns` as `spec` says (whose own `insns` is not read).
    pub fn new(serial: u64, epoch: u64, insns: Vec<Instruction>, spec: BlockSpec<'static>) -> Job {
        Job(Arc::new(Request { serial, epoch, spec: BlockSpec { insns: &[], ..spec }, waiting: Mutex::new(Waiting::Insns(insns)) }))
    }

    /// The block left the vCPU's cache: the compile thread answers a copy still queued with
    /// [`JitError::Unwanted`] instead of compiling it, and the instructions go now.
    pub fn cancel(&self) {
        let mut w = self.lock();
        if let Waiting::Insns(_) = *w {
            *w = Waiting::Cancelled;
        }
    }

    /// Not yet taken by the compile thread (worth sending again).
    pub fn is_waiting(&self) -> bool {
        matches!(*self.lock(), Waiting::Insns(_))
    }

    fn take(&self) -> Waiting {
        std::mem::replace(&mut *self.lock(), Waiting::Taken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Nothing panics while holding it; a poisoned lock still holds a whole value.
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner())
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

/// Levels of [`Service::submit`]: 0 for a block's first request, higher for hotter blocks.
pub const PRIORITIES: usize = 8;

/// One compile thread serving one vCPU. Dropping it stops the thread and frees its code,
/// so the vCPU must forget every entry point first.
pub struct Service {
    /// A channel per priority; resets go through level 0, in order with first requests.
    queues: Vec<Sender<Msg>>,
    rx: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    pub fn start(layout: Layout, code_bytes: usize, perf_map: bool) -> Result<Self, JitError> {
        let translator = Translator::new(layout, code_bytes, perf_map)?;
        let (queues, levels): (Vec<_>, Vec<_>) = (0..PRIORITIES).map(|_| unbounded::<Msg>()).unzip();
        let (done, rx) = unbounded::<Done>();
        let thread = std::thread::Builder::new()
            .name("ferrite-jit".into())
            .spawn(move || {
                let corpus = std::env::var_os("FERRITE_JIT_RECORD").and_then(|p| Corpus::create(&p));
                let mut w = Worker { translator, epoch: 0, corpus };
                let jobs = &levels[0];
                while let Some(msg) = next_job(&levels) {
                    let ok = match msg {
                        Msg::Compile(job) if job.0.epoch < w.epoch => true,
                        Msg::Compile(job) => {
                            // A job sent at a higher level may overtake the reset that began its
                            // epoch, which waits at level 0 behind older jobs: catch up first.
                            let mut ok = true;
                            while ok && w.epoch < job.0.epoch {
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
        Ok(Service { queues, rx, thread: Some(thread) })
    }

    /// Queues a block at `priority` (below [`PRIORITIES`]; higher levels go first).
    pub fn submit(&self, job: Job, priority: usize) {
        if let Some(tx) = self.queues.get(priority.min(PRIORITIES - 1)) {
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
        if let Some(tx) = self.queues.first() {
            let _ = tx.send(Msg::Reset);
        }
    }
}

/// The compile thread's state.
struct Worker {
    translator: Translator,
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

    fn record(&mut self, spec: &BlockSpec<'_>) {
        use std::io::Write;
        let mut encoder = iced_x86::Encoder::new(spec.bitness);
        let mut bytes = String::new();
        for insn in spec.insns {
            if encoder.encode(insn, insn.ip()).is_err() {
                return;
            }
            for b in encoder.take_buffer() {
                bytes.push_str(&format!("{b:02x}"));
            }
        }
        let rip = spec.insns.first().map_or(0, |i| i.ip());
        let _ = writeln!(self.0, "{} {} {:x} {} {rip:x} {bytes}", spec.bitness, spec.user as u8, spec.opaque, spec.groups as u8);
        let _ = self.0.flush();
    }
}

impl Worker {
    /// Compiles a job of the current epoch; false once the vCPU side is gone.
    fn compile(&mut self, job: Job, done: &Sender<Done>) -> bool {
        let start = thread_cpu_ns();
        let result = match job.take() {
            Waiting::Insns(insns) => {
                let spec = BlockSpec { insns: &insns, ..job.0.spec };
                if let Some(corpus) = &mut self.corpus {
                    corpus.record(&spec);
                }
                self.translator.compile(&spec)
            }
            Waiting::Cancelled => Err(JitError::Unwanted),
            Waiting::Taken => return true,
        };
        let d = Done {
            serial: job.0.serial,
            epoch: job.0.epoch,
            result,
            compile_ns: thread_cpu_ns().saturating_sub(start),
            total_code_bytes: self.translator.code_bytes(),
            user: job.0.spec.user,
        };
        done.send(d).is_ok()
    }

    fn reset(&mut self) -> bool {
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

/// The next message, from the highest level that has one (waiting for one if none has);
/// `None` once the vCPU side is gone.
fn next_job(levels: &[Receiver<Msg>]) -> Option<Msg> {
    loop {
        for level in levels.iter().rev() {
            match level.try_recv() {
                Ok(m) => return Some(m),
                // The senders all go at once, when the vCPU side drops the service.
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
        let mut ready = Select::new();
        for level in levels {
            ready.recv(level);
        }
        ready.ready();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.queues.clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_takes_the_highest_level_first_and_stops_when_the_vcpu_goes() {
        let (queues, levels): (Vec<_>, Vec<_>) = (0..PRIORITIES).map(|_| unbounded::<Msg>()).unzip();
        // Resets stand in for jobs: only the order they come out in matters.
        for level in [0, 3, 1, 3, PRIORITIES - 1] {
            queues[level].send(Msg::Reset).unwrap();
        }
        let order: Vec<usize> = (0..5)
            .map(|_| {
                let before: Vec<usize> = levels.iter().map(|l| l.len()).collect();
                assert!(matches!(next_job(&levels), Some(Msg::Reset)));
                (0..PRIORITIES).find(|&l| levels[l].len() < before[l]).unwrap()
            })
            .collect();
        assert_eq!(order, [PRIORITIES - 1, 3, 3, 1, 0]);
        // Waits for the next message, whichever level it comes at.
        let late = queues[2].clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            late.send(Msg::Reset).unwrap();
        });
        assert!(matches!(next_job(&levels), Some(Msg::Reset)));
        sender.join().unwrap();
        drop(queues);
        assert!(next_job(&levels).is_none());
    }
}
