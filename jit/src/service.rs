//! The compile thread: blocks that became hot are compiled off the vCPU thread, which keeps
//! interpreting them meanwhile and installs the code when it arrives. Jobs come in two
//! priorities: a block that stays hot while it waits is sent again as urgent, and urgent jobs
//! go first, so a backlog of warm blocks does not hold up the hottest.

use crate::{BlockSpec, Compiled, JitError, Layout, Translator};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use iced_x86::Instruction;
use std::collections::HashSet;
use std::thread::JoinHandle;
use std::time::Instant;

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
}

pub struct Done {
    pub serial: u64,
    pub epoch: u64,
    pub result: Result<Compiled, JitError>,
    /// Wall time Cranelift spent on it.
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
                let mut w = Worker { translator, compiled: HashSet::new(), epoch: 0 };
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
    /// Serials (and `Job::groups`) compiled in this epoch: the second copy of a job sent
    /// twice is dropped.
    compiled: HashSet<(u64, bool)>,
    /// Resets done so far (the vCPU's epoch counts them too).
    epoch: u64,
}

impl Worker {
    /// Compiles a job of the current epoch; false once the vCPU side is gone.
    fn compile(&mut self, job: Job, done: &Sender<Done>) -> bool {
        if !self.compiled.insert((job.serial, job.groups)) {
            return true;
        }
        let start = Instant::now();
        let spec = BlockSpec { insns: &job.insns, bitness: job.bitness, user: job.user, block: job.block, chain: job.chain, opaque: job.opaque, groups: job.groups };
        let result = self.translator.compile(&spec);
        let d = Done {
            serial: job.serial,
            epoch: job.epoch,
            result,
            compile_ns: start.elapsed().as_nanos() as u64,
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
