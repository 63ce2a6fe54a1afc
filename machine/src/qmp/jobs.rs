//! QMP's snapshot commands as QEMU 7.2 has them: `snapshot-save`, `snapshot-load` and
//! `snapshot-delete` create a job (`job-id`) and return at once; the job runs on the machine
//! thread and reports through `JOB_STATUS_CHANGE` events and `query-jobs` (with its error if
//! it failed) until `job-dismiss` ([`crate::control::jobs`]).
//!
//! ferrite keeps the machine's state in its snapshot directory, not in a disk image, so
//! `vmstate` (QEMU's image for the state) chooses nothing; `devices` must name drives of
//! this machine, and writable ones are refused whether named or not, as `savevm` refuses
//! them (their contents would not match the restored guest).

use super::QmpError;
use crate::monitor::MonitorTargets;
use crate::Machine;
use serde_json::{json, Map, Value};

/// What a snapshot job does with its tag.
type Work = fn(&mut Machine, &str) -> Result<(), String>;

pub(super) fn snapshot_save(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    start(t, args, "snapshot-save", |m, tag| m.save_vm(Some(tag)).map(|_| ()).map_err(|e| e.to_string()))
}

pub(super) fn snapshot_load(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    start(t, args, "snapshot-load", |m, tag| m.load_vm(tag).map_err(|e| e.to_string()))
}

pub(super) fn snapshot_delete(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    start(t, args, "snapshot-delete", |m, tag| m.delete_vm(tag).map_err(|e| e.to_string()))
}

pub(super) fn query_jobs(t: &MonitorTargets, _: &Map<String, Value>) -> Result<Value, QmpError> {
    Ok(t.control.background.query())
}

pub(super) fn job_dismiss(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    t.control.background.dismiss(args["id"].as_str().unwrap_or_default()).map_err(QmpError::generic)?;
    Ok(json!({}))
}

/// Creates job `job-id` of `kind` and hands `work` to the machine thread.
fn start(t: &MonitorTargets, args: &Map<String, Value>, kind: &'static str, work: Work) -> Result<Value, QmpError> {
    let id = args["job-id"].as_str().unwrap_or_default().to_string();
    let tag = args["tag"].as_str().unwrap_or_default().to_string();
    let devices = string_list(&args["devices"], "devices")?;
    t.control.background.create(&id, kind).map_err(QmpError::generic)?;
    let jobs = t.control.background.clone();
    t.control.post(move |m| {
        jobs.start(&id);
        let result = known_devices(m, &devices).and_then(|()| work(m, &tag));
        jobs.finish(&id, result);
    })?;
    Ok(json!({}))
}

/// A JSON array of strings, with QEMU's error for an element of another type.
fn string_list(v: &Value, name: &str) -> Result<Vec<String>, QmpError> {
    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let strings = items.iter().enumerate().map(|(i, d)| {
        d.as_str().map(str::to_string).ok_or_else(|| QmpError::generic(format!("Invalid parameter type for '{name}[{i}]', expected: string")))
    });
    strings.collect()
}

/// Every name in `devices` is a drive of this machine (QEMU's error otherwise).
fn known_devices(m: &Machine, devices: &[String]) -> Result<(), String> {
    let drives: Vec<String> = m.block_devices().into_iter().map(|b| b.device).collect();
    match devices.iter().find(|d| !drives.contains(d)) {
        Some(d) => Err(format!("No block device node '{d}'")),
        None => Ok(()),
    }
}
