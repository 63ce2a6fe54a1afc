//! The machine's control plane: what QMP and the human monitor ask of a running machine.
//!
//! The machine's own thread owns the vCPUs and the board; a client thread hands it a [`Job`]
//! (a closure over `&mut Machine`) and waits for the answer. The machine thread picks jobs up
//! within a few milliseconds, with every vCPU stopped (and started again afterwards if the
//! machine still runs), so a job sees the vCPUs' and devices' state at rest. The run state
//! (QMP's `RunState`) is readable without a job, and state changes are events
//! ([`events::EventHub`]).

pub mod events;
mod run;

pub use run::RunStateError;

use crate::Machine;
use std::sync::mpsc::{sync_channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use events::{Event, EventHub, EventSink};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// QMP's `RunState` (the subset ferrite enters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// `-S`: not started yet; `cont` starts it.
    Prelaunch,
    Running,
    /// `stop`.
    Paused,
    /// Stopped in the debugger.
    Debug,
    /// The guest powered off and `-no-shutdown` keeps the machine.
    Shutdown,
    /// The accelerator could not go on.
    InternalError,
    /// `-incoming`: loading the state.
    Inmigrate,
    /// Saving the state for `migrate`.
    FinishMigrate,
    /// `migrate` completed: the guest runs elsewhere now (`cont` runs it here again).
    Postmigrate,
}

impl RunState {
    /// The name QMP and `info status` use.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Debug => "debug",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
            RunState::Inmigrate => "inmigrate",
            RunState::FinishMigrate => "finish-migrate",
            RunState::Postmigrate => "postmigrate",
        }
    }
}

/// Work for the machine thread.
pub type Job = Box<dyn FnOnce(&mut Machine) + Send>;

/// Why a job got no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("the machine has stopped")]
    Gone,
    #[error("the machine did not answer within {0:?}")]
    Timeout(Duration),
}

/// How long a client waits for the machine thread (it only misses this if a vCPU cannot be
/// stopped, which would be a bug worth reporting rather than hanging the client).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// A client's handle on the machine.
#[derive(Clone)]
pub struct Control {
    jobs: Sender<Job>,
    state: Arc<Mutex<RunState>>,
    pub events: EventHub,
}

/// The machine thread's end.
pub(crate) struct ControlPort {
    pub jobs: Receiver<Job>,
    pub control: Control,
}

impl Control {
    /// A control channel: the machine keeps the port, clients clone the handle.
    pub(crate) fn channel(initial: RunState) -> ControlPort {
        let (jobs_tx, jobs) = std::sync::mpsc::channel();
        let control = Control { jobs: jobs_tx, state: Arc::new(Mutex::new(initial)), events: EventHub::default() };
        ControlPort { jobs, control }
    }

    pub fn run_state(&self) -> RunState {
        *lock(&self.state)
    }

    pub(crate) fn set_run_state(&self, state: RunState) {
        *lock(&self.state) = state;
    }

    /// Runs `f` on the machine thread with the vCPUs stopped, and returns its result.
    pub fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Machine) -> T + Send + 'static) -> Result<T, ControlError> {
        let (tx, rx) = sync_channel(1);
        self.jobs
            .send(Box::new(move |m: &mut Machine| {
                let _ = tx.send(f(m));
            }))
            .map_err(|_| ControlError::Gone)?;
        rx.recv_timeout(ANSWER_WITHIN).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => ControlError::Timeout(ANSWER_WITHIN),
            std::sync::mpsc::RecvTimeoutError::Disconnected => ControlError::Gone,
        })
    }
}

/// The last migration, as `query-migrate` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationInfo {
    pub status: &'static str,
    pub total_time_ms: u64,
    pub transferred: u64,
    pub ram_total: u64,
    pub pages: u64,
    pub error: Option<String>,
}

impl MigrationInfo {
    pub fn completed(stats: crate::snapshot::SaveStats, took: Duration, ram_total: u64) -> Self {
        MigrationInfo { status: "completed", total_time_ms: took.as_millis() as u64, transferred: stats.bytes, ram_total, pages: stats.ram_pages, error: None }
    }

    pub fn failed(error: String) -> Self {
        MigrationInfo { status: "failed", total_time_ms: 0, transferred: 0, ram_total: 0, pages: 0, error: Some(error) }
    }

    /// QMP's `MigrationInfo`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"status": self.status});
        if self.status == "completed" {
            v["total-time"] = self.total_time_ms.into();
            // Everything moved while the guest was stopped: the whole time was downtime.
            v["downtime"] = self.total_time_ms.into();
            v["ram"] = serde_json::json!({
                "transferred": self.transferred, "total": self.ram_total, "remaining": 0, "duplicate": 0,
                "normal": self.pages, "normal-bytes": self.pages * 4096, "dirty-sync-count": 1,
                "mbps": if self.total_time_ms > 0 { self.transferred as f64 * 8.0 / 1000.0 / self.total_time_ms as f64 } else { 0.0 },
            });
        }
        if let Some(e) = &self.error {
            v["error-desc"] = e.clone().into();
        }
        v
    }
}
