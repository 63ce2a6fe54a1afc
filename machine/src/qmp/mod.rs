//! QMP, the QEMU Machine Protocol (QEMU's docs/interop/qmp-spec), on a `-chardev`: `-qmp
//! unix:PATH,server=on,wait=off`, `-qmp tcp:HOST:PORT,...` or `-mon chardev=ID,mode=control`.
//!
//! A client gets the greeting (`{"QMP": {"version": ..., "capabilities": []}}`), negotiates with
//! `qmp_capabilities`, then sends commands (`{"execute": NAME, "arguments": {...}, "id": ...}`)
//! and gets `{"return": ...}` or `{"error": {"class": ..., "desc": ...}}` with the same `id`;
//! events arrive as `{"event": ..., "data": ..., "timestamp": ...}` between replies. Input is a
//! stream of JSON objects, whatever the line breaks; malformed JSON gets an error and the
//! parser resynchronises at the next line. One client at a time per socket (a second one is
//! told so and disconnected).

mod commands;
mod jobs;

use crate::chardev::{Chardev, Frontend};
use crate::control::{Event, EventSink};
use crate::monitor::MonitorTargets;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// The QEMU release whose QMP interface and command set ferrite follows.
pub const QEMU_VERSION: (u32, u32, u32) = (7, 2, 0);
pub const QEMU_VERSION_STR: &str = "7.2.0";
/// Most bytes of one request in flight; a client sending more without a complete object is
/// answered with an error and its input dropped.
const MAX_REQUEST: usize = 1 << 20;

/// QMP's error classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap,
}

/// A command's failure, as the client sees it.
#[derive(Debug, PartialEq)]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError { class: ErrorClass::GenericError, desc: desc.into() }
    }

    fn to_json(&self) -> Value {
        json!({"class": format!("{:?}", self.class), "desc": self.desc})
    }
}

impl From<crate::control::ControlError> for QmpError {
    fn from(e: crate::control::ControlError) -> Self {
        QmpError::generic(e.to_string())
    }
}

struct Session {
    /// Bytes of requests not yet complete.
    pending: Vec<u8>,
    /// `qmp_capabilities` was accepted: commands run and events flow.
    negotiated: bool,
}

/// QMP on one chardev.
pub struct QmpServer {
    chardev: Arc<Chardev>,
    targets: MonitorTargets,
    session: Mutex<Session>,
}

impl QmpServer {
    pub fn start(chardev: Arc<Chardev>, targets: MonitorTargets) {
        let server = Arc::new(QmpServer { chardev: chardev.clone(), targets, session: Mutex::new(Session { pending: Vec::new(), negotiated: false }) });
        let sink: std::sync::Weak<dyn EventSink> = Arc::downgrade(&server) as std::sync::Weak<dyn EventSink>;
        server.targets.control.events.subscribe(sink);
        chardev.set_busy_message(busy_message());
        chardev.attach(server);
    }

    fn send(&self, v: &Value) {
        let mut line = v.to_string();
        line.push_str("\r\n");
        self.chardev.write(line.as_bytes());
    }

    fn greeting() -> Value {
        let (major, minor, micro) = QEMU_VERSION;
        json!({"QMP": {
            "version": {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": format!("ferrite {}", env!("CARGO_PKG_VERSION"))},
            "capabilities": [],
        }})
    }

    /// Answers one parsed request.
    fn request(&self, request: Value) -> Value {
        let id = request.get("id").cloned();
        let reply = match self.dispatch(request) {
            Ok(ret) => json!({"return": ret}),
            Err(e) => json!({"error": e.to_json()}),
        };
        match (id, reply) {
            (Some(id), Value::Object(mut m)) => {
                m.insert("id".into(), id);
                Value::Object(m)
            }
            (_, reply) => reply,
        }
    }

    fn dispatch(&self, request: Value) -> Result<Value, QmpError> {
        let Value::Object(obj) = request else { return Err(QmpError::generic("QMP input must be a JSON object")) };
        for key in obj.keys() {
            if !matches!(key.as_str(), "execute" | "arguments" | "id") {
                return Err(QmpError::generic(format!("QMP input member '{key}' is unexpected")));
            }
        }
        let name = match obj.get("execute") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(QmpError::generic("QMP input member 'execute' must be a string")),
            None => return Err(QmpError::generic("QMP input lacks member 'execute'")),
        };
        let args = match obj.get("arguments") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(QmpError::generic("QMP input member 'arguments' must be an object")),
        };
        let negotiated = crate::control::lock(&self.session).negotiated;
        if name == "qmp_capabilities" {
            if negotiated {
                return Err(QmpError { class: ErrorClass::CommandNotFound, desc: "Capabilities negotiation is already complete, command ignored".into() });
            }
            commands::check_capabilities(&args)?;
            crate::control::lock(&self.session).negotiated = true;
            return Ok(json!({}));
        }
        if !negotiated {
            return Err(QmpError { class: ErrorClass::CommandNotFound, desc: "Expecting capabilities negotiation with 'qmp_capabilities'".into() });
        }
        commands::run(&self.targets, &name, args)
    }
}

fn busy_message() -> Vec<u8> {
    let error = json!({"error": {"class": "GenericError", "desc": "another QMP client is connected to this socket; ferrite serves one client per monitor (add another -qmp for a second client)"}});
    format!("{error}\r\n").into_bytes()
}

/// Splits off the complete JSON values at the start of `buf`: the values, and then either how
/// many bytes they used, or a syntax error with where the bad input ends (its line).
fn split_values(buf: &[u8]) -> (Vec<Value>, usize, Option<(String, usize)>) {
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    loop {
        let at = stream.byte_offset();
        match stream.next() {
            Some(Ok(v)) => values.push(v),
            None => return (values, buf.len(), None),
            Some(Err(e)) if e.is_eof() => return (values, at, None),
            Some(Err(e)) => {
                // Skip to the end of the line the error is on (or all of it).
                let bad = buf[at..].iter().position(|&b| b == b'\n').map_or(buf.len(), |p| at + p + 1);
                return (values, bad, Some((e.to_string(), bad)));
            }
        }
    }
}

impl Frontend for QmpServer {
    fn receive(&self, data: &[u8]) -> usize {
        let mut session = crate::control::lock(&self.session);
        session.pending.extend_from_slice(data);
        loop {
            let (values, used, error) = split_values(&session.pending);
            session.pending.drain(..used);
            let overflow = error.is_none() && values.is_empty() && session.pending.len() > MAX_REQUEST;
            if values.is_empty() && error.is_none() && !overflow {
                break;
            }
            // Commands run without the session lock (they may wait for the machine, and
            // events are sent meanwhile).
            drop(session);
            for v in values {
                let reply = self.request(v);
                self.send(&reply);
            }
            if let Some((e, _)) = error {
                self.send(&json!({"error": {"class": "GenericError", "desc": format!("JSON parse error, {e}")}}));
            }
            session = crate::control::lock(&self.session);
            if overflow {
                session.pending.clear();
                drop(session);
                self.send(&json!({"error": {"class": "GenericError", "desc": format!("JSON parse error, a request longer than {MAX_REQUEST} bytes")}}));
                session = crate::control::lock(&self.session);
            }
        }
        data.len()
    }

    fn connected(&self, up: bool) {
        {
            let mut s = crate::control::lock(&self.session);
            s.pending.clear();
            s.negotiated = false;
        }
        if up {
            self.send(&Self::greeting());
        }
    }
}

impl EventSink for QmpServer {
    fn event(&self, event: &Event) {
        if crate::control::lock(&self.session).negotiated && self.chardev.is_connected() {
            self.send(&event.to_json());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_across_reads_and_errors_skip_their_line() {
        let (v, used, err) = split_values(br#"{"execute": "a"} {"execute":"#);
        assert_eq!((v.len(), used, err), (1, 16, None));
        let (v, used, err) = split_values(b"{\"x\": ]\n{\"execute\": \"b\"}");
        assert_eq!((v.len(), used), (0, 8));
        assert!(err.is_some());
        let (v, _, err) = split_values(b"{\"execute\": \"b\"}");
        assert_eq!((v.len(), err), (1, None));
    }
}
