//! A host thread that runs a device's disk jobs in submission order, so device models never
//! block a vCPU on host I/O. A job is a closure: it does the I/O (and any DMA), then takes
//! the device's lock to complete the command and raise its interrupt.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

pub struct IoThread {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl IoThread {
    /// Starts the thread, named `name` (shown by `top -H` and debuggers).
    pub fn spawn(name: &str) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            for job in rx {
                job();
            }
        })?;
        Ok(IoThread { jobs: Some(tx), thread: Some(thread) })
    }

    /// Queues `job`; jobs run one at a time, in order.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.jobs {
            // The thread only stops when this handle drops, so the send cannot fail.
            let _ = tx.send(Box::new(job));
        }
    }

    /// Waits until every job queued so far has run (reset, tests, machine shutdown).
    pub fn drain(&self) {
        let (tx, rx) = channel();
        self.submit(move || {
            let _ = tx.send(());
        });
        let _ = rx.recv();
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the queued jobs have run.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
