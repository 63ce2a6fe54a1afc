//! QMP's jobs (QEMU's job API, qapi/job.json) for the commands that work in the background:
//! `snapshot-save`, `snapshot-load` and `snapshot-delete`. A job is `created` when its
//! command is accepted, `running` on the machine thread, and ends `concluded`: through
//! `waiting` and `pending` when it succeeded, through `aborting` when it failed (`query-jobs`
//! then shows its error), each step a `JOB_STATUS_CHANGE` event, as QEMU 7.2's snapshot jobs
//! go. A concluded job stays listed until `job-dismiss` (status `null`).

use super::events::EventHub;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

struct Entry {
    id: String,
    /// QMP's JobType: `snapshot-save`...
    kind: &'static str,
    status: &'static str,
    error: Option<String>,
}

/// The jobs QMP knows, oldest first.
#[derive(Clone)]
pub struct JobTable {
    jobs: Arc<Mutex<Vec<Entry>>>,
    events: EventHub,
}

/// QEMU's rule for job ids: a letter, then letters, digits, `-`, `.` and `_`.
fn well_formed(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphabetic()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

impl JobTable {
    pub fn new(events: EventHub) -> Self {
        JobTable { jobs: Arc::default(), events }
    }

    /// A new job `id` of type `kind`, or QEMU's error for a bad or taken id.
    pub fn create(&self, id: &str, kind: &'static str) -> Result<(), String> {
        if !well_formed(id) {
            return Err(format!("Invalid job ID '{id}'"));
        }
        let mut jobs = super::lock(&self.jobs);
        if jobs.iter().any(|j| j.id == id) {
            return Err(format!("Job ID '{id}' already in use"));
        }
        jobs.push(Entry { id: id.into(), kind, status: "created", error: None });
        drop(jobs);
        self.announce(id, "created");
        Ok(())
    }

    fn set(&self, id: &str, status: &'static str) {
        if let Some(j) = super::lock(&self.jobs).iter_mut().find(|j| j.id == id) {
            j.status = status;
        }
        self.announce(id, status);
    }

    fn announce(&self, id: &str, status: &str) {
        self.events.emit("JOB_STATUS_CHANGE", json!({"status": status, "id": id}));
    }

    /// The job's work begins.
    pub fn start(&self, id: &str) {
        self.set(id, "running");
    }

    /// The job's work ended with `result`.
    pub fn finish(&self, id: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.set(id, "waiting");
                self.set(id, "pending");
            }
            Err(e) => {
                if let Some(j) = super::lock(&self.jobs).iter_mut().find(|j| j.id == id) {
                    j.error = Some(e);
                }
                self.set(id, "aborting");
            }
        }
        self.set(id, "concluded");
    }

    /// `query-jobs`: QEMU's JobInfo list, newest first.
    pub fn query(&self) -> Value {
        let jobs = super::lock(&self.jobs);
        let list = jobs.iter().rev().map(|j| {
            let done = u64::from(j.status == "concluded");
            let mut v = json!({"current-progress": done, "status": j.status, "total-progress": 1, "type": j.kind, "id": j.id});
            if let Some(e) = &j.error {
                v["error"] = e.clone().into();
            }
            v
        });
        Value::Array(list.collect())
    }

    /// `job-dismiss`: forgets a concluded job.
    pub fn dismiss(&self, id: &str) -> Result<(), String> {
        let mut jobs = super::lock(&self.jobs);
        let at = jobs.iter().position(|j| j.id == id).ok_or("Job not found")?;
        if jobs[at].status != "concluded" {
            return Err(format!("Job '{id}' in state '{}' cannot accept command verb 'dismiss'", jobs[at].status));
        }
        jobs.remove(at);
        drop(jobs);
        self.announce(id, "null");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Event, EventSink};

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl EventSink for Seen {
        fn event(&self, e: &Event) {
            self.0.lock().unwrap().push(format!("{} {}", e.data["id"].as_str().unwrap(), e.data["status"].as_str().unwrap()));
        }
    }

    #[test]
    fn jobs_go_through_qemus_states_and_stay_until_dismissed() {
        let hub = EventHub::default();
        let seen = Arc::new(Seen::default());
        hub.subscribe(Arc::downgrade(&seen) as std::sync::Weak<dyn EventSink>);
        let t = JobTable::new(hub);
        assert_eq!(t.create("9x", "snapshot-save"), Err("Invalid job ID '9x'".into()));
        t.create("ok", "snapshot-save").unwrap();
        assert_eq!(t.create("ok", "snapshot-load"), Err("Job ID 'ok' already in use".into()));
        t.create("bad", "snapshot-load").unwrap();
        assert!(t.dismiss("bad").unwrap_err().contains("in state 'created'"));
        t.start("ok");
        t.finish("ok", Ok(()));
        t.start("bad");
        t.finish("bad", Err("Snapshot 'x' does not exist".into()));
        let q = t.query();
        assert_eq!(q[0]["id"], "bad");
        assert_eq!(q[0]["error"], "Snapshot 'x' does not exist");
        assert_eq!(q[1], json!({"current-progress": 1, "status": "concluded", "total-progress": 1, "type": "snapshot-save", "id": "ok"}));
        t.dismiss("ok").unwrap();
        assert_eq!(t.dismiss("ok"), Err("Job not found".into()));
        let seen = seen.0.lock().unwrap().join(", ");
        assert_eq!(
            seen,
            "ok created, bad created, ok running, ok waiting, ok pending, ok concluded, bad running, bad aborting, bad concluded, ok null"
        );
    }
}
