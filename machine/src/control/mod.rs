//! The machine's control plane: what QMP and the human monitor ask of a running machine.
//!
//! The machine's own thread owns the vCPUs and the board; a client thread hands it a [`Job`]
//! (a closure over `&mut Machine`) and waits for the answer. The machine thread picks jobs up
//! within a few milliseconds, with every vCPU stopped (and started again afterwards if the
//! machine still runs), so a job sees the vCPUs' and devices' state at rest. The run state
//! (QMP's `RunState`) is readable without a job, and state changes are events
//! ([`events::EventHub`]).

pub mod events;
pub mod jobs;
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
    /// `savevm`: writing a named snapshot.
    SaveVm,
    /// `loadvm`: loading a named snapshot (and where a load that failed midway leaves it).
    RestoreVm,
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
            RunState::SaveVm => "save-vm",
            RunState::RestoreVm => "restore-vm",
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
    #[error("the machine did not answer within {0:?}: it is {1}")]
    Timeout(Duration, &'static str),
}

/// What the machine thread is doing, so that a client that waited in vain can say where it
/// is stuck (a vCPU that does not stop, a network backend that does not let go).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Idle,
    StoppingVcpus,
    HoldingFrames,
    RunningJob,
    HandlingEvent,
}

impl Phase {
    const ALL: [Phase; 5] = [Phase::Idle, Phase::StoppingVcpus, Phase::HoldingFrames, Phase::RunningJob, Phase::HandlingEvent];

    fn describe(self) -> &'static str {
        match self {
            Phase::Idle => "waiting for work",
            Phase::StoppingVcpus => "waiting for the vCPUs to stop",
            Phase::HoldingFrames => "waiting for a network backend to finish delivering a frame",
            Phase::RunningJob => "running an earlier request",
            Phase::HandlingEvent => "handling a machine event (reset, power-off)",
        }
    }
}

/// How long a client waits for the machine thread (it only misses this if a vCPU cannot be
/// stopped, which would be a bug worth reporting rather than hanging the client).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// A client's handle on the machine.
#[derive(Clone)]
pub struct Control {
    jobs: Sender<Job>,
    state: Arc<Mutex<RunStates>>,
    pub events: EventHub,
    /// The last or current migration.
    migration: Arc<Mutex<Option<MigrationInfo>>>,
    /// `migrate_cancel` asks the running migration to stop.
    pub migration_cancel: Arc<std::sync::atomic::AtomicBool>,
    migration_params: Arc<Mutex<crate::snapshot::live::MigrationParams>>,
    /// QMP's background jobs (`snapshot-save`...), for `query-jobs`.
    pub background: jobs::JobTable,
    /// The machine thread's [`Phase`].
    phase: Arc<std::sync::atomic::AtomicU8>,
}

/// The run state, and the one before it (what `finish-migrate` interrupted).
#[derive(Clone, Copy)]
struct RunStates {
    current: RunState,
    before: RunState,
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
        let events = EventHub::default();
        let control = Control {
            jobs: jobs_tx,
            state: Arc::new(Mutex::new(RunStates { current: initial, before: initial })),
            background: jobs::JobTable::new(events.clone()),
            events,
            migration: Arc::default(),
            migration_cancel: Arc::default(),
            migration_params: Arc::default(),
            phase: Arc::default(),
        };
        ControlPort { jobs, control }
    }

    /// The machine thread says what it does now.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, std::sync::atomic::Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        let n = self.phase.load(std::sync::atomic::Ordering::Relaxed);
        Phase::ALL.get(usize::from(n)).copied().unwrap_or(Phase::Idle)
    }

    pub fn run_state(&self) -> RunState {
        lock(&self.state).current
    }

    pub(crate) fn set_run_state(&self, state: RunState) {
        let mut s = lock(&self.state);
        if s.current != state {
            s.before = s.current;
            s.current = state;
        }
    }

    /// Whether the guest runs, as a saved state records it: a migration's `finish-migrate`
    /// and a savevm's `save-vm` count as what they interrupted (a destination resumes a
    /// paused source's guest paused).
    pub(crate) fn guest_running(&self) -> bool {
        let s = lock(&self.state);
        match s.current {
            RunState::FinishMigrate | RunState::SaveVm => s.before == RunState::Running,
            current => current == RunState::Running,
        }
    }

    pub fn migration(&self) -> Option<MigrationInfo> {
        lock(&self.migration).clone()
    }

    pub fn set_migration(&self, info: MigrationInfo) {
        *lock(&self.migration) = Some(info);
    }

    /// Whether a migration is under way.
    pub fn migrating(&self) -> bool {
        lock(&self.migration).as_ref().is_some_and(|m| matches!(m.status, "setup" | "active"))
    }

    pub fn migration_params(&self) -> crate::snapshot::live::MigrationParams {
        *lock(&self.migration_params)
    }

    pub fn set_migration_params(&self, p: crate::snapshot::live::MigrationParams) {
        *lock(&self.migration_params) = p;
    }

    /// Queues `f` for the machine thread (vCPUs stopped while it runs) without waiting for
    /// it: work whose outcome arrives as events (QMP jobs, an incoming migration).
    pub fn post(&self, f: impl FnOnce(&mut Machine) + Send + 'static) -> Result<(), ControlError> {
        self.jobs.send(Box::new(f)).map_err(|_| ControlError::Gone)
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
            std::sync::mpsc::RecvTimeoutError::Timeout => ControlError::Timeout(ANSWER_WITHIN, self.phase().describe()),
            std::sync::mpsc::RecvTimeoutError::Disconnected => ControlError::Gone,
        })
    }
}

/// The last migration, as `query-migrate` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationInfo {
    /// QMP's MigrationStatus: setup, active, completed, failed, cancelled.
    pub status: &'static str,
    pub total_time_ms: u64,
    pub downtime_ms: u64,
    pub expected_downtime_ms: u64,
    /// Bytes of the stream sent so far.
    pub transferred: u64,
    /// Bytes of RAM known dirty and not yet sent.
    pub remaining: u64,
    pub ram_total: u64,
    /// Pages sent.
    pub pages: u64,
    pub dirty_sync_count: u32,
    pub dirty_pages_rate: u64,
    pub error: Option<String>,
}

impl MigrationInfo {
    fn blank(status: &'static str) -> Self {
        MigrationInfo {
            status,
            total_time_ms: 0,
            downtime_ms: 0,
            expected_downtime_ms: 0,
            transferred: 0,
            remaining: 0,
            ram_total: 0,
            pages: 0,
            dirty_sync_count: 0,
            dirty_pages_rate: 0,
            error: None,
        }
    }

    pub fn setup() -> Self {
        Self::blank("setup")
    }

    pub fn active(ram_total: u64) -> Self {
        MigrationInfo { ram_total, remaining: ram_total, ..Self::blank("active") }
    }

    pub fn ended(status: &'static str, error: Option<String>) -> Self {
        MigrationInfo { error, ..Self::blank(status) }
    }

    /// A stop-and-copy save (file:, exec:): all of it was downtime.
    pub fn completed(stats: crate::snapshot::SaveStats, took: Duration, ram_total: u64) -> Self {
        let ms = took.as_millis() as u64;
        MigrationInfo { total_time_ms: ms, downtime_ms: ms, transferred: stats.bytes, ram_total, pages: stats.ram_pages, dirty_sync_count: 1, ..Self::blank("completed") }
    }

    /// QMP's `MigrationInfo`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"status": self.status});
        if matches!(self.status, "active" | "completed") {
            v["total-time"] = self.total_time_ms.into();
            if self.status == "completed" {
                v["downtime"] = self.downtime_ms.into();
            } else {
                v["expected-downtime"] = self.expected_downtime_ms.into();
            }
            let mbps = if self.total_time_ms > 0 { self.transferred as f64 * 8.0 / 1000.0 / self.total_time_ms as f64 } else { 0.0 };
            v["ram"] = serde_json::json!({
                "transferred": self.transferred, "total": self.ram_total, "remaining": self.remaining, "duplicate": 0,
                "normal": self.pages, "normal-bytes": self.pages * 4096, "dirty-sync-count": self.dirty_sync_count,
                "dirty-pages-rate": self.dirty_pages_rate, "mbps": mbps,
            });
        }
        if let Some(e) = &self.error {
            v["error-desc"] = e.clone().into();
        }
        v
    }
}
