//! The QMP commands ferrite implements, with QEMU's argument and return shapes
//! (QEMU's qapi schema: qapi/control.json, run-state.json, machine.json, block-core.json,
//! misc.json, migration.json, job.json, ui.json).

use super::jobs;
use super::{ErrorClass, QmpError};
use crate::control::RunState;
use crate::monitor::MonitorTargets;
use crate::Machine;
use serde_json::{json, Map, Value};

type Handler = fn(&MonitorTargets, &Map<String, Value>) -> Result<Value, QmpError>;

/// An argument: name, JSON type, required.
type Param = (&'static str, Kind, bool);

/// Every command: name, the arguments it takes, handler.
const COMMANDS: &[(&str, &[Param], Handler)] = &[
    ("query-version", &[], query_version),
    ("query-commands", &[], query_commands),
    ("query-status", &[], query_status),
    ("query-name", &[], |t, _| t.control.call(|m| m.cfg.name.clone().map_or(json!({}), |n| json!({"name": n}))).map_err(Into::into)),
    ("query-uuid", &[], |t, _| t.control.call(|m| json!({"UUID": uuid_string(m.cfg.uuid.unwrap_or([0; 16]))})).map_err(Into::into)),
    ("query-kvm", &[], |t, _| {
        let present = crate::accel::kvm::usable().is_ok();
        t.control.call(move |m| json!({"enabled": m.cfg.accel == crate::config::Accel::Kvm, "present": present})).map_err(Into::into)
    }),
    ("query-cpus-fast", &[], |t, _| t.control.call(query_cpus_fast).map_err(Into::into)),
    ("query-block", &[], |t, _| t.control.call(query_block).map_err(Into::into)),
    ("query-migrate", &[], |t, _| Ok(t.control.migration().map_or(json!({}), |i| i.to_json()))),
    ("migrate_cancel", &[], |t, _| {
        t.control.migration_cancel.store(true, std::sync::atomic::Ordering::Release);
        Ok(json!({}))
    }),
    ("migrate-set-parameters", &[("max-bandwidth", Kind::Int, false), ("downtime-limit", Kind::Int, false)], migrate_set_parameters),
    ("query-migrate-parameters", &[], |t, _| {
        let p = t.control.migration_params();
        Ok(json!({"max-bandwidth": p.max_bandwidth, "downtime-limit": p.downtime_limit_ms}))
    }),
    ("migrate", &[("uri", Kind::Str, true), ("detach", Kind::Bool, false), ("blk", Kind::Bool, false), ("inc", Kind::Bool, false)], migrate),
    ("stop", &[], |t, _| run_state_job(t, Machine::pause)),
    ("cont", &[], |t, _| run_state_job(t, Machine::resume)),
    ("system_reset", &[], |t, _| {
        t.control.call(|m| m.monitor_reset("host-qmp-system-reset").map_err(|e| e.to_string()))?.map_err(QmpError::generic)?;
        Ok(json!({}))
    }),
    ("system_powerdown", &[], |t, _| {
        t.control.call(Machine::power_button)?;
        Ok(json!({}))
    }),
    ("quit", &[], |t, _| {
        t.control.call(|m| m.quit("host-qmp-quit"))?;
        Ok(json!({}))
    }),
    // QEMU's HumanReadableText: the text `info jit` prints.
    ("x-query-jit", &[], |t, _| Ok(json!({"human-readable-text": t.control.call(Machine::info_jit)?}))),
    ("human-monitor-command", &[("command-line", Kind::Str, true), ("cpu-index", Kind::Int, false)], human_monitor_command),
    ("balloon", &[("value", Kind::Int, true)], balloon),
    ("query-balloon", &[], query_balloon),
    ("migrate-incoming", &[("uri", Kind::Str, true)], |t, args| {
        let uri = args["uri"].as_str().unwrap_or_default().to_string();
        t.control.call(move |m| m.migrate_incoming(&uri))?.map_err(QmpError::generic)?;
        Ok(json!({}))
    }),
    ("snapshot-save", &[("job-id", Kind::Str, true), ("tag", Kind::Str, true), ("vmstate", Kind::Str, true), ("devices", Kind::Array, true)], jobs::snapshot_save),
    ("snapshot-load", &[("job-id", Kind::Str, true), ("tag", Kind::Str, true), ("vmstate", Kind::Str, true), ("devices", Kind::Array, true)], jobs::snapshot_load),
    ("snapshot-delete", &[("job-id", Kind::Str, true), ("tag", Kind::Str, true), ("devices", Kind::Array, true)], jobs::snapshot_delete),
    ("query-jobs", &[], jobs::query_jobs),
    ("job-dismiss", &[("id", Kind::Str, true)], jobs::job_dismiss),
    ("send-key", &[("keys", Kind::Array, true), ("hold-time", Kind::Int, false)], send_key),
    ("screendump", &[("filename", Kind::Str, true), ("device", Kind::Str, false), ("head", Kind::Int, false), ("format", Kind::Str, false)], |_, _| {
        Err(QmpError::generic(crate::monitor::NO_DISPLAY))
    }),
];

/// The JSON types arguments take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    Array,
}

impl Kind {
    fn matches(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Int => v.is_i64() || v.is_u64(),
            Kind::Bool => v.is_boolean(),
            Kind::Array => v.is_array(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
            Kind::Array => "array",
        }
    }
}

/// `qmp_capabilities`'s `enable`: ferrite offers no optional capability (no `oob`).
pub(super) fn check_capabilities(args: &Map<String, Value>) -> Result<(), QmpError> {
    for (k, v) in args {
        match (k.as_str(), v) {
            ("enable", Value::Array(caps)) => {
                if let Some(c) = caps.first() {
                    return Err(QmpError::generic(format!("Capability '{}' not available", c.as_str().unwrap_or("?"))));
                }
            }
            ("enable", _) => return Err(QmpError::generic("Invalid parameter type for 'enable', expected: array")),
            _ => return Err(QmpError::generic(format!("Parameter '{k}' is unexpected"))),
        }
    }
    Ok(())
}

/// Runs command `name` with `args` (checked against its parameters first).
pub(super) fn run(targets: &MonitorTargets, name: &str, args: Map<String, Value>) -> Result<Value, QmpError> {
    let Some((_, params, handler)) = COMMANDS.iter().find(|(n, _, _)| *n == name) else {
        return Err(QmpError { class: ErrorClass::CommandNotFound, desc: format!("The command {name} has not been found") });
    };
    for k in args.keys() {
        if !params.iter().any(|(p, _, _)| p == k) {
            return Err(QmpError::generic(format!("Parameter '{k}' is unexpected")));
        }
    }
    for (p, kind, required) in params.iter() {
        match args.get(*p) {
            None if *required => return Err(QmpError::generic(format!("Parameter '{p}' is missing"))),
            Some(v) if !kind.matches(v) => return Err(QmpError::generic(format!("Invalid parameter type for '{p}', expected: {}", kind.name()))),
            _ => {}
        }
    }
    handler(targets, &args)
}

fn query_version(_: &MonitorTargets, _: &Map<String, Value>) -> Result<Value, QmpError> {
    let (major, minor, micro) = super::QEMU_VERSION;
    Ok(json!({"qemu": {"major": major, "minor": minor, "micro": micro}, "package": format!("ferrite {}", env!("CARGO_PKG_VERSION"))}))
}

fn query_commands(_: &MonitorTargets, _: &Map<String, Value>) -> Result<Value, QmpError> {
    let names = std::iter::once("qmp_capabilities").chain(COMMANDS.iter().map(|(n, _, _)| *n));
    Ok(Value::Array(names.map(|n| json!({"name": n})).collect()))
}

fn query_status(t: &MonitorTargets, _: &Map<String, Value>) -> Result<Value, QmpError> {
    let state = t.control.run_state();
    Ok(json!({"status": state.name(), "singlestep": false, "running": state == RunState::Running}))
}

fn run_state_job(t: &MonitorTargets, f: fn(&mut Machine) -> Result<(), crate::control::RunStateError>) -> Result<Value, QmpError> {
    t.control.call(move |m| f(m).map_err(|e| e.to_string()))?.map_err(QmpError::generic)?;
    Ok(json!({}))
}

fn uuid_string(u: [u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn query_cpus_fast(m: &mut Machine) -> Value {
    let t = m.topology;
    let cpus = (0..m.vcpus.len() as u32).map(|i| {
        let (thread, core, socket) = (i % t.threads, i / t.threads % t.cores, i / (t.threads * t.cores));
        json!({
            "cpu-index": i,
            "qom-path": format!("/machine/unattached/device[{i}]"),
            "thread-id": m.vcpu_tids.get(i as usize).copied().unwrap_or(0),
            "props": {"core-id": core, "thread-id": thread, "socket-id": socket, "die-id": 0},
            "target": "x86_64",
        })
    });
    Value::Array(cpus.collect())
}

fn query_block(m: &mut Machine) -> Value {
    Value::Array(m.block_devices().into_iter().map(|d| d.to_json()).collect())
}

fn human_monitor_command(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let line = args["command-line"].as_str().unwrap_or_default().to_string();
    if let Some(cpu) = args.get("cpu-index").and_then(Value::as_u64) {
        let ok = t.control.call(move |m| {
            let ok = (cpu as usize) < m.vcpus.len();
            if ok {
                m.monitor_cpu = cpu as usize;
            }
            ok
        })?;
        if !ok {
            return Err(QmpError::generic(format!("CPU {cpu} does not exist")));
        }
    }
    Ok(Value::String(t.execute(&line)))
}

fn no_balloon() -> QmpError {
    QmpError { class: ErrorClass::DeviceNotActive, desc: "No balloon device has been activated".into() }
}

fn balloon(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let value = args["value"].as_u64().filter(|&v| v > 0).ok_or_else(|| QmpError::generic("Parameter 'value' expects a size"))?;
    t.set_balloon_bytes(value).map_err(|_| no_balloon())?;
    Ok(json!({}))
}

fn query_balloon(t: &MonitorTargets, _: &Map<String, Value>) -> Result<Value, QmpError> {
    let b = t.balloon().ok_or_else(no_balloon)?;
    Ok(json!({"actual": t.ram_bytes().saturating_sub(b.actual_bytes())}))
}

/// `migrate`: to `file:PATH` or `exec:COMMAND` (TCP comes with live migration). Returns once
/// the state is written; `query-migrate` and the MIGRATION event tell the outcome.
fn migrate(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    if args.get("blk").and_then(Value::as_bool) == Some(true) || args.get("inc").and_then(Value::as_bool) == Some(true) {
        return Err(QmpError::generic("block migration is not supported: use a shared disk image"));
    }
    let uri = args["uri"].as_str().unwrap_or_default().to_string();
    t.control.call(move |m| m.migrate_out(&uri))?.map_err(QmpError::generic)?;
    Ok(json!({}))
}

fn migrate_set_parameters(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let mut p = t.control.migration_params();
    if let Some(b) = args.get("max-bandwidth").and_then(Value::as_u64) {
        p.max_bandwidth = b.max(1);
    }
    if let Some(d) = args.get("downtime-limit").and_then(Value::as_u64) {
        if d > 2_000_000 {
            return Err(QmpError::generic("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds"));
        }
        p.downtime_limit_ms = d;
    }
    t.control.set_migration_params(p);
    Ok(json!({}))
}

/// `send-key`: `keys` as QEMU's KeyValue objects (`{"type": "qcode", "data": "ctrl"}` or
/// `{"type": "number", "data": 29}`), held for `hold-time` ms (100).
fn send_key(t: &MonitorTargets, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let mut keys = Vec::new();
    for k in args["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let data = k.get("data").cloned().unwrap_or_default();
        let key = match (k.get("type").and_then(Value::as_str), &data) {
            (Some("qcode"), Value::String(name)) => ferrite_hw::i8042::keys::Key::by_name(name),
            (Some("number"), Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).and_then(ferrite_hw::i8042::keys::Key::by_number),
            _ => return Err(QmpError::generic("Invalid parameter type for 'keys', expected: KeyValue")),
        };
        let value = data.as_str().map_or_else(|| data.to_string(), str::to_string);
        keys.push(key.ok_or_else(|| QmpError::generic(format!("Parameter 'data' does not accept value '{value}'")))?);
    }
    let hold = args.get("hold-time").and_then(Value::as_u64).map_or(crate::monitor::keys::DEFAULT_HOLD, std::time::Duration::from_millis);
    t.control.call(move |m| m.send_keys(keys, hold))?;
    Ok(json!({}))
}
