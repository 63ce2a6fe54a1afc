//! The compile thread: blocks that became hot are compiled off the vCPU thread, which keeps
//! interpreting them meanwhile and installs the code when it arrives.

use crate::{BlockSpec, Compiled, JitError, Layout, Translator};
use crossbeam_channel::{unbounded, Receiver, Sender};
use iced_x86::Instruction;
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
    pub chain: Option<[usize; crate::CHAIN_EXITS]>,
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
    rx: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    pub fn start(layout: Layout, code_bytes: usize, perf_map: bool) -> Result<Self, JitError> {
        let mut translator = Translator::new(layout, code_bytes, perf_map)?;
        let (tx, jobs) = unbounded::<Msg>();
        let (done, rx) = unbounded::<Done>();
        let thread = std::thread::Builder::new()
            .name("ferrite-jit".into())
            .spawn(move || {
                for msg in jobs {
                    match msg {
                        Msg::Compile(job) => {
                            let start = Instant::now();
                            let spec = BlockSpec { insns: &job.insns, bitness: job.bitness, user: job.user, block: job.block, chain: job.chain };
                            let result = translator.compile(&spec);
                            let d = Done {
                                serial: job.serial,
                                epoch: job.epoch,
                                result,
                                compile_ns: start.elapsed().as_nanos() as u64,
                                total_code_bytes: translator.code_bytes(),
                                user: job.user,
                            };
                            if done.send(d).is_err() {
                                return;
                            }
                        }
                        Msg::Reset => {
                            // SAFETY: the vCPU sends Reset only after dropping every entry
                            // point of earlier epochs, and ignores results of earlier epochs
                            // that were still queued.
                            if unsafe { translator.reset() }.is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| JitError::Isa(format!("cannot start the compile thread: {e}")))?;
        Ok(Service { tx: Some(tx), rx, thread: Some(thread) })
    }

    pub fn submit(&self, job: Job) {
        if let Some(tx) = &self.tx {
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

impl Drop for Service {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
